"""
Why ``smtpsts check`` could not ask DNS, in plain words, naming the server once.

:class:`WatchedResolver` is the check's :class:`~smtpsts.io.dns.AsyncDNSResolver`:
it answers exactly as its parent does, and also remembers the queries that
failed (timeout, SERVFAIL, REFUSED, unreachable server) and those still
waiting when the check's deadline cut them off. :meth:`WatchedResolver.trouble`
turns them into one sentence such as "the DNS server 127.0.0.1:53 did not
answer", so that a silent or broken resolver is reported once (issue 12 item 4),
not in every section of the report.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import attrs
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from smtpsts.io.dns import AsyncDNSResolver

__all__ = ["QueryTrouble", "WatchedResolver", "server_label"]

_NO_ANSWER = "did not answer"


def server_label(server: object, port: int = 53) -> str:
    """
    A nameserver as ``ADDRESS:PORT`` (``[ADDRESS]:PORT`` for IPv6).

    Args:
        server: A dnspython nameserver, its text (``Do53:127.0.0.1@53``) or a
            bare address.
        port: The port when ``server`` does not say.

    Returns:
        The label.
    """
    text = str(server)
    if isinstance(server, dns.nameserver.AddressAndPortNameserver):
        address, port = server.address, server.port
    elif "@" in text:
        head, _, port_text = text.rpartition("@")
        address = head.partition(":")[2] if head.startswith("Do53:") else head
        port = int(port_text) if port_text.isdigit() else port
    else:
        address = text
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@attrs.frozen
class QueryTrouble:
    """
    One failed or unfinished DNS query of a check.

    Attributes:
        query: ``NAME TYPE``, e.g. ``_mta-sts.example.com TXT``.
        servers: ``((server, what), ...)``: each server that was asked and
            what it did, e.g. ``("127.0.0.1:53", "answered SERVFAIL")``.
    """

    query: str
    servers: tuple[tuple[str, str], ...]

    def words(self) -> str:
        """
        This query's failure in words, e.g. for a section's JSON ``detail``.

        Returns:
            ``the DNS server 127.0.0.1:53 did not answer`` and the like.
        """
        return "; ".join(f"the DNS server {s} {what}" for s, what in self.servers)


def _what(error: object) -> str:
    if isinstance(error, str):  # an rcode: SERVFAIL, REFUSED, NOTIMP...
        return f"answered {error}"
    if isinstance(error, dns.exception.Timeout):
        return _NO_ANSWER
    if isinstance(error, ConnectionRefusedError):
        return "is unreachable (connection refused: nothing listens there)"
    if isinstance(error, OSError):
        return f"is unreachable ({error.strerror or error})"
    return f"sent an answer that cannot be used ({type(error).__name__})"


class WatchedResolver(AsyncDNSResolver):
    """
    An :class:`~smtpsts.io.dns.AsyncDNSResolver` that keeps the failed queries.

    Answers are returned unchanged; NXDOMAIN and NODATA are answers, not
    failures.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failed: list[QueryTrouble] = []
        self.pending: dict[int, str] = {}
        self._ids = itertools.count()

    def configured(self) -> list[str]:
        """
        The nameservers asked, as ``ADDRESS:PORT`` labels.

        Returns:
            The labels, in the resolver's order.
        """
        port = self.resolver.port
        return [server_label(ns, port) for ns in self.resolver.nameservers]

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType, lifetime: float | None
    ) -> dns.resolver.Answer | Exception:
        query = f"{name.rstrip('.')} {dns.rdatatype.to_text(rdtype)}"
        key = next(self._ids)
        self.pending[key] = query
        try:
            outcome = await super()._query(name, rdtype, lifetime)
        except asyncio.CancelledError:
            # The check's deadline cut the query off: unanswered.
            self.failed.append(
                QueryTrouble(query, tuple((s, _NO_ANSWER) for s in self.configured()))
            )
            raise
        finally:
            del self.pending[key]
        if isinstance(outcome, Exception) and not isinstance(outcome, dns.resolver.NXDOMAIN):
            self.failed.append(QueryTrouble(query, self._servers(outcome)))
        return outcome

    def _servers(self, exc: Exception) -> tuple[tuple[str, str], ...]:
        errors: Sequence[tuple[object, ...]] = getattr(exc, "kwargs", {}).get("errors") or ()
        out = dict.fromkeys((server_label(e[0], int(str(e[2]))), _what(e[3])) for e in errors)
        if out:
            return tuple(out)
        what = _NO_ANSWER if isinstance(exc, dns.exception.Timeout) else _what(exc)
        return tuple((s, what) for s in self.configured())

    def trouble_for(self, query: str) -> QueryTrouble | None:
        """
        The failure of one query, if it failed.

        Args:
            query: ``NAME TYPE`` (no trailing dot).

        Returns:
            The first failure recorded for it, else ``None``.
        """
        return next((t for t in self.failed if t.query == query), None)

    def trouble(self) -> str | None:
        """
        Every DNS failure of the check, in one sentence, each server named once.

        Queries the deadline cut off count as unanswered.

        Returns:
            For example ``the DNS server 127.0.0.1:53 did not answer (3
            queries)`` or ``the DNS server 127.0.0.1:53 answered SERVFAIL
            for _mta-sts.example.com TXT``; ``None`` when DNS answered every
            query.
        """
        seen: dict[tuple[str, str], list[str]] = {}
        for trouble in self.failed:
            for pair in trouble.servers:
                seen.setdefault(pair, []).append(trouble.query)
        for query in self.pending.values():
            for server in self.configured():
                seen.setdefault((server, _NO_ANSWER), []).append(query)
        parts = []
        for (server, what), queries in seen.items():
            unique = list(dict.fromkeys(queries))
            if what == _NO_ANSWER:
                count = len(unique)
                tail = f" ({count} quer{'ies' if count != 1 else 'y'})"
            else:
                tail = f" for {', '.join(unique)}"
            parts.append(f"the DNS server {server} {what}{tail}")
        return "; ".join(parts) or None
