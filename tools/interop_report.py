# ruff: noqa: E501, ISC004 -- the verdict table and the page text are prose
"""
Run every interop adapter over the shipped vectors and write docs/interop.md (issue 14, item 3).

Usage: ``python tools/interop_report.py [--out docs/interop.md] [--json DIR]``.

Each adapter in ``interop/`` is run through ``smtpsts vectors run --exec``'s
runner (:func:`smtpsts.io.peer.run_exec`). Disagreements are grouped into
classes by group and by the first conformance ID of the case; each class is
written with its smallest input, what differed, the RFC line that decides it
(looked up in ../shared/spec beside the checkout, or $SMTPSTS_SPEC_DIR) and who is right. The
verdicts are the hand-written table ``VERDICTS`` below: a class without one
is listed as "not reviewed".
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtpsts import vectors  # noqa: E402
from smtpsts.io.peer import run_exec  # noqa: E402
from smtpsts.vectors import protocol  # noqa: E402

# The RFC texts: beside the checkout (../shared/spec), or where $SMTPSTS_SPEC_DIR says.
SPEC = Path(os.environ.get("SMTPSTS_SPEC_DIR", ROOT.parent / "shared" / "spec"))
INTEROP = ROOT / "interop"


def _node() -> list[str] | None:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node" / "node_modules" / "mailauth").is_dir():
        return None
    return [node, str(INTEROP / "mailauth_adapter.mjs")]


def _npm_version(package: str) -> str:
    try:
        doc = json.loads((INTEROP / "node" / "node_modules" / package / "package.json").read_text())
    except OSError:
        return "not installed"
    return str(doc.get("version"))


def _py_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


IMPLEMENTATIONS: list[tuple[str, str, Any]] = [
    (
        "smtpsts",
        "smtpsts (this repository, through the protocol)",
        lambda: [sys.executable, str(INTEROP / "smtpsts_adapter.py")],
    ),
    (
        "checkdmarc",
        "checkdmarc (PyPI)",
        lambda: [sys.executable, str(INTEROP / "checkdmarc_adapter.py")],
    ),
    (
        "postfix-mta-sts-resolver",
        "postfix-mta-sts-resolver (PyPI)",
        lambda: [sys.executable, str(INTEROP / "resolver_adapter.py")],
    ),
    (
        "parsedmarc",
        "parsedmarc (PyPI)",
        lambda: [sys.executable, str(INTEROP / "parsedmarc_adapter.py")],
    ),
    ("mailauth", "mailauth (npm)", _node),
]
VERSIONS = {
    "smtpsts": lambda: _py_version("smtpsts"),
    "checkdmarc": lambda: _py_version("checkdmarc"),
    "postfix-mta-sts-resolver": lambda: _py_version("postfix-mta-sts-resolver"),
    "parsedmarc": lambda: _py_version("parsedmarc"),
    "mailauth": lambda: _npm_version("mailauth"),
}

SMTPSTS = "**smtpsts**: the RFC text supports the vectors"
PEER = "**the peer**: the RFC text supports it over the vectors"

#: conformance ID -> (RFC file, phrase on the deciding line, verdict).
VERDICTS: dict[str, tuple[str, str, str]] = {
    "STS-REC-04": (
        "rfc8461.txt",
        "sts-ext-value   = 1*(%x21-3A",
        SMTPSTS + " (no CTL or non-ASCII octet fits any field of the ABNF)",
    ),
    "STS-REC-05": (
        "rfc8461.txt",
        'sts-version     = %s"v=STSv1"',
        SMTPSTS + " (the record starts with the case-sensitive `v=STSv1`, no leading space)",
    ),
    "STS-REC-06": ("rfc8461.txt", 'sts-id          = %s"id=" 1*32(ALPHA / DIGIT)', SMTPSTS),
    "STS-REC-07": (
        "rfc8461.txt",
        'sts-field-delim = *WSP ";" *WSP',
        SMTPSTS + " (empty fields and trailing WSP without `;` do not fit the ABNF)",
    ),
    "STS-REC-08": ("rfc8461.txt", "sts-ext-value   = 1*(%x21-3A", SMTPSTS),
    "STS-REC-11": (
        "rfc8461.txt",
        "is duplicated, all entries except for the first",
        SMTPSTS
        + " (the first `id` wins; the sentence is in §3.2, applied to the record by AMB-04)",
    ),
    "STS-REC-12": (
        "rfc8461.txt",
        'with "v=STSv1;" are discarded',
        SMTPSTS
        + " (a candidate starts `v=STSv1;`; `v=STSv10` and a bare `v=STSv1` are not candidates)",
    ),
    "STS-REC-14": (
        "rfc8461.txt",
        "If the number of resulting records is",
        SMTPSTS + " (one candidate that does not parse gives no policy; the peer keeps it)",
    ),
    "STS-REC-16": (
        "rfc8461.txt",
        "is duplicated, all entries except for the first",
        SMTPSTS + " (a repeated `v` or `id` is ignored; the peer lets the last one win)",
    ),
    "STS-POL-03": (
        "rfc8461.txt",
        'sts-policy-mode-value    =  %s"testing" / %s"enforce" / %s"none"',
        SMTPSTS,
    ),
    "STS-POL-04": (
        "rfc8461.txt",
        "sts-policy-max-age-value = 1*10(DIGIT)",
        SMTPSTS + " (`+5`, `٣` or 11 digits are not 1*10 DIGIT)",
    ),
    "STS-POL-05": (
        "rfc8461.txt",
        "maximum value of 31557600",
        "**open** (AMB-05): the ABNF allows 10 digits and the prose gives a maximum; the peers read the maximum "
        "as a validity limit and reject the policy, smtpsts accepts it and caps the lifetime. The prose supports "
        "the peers at least as well as smtpsts; a rejected policy means no MTA-STS protection, which is why smtpsts "
        "caps instead",
    ),
    "STS-POL-07": (
        "rfc8461.txt",
        'sts-policy-mx-value      = ["*."] Domain',
        "**representation**: the peer keeps `mx` values as written while the vectors' `mx` is normalised; see `mx_text`",
    ),
    "STS-POL-08": (
        "rfc8461.txt",
        'sts-policy-mx-value      = ["*."] Domain',
        SMTPSTS + " (an RFC 5321 Domain: LDH labels of at most 63 octets, valid A-labels)",
    ),
    "STS-POL-09": (
        "rfc8461.txt",
        "the Punycode-encoded A-label [RFC3492] to match against",
        SMTPSTS,
    ),
    "STS-POL-11": (
        "rfc8461.txt",
        "sts-policy-ext-name      = (sts-policy-alphanum)",
        SMTPSTS
        + " (the extension name and value grammar is normative: an invalid line is not an ignorable unknown field)",
    ),
    "STS-POL-12": (
        "rfc8461.txt",
        "is duplicated, all entries except for the first",
        SMTPSTS + " (first occurrence wins; the peer keeps the last)",
    ),
    "STS-POL-13": ("rfc8461.txt", "is duplicated, all entries except for the first", SMTPSTS),
    "STS-POL-16": (
        "rfc8461.txt",
        "*(sts-policy-term sts-policy-field *WSP)",
        SMTPSTS + " (a blank line, a line without `:` or an empty key is not a field of the ABNF)",
    ),
    "STS-POL-20": (
        "rfc8461.txt",
        "sts-policy-term          = LF / CRLF",
        "**not comparable**: the peer has no serialiser; only members it gives were compared",
    ),
    "STS-POL-22": ("rfc8461.txt", "sts-policy-ext-value", SMTPSTS),
    "STS-MX-03": (
        "rfc8461.txt",
        "'*' may only be used to match the entire left-most label",
        SMTPSTS + " (a 64-octet or malformed label is no label; see also STS-MX-07)",
    ),
    "STS-MX-05": (
        "rfc8461.txt",
        "the Punycode-encoded A-label [RFC3492] to match against",
        "**smtpsts** by DNS convention (a trailing root dot names the same host; AMB-27, a project decision)",
    ),
    "STS-MX-07": (
        "rfc8461.txt",
        "the Punycode-encoded A-label [RFC3492] to match against",
        "**smtpsts** for U-labels (the RFC requires A-labels for matching); for malformed host names the RFC is silent "
        "and matching nothing is smtpsts's decision (docs/decisions)",
    ),
    "RPT-REC-02": ("rfc8460.txt", 'tlsrpt-version    = %s"v=TLSRPTv1"', SMTPSTS),
    "RPT-REC-04": ("rfc8460.txt", 'field-delim       = *WSP ";" *WSP', SMTPSTS),
    "RPT-REC-08": (
        "rfc8460.txt",
        "tlsrpt-uri        = URI",
        SMTPSTS
        + " (any RFC 3986 URI is valid syntax; checkdmarc rejects the whole record for URIs it cannot use)",
    ),
    "RPT-REC-09": (
        "rfc8460.txt",
        'schemes are supported: "mailto" and "https"',
        SMTPSTS + " (unsupported schemes are a sender's problem, not a record syntax error)",
    ),
    "RPT-REC-11": (
        "rfc8460.txt",
        'tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)',
        "**open**: the RFC does not say whether duplicate URIs are one endpoint; removing them is smtpsts's choice (AMB-23)",
    ),
    "RPT-REC-12": (
        "rfc8460.txt",
        "tlsrpt-uri        = URI",
        SMTPSTS + " (a `mailto:` URI with hfields or percent-encoding is a valid URI)",
    ),
    "RPT-JSON-01": ("rfc8460.txt", "JSON (I-JSON) format", SMTPSTS),
    "RPT-JSON-02": (
        "rfc8460.txt",
        '"organization-name": organization-name',
        SMTPSTS + " (member names are case-sensitive)",
    ),
    "RPT-JSON-03": (
        "rfc8460.txt",
        '"start-datetime": date-time',
        SMTPSTS
        + " (an RFC 3339 date-time; `yesterday`, year 0000 and an end before the start are not)",
    ),
    "RPT-JSON-07": (
        "rfc8460.txt",
        '"failure-details": [',
        "**representation** (absent and empty `failure-details` mean the same)",
    ),
    "RPT-JSON-08": (
        "rfc8460.txt",
        '"policy-type": policy-type',
        "**open**: smtpsts keeps unknown policy types (RPT-JSON-25); rejecting them is defensible",
    ),
    "RPT-JSON-12": (
        "rfc8460.txt",
        '"mx-host": mx-host-pattern',
        "**smtpsts**: the JSON schema and Appendix B name the member `mx-host`; parsedmarc reads `mx-host-pattern`, the "
        "name the RFC's prose (§4.4) gives the field, and so loses it",
    ),
    "RPT-JSON-13": (
        "rfc8460.txt",
        '"total-successful-session-count"',
        "**open**: the counts are required; parsedmarc rejects a report without them, smtpsts reads them as 0 (receiver leniency)",
    ),
    "RPT-JSON-19": (
        "rfc8460.txt",
        '"policy-domain": domain',
        '**open**: smtpsts treats `null`/`""` as absent (receiver leniency); rejecting is defensible',
    ),
    "RPT-JSON-20": ("rfc8460.txt", '"organization-name": organization-name', SMTPSTS),
    "RPT-JSON-23": (
        "rfc8460.txt",
        '"policy-domain": domain',
        "**open**: receiver leniency (smtpsts) against strictness (peer)",
    ),
    "RPT-JSON-24": (
        "rfc8460.txt",
        '"start-datetime": date-time',
        "**representation**: parsedmarc keeps the datetime text, the vectors normalise it to UTC `Z`; the instants are the same (a leap second or lowercase `t` is valid RFC 3339)",
    ),
    "RPT-JSON-25": ("rfc8460.txt", '"policy-type": policy-type', "**open**: receiver leniency"),
    "RPT-JSON-26": (
        "rfc8460.txt",
        '"policy-string"',
        "**representation**: a Microsoft quirk that smtpsts unwraps",
    ),
    "RPT-JSON-27": (
        "rfc8460.txt",
        '"mx-host": "*.mail.company-y.example"',
        "**smtpsts** (the RFC's own Appendix B example, with `mx-host`)",
    ),
    "RPT-SEND-04": (
        "rfc8460.txt",
        'multipart/report; report-type="tlsrpt"',
        "**open**: the mail uses the non-standard `application/tlsrpt` part that smtpsts also accepts",
    ),
}


def _rfc_line(file: str, phrase: str) -> str:
    path = SPEC / file
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"{file}: (spec text not available)"
    for number, line in enumerate(lines, 1):
        if phrase in line:
            return f"RFC {file[3:7]} line {number}: `{line.strip()}`"
    return f"{file}: phrase not found: `{phrase}`"


def _short(value: Any, limit: int = 140) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cases() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["group"], c["id"]): c for d in vectors.shipped_documents() for c in d["cases"]}


def run_all(json_dir: Path | None) -> list[tuple[str, str, str, list[vectors.CaseResult] | None]]:
    """Run every adapter; an adapter whose peer is missing gets ``None``."""
    docs = vectors.shipped_documents()
    runs = []
    for key, title, command_of in IMPLEMENTATIONS:
        command = command_of()
        results = None if command is None else run_exec(command, docs, timeout=30)
        runs.append((key, title, VERSIONS[key](), results))
        if json_dir is not None and results is not None:
            json_dir.mkdir(parents=True, exist_ok=True)
            (json_dir / f"{key}.json").write_text(
                json.dumps([_as_dict(r) for r in results], indent=1) + "\n"
            )
    return runs


def _as_dict(r: vectors.CaseResult) -> dict[str, Any]:
    return {
        "group": r.group,
        "id": r.case_id,
        "ok": r.ok,
        "unsupported": r.unsupported,
        "message": r.message,
    }


def render(runs: list[tuple[str, str, str, list[vectors.CaseResult] | None]]) -> str:
    """Write the page."""
    cases = _cases()
    out = [
        "# Interop: the vectors against other implementations",
        "",
        "<!-- generated by tools/interop_report.py; do not edit by hand -->",
        "",
        "Every adapter in `interop/` ran over the shipped vectors with",
        '`smtpsts vectors run --exec` ({doc}`vectors`, "Running the vectors against another implementation").',
        "A case is *agreed* when the answer matches every member of `expect` the implementation gives",
        "(members it does not model are not compared), *disagreed* when it does not, and *unsupported*",
        "when the implementation does not do that case (a group it lacks, smtpsts's lenient mode, an",
        "input form its API does not take, or a case about members it does not produce).",
        "Regenerate with `python tools/interop_report.py` (needs the peers installed:",
        "`pip install checkdmarc postfix-mta-sts-resolver==1.5.1 parsedmarc` and `npm install` in `interop/node/`).",
        "",
        "## Summary",
        "",
        "| implementation | version | agreed | disagreed | unsupported | agreement where judged |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, _title, version, results in runs:
        if results is None:
            out.append(f"| {key} | {version} | - | - | - | not run |")
            continue
        counts = protocol.tally(results)
        a = sum(c["agreed"] for c in counts.values())
        d = sum(c["disagreed"] for c in counts.values())
        u = sum(c["unsupported"] for c in counts.values())
        share = f"{100 * a / (a + d):.1f}%" if a + d else "-"
        out.append(f"| {key} | {version} | {a} | {d} | {u} | {share} |")
    out += [
        "",
        "## Per group",
        "",
        "Cells are agreed / disagreed / unsupported; groups no peer does are left out.",
        "",
    ]
    groups = [
        g
        for g in vectors.GROUPS
        if any(r and any(x.group == g and not x.unsupported for x in r) for *_, r in runs[1:])
    ]
    out.append("| implementation | " + " | ".join(groups) + " |")
    out.append("|---|" + "---|" * len(groups))
    for key, _title, _version, results in runs:
        if results is None:
            continue
        counts = protocol.tally(results)
        cells = [
            f"{counts[g]['agreed']} / {counts[g]['disagreed']} / {counts[g]['unsupported']}"
            for g in groups
        ]
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    for _key, title, version, results in runs:
        out += ["", f"## {title} {version}", ""]
        if results is None:
            out.append("Not run: the peer is not installed here.")
            continue
        classes: dict[tuple[str, str], list[vectors.CaseResult]] = defaultdict(list)
        for r in results:
            if not r.ok and not r.unsupported:
                classes[(r.group, cases[(r.group, r.case_id)]["conformance"][0])].append(r)
        if not classes:
            out.append("Agrees with every case it was judged on.")
            continue
        out.append(
            f"{sum(len(v) for v in classes.values())} disagreements in {len(classes)} classes."
        )
        for (group, ident), members in sorted(classes.items()):
            smallest = min(
                members, key=lambda r: len(_short(_input(cases[(group, r.case_id)]), 10**6))
            )
            case = cases[(group, smallest.case_id)]
            file, phrase, verdict = VERDICTS.get(ident, ("", "", "not reviewed"))
            ids = ", ".join(f"`{m.case_id}`" for m in members[:6]) + (
                " ..." if len(members) > 6 else ""
            )
            out += [
                "",
                f"### {group}: {ident} ({len(members)})",
                "",
                f"- cases: {ids}",
                f"- smallest input (`{smallest.case_id}`): `{_short(_input(case))}`",
                f"- what differed: {_short(smallest.message, 220)}",
                f"- rule: {_rfc_line(file, phrase) if file else 'see ' + ident}",
                f"- who is right: {verdict}",
            ]
    return "\n".join(out) + "\n"


def _input(case: dict[str, Any]) -> Any:
    return {"input_hex": case["input_hex"]} if "input_hex" in case else case["input"]


def main() -> int:
    """Run the adapters and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "interop.md")
    parser.add_argument("--json", type=Path, help="also write each implementation's results here")
    parser.add_argument(
        "--npm-install", action="store_true", help="npm install mailauth into interop/node first"
    )
    args = parser.parse_args()
    if args.npm_install:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=INTEROP / "node",
            check=True,
            timeout=300,
        )
    runs = run_all(args.json)
    args.out.write_text(render(runs), encoding="utf-8")
    for key, _title, version, results in runs:
        if results is None:
            print(f"{key}: not run")
            continue
        counts = protocol.tally(results)
        totals = {
            k: sum(c[k] for c in counts.values()) for k in ("agreed", "disagreed", "unsupported")
        }
        print(f"{key} {version}: {totals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
