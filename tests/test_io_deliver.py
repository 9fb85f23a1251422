"""Tests for smtpsts.io.deliver against real loopback servers (the lab's)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from smtpsts import LocalResourceError, Mode, Policy
from smtpsts.cache import PolicyOutcome, PolicySource
from smtpsts.decision import Deliver, DeliverAndReport
from smtpsts.io.deliver import (
    AsyncDelivery,
    Delivery,
    DeliveryStatus,
    adeliver_connection,
    deliver_connection,
)
from smtpsts.io.dns import AsyncDNSResolver, DNSFailure, DNSResolver
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSSECResolver
from smtpsts.io.drivers import PolicyResolver
from smtpsts.lab.scenarios import HELO, Lab
from smtpsts.lab.servers import SMTPServer
from smtpsts.tlsrpt.session import PolicyInfo


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A running lab with a few extra domains for the helper's edge cases."""
    with Lab() as running:
        running.dns.set("nullmx.example", "MX", "0 .")
        running.dns.set("implicit.example", "A", "127.0.0.1")
        running.connect_to[("implicit.example", 25)] = running.connect_to[
            ("mx.testing.example", 25)
        ]
        running.dns.set("nowhere.example", "TXT", '"no mail here"')
        running.dns.servfail("broken.example")
        running.dns.set("plain.example", "MX", "10 mx.nostarttls.example.")
        running.dns.set("noaddr.example", "MX", "10 mx.noaddr.example.", "20 mx.enforce.example.")
        running.dns.set(
            "failaddr.example", "MX", "10 mx.failaddr.example.", "20 mx.enforce.example."
        )
        running.dns.servfail("mx.failaddr.example")
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        running.dns.set("refused.example", "MX", "10 mx.refused.example.")
        running.connect_to[("mx.refused.example", 25)] = ("127.0.0.1", port)
        running.dns.set("bogus.dane.example", "MX", "10 mx.bogus.dane.example.")
        running.dns.set("mx.bogus.dane.example", "A", "127.0.0.1")
        running.dns.servfail("_25._tcp.mx.bogus.dane.example")
        running.connect_to[("mx.bogus.dane.example", 25)] = running.connect_to[
            ("mx.enforce.example", 25)
        ]
        # an enforce policy whose MX is not listed: never contacted (STS-MX-11)
        running.dns.set("_mta-sts.skip.example", "TXT", '"v=STSv1; id=1;"')
        running.https.route(
            "mta-sts.skip.example",
            b"version: STSv1\r\nmode: enforce\r\nmx: mx.enforce.example\r\nmax_age: 86400\r\n",
        )
        running.connect_to[("mta-sts.skip.example", 443)] = ("127.0.0.1", running.https.port)
        running.dns.set("skip.example", "MX", "10 mx.attacker.example.")
        # DANE without STARTTLS
        running.dns.set("nostls.dane.example", "MX", "10 mx.nostarttls.dane.example.")
        running.dns.set("mx.nostarttls.dane.example", "A", "127.0.0.1")
        running.dns.set("_25._tcp.mx.nostarttls.dane.example", "TLSA", "3 1 1 " + "00" * 32)
        running.connect_to[("mx.nostarttls.dane.example", 25)] = running.connect_to[
            ("mx.nostarttls.example", 25)
        ]
        # found by address lookup, not connect_to
        running.dns.set("direct.example", "MX", "10 mx.direct.example.")
        running.dns.set("mx.direct.example", "A", "127.0.0.1")
        yield running


def _sync(lab: Lab, domain: str, *, dane: bool = False, **kw: Any) -> Delivery:
    return deliver_connection(
        domain,
        policies=kw.pop("policies", None) or lab.resolver(),
        dnssec=DNSSECResolver([lab.dns.address], trust_ad=True) if dane else None,
        helo_name=HELO,
        **{"timeout": 10.0, "dns": DNSResolver([lab.dns.address]), **kw},
    )


