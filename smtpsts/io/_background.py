"""
The background checks behind cache-first answers (issue 10; RFC 8461 §5.1).

When a live cached policy answers a lookup at once, the TXT record is
checked behind the answer: at most one check per domain at a time, none
while a lookup of the domain is in flight, and at most ``limit`` at once
(more are skipped and counted). Checks of the sync API run in a small
thread pool, those of the asyncio API as tasks; what a check does is the
resolver's business (a callable given to :meth:`BackgroundChecks.start` /
:meth:`BackgroundChecks.astart`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Container

__all__ = ["BackgroundChecks"]


class BackgroundChecks:
    """
    The running checks of one resolver, sync (threads) and asyncio (tasks).

    Args:
        limit: Checks running at once, at most (per API).
        stats: The resolver's counters: ``background_checks``, ``background_skipped``.
        lock: The resolver's lock, which also guards ``flights``.
        flights: Domains with a sync lookup in flight (no check then).
        aflights: Domains with an asyncio lookup in flight.
    """

    def __init__(
        self,
        *,
        limit: int,
        stats: dict[str, int],
        lock: threading.Lock,
        flights: Container[str],
        aflights: Container[str],
    ) -> None:
        self.limit = limit
        self.stats = stats
        self.lock = lock
        self.flights = flights
        self.aflights = aflights
        self.threads: dict[str, concurrent.futures.Future[None]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ threads

    def start(self, name: str, check: Callable[[], object]) -> None:
        """
        Run ``check`` in a worker thread unless one for ``name`` runs or is not wanted.

        Args:
            name: The policy domain.
            check: The check; its exceptions are the resolver's to log.
        """
        with self.lock:
            if name in self.threads or name in self.flights:
                return
            if len(self.threads) >= self.limit:
                self.stats["background_skipped"] += 1
                return
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=min(8, self.limit), thread_name_prefix="smtpsts-check"
                )
            # Submitted under the lock, so the worker's removal comes after this.
            self.threads[name] = self._pool.submit(self._run, name, check)

    def _run(self, name: str, check: Callable[[], object]) -> None:
        try:
            self.stats["background_checks"] += 1
            check()
        except Exception:  # noqa: BLE001, S110 -- counted and logged by the resolver
            pass
        finally:
            with self.lock:
                self.threads.pop(name, None)

    def join(self, timeout: float | None) -> bool:
        """
        Wait until the running threads' checks have ended.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).

        Returns:
            Whether every check ended in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                running = list(self.threads.values())
            if not running:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            concurrent.futures.wait(running, timeout=left)

    def wait_for(self, name: str, timeout: float) -> bool:
        """
        Wait for the running thread check of ``name``, if there is one.

        Args:
            name: The policy domain.
            timeout: Seconds to wait at most.

        Returns:
            Whether no check of the domain is running any more.
        """
        with self.lock:
            running = self.threads.get(name)
        return running is None or bool(
            concurrent.futures.wait((running,), timeout=max(0.0, timeout)).done
        )

    def close(self) -> None:
        """Stop starting thread checks (running ones finish on their own)."""
        with self.lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ asyncio

    def astart(self, name: str, check: Callable[[], Awaitable[object]]) -> None:
        """
        Run ``check()`` as a task unless one for ``name`` runs or is not wanted.

        Args:
            name: The policy domain.
            check: Makes the check's coroutine; its exceptions are the resolver's to log.
        """
        if name in self.tasks or name in self.aflights:
            return
        if len(self.tasks) >= self.limit:
            self.stats["background_skipped"] += 1
            return
        task = asyncio.get_running_loop().create_task(self._arun(check))
        self.tasks[name] = task
        task.add_done_callback(lambda _task: self.tasks.pop(name, None))

    async def _arun(self, check: Callable[[], Awaitable[object]]) -> None:
        self.stats["background_checks"] += 1
        with contextlib.suppress(Exception):  # counted and logged by the resolver
            await check()

    async def await_check(self, name: str, timeout: float) -> bool:  # noqa: ASYNC109
        """
        Wait for the task checking ``name`` (asyncio), if one runs.

        Args:
            name: The policy domain (A-label).
            timeout: At most this many seconds.

        Returns:
            ``True`` once no task checks the domain any more.
        """
        running = self.tasks.get(name)
        if running is not None:
            await asyncio.wait((running,), timeout=max(0.0, timeout))
        return running is None or running.done()

    async def ajoin(self) -> None:
        """Wait until the running task checks have ended."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)
