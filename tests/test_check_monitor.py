"""
``smtpsts check`` as a monitor uses it (issue 12 items 3-5).

Severities, exit statuses, warnings and the fleet checker, against loopback DNS,
HTTPS and SMTP servers.
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import certfactory
import test_cli_check
from smtpsts._cli import main
from smtpsts._cli.check import fleet_status, render_table
from smtpsts.io.check import CheckReport, Finding, FindingSeverity, STSCheck, TLSRPTCheck
from smtpsts.lint import lint_record
from test_cli_check import MX, D, Lab, _enforce
from tlsservers import SMTPServer, server_context

lab = test_cli_check.lab  # the loopback lab fixture of the check tests

ROOT = Path(__file__).resolve().parent.parent


def _silent_udp() -> socket.socket:
    # A DNS server that never answers: a bound UDP socket nobody reads.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _cafile(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(certfactory.make("ca", ca=True).pem)
    return str(path)


class TestSeverities:
    def test_findings_carry_a_severity(self, lab, capsys):
        """Every finding has a severity and a code, in the JSON and in the text output."""
        lab.dns.add(D, "MX", f"10 {MX}.")
        status, doc = lab.json(capsys, D, "--no-mx")
        assert (1, "problems") == (status, doc["status"])
        kinds = {(f["severity"], f["code"]) for f in doc["findings"]}
        assert ("problem", "no-sts-record") in kinds
        assert ("advice", "publish-tlsrpt") in kinds
        assert [f["message"] for f in doc["findings"] if f["severity"] == "problem"] == doc[
            "problems"
        ]
        _, out = lab.text(capsys, D, "--no-mx")
        lines = out.splitlines()
        assert "  PROBLEMS: 1 problem found" in lines
        assert f"  problem: MTA-STS: no record at _mta-sts.{D}; the domain has no policy." in lines
        assert any(line.startswith("  advice: Publish a TXT record") for line in lines)

    def test_order_problems_warnings_advice(self):
        """Findings render problems first, then warnings, then advice; the status follows."""
        findings = (
            Finding(FindingSeverity.PROBLEM, "x", "broken"),
            Finding(FindingSeverity.WARNING, "y", "soon"),
        )
        report = CheckReport(D, STSCheck(), TLSRPTCheck(), findings=findings)
        assert ("problems", False, ("soon",)) == (report.status.value, report.ok, report.warnings)
        assert "could-not-check" == CheckReport(D, STSCheck(), TLSRPTCheck(), unchecked="x").status


class TestCouldNotCheck:
    def test_silent_dns_said_once(self, tmp_path, capsys):
        """Issue 12 item 4: a silent DNS server: exit 3, the server named once, no timeouts repeated."""
        with _silent_udp() as silent:
            server = f"127.0.0.1:{silent.getsockname()[1]}"
            args = ["check", D, "--nameserver", server, "--cafile", _cafile(tmp_path)]
            started = time.monotonic()
            status = main([*args, "--timeout", "1.5"])
            elapsed = time.monotonic() - started
        out = capsys.readouterr().out
        assert 3 == status
        assert elapsed < 3
        assert 1 == out.count(server), out
        assert 1 == out.count("did not answer"), out
        assert "timeout" not in out.lower()
        assert f"  COULD NOT CHECK {D}: the DNS server {server} did not answer" in out
        assert "PROBLEMS" not in out

    def test_unreachable_dns(self, tmp_path, capsys):
        """A DNS port nothing listens on: exit 3, the server named, never "no record"."""
        with _silent_udp() as probe:
            port = probe.getsockname()[1]
        server = f"127.0.0.1:{port}"
        status = main(
            [
                *("check", D, "--json", "--nameserver", server),
                *("--cafile", _cafile(tmp_path), "--timeout", "1.5"),
            ]
        )
        doc = json.loads(capsys.readouterr().out)
        assert (3, [], None) == (status, doc["problems"], doc["sts"]["record"])
        assert doc["unchecked"].startswith(f"the DNS server {server} ")
        assert ("unreachable" in doc["unchecked"]) or ("did not answer" in doc["unchecked"])

    def test_nxdomain(self, lab, capsys):
        """A domain that does not exist is named as such: one problem, exit 1."""
        status, doc = lab.json(capsys, "nx.example.org")
        assert (1, True, []) == (status, doc["nxdomain"], doc["mx"])
        assert ["nx.example.org does not exist (NXDOMAIN): no sender can deliver mail to it."] == [
            f["message"] for f in doc["findings"]
        ]
        status, out = lab.text(capsys, "nx.example.org")
        assert 1 == status
        assert "  none: nx.example.org does not exist (NXDOMAIN)" in out.splitlines()


class TestWarnings:
    def _expiring_mx(self, lab: Lab, days: int) -> SMTPServer:
        leaf = certfactory.make(
            MX,
            issuer=lab.https.root,
            san=[MX],
            not_after=datetime.now(UTC) + timedelta(days=days, hours=1),
        )
        server = SMTPServer(server_context(leaf)).__enter__()
        lab.smtp[MX] = server
        lab.extra += ["--connect-to", f"{MX}:25:127.0.0.1:{server.port}"]
        return server

    def test_certificates_expiring_soon(self, lab, capsys):
        """Issue 12 item 3: the MX and policy host certificates expire within 21 days: warnings."""
        lab.publish()
        self._expiring_mx(lab, 10)
        lab.https.certificate(
            f"mta-sts.{D}", not_after=datetime.now(UTC) + timedelta(days=3, hours=1)
        )
        status, doc = lab.json(capsys)
        assert 0 == status  # warnings never fail the domain
        soon = [f["message"] for f in doc["findings"] if f["code"] == "cert-expires-soon"]
        assert 2 == len(soon), doc["findings"]
        assert any(f"MX {MX} expires in 10 days" in m for m in soon)
        assert any(f"policy host mta-sts.{D} expires in 3 days" in m for m in soon)
        assert all("subject " in m and "issued by" in m for m in soon)
        status, doc = lab.json(capsys, D, "--expiry-warning-days", "2")
        assert (0, []) == (status, doc["warnings"])

    def test_mx_patterns_and_records_that_do_not_meet(self, lab, capsys):
        """RFC 8461 §4.1: a pattern matching no MX, and under testing an MX no pattern matches."""
        body = (
            b"version: STSv1\nmode: testing\nmx: old.example.com\nmx: *.example.net\n"
            b"max_age: 1209600\n"
        )
        lab.publish(body=body)
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 0 == status
        codes = [(f["severity"], f["code"]) for f in doc["findings"]]
        assert 2 == codes.count(("warning", "mx-pattern-unused"))
        assert ("warning", "mx-not-in-policy") in codes
        assert any("'old.example.com' matches no MX record" in w for w in doc["warnings"])

    def test_mx_not_in_enforce_policy_is_a_problem(self, lab, capsys):
        """STS-MX-11: under enforce an unlisted MX is skipped: a problem, the pattern a warning."""
        lab.publish(body=_enforce("other.example.com"))
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 1 == status
        codes = [(f["severity"], f["code"]) for f in doc["findings"]]
        assert ("problem", "mx-not-in-policy") in codes
        assert ("warning", "mx-pattern-unused") in codes

    def test_record_lint_rules(self, lab, capsys):
        """Lint and check say the same about a record: an http: rua (RPT-REC-09)."""
        lab.publish()
        record = "v=TLSRPTv1; rua=http://reports.example.com/x,mailto:r@example.com"
        lab.dns.set(f"_smtp._tls.{D}", "TXT", f'"{record}"')
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 0 == status
        expected = [f"TLS-RPT record: {p.message}." for p in lint_record(record)]
        assert expected
        assert expected == [w for w in doc["warnings"] if w.startswith("TLS-RPT record:")]


class TestHelp:
    def test_exit_statuses_documented(self, capsys):
        """The --help epilog lists every exit status."""
        with pytest.raises(SystemExit) as exc:
            main(["check", "--help"])
        assert 0 == exc.value.code
        out = capsys.readouterr().out
        for line in ("  0  no problems found", "  1  the domain has problems", "  3  could not"):
            assert line in out
        assert "worst of them (3 > 1 > 0)" in out
        assert "--domains FILE" in out
        assert "--concurrency N" in out

    def test_docs_list_exit_statuses(self):
        """docs/cli.md documents the exit statuses of check and of the fleet checker."""
        text = (ROOT / "docs" / "cli.md").read_text()
        for words in ("could not check", "--domains", "3 > 1 > 0", "NXDOMAIN"):
            assert words in text


def _fleet(lab: Lab, names: list[str], *extra: str) -> list[str]:
    # Lab.args with every domain first (argparse takes DOMAIN... before the options).
    return ["check", *names, *lab.args(names[0], *extra)[2:]]


class TestFleet:
    def _two(self, lab: Lab) -> None:
        lab.publish()
        lab.smtp_server(MX)
        lab.publish("example.net", mx="mx.example.net")
        lab.smtp_server("mx.example.net")

    def test_table_and_worst_status(self, lab, capsys, tmp_path):
        """Issue 12 item 5: --domains FILE (# comments) plus arguments; a table; the worst status."""
        self._two(lab)
        lab.dns.add("bad.example", "MX", "10 mx.bad.example.")  # no MTA-STS: problems
        listing = tmp_path / "domains.txt"
        listing.write_text("# fleet\nexample.com\n\n  example.net   # second\nexample.com\n")
        status, out = lab.text(capsys, "bad.example", "--domains", str(listing), "--no-mx")
        lines = out.splitlines()
        assert 1 == status
        assert lines[0].split() == [
            "DOMAIN",
            "MTA-STS",
            "TLS-RPT",
            "DANE",
            "PROBLEMS",
            "WARNINGS",
            "STATUS",
        ]
        rows = {line.split()[0]: line.split() for line in lines[1:4]}
        assert ["bad.example", "-", "-", "n/a", "1", "0", "problems"] == rows["bad.example"]
        assert ["example.com", "enforce", "yes", "n/a", "0", "0", "ok"] == rows["example.com"]
        assert "example.net" in rows
        assert "bad.example: problem: MTA-STS: no record at _mta-sts.bad.example" in out
        assert lines[-1] == "3 domains: 2 ok, 1 with problems, 0 could not be checked"

    def test_json_all_results(self, lab, capsys):
        """--json writes every report and the fleet's exit status; DANE and checked MX columns."""
        self._two(lab)
        lab.dns.servfail("_mta-sts.broken.example")
        status = main([*_fleet(lab, ["example.com", "example.net", "broken.example"]), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert 3 == status == doc["status"]
        assert ["example.com", "example.net", "broken.example"] == [
            d["domain"] for d in doc["domains"]
        ]
        assert ["ok", "ok", "could-not-check"] == [d["status"] for d in doc["domains"]]

    def test_concurrent(self, lab, capsys):
        """Domains are checked at once: four stalled MX hosts take one deadline, not four."""
        names = [f"d{i}.example" for i in range(4)]
        for name in names:
            lab.publish(name, mx=f"mx.{name}")
            lab.smtp_server(f"mx.{name}", "stall-greeting")
        started = time.monotonic()
        status = main([*_fleet(lab, names, "--timeout", "1.5"), "--json"])
        elapsed = time.monotonic() - started
        doc = json.loads(capsys.readouterr().out)
        assert 1 == status
        assert 4 == len(doc["domains"])
        assert elapsed < 4.5  # one after the other: at least 6 s
        started = time.monotonic()
        main(_fleet(lab, names[:3], "--timeout", "1", "--concurrency", "1"))
        assert time.monotonic() - started >= 2.5  # --concurrency 1: one after the other
        capsys.readouterr()

    def test_no_progress_without_a_terminal(self, lab, capsys):
        """Standard error is not a terminal: no progress bar."""
        self._two(lab)
        assert 0 == main(_fleet(lab, ["example.com", "example.net"]))
        assert "" == capsys.readouterr().err

    def test_progress_bar_on_a_terminal(self, lab):
        """The progress bar is drawn on stderr when it is a terminal (a pseudo-terminal here)."""
        self._two(lab)
        master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "smtpsts", *_fleet(lab, ["example.com", "example.net"])],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=slave,
                env=env,
            )
            os.close(slave)
            slave = -1
            err = b""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                err += chunk
                if len(err) > 1 << 20:
                    break
            out, _ = proc.communicate(timeout=60)
        finally:
            if slave >= 0:
                os.close(slave)
            os.close(master)
        text = err.decode()
        assert 0 == proc.returncode, text
        assert "] 0/2 domains checked" in text
        assert "[" + "#" * 30 + "] 2/2 domains checked" in text
        assert text.endswith("\r\x1b[K")  # the bar is erased at the end
        assert b"domains checked" not in out
        assert out.decode().splitlines()[0].startswith("DOMAIN")

    def test_fleet_status(self):
        """The worst of the domains: 3 > 1 > 0."""
        ok = CheckReport(D, STSCheck(), TLSRPTCheck())
        bad = CheckReport(D, STSCheck(), TLSRPTCheck(), findings=(Finding("problem", "x", "y"),))
        unknown = CheckReport(D, STSCheck(), TLSRPTCheck(), unchecked="z")
        assert (0, 1, 3, 3) == (
            fleet_status([ok]),
            fleet_status([ok, bad]),
            fleet_status([bad, unknown, ok]),
            fleet_status([unknown]),
        )
        assert (
            "1 domains: 0 ok, 0 with problems, 1 could not be checked"
            == (render_table([unknown])[-1])
        )


class TestFleetUsage:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--concurrency", "0"], "--concurrency must be at least 1"),
            (["--expiry-warning-days", "-1"], "--expiry-warning-days must be 0 or more"),
            (["--domains", "/nonexistent/list"], "cannot be read"),
        ],
    )
    def test_bad_options(self, args, message, capsys):
        """Bad fleet options are usage errors (exit 2) with one line."""
        assert 2 == main(["check", D, *args])
        assert message in capsys.readouterr().err

    def test_bad_name_in_file(self, tmp_path, capsys):
        """A line that is no domain name is a usage error naming it; an empty file too."""
        listing = tmp_path / "d.txt"
        listing.write_text("example.com\nbad..name\n")
        assert 2 == main(["check", "--domains", str(listing)])
        assert "'bad..name' is not a domain name" in capsys.readouterr().err
        listing.write_text("# nothing\n\n")
        assert 2 == main(["check", "--domains", str(listing)])
        assert "no domains in it" in capsys.readouterr().err


