"""
``smtpsts tlsrpt advise`` and ``smtpsts tlsrpt alert`` (issue 13 items 5, 6).

A real SQLite report store filled with reports (generated, and a peer
sample); the live check runs against loopback DNS, HTTPS and SMTP servers
(as tests/test_cli_check.py); the webhook is a small HTTP server on
127.0.0.1 in the test. RFC 8461 §4.1, §4.2, §5; RFC 8460 §4.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dnsserver import DNSServer
from httpsservers import HTTPSServer
from smtpsts._cli import main
from smtpsts._cli.tlsrpt_advise import live_check, render_advice
from smtpsts.io.webhook import post_json
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt.advisor import LiveCheck, ReportNumbers, advise
from smtpsts.tlsrpt.inbox import Received, Source
from smtpsts.tlsrpt.model import Report
from test_cli_check import MX, TESTING, Lab
from test_tlsrpt_inbox import SAMPLES, report_doc

D = "example.com"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
POLICY = ["version: STSv1", "mode: testing", f"mx: {MX}", "max_age: 1209600"]


def fill(
    path: Path,
    *,
    days: int = 20,
    orgs: tuple[str, ...] = ("Google", "Microsoft"),
    ok: int = 50,
    failed: int = 0,
    mx: str = MX,
    result_type: str = "certificate-expired",
    ago: int = 1,
) -> None:
    """Store one report per organisation and day, the newest ``ago`` days back."""
    store = SQLiteReportStore(str(path), synchronous="NORMAL")
    try:
        for i in range(days):
            start = TODAY - timedelta(days=ago + i)
            for org in orgs:
                details = (
                    [
                        {
                            "result-type": result_type,
                            "receiving-mx-hostname": mx,
                            "failed-session-count": failed,
                        }
                    ]
                    if failed
                    else []
                )
                doc = report_doc(
                    f"{org}-{start:%Y%m%d}-{result_type}",
                    org=org,
                    start=start,
                    ok=ok,
                    failed=failed,
                    details=details,
                )
                doc["policies"][0]["policy"]["policy-string"] = POLICY
                report = Report.from_json_object(doc)
                store.add(Received(report, Source.HTTPS, start + timedelta(days=1), "127.0.0.1"))
    finally:
        store.close()


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    """A loopback DNS server, HTTPS policy host and SMTP servers (tests/test_cli_check.py's Lab)."""
    with DNSServer() as dns, HTTPSServer() as https:
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(https.root.pem)
        lab = Lab(dns, https, cafile)
        try:
            yield lab
        finally:
            for server in lab.smtp.values():
                server.__exit__(None, None, None)


@pytest.fixture
def store(tmp_path) -> Path:
    """An SQLite store with twenty clean days from two reporters."""
    path = tmp_path / "reports.sqlite"
    fill(path)
    return path


def advise_cli(capsys, store: Path, *extra: str) -> tuple[int, str]:
    """Run ``smtpsts tlsrpt advise`` and return (status, stdout)."""
    status = main(["tlsrpt", "advise", D, "--store", str(store), *extra])
    return status, capsys.readouterr().out


def check_args(lab: Lab) -> list[str]:
    """The live-check options that point at the loopback lab."""
    return ["--nameserver", lab.dns.address, "--cafile", str(lab.cafile), "--timeout", "10"]


class TestAdviseFromReports:
    def test_ready(self, store, capsys):
        """Clean reports over 20 days from 2 reporters: ready (exit 0), marked reports-only."""
        status, out = advise_cli(capsys, store, "--no-check")

        assert 0 == status
        lines = out.splitlines()
        assert "Verdict: READY TO ENFORCE (from the reports alone)" in lines
        assert "  reporters: 2 (Google, Microsoft)" in lines
        assert "  days covered: 20" in lines
        assert "  sessions: 2000: 2000 successful, 0 failed (0.00%)" in lines

    def test_json(self, store, capsys):
        """--json: the verdict, numbers and the window, for machines."""
        status, out = advise_cli(capsys, store, "--no-check", "--json", "--days", "10")
        doc = json.loads(out)

        assert 3 == status  # 9 days with reports in the window (not today), 14 needed
        assert "not_enough_data" == doc["verdict"]
        assert (9, 900, "skipped") == (doc["days_covered"], doc["successful"], doc["live_check"])
        assert 10 == doc["window"]["days"]
        assert doc["from_reports_only"]

    def test_not_yet(self, tmp_path, capsys):
        """Failures at an MX the reported policy does not cover: not yet (exit 1)."""
        path = tmp_path / "r.sqlite"
        fill(path, failed=5, mx="backup.example.net")

        status, out = advise_cli(capsys, path, "--no-check")

        assert 1 == status
        assert "Verdict: NOT YET (from the reports alone)" in out
        assert "  backup.example.net: 200 failed, 9.09% of all 2200 sessions" in out
        assert "MX hosts no policy mx pattern covers\n  backup.example.net" in out
        assert "  certificate-expired: 200 failed" in out
        assert "  Google: 100 failed, 9.09% of its 1100 sessions" in out

    def test_thresholds(self, tmp_path, capsys):
        """The thresholds are options: a 10% limit lets a 9% failure rate through."""
        path = tmp_path / "r.sqlite"
        fill(path, failed=5)

        status, _ = advise_cli(capsys, path, "--no-check", "--max-failure-rate", "10")

        assert 0 == status

    def test_peer_sample(self, tmp_path, capsys):
        """A peer's report (mail-auth sample, 303 of 5629 sessions failed): not yet."""
        report = Report.from_json((SAMPLES / "mail-auth" / "rpt01.json").read_bytes())
        domain = report.policies[0].policy.policy_domain
        path = tmp_path / "r.sqlite"
        store = SQLiteReportStore(str(path))
        store.add(Received(report, Source.FILE, datetime.now(UTC)))
        store.close()
        days = (datetime.now(UTC) - report.date_range.start).days + 2

        status = main(
            [
                *("tlsrpt", "advise", domain, "--store", str(path), "--no-check", "--json"),
                *("--days", str(days)),
            ]
        )
        doc = json.loads(capsys.readouterr().out)

        assert (1, "not_yet") == (status, doc["verdict"])
        assert (1, 5326, 303) == (doc["days_covered"], doc["successful"], doc["failed"])
        assert [report.organization_name] == doc["reporters"]

    def test_empty_store(self, tmp_path, capsys):
        """No reports at all: not enough data, exit 3."""
        status, out = advise_cli(capsys, tmp_path / "new.sqlite", "--no-check")

        assert 3 == status
        assert "reports cover 0 day(s)" in out

    def test_unreadable_store(self, tmp_path, capsys):
        """A store that cannot be opened: could not tell, exit 3, said on stderr."""
        bad = tmp_path / "not-a-db"
        bad.write_bytes(b"this is not sqlite" * 100)

        status = main(["tlsrpt", "advise", D, "--store", str(bad), "--no-check"])

        assert 3 == status
        assert "smtpsts tlsrpt advise:" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "extra",
        [
            ["--days", "0"],
            ["--days", "x"],
            ["--max-failure-rate", "101"],
            ["--max-failure-rate", "x"],
            ["--min-days", "x"],
            ["--min-days", "-1"],
            ["--timeout", "0"],
            ["--timeout", "x"],
        ],
    )
    def test_usage(self, store, extra):
        """Bad options are usage errors (exit 2)."""
        with pytest.raises(SystemExit) as exc:
            main(["tlsrpt", "advise", D, "--store", str(store), *extra])
        assert 2 == exc.value.code

    def test_bad_domain(self, store, capsys):
        """A domain that is not a domain name: exit 2."""
        assert 2 == main(["tlsrpt", "advise", "a..b", "--store", str(store)])
        assert "is not a domain name" in capsys.readouterr().err


