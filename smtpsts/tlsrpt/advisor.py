"""
Is it safe to enforce? The rollout advisor and the alerts of the domain owner (issue 13 items 5, 6).

Pure code. The caller reads the numbers from a report store
(:class:`~smtpsts.tlsrpt.inbox.ReportStore`: ``daily``, ``breakdown``,
``reports``) into a :class:`ReportNumbers`, optionally runs a live check of
the domain and condenses it into a :class:`LiveCheck`, and passes both, with
``now``, to :func:`advise`. The :class:`Advice` it returns holds the
reporters seen, the days covered, the sessions, the failure rates by sending
organisation, MX host and result type, the MX hosts no policy ``mx`` pattern
covers (RFC 8461 §4.1), the certificate problems, and a :class:`Verdict`
with its reasons in plain words.

How the verdict is reached (:class:`Thresholds` holds the numbers):

1. *Blocking problems* make it :attr:`Verdict.NOT_YET`: no MTA-STS policy,
   a policy in ``mode: none``, a failure rate over
   :attr:`Thresholds.max_failure_rate`, an MX host no ``mx`` pattern covers
   (under ``enforce`` a sender refuses it, RFC 8461 §5.1), or a certificate
   problem found by the live check (RFC 8461 §4.2). A blocking problem wins
   over too little data: a little data that shows a problem is enough to say
   "not yet".
2. Otherwise *too little data* makes it :attr:`Verdict.NOT_ENOUGH_DATA`:
   fewer days covered than :attr:`Thresholds.min_days`, fewer reporting
   organisations than :attr:`Thresholds.min_reporters`, or fewer sessions
   than :attr:`Thresholds.min_sessions`.
3. Otherwise :attr:`Verdict.READY`. When the policy already is in
   ``enforce``, the same verdict says whether the reports agree with that
   (:attr:`Advice.enforcing` tells the two cases apart).

TLS-RPT failure details carry MX hosts and result types only for failed
sessions (RFC 8460 §4.3), so the rates by MX host and by result type are
shares of all the domain's sessions; the rate by organisation is the
organisation's own failure rate.

:func:`alerts` compares the current window with the window before it and
yields an :class:`Alert` for a failure rate over a threshold, a sending
organisation or a result type failing that did not fail before, and reports
that stopped arriving.

The module is over 600 lines because the verdict and the alerts read the same
numbers and thresholds, and each input type documents what it holds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from smtpsts.exceptions import PolicySyntaxError
from smtpsts.mx import MXPattern, MXPatternSet
from smtpsts.policy import Mode
from smtpsts.tlsrpt.inbox import Breakdown, DayCount

__all__ = [
    "Advice",
    "Alert",
    "AlertKind",
    "AlertThresholds",
    "LiveCheck",
    "Rate",
    "ReportNumbers",
    "Thresholds",
    "Verdict",
    "advise",
    "alerts",
    "reported_policies",
]

_STS: Final = "sts: "  # the policy label of inbox.breakdown(by="policy") for an sts policy


def _days(value: Iterable[DayCount]) -> tuple[DayCount, ...]:
    return tuple(value)


def _rows(value: Iterable[Breakdown]) -> tuple[Breakdown, ...]:
    return tuple(value)


def _patterns(value: Iterable[MXPattern]) -> tuple[MXPattern, ...]:
    return tuple(value)


def _texts(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


class Verdict(enum.StrEnum):
    """The advisor's answer to "may this domain's policy move to ``enforce``?"."""

    READY = "ready to enforce"
    """The reports and the live check show nothing that ``enforce`` would break."""
    NOT_YET = "not yet"
    """Something would break, or is missing; the reasons say what."""
    NOT_ENOUGH_DATA = "not enough data"
    """Nothing is wrong in what was seen, but too little was seen to tell."""


@attrs.frozen
class Thresholds:
    """
    The numbers behind the verdict.

    Attributes:
        min_days: Days with reports needed (default 14: two weeks see the
            weekly rhythm of mail and most senders' certificate renewals).
        min_reporters: Reporting organisations needed (default 2: one big
            sender's view is not the world's).
        min_sessions: Sessions (successful plus failed) needed (default 100).
        max_failure_rate: The highest failure rate that is ready, as a
            fraction (default ``0.001``, 0.1%: under ``enforce`` each failed
            session is mail a sender holds back).
    """

    min_days: int = 14
    min_reporters: int = 2
    min_sessions: int = 100
    max_failure_rate: float = 0.001


