"""
The named scenarios of ``smtpsts lab``, each run through the library against loopback servers.

:class:`Lab` starts the servers (:mod:`smtpsts.lab.servers`) and publishes
every scenario's DNS records, policies and MX hosts; each scenario then runs
the library's real code path -- :class:`~smtpsts.io.drivers.PolicyResolver`
and :func:`~smtpsts.io.deliver.deliver_connection` -- and compares what it
got with what RFC 8461/8460/7672 expect.

DANE: the lab cannot sign zones and run a validating resolver without NSD
and Unbound, so the DANE-EE scenario trusts the lab's own DNS server as the
validating resolver (``trust_ad=True``): it sets the AD bit for the
``dane.example`` zone. The TLSA matching, SNI and decision are the
library's real code; only the DNSSEC validation is stood in for, and the
output says so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Self

import attrs
from cryptography.hazmat.primitives import serialization

from smtpsts.certs import TrustStore
from smtpsts.decision import Deliver, DeliverAndReport
from smtpsts.io.advise import live_check, read_numbers
from smtpsts.io.check import check_domain
from smtpsts.io.deliver import Delivery, DeliveryStatus, deliver_connection
from smtpsts.io.dns import DNSResolver
from smtpsts.io.dnssec import DNSSECResolver
from smtpsts.io.drivers import PolicyResolver
from smtpsts.io.tls import pkix_context
from smtpsts.io.tlsrpt_mailbox import fetch_maildir
from smtpsts.io.tlsrpt_send import post_report
from smtpsts.lab.servers import CA, DNSServer, HTTPSServer, Issued, SMTPServer
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt import Aggregator, Report, decompress_report, gzip_report, report_message
from smtpsts.tlsrpt.advisor import advise
from smtpsts.tlsrpt.inbox import Received, Source, accept_report_body, window
from smtpsts.tlsrpt.record import select_tlsrpt_record

__all__ = ["SCENARIOS", "Lab", "Outcome", "Scenario"]

HELO: Final = "lab-client.example"
RUA_HOST: Final = "tlsrpt.report.example"


@attrs.frozen
class Outcome:
    """
    What one scenario expected and got.

    Attributes:
        name: The scenario.
        expected: What the RFCs say should happen.
        got: What the library did.
        why: The reason, in words (result types, verdicts).
        seconds: How long it took.
    """

    name: str
    expected: str
    got: str
    why: str
    seconds: float = 0.0

    @property
    def agrees(self) -> bool:
        """Whether the library did what was expected."""
        return self.expected == self.got


@attrs.frozen
class Scenario:
    """
    A named scenario.

    Attributes:
        name: Its name (``--scenario``).
        title: What it shows.
        expected: The expected result.
        run: Runs it against a started :class:`Lab`: returns ``(got, why)``.
    """

    name: str
    title: str
    expected: str
    run: Callable[[Lab], tuple[str, str]]


def _policy(mode: str, *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
    return ("\r\n".join(lines) + "\r\n").encode()


class Lab:
    """
    The running servers and the published data of every scenario.

    Use as a context manager; :meth:`close` stops every server.
    """

    def __init__(self) -> None:
        self.ca = CA()
        self.dns = DNSServer()
        self.https = HTTPSServer(self.ca)
        self.smtp: dict[str, SMTPServer] = {}
        self.connect_to: dict[tuple[str, int], tuple[str, int]] = {}
        self.trust = TrustStore([self.ca.root.cert])
        self.dane_cert: Issued | None = None
        self.cafile = ""

    # ------------------------------------------------------------------ setup

    def _mx(self, host: str, cert: Issued | None, *, starttls: bool = True) -> None:
        server = SMTPServer(host, cert, starttls=starttls).start()
        self.smtp[host] = server
        self.connect_to[(host, 25)] = ("127.0.0.1", server.port)
        self.dns.set(host, "A", "127.0.0.1")

    def _sts(self, domain: str, record_id: str, policy: bytes) -> None:
        self.dns.set(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={record_id};"')
        host = f"mta-sts.{domain}"
        self.https.route(host, policy)
        self.dns.set(host, "A", "127.0.0.1")
        self.connect_to[(host, 443)] = ("127.0.0.1", self.https.port)

    def start(self) -> Self:
        """
        Start the servers and publish every scenario.

        Returns:
            The lab.
        """
        self.dns.start()
        self.https.start()
        ca = self.ca
        # valid-enforce
        self._sts("enforce.example", "1", _policy("enforce", "mx.enforce.example"))
        self.dns.set("enforce.example", "MX", "10 mx.enforce.example.")
        self._mx("mx.enforce.example", ca.issue("mx.enforce.example"))
        # testing-mismatch: the MX certificate names another host
        self._sts("testing.example", "1", _policy("testing", "mx.testing.example"))
        self.dns.set("testing.example", "MX", "10 mx.testing.example.")
        self._mx("mx.testing.example", ca.issue("other.example"))
        # policy-update
        self._sts("update.example", "1", _policy("enforce", "old.update.example"))
        self.dns.set("update.example", "MX", "10 old.update.example.")
        self._mx("old.update.example", ca.issue("old.update.example"))
        self._mx("new.update.example", ca.issue("new.update.example"))
        # txt-blocked: the attacker's MX has a valid certificate for its own name
        self._sts("blocked.example", "1", _policy("enforce", "mx.blocked.example"))
        self.dns.set("blocked.example", "MX", "10 mx.blocked.example.")
        self._mx("mx.blocked.example", ca.issue("mx.blocked.example"))
        self._mx("mx.attacker.example", ca.issue("mx.attacker.example"))
        # expired-cert, wrong-mx-name, no-starttls
        for domain, cert, starttls in (
            ("expired.example", ca.issue("mx.expired.example", expired=True), True),
            ("wrongname.example", ca.issue("mx.elsewhere.example"), True),
            ("nostarttls.example", None, False),
        ):
            self._sts(domain, "1", _policy("enforce", f"mx.{domain}"))
            self.dns.set(domain, "MX", f"10 mx.{domain}.")
            self._mx(f"mx.{domain}", cert, starttls=starttls)
        # dane-ee: a self-signed certificate, pinned by TLSA 3 1 1; no MTA-STS
        self.dane_cert = CA.self_signed("mx.dane.example")
        spki = self.dane_cert.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.dns.secure("dane.example")
        self.dns.set("dane.example", "MX", "10 mx.dane.example.")
        self._mx("mx.dane.example", self.dane_cert)
        self.dns.set(
            "_25._tcp.mx.dane.example", "TLSA", f"3 1 1 {hashlib.sha256(spki).hexdigest()}"
        )
        # tlsrpt-rua: a testing domain whose MX fails, with an https rua
        self._sts("report.example", "1", _policy("testing", "mx.report.example"))
        self.dns.set("report.example", "MX", "10 mx.report.example.")
        self.dns.set("_smtp._tls.report.example", "TXT", f'"v=TLSRPTv1; rua=https://{RUA_HOST}/v1"')
        self._mx("mx.report.example", ca.issue("mx.wrong.example"))
        self.https.route(RUA_HOST, b"")
        self.connect_to[(RUA_HOST, 443)] = ("127.0.0.1", self.https.port)
        # owner-rollout: a testing domain whose MX is fine, reported on by two senders
        self._sts("rollout.example", "1", _policy("testing", "mx.rollout.example"))
        self.dns.set("rollout.example", "MX", "10 mx.rollout.example.")
        self.dns.set(
            "_smtp._tls.rollout.example",
            "TXT",
            f'"v=TLSRPTv1; rua=https://{RUA_HOST}/v1,mailto:tlsrpt@rollout.example"',
        )
        self._mx("mx.rollout.example", ca.issue("mx.rollout.example"))
        return self

    def close(self) -> None:
        """Stop every server."""
        for server in self.smtp.values():
            server.close()
        self.https.close()
        self.dns.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ use

    def resolver(self) -> PolicyResolver:
        """
        A fresh policy resolver (memory store) pointed at the lab.

        Returns:
            The resolver.
        """
        return PolicyResolver(
            trust=self.trust, nameservers=[self.dns.address], connect_to=self.connect_to
        )

    def deliver(
        self, domain: str, policies: PolicyResolver | None = None, *, dane: bool = False
    ) -> Delivery:
        """
        Run :func:`~smtpsts.io.deliver.deliver_connection` for ``domain`` in the lab.

        Args:
            domain: The recipient domain.
            policies: The resolver (a fresh one by default).
            dane: Check DANE, trusting the lab DNS server's AD bit.

        Returns:
            The delivery result (the caller closes any open session).
        """
        return deliver_connection(
            domain,
            policies=policies or self.resolver(),
            dns=DNSResolver([self.dns.address]),
            dnssec=DNSSECResolver([self.dns.address], trust_ad=True) if dane else None,
            helo_name=HELO,
            timeout=10.0,
        )

    def instructions(self, state: str | None = None) -> str:
        """
        How to point ``smtpsts check``, ``smtpsts postfix serve`` or another MTA at the lab.

        Args:
            state: The state file ``smtpsts lab --keep-running`` wrote, if any.

        Returns:
            Text for the terminal (a dozen lines).
        """
        lab = f"--lab {state}" if state is not None else "--lab FILE"
        return (
            f"  smtpsts check enforce.example {lab}\n"
            f"  smtpsts check dane.example {lab}\n"
            f"  smtpsts postfix serve {lab} --cache memory   (listens on 127.0.0.1:8461)\n"
            "    then: smtpsts postfix query enforce.example\n"
            f"Another MTA or client: DNS {self.dns.address} (UDP, TCP; AD bit for dane.example)\n"
            f"  CA {self.cafile}\n"
            "  the SMTP and HTTPS servers are not on ports 25 and 443: the state file lists\n"
            "  them as HOST:PORT:ADDR:PORT (curl's --connect-to).\n"
        )


def _describe(delivery: Delivery) -> tuple[str, str]:
    verdict = delivery.verdict
    if delivery.smtp is not None:
        delivery.smtp.close()
    if delivery.status is DeliveryStatus.CONNECTED and isinstance(verdict, DeliverAndReport):
        failure = verdict.failure
        return "deliver-and-report", f"{failure.result_type.value} ({failure.reason}); delivered"
    if delivery.status is DeliveryStatus.CONNECTED:
        tls = "over TLS" if delivery.attempts[-1].tls else "in plaintext"
        return "deliver", f"{delivery.reason} {tls}"
    return delivery.status.value, delivery.reason


def _send(lab: Lab, delivery: Delivery, host: str) -> str:
    smtp = delivery.smtp
    assert smtp is not None
    smtp.sendmail("lab@sender.example", [f"postmaster@{host}"], b"Subject: lab\r\n\r\nhello\r\n")
    smtp.quit()
    tls, *_ = lab.smtp[host].messages[-1]
    return "message accepted over TLS" if tls else "message accepted in plaintext"


def _valid_enforce(lab: Lab) -> tuple[str, str]:
    delivery = lab.deliver("enforce.example")
    if delivery.status is DeliveryStatus.CONNECTED and isinstance(delivery.verdict, Deliver):
        return "deliver", f"{delivery.reason}; {_send(lab, delivery, 'mx.enforce.example')}"
    return _describe(delivery)


def _policy_update(lab: Lab) -> tuple[str, str]:
    policies = lab.resolver()
    first = policies.resolve("update.example")
    # The domain moves its mail: new MX, new policy, new id (RFC 8461 §3.1).
    lab.dns.set("update.example", "MX", "10 new.update.example.")
    lab.https.route("mta-sts.update.example", _policy("enforce", "new.update.example"))
    lab.dns.set("_mta-sts.update.example", "TXT", '"v=STSv1; id=2;"')
    delivery = lab.deliver("update.example", policies)
    got, why = _describe(delivery)
    outcome = delivery.outcome
    assert outcome is not None
    return (
        f"{got} (id {outcome.record_id})",
        f"id {first.record_id} -> {outcome.record_id}: policy refetched; {why}",
    )


def _txt_blocked(lab: Lab) -> tuple[str, str]:
    policies = lab.resolver()
    policies.resolve("blocked.example")
    # The attacker blocks the TXT lookup and points MX at its own host (RFC 8461 §10.2).
    lab.dns.servfail("_mta-sts.blocked.example")
    lab.dns.set("blocked.example", "MX", "10 mx.attacker.example.")
    delivery = lab.deliver("blocked.example", policies)
    source = delivery.outcome.source.value if delivery.outcome is not None else "?"
    got, why = _describe(delivery)
    return got, f"cached policy used ({source}); {why}"


def _dane_ee(lab: Lab) -> tuple[str, str]:
    delivery = lab.deliver("dane.example", dane=True)
    verdict = delivery.verdict
    got, why = _describe(delivery)
    dane = verdict.dane_session if verdict is not None else None
    if dane is not None and dane.result_type is None:
        why += "; DANE-EE(3) matched the SPKI (AD bit from the lab DNS, trusted for the lab)"
    return got, why


def _tlsrpt_rua(lab: Lab) -> tuple[str, str]:
    delivery = lab.deliver("report.example")
    _describe(delivery)
    now = datetime.now(UTC)
    aggregator = Aggregator()
    aggregator.add_many(delivery.sessions, now)
    report = aggregator.report(
        "report.example",
        now.date(),
        organization_name="smtpsts lab",
        contact_info="tlsrpt@sender.example",
    )
    assert report is not None
    answer = DNSResolver([lab.dns.address]).lookup_txt("_smtp._tls.report.example.")
    record = select_tlsrpt_record(answer.records).record  # type: ignore[union-attr]
    assert record is not None
    sent = post_report(
        record.rua[0],
        gzip_report(report),
        verify=True,
        context=pkix_context(lab.trust),
        connect_to=lab.connect_to,
        timeout=10.0,
        # The lab's report endpoint is on loopback, which post_report refuses
        # unless an operator allows it (issue 10: no SSRF through a rua).
        allow=[ipaddress.ip_network("127.0.0.0/8")],
    )
    if not sent.ok:
        return "not received", sent.detail
    received = [r for r in lab.https.received if r.host == RUA_HOST][-1]
    parsed = Report.from_json(decompress_report(received.body))
    summary = parsed.policies[0].summary
    kinds = ", ".join(
        d.result_type.value if hasattr(d.result_type, "value") else str(d.result_type)
        for d in parsed.policies[0].failure_details
    )
    return (
        f"received ({summary.total_failure_session_count} failure)",
        f"POST {received.content_type}, {len(received.body)} bytes; parsed back: {kinds}",
    )


ROLLOUT_DAYS: Final = 14
"""Days of reports the owner-rollout scenario sends (the advisor's default minimum)."""


def _owner_rollout(lab: Lab) -> tuple[str, str]:
    # The domain owner's side (issue 13 item 7): two senders report 14 days of sessions
    # to rollout.example, one by HTTPS POST, one by mail; the owner's intake keeps them
    # in a report store and the advisor, with a live check, says whether to enforce.
    delivery = lab.deliver("rollout.example")
    _describe(delivery)
    sessions = list(delivery.sessions) * 10
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in range(ROLLOUT_DAYS, 0, -1)]
    with tempfile.TemporaryDirectory(prefix="smtpsts-lab-") as tmp:
        store = SQLiteReportStore(str(Path(tmp) / "reports.db"))
        maildir = Path(tmp) / "Maildir"
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True)
        try:
            posted = mailed = 0
            for at in days:
                for organization in ("HTTPS Sender Ltd", "Mail Sender Inc"):
                    aggregator = Aggregator()
                    aggregator.add_many(sessions, at)
                    report = aggregator.report(
                        "rollout.example",
                        at.date(),
                        organization_name=organization,
                        contact_info="tlsrpt@sender.example",
                    )
                    assert report is not None
                    if organization.startswith("HTTPS"):
                        posted += _post_to_intake(lab, report, store)
                    else:
                        _mail_to_maildir(report, maildir, at)
                        mailed += 1
            # The mailbox intake (unsigned in the lab: DKIM needs the dkim extra).
            fetched = fetch_maildir(store, maildir, dkim=lambda _mail: ())
            since, until = window(30, today)
            numbers = read_numbers(store, "rollout.example", since, until)
        finally:
            store.close()
    check = check_domain(
        "rollout.example",
        nameservers=[lab.dns.address],
        trust=lab.trust,
        connect_to=lab.connect_to,
        timeout=10.0,
    )
    advice = advise(numbers, live_check(check))
    why = (
        f"{posted} reports POSTed and {fetched.stored} of {mailed} mailed into the store; "
        f"{advice.successful + advice.failed} sessions from {len(advice.reporters)} reporters over "
        f"{advice.days_covered} days; " + "; ".join(advice.reasons)
    )
    return advice.verdict.value, why