class TestAdviseLive:
    def test_ready(self, lab, store, capsys):
        """Testing policy, MX covered and verified, clean reports: ready to enforce."""
        lab.publish(body=TESTING)
        lab.smtp_server(MX)

        status, out = advise_cli(capsys, store, *check_args(lab), *lab.extra)

        assert 0 == status, out
        assert "Verdict: READY TO ENFORCE" in out.splitlines()
        assert "  policy mode: testing (live check)" in out

    def test_certificate_problem(self, lab, store, capsys):
        """RFC 8461 §4.2: the MX's certificate names another host: not yet."""
        lab.publish(body=TESTING)
        lab.smtp_server(MX, names=["other.example.org"])

        status, out = advise_cli(capsys, store, "--json", *check_args(lab), *lab.extra)
        doc = json.loads(out)

        assert 1 == status
        assert "ok" == doc["live_check"]
        assert doc["certificate_problems"][0].startswith(f"{MX}: certificate-host-mismatch")

    def test_enforce_already(self, lab, store, capsys):
        """A policy already in enforce with clean reports: exit 0, said as already enforcing."""
        lab.publish()
        lab.smtp_server(MX)

        status, out = advise_cli(capsys, store, "--json", *check_args(lab), *lab.extra)
        doc = json.loads(out)

        assert (0, True) == (status, doc["enforcing"])
        assert "already in enforce mode" in doc["reasons"][0]

    def test_no_policy(self, lab, store, capsys):
        """No _mta-sts record: not yet, there is nothing to enforce."""
        status, out = advise_cli(capsys, store, *check_args(lab))

        assert 1 == status
        assert "no MTA-STS policy is published" in out

    def test_mx_not_covered(self, lab, store, capsys):
        """STS-MX-01: an MX in DNS that the live policy does not name: not yet."""
        lab.publish(body=TESTING.replace(MX.encode(), b"other.example.com"))
        lab.smtp_server(MX)

        status, out = advise_cli(capsys, store, "--json", *check_args(lab), *lab.extra)

        assert 1 == status
        assert [MX] == json.loads(out)["uncovered_mx"]

    def test_check_cannot_run(self, store, capsys):
        """A DNS server that never answers: said, and the verdict comes from reports alone."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            status, out = advise_cli(
                capsys, store, "--nameserver", f"127.0.0.1:{port}", "--timeout", "1"
            )

        assert 0 == status
        assert "Verdict: READY TO ENFORCE (from the reports alone)" in out
        assert "  - the live check could not run: " in out

    @pytest.mark.parametrize(
        "extra",
        [
            ["--nameserver", "not-an-ip"],
            ["--cafile", "/nonexistent/ca.pem"],
            ["--lab", "/nonexistent/lab.json"],
        ],
    )
    def test_check_options_fail(self, store, capsys, extra):
        """A live check that cannot even start is reported like one that failed."""
        status, out = advise_cli(capsys, store, *extra)

        assert 0 == status
        assert "the live check could not run" in out

    def test_lab_file(self, lab, store, tmp_path, capsys):
        """--lab reads the DNS server, CA and connect-to mappings from a lab state file."""
        from smtpsts.lab.state import LabState

        lab.publish(body=TESTING)
        lab.smtp_server(MX)
        connect = tuple(
            lab.extra[i + 1] for i in range(0, len(lab.extra), 2) if lab.extra[i] == "--connect-to"
        )
        state_file = tmp_path / "lab.json"
        state_file.write_text(LabState(lab.dns.address, str(lab.cafile), connect).to_json())

        status, out = advise_cli(capsys, store, "--lab", str(state_file))

        assert 0 == status, out


class TestLiveCheckSummary:
    def test_problems(self):
        """STARTTLS missing or failing and bad certificates become sentences; others not."""
        from smtpsts.certs import CertificateCheck
        from smtpsts.io.check import CheckError, CheckReport, MXCheck, STSCheck, TLSRPTCheck
        from smtpsts.io.starttls import STARTTLSProbe

        def probe(**kw: Any) -> STARTTLSProbe:
            return STARTTLSProbe(host="h", port=25, server_name="h", **kw)

        report = CheckReport(
            domain=D,
            sts=STSCheck(error=CheckError(None, "txt-syntax-error", "bad")),
            tlsrpt=TLSRPTCheck(),
            mx=(
                MXCheck("a.example", probe=probe(connected=True)),
                MXCheck(
                    "b.example",
                    probe=probe(connected=True, starttls_offered=True, reason="tls-alert"),
                ),
                MXCheck(
                    "c.example",
                    probe=probe(connected=True, starttls_offered=True, handshake_ok=True),
                    certificate=CertificateCheck(ok=False, result_type=None, detail="odd"),
                ),
                MXCheck("d.example", probe=probe(connected=False)),
                MXCheck("e.example"),
            ),
        )

        live = live_check(report)

        assert (
            "a.example: STARTTLS not offered",
            "b.example: the TLS handshake failed (tls-alert)",
            "c.example: invalid: odd",
        ) == live.certificate_problems
        assert (None, "") == (live.mode, live.error)
        assert 5 == len(live.mx_hosts)

    def test_render_without_reporters(self):
        """The text form of an advice with no reports at all."""
        lines = render_advice(advise(ReportNumbers(D), LiveCheck()), 30)

        assert "  reporters: 0" in lines
        assert "  policy mode: unknown (live check)" in lines

    def test_render_certificate_problems(self):
        """The text form lists the certificate problems under their own heading."""
        live = LiveCheck(certificate_problems=("mx: certificate-expired: old",))
        lines = render_advice(advise(ReportNumbers(D), live), 30)

        assert ["Certificate problems", "  mx: certificate-expired: old"] == lines[-2:]


# --------------------------------------------------------------------------- alert


class Hook(http.server.BaseHTTPRequestHandler):
    """Records each POSTed body; answers with the server's ``status``."""

    def do_POST(self) -> None:
        """Read the body (bounded) and answer."""
        length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def hook() -> Iterator[http.server.ThreadingHTTPServer]:
    """A webhook receiver on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.bodies = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def alert_cli(capsys, store: Path, *extra: str) -> tuple[int, str, str]:
    """Run ``smtpsts tlsrpt alert``; (status, stdout, stderr)."""
    status = main(["tlsrpt", "alert", "--store", str(store), *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def url(server: http.server.ThreadingHTTPServer) -> str:
    """The receiver's URL."""
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


