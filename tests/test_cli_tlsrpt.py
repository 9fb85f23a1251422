"""Tests for ``smtpsts tlsrpt show``."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from smtpsts._cli import main
from smtpsts.tlsrpt import Report

SAMPLES = Path(__file__).parent / "data" / "peer-samples"
RPT01 = SAMPLES / "mail-auth" / "rpt01.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI and return (status, stdout, stderr)."""
    status = main(["tlsrpt", "show", *args])
    out, err = capsys.readouterr()
    return status, out, err


class TestShow:
    def test_summary(self, capsys):
        """RPT-JSON-23: a mailed report is summarised per policy with rate, types and MX hosts."""
        status, out, err = run(capsys, str(SAMPLES / "mail-auth" / "rpt01.eml"))

        assert (0, "") == (status, err)
        for fragment in (
            "report from Company-X <sts-reporting@company-x.example>",
            "period: 2016-04-01T00:00:00Z to 2016-04-01T23:59:59Z",
            "policy sts for company-y.example",
            "mx patterns: *.mail.company-y.example",
            "sessions: 5629: 5326 successful, 303 failed (5.4% failed)",
            "failure types: starttls-not-supported 200, certificate-expired 100, validation-failure 3",
            "failing MX hosts: mx2.mail.company-y.example 200,",
            (
                "3 x validation-failure: mx mx-backup.mail.company-y.example [203.0.113.58]; "
                "from 198.51.100.62; reason X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
            ),
        ):
            assert fragment in out

    def test_every_sample(self, capsys):
        """RPT-JSON-23: every peer sample is shown without error."""
        files = sorted(str(p) for p in SAMPLES.glob("*/*") if p.suffix != ".md")
        status, out, err = run(capsys, *files)

        assert (0, "") == (status, err)
        assert len(files) == out.count(": report from ")
        assert "policy invalid-policy-type" in out

    def test_json_single(self, capsys):
        """RPT-JSON-21, RPT-JSON-27: --json prints the normalised report."""
        status, out, _ = run(capsys, "--json", str(RPT01))

        assert 0 == status
        assert Report.from_json(RPT01.read_bytes()) == Report.from_json(out)
        assert json.loads(out)["policies"][0]["failure-details"][0]["failed-session-count"] == 100

    def test_json_several(self, capsys, tmp_path):
        """RPT-SEND-03: .json.gz files are read; several files give an array."""
        gz = tmp_path / "r.json.gz"
        gz.write_bytes(gzip.compress(RPT01.read_bytes()))
        status, out, _ = run(capsys, "--json", str(RPT01), str(gz))

        assert (0, 2) == (status, len(json.loads(out)))

    def test_bad_file(self, capsys, tmp_path):
        """RPT-JSON-23: a malformed report gives a message and status 1, not a traceback."""
        bad = tmp_path / "bad.json"
        bad.write_text('{"policies": 3}')
        status, out, err = run(capsys, str(bad), str(RPT01))

        assert 1 == status
        assert f"smtpsts: {bad}: not a valid TLS-RPT report: policies: must be an array" in err
        assert "Company-X" in out

    def test_missing_file(self, capsys, tmp_path):
        """A file that cannot be read gives a message and status 1."""
        status, out, err = run(capsys, "--json", str(tmp_path / "nope.json"))

        assert (1, "") == (status, out)
        assert "cannot read" in err

    def test_stdin(self, capsys, monkeypatch):
        """``-`` reads standard input."""
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(RPT01.read_bytes())))
        status, out, _ = run(capsys, "-")

        assert (0, True) == (status, out.startswith("-: report from Company-X"))

    def test_sparse_report_and_control_characters(self, capsys, tmp_path):
        """RPT-JSON-23: sparse entries show; control characters from the network are escaped."""
        doc = {
            "date-range": {
                "start-datetime": "2024-01-01T00:00:00Z",
                "end-datetime": "2024-01-01T23:59:59Z",
            },
            "policies": [
                {
                    "policy": {"policy-type": "sts"},
                    "summary": {},
                    "failure-details": [
                        {"result-type": "validation-failure\u001b[31m", "failed-session-count": 1},
                        {
                            "result-type": "starttls-not-supported",
                            "receiving-ip": "192.0.2.1",
                            "receiving-mx-helo": "h.example",
                        },
                    ],
                }
            ],
        }
        path = tmp_path / "sparse.json"
        path.write_text(json.dumps(doc))
        empty = tmp_path / "empty.json"
        empty.write_text(json.dumps({**doc, "policies": []}))
        status, out, _ = run(capsys, str(path), str(empty))

        assert 0 == status
        assert "\x1b" not in out
        for fragment in (
            "report from unknown organisation\n",
            "report id: -",
            "sessions: 0: 0 successful, 0 failed\n",
            "1 x validation-failure\\x1b[31m\n",
            "0 x starttls-not-supported: mx ? [192.0.2.1]; helo h.example\n",
            "  no policies",
        ):
            assert fragment in out
