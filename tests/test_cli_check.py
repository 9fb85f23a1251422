"""Tests for ``smtpsts check`` (smtpsts._cli.check, smtpsts.io.check) against loopback servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import certfactory
from dnsserver import DNSServer
from httpsservers import HTTPSServer, policy
from smtpsts import ResultType
from smtpsts._cli import main
from smtpsts._cli.check import render
from smtpsts.certs import CertificateCheck
from smtpsts.dane import TLSARecord
from smtpsts.io.check import (
    CheckReport,
    DANEStatus,
    MXCheck,
    STSCheck,
    TLSRPTCheck,
    _dane,
    _judge_mx,
    _mx_problems,
    _outcome,
    check_domain,
)
from smtpsts.io.dnssec import DNSStatus, TLSALookup
from smtpsts.io.starttls import STARTTLSProbe
from smtpsts.policy import Policy
from tlsservers import SMTPServer, server_context

D = "example.com"
MX = "mail.example.com"
TESTING = b"version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 1209600\n"
NONE = b"version: STSv1\nmode: none\nmax_age: 1209600\n"


class Lab:
    """One DNS server, one HTTPS policy server and SMTP servers, all on loopback."""

    def __init__(self, dns: DNSServer, https: HTTPSServer, cafile: Path) -> None:
        self.dns = dns
        self.https = https
        self.cafile = cafile
        self.smtp: dict[str, SMTPServer] = {}
        self.extra: list[str] = []

    def smtp_server(self, host: str, behaviour: str = "normal", *, names=None) -> SMTPServer:
        leaf = certfactory.make(host, issuer=self.https.root, san=list(names or [host]))
        server = SMTPServer(server_context(leaf), behaviour).__enter__()
        self.smtp[host] = server
        self.extra += ["--connect-to", f"{host}:25:127.0.0.1:{server.port}"]
        return server

    def publish(self, domain: str = D, body: bytes | None = None, *, mx: str = MX) -> None:
        """A complete, valid setup: STS record and policy, TLS-RPT, MX with address."""
        self.dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; " "id=20240101;"')
        self.dns.add(f"_smtp._tls.{domain}", "TXT", f'"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"')
        if mx:
            self.dns.add(domain, "MX", f"10 {mx}.")
            self.dns.add(mx, "A", "127.0.0.1")
        host = f"mta-sts.{domain}"
        self.https.route(host, policy(body if body is not None else _enforce(mx or MX)))
        self.extra += ["--connect-to", f"{host}:443:127.0.0.1:{self.https.port}"]

    def args(self, domain: str = D, *extra: str) -> list[str]:
        return [
            "check",
            domain,
            "--nameserver",
            self.dns.address,
            "--cafile",
            str(self.cafile),
            "--timeout",
            "10",
            *self.extra,
            *extra,
        ]

    def json(self, capsys, domain: str = D, *extra: str) -> tuple[int, dict]:
        status = main([*self.args(domain, *extra), "--json"])
        return status, json.loads(capsys.readouterr().out)

    def text(self, capsys, domain: str = D, *extra: str) -> tuple[int, str]:
        status = main(self.args(domain, *extra))
        return status, capsys.readouterr().out


def _enforce(mx: str) -> bytes:
    return f"version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 1209600\n".encode()


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    """A fresh loopback lab per test."""
    with DNSServer() as dns, HTTPSServer() as https:
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(https.root.pem)
        lab = Lab(dns, https, cafile)
        try:
            yield lab
        finally:
            for server in lab.smtp.values():
                server.__exit__(None, None, None)


def _mx(doc: dict, host: str = MX) -> dict:
    return next(m for m in doc["mx"] if m["host"] == host)


class TestGoodDomain:
    def test_json(self, lab, capsys):
        """STS-APPLY-04, STS-CERT-14: a correct setup: record, policy, TLS-RPT, MX verified."""
        lab.publish()
        smtp = lab.smtp_server(MX)
        status, doc = lab.json(capsys)
        assert 0 == status
        assert (D, True, []) == (doc["domain"], doc["ok"], doc["problems"])
        assert {"id": "20240101", "text": "v=STSv1; id=20240101;"} == doc["sts"]["record"]
        assert ("enforce", [MX], 1209600, None) == (
            doc["sts"]["policy"]["mode"],
            doc["sts"]["policy"]["mx"],
            doc["sts"]["policy"]["max_age"],
            doc["sts"]["error"],
        )
        assert ([f"mailto:tlsrpt@{D}"], None) == (
            doc["tlsrpt"]["record"]["rua"],
            doc["tlsrpt"]["error"],
        )
        mx = _mx(doc)
        assert (10, True, "127.0.0.1") == (mx["preference"], mx["matches_policy"], mx["address"])
        tls = mx["tls"]
        assert (True, True, True) == (tls["probed"], tls["starttls"], tls["handshake"])
        assert (True, MX, [MX]) == (
            tls["certificate"]["ok"],
            tls["certificate"]["identity"],
            tls["certificate"]["names"],
        )
        assert {"action": "deliver", "result_type": None, "reason": None} == mx["verdict"]
        # DANE-02: a loopback resolver is trusted; the test zone is unsigned.
        assert (True, "insecure") == (doc["dane_checked"], mx["dane"]["status"])
        assert [MX] == smtp.snis  # STS-CERT-14: SNI is the MX host name

    def test_human(self, lab, capsys):
        """The human report has the record, policy, MX, TLS-RPT and verdict sections."""
        lab.publish()
        lab.smtp_server(MX)
        status, out = lab.text(capsys)
        assert 0 == status
        for line in (
            f"MTA-STS record (TXT _mta-sts.{D})",
            "  found: v=STSv1; id=20240101;",
            "  mode: enforce, max_age: 1209600",
            f"  10 {MX} [127.0.0.1]",
            "    matches policy: yes",
            f"    certificate: valid for {MX}",
            "    delivery: deliver",
            f"  rua: mailto:tlsrpt@{D}",
            "  OK: no problems found",
        ):
            assert line in out.splitlines()
        assert "DANE: insecure" in out

    def test_no_mx_probe(self, lab, capsys):
        """--no-mx skips the port-25 probes; MX hosts are still listed and matched."""
        lab.publish()
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 0 == status
        assert ({"probed": False, "error": None}, True, None) == (
            _mx(doc)["tls"],
            _mx(doc)["matches_policy"],
            _mx(doc)["verdict"],
        )
        assert not doc["dane_checked"]
        status, out = lab.text(capsys, D, "--no-mx")
        assert "    not probed" in out.splitlines()

    def test_check_domain_api(self, lab):
        """The library entry point returns a frozen report with to_json()."""
        lab.publish()
        lab.smtp_server(MX)
        connect = {
            ("mta-sts.example.com", 443): ("127.0.0.1", lab.https.port),
            (MX, 25): ("127.0.0.1", lab.smtp[MX].port),
        }
        report = check_domain(
            "EXAMPLE.com.",
            nameservers=[lab.dns.address],
            trust=lab.https.trust,
            connect_to=connect,
            timeout=10,
            helo_name="probe.test",
            now=datetime(2030, 1, 1, tzinfo=UTC),
        )
        assert (D, True) == (report.domain, report.ok)
        assert report.to_dict() == json.loads(report.to_json(indent=None))


class TestSTSProblems:
    def test_no_record(self, lab, capsys):
        """STS-REC-13: no _mta-sts record: no policy, reported as a problem with advice."""
        lab.dns.add(D, "MX", f"10 {MX}.")
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 1 == status
        assert (None, None, None) == (
            doc["sts"]["record"],
            doc["sts"]["policy"],
            doc["sts"]["error"],
        )
        assert any("no record at _mta-sts" in p for p in doc["problems"])
        assert any("v=TLSRPTv1" in a for a in doc["advice"])
        assert None is _mx(doc)["matches_policy"]
        status, out = lab.text(capsys, D, "--no-mx")
        assert "  not fetched (no record)" in out.splitlines()
        assert "    matches policy: n/a" in out.splitlines()

    def test_only_other_txt(self, lab, capsys):
        """STS-REC-12: TXT records that are not v=STSv1 mean no record."""
        lab.dns.add(f"_mta-sts.{D}", "TXT", '"v=spf1 -all"')
        lab.dns.add(f"_smtp._tls.{D}", "TXT", '"something else"')
        _, doc = lab.json(capsys, D, "--no-mx")
        assert (None, None) == (doc["sts"]["record"], doc["sts"]["error"])
        assert (None, None) == (doc["tlsrpt"]["record"], doc["tlsrpt"]["error"])

    def test_multiple_records(self, lab, capsys):
        """STS-REC-13, RPT-REC-06: two candidate records: no policy, no TLS-RPT."""
        lab.dns.add(f"_mta-sts.{D}", "TXT", '"v=STSv1; id=1;"', '"v=STSv1; id=2;"')
        lab.dns.add(f"_smtp._tls.{D}", "TXT", '"v=TLSRPTv1; rua=mailto:a@b.c"', '"v=TLSRPTv1;"')
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 1 == status
        assert ("sts-policy-fetch-error", "txt-multiple-records") == (
            doc["sts"]["error"]["result_type"],
            doc["sts"]["error"]["reason"],
        )
        assert "txt-multiple-records" == doc["tlsrpt"]["error"]["reason"]
        _, out = lab.text(capsys, D, "--no-mx")
        assert "(txt-multiple-records)" in out

    def test_syntax_error(self, lab, capsys):
        """STS-REC-14, RPT-REC-06: one candidate record that does not parse."""
        lab.dns.add(f"_mta-sts.{D}", "TXT", '"v=STSv1; id=bad id!;"')
        lab.dns.add(f"_smtp._tls.{D}", "TXT", '"v=TLSRPTv1; rua=nonsense"')
        _, doc = lab.json(capsys, D, "--no-mx")
        assert "txt-syntax-error" == doc["sts"]["error"]["reason"]
        assert "txt-syntax-error" == doc["tlsrpt"]["error"]["reason"]

    def test_dns_failure(self, lab, capsys):
        """STS-REC-17, issue 12 item 4: SERVFAIL is "could not check" (exit 3), never "no record"."""
        for name in (f"_mta-sts.{D}", f"_smtp._tls.{D}", D):
            lab.dns.servfail(name)
        status, doc = lab.json(capsys)
        assert (3, "could-not-check", []) == (status, doc["status"], doc["problems"])
        assert "txt-lookup-failed" == doc["sts"]["error"]["reason"]
        assert "txt-lookup-failed" == doc["tlsrpt"]["error"]["reason"]
        assert ("mx-lookup-failed", []) == (doc["mx_error"]["reason"], doc["mx"])
        server = lab.dns.address
        assert doc["unchecked"] == (
            f"the DNS server {server} answered SERVFAIL for _mta-sts.{D} TXT, "
            f"_smtp._tls.{D} TXT, {D} MX"
        ) or doc["unchecked"].startswith(f"the DNS server {server} answered SERVFAIL for ")
        assert f"the DNS server {server} answered SERVFAIL" in doc["mx_error"]["detail"]
        status, out = lab.text(capsys)
        assert 3 == status
        assert 1 == out.count(server), out  # the server is named once
        assert "  not checked" in out.splitlines()
        assert f"  COULD NOT CHECK {D}: the DNS server {server} answered SERVFAIL" in out

    def test_policy_not_found(self, lab, capsys):
        """STS-FETCH-06: a 404 from the policy host is sts-policy-fetch-error / http-404."""
        lab.publish()
        lab.https.route(f"mta-sts.{D}", policy(b"nope", status="404 Not Found"))
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 1 == status
        assert ("sts-policy-fetch-error", "http-404") == (
            doc["sts"]["error"]["result_type"],
            doc["sts"]["error"]["reason"],
        )
        assert any("text/plain with status 200" in a for a in doc["advice"])
        _, out = lab.text(capsys, D, "--no-mx")
        assert "  ERROR sts-policy-fetch-error: HTTP status 404 (http-404)" in out

    def test_policy_invalid(self, lab, capsys):
        """STS-FETCH-18: a policy that does not parse is sts-policy-invalid."""
        lab.publish(body=b"version: STSv1\nmode: enforce\nmax_age: 86400\n")
        _, doc = lab.json(capsys, D, "--no-mx")
        assert "sts-policy-invalid" == doc["sts"]["error"]["result_type"]

    def test_untrusted_policy_host(self, lab, capsys):
        """STS-FETCH-03: a policy host certificate from an unknown CA is sts-webpki-invalid."""
        lab.publish()
        lab.https.certificate(f"mta-sts.{D}", untrusted=True)
        _, doc = lab.json(capsys, D, "--no-mx")
        assert "sts-webpki-invalid" == doc["sts"]["error"]["result_type"]
        assert any("certificate that is valid" in a for a in doc["advice"])

    @pytest.mark.parametrize(
        ("body", "mode", "advice"),
        [(TESTING, "testing", "mode 'testing'"), (NONE, "none", "mode 'none'")],
    )
    def test_modes(self, lab, capsys, body, mode, advice):
        """STS-APPLY-06, STS-APPLY-07: testing and none policies are reported with advice."""
        lab.publish(body=body)
        lab.smtp_server(MX)
        status, doc = lab.json(capsys)
        assert (0, mode) == (status, doc["sts"]["policy"]["mode"])
        # The lint rule's warning (issue 12 item 4: lint and check say the same).
        assert any(advice in a for a in doc["warnings"])
        codes = {f["code"]: f["severity"] for f in doc["findings"]}
        assert "warning" == codes[f"mode-{mode}"]
        expected = True if mode == "testing" else None
        assert expected == _mx(doc)["matches_policy"]

    def test_short_max_age(self, lab, capsys):
        """A short max_age draws lint's warning, not a problem (issue 12 item 4)."""
        body = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 600\n"
        lab.publish(body=body)
        status, doc = lab.json(capsys, D, "--no-mx")
        assert 0 == status
        from smtpsts.lint import lint_policy

        expected = [f"MTA-STS policy: line {p.line}: {p.message}." for p in lint_policy(body)]
        assert expected == doc["warnings"]
        assert any("max_age 600" in w for w in doc["warnings"])


