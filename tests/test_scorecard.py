"""
The MTA conformance scorecard (issue 14 item 1): smtpsts's own columns, for real.

One run of ``smtpsts lab --scorecard`` in a private network namespace
(root, ``unshare``): the world's DNS on 127.0.0.1:53, the policy hosts on
127.0.0.1:443, every MX on its own 127.0.1.N:25; the ``io.deliver`` column
(a Python relay on :func:`smtpsts.io.deliver.deliver_connection`) and the
``postfix+smtpsts`` column (Debian's Postfix choosing MX hosts by DNS, with
``smtpsts postfix serve`` as its ``smtp_tls_policy_maps``). Every cell must
show the outcome RFC 8461/7672 requires, read from what the receiving MX
hosts recorded and from Postfix's queue, not from smtpsts.

Cells in :data:`OPEN_BUGS` are smtpsts bugs the scorecard found and that are
not fixed yet: they are asserted to fail exactly as recorded, so that a fix
(or a change of behaviour) shows here and the entry has to go.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import REQUIRE_SERVICES
from smtpsts.lab.scorecard import runner
from smtpsts.lab.scorecard.columns import COLUMNS
from smtpsts.lab.scorecard.runner import Cell, Scorecard
from smtpsts.lab.scorecard.scenarios import SCENARIOS, Scenario, expand

MEASURED = ("io.deliver", "postfix+smtpsts")

OPEN_BUGS: dict[tuple[str, str], tuple[str, str]] = {
    ("postfix+smtpsts", "wildcard-two-labels"): (
        "tls:a.b",
        (
            "RFC 8461 §4.1: '*.d' matches one label, but the answer 'secure match=.d' lets "
            "Postfix 3.7 accept a.b.d (smtpsts/postfix/protocol.py match_patterns)"
        ),
    ),
    ("postfix+smtpsts", "policy-update-new-mx"): (
        "defer",
        (
            "RFC 8461 §8.1: the answer cache (answer_ttl 60 s) keeps serving the superseded "
            "policy past the TXT record's 1 s TTL; passes with answer_ttl = 0"
        ),
    ),
    ("postfix+smtpsts", "mode-none-withdrawal"): (
        "defer",
        (
            "RFC 8461 §8.3: as policy-update-new-mx, the answer cache hides the mode none "
            "policy for answer_ttl; passes with answer_ttl = 0"
        ),
    ),
}
"""``{(column, scenario): (observed, why)}``: smtpsts bugs found by the scorecard, still open."""


def _cells() -> list[tuple[str, str]]:
    return [
        (column, s.name)
        for column in MEASURED
        for s in SCENARIOS
        if COLUMNS[column].dane or not s.dane
    ]


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the scorecard needs root (a private network namespace)"
    for tool in ("unshare", "ip", "mount", "postfix", "sendmail", "postqueue"):
        if shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
            return f"the scorecard needs {tool}"
    return None


@pytest.fixture(scope="module")
def scorecard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run of both columns through the CLI; the JSON it wrote."""
    problem = _unavailable()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("scorecard")
    # Postfix's unprivileged daemons work below --workdir: pytest's own
    # temporary directories are private to root.
    work = Path(tempfile.mkdtemp(prefix="smtpsts-scorecard-test-"))
    work.chmod(0o755)
    command = [
        sys.executable,
        "-m",
        "smtpsts",
        "lab",
        "--scorecard",
        "--mta",
        ",".join(MEASURED),
        "--json",
        str(out / "card.json"),
        "--markdown",
        str(out / "card.md"),
        "--workdir",
        str(work),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    data: dict[str, Any] = json.loads((out / "card.json").read_text())
    data["_stdout"] = done.stdout
    data["_markdown"] = (out / "card.md").read_text()
    data["_returncode"] = done.returncode
    return data


@pytest.mark.parametrize(("column", "scenario"), _cells())
def test_cell(scorecard: dict[str, Any], column: str, scenario: str) -> None:
    """Each smtpsts cell shows the outcome the RFC requires (or an open bug, exactly)."""
    entry = next(s for s in scorecard["scenarios"] if s["name"] == scenario)
    cell = entry["cells"][column]
    if (column, scenario) in OPEN_BUGS:
        observed, why = OPEN_BUGS[(column, scenario)]
        assert (False, observed) == (cell["passed"], cell["observed"]), f"open bug changed: {why}"
    else:
        assert cell["passed"], (
            f"{column} / {scenario}: observed {cell['observed']}, "
            f"required {' or '.join(entry['required'])} ({entry['rule']})"
        )


def test_outputs(scorecard: dict[str, Any]) -> None:
    """The printed table, the JSON and the markdown agree; the exit status says whether all passed."""
    assert list(MEASURED) == scorecard["columns"]
    cells = [(c, s["name"]) for s in scorecard["scenarios"] for c in s["cells"]]
    assert sorted(_cells()) == sorted(cells)
    failed = sum(not cell["passed"] for s in scorecard["scenarios"] for cell in s["cells"].values())
    assert (failed == 0) == scorecard["ok"] == (scorecard["_returncode"] == 0)
    assert f"{len(cells) - failed} pass, {failed} FAIL" in scorecard["_stdout"]
    assert f"{len(cells) - failed} pass, {failed} FAIL (" in scorecard["_markdown"]
    assert "| `valid-enforce` |" in scorecard["_markdown"]


# --------------------------------------------------------------------------- no namespace needed


def test_scenarios_are_well_formed() -> None:
    """At least 25 scenarios, unique names, each with an allowed outcome and an RFC line."""
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names)) >= 25
    for s in SCENARIOS:
        assert s.rule.startswith("RFC "), s.name
        assert all(r in ("deliver", "defer", "bounce") or ":" in r for r in s.required), s.name


