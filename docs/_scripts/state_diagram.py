"""
Render the policy machine's transition table into docs/state-machine.md.

``smtpsts.cache.TRANSITIONS`` is the one place where the states of
``PolicyResolution`` change (h11's rule 1); this script turns it into the
Mermaid diagram and the table of ``docs/state-machine.md``, between the
``<!-- state-diagram:begin -->`` and ``<!-- state-diagram:end -->`` markers.

Usage::

    python docs/_scripts/state_diagram.py          # rewrite the block
    python docs/_scripts/state_diagram.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from smtpsts.cache import TRANSITIONS, ResolutionState  # noqa: E402 -- after the path is set

PAGE = ROOT / "docs" / "state-machine.md"
BEGIN = "<!-- state-diagram:begin -->"
END = "<!-- state-diagram:end -->"


def _node(state: ResolutionState) -> str:
    return state.name.lower()


def render() -> str:
    """Return the generated block, markers included."""
    lines = [BEGIN, "", "```{mermaid}", "stateDiagram-v2"]
    lines.append(f"    [*] --> {_node(ResolutionState.START)}")
    lines.extend(
        f"    {_node(t.source)} --> {_node(t.target)}: {t.event.value}" for t in TRANSITIONS
    )
    lines.append(f"    {_node(ResolutionState.DONE)} --> [*]")
    lines += ["```", ""]
    lines.append("| from | event | to | what happens | rules |")
    lines.append("|---|---|---|---|---|")
    for t in TRANSITIONS:
        effect = t.effect.replace("|", "\\|")
        rules = ", ".join(t.conformance)
        lines.append(
            f"| `{t.source.value}` | `{t.event.value}` | `{t.target.value}` | {effect} | {rules} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def rewrite(text: str) -> str:
    """Return ``text`` with the block between the markers regenerated."""
    start = text.index(BEGIN)
    end = text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the page, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    current = PAGE.read_text(encoding="utf-8")
    wanted = rewrite(current)
    if args.check:
        if wanted != current:
            print(f"{PAGE} is stale: run python docs/_scripts/state_diagram.py")
            return 1
        return 0
    PAGE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