class TestMXProblems:
    def test_mx_not_in_policy(self, lab, capsys):
        """STS-MX-11: under enforce an MX the policy does not name is skipped."""
        lab.publish(body=_enforce("other.example.com"))
        lab.smtp_server(MX)
        status, doc = lab.json(capsys)
        assert 1 == status
        mx = _mx(doc)
        assert (False, "skip-mx", "mtasts-policy-mx-mismatch") == (
            mx["matches_policy"],
            mx["verdict"]["action"],
            mx["verdict"]["reason"],
        )
        assert any(f"Add 'mx: {MX}'" in a for a in doc["advice"])
        _, out = lab.text(capsys)
        assert "    matches policy: NO" in out.splitlines()

    def test_no_starttls(self, lab, capsys):
        """STS-APPLY-16: no STARTTLS under enforce: starttls-not-supported, MX skipped."""
        lab.publish()
        lab.smtp_server(MX, "no-starttls")
        status, doc = lab.json(capsys)
        assert 1 == status
        tls = _mx(doc)["tls"]
        assert (False, "starttls-not-supported") == (tls["starttls"], tls["result_type"])
        assert "skip-mx" == _mx(doc)["verdict"]["action"]
        _, out = lab.text(capsys)
        assert "    STARTTLS: NOT OFFERED (starttls-not-offered)" in out.splitlines()

    def test_handshake_stall(self, lab, capsys):
        """A server that stalls in the handshake costs at most the deadline."""
        lab.publish()
        lab.smtp_server(MX, "stall-handshake")
        started = time.monotonic()
        status = main([*lab.args(D, "--timeout", "1.5"), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert time.monotonic() - started < 4
        assert 1 == status
        tls = _mx(doc)["tls"]
        assert ("handshake", "io-timeout-during-handshake") == (tls["failed_step"], tls["reason"])

    def test_refused_starttls_text(self, lab, capsys):
        """STARTTLS refused (454): reported with its step in the human output."""
        lab.publish()
        lab.smtp_server(MX, "refuse-starttls")
        status, out = lab.text(capsys)
        assert 1 == status
        assert (
            "    STARTTLS: FAILED at starttls: 454 4.7.0 TLS not available (starttls-refused-454)"
            in out.splitlines()
        )

    def test_wrong_certificate(self, lab, capsys):
        """STS-CERT-03: an MX certificate for another name is certificate-host-mismatch."""
        lab.publish()
        lab.smtp_server(MX, names=["other.example.org"])
        status, doc = lab.json(capsys)
        assert 1 == status
        cert = _mx(doc)["tls"]["certificate"]
        assert (False, "certificate-host-mismatch") == (cert["ok"], cert["result_type"])
        assert "certificate-host-mismatch" == _mx(doc)["verdict"]["result_type"]
        _, out = lab.text(capsys)
        assert "    certificate: CERTIFICATE-HOST-MISMATCH:" in out

    def test_connect_refused(self, lab, capsys):
        """STS-APPLY-11: a connect failure is a problem but no MTA-STS verdict."""
        lab.publish()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        lab.extra += ["--connect-to", f"{MX}:25:127.0.0.1:{port}"]
        status, doc = lab.json(capsys)
        assert 1 == status
        assert (False, None) == (_mx(doc)["tls"]["connected"], _mx(doc)["verdict"])
        _, out = lab.text(capsys)
        assert "    connect: FAILED:" in out

    def test_no_address(self, lab, capsys):
        """An MX host without address records cannot be probed."""
        lab.publish(mx="")
        lab.dns.add(D, "MX", "10 ghost.example.com.", "20 ghost2.example.com.")
        lab.dns.add("ghost2.example.com", "AAAA", "::1")
        lab.dns.servfail("ghost2.example.com")
        status, doc = lab.json(capsys)
        assert 3 == status  # ghost2's address lookup failed: could not check it
        assert ["MX ghost.example.com: not probed: ghost.example.com has no address records."] == [
            p for p in doc["problems"] if "not probed" in p
        ]
        ghost = _mx(doc, "ghost.example.com")
        assert (False, "ghost.example.com has no address records") == (
            ghost["tls"]["probed"],
            ghost["tls"]["error"],
        )
        ghost2 = _mx(doc, "ghost2.example.com")
        assert True is ghost2["could_not_check"]
        assert "answered SERVFAIL" in ghost2["tls"]["error"]
        _, out = lab.text(capsys)
        assert "    not probed: ghost.example.com has no address records" in out

    def test_implicit_mx(self, lab, capsys):
        """STS-MX-08: no MX records: the domain itself is the MX."""
        lab.publish(mx="")
        lab.dns.add(D, "A", "127.0.0.1")
        lab.smtp_server(D)
        _, doc = lab.json(capsys)
        mx = _mx(doc, D)
        assert (True, False) == (mx["implicit"], mx["matches_policy"])
        _, out = lab.text(capsys)
        assert f"  {D} (no MX records: the domain itself) [127.0.0.1]" in out

    def test_null_mx(self, lab, capsys):
        """RFC 7505: a null MX is reported, nothing is probed."""
        lab.publish(mx="")
        lab.dns.add(D, "MX", "0 .")
        _, doc = lab.json(capsys)
        assert (True, []) == (doc["null_mx"], doc["mx"])
        _, out = lab.text(capsys)
        assert "  null MX (RFC 7505): the domain accepts no mail" in out

    def test_dane_not_trusted(self, lab):
        """DANE-02: with an untrusted resolver DANE is not checked."""
        lab.publish()
        lab.smtp_server(MX)
        report = check_domain(
            D,
            nameservers=[lab.dns.address],
            trust=lab.https.trust,
            connect_to={
                (f"mta-sts.{D}", 443): ("127.0.0.1", lab.https.port),
                (MX, 25): ("127.0.0.1", lab.smtp[MX].port),
            },
            timeout=10,
            trust_ad=False,
        )
        assert (False, "not-checked") == (report.dane_checked, report.mx[0].dane.status)
        assert "DANE:" not in "\n".join(render(report))


class TestDeadline:
    def test_silent_dns_server(self, tmp_path, capsys):
        """STS-REC-17: a DNS server that never answers: the check ends at its deadline."""
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(certfactory.make("ca", ca=True).pem)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            started = time.monotonic()
            status = main(
                [
                    "check",
                    D,
                    "--json",
                    "--nameserver",
                    f"127.0.0.1:{port}",
                    "--cafile",
                    str(cafile),
                    "--timeout",
                    "1.0",
                ]
            )
            elapsed = time.monotonic() - started
        doc = json.loads(capsys.readouterr().out)
        assert elapsed < 2.5
        assert (3, "could-not-check", []) == (status, doc["status"], doc["problems"])
        assert doc["unchecked"].startswith(f"the DNS server 127.0.0.1:{port} did not answer")
        # Either the lookups gave up (their lifetime ends just before the
        # deadline) or the deadline cut them off: never "no record".
        for error in (doc["sts"]["error"], doc["tlsrpt"]["error"], doc["mx_error"]):
            assert error["reason"] in ("timeout", "txt-lookup-failed", "mx-lookup-failed")
        assert "timeout" not in json.dumps(doc["problems"])

    def test_stalled_policy_host(self, lab, capsys):
        """STS-FETCH-11: a policy host that stalls: the fetch ends within the deadline."""
        lab.publish()
        lab.dns.drop(D)  # the MX lookup never ends either
        lab.https.route(f"mta-sts.{D}", lambda conn, stop: stop.wait(10))
        started = time.monotonic()
        status = main([*lab.args(D, "--timeout", "1.0"), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert time.monotonic() - started < 3
        assert 3 == status  # the MX lookup never ended: could not check
        assert f"the DNS server {lab.dns.address} did not answer (1 query)" == doc["unchecked"]
        assert ("20240101", "sts-policy-fetch-error") == (
            doc["sts"]["record"]["id"],
            doc["sts"]["error"]["result_type"],
        )
        assert "timeout" in doc["sts"]["error"]["reason"]
        status, out = lab.text(capsys, D, "--timeout", "1.0")
        # The fetch's own timeout or the check's deadline, whichever came first.
        assert 3 == status
        assert "ERROR sts-policy-fetch-error" in out or "  not checked" in out

    def test_stalled_mx(self, lab, capsys):
        """A silent SMTP server: the probe ends at the deadline, partial results kept."""
        lab.publish()
        lab.smtp_server(MX, "stall-greeting")
        started = time.monotonic()
        status, doc = lab.json(capsys, D, "--timeout", "1.0")
        assert time.monotonic() - started < 3
        assert 1 == status
        assert "20240101" == doc["sts"]["record"]["id"]


class TestUsage:
    @pytest.mark.parametrize(
        "extra",
        [
            ["--nameserver", "not-an-ip"],
            ["--connect-to", "nonsense"],
            ["--cafile", "/nonexistent/ca.pem"],
            ["--timeout", "0"],
        ],
    )
    def test_bad_options(self, extra, capsys):
        """Malformed options are usage errors (exit 2) with a message."""
        assert 2 == main(["check", D, *extra])
        assert "smtpsts check: error:" in capsys.readouterr().err

    def test_empty_cafile(self, tmp_path, capsys):
        """A --cafile without certificates is a usage error."""
        empty = tmp_path / "empty.pem"
        empty.write_text("nothing here\n")
        assert 2 == main(["check", D, "--cafile", str(empty)])
        assert f"--cafile: {empty}: no trust anchors found" in capsys.readouterr().err

    def test_bad_domain(self, tmp_path, capsys):
        """A domain that is not a host name is a usage error."""
        cafile = tmp_path / "ca.pem"
        cafile.write_bytes(certfactory.make("ca", ca=True).pem)
        assert 2 == main(
            ["check", "bad..domain", "--nameserver", "127.0.0.1:9", "--cafile", str(cafile)]
        )
        assert "is not a domain name" in capsys.readouterr().err

    def test_missing_domain(self):
        """Argparse rejects a missing DOMAIN with exit status 2."""
        with pytest.raises(SystemExit) as exc:
            main(["check"])
        assert 2 == exc.value.code


class TestDANE:
    """The DANE part, with a secure TLSA lookup result given directly (no signed zone here)."""

    def _probe(self, chain) -> STARTTLSProbe:
        return STARTTLSProbe(
            MX,
            25,
            MX,
            "127.0.0.1",
            connected=True,
            starttls_offered=True,
            handshake_ok=True,
            chain=chain,
        )

    def test_secure_match(self):
        """DANE-12: a secure TLSA RRset matching the leaf authenticates the MX."""
        pki = certfactory.pki(MX)
        record = TLSARecord.from_text(_tlsa_text(3, pki.leaf.cert))
        lookup = TLSALookup(DNSStatus.SECURE, MX, 25, (record,), MX, (MX,), secure=True)
        status = _dane(lookup, self._probe(pki.chain), datetime.now(UTC))
        assert ("secure", True, False) == (status.status, status.check.authenticated, status.failed)
        assert "secure" == status.to_dict()["status"]

    def test_all_unusable(self):
        """DANE-13, DANE-55: an all-unusable RRset is reported as tlsa-invalid, delivery goes on."""
        pki = certfactory.pki(MX)
        record = TLSARecord.from_text(_tlsa_text(0, pki.leaf.cert))
        lookup = TLSALookup(DNSStatus.SECURE, MX, 25, (record,), MX, (MX,), secure=True)
        probe = self._probe(pki.chain)
        dane = _dane(lookup, probe, datetime.now(UTC))
        assert (True, "tlsa-invalid") == (dane.failed, dane.to_dict()["result_type"])
        policy = Policy.from_text(_enforce(MX))
        mx = _judge_mx(
            MXCheck(MX, 10, probe=probe, certificate=None, dane=dane), policy, _outcome(D, policy)
        )
        assert "skip-mx" == mx.to_dict()["verdict"]["action"]  # no PKIX check was made
        assert ResultType.TLSA_INVALID == mx.verdict.dane_session.result_type
        report = CheckReport(D, STSCheck(), TLSRPTCheck(), (mx,), dane_checked=True)
        assert "    DANE: secure, all-unusable-records" in "\n".join(render(report))

    def _dane_ee_mx(self) -> MXCheck:
        # An MX authenticated by DANE-EE whose certificate fails WebPKI.
        pki = certfactory.pki(MX)
        record = TLSARecord.from_text(_tlsa_text(3, pki.leaf.cert))
        lookup = TLSALookup(DNSStatus.SECURE, MX, 25, (record,), MX, (MX,), secure=True)
        probe = self._probe(pki.chain)
        untrusted = CertificateCheck(
            False, ResultType.CERTIFICATE_NOT_TRUSTED, "not trusted", "certificate-not-trusted"
        )
        dane = _dane(lookup, probe, datetime.now(UTC))
        return MXCheck(MX, 10, probe=probe, certificate=untrusted, dane=dane)

    def test_dane_authenticated_pkix_failure_is_advice_without_sts(self):
        """Issue 12 item 4, RFC 7672 §3.1: no MTA-STS policy and DANE authenticates: advice only."""
        found = _mx_problems(self._dane_ee_mx(), probed=True, sts_applies=False, enforce=False)
        assert ["advice"] == [f.severity.value for f in found]
        assert "authenticate this MX by DANE" in found[0].message

    def test_pkix_failure_stays_a_problem_under_sts(self):
        """Issue 12 item 4, RFC 8461 §4.2: with an MTA-STS policy, WebPKI still matters: a problem."""
        found = _mx_problems(self._dane_ee_mx(), probed=True, sts_applies=True, enforce=True)
        assert [("problem", f"MX {MX}: certificate certificate-not-trusted: not trusted.")] == [
            (f.severity.value, f.message) for f in found
        ]

    def test_bogus(self):
        """DANE-08: a bogus TLSA lookup makes the MX unusable (reported as a failure)."""
        lookup = TLSALookup(DNSStatus.BOGUS, MX, 25, detail="EDE 6")
        dane = _dane(lookup, self._probe(()), datetime.now(UTC))
        assert (True, None, "EDE 6") == (dane.failed, dane.check, dane.to_dict()["detail"])
        assert False is DANEStatus("insecure").failed


def _tlsa_text(usage: int, cert) -> str:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"{usage} 1 1 {hashlib.sha256(spki).hexdigest()}"


class TestDANELab:
    """End to end against NSD + Unbound: a signed zone with TLSA records (DNSSEC lab)."""

    def test_dane_statuses(self, tmp_path, capsys):
        """DANE-12, DANE-13, DANE-55: authenticated, mismatching and unusable TLSA."""
        from dnslab import DNSLab, Zone

        root = certfactory.make("DANE lab CA", ca=True)
        leaves = {n: certfactory.make(f"{n}.dane.test", issuer=root) for n in ("mx1", "mx2", "mx3")}
        stranger = certfactory.make("stranger", issuer=root)
        body = (
            "@ MX 10 mx1\n@ MX 20 mx2\n@ MX 30 mx3\n"
            '_mta-sts TXT "v=STSv1; id=1;"\nmta-sts A 127.0.0.1\n'
            '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:r@dane.test"\n'
            + "".join(f"{n} A 127.0.0.1\n" for n in leaves)
            + f"_25._tcp.mx1 TLSA {_tlsa_text(3, leaves['mx1'].cert)}\n"
            + f"_25._tcp.mx2 TLSA {_tlsa_text(3, stranger.cert)}\n"
            + f"_25._tcp.mx3 TLSA {_tlsa_text(0, leaves['mx3'].cert)}\n"
        )
        (tmp_path / "lab").mkdir()
        with (
            DNSLab([Zone("dane.test", body)], tmp_path / "lab") as lab,
            HTTPSServer() as https,
            SMTPServer(server_context(leaves["mx1"])) as mx1,
            SMTPServer(server_context(leaves["mx2"])) as mx2,
            SMTPServer(server_context(leaves["mx3"])) as mx3,
        ):
            cafile = tmp_path / "ca.pem"  # the MX CA and the policy host CA
            cafile.write_bytes(root.pem + https.root.pem)
            https.route("mta-sts.dane.test", policy(_enforce("*.dane.test")))
            args = ["check", "dane.test", "--json", "--nameserver", lab.nameserver]
            args += ["--cafile", str(cafile), "--timeout", "10"]
            args += ["--connect-to", f"mta-sts.dane.test:443:127.0.0.1:{https.port}"]
            for name, server in (("mx1", mx1), ("mx2", mx2), ("mx3", mx3)):
                args += ["--connect-to", f"{name}.dane.test:25:127.0.0.1:{server.port}"]
            status = main(args)
            doc = json.loads(capsys.readouterr().out)
        assert (1, True, "enforce") == (status, doc["dane_checked"], doc["sts"]["policy"]["mode"])
        one, two, three = (_mx(doc, f"{n}.dane.test") for n in ("mx1", "mx2", "mx3"))
        assert ("secure", True, "deliver") == (
            one["dane"]["status"],
            one["dane"]["authenticated"],
            one["verdict"]["action"],
        )
        assert ("secure", "dane-no-match", "skip-mx") == (
            two["dane"]["status"],
            two["dane"]["reason"],
            two["verdict"]["action"],
        )
        # DANE-13: all records unusable: TLS without authentication, delivery goes on,
        # and the broken RRset is a problem (tlsa-invalid).
        assert ("tlsa-invalid", "deliver") == (
            three["dane"]["result_type"],
            three["verdict"]["action"],
        )
        assert any("mx2.dane.test: DANE secure" in p for p in doc["problems"])
        assert any("mx3.dane.test: DANE secure" in p for p in doc["problems"])


class TestBuiltInLab:
    """``smtpsts check --lab FILE`` against the built-in lab (issue 12 items 2 and 4)."""

    def test_dane_domain_is_not_a_problem(self, tmp_path, capsys):
        """
        Issue 12 item 4: the lab's dane.example (DANE-EE, no MTA-STS) has no problems.

        DANE authenticates its MX: the missing MTA-STS record and the
        self-signed certificate are advice, not problems, so a monitor gets
        exit status 0.
        """
        from smtpsts.lab.scenarios import Lab as BuiltInLab
        from smtpsts.lab.state import write_lab_state

        with BuiltInLab() as running:
            state = write_lab_state(running, tmp_path)
            status = main(["check", "dane.example", "--lab", str(state.path), "--json"])
            doc = json.loads(capsys.readouterr().out)
        assert (0, []) == (status, doc["problems"])
        assert True is doc["mx"][0]["dane"]["authenticated"]
        assert any("authenticated by DANE" in a for a in doc["advice"])

    def test_bad_lab_file(self, tmp_path, capsys):
        """Issue 12 item 2: a missing or foreign state file is a one-line usage error (exit 2)."""
        assert 2 == main(["check", "example.com", "--lab", str(tmp_path / "gone.json")])
        assert "is `smtpsts lab --keep-running` still running?" in capsys.readouterr().err
        (tmp_path / "x.json").write_text('{"v": 99}')
        assert 2 == main(["check", "example.com", "--lab", str(tmp_path / "x.json")])
        assert "not a lab state file of version 1" in capsys.readouterr().err


class TestCachedPolicy:
    """``smtpsts check --cache``: the verdicts of a sender holding the policy server's cache (SEC-50)."""

    def _learn(self, lab: Lab, path: Path) -> None:
        from smtpsts.io.dns import DNSResolver
        from smtpsts.io.drivers import PolicyResolver
        from smtpsts.io.http import HTTPSFetcher
        from smtpsts.stores.sqlite import SQLitePolicyStore

        store = SQLitePolicyStore(path)
        connect_to = {(f"mta-sts.{D}", 443): ("127.0.0.1", lab.https.port)}
        resolver = PolicyResolver(
            store=store,
            dns=DNSResolver([lab.dns.address]),
            fetcher=HTTPSFetcher(trust=lab.https.trust, connect_to=connect_to),
        )
        assert "enforce" == resolver.resolve(D).mode.value  # type: ignore[union-attr]
        store.close()

    def test_sec_50_cached_enforce_judges_attacker_mx(self, lab, capsys, tmp_path):
        """SEC-50: TXT blocked and MX swapped: with --cache the attacker's MX is skipped, not trusted."""
        lab.publish()
        cache = tmp_path / "cache.db"
        self._learn(lab, cache)
        # The attacker: no _mta-sts answer, and an MX of its own with a valid certificate.
        lab.dns.servfail(f"_mta-sts.{D}")
        lab.dns.set(D, "MX", "10 evil.example.net.")
        lab.dns.add("evil.example.net", "A", "127.0.0.1")
        lab.smtp_server("evil.example.net")

        _, plain = lab.json(capsys)
        _, cached = lab.json(capsys, D, "--cache", str(cache))
        _, text = lab.text(capsys, D, "--cache", str(cache))

        assert "deliver" == _mx(plain, "evil.example.net")["verdict"]["action"]
        assert "skip-mx" == _mx(cached, "evil.example.net")["verdict"]["action"]
        applied = cached["applied"]
        assert ("enforce", "cached") == (applied["mode"], applied["source"])
        assert applied["failure"].endswith("+fallback-to-cached-policy")
        assert "a sender with this cache applies: enforce (cached, id 20240101" in text
        assert plain["applied"] is None

    def test_cache_without_entry(self, lab, capsys, tmp_path):
        """A cache that does not know the domain gives the verdicts of discovery itself."""
        lab.publish()
        lab.smtp_server(MX)
        cache = tmp_path / "empty.db"
        from smtpsts.stores.sqlite import SQLitePolicyStore

        SQLitePolicyStore(cache).close()

        status, doc = lab.json(capsys, D, "--cache", str(cache))

        assert 0 == status
        assert ("enforce", "fresh") == (doc["applied"]["mode"], doc["applied"]["source"])

    def test_bad_cache(self, lab, capsys, tmp_path):
        """A missing or unreadable cache file is a usage error (exit 2)."""
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"not a database" * 100)

        assert 2 == main(lab.args(D, "--cache", str(tmp_path / "missing.db")))
        assert 2 == main(lab.args(D, "--cache", str(garbage)))
        err = capsys.readouterr().err
        assert "no such file" in err
        assert "cannot be read" in err