@attrs.frozen
class ReportNumbers:
    """
    What a report store says about one policy domain over one window.

    Attributes:
        domain: The policy domain (A-label).
        days: Sessions per day (:meth:`ReportStore.daily
            <smtpsts.tlsrpt.inbox.ReportStore.daily>`).
        by_organization: :meth:`~smtpsts.tlsrpt.inbox.ReportStore.breakdown`
            ``by="organization"``.
        by_mx: The same ``by="mx"`` (the MX hosts seen in failure details).
        by_result_type: The same ``by="result_type"``.
        by_policy: The same ``by="policy"`` (the policies the senders saw).
        latest: The end of the newest stored report's date range for the
            domain, whatever the window; ``None`` when there is none.
    """

    domain: str
    days: tuple[DayCount, ...] = attrs.field(default=(), converter=_days)
    by_organization: tuple[Breakdown, ...] = attrs.field(default=(), converter=_rows)
    by_mx: tuple[Breakdown, ...] = attrs.field(default=(), converter=_rows)
    by_result_type: tuple[Breakdown, ...] = attrs.field(default=(), converter=_rows)
    by_policy: tuple[Breakdown, ...] = attrs.field(default=(), converter=_rows)
    latest: datetime | None = None

    @property
    def successful(self) -> int:
        """Successful sessions in the window."""
        return sum(d.successful for d in self.days)

    @property
    def failed(self) -> int:
        """Failed sessions in the window."""
        return sum(d.failed for d in self.days)

    @property
    def sessions(self) -> int:
        """All sessions in the window."""
        return self.successful + self.failed

    @property
    def failure_rate(self) -> float:
        """Failed over all sessions; ``0.0`` without sessions."""
        return self.failed / self.sessions if self.sessions else 0.0


@attrs.frozen
class LiveCheck:
    """
    What a live check of the domain (``smtpsts check``) found, as the advisor needs it.

    Attributes:
        mode: The mode of the published policy; ``None`` when none was
            found or it could not be fetched.
        mx_patterns: The policy's ``mx`` patterns.
        mx_hosts: The domain's MX hosts now (A-labels).
        certificate_problems: One sentence per MX whose STARTTLS or
            certificate fails (RFC 8461 §4.2).
        error: Why the policy is unknown, when the check saw a record but
            could not get a valid policy; ``""`` otherwise.
    """

    mode: Mode | None = None
    mx_patterns: tuple[MXPattern, ...] = attrs.field(default=(), converter=_patterns)
    mx_hosts: tuple[str, ...] = attrs.field(default=(), converter=_texts)
    certificate_problems: tuple[str, ...] = attrs.field(default=(), converter=_texts)
    error: str = ""


@attrs.frozen
class Rate:
    """
    Failed sessions of one group.

    Attributes:
        key: The organisation, MX host or result type (``""`` when reports
            left it out).
        failed: Failed sessions.
        sessions: The sessions the rate is taken of.
    """

    key: str
    failed: int
    sessions: int

    @property
    def rate(self) -> float:
        """``failed / sessions``; ``0.0`` without sessions."""
        return self.failed / self.sessions if self.sessions else 0.0

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form.

        Returns:
            ``{"key", "failed", "sessions", "rate"}``.
        """
        return {
            "key": self.key,
            "failed": self.failed,
            "sessions": self.sessions,
            "rate": self.rate,
        }


@attrs.frozen
class Advice:
    """
    The advisor's answer for one domain.

    Attributes:
        domain: The policy domain.
        verdict: The verdict.
        reasons: Why, one plain sentence each (the blocking problems first).
        enforcing: The policy is already in ``enforce``.
        mode: The policy mode the verdict assumed (live, or else the one
            the reports show); ``None`` when unknown.
        from_reports_only: No live check was used: the policy and MX hosts
            are the ones the reports show.
        reporters: The reporting organisations.
        days_covered: Days with reports.
        successful: Successful sessions.
        failed: Failed sessions.
        by_organization: Each organisation's own failure rate.
        by_mx: Failed sessions per MX host, of all sessions.
        by_result_type: Failed sessions per result type, of all sessions.
        uncovered_mx: MX hosts (seen in reports or in DNS now) that no
            policy ``mx`` pattern covers (RFC 8461 §4.1).
        certificate_problems: From the live check.
        thresholds: The numbers used.
    """

    domain: str
    verdict: Verdict
    reasons: tuple[str, ...]
    enforcing: bool
    mode: Mode | None
    from_reports_only: bool
    reporters: tuple[str, ...]
    days_covered: int
    successful: int
    failed: int
    by_organization: tuple[Rate, ...]
    by_mx: tuple[Rate, ...]
    by_result_type: tuple[Rate, ...]
    uncovered_mx: tuple[str, ...]
    certificate_problems: tuple[str, ...]
    thresholds: Thresholds

    @property
    def failure_rate(self) -> float:
        """Failed over all sessions; ``0.0`` without sessions."""
        total = self.successful + self.failed
        return self.failed / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form (``smtpsts tlsrpt advise --json``).

        Returns:
            A dictionary of JSON values.
        """
        return {
            "domain": self.domain,
            "verdict": self.verdict.name.lower(),
            "verdict_text": self.verdict.value,
            "reasons": list(self.reasons),
            "enforcing": self.enforcing,
            "mode": None if self.mode is None else self.mode.value,
            "from_reports_only": self.from_reports_only,
            "reporters": list(self.reporters),
            "days_covered": self.days_covered,
            "successful": self.successful,
            "failed": self.failed,
            "failure_rate": self.failure_rate,
            "by_organization": [r.to_dict() for r in self.by_organization],
            "by_mx": [r.to_dict() for r in self.by_mx],
            "by_result_type": [r.to_dict() for r in self.by_result_type],
            "uncovered_mx": list(self.uncovered_mx),
            "certificate_problems": list(self.certificate_problems),
            "thresholds": attrs.asdict(self.thresholds),
        }


