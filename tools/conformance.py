"""
Build the conformance matrix ``docs/conformance.md``.

The matrix maps every normative item of CONFORMANCE.md section 2 (IDs such as
``STS-POL-06``) to what covers it:

- tests: any test function (module level or in a ``Test*`` class, under
  ``tests/``) whose name contains the ID in underscored form (``sts_pol_06``)
  or whose docstring's first line contains it (``STS-POL-06``);
- vectors: every case of ``smtpsts/vectors/*.json`` whose ``conformance``
  list names the ID.

Items listed in ``tools/conformance_na.toml`` (``[ids]`` table,
``STS-XX-NN = "reason"``) and not covered show as "not applicable".

The list of IDs comes from ``tools/conformance_ids.json`` so that the tool works
without the team's shared spec directory; ``--refresh-ids [PATH]`` regenerates
that file from CONFORMANCE.md. Project items that CONFORMANCE.md does not hold
(``SEC-50`` and up: the downgrade-resistance guarantees smtpsts makes beyond
the RFC text) live in ``tools/conformance_project.json``, in the same format;
they are merged in and never touched by ``--refresh-ids``.

Usage::

    python tools/conformance.py                  # write docs/conformance.md
    python tools/conformance.py --check          # exit 1 if it is stale
    python tools/conformance.py --require STS-REC STS-POL   # exit 1 on uncovered IDs
    python tools/conformance.py --refresh-ids ../shared/spec/CONFORMANCE.md
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = Path("..") / "shared" / "spec" / "CONFORMANCE.md"
IDS_FILE = Path("tools") / "conformance_ids.json"
PROJECT_FILE = Path("tools") / "conformance_project.json"
NA_FILE = Path("tools") / "conformance_na.toml"
OUTPUT = Path("docs") / "conformance.md"
MAX_TESTS_SHOWN = 4
SHORT_LIMIT = 140

# CONFORMANCE.md §1: IDs are GROUP-NN; groups are STS-*, RPT-*, DANE, SEC.
ID_RE = re.compile(r"(?<![A-Za-z0-9-])((?:STS|RPT)-[A-Z]+|DANE|SEC)-(\d{2})(?![0-9])")
NAME_ID_RE = re.compile(r"(?<![a-z0-9])((?:sts|rpt)_[a-z]+|dane|sec)_(\d{2})(?![0-9])")
_SECTION_RE = re.compile(r"^###\s+2\.\d+\s+(?P<group>[A-Z][A-Z-]*):\s*(?P<title>.+?)\s*$")
_ROW_RE = re.compile(r"^\|\s*(?P<id>(?:(?:STS|RPT)-[A-Z]+|DANE|SEC)-\d{2})\s*\|")


class ConformanceError(Exception):
    """Bad input to the tool (a malformed spec, N/A file or vector file)."""


@dataclass(frozen=True)
class Item:
    """One normative item of CONFORMANCE.md section 2."""

    ident: str
    group: str
    ref: str
    level: str
    requirement: str
    title: str = ""

    @property
    def withdrawn(self) -> bool:
        """Whether the item is marked withdrawn in the checklist."""
        return "withdrawn" in self.level.lower() or self.requirement.lower().startswith(
            ("withdrawn", "*withdrawn")
        )


@dataclass
class Coverage:
    """What covers one ID."""

    tests: list[str] = field(default_factory=list)
    vectors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def covered(self) -> bool:
        """Whether at least one test or vector names the ID."""
        return bool(self.tests or self.vectors)


def group_of(ident: str) -> str:
    """Return the group of an ID: ``STS-POL-06`` -> ``STS-POL``, ``DANE-01`` -> ``DANE``."""
    return ident.rsplit("-", 1)[0]


def shorten(text: str, limit: int = SHORT_LIMIT) -> str:
    """Return the first sentence of a requirement, cut to about ``limit`` characters."""
    text = " ".join(text.split())
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z`(])", text)
    first = text[: m.start()] if m else text
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0]
    # Do not leave a code span open.
    if cut.count("`") % 2:
        cut = cut[: cut.rfind("`")].rstrip()
    return cut + " …"


def _split_row(line: str) -> list[str]:
    # A Markdown table row; "\|" is an escaped pipe inside a cell.
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip().replace("\\|", "|") for c in cells[1:-1]]


def parse_spec(text: str) -> dict[str, Item]:
    """
    Extract the section 2 items of CONFORMANCE.md.

    Args:
        text: The Markdown text of CONFORMANCE.md.

    Returns:
        The items by ID, in document order.

    Raises:
        ConformanceError: A row is malformed or an ID repeats.
    """
    items: dict[str, Item] = {}
    group = title = ""
    in_section_2 = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            in_section_2 = line.startswith("## 2.")
            continue
        if not in_section_2:
            continue
        sec = _SECTION_RE.match(line)
        if sec:
            group, title = sec["group"], sec["title"]
            continue
        row = _ROW_RE.match(line)
        if not row:
            continue
        cells = _split_row(line)
        if len(cells) < 4:
            raise ConformanceError(f"line {lineno}: expected ID | Ref | Level | Requirement")
        ident, ref, level, requirement = cells[:4]
        if ident in items:
            raise ConformanceError(f"line {lineno}: duplicate ID {ident}")
        if group_of(ident) != group:
            raise ConformanceError(f"line {lineno}: {ident} is not in section {group or '?'}")
        items[ident] = Item(ident, group, ref, level, shorten(requirement), title)
    if not items:
        raise ConformanceError("no section 2 items found")
    return items


def items_to_json(items: dict[str, Item]) -> str:
    """Serialise items for ``tools/conformance_ids.json`` (stable, diff-friendly)."""
    data = {
        i.ident: {
            "ref": i.ref,
            "level": i.level,
            "requirement": i.requirement,
            "group": i.group,
            "title": i.title,
        }
        for i in items.values()
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def load_ids(path: Path) -> dict[str, Item]:
    """
    Load the ID list written by :func:`items_to_json`.

    Raises:
        ConformanceError: The file is not such a list.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            ident: Item(
                ident,
                entry.get("group", group_of(ident)),
                entry["ref"],
                entry["level"],
                entry["requirement"],
                entry.get("title", ""),
            )
            for ident, entry in data.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConformanceError(f"{path}: not a conformance ID list: {e}") from None