def _async(lab: Lab, domain: str, *, dane: bool = False, **kw: Any) -> AsyncDelivery:
    async def go() -> AsyncDelivery:
        result = await adeliver_connection(
            domain,
            policies=kw.pop("policies", None) or lab.resolver(),
            dnssec=AsyncDNSSECResolver([lab.dns.address], trust_ad=True) if dane else None,
            helo_name=HELO,
            **{"timeout": 10.0, "dns": AsyncDNSResolver([lab.dns.address]), **kw},
        )
        if result.writer is not None:
            assert result.reader is not None
            result.writer.write(b"EHLO x\r\n")
            line = await result.reader.readline()
            assert line.startswith(b"250")
            result.writer.write(b"QUIT\r\n")
            await result.reader.readline()
            result.writer.close()
            with contextlib.suppress(ssl.SSLError, OSError):
                await result.writer.wait_closed()
        return result

    return asyncio.run(go())


def _close(result: Delivery | AsyncDelivery) -> None:
    if isinstance(result, Delivery) and result.smtp is not None:
        result.smtp.close()


RUNNERS = [pytest.param(_sync, id="sync"), pytest.param(_async, id="asyncio")]


@pytest.mark.parametrize("run", RUNNERS)
def test_enforce_valid_delivers(lab: Lab, run: object) -> None:
    """STS-APPLY-04, STS-APPLY-13: enforce + matching MX + valid certificate: the session is handed back."""
    result = run(lab, "enforce.example")  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert isinstance(result.verdict, Deliver)
    assert result.attempts[-1].tls
    assert [None] == [s.result_type for s in result.sessions]


def test_sync_session_sends_mail(lab: Lab) -> None:
    """STS-APPLY-04: the smtplib session handed back carries a message over TLS."""
    result = _sync(lab, "enforce.example")
    assert result.smtp is not None
    result.smtp.sendmail("a@sender.example", ["b@enforce.example"], b"Subject: t\r\n\r\nx\r\n")
    result.smtp.quit()
    assert lab.smtp["mx.enforce.example"].messages[-1][0] is True


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize(
    ("domain", "result_type"),
    [
        ("expired.example", "certificate-expired"),
        ("wrongname.example", "certificate-host-mismatch"),
        ("nostarttls.example", "starttls-not-supported"),
    ],
)
def test_enforce_failures_defer(lab: Lab, run: object, domain: str, result_type: str) -> None:
    """STS-APPLY-05, STS-APPLY-09: enforce failures skip the MX and defer, never bounce."""
    result = run(lab, domain)  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert result_type == result.sessions[-1].result_type.value
    assert result_type in result.reason


@pytest.mark.parametrize("run", RUNNERS)
def test_testing_delivers_and_reports(lab: Lab, run: object) -> None:
    """STS-APPLY-06: testing delivers and reports the certificate failure."""
    result = run(lab, "testing.example")  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert isinstance(result.verdict, DeliverAndReport)
    assert "certificate-host-mismatch" == result.verdict.failure.result_type.value


@pytest.mark.parametrize("run", RUNNERS)
def test_dane_ee(lab: Lab, run: object) -> None:
    """DANE-30, DANE-39: a self-signed MX pinned by a secure TLSA 3 1 1 is delivered to."""
    result = run(lab, "dane.example", dane=True)  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    dane = result.verdict.dane_session  # type: ignore[union-attr]
    assert dane is not None
    assert None is dane.result_type


@pytest.mark.parametrize("run", RUNNERS)
def test_dane_bogus_tlsa_defers(lab: Lab, run: object) -> None:
    """DANE-03, DANE-08, SEC-13: a failed (bogus) TLSA lookup makes the MX unreachable: no connection."""
    result = run(lab, "bogus.dane.example", dane=True)  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert () == result.attempts
    assert "dnssec-invalid" == result.sessions[0].result_type.value
    assert "tlsa" == result.sessions[0].policy.policy_type.value


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("domain", ["nullmx.example", "nowhere.example"])
def test_no_mail(lab: Lab, run: object, domain: str) -> None:
    """
    No mail, a permanent outcome: a null MX (RFC 7505), or no MX and no address records (RFC 5321 §5.1).
    """
    result = run(lab, domain)  # type: ignore[operator]
    assert DeliveryStatus.NO_MAIL == result.status


