"""
Write the issue 18 vectors (revised duplicate rules, ``interop`` traps) into the shipped files.

Run from the repository root: ``.venv/bin/python tools/make_interop_vectors.py``. It is
idempotent: cases are put in by id (replaced when present, appended otherwise), retired
ids are removed, and existing cases named in ``TAGGED`` get the ``interop`` tag and their
``trap``. Every case here carries ``tags: ["interop"]`` and a ``trap`` member saying what
implementations are known to get wrong and which RFC text decides it (docs/vectors.md).

Retired ids (a case that changes meaning gets a new id, docs/vectors.md): their inputs
now parse, under the revised STS-REC-16 / STS-POL-13 / AMB-15, and live on under the new
ids in ``RETIRED``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "smtpsts" / "vectors"

POLICY = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n"
POLICY_LINES = ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 604800"]

RETIRED = {
    "sts-record": {
        "repeated-version-wrong": "repeated-version-other-ignored",
        "duplicate-id-invalid": "duplicate-id-invalid-ignored",
    },
    "sts-policy": {"pol-second-mode-invalid": "pol-second-mode-invalid-ignored"},
    "tlsrpt-record": {"version-repeated-wrong": "version-repeated-other-ignored"},
}
"""Per group: retired id -> the id of the case that replaces it."""

DUPLICATE_TRAP = (
    "RFC 8461 §3.2: 'If any non-repeated field [...] is duplicated, all entries except for "
    "the first SHALL be ignored': a later duplicate is ignored whatever its value; parsers "
    "that keep the last one, or reject the text, get it wrong"
)


def _record(record_id: str, extensions: list[list[str]] | None = None) -> dict[str, Any]:
    ext = extensions or []
    text = " ".join(f"{f};" for f in ["v=STSv1", f"id={record_id}", *(f"{n}={v}" for n, v in ext)])
    return {"id": record_id, "extensions": ext, "to_text": text}


def _policy(extra: str, **expect: Any) -> dict[str, Any]:
    lines = POLICY_LINES + extra.splitlines()
    base = {"mode": "enforce", "mx": ["mail.example.com"], "max_age": 604800, "extensions": []}
    return base | {"lines": lines} | expect


def _rpt(rua: list[str], endpoints: list[dict[str, str]], **expect: Any) -> dict[str, Any]:
    return {
        "rua": rua,
        "extensions": [],
        "to_text": f"v=TLSRPTv1; rua={','.join(rua)};",
        "endpoints": endpoints,
    } | expect


def _max_age_case(case_id: str, max_age: int, trap: str) -> dict[str, Any]:
    return {
        "id": case_id,
        "input": POLICY.replace("604800", str(max_age)),
        "expect": {"max_age": max_age, "effective_max_age": 31557600},
        "conformance": ["STS-POL-04", "STS-POL-05", "AMB-05"],
        "trap": "RFC 8461 §3.2: max_age is 1*10(DIGIT), valid syntax up to 9999999999; " + trap,
    }


MAILTO_A = {"kind": "mailto", "address": "a@x.example"}

STS_RECORD = [
    {
        "id": "duplicate-id-invalid-ignored",
        "input": "v=STSv1; id=a; id=x-y",
        "expect": _record("a"),
        "conformance": ["STS-REC-11", "STS-REC-16", "AMB-04", "AMB-15"],
        "trap": DUPLICATE_TRAP
        + " (the second id does not fit sts-id but still fits sts-extension)",
        "note": "replaces duplicate-id-invalid (issue 18): the record is not thrown away",
    },
    {
        "id": "repeated-version-other-ignored",
        "input": "v=STSv1; id=a; v=STSv2",
        "expect": _record("a"),
        "conformance": ["STS-REC-16", "AMB-04", "AMB-15"],
        "trap": DUPLICATE_TRAP + " (the record's head is the first v)",
        "note": "replaces repeated-version-wrong (issue 18)",
    },
    {
        "id": "duplicate-id-valid-second",
        "input": "v=STSv1; id=abc; id=def",
        "expect": _record("abc"),
        "conformance": ["STS-REC-11", "STS-REC-16", "AMB-04"],
        "trap": DUPLICATE_TRAP + "; map-based parsers return id def",
    },
    {
        "id": "duplicate-id-empty-second",
        "input": "v=STSv1; id=abc; id=",
        "error": "RecordSyntaxError",
        "conformance": ["STS-REC-08", "STS-REC-16"],
        "trap": "RFC 8461 §3.1: an ignored duplicate must still be a field of the ABNF; "
        "'id=' fits neither sts-id nor sts-extension (ext-value is 1*)",
    },
    {
        "id": "extension-name-leading-hyphen",
        "input": "v=STSv1; id=a; -x=1",
        "error": "RecordSyntaxError",
        "conformance": ["STS-REC-08"],
        "trap": "RFC 8461 §3.1: sts-ext-name starts with ALPHA / DIGIT; '-' and '.' are "
        "allowed only after the first character",
    },
    {
        "id": "extension-name-leading-dot",
        "input": "v=STSv1; id=a; .x=1",
        "error": "RecordSyntaxError",
        "conformance": ["STS-REC-08"],
        "trap": "RFC 8461 §3.1: sts-ext-name starts with ALPHA / DIGIT",
    },
    {
        "id": "extension-value-invalid-utf8",
        "input_hex": b"v=STSv1; id=a; x=\xff\xfe".hex(),
        "error": "RecordSyntaxError",
        "conformance": ["STS-REC-04", "STS-REC-08"],
        "trap": "RFC 8461 §3.1: sts-ext-value is %x21-3A / %x3C / %x3E-7E, so any byte "
        "above 0x7E (invalid UTF-8 included) makes the record invalid; decoders that "
        "replace bad bytes with U+FFFD accept it",
    },
    {
        "id": "extension-value-utf8",
        "input_hex": "v=STSv1; id=a; x=é".encode().hex(),
        "error": "RecordSyntaxError",
        "conformance": ["STS-REC-04"],
        "trap": "RFC 8461 §3.1: the record is US-ASCII; valid UTF-8 is refused too",
    },
]

STS_POLICY = [
    {
        "id": "pol-second-mode-invalid-ignored",
        "input": "version: STSv1\nmode: enforce\nmode: bogus\nmx: mail.example.com\n"
        "max_age: 604800\n",
        "expect": {
            "mode": "enforce",
            "mx": ["mail.example.com"],
            "max_age": 604800,
            "extensions": [],
        },
        "conformance": ["STS-POL-12", "STS-POL-13", "AMB-15"],
        "trap": DUPLICATE_TRAP,
        "note": "replaces pol-second-mode-invalid (issue 18): the enforce policy is kept",
    },
    {
        "id": "pol-second-mode-capitalised-ignored",
        "input": POLICY + "mode: Enforce\n",
        "expect": _policy("mode: Enforce"),
        "conformance": ["STS-POL-12", "STS-POL-13", "AMB-15"],
        "trap": DUPLICATE_TRAP + "; rejecting the policy leaves the sender with none (a downgrade)",
    },
    {
        "id": "pol-second-version-other-ignored",
        "input": POLICY + "version: STSv2\n",
        "expect": _policy("version: STSv2"),
        "conformance": ["STS-POL-12", "STS-POL-13", "AMB-15"],
        "trap": DUPLICATE_TRAP,
    },
    {
        "id": "pol-second-max-age-invalid-ignored",
        "input": POLICY + "max_age: -1\n",
        "expect": _policy("max_age: -1"),
        "conformance": ["STS-POL-12", "STS-POL-13", "AMB-15"],
        "trap": DUPLICATE_TRAP + "; parsers that keep the last max_age reject -1",
    },
    {
        "id": "pol-second-extension-ignored",
        "input": POLICY + "foo: 1\nfoo: 2\n",
        "expect": _policy("foo: 1\nfoo: 2", extensions=[["foo", "1"]]),
        "conformance": ["STS-POL-10", "STS-POL-12"],
        "trap": DUPLICATE_TRAP + " (extensions are non-repeated fields too)",
    },
    {
        "id": "pol-first-mode-invalid-second-valid",
        "input": "version: STSv1\nmode: Enforce\nmode: enforce\nmx: mail.example.com\n"
        "max_age: 604800\n",
        "error": "PolicySyntaxError",
        "reason": "bad-mode",
        "conformance": ["STS-POL-03", "STS-POL-13", "AMB-15"],
        "trap": "RFC 8461 §3.2: the first occurrence counts, so it must fit its grammar; "
        "skipping it for a later valid one changes what the policy says",
    },
    {
        "id": "pol-second-mode-empty",
        "input": POLICY + "mode:\n",
        "error": "PolicySyntaxError",
        "reason": "bad-extension-value",
        "conformance": ["STS-POL-11", "STS-POL-13"],
        "trap": "RFC 8461 §3.2: an ignored duplicate must still be a field of the ABNF; an "
        "empty value fits no field",
    },
    _max_age_case(
        "pol-max-age-2-31-minus-1",
        2**31 - 1,
        "the largest signed 32-bit integer; the cache lifetime is still capped at 31557600",
    ),
    _max_age_case(
        "pol-max-age-2-31",
        2**31,
        "2^31 overflows a signed 32-bit integer (some parsers reject the policy, some wrap "
        "to a negative age)",
    ),
    _max_age_case(
        "pol-max-age-2-32",
        2**32,
        "2^32 wraps an unsigned 32-bit integer to 0 (a policy that is never cached)",
    ),
    {
        "id": "pol-extension-name-leading-hyphen",
        "input": POLICY + "-ext: v\n",
        "error": "PolicySyntaxError",
        "reason": "bad-key",
        "conformance": ["STS-POL-11"],
        "trap": "RFC 8461 §3.2: sts-policy-ext-name starts with a letter or digit",
    },
    {
        "id": "pol-extension-name-leading-dot",
        "input": POLICY + ".ext: v\n",
        "error": "PolicySyntaxError",
        "reason": "bad-key",
        "conformance": ["STS-POL-11"],
        "trap": "RFC 8461 §3.2: sts-policy-ext-name starts with a letter or digit",
    },
    {
        "id": "pol-mx-xn-empty-label",
        "input": POLICY.replace("mail.example.com", "xn--.example"),
        "error": "PolicySyntaxError",
        "reason": "bad-mx",
        "conformance": ["STS-POL-08", "STS-POL-09"],
        "trap": "RFC 8461 §3.2 and RFC 5891 §4.4: 'xn--' with nothing after it is not an "
        "A-label (Punycode of the empty string); LDH-only checks accept it",
    },
    {
        "id": "pol-mx-label-64-interop",
        "input": POLICY.replace("mail.example.com", "a" * 64 + ".example"),
        "error": "PolicySyntaxError",
        "reason": "bad-mx",
        "conformance": ["STS-POL-08"],
        "trap": "RFC 1035 §2.3.4 (through RFC 5321 Domain): a label is at most 63 octets; "
        "regular expressions without a length bound accept 64",
    },
    {
        "id": "pol-extension-invalid-utf8",
        "input_hex": (POLICY.encode() + b"ext: caf\xc3\n").hex(),
        "error": "PolicySyntaxError",
        "reason": "not-utf8",
        "conformance": ["STS-POL-17"],
        "trap": "RFC 8461 §3.2: the policy is UTF-8 (sts-policy-vchar); a truncated "
        "sequence in an extension value makes the body invalid, it is not replaced by U+FFFD",
    },
    {
        "id": "pol-mx-underscore-interop",
        "input": POLICY.replace("mail.example.com", "mail_1.example.com"),
        "error": "PolicySyntaxError",
        "reason": "bad-mx",
        "conformance": ["STS-POL-08"],
        "trap": "RFC 8461 §3.2 and RFC 5321 §4.1.2: an mx value is a Domain of LDH labels; "
        "'_' is allowed in DNS names but not in host names (docs/decisions.md)",
    },
]

TLSRPT_RECORD = [
    {
        "id": "version-repeated-other-ignored",
        "input": "v=TLSRPTv1; rua=mailto:r@x.example; v=TLSRPTv2",
        "expect": _rpt(["mailto:r@x.example"], [{"kind": "mailto", "address": "r@x.example"}]),
        "conformance": ["RPT-REC-05", "AMB-04"],
        "trap": "RFC 8460 §3 says nothing of duplicates, but the later v fits "
        "tlsrpt-extension and 'Parsers MUST accept TXT records that are syntactically "
        "valid'; smtpsts ignores it, as RFC 8461 §3.2 does",
        "note": "replaces version-repeated-wrong (issue 18)",
    },
    {
        "id": "rua-wsp-after-equals",
        "input": "v=TLSRPTv1; rua= mailto:a@x.example",
        "error": "TLSRPTRecordSyntaxError",
        "reason": "whitespace-after-rua",
        "conformance": ["RPT-REC-03"],
        "trap": 'RFC 8460 §3: tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri): '
        "WSP only around the commas, not after 'rua='",
    },
    {
        "id": "rua-wsp-after-equals-lenient",
        "input": {"text": "v=TLSRPTv1; rua= mailto:a@x.example", "lenient": True},
        "expect": _rpt(["mailto:a@x.example"], [MAILTO_A], lenient=True),
        "conformance": ["RPT-REC-03", "AMB-01"],
        "trap": "RFC 8460 §3: lenient mode may accept WSP after 'rua=', flagged as lenient",
    },
    {
        "id": "rua-non-ascii",
        "input": "v=TLSRPTv1; rua=mailto:r\u00e9@x.example",
        "error": "TLSRPTRecordSyntaxError",
        "conformance": ["RPT-REC-04", "RPT-REC-10"],
        "trap": "RFC 8460 §3 and RFC 3986 §2: a URI is ASCII; a non-ASCII mailbox must be "
        "percent-encoded (mailto:r%C3%A9@x.example)",
    },
    {
        "id": "rua-percent-encoded-utf8",
        "input": "v=TLSRPTv1; rua=mailto:r%C3%A9@x.example",
        "expect": _rpt(
            ["mailto:r%C3%A9@x.example"], [{"kind": "mailto", "address": "r\u00e9@x.example"}]
        ),
        "conformance": ["RPT-REC-10", "RPT-REC-12"],
        "trap": "RFC 6068 §2 and RFC 6531: the percent-encoded UTF-8 mailbox is valid and "
        "decodes to an SMTPUTF8 address",
    },
    {
        "id": "rua-curly-braces",
        "input": "v=TLSRPTv1; rua=https://r.example/{x}",
        "error": "TLSRPTRecordSyntaxError",
        "reason": "invalid-rua",
        "conformance": ["RPT-REC-10"],
        "trap": "RFC 3986 §2: '{' and '}' are not URI characters; URL libraries that "
        "follow WHATWG URL parsing accept them",
    },
    {
        "id": "rua-pipe",
        "input": "v=TLSRPTv1; rua=https://r.example/a|b",
        "error": "TLSRPTRecordSyntaxError",
        "reason": "invalid-rua",
        "conformance": ["RPT-REC-10"],
        "trap": "RFC 3986 §2: '|' is not a URI character",
    },
    {
        "id": "trailing-wsp-after-delimiter",
        "input": "v=TLSRPTv1; rua=mailto:a@x.example; \t",
        "expect": _rpt(["mailto:a@x.example"], [MAILTO_A]),
        "conformance": ["RPT-REC-04"],
        "trap": "RFC 8460 §3: field-delim = *WSP \";\" *WSP, so WSP after a final ';' is "
        "valid, while WSP after the last field without ';' is not",
    },
]

MX_MATCH = [
    {
        "id": "match-underscore-host-under-wildcard",
        "input": {"patterns": ["*.example.com"], "host": "mail_1.example.com"},
        "expect": {"match": False},
        "conformance": ["STS-MX-03", "STS-POL-08"],
        "trap": "RFC 8461 §4.1 matches MX host names; 'mail_1' is not an LDH label "
        "(RFC 5321 §4.1.2), so smtpsts refuses the match (docs/decisions.md); "
        "implementations that compare suffixes accept it",
    },
    {
        "id": "match-xn-empty-label-host",
        "input": {"patterns": ["*.example.com"], "host": "xn--.example.com"},
        "expect": {"match": False},
        "conformance": ["STS-MX-03"],
        "trap": "RFC 5891 §4.4: 'xn--' alone is not an A-label, so the host is malformed",
    },
]


def _shipped_case(group: str, case_id: str) -> dict[str, Any]:
    doc = json.loads((VECTORS / f"{group}.json").read_text(encoding="utf-8"))
    case: dict[str, Any] = next(c for c in doc["cases"] if c["id"] == case_id)
    return case


# The RFC 8460 report every tlsrpt-report trap varies, and what smtpsts writes for it.
_BASE_CASE = _shipped_case("tlsrpt-report", "sts-and-tlsa-example")
_REPORT: dict[str, Any] = _BASE_CASE["input"]
_REPORT_OUT: dict[str, Any] = _BASE_CASE["expect"]


def _report_with(start: str | None = None, end: str | None = None) -> dict[str, Any]:
    doc = json.loads(json.dumps(_REPORT))
    if start is not None:
        doc["date-range"]["start-datetime"] = start
    if end is not None:
        doc["date-range"]["end-datetime"] = end
    return doc


TLSRPT_REPORT = [
    {
        "id": "member-name-case-policy-type",
        "input": json.dumps(_REPORT).replace('"policy-type"', '"Policy-Type"'),
        "error": "ReportSyntaxError",
        "conformance": ["RPT-JSON-08"],
        "trap": "RFC 8259 §4 and RFC 8460 §4.4: member names are case-sensitive; "
        "'Policy-Type' is an unknown member, so policy-type is missing",
    },
    {
        "id": "member-name-case-organization-name",
        "input": json.dumps(_REPORT).replace('"organization-name"', '"Organization-Name"'),
        "expect": {k: v for k, v in _REPORT_OUT.items() if k != "organization-name"},
        "conformance": ["RPT-JSON-02", "RPT-JSON-23"],
        "trap": "RFC 8259 §4: member names are case-sensitive; 'Organization-Name' is an "
        "unknown member and ignored, so the report has no organization-name",
    },
    {
        "id": "data-after-json-value",
        "input": json.dumps(_REPORT) + " x",
        "error": "ReportSyntaxError",
        "conformance": ["RPT-JSON-01"],
        "trap": "RFC 8259 §2: JSON-text = ws value ws; decoders that stop after the first "
        "value (raw_decode, streaming parsers) accept trailing data",
    },
    {
        "id": "second-json-value",
        "input": json.dumps(_REPORT) + "{}",
        "error": "ReportSyntaxError",
        "conformance": ["RPT-JSON-01"],
        "trap": "RFC 8259 §2: one JSON value per report",
    },
    {
        "id": "trailing-json-whitespace",
        "input": json.dumps(_REPORT) + "\r\n",
        "expect": _REPORT_OUT,
        "conformance": ["RPT-JSON-01"],
        "trap": "RFC 8259 §2: whitespace after the value is part of JSON-text",
    },
    {
        "id": "datetime-leap-second",
        "input": _report_with(end="2024-03-05T23:59:60Z"),
        "expect": _REPORT_OUT,
        "conformance": ["RPT-JSON-24", "AMB-14"],
        "trap": "RFC 3339 §5.6/§5.7: time-second may be 60 (a leap second); smtpsts reads "
        "it as :59; datetime libraries that refuse :60 reject the report",
    },
    {
        "id": "datetime-lowercase-t-z",
        "input": _report_with(start="2024-03-05t00:00:00z"),
        "expect": _REPORT_OUT,
        "conformance": ["RPT-JSON-24", "AMB-14"],
        "trap": "RFC 3339 §5.6 NOTE: 'T' and 'Z' may be lower case",
    },
    {
        "id": "datetime-year-0000",
        "input": _report_with(start="0000-01-01T00:00:00Z", end="0000-01-01T23:59:59Z"),
        "error": "ReportSyntaxError",
        "conformance": ["RPT-JSON-03", "RPT-JSON-24"],
        "trap": "RFC 3339 §5.6: date-fullyear = 4DIGIT admits 0000, which no report can "
        "be about; smtpsts refuses it naming the field (docs/decisions.md), it must not "
        "crash (Python's datetime starts at year 1)",
    },
]

TAGGED = {
    "sts-record": {
        "duplicate-id-first-wins": DUPLICATE_TRAP,
        "trailing-wsp-without-delimiter": "RFC 8461 §3.1: WSP after the last field must be "
        "followed by ';' (sts-field-delim = *WSP \";\" *WSP); trimming parsers accept it",
        "trailing-delimiter-and-wsp": "RFC 8461 §3.1: WSP after a final ';' is valid",
        "extension-name-underscore-first": "RFC 8461 §3.1: sts-ext-name starts with a "
        "letter or digit",
    },
    "sts-policy": {
        "pol-duplicate-mode": DUPLICATE_TRAP,
        "pol-max-age-9999999999": "RFC 8461 §3.2: max_age is 1*10(DIGIT); the largest "
        "value overflows 32-bit integers and is valid syntax (AMB-05)",
        "pol-mx-label-64": "RFC 1035 §2.3.4: a label is at most 63 octets",
        "pol-trailing-space-every-line": "RFC 8461 §3.2: WSP at the end of a line is "
        "allowed and not part of the value",
        "pol-mx-underscore": "RFC 5321 §4.1.2: an mx value is LDH labels; '_' is not allowed",
    },
    "tlsrpt-record": {
        "trailing-wsp": "RFC 8460 §3: WSP after the last field must be followed by ';'",
        "rua-space-in-uri": "RFC 3986 §2: a space is not a URI character",
        "rua-double-quote": "RFC 3986 §2: '\"' is not a URI character",
    },
    "mx-match": {
        "match-malformed-underscore": "RFC 5321 §4.1.2: '_' is not an LDH host-name "
        "character, so the host matches no pattern",
        "match-wildcard-label-64": "RFC 1035 §2.3.4: a 64-octet label is not a host name",
    },
    "tlsrpt-report": {
        "duplicate-member": "RFC 7493 §2.3 (I-JSON, required by RFC 8460 §4): member names "
        "must be unique; most JSON decoders keep the last one silently",
        "mx-host-string": "RFC 8460 Appendix B writes mx-host as one string, §4.4 "
        "(erratum 6241) as an array: readers must take both",
        "sts-and-tlsa-example": "RFC 8460 §4.4 (erratum 6241): mx-host as an array of strings",
        "datetime-lowercase": "RFC 3339 §5.6 NOTE: 't' and 'z' may be lower case",
    },
}

CASES = {
    "sts-record": STS_RECORD,
    "sts-policy": STS_POLICY,
    "tlsrpt-record": TLSRPT_RECORD,
    "mx-match": MX_MATCH,
    "tlsrpt-report": TLSRPT_REPORT,
}


def _tagged(case: dict[str, Any], trap: str) -> dict[str, Any]:
    out = {k: v for k, v in case.items() if k not in ("tags", "trap")}
    out["tags"] = ["interop"]
    out["trap"] = trap
    return out


def update(group: str) -> Path:
    """
    Put this module's cases for ``group`` into its shipped file.

    Args:
        group: The vector group.

    Returns:
        The file written.
    """
    path = VECTORS / f"{group}.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    retired = RETIRED.get(group, {})
    tagged = TAGGED.get(group, {})
    cases = [
        _tagged(c, tagged[c["id"]]) if c["id"] in tagged else c
        for c in doc["cases"]
        if c["id"] not in retired
    ]
    index = {c["id"]: i for i, c in enumerate(cases)}
    for case in CASES.get(group, []):
        new = _tagged(case, case["trap"])
        if new["id"] in index:
            cases[index[new["id"]]] = new
        else:
            index[new["id"]] = len(cases)
            cases.append(new)
    doc["cases"] = cases
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main() -> None:
    """Write every group this module has cases for."""
    for group in CASES:
        print(update(group))


if __name__ == "__main__":
    main()