def reported_policies(by_policy: Iterable[Breakdown]) -> tuple[Mode | None, tuple[MXPattern, ...]]:
    """
    The MTA-STS policy the reports show: the mode senders saw most, and every ``mx`` pattern.

    Args:
        by_policy: ``breakdown(by="policy")`` rows, whose keys are
            ``"sts: line | line | ..."`` for an ``sts`` policy (RFC 8460
            §4.3: ``policy-string`` holds the policy's lines).

    Returns:
        ``(mode, patterns)``: the mode of the policy with the most
        sessions (``None`` when no ``sts`` policy was reported), and the
        patterns of all reported ``sts`` policies, each once, in the order
        first seen. Lines that are not a valid mode or pattern are skipped
        (report contents come from the network).
    """
    best: tuple[int, Mode] | None = None
    patterns: dict[MXPattern, None] = {}
    for row in by_policy:
        if not row.key.startswith(_STS):
            continue
        mode: Mode | None = None
        for line in row.key[len(_STS) :].split(" | "):
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name == "mode" and value in tuple(Mode):
                mode = Mode(value)
            elif name == "mx":
                try:
                    patterns.setdefault(MXPattern.from_text(value, lenient=True))
                except PolicySyntaxError:
                    continue
        sessions = row.successful + row.failed
        if mode is not None and (best is None or sessions > best[0]):
            best = (sessions, mode)
    return (None if best is None else best[1]), tuple(patterns)


def _percent(rate: float) -> str:
    return f"{100 * rate:.2f}%".replace(".00%", "%")


def _rates(rows: Iterable[Breakdown], total: int) -> tuple[Rate, ...]:
    return tuple(Rate(r.key, r.failed, total) for r in rows if r.failed)


def _uncovered(
    numbers: ReportNumbers, live: LiveCheck | None, patterns: Sequence[MXPattern]
) -> tuple[str, ...]:
    # RFC 8461 §4.1: an MX host must match one of the policy's mx patterns.
    if not patterns:
        return ()
    allowed = MXPatternSet(tuple(patterns))
    hosts = [r.key for r in numbers.by_mx if r.key]
    if live is not None:
        hosts += live.mx_hosts
    seen: dict[str, None] = {}
    for host in hosts:
        if not allowed.matches(host):
            seen.setdefault(host.lower().removesuffix("."))
    return tuple(seen)