@pytest.mark.parametrize("run", RUNNERS)
def test_implicit_mx(lab: Lab, run: object) -> None:
    """STS-MX-08: no MX RRset: the domain's own address is the MX."""
    result = run(lab, "implicit.example")  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert "implicit.example" == result.attempts[-1].mx


@pytest.mark.parametrize("run", RUNNERS)
def test_mx_lookup_failure_defers(lab: Lab, run: object) -> None:
    """A failed MX lookup is temporary: defer."""
    result = run(lab, "broken.example")  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert result.reason.startswith("MX lookup failed")


@pytest.mark.parametrize("run", RUNNERS)
def test_no_policy_plaintext(lab: Lab, run: object) -> None:
    """STS-APPLY-07, AMB-21: without a policy, no STARTTLS still delivers (in plaintext), reported."""
    result = run(lab, "plain.example")  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert not result.attempts[-1].tls
    assert "starttls-not-supported" == result.sessions[-1].result_type.value


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("domain", ["noaddr", "failaddr"])
def test_mx_without_address_falls_back(lab: Lab, run: object, domain: str) -> None:
    """DANE-07: an MX whose address lookup finds nothing or fails is passed over for the next one."""
    result = run(lab, f"{domain}.example")  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert [f"mx.{domain}.example", "mx.enforce.example"] == [a.mx for a in result.attempts]


@pytest.mark.parametrize("run", RUNNERS)
def test_log_names_mx_and_never_claims_secure_domain(
    lab: Lab, run: object, caplog: pytest.LogCaptureFixture
) -> None:
    """DANE-20: the delivery log names the MX host from the MX record and never calls an insecure-MX delivery secure delivery to the domain."""
    with caplog.at_level("INFO", logger="smtpsts.io.deliver"):
        result = run(lab, "enforce.example")  # type: ignore[operator]
    _close(result)
    lines = [r.getMessage() for r in caplog.records if r.name == "smtpsts.io.deliver"]
    expected = (
        "enforce.example: connected to MX mx.enforce.example [127.0.0.1]:"
        f"{result.attempts[-1].port} over TLS authenticated by MTA-STS (PKIX, MX name); "
        "MX lookup not DNSSEC-validated, so this is not secure delivery to enforce.example"
    )
    assert [expected] == lines