class TestPieces:
    """The parts the servers above do not reach: labels, words, cells, the bar."""

    def test_server_labels_and_words(self):
        """Nameservers are named ADDRESS:PORT; each failure kind has plain words."""
        import dns.exception
        import dns.nameserver

        from smtpsts.io._check_dns import WatchedResolver, _what, server_label

        assert "[::1]:5353" == server_label(dns.nameserver.Do53Nameserver("::1", 5353))
        assert "127.0.0.1:53" == server_label("Do53:127.0.0.1@53")
        assert "192.0.2.1:53" == server_label("192.0.2.1")
        assert "answered SERVFAIL" == _what("SERVFAIL")
        assert "did not answer" == _what(dns.exception.Timeout())
        assert "connection refused" in _what(ConnectionRefusedError(111, "refused"))
        assert "is unreachable (No route)" == _what(OSError(113, "No route"))
        assert "cannot be used (FormError)" in _what(dns.exception.FormError())
        watch = WatchedResolver(["127.0.0.1:5353"])
        watch.pending[0] = "example.com MX"
        assert "the DNS server 127.0.0.1:5353 did not answer (1 query)" == watch.trouble()
        assert watch.trouble_for("example.com MX") is None

    def test_table_cells(self):
        """Broken and unchecked parts, and the DANE states, in the summary table."""
        from smtpsts.io.check import CheckError, DANEStatus, MXCheck
        from smtpsts.tlsrpt.record import TLSRPTRecord

        broken = CheckError(None, "http-404", "HTTP status 404")
        late = CheckError(None, "timeout", "out of time")
        failed = MXCheck(MX, dane=DANEStatus("bogus"))
        plain = MXCheck(MX, dane=DANEStatus("insecure"))
        rows = render_table(
            [
                CheckReport("a.example", STSCheck(error=broken), TLSRPTCheck(error=broken)),
                CheckReport("b.example", STSCheck(error=late), TLSRPTCheck(error=late)),
                CheckReport(
                    "c.example",
                    STSCheck(),
                    TLSRPTCheck(TLSRPTRecord.from_text("v=TLSRPTv1; rua=mailto:a@b.c")),
                    (failed,),
                    dane_checked=True,
                ),
                CheckReport("d.example", STSCheck(), TLSRPTCheck(), (plain,), dane_checked=True),
            ]
        )
        cells = {r.split()[0]: r.split()[1:4] for r in rows[1:5]}
        assert ["error", "error", "n/a"] == cells["a.example"]
        assert ["?", "?", "n/a"] == cells["b.example"]
        assert ["-", "yes", "failed"] == cells["c.example"]
        assert ["-", "-", "-"] == cells["d.example"]

    def test_progress_drawing(self):
        """The bar fills as domains finish and is erased at the end."""
        import io

        from smtpsts._cli.check import _Progress

        stream = io.StringIO()
        bar = _Progress(stream, 2)
        bar.step(CheckReport(D, STSCheck(), TLSRPTCheck()))
        bar.close()
        text = stream.getvalue()
        assert "\r[" + "." * 30 + "] 0/2 domains checked" in text
        assert "\r[" + "#" * 15 + "." * 15 + "] 1/2 domains checked" in text
        assert text.endswith("\r\x1b[K")

    def test_expiry_edge_cases(self):
        """Expiring today; garbage DER from a policy host is no warning and no crash."""
        from smtpsts.io.check import _expiry, _Settings

        now = datetime(2030, 1, 1, tzinfo=UTC)
        settings = _Settings(None, None, None, {}, True, None, now, 0.0)  # type: ignore[arg-type]
        leaf = certfactory.make(MX, not_after=now + timedelta(hours=3)).cert
        (today,) = _expiry("MX x", leaf, settings)
        assert "expires today" in today.message
        assert [] == _expiry("the policy host", b"garbage", settings)
        assert [] == _expiry("MX x", certfactory.make(MX).cert, settings)

    def test_domains_from_stdin(self, lab, capsys, monkeypatch):
        """--domains - reads the list from standard input."""
        import io

        lab.publish()
        monkeypatch.setattr(sys, "stdin", io.StringIO("example.com\n# done\n"))
        status = main([*lab.args(D, "--no-mx")[:1], *lab.args(D, "--no-mx")[2:], "--domains", "-"])
        out = capsys.readouterr().out
        assert 0 == status
        assert out.splitlines()[1].startswith("example.com  enforce")

    def test_fleet_with_cache(self, lab, capsys, tmp_path):
        """--cache works for every domain of a fleet (each domain's own entry)."""
        from smtpsts.stores.sqlite import SQLitePolicyStore

        lab.publish()
        cache = tmp_path / "c.db"
        SQLitePolicyStore(cache).close()
        status = main(
            [*_fleet(lab, [D, "example.net"], "--no-mx", "--cache", str(cache)), "--json"]
        )
        doc = json.loads(capsys.readouterr().out)
        assert 1 == status  # example.net publishes nothing
        assert ["fresh", "none"] == [d["applied"]["source"] for d in doc["domains"]]

    def test_no_domain(self, capsys):
        """Neither DOMAIN nor --domains: argparse's usage error (exit 2)."""
        with pytest.raises(SystemExit) as exc:
            main(["check", "--json"])
        assert 2 == exc.value.code
        assert "give a DOMAIN or --domains FILE" in capsys.readouterr().err