def _post_to_intake(lab: Lab, report: Report, store: SQLiteReportStore) -> int:
    # RFC 8460 §5.3.2: the sender POSTs; the lab's HTTPS server is the owner's endpoint,
    # and what it received goes through the intake's checks into the store.
    sent = post_report(
        f"https://{RUA_HOST}/v1",
        gzip_report(report),
        verify=True,
        context=pkix_context(lab.trust),
        connect_to=lab.connect_to,
        timeout=10.0,
        allow=[ipaddress.ip_network("127.0.0.0/8")],
    )
    if not sent.ok:
        return 0
    received = [r for r in lab.https.received if r.host == RUA_HOST][-1]
    accepted = accept_report_body(received.body, received.content_type)
    store.add(Received(accepted, Source.HTTPS, datetime.now(UTC), client="127.0.0.1"))
    return 1


def _mail_to_maildir(report: Report, maildir: Path, at: datetime) -> None:
    # RFC 8460 §5.3.1: the report mail as a sender builds it, delivered to the mailbox.
    message = report_message(
        report,
        "rollout.example",
        from_address="tlsrpt@sender.example",
        to_address="tlsrpt@rollout.example",
        date=at,
        message_id=f"<{report.report_id}@sender.example>",
    )
    (maildir / "new" / f"{report.report_id}.eml").write_bytes(bytes(message))


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        "valid-enforce",
        "enforce policy, MX with a valid certificate",
        "deliver",
        _valid_enforce,
    ),
    Scenario(
        "testing-mismatch",
        "testing policy, MX certificate for another name",
        "deliver-and-report",
        lambda lab: _describe(lab.deliver("testing.example")),
    ),
    Scenario(
        "policy-update",
        "the domain changes MX, policy and id",
        "deliver (id 2)",
        _policy_update,
    ),
    Scenario(
        "txt-blocked",
        "attacker blocks the TXT record after caching and swaps the MX",
        "defer",
        _txt_blocked,
    ),
    Scenario(
        "expired-cert",
        "enforce policy, MX certificate expired",
        "defer",
        lambda lab: _describe(lab.deliver("expired.example")),
    ),
    Scenario(
        "wrong-mx-name",
        "enforce policy, MX certificate for another name",
        "defer",
        lambda lab: _describe(lab.deliver("wrongname.example")),
    ),
    Scenario(
        "no-starttls",
        "enforce policy, MX without STARTTLS",
        "defer",
        lambda lab: _describe(lab.deliver("nostarttls.example")),
    ),
    Scenario(
        "dane-ee",
        "no MTA-STS, self-signed MX certificate pinned by TLSA 3 1 1",
        "deliver",
        _dane_ee,
    ),
    Scenario(
        "tlsrpt-rua",
        "a TLS-RPT report of a failing session POSTed to the https rua",
        "received (1 failure)",
        _tlsrpt_rua,
    ),
    Scenario(
        "owner-rollout",
        f"the owner's intake receives {ROLLOUT_DAYS} days of reports by HTTPS and mail",
        "ready to enforce",
        _owner_rollout,
    ),
)
"""Every scenario, in the order ``smtpsts lab`` runs them."""


def run_scenarios(lab: Lab, scenarios: Sequence[Scenario]) -> list[Outcome]:
    """
    Run scenarios one after the other.

    Args:
        lab: The started lab.
        scenarios: What to run.

    Returns:
        One outcome per scenario; an exception becomes a disagreeing outcome.
    """
    return [run_one(lab, scenario) for scenario in scenarios]


def run_one(lab: Lab, scenario: Scenario) -> Outcome:
    """
    Run one scenario.

    Args:
        lab: The started lab.
        scenario: The scenario.

    Returns:
        Its outcome; an exception is reported as ``error`` with its text.
    """
    started = time.monotonic()
    try:
        got, why = scenario.run(lab)
    except Exception as exc:  # noqa: BLE001 -- a broken scenario is a disagreement, not a crash
        got, why = "error", f"{type(exc).__name__}: {exc}"
    return Outcome(scenario.name, scenario.expected, got, why, time.monotonic() - started)