class TestAlert:
    def test_quiet(self, store, capsys):
        """Nothing wrong: exit 0 and no output at all (cron mails nothing), --json too."""
        assert (0, "", "") == alert_cli(capsys, store)
        assert (0, "", "") == alert_cli(capsys, store, "--json")

    def test_verbose(self, store, capsys):
        """--verbose says all is well; --json --verbose prints an empty array."""
        status, out, _ = alert_cli(capsys, store, "--verbose")
        assert (0, "no alert (1 domain(s) checked, last 7 days)\n") == (status, out)
        status, out, _ = alert_cli(capsys, store, "--verbose", "--json")
        assert (0, []) == (status, json.loads(out))

    def test_failure_rate_and_new(self, store, capsys):
        """New failures this week from one sender: rate, new sender and new result type."""
        fill(store, days=3, orgs=("Google",), ok=50, failed=10, result_type="validation-failure")

        status, out, _ = alert_cli(capsys, store, "--json")
        kinds = [a["kind"] for a in json.loads(out)]

        assert 1 == status
        assert ["failure-rate", "new-failing-sender", "new-result-type"] == kinds

    def test_stopped(self, tmp_path, capsys):
        """Reports stopped five days ago: alert, text form."""
        path = tmp_path / "r.sqlite"
        fill(path, ago=6)

        status, out, _ = alert_cli(capsys, path)

        assert 1 == status
        assert out.startswith(f"{D}: reports-stopped: no report since ")

    def test_named_domain_never_reported(self, store, capsys):
        """A domain given by name with no report ever: alert."""
        status, out, _ = alert_cli(capsys, store, "other.example")

        assert (1, "other.example: reports-stopped: no report was ever stored for it\n") == (
            status,
            out,
        )

    def test_command(self, tmp_path, capsys):
        """--command runs once per alert, the alert as JSON on stdin, the kind in the env."""
        path = tmp_path / "r.sqlite"
        fill(path, ago=6)
        out_file = tmp_path / "got.jsonl"
        script = (
            "import json, os, sys; d = json.load(sys.stdin); "
            f"open({str(out_file)!r}, 'a').write(json.dumps([d, os.environ['SMTPSTS_ALERT_KIND']]) + '\\n')"
        )
        command = f'{sys.executable} -c "{script}"'

        status, _, err = alert_cli(capsys, path, "--command", command)

        assert (1, "") == (status, err)
        (line,) = out_file.read_text().splitlines()
        alert, kind = json.loads(line)
        assert ("reports-stopped", "reports-stopped", D) == (alert["kind"], kind, alert["domain"])

    @pytest.mark.parametrize(
        ("command", "timeout", "said"),
        [
            (f"{sys.executable} -c 'raise SystemExit(3)'", "30", "exited with status 3"),
            ("/nonexistent/notify", "30", "--command /nonexistent/notify:"),
            (f"{sys.executable} -c 'import time; time.sleep(30)'", "0.5", "timed out after 0.5 s"),
        ],
    )
    def test_command_fails(self, tmp_path, capsys, command, timeout, said):
        """A failing, missing or hanging command is reported; exit 2."""
        path = tmp_path / "r.sqlite"
        fill(path, ago=6)

        status, _, err = alert_cli(capsys, path, "--command", command, "--command-timeout", timeout)

        assert 2 == status
        assert said in err

    def test_webhook(self, tmp_path, hook, capsys):
        """--webhook POSTs each alert as JSON."""
        path = tmp_path / "r.sqlite"
        fill(path, ago=6)

        status, _, err = alert_cli(capsys, path, "--webhook", url(hook))

        assert (1, "") == (status, err)
        (body,) = hook.bodies  # type: ignore[attr-defined]
        assert ("reports-stopped", D) == (body["kind"], body["domain"])
        assert body["text"].startswith(f"smtpsts: {D}: no report since")

    def test_webhook_refuses(self, tmp_path, hook, capsys):
        """A webhook that answers 500 is reported; exit 2."""
        path = tmp_path / "r.sqlite"
        fill(path, ago=6)
        hook.status = 500  # type: ignore[attr-defined]

        status, _, err = alert_cli(capsys, path, "--webhook", url(hook))

        assert 2 == status
        assert "HTTP 500" in err

    def test_unreadable_store(self, tmp_path, capsys):
        """A store that cannot be read: exit 2."""
        bad = tmp_path / "bad"
        bad.write_bytes(b"x" * 4096)

        status, _, err = alert_cli(capsys, bad)

        assert 2 == status
        assert "smtpsts tlsrpt alert:" in err

    @pytest.mark.parametrize("extra", [["--command", "  "], ["a..b"]])
    def test_usage(self, store, capsys, extra):
        """An empty command or a bad domain: exit 2."""
        assert 2 == alert_cli(capsys, store, *extra)[0]


class TestWebhook:
    def test_not_http(self):
        """Only http: and https: URLs."""
        assert not post_json("ftp://x/", b"{}").ok
        assert "invalid port" == post_json("http://127.0.0.1:99999/", b"{}").detail

    def test_refused(self):
        """Nothing listening: a failure in words, no exception."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = post_json(f"http://127.0.0.1:{port}/", b"{}", timeout=2)

        assert not result.ok
        assert "ConnectionRefusedError" in result.detail

    def test_silent_server(self):
        """A server that accepts and never answers: the deadline ends it."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            result = post_json(f"http://127.0.0.1:{port}/?q=1", b"{}", timeout=0.5)

        assert (False, "timeout: no answer within 0.5 s") == (result.ok, result.detail)

    def test_https_untrusted(self, lab):
        """https: verifies the certificate; the lab's HTTPS server is not in the system trust."""
        result = post_json(f"https://127.0.0.1:{lab.https.port}/", b"{}", timeout=5)

        assert not result.ok
        assert "certificate" in result.detail or "SSL" in result.detail