@pytest.mark.parametrize(
    ("required", "observed", "passed"),
    [
        (("deliver",), "plain:mx", True),
        (("deliver",), "tls:mx", True),
        (("deliver",), "defer", False),
        (("tls:mx",), "plain:mx", False),
        (("tls:mx", "defer"), "defer", True),
        (("defer",), "lost", False),
    ],
)
def test_judge(required: tuple[str, ...], observed: str, passed: bool) -> None:
    """A cell passes only on an outcome the scenario's RFC line allows."""
    scenario = Scenario("x", "none", required, "RFC 8461 §5", lambda _w, _d: None)
    assert passed is scenario.judge(observed)


def test_expand_and_idn_domain() -> None:
    """Host names are shown relative to the scenario's domain; the IDN scenario uses A-labels."""
    by_name = {s.name: s for s in SCENARIOS}
    assert "xn--bcher-kva.test" == by_name["idn-domain"].domain
    assert "tls:mx2" == expand(by_name["second-mx"], "tls:mx2.second-mx.test")


def test_table_and_markdown() -> None:
    """A failed cell reads FAIL with what was observed, in the table and the markdown."""
    card = Scorecard(
        ("io.deliver",),
        (
            Cell("valid-enforce", "io.deliver", "tls:mx", True),
            Cell("attacker-mx", "io.deliver", "plain:evil", False),
        ),
        {"io.deliver": 1.0},
    )
    out = io.StringIO()
    runner.table(card, out)
    assert "FAIL (plain:evil)" in out.getvalue()
    assert "1 pass, 1 FAIL" in out.getvalue()
    text = runner.markdown(card)
    assert "| `attacker-mx` |" in text
    assert "FAIL (plain:evil)" in text
    assert not card.ok


def test_refuses_without_root(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Not root: a clear refusal (exit 2), nothing started."""
    monkeypatch.delenv("SMTPSTS_SCORECARD_NAMESPACE", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert 2 == runner.main(["--mta", "io.deliver"])
    assert "needs root" in capsys.readouterr().err


def test_unknown_column(capsys: Any) -> None:
    """An unknown column name is refused with the list of columns."""
    assert 2 == runner.main(["--mta", "exim"])
    assert "unknown column exim; choose from io.deliver, postfix+smtpsts" in capsys.readouterr().err


def test_cli_unknown_column(tmp_path: Path) -> None:
    """``smtpsts lab --scorecard --mta`` goes to the scorecard runner."""
    done = subprocess.run(
        [sys.executable, "-m", "smtpsts", "lab", "--scorecard", "--mta", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert 2 == done.returncode
    assert "unknown column nope" in done.stderr


def test_docs_table_lists_every_scenario() -> None:
    """docs/scorecard.md shows a row for every scenario and every open bug."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "scorecard.md").read_text()
    for s in SCENARIOS:
        assert f"| `{s.name}` |" in text, s.name
    bugs = text.split("### The FAILs are smtpsts bugs", 1)[1].split("\n## ", 1)[0]
    for column, scenario in OPEN_BUGS:
        assert f"`{column}`" in bugs
        assert f"`{scenario}`" in bugs