@pytest.mark.parametrize(
    ("domain", "how"),
    [("plain.example", "without TLS"), ("testing.example", "over unauthenticated TLS")],
)
def test_log_without_authentication(
    lab: Lab, domain: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """DANE-20: unauthenticated deliveries are logged as such."""
    with caplog.at_level("INFO", logger="smtpsts.io.deliver"):
        result = _sync(lab, domain)
    _close(result)
    assert any(how in r.getMessage() for r in caplog.records if r.name == "smtpsts.io.deliver")


@pytest.mark.parametrize("run", RUNNERS)
def test_connect_refused_defers(lab: Lab, run: object) -> None:
    """STS-APPLY-11: a connect failure has no verdict and no report; the message waits."""
    result = run(lab, "refused.example")  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert "no MX host could be reached" == result.reason
    assert () == result.sessions


def test_bad_helo_name(lab: Lab) -> None:
    """RFC 5321 §4.1.1.1: an EHLO name with white space is refused."""
    with pytest.raises(ValueError, match="EHLO"):
        deliver_connection("enforce.example", policies=lab.resolver(), helo_name="a b")


def test_greeting_refused_moves_on() -> None:
    """A server that greets with 554 gives no TLS verdict; the MX is passed over."""
    with SMTPServer("x", None) as server, Lab() as lab:
        server.greeting = "554 go away"
        lab.dns.set("rude.example", "MX", "10 mx.rude.example.")
        lab.connect_to[("mx.rude.example", 25)] = ("127.0.0.1", server.port)
        result = _sync(lab, "rude.example")
        assert DeliveryStatus.DEFER == result.status
        assert result.attempts[-1].connected


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize(
    ("behaviour", "mode", "status", "tls"),
    [
        ("refuse-starttls", "none", DeliveryStatus.CONNECTED, False),
        ("break-handshake", "testing", DeliveryStatus.CONNECTED, False),
        ("break-handshake", "enforce", DeliveryStatus.DEFER, False),
        ("pipelined", "none", DeliveryStatus.CONNECTED, False),
        ("pipelined", "enforce", DeliveryStatus.DEFER, False),
        ("break-handshake-then-refuse", "testing", DeliveryStatus.DEFER, False),
    ],
)
def test_starttls_misbehaviour(
    run: object, behaviour: str, mode: str, status: DeliveryStatus, tls: bool
) -> None:
    """STS-APPLY-16, STS-APPLY-06: refused or broken STARTTLS: plaintext without enforce, defer with it."""
    with Lab() as lab:
        server = lab.smtp["mx.enforce.example"]
        server.behaviour = behaviour
        if mode == "none":
            lab.dns.set("_mta-sts.enforce.example", "TXT")
        else:
            lab.https.route(
                "mta-sts.enforce.example",
                f"version: STSv1\r\nmode: {mode}\r\nmx: mx.enforce.example\r\nmax_age: 86400\r\n".encode(),
            )
        result = run(lab, "enforce.example")  # type: ignore[operator]
        _close(result)
        assert status == result.status
        assert tls == result.attempts[-1].tls
        first = result.sessions[0]
        expected = {
            "refuse-starttls": "starttls-not-supported",
            "pipelined": "starttls-not-supported",
        }.get(behaviour, "validation-failure")
        assert expected == first.result_type.value
        if behaviour.startswith("break-handshake"):
            assert first.failure_reason_code.startswith("tls-")


@pytest.mark.parametrize("run", RUNNERS)
def test_unlisted_mx_never_contacted(lab: Lab, run: object) -> None:
    """STS-MX-11, STS-APPLY-09: enforce and no MX matches: defer without connecting, reported."""
    result = run(lab, "skip.example")  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert () == result.attempts
    assert "validation-failure" == result.sessions[0].result_type.value


@pytest.mark.parametrize("run", RUNNERS)
def test_dane_requires_tls(lab: Lab, run: object) -> None:
    """DANE-12, DANE-29: with a secure TLSA RRset, an MX without STARTTLS is not used."""
    result = run(lab, "nostls.dane.example", dane=True)  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status


@pytest.mark.parametrize("run", RUNNERS)
def test_address_lookup(lab: Lab, run: object) -> None:
    """RFC 5321 §5.1: the MX address comes from DNS when no override is given."""
    port = lab.smtp["mx.nostarttls.example"].port
    result = run(lab, "direct.example", connect_to={}, port=port)  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert ("127.0.0.1", port) == (result.attempts[-1].address, result.attempts[-1].port)


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("behaviour", ["no-ehlo", "stall-greeting"])
def test_session_failures_before_tls(run: object, behaviour: str) -> None:
    """STS-APPLY-16: EHLO refused means no STARTTLS; a silent server costs at most the deadline."""
    with Lab() as lab:
        lab.smtp["mx.enforce.example"].behaviour = behaviour
        started = time.monotonic()
        result = run(lab, "enforce.example", timeout=0.5)  # type: ignore[operator]
        assert DeliveryStatus.DEFER == result.status
        assert time.monotonic() - started < 5
        if behaviour == "no-ehlo":
            assert "starttls-not-supported" == result.sessions[0].result_type.value
        else:
            assert () == result.sessions


def test_system_trust_by_default(lab: Lab) -> None:
    """Without a trust store anywhere, the system's is loaded (no policy here, so delivery goes on)."""
    policies = PolicyResolver(nameservers=[lab.dns.address], connect_to=lab.connect_to)
    result = deliver_connection(
        "plain.example", policies=policies, dns=DNSResolver([lab.dns.address]), helo_name=HELO
    )
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status


class _FailingAddresses(DNSResolver):
    """The lab's DNS, except that every address lookup fails (SERVFAIL-like)."""

    def lookup_addresses(self, *args: Any, **kwargs: Any) -> Any:
        return DNSFailure("SERVFAIL")


class _AFailingAddresses(AsyncDNSResolver):
    async def lookup_addresses(self, *args: Any, **kwargs: Any) -> Any:
        return DNSFailure("SERVFAIL")


class _Starved(DNSResolver):
    """The lab's DNS, except that this host is out of descriptors for the MX lookup."""

    def lookup_mx(self, *args: Any, **kwargs: Any) -> Any:
        raise LocalResourceError("lookup of MX: [Errno 24] Too many open files", errno=24)


class _AStarved(AsyncDNSResolver):
    async def lookup_mx(self, *args: Any, **kwargs: Any) -> Any:
        raise LocalResourceError("lookup of MX: [Errno 24] Too many open files", errno=24)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_implicit_mx_address_failure_defers(lab: Lab, kind: str) -> None:
    """Issue 10: a failed address lookup is temporary: the implicit MX defers, never NO_MAIL.

    (test_no_mail: the same domain with the address lookup answered
    "no records" takes no mail.)
    """
    if kind == "sync":
        result: Delivery | AsyncDelivery = _sync(
            lab, "nowhere.example", dns=_FailingAddresses([lab.dns.address])
        )
    else:
        result = _async(lab, "nowhere.example", dns=_AFailingAddresses([lab.dns.address]))
    assert DeliveryStatus.DEFER == result.status
    assert ["address lookup failed: SERVFAIL"] == [a.error for a in result.attempts]


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_local_fault_in_the_walk_defers(lab: Lab, kind: str) -> None:
    """SEC-52: a local fault after the policy was found defers, keeping the outcome, never delivers."""
    if kind == "sync":
        result: Delivery | AsyncDelivery = _sync(
            lab, "enforce.example", dns=_Starved([lab.dns.address])
        )
    else:
        result = _async(lab, "enforce.example", dns=_AStarved([lab.dns.address]))
    assert DeliveryStatus.DEFER == result.status
    assert result.reason.startswith("local fault, delivery not attempted: lookup of MX")
    assert result.outcome is not None
    assert Mode.ENFORCE == result.outcome.mode
    assert () == result.attempts


@pytest.mark.parametrize("run", RUNNERS)
def test_dane_without_tlsa_is_opportunistic(lab: Lab, run: object) -> None:
    """DANE-14, DANE-05: DANE on, but no secure TLSA RRset for the MX: MTA-STS alone decides."""
    result = run(lab, "enforce.example", dane=True)  # type: ignore[operator]
    _close(result)
    assert DeliveryStatus.CONNECTED == result.status
    assert None is result.verdict.dane_session  # type: ignore[union-attr]


@pytest.mark.parametrize(("run", "error"), [(_sync, ""), (_async, "timeout")])
def test_deadline_spent_before_connect(lab: Lab, run: object, error: str) -> None:
    """STS-APPLY-11: with no time left the MX is not connected to; the message waits."""
    result = run(lab, "enforce.example", timeout=0.0)  # type: ignore[operator]
    assert DeliveryStatus.DEFER == result.status
    assert [(False, error)] == [(a.connected, a.error) for a in result.attempts]


class _OneShotMX:
    """A loopback SMTP server for one connection, run by a script; it stops listening after it."""

    def __init__(self, script: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(5.0)
        conn, _ = self.listener.accept()
        self.listener.close()  # a reconnect is refused
        with conn:
            conn.settimeout(5.0)
            if self.script == "hang-up":
                return
            conn.sendall(b"220 oneshot ESMTP\r\n")
            conn.recv(1024)  # EHLO
            conn.sendall(b"250-oneshot\r\n250 STARTTLS\r\n")
            conn.recv(1024)  # STARTTLS
            conn.sendall(b"220 go ahead\r\n")
            conn.recv(4096)  # the ClientHello
            conn.sendall(b"not TLS at all\r\n" * 4)


@pytest.mark.parametrize("run", RUNNERS)
def test_server_hangs_up_before_greeting(lab: Lab, run: object) -> None:
    """A server that closes before greeting gives no verdict and nothing to report."""
    server = _OneShotMX("hang-up")
    lab.dns.set("hangup.example", "MX", "10 mx.hangup.example.")
    result = run(  # type: ignore[operator]
        lab, "hangup.example", connect_to={("mx.hangup.example", 25): ("127.0.0.1", server.port)}
    )
    server.thread.join(5)
    assert DeliveryStatus.DEFER == result.status
    assert [True] == [a.connected for a in result.attempts]
    assert () == result.sessions


@pytest.mark.parametrize("run", RUNNERS)
def test_plaintext_fallback_refused(lab: Lab, run: object) -> None:
    """STS-APPLY-15: a broken handshake without a policy is retried in plaintext; a refused retry defers."""
    server = _OneShotMX("break-handshake")
    lab.dns.set("oneshot.example", "MX", "10 mx.oneshot.example.")
    result = run(  # type: ignore[operator]
        lab,
        "oneshot.example",
        connect_to={("mx.oneshot.example", 25): ("127.0.0.1", server.port)},
    )
    server.thread.join(5)
    assert (DeliveryStatus.DEFER, "no MX host could be reached") == (result.status, result.reason)
    assert "validation-failure" == result.sessions[0].result_type.value


class _ScriptedPolicies:
    """The lab's resolver, answering policy lookups from a script (issue 10 re-walk)."""

    def __init__(self, lab: Lab, *answers: Any) -> None:
        real = lab.resolver()
        self.trust, self.connect_to, self.nameservers = (
            real.trust,
            real.connect_to,
            real.nameservers,
        )
        self.answers = list(answers)
        self.waited: list[float] = []

    def resolve(self, name: str, now: Any = None) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aresolve(self, name: str, now: Any = None) -> Any:
        return self.resolve(name, now)

    def wait_for_check(self, name: str, seconds: float) -> None:
        self.waited.append(seconds)

    async def await_check(self, name: str, seconds: float) -> None:
        self.wait_for_check(name, seconds)


def _enforce(record_id: str, mx: str, source: PolicySource) -> PolicyOutcome:
    text = f"version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n"
    policy = Policy.from_text(text)
    info = PolicyInfo.for_sts("enforce.example", policy)
    return PolicyOutcome("enforce.example", policy, Mode.ENFORCE, source, info, record_id)


STARVED = LocalResourceError("policy store: [Errno 24] Too many open files", errno=24)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
@pytest.mark.parametrize(
    ("fresh", "status", "reason"),
    [
        ("new", DeliveryStatus.CONNECTED, "connected to mx.enforce.example"),
        ("same", DeliveryStatus.DEFER, "no MX host matches the enforced MTA-STS policy"),
        ("fault", DeliveryStatus.DEFER, "no MX host matches the enforced MTA-STS policy"),
        ("withdrawn", DeliveryStatus.CONNECTED, "connected to mx.enforce.example"),
        ("nothing", DeliveryStatus.DEFER, "no MX host matches the enforced MTA-STS policy"),
    ],
)
def test_recheck_after_cached_deferral(
    lab: Lab, kind: str, fresh: str, status: DeliveryStatus, reason: str
) -> None:
    """
    Issue 10, RFC 8461 §3.1, §8.3: a cached policy that defers is checked again.

    Only a new policy (or a validated ``mode: none`` withdrawal) is walked.
    """
    cached = _enforce("1", "old.example.net", PolicySource.CACHED)
    second = {
        "new": _enforce("2", "mx.enforce.example", PolicySource.FRESH),
        "same": cached,
        "fault": STARVED,
        # RFC 8461 §8.3: a validated mode none (new id) withdraws the cached policy.
        "withdrawn": PolicyOutcome(
            "enforce.example",
            None,
            Mode.NONE,
            PolicySource.FRESH,
            PolicyInfo.no_policy_found("enforce.example"),
            "2",
        ),
        # No policy at all (no id): never weaker than the cached one.
        "nothing": PolicyOutcome(
            "enforce.example",
            None,
            None,
            PolicySource.FRESH,
            PolicyInfo.no_policy_found("enforce.example"),
        ),
    }[fresh]
    policies = _ScriptedPolicies(lab, cached, second)
    runner = _sync if kind == "sync" else _async
    result = runner(lab, "enforce.example", policies=policies, recheck_wait=0.25)
    _close(result)
    assert (status, True) == (result.status, result.reason.startswith(reason))
    assert [0.25] == policies.waited
    assert [] == policies.answers


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_local_fault_in_the_policy_lookup_defers(lab: Lab, kind: str) -> None:
    """Issue 17, SEC-52: a local fault before any policy is known defers, saying so."""
    runner = _sync if kind == "sync" else _async
    result = runner(lab, "enforce.example", policies=_ScriptedPolicies(lab, STARVED))
    assert DeliveryStatus.DEFER == result.status
    assert result.reason.startswith("local fault, policy state unknown: policy store")
    assert None is result.outcome


class _StarvedLater(DNSResolver):
    """The lab's DNS, out of descriptors from the ``after``-th MX lookup on."""

    def __init__(self, *args: Any, after: int) -> None:
        super().__init__(*args)
        self.left = after

    def lookup_mx(self, *args: Any, **kwargs: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise LocalResourceError("lookup of MX: [Errno 24] Too many open files", errno=24)
        return super().lookup_mx(*args, **kwargs)


class _AStarvedLater(AsyncDNSResolver):
    def __init__(self, *args: Any, after: int) -> None:
        super().__init__(*args)
        self.left = after

    async def lookup_mx(self, *args: Any, **kwargs: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise LocalResourceError("lookup of MX: [Errno 24] Too many open files", errno=24)
        return await super().lookup_mx(*args, **kwargs)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
@pytest.mark.parametrize(("after", "waited", "record_id"), [(0, [], "1"), (1, [0.25], "2")])
def test_local_fault_under_a_cached_policy(
    lab: Lab, kind: str, after: int, waited: list[float], record_id: str
) -> None:
    """
    Issue 10, SEC-52: a local fault in a walk defers at once, keeping its outcome.

    In the first walk it starts no policy re-check; in the re-walk under a new
    policy it keeps the new outcome.
    """
    cached = _enforce("1", "old.example.net", PolicySource.CACHED)
    policies = _ScriptedPolicies(
        lab, cached, _enforce("2", "mx.enforce.example", PolicySource.FRESH)
    )
    if kind == "sync":
        dns: Any = _StarvedLater([lab.dns.address], after=after)
        result: Delivery | AsyncDelivery = _sync(
            lab, "enforce.example", policies=policies, dns=dns, recheck_wait=0.25
        )
    else:
        dns = _AStarvedLater([lab.dns.address], after=after)
        result = _async(lab, "enforce.example", policies=policies, dns=dns, recheck_wait=0.25)
    assert DeliveryStatus.DEFER == result.status
    assert result.reason.startswith("local fault, delivery not attempted: lookup of MX")
    assert (waited, record_id) == (policies.waited, result.outcome.record_id)  # type: ignore[union-attr]