def load_na(path: Path, known: Iterable[str]) -> dict[str, str]:
    """
    Load the not-applicable list (``[ids]`` table of ID = reason).

    Raises:
        ConformanceError: The file is malformed or names an unknown ID.
    """
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConformanceError(f"{path}: {e}") from None
    table = data.get("ids", {})
    known = set(known)
    out: dict[str, str] = {}
    if not isinstance(table, dict):
        raise ConformanceError(f"{path}: [ids] must be a table")
    for ident, reason in table.items():
        if ident not in known:
            raise ConformanceError(f"{path}: unknown ID {ident}")
        if not isinstance(reason, str) or not reason.strip():
            raise ConformanceError(f"{path}: {ident} needs a reason string")
        out[ident] = reason.strip()
    return out


def ids_in_text(text: str) -> set[str]:
    """Return every ID written in hyphenated form (``STS-POL-06``) in a text."""
    return {f"{m[1]}-{m[2]}" for m in ID_RE.finditer(text)}


def ids_in_name(name: str) -> set[str]:
    """Return every ID written in underscored form (``sts_pol_06``) in a function name."""
    return {f"{m[1].upper().replace('_', '-')}-{m[2]}" for m in NAME_ID_RE.finditer(name)}


def _test_functions(
    tree: ast.Module,
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    def walk(body: list[ast.stmt], prefix: str) -> Iterable[tuple[str, Any]]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                yield from walk(node.body, f"{prefix}{node.name}::")

    yield from walk(tree.body, "")


def scan_tests(tests_dir: Path, root: Path) -> dict[str, list[str]]:
    """
    Find the IDs each test names.

    Args:
        tests_dir: The directory searched for ``*.py`` files, recursively.
        root: Test names are given relative to this directory.

    Returns:
        ID -> sorted list of ``path::[Class::]function``.

    Raises:
        ConformanceError: A test file does not parse.
    """
    found: dict[str, set[str]] = {}
    for path in sorted(tests_dir.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as e:
            raise ConformanceError(f"{path}: {e}") from None
        rel = path.relative_to(root).as_posix()
        for qualname, node in _test_functions(tree):
            doc = ast.get_docstring(node) or ""
            first = doc.strip().splitlines()[0] if doc.strip() else ""
            for ident in ids_in_name(node.name) | ids_in_text(first):
                found.setdefault(ident, set()).add(f"{rel}::{qualname}")
    return {k: sorted(v) for k, v in found.items()}


def scan_vectors(vectors_dir: Path) -> dict[str, dict[str, list[str]]]:
    """
    Find the IDs each vector case cites.

    Returns:
        ID -> {group: [case id, ...]}.

    Raises:
        ConformanceError: A vector file is not valid JSON or lacks group/cases.
    """
    found: dict[str, dict[str, list[str]]] = {}
    for path in sorted(vectors_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            group = doc["group"]
            cases = doc["cases"]
            for case in cases:
                for ident in case.get("conformance", []):
                    found.setdefault(ident, {}).setdefault(group, []).append(case["id"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConformanceError(f"{path}: not a vector file: {e}") from None
    return found


@dataclass
class Matrix:
    """The computed matrix."""

    items: dict[str, Item]
    coverage: dict[str, Coverage]
    na: dict[str, str]
    unknown: dict[str, list[str]]

    def status(self, ident: str) -> str:
        """Return ``covered``, ``n/a``, ``withdrawn`` or ``uncovered``."""
        if self.coverage[ident].covered:
            return "covered"
        if self.items[ident].withdrawn:
            return "withdrawn"
        if ident in self.na:
            return "n/a"
        return "uncovered"

    def groups(self) -> list[str]:
        """Return the groups in document order."""
        return list(dict.fromkeys(i.group for i in self.items.values()))

    def uncovered(self, groups: Iterable[str]) -> list[str]:
        """Return the uncovered IDs of the given groups, in document order."""
        wanted = set(groups)
        return [
            i.ident
            for i in self.items.values()
            if i.group in wanted and self.status(i.ident) == "uncovered"
        ]


def _order(ident: str, base: dict[str, Item]) -> tuple[int, str]:
    # Checklist items keep their order; project items follow their group's.
    keys = list(base)
    if ident in base:
        return keys.index(ident), ident
    group = group_of(ident)
    last = max((i for i, k in enumerate(keys) if group_of(k) == group), default=len(keys))
    return last, ident


def build(root: Path, ids_file: Path, na_file: Path) -> Matrix:
    """
    Compute the matrix for a repository.

    Args:
        root: The repository root (holds ``tests/`` and ``smtpsts/vectors/``).
        ids_file: The ID list.
        na_file: The not-applicable list.

    Returns:
        The matrix.
    """
    items = load_ids(ids_file)
    project = root / PROJECT_FILE
    if project.is_file():
        extra = load_ids(project)
        clash = sorted(set(extra) & set(items))
        if clash:
            raise ConformanceError(f"{project}: IDs also in the checklist: {', '.join(clash)}")
        items = dict(sorted({**items, **extra}.items(), key=lambda kv: _order(kv[0], items)))
    na = load_na(na_file, items)
    tests_dir = root / "tests"
    tests = scan_tests(tests_dir, root) if tests_dir.is_dir() else {}
    vectors = scan_vectors(root / "smtpsts" / "vectors")
    coverage = {ident: Coverage() for ident in items}
    unknown: dict[str, list[str]] = {}
    for ident, names in tests.items():
        if ident in coverage:
            coverage[ident].tests.extend(names)
        else:
            unknown.setdefault(ident, []).extend(names)
    for ident, groups in vectors.items():
        if ident in coverage:
            coverage[ident].vectors.update(groups)
        elif group_of(ident) != "AMB":  # ambiguity entries are cited, not covered
            unknown.setdefault(ident, []).extend(
                f"vector {g}/{c}" for g, cs in groups.items() for c in cs
            )
    return Matrix(items, coverage, na, unknown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _covered_by(cov: Coverage) -> str:
    parts = [f"`{t.removeprefix('tests/')}`" for t in cov.tests[:MAX_TESTS_SHOWN]]
    if len(cov.tests) > MAX_TESTS_SHOWN:
        parts.append(f"and {len(cov.tests) - MAX_TESTS_SHOWN} more tests")
    for group, cases in sorted(cov.vectors.items()):
        n = len(cases)
        parts.append(f"{n} {group} vector{'s' if n != 1 else ''}")
    return "<br>".join(parts) if parts else "-"


def render(m: Matrix) -> str:
    """
    Render the matrix as MyST Markdown (deterministic: no dates, stable order).

    Returns:
        The text of ``docs/conformance.md``.
    """
    out = [
        (
            "<!-- Generated by tools/conformance.py; do not edit. "
            "Regenerate with: python tools/conformance.py -->"
        ),
        "",
        "# Conformance matrix",
        "",
        (
            "Every normative item of the project's conformance checklist (IDs such as "
            "`STS-POL-06`; see {doc}`implemented-standards`) and what covers it: tests that "
            "name the ID in their name or the first line of their docstring, and "
            "{doc}`reference vectors <vectors>` whose `conformance` list cites it."
        ),
        "",
        "## Summary",
        "",
        "| Group | Items | Covered | Not applicable | Uncovered |",
        "|---|---|---|---|---|",
    ]
    totals = [0, 0, 0, 0]
    for group in m.groups():
        ids = [i for i in m.items.values() if i.group == group and not i.withdrawn]
        st = [m.status(i.ident) for i in ids]
        row = [len(ids), st.count("covered"), st.count("n/a"), st.count("uncovered")]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        out.append(f"| [{group}](#{group.lower()}) | " + " | ".join(map(str, row)) + " |")
    out.append("| **All** | " + " | ".join(f"**{n}**" for n in totals) + " |")
    for group in m.groups():
        ids = [i for i in m.items.values() if i.group == group]
        out += [
            "",
            f"({group.lower()})=",
            f"## {group}: {ids[0].title}" if ids[0].title else f"## {group}",
            "",
            "| ID | Ref | Level | Requirement (short) | Covered by | Status |",
            "|---|---|---|---|---|---|",
        ]
        for item in ids:
            status = m.status(item.ident)
            if status == "n/a":
                status = f"not applicable: {m.na[item.ident]}"
            elif status == "uncovered":
                status = "**uncovered**"
            out.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        item.ident,
                        item.ref,
                        item.level,
                        item.requirement,
                        _covered_by(m.coverage[item.ident]),
                        status,
                    )
                )
                + " |"
            )
    if m.unknown:
        out += [
            "",
            "## Unknown IDs",
            "",
            "These IDs are cited but are not in the checklist:",
            "",
        ]
        for ident, where in sorted(m.unknown.items()):
            out.append(f"- `{ident}`: " + ", ".join(f"`{w}`" for w in sorted(where)))
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--root", type=Path, default=ROOT, help="repository root")
    p.add_argument("--ids", type=Path, help="ID list (default tools/conformance_ids.json)")
    p.add_argument("--na", type=Path, help="N/A list (default tools/conformance_na.toml)")
    p.add_argument("--output", type=Path, help="matrix file (default docs/conformance.md)")
    p.add_argument("--check", action="store_true", help="exit 1 if the matrix file is stale")
    p.add_argument(
        "--require",
        nargs="+",
        metavar="GROUP",
        help="exit 1 if any ID of these groups is uncovered",
    )
    p.add_argument(
        "--refresh-ids",
        nargs="?",
        type=Path,
        const=DEFAULT_SPEC,
        metavar="PATH",
        help="regenerate the ID list from CONFORMANCE.md (default ../shared/spec/CONFORMANCE.md "
        "relative to the root) and exit",
    )
    args = p.parse_args(argv)
    root: Path = args.root
    ids_file = args.ids or root / IDS_FILE
    output = args.output or root / OUTPUT
    try:
        if args.refresh_ids is not None:
            spec = args.refresh_ids if args.refresh_ids.is_absolute() else root / args.refresh_ids
            items = parse_spec(spec.read_text(encoding="utf-8"))
            ids_file.write_text(items_to_json(items), encoding="utf-8")
            sys.stdout.write(f"wrote {len(items)} IDs to {ids_file}\n")
            return 0
        matrix = build(root, ids_file, args.na or root / NA_FILE)
    except (OSError, ConformanceError) as e:
        sys.stderr.write(f"conformance: {e}\n")
        return 2
    text = render(matrix)
    status = 0
    if args.require:
        unknown_groups = sorted(set(args.require) - set(matrix.groups()))
        if unknown_groups:
            sys.stderr.write(f"conformance: unknown group(s): {', '.join(unknown_groups)}\n")
            return 2
        missing = matrix.uncovered(args.require)
        if missing:
            sys.stdout.write(f"{len(missing)} uncovered: {' '.join(missing)}\n")
            status = 1
        else:
            sys.stdout.write(f"all items of {' '.join(args.require)} covered\n")
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            sys.stdout.write(f"{output} is stale: run python tools/conformance.py\n")
            status = 1
    if not args.require and not args.check:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {output}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
