"""
Session results as libtlsrpt datagrams, for sites that run sys4's tlsrpt-reporter.

Postfix (3.10+) links sys4's libtlsrpt, which sends one JSON datagram per
delivery attempt to the ``tlsrpt-collectd`` daemon over an ``AF_UNIX``
``SOCK_DGRAM`` socket; ``tlsrpt-reportd`` then builds and sends the reports.
:class:`CollectdSink` speaks the same datagram format (protocol version
``"dpv": "1"``), so an MTA built on smtpsts can feed the same collector. We
talk to it over its socket only; tlsrpt-reporter is GPL and is neither
imported nor bundled.

The collector counts a policy by the text of its JSON (the datagram's policy
without ``failure-details``, ``t`` and ``f``, dumped again), so each policy
must be serialised byte-identically every time, or identical policies split
into separate rows (measured against tlsrpt-collectd). :func:`datagram` writes a fixed key order,
the order libtlsrpt itself writes: ``policy-type``, ``policy-domain``,
``policy-string`` and ``mx-host`` (each left out when empty),
``failure-details``, ``t`` (the number of failure entries) and ``f`` (1 when
the session failed); failure entries as ``c``, ``s``, ``n``, ``h``, ``r``,
``a``, ``f``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any, Final, Self

from smtpsts._vocab import PolicyType, ResultType
from smtpsts.exceptions import UsageError
from smtpsts.tlsrpt.session import SessionResult

__all__ = ["POLICY_TYPE_CODES", "RESULT_TYPE_CODES", "CollectdSink", "datagram"]

log = logging.getLogger(__name__)

POLICY_TYPE_CODES: Final = {
    PolicyType.TLSA: 1,
    PolicyType.STS: 2,
    PolicyType.NO_POLICY_FOUND: 9,
}
"""libtlsrpt's numbers for ``policy-type``."""

RESULT_TYPE_CODES: Final = {
    ResultType.STARTTLS_NOT_SUPPORTED: 201,
    ResultType.CERTIFICATE_HOST_MISMATCH: 202,
    ResultType.CERTIFICATE_NOT_TRUSTED: 203,
    ResultType.CERTIFICATE_EXPIRED: 204,
    ResultType.VALIDATION_FAILURE: 205,
    ResultType.STS_POLICY_FETCH_ERROR: 301,
    ResultType.STS_POLICY_INVALID: 302,
    ResultType.STS_WEBPKI_INVALID: 303,
    ResultType.TLSA_INVALID: 304,
    ResultType.DNSSEC_INVALID: 305,
    ResultType.DANE_REQUIRED: 306,
}
"""libtlsrpt's numbers for the RFC 8460 result types (its ``c`` field)."""

MAX_DATAGRAM: Final = 65000
"""libtlsrpt's buffer size; larger datagrams are not sent."""


def _failure(result: SessionResult, rtype: ResultType, reason: str | None) -> dict[str, Any]:
    fields = (
        ("s", result.sending_mta_ip),
        ("n", result.receiving_mx_hostname),
        ("h", result.receiving_mx_helo),
        ("r", result.receiving_ip),
        ("a", result.additional_information),
        ("f", reason),
    )
    return {"c": RESULT_TYPE_CODES[rtype], **{k: v for k, v in fields if v is not None}}


def _policy(result: SessionResult) -> dict[str, Any]:
    policy = result.policy
    out: dict[str, Any] = {
        "policy-type": POLICY_TYPE_CODES[policy.policy_type],
        "policy-domain": policy.policy_domain,
    }
    if policy.policy_strings:
        out["policy-string"] = list(policy.policy_strings)
    if policy.mx_host_patterns:
        out["mx-host"] = list(policy.mx_host_patterns)
    failures = []
    if not result.success:
        assert result.result_type is not None
        failures.append(_failure(result, result.result_type, result.failure_reason_code))
        # RPT-AGG-06: further failure types of the same session.
        failures.extend(
            _failure(result, extra.result_type, extra.failure_reason_code)
            for extra in result.extra_failures
        )
        out["failure-details"] = failures
    out["t"] = len(failures)
    out["f"] = 0 if result.success else 1
    return out


def datagram(results: Sequence[SessionResult], tlsrpt_record: str) -> bytes:
    """
    The libtlsrpt datagram of one delivery attempt.

    Args:
        results: The session's results, one per policy that applied; all
            for the same report domain.
        tlsrpt_record: The report domain's ``_smtp._tls`` TXT record, as
            text; tlsrpt-reportd sends the report to its ``rua``.

    Returns:
        The datagram: compact UTF-8 JSON, the same bytes for the same input.

    Raises:
        smtpsts.UsageError: No results, or results for different report domains.
    """
    if not results:
        raise UsageError("a datagram needs at least one session result")
    domains = {r.domain for r in results}
    if len(domains) != 1:
        raise UsageError(f"one datagram is for one report domain, got {sorted(domains)}")
    body = {
        "d": results[0].domain,
        "pr": tlsrpt_record,
        "policies": [_policy(r) for r in results],
        "dpv": "1",
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class CollectdSink:
    """
    Send session results to a ``tlsrpt-collectd`` socket, one datagram per session.

    Sending never blocks and never raises: a full or missing socket loses the
    datagram and is logged (libtlsrpt behaves the same), since delivering
    mail matters more than counting it.

    Args:
        socket_path: The collector's socket (``socketname`` in its config).

    Example:
        Per delivery attempt, after the TLS outcome is known::

            sink.send([result], tlsrpt_record="v=TLSRPTv1; rua=mailto:tlsrpt@example.com")
    """

    def __init__(self, socket_path: str | os.PathLike[str]) -> None:
        self.socket_path = os.fspath(socket_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)  # noqa: FBT003 - stdlib API
        self._lock = threading.Lock()
        self.sent = 0
        """Datagrams sent."""
        self.lost = 0
        """Datagrams that could not be sent."""

    def send(self, results: Sequence[SessionResult], *, tlsrpt_record: str) -> bool:
        """
        Send the results of one delivery attempt.

        Results of sessions that delivered a TLS-RPT report are left out
        (RFC 8460 §3, RPT-AGG-10).

        Args:
            results: One result per policy that applied to the session.
            tlsrpt_record: The report domain's TLSRPT record text.

        Returns:
            Whether a datagram was sent.

        Raises:
            smtpsts.UsageError: Results for different report domains.
        """
        counted = [r for r in results if not r.report_delivery]
        if not counted:
            return False
        data = datagram(counted, tlsrpt_record)
        if len(data) > MAX_DATAGRAM:
            log.warning("TLS-RPT sink: datagram for %s too large; dropped", counted[0].domain)
            self.lost += 1
            return False
        with self._lock:
            try:
                self._sock.sendto(data, self.socket_path)
            except OSError as exc:
                self.lost += 1
                log.warning("TLS-RPT sink: cannot send to %s: %s", self.socket_path, exc)
                return False
            self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
