"""Tests for smtpsts.lint and the ``smtpsts policy lint`` / ``smtpsts record lint`` commands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts import Policy, PolicySyntaxError
from smtpsts._cli import main
from smtpsts._cli.lint import RULES_PAGE
from smtpsts.lint import Problem, Severity, lint_policy, lint_record, record_kind
from smtpsts.policy import MAX_POLICY_BYTES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BASE = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n"


def codes(problems):
    return [(p.severity.value, p.code, p.line) for p in problems]


class TestProblem:
    def test_from_error(self):
        """STS-POL-03: a parser error becomes an error problem with its position and IDs."""
        error = PolicySyntaxError(
            "bad", line=2, offset=6, conformance=("STS-POL-03",), reason="bad-mode"
        )

        assert Problem(Severity.ERROR, "bad-mode", "bad", 2, 6, ("STS-POL-03",)) == (
            Problem.from_error(error)
        )

    def test_to_json(self):
        """The JSON form has every field, severity as its word and IDs as a list."""
        problem = Problem("warning", "mode-testing", "m", 2, None, ["STS-POL-03"])

        assert {
            "severity": "warning",
            "code": "mode-testing",
            "message": "m",
            "line": 2,
            "offset": None,
            "conformance": ["STS-POL-03"],
        } == problem.to_json()


class TestLintPolicy:
    def test_clean(self):
        """STS-POL-18: a good enforce policy has no problems."""
        assert [] == lint_policy(BASE)

    def test_example_file_is_clean(self):
        """STS-POL-18: examples/policy.txt is a valid enforce policy with no warnings."""
        assert [] == lint_policy((EXAMPLES / "policy.txt").read_bytes())

    def test_risky_example_file(self):
        """STS-POL-01, STS-POL-03, STS-POL-04, STS-POL-10, STS-POL-14, STS-MX-03: warnings only."""
        problems = lint_policy((EXAMPLES / "policy-risky.txt").read_bytes())

        assert [
            ("warning", "mode-testing", 2),
            ("warning", "mixed-line-endings", 2),
            ("warning", "wildcard-mx", 4),
            ("warning", "short-max-age", 5),
            ("warning", "key-typo", 6),
            ("warning", "unknown-key", 7),
        ] == codes(problems)

    @pytest.mark.parametrize(
        ("replace", "code", "ids"),
        [
            (("mode: enforce", "mode: testing"), "mode-testing", ("STS-POL-03",)),
            (("mode: enforce", "mode: none"), "mode-none", ("STS-POL-06", "AMB-24")),
            (("604800", "3600"), "short-max-age", ("STS-POL-04",)),
            (("604800", "0"), "short-max-age", ("STS-POL-04", "STS-POL-21")),
            (("604800", "31557601"), "max-age-clamped", ("STS-POL-05", "AMB-05")),
            (("mail.example.com", "*.example.com"), "wildcard-mx", ("STS-MX-03",)),
        ],
    )
    def test_single_warning(self, replace, code, ids):
        """STS-POL-03..06, STS-POL-21, STS-MX-03: each risky setting gives one warning."""
        problems = lint_policy(BASE.replace(*replace))

        assert [(Severity.WARNING, code, ids)] == [
            (p.severity, p.code, p.conformance) for p in problems
        ]

    def test_no_warning_at_limits(self):
        """STS-POL-05: max_age of exactly a week (enforce), a day (testing) or the maximum is fine."""
        assert ([], [], []) == (
            lint_policy(BASE),
            [
                p
                for p in lint_policy(BASE.replace("604800", "86400").replace("enforce", "testing"))
                if p.code != "mode-testing"
            ],
            lint_policy(BASE.replace("604800", "31557600")),
        )

    def test_enforce_under_a_week_is_warned(self):
        """STS-POL-04, RFC 8461 §3.2 ("weeks or greater"): an enforce policy cached for days."""
        (problem,) = lint_policy(BASE.replace("604800", "86400"))
        assert "short-max-age" == problem.code
        assert "is under a week (604800) for an enforce policy" in problem.message

    def test_wildcard_on_a_top_level_domain(self):
        """STS-MX-03: *.com covers every registrable name under com: its own warning."""
        codes = [p.code for p in lint_policy(BASE.replace("mx: mail.example.com", "mx: *.com"))]
        assert ["wildcard-mx", "wildcard-tld"] == codes

    def test_missing_final_newline_is_fine(self):
        """STS-POL-01: no final terminator gives no warning."""
        assert [] == lint_policy(BASE.rstrip("\n").encode())

    @pytest.mark.parametrize(
        ("key", "code"),
        [
            ("Mode", "key-typo"),
            ("max-age", "key-typo"),
            ("MaxAge", "key-typo"),
            ("MX", "key-typo"),
            ("Version", "key-typo"),
            ("comment", "unknown-key"),
        ],
    )
    def test_extension_keys(self, key, code):
        """STS-POL-10, STS-POL-14: unknown keys are flagged, near misses as typos."""
        problems = lint_policy(BASE + f"{key}: x\n")

        assert [("warning", code, 5)] == codes(problems)

    def test_duplicates(self):
        """STS-POL-12: a repeated key warns that only the first counts; mx lines do not."""
        problems = lint_policy(BASE + "mode: none\nmx: b.example\nfoo: 1\nfoo: 2\n")

        assert [
            ("warning", "duplicate-key", 5),
            ("warning", "unknown-key", 7),
            ("warning", "duplicate-key", 8),
        ] == codes(problems)
        assert "line 2" in problems[0].message

    @pytest.mark.parametrize(
        "extra", ["mode: Enforce\n", "mode: bogus\n", "max_age: -1\n", "version: STSv2\n"]
    )
    def test_ignored_duplicate_warns_not_errs(self, extra):
        """STS-POL-13, AMB-15 (issue 18): a later bad duplicate is a warning, not an error."""
        problems = lint_policy(BASE + extra)

        assert [("warning", "duplicate-key", 5)] == codes(problems)
        assert ("STS-POL-12", "STS-POL-13", "AMB-15") == problems[0].conformance
        assert "ignored whatever its value" in problems[0].message

    def test_many_errors_and_warnings(self):
        """STS-POL-02..16: one error per bad line, warnings for the good ones, missing last."""
        text = "mode: testing\nmax_age: 1e6\n\nmx: *.a.example\nmx: -bad\nMode: x\n"

        assert [
            ("warning", "mode-testing", 1),
            ("error", "bad-max-age", 2),
            ("error", "blank-line", 3),
            ("warning", "wildcard-mx", 4),
            ("error", "bad-mx", 5),
            ("warning", "key-typo", 6),
            ("error", "missing-version", None),
        ] == codes(lint_policy(text))

    def test_undecodable(self):
        """STS-POL-17: invalid UTF-8 is one error."""
        assert [("error", "not-utf8", 1)] == codes(lint_policy(b"\xff"))

    @given(st.binary(max_size=200) | st.text(max_size=200))
    def test_never_raises(self, data):
        """STS-POL-16, STS-POL-17: lint returns problems for any input; errors iff invalid."""
        problems = lint_policy(data)

        try:
            Policy.from_text(data)
        except PolicySyntaxError:
            valid = False
        else:
            valid = True
        assert valid == all(p.severity is Severity.WARNING for p in problems)


class TestRecordKind:
    @pytest.mark.parametrize(
        ("text", "kind"),
        [
            ("v=STSv1; id=a", "sts"),
            ("v=TLSRPTv1; rua=mailto:a@b.example", "tlsrpt"),
            ("  v=TLSRPTv1;", "tlsrpt"),
            ("v=tlsrptv1; rua=x", "tlsrpt"),
            ("V=STSv1; id=a", "sts"),
            ("", "sts"),
        ],
    )
    def test_table(self, text, kind):
        """STS-REC-05, RPT-REC-02: the kind follows the v= prefix."""
        assert kind == record_kind(text)


class TestLintRecord:
    def test_clean_sts(self):
        """STS-REC-06: a plain record has no problems."""
        assert [] == lint_record("v=STSv1; id=20160831085700Z;")

    def test_sts_warnings(self):
        """STS-REC-09, STS-REC-11: unknown fields, a case typo and a repeated id warn."""
        problems = lint_record("v=STSv1; id=abc; ID=x; foo=1; id=b")

        assert [("key-typo", 17), ("unknown-field", 23), ("duplicate-field", 30)] == [
            (p.code, p.offset) for p in problems
        ]
        assert {1} == {p.line for p in problems}

    @pytest.mark.parametrize(
        ("text", "offset"),
        [("v=STSv1; id=abc; id=x-y", 17), ("v=STSv1; id=abc; v=STSv2", 17)],
    )
    def test_sts_ignored_duplicates_warn(self, text, offset):
        """STS-REC-16, AMB-15 (issue 18): a later v or id is ignored and warned about."""
        problems = lint_record(text)

        assert [("warning", "duplicate-field", offset)] == [
            (p.severity.value, p.code, p.offset) for p in problems
        ]
        assert ("STS-REC-11", "STS-REC-16", "AMB-04", "AMB-15") == problems[0].conformance

    def test_tlsrpt_repeated_version_warns(self):
        """AMB-04, RPT-REC-05 (issue 18): a later v in a TLSRPT record is ignored, with a warning."""
        problems = lint_record("v=TLSRPTv1; rua=mailto:a@b.example; v=TLSRPTv2")

        assert [("warning", "duplicate-field", 36, ("RPT-REC-05", "AMB-04"))] == [
            (p.severity.value, p.code, p.offset, p.conformance) for p in problems
        ]

    def test_tlsrpt_whitespace_after_rua(self):
        """RPT-REC-03 (issue 18): WSP after "rua=" is reported; strict senders refuse it."""
        problems = lint_record("v=TLSRPTv1; rua= mailto:a@b.example")

        assert [("error", "whitespace-after-rua", 1, 16, ("RPT-REC-03",))] == [
            (p.severity.value, p.code, p.line, p.offset, p.conformance) for p in problems
        ]

    def test_sts_error(self):
        """STS-REC-06, STS-REC-16: an invalid id is an error at its offset, on line 1."""
        assert [("error", "invalid-id", 1, 12)] == [
            (p.severity.value, p.code, p.line, p.offset) for p in lint_record("v=STSv1; id=a-b")
        ]

    def test_tlsrpt_clean(self):
        """RPT-REC-03, RPT-REC-11: usable URIs and a repeated rua give no warning."""
        text = "v=TLSRPTv1; rua=mailto:a@b.example; rua=https://r.example/t"

        assert [] == lint_record(text)

    def test_tlsrpt_unusable(self):
        """RPT-REC-05, RPT-REC-08, RPT-REC-09: unusable URIs and unknown fields warn."""
        text = "v=TLSRPTv1; rua=http://x.example/r,mailto:a@b.example!10m; RUA=x; ext=1"

        assert [
            ("unusable-rua", 16),
            ("unusable-rua", 35),
            ("key-typo", 59),
            ("unknown-field", 66),
            ("no-usable-rua", None),
        ] == [(p.code, p.offset) for p in lint_record(text)]

    def test_tlsrpt_error(self):
        """RPT-REC-03: a record without rua is an error."""
        assert ["missing-rua"] == [p.code for p in lint_record("v=TLSRPTv1;")]


class TestCLI:
    def test_policy_lint_clean(self, capsys):
        """STS-POL-18: a clean file exits 0 with a verdict line."""
        status = main(["policy", "lint", str(EXAMPLES / "policy.txt")])

        out = capsys.readouterr().out
        assert (0, [f"{EXAMPLES / 'policy.txt'}: valid (0 errors, 0 warnings)"]) == (
            status,
            out.splitlines(),
        )

    def test_policy_lint_warnings(self, capsys):
        """STS-POL-03: warnings alone exit 0; each is LINE:OFFSET: severity: message [IDs]."""
        status = main(["policy", "lint", str(EXAMPLES / "policy-risky.txt")])

        lines = capsys.readouterr().out.splitlines()
        assert 0 == status
        assert lines[0].startswith("2:6: warning: mode 'testing'")
        assert lines[0].endswith("[STS-POL-03]")
        assert lines[1].startswith("2:-: warning: lines end in a mix of CRLF and LF")
        assert lines[-1].endswith(": valid (0 errors, 6 warnings)")

    def test_policy_lint_errors(self, tmp_path, capsys):
        """STS-POL-02, STS-POL-03: errors exit 1; missing fields print as -:-."""
        path = tmp_path / "p.txt"
        path.write_bytes(b"mode: bogus\nmax_age: 1\n")

        status = main(["policy", "lint", str(path)])

        lines = capsys.readouterr().out.splitlines()
        assert 1 == status
        assert [
            (
                "1:6: error: mode must be 'enforce', 'testing' or 'none', not 'bogus' "
                "[STS-POL-03, STS-POL-13]"
            ),
            (
                "2:9: warning: max_age 1 is under one day (86400); the policy expires quickly, "
                "which weakens protection against downgrade attacks (weeks are usual) [STS-POL-04]"
            ),
            "-:-: error: the version field is missing [STS-POL-02, AMB-03]",
            f"[IDs] are the rules they break, explained at {RULES_PAGE}",
            f"{path}: INVALID (2 errors, 1 warning)",
        ] == lines

    def test_policy_lint_json(self, capsys):
        """STS-POL-05: --json gives ok, problems and the parsed policy."""
        status = main(["policy", "lint", "--json", str(EXAMPLES / "policy-risky.txt")])

        out = json.loads(capsys.readouterr().out)
        assert (0, True, 6) == (status, out["ok"], len(out["problems"]))
        assert {
            "mode": "testing",
            "mx": ["mail.example.com", "*.mx.example.net"],
            "max_age": 3600,
            "effective_max_age": 3600,
            "extensions": [["max-age", "604800"], ["renew", "weekly"]],
        } == out["policy"]

    def test_policy_lint_json_invalid(self, tmp_path, capsys):
        """STS-POL-17: an invalid file gives ok false and policy null."""
        path = tmp_path / "p.txt"
        path.write_bytes(b"\xff")

        status = main(["policy", "lint", "--json", str(path)])

        out = json.loads(capsys.readouterr().out)
        assert (1, False, None, "not-utf8") == (
            status,
            out["ok"],
            out["policy"],
            out["problems"][0]["code"],
        )

    def test_policy_lint_stdin(self, monkeypatch, capsys):
        """STS-POL-01: '-' reads the policy from standard input."""
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BASE.encode())))

        status = main(["policy", "lint", "-"])

        assert (0, "policy: valid (0 errors, 0 warnings)\n") == (status, capsys.readouterr().out)

    def test_policy_lint_oversized(self, tmp_path, capsys):
        """AMB-08: a file over 65536 bytes is an error that gives its real size (issue 12)."""
        path = tmp_path / "big.txt"
        path.write_bytes(BASE.encode() + b"x: " + b"a" * (2 * MAX_POLICY_BYTES) + b"\n")

        status = main(["policy", "lint", "--json", str(path)])

        out = json.loads(capsys.readouterr().out)
        assert (1, "policy-too-large") == (status, out["problems"][0]["code"])
        assert f"{path.stat().st_size} bytes" in out["problems"][0]["message"]

    def test_policy_lint_unreadable(self, tmp_path, capsys):
        """An unreadable file exits 2 with a message on stderr."""
        status = main(["policy", "lint", str(tmp_path / "missing.txt")])

        captured = capsys.readouterr()
        assert (2, "") == (status, captured.out)
        assert "cannot read" in captured.err

    def test_record_lint(self, capsys):
        """RPT-REC-09: record lint prints warnings and exits 0 for a valid record."""
        status = main(["record", "lint", "v=TLSRPTv1; rua=http://x.example/r"])

        lines = capsys.readouterr().out.splitlines()
        assert (0, "TLSRPT record: valid (0 errors, 2 warnings)") == (status, lines[-1])
        assert lines[0].startswith("1:16: warning: rua URI 'http://x.example/r'")

    def test_record_lint_invalid(self, capsys):
        """STS-REC-06: an invalid record exits 1."""
        status = main(["record", "lint", "v=STSv1; id=a-b"])

        lines = capsys.readouterr().out.splitlines()
        assert (1, "MTA-STS record: INVALID (1 error, 0 warnings)") == (status, lines[-1])

    @pytest.mark.parametrize(
        ("text", "record"),
        [
            ("v=STSv1; id=abc; x=1", {"type": "sts", "id": "abc", "extensions": [["x", "1"]]}),
            (
                "v=TLSRPTv1; rua=mailto:a@b.example,ftp://x",
                {
                    "type": "tlsrpt",
                    "rua": ["mailto:a@b.example", "ftp://x"],
                    "usable_rua": ["mailto:a@b.example"],
                    "extensions": [],
                },
            ),
            ("v=TLSRPTv1;", None),
        ],
    )
    def test_record_lint_json(self, capsys, text, record):
        """STS-REC-09, RPT-REC-09: --json describes the parsed record, or null."""
        main(["record", "lint", "--json", text])

        out = json.loads(capsys.readouterr().out)
        assert (record is not None, record) == (out["ok"], out["record"])

    def test_installed_script(self):
        """STS-POL-18: the installed smtpsts script lints the example policy."""
        script = Path(sys.executable).parent / "smtpsts"

        done = subprocess.run(
            [str(script), "policy", "lint", "examples/policy.txt"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert (0, "examples/policy.txt: valid (0 errors, 0 warnings)\n", "") == (
            done.returncode,
            done.stdout,
            done.stderr,
        )


def test_wildcard_under_policy_domain_warns_only():
    """SEC-04: `*.example.com` for example.com gives a wildcard-mx warning; matching is unchanged."""
    text = BASE.replace("mail.example.com", "*.example.com")
    problems = lint_policy(text)
    policy = Policy.from_text(text)

    assert [(Severity.WARNING, "wildcard-mx")] == [(p.severity, p.code) for p in problems]
    assert "'*.example.com'" in problems[0].message
    assert (True, False, False) == (
        policy.matches("mx.example.com"),
        policy.matches("example.com"),
        policy.matches("a.b.example.com"),
    )


@pytest.mark.parametrize(
    ("pasted", "checked"),
    [
        ('"v=STSv1; id=20240101;"', "v=STSv1; id=20240101;"),
        ('"v=TLSRPTv1; " "rua=mailto:r@example.com"', "v=TLSRPTv1; rua=mailto:r@example.com"),
        ('"v=STSv1; id=1;', "v=STSv1; id=1;"),
        ('""', ""),
    ],
)
def test_record_pasted_with_digs_quotes(pasted, checked):
    """STS-REC-03, RPT-REC-07 (issue 12): dig's quotes are said, and the record is checked without them."""
    from smtpsts.lint import lint_record

    problems = lint_record(pasted)
    assert ("quoted-record", "warning") == (problems[0].code, problems[0].severity.value)
    assert problems[1:] == lint_record(checked)
