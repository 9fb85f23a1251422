"""
One client connection of ``smtpsts postfix serve``: an :class:`asyncio.Protocol`.

:class:`_Connection` decodes netstrings, answers from the server's answer
cache or queues the lookup, writes the answers in request order, stops
reading while ``max_pending`` answers wait or the client does not read
them, and closes on a malformed netstring, at the idle or frame timeout,
or at shutdown (issue 10, issue 17 item 3, SEC-56). Admission, eviction and
the lookups are :class:`~smtpsts.postfix.server.PolicyServer`'s.

Re-exported by :mod:`smtpsts.postfix.server`; logs to the server's logger,
``smtpsts.postfix.server``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from smtpsts.postfix.netstring import DEFAULT_MAX_LENGTH, NetstringDecoder, NetstringError

if TYPE_CHECKING:
    from smtpsts.postfix.server import PolicyServer, _AnswerCache

__all__: list[str] = []

log = logging.getLogger("smtpsts.postfix.server")  # the server's one logger


class _Connection(asyncio.Protocol):
    """
    One client connection: netstrings in, answers out, in request order.

    Answers from the cache are written at once when nothing is pending
    before them; otherwise they queue behind the pending lookups. At most
    ``max_pending`` answers wait per connection: beyond that, and while the
    client does not read its answers (the transport's write buffer is above
    its high-water mark), the connection is not read.
    """

    def __init__(
        self,
        server: PolicyServer,
        answers: _AnswerCache,
        connections: dict[_Connection, None],
        request: Callable[[bytes], bytes | asyncio.Task[bytes]],
    ) -> None:
        self.server = server
        self.answers = answers.entries
        self.framed = answers.framed
        self.stats = server.stats
        self.connections = connections
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: Any = "unix"
        self.privileged = False
        self.peer_key: str | None = None
        self.starting: asyncio.Task[None] | None = None
        self.decoder = NetstringDecoder(DEFAULT_MAX_LENGTH)
        self.queue: deque[bytes | asyncio.Task[bytes]] = deque()
        self.backlog: deque[bytes] = deque()
        self.max_pending = server.config.max_pending
        self.last_active = self.request_started = self.loop.time()
        self.served = False  # answered at least once: a proven client, evicted last
        self.reading = True
        self.write_paused = False
        self.stopping: str | None = None
        self.stopped_at = 0.0
        self.closed: asyncio.Future[None] = self.loop.create_future()

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        # Admission happened at accept(), before the transport existed.
        self.transport = cast("asyncio.Transport", transport)
        self.last_active = self.request_started = self.loop.time()
        if self.stopping is not None:
            transport.close()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.last_active = now
        decoder = self.decoder
        if not self.queue and self.stopping is None and not decoder.pending:
            # The hot path: cached requests at the head of the read.
            done = self._answer_cached(data, now)
            if done == len(data):
                return
            data = data[done:]
        was_pending = decoder.pending
        try:
            payloads = decoder.feed(data)
        except NetstringError as e:
            self.stop(f"malformed netstring: {e}")
            return
        if decoder.pending and (payloads or not was_pending):
            # A netstring must arrive whole within the frame timeout of its first byte.
            self.request_started = now
        if self.stopping is None:
            if self.backlog:
                self.backlog.extend(payloads)
            else:
                self._take(payloads, now)
            if decoder.error is not None:
                self.stop(f"malformed netstring: {decoder.error}")
            elif self.queue or not self.reading:
                # (With nothing queued and reading on, there is nothing to change.)
                self._update_reading()

    def _answer_cached(self, data: bytes, now: float) -> int:
        # Answer the requests at the head of ``data`` that are in the answer
        # cache, each found by its whole netstring (a hit is well-formed by
        # construction: the keys are encoded requests); return how many bytes
        # they took. The decoder takes over from the first miss.
        framed = self.framed
        end = len(data)
        hit = framed.get(data)  # the usual read: exactly one request
        if hit is not None and hit[0] > now:
            out, start = [hit[1]], end
        else:
            out, start = [], 0
        while start < end:
            colon = data.find(b":", start, start + 11)
            if colon < 0:
                break
            try:
                stop = colon + 2 + int(data[start:colon])
            except ValueError:
                break
            hit = framed.get(data[start:stop])
            if hit is None or hit[0] <= now:
                break
            out.append(hit[1])
            start = stop
        if out:
            self.decoder.offset += start
            self.stats["requests"] += len(out)
            self.stats["cached"] += len(out)
            self._write(out)
        return start

    def eof_received(self) -> bool:
        if self.decoder.pending:
            self.stop("client went away inside a request")
        else:
            self.stop("")
        # Keep the write side open until the answers are out.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.stopping is None:
            log.info("connection from %s: read error: %s", self.peer, exc)
        elif self.queue and self.stopping is None:
            log.info("connection from %s: client went away before its answers", self.peer)
        # Lookups still running are not cancelled: other connections may wait
        # for the same one, and its answer is cached for the next request.
        self.queue.clear()
        self.backlog.clear()
        self.server.unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    # ------------------------------------------------------------------ the work

    def _take(self, payloads: list[bytes], now: float) -> None:
        # Answer or queue each payload; what does not fit waits in the backlog.
        answers = self.answers
        stats = self.stats
        queue = self.queue
        out: list[bytes] = []
        hits = 0
        for index, payload in enumerate(payloads):
            hit = answers.get(payload)
            if hit is not None and hit[0] > now:
                hits += 1
                if queue:
                    queue.append(hit[1])
                else:
                    out.append(hit[1])
                continue
            if len(queue) >= self.max_pending:
                self.backlog.extend(payloads[index:])
                break
            job = self.request(payload)
            if isinstance(job, bytes) and not queue:
                out.append(job)
            else:
                queue.append(job)
                if not isinstance(job, bytes):
                    job.add_done_callback(self._answered)
        if hits:
            stats["requests"] += hits
            stats["cached"] += hits
        if out:
            self._write(out)

    def _answered(self, _job: asyncio.Task[bytes]) -> None:
        # A lookup finished: send every answer that is now at the head of the line.
        queue = self.queue
        out: list[bytes] = []
        while queue:
            head = queue[0]
            if isinstance(head, bytes):
                out.append(head)
            elif not head.done():
                break
            elif not head.cancelled():
                out.append(head.result())
            queue.popleft()
        if out:
            self._write(out)
        if self.backlog and len(queue) < self.max_pending:
            backlog = list(self.backlog)
            self.backlog.clear()
            self._take(backlog, self.loop.time())
        self._update_reading()

    def _write(self, out: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None  # set before any data arrives
        if transport.is_closing():
            return
        self.served = True
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.stopping is not None and not self.queue and not self.backlog:
            transport.close()
            return
        should = (
            self.stopping is None
            and not self.write_paused
            and not self.backlog
            and len(self.queue) < self.max_pending
        )
        if should != self.reading:
            self.reading = should
            if should:
                self.request_started = self.loop.time()
                transport.resume_reading()
            else:
                transport.pause_reading()

    # ------------------------------------------------------------------ closing

    def stop(self, reason: str) -> None:
        """Read nothing more; close once every request received is answered."""
        if self.stopping is None:
            self.stopping = reason
            self.stopped_at = self.loop.time()
            if reason:
                log.info("closing connection from %s: %s", self.peer, reason)
        if self.backlog:
            backlog = list(self.backlog)
            self.backlog.clear()
            self._take(backlog, self.loop.time())
        self._update_reading()

    def check_idle(self, now: float, idle: float, frame: float) -> None:
        """
        Stop a connection silent for ``idle`` seconds, or inside one netstring for ``frame``.

        A started netstring has its own deadline (issue 17 item 3): a client
        that sends ``2`` and waits is closed after ``frame`` seconds, while a
        connection silent between requests stays for ``idle``. A stopped
        connection still open ``idle`` seconds later (its client does not
        read its answers) is dropped.
        """
        if self.transport is None:
            return
        if self.stopping is not None:
            if now - self.stopped_at > idle:
                log.info("connection from %s: answers not read; dropped", self.peer)
                self.abort()
            return
        if self.decoder.pending and self.reading and not self.queue:
            # (While reading is paused by the server, the frame clock stops.)
            if now - self.request_started > frame:
                self.stats["frame_timeouts"] += 1
                self.stop(f"stalled inside a request for more than {frame:g}s")
        elif not self.queue and now - self.last_active > idle:
            self.stats["idle_timeouts"] += 1
            self.stop("idle")

    def abort(self) -> None:
        """Drop the connection without waiting for its answers (one being set up: once it is)."""
        if self.transport is not None:
            self.transport.abort()
        elif self.stopping is None:
            self.stopping = "evicted"
            self.stopped_at = self.loop.time()