def _blocking(  # noqa: PLR0917 -- the facts of one verdict
    numbers: ReportNumbers,
    mode: Mode | None,
    live: LiveCheck | None,
    uncovered: Sequence[str],
    certificate_problems: Sequence[str],
    thresholds: Thresholds,
) -> list[str]:
    reasons: list[str] = []
    if mode is None:
        if live is not None and live.error:
            reasons.append(f"the MTA-STS policy could not be used: {live.error}")
        elif live is not None:
            reasons.append("no MTA-STS policy is published (RFC 8461 §3)")
        elif numbers.sessions:
            reasons.append("the reports show no MTA-STS policy: senders found none")
        # No live check and no session: nothing is known, and too little data says so.
    elif mode is Mode.NONE:
        reasons.append(
            "the policy is in mode none: senders ignore it; publish mode testing first "
            "(RFC 8461 §5)"
        )
    if numbers.sessions and numbers.failure_rate > thresholds.max_failure_rate:
        reasons.append(
            f"{_percent(numbers.failure_rate)} of sessions failed ({numbers.failed} of "
            f"{numbers.sessions}), over the {_percent(thresholds.max_failure_rate)} limit"
        )
    reasons.extend(
        f"MX host {host} is not covered by any mx pattern of the policy: under enforce "
        "senders refuse it (RFC 8461 §4.1)"
        for host in uncovered
    )
    reasons.extend(f"certificate problem: {p}" for p in certificate_problems)
    return reasons


def _thin(numbers: ReportNumbers, reporters: int, thresholds: Thresholds) -> list[str]:
    reasons: list[str] = []
    if len(numbers.days) < thresholds.min_days:
        reasons.append(
            f"reports cover {len(numbers.days)} day(s); at least {thresholds.min_days} are needed"
        )
    if reporters < thresholds.min_reporters:
        reasons.append(
            f"{reporters} organisation(s) sent reports; at least "
            f"{thresholds.min_reporters} are needed"
        )
    if numbers.sessions < thresholds.min_sessions:
        reasons.append(
            f"{numbers.sessions} session(s) reported; at least {thresholds.min_sessions} are needed"
        )
    return reasons


def advise(
    numbers: ReportNumbers,
    live: LiveCheck | None = None,
    thresholds: Thresholds = Thresholds(),
) -> Advice:
    """
    Decide whether the domain's policy may move to ``enforce`` (see the module docstring).

    Args:
        numbers: The report store's numbers for the domain over the window.
        live: What a live check found; ``None`` when none was made or it
            could not run (the policy and MX hosts are then the ones the
            reports show, and :attr:`Advice.from_reports_only` says so).
        thresholds: The numbers behind the verdict.

    Returns:
        The advice.
    """
    reported_mode, reported_patterns = reported_policies(numbers.by_policy)
    if live is None:
        mode, patterns = reported_mode, reported_patterns
    else:
        mode, patterns = live.mode, live.mx_patterns
    reporters = tuple(r.key for r in numbers.by_organization if r.successful + r.failed)
    uncovered = _uncovered(numbers, live, patterns)
    certificate_problems = () if live is None else live.certificate_problems
    blocking = _blocking(numbers, mode, live, uncovered, certificate_problems, thresholds)
    thin = _thin(numbers, len(reporters), thresholds)
    if blocking:
        verdict = Verdict.NOT_YET
    elif thin:
        verdict = Verdict.NOT_ENOUGH_DATA
    else:
        verdict = Verdict.READY
    reasons = blocking + thin
    enforcing = mode is Mode.ENFORCE
    if live is None:
        reasons.append(
            "no live check was made: the policy and MX hosts are the ones the reports show"
        )
    if verdict is Verdict.READY:
        reasons.insert(
            0,
            (
                "the policy is already in enforce mode, and the reports agree with it"
                if enforcing
                else f"{_percent(numbers.failure_rate)} of {numbers.sessions} sessions failed "
                f"over {len(numbers.days)} days, reported by {len(reporters)} organisations; "
                "every MX host is covered"
            ),
        )
    elif enforcing:
        reasons.insert(0, "the policy is already in enforce mode")
    by_org = tuple(
        Rate(r.key, r.failed, r.successful + r.failed) for r in numbers.by_organization if r.failed
    )
    return Advice(
        domain=numbers.domain,
        verdict=verdict,
        reasons=tuple(reasons),
        enforcing=enforcing,
        mode=mode,
        from_reports_only=live is None,
        reporters=reporters,
        days_covered=len(numbers.days),
        successful=numbers.successful,
        failed=numbers.failed,
        by_organization=tuple(sorted(by_org, key=lambda r: (-r.rate, r.key))),
        by_mx=_rates(numbers.by_mx, numbers.sessions),
        by_result_type=_rates(numbers.by_result_type, numbers.sessions),
        uncovered_mx=uncovered,
        certificate_problems=certificate_problems,
        thresholds=thresholds,
    )


# --------------------------------------------------------------------------- alerts


