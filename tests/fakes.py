"""
Scripted stand-ins for the DNS and HTTPS adapters, for driving the policy machine.

They are real values, not mocks: each answers the machine's actions from a
script and records what it was asked, so tests can assert the exact action
sequence (dnspython's ``tests/test_resolution.py`` does the same).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

import attrs

from smtpsts.actions import (
    FetchFailed,
    FetchPolicy,
    HTTPResponse,
    LookupTXT,
    Resolved,
    TXTAnswer,
    TXTFailure,
    TXTNotFound,
)
from smtpsts.cache import PolicyResolution

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""A fixed, timezone-aware origin for every test clock."""

ENFORCE = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n"
TESTING = b"version: STSv1\r\nmode: testing\r\nmx: *.example.net\r\nmax_age: 3600\r\n"
NONE = b"version: STSv1\r\nmode: none\r\nmax_age: 600\r\n"


def ok(body: bytes = ENFORCE, content_type: str | None = "text/plain") -> HTTPResponse:
    """Return a 200 response with ``body``."""
    return HTTPResponse(200, content_type, body)


def txt(*records: str, ttl: int | None = 300) -> TXTAnswer:
    """Return a TXT answer holding ``records``."""
    return TXTAnswer(records, ttl)


TXTResult = TXTAnswer | TXTNotFound | TXTFailure
FetchResult = HTTPResponse | FetchFailed


@attrs.define
class ScriptedDNS:
    """
    Answers ``lookup_txt`` from a script and records each query name.
    """

    script: deque[TXTResult] = attrs.field(converter=deque)
    asked: list[str] = attrs.field(factory=list)

    def lookup_txt(self, qname: str) -> TXTResult:
        """Return the next scripted answer for ``qname``."""
        self.asked.append(qname)
        if not self.script:
            raise AssertionError(f"unexpected TXT lookup {qname}")
        return self.script.popleft()


@attrs.define
class ScriptedFetcher:
    """
    Answers ``fetch`` from a script and records each request.
    """

    script: deque[FetchResult] = attrs.field(converter=deque)
    asked: list[FetchPolicy] = attrs.field(factory=list)

    def fetch(self, request: FetchPolicy) -> FetchResult:
        """Return the next scripted response for ``request``."""
        self.asked.append(request)
        if not self.script:
            raise AssertionError(f"unexpected fetch {request.url}")
        return self.script.popleft()


def run(
    machine: PolicyResolution, results: Iterable[TXTResult | FetchResult]
) -> tuple[list[LookupTXT | FetchPolicy], Resolved]:
    """
    Drive ``machine`` to the end, feeding ``results`` in order.

    Returns:
        The actions it asked for (in order) and its :class:`Resolved`.

    Raises:
        AssertionError: The machine asked for more than the script holds,
            or finished with results left over.
    """
    pending = deque(results)
    actions: list[LookupTXT | FetchPolicy] = []
    while True:
        action = machine.next_action()
        if isinstance(action, Resolved):
            if pending:
                raise AssertionError(f"machine finished with results left: {list(pending)}")
            return actions, action
        actions.append(action)
        if not pending:
            raise AssertionError(f"machine asked for {action!r} but the script is empty")
        machine.receive(pending.popleft())


def drive(machine: PolicyResolution, dns: ScriptedDNS, fetcher: ScriptedFetcher) -> Resolved:
    """
    The driver loop of ``smtpsts.io.drivers``, over the scripted adapters.
    """
    while True:
        action = machine.next_action()
        if isinstance(action, LookupTXT):
            machine.receive(dns.lookup_txt(action.qname))
        elif isinstance(action, FetchPolicy):
            machine.receive(fetcher.fetch(action))
        else:
            return action