class AlertKind(enum.StrEnum):
    """What an :class:`Alert` is about."""

    FAILURE_RATE = "failure-rate"
    """The failure rate of the current window is over the threshold."""
    NEW_FAILING_SENDER = "new-failing-sender"
    """An organisation reports failures it did not report in the previous window."""
    NEW_RESULT_TYPE = "new-result-type"
    """A result type fails that did not fail in the previous window."""
    REPORTS_STOPPED = "reports-stopped"
    """No report has arrived for the domain for too long."""


@attrs.frozen
class AlertThresholds:
    """
    When :func:`alerts` speaks.

    Attributes:
        max_failure_rate: Alert above this failure rate, as a fraction
            (default ``0.01``: 1%).
        min_sessions: Judge the failure rate only over at least this many
            sessions (default 10: one failure of three is noise).
        stale_days: Alert when the newest report ended more than this many
            days before ``now`` (default 3: senders report daily, RFC 8460
            §4.1, and mail can be late by a day or two).
    """

    max_failure_rate: float = 0.01
    min_sessions: int = 10
    stale_days: int = 3


@attrs.frozen
class Alert:
    """
    Something a domain owner should look at.

    Attributes:
        domain: The policy domain.
        kind: What it is about.
        message: One plain sentence.
        key: The organisation or result type (new-failing alerts), else ``""``.
        value: The number behind it: the failure rate, the failed sessions,
            or the days since the newest report (``None`` when no report
            was ever stored).
    """

    domain: str
    kind: AlertKind
    message: str
    key: str = ""
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """
        The JSON form (what ``--command`` reads on stdin and ``--webhook`` is sent).

        Returns:
            ``{"domain", "kind", "message", "key", "value", "text"}``; ``text``
            repeats the message with the domain, for chat webhooks.
        """
        return {
            "domain": self.domain,
            "kind": self.kind.value,
            "message": self.message,
            "key": self.key,
            "value": self.value,
            "text": f"smtpsts: {self.domain}: {self.message}",
        }


def _failing(rows: Iterable[Breakdown]) -> dict[str, int]:
    return {r.key: r.failed for r in rows if r.failed}


def alerts(
    current: ReportNumbers,
    previous: ReportNumbers,
    now: datetime,
    thresholds: AlertThresholds = AlertThresholds(),
) -> Iterator[Alert]:
    """
    Yield the alerts for one domain.

    Args:
        current: The numbers of the current window.
        previous: The numbers of the window before it (the baseline). When it
            holds no session at all there is no baseline, and no
            ``new-...`` alert is raised (a first run would call every
            failure new).
        now: The time (aware UTC), for "reports stopped".
        thresholds: When to speak.

    Yields:
        The alerts: the failure rate, new failing senders, new failing
        result types, reports stopped; in that order.
    """
    domain = current.domain
    if (
        current.sessions >= thresholds.min_sessions
        and current.failure_rate > thresholds.max_failure_rate
    ):
        yield Alert(
            domain,
            AlertKind.FAILURE_RATE,
            f"{_percent(current.failure_rate)} of sessions failed ({current.failed} of "
            f"{current.sessions}), over the {_percent(thresholds.max_failure_rate)} threshold",
            value=current.failure_rate,
        )
    if previous.sessions:
        before = _failing(previous.by_organization)
        for org, failed in _failing(current.by_organization).items():
            if org not in before:
                yield Alert(
                    domain,
                    AlertKind.NEW_FAILING_SENDER,
                    f"{org or 'an unnamed organisation'} reports {failed} failed session(s); "
                    "it reported none before",
                    key=org,
                    value=failed,
                )
        before = _failing(previous.by_result_type)
        for result_type, failed in _failing(current.by_result_type).items():
            if result_type not in before:
                yield Alert(
                    domain,
                    AlertKind.NEW_RESULT_TYPE,
                    f"{failed} session(s) failed with {result_type}, a result type not "
                    "seen failing before",
                    key=result_type,
                    value=failed,
                )
    latest = current.latest
    if latest is None:
        yield Alert(domain, AlertKind.REPORTS_STOPPED, "no report was ever stored for it")
    elif now - latest > timedelta(days=thresholds.stale_days):
        days = (now - latest) / timedelta(days=1)
        yield Alert(
            domain,
            AlertKind.REPORTS_STOPPED,
            f"no report since {latest:%Y-%m-%d %H:%M}Z ({days:.1f} days; more than "
            f"{thresholds.stale_days}): check the _smtp._tls record and the intake",
            value=round(days, 1),
        )
