"""
The process and operating-system helpers of ``smtpsts postfix serve``.

- :class:`BurstLog`: a repeating fault logged once, then summed up (issue 10);
- :func:`raise_nofile_limit`, :func:`connection_capacity`,
  :func:`lookup_capacity` and :func:`_open_descriptors`: the descriptor
  budget the server sizes its connection slots and uncached lookups from
  (issue 10 item 4, issue 17 item 2, SEC-56);
- :func:`sd_notify`: ``READY=1`` / ``STOPPING=1`` to systemd without libsystemd.

Everything here is re-exported by :mod:`smtpsts.postfix.server`, and logs
to the server's logger, ``smtpsts.postfix.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = [
    "BURST_INTERVAL",
    "LOOKUP_DESCRIPTOR_RESERVE",
    "BurstLog",
    "connection_capacity",
    "lookup_capacity",
    "raise_nofile_limit",
    "sd_notify",
]

log = logging.getLogger("smtpsts.postfix.server")  # the server's one logger

LOOKUP_DESCRIPTOR_RESERVE: Final = 64  # documented in smtpsts.postfix.server, which exports it

BURST_INTERVAL: Final = 10.0
"""Repeats of one logged fault are summed up at most this often."""


class BurstLog:
    """
    Log a repeating fault once, then a summary at most every ``interval`` seconds.

    The first occurrence is logged at once; repeats within ``interval`` are
    counted and summed up in one line when the interval ends (issue 10: a
    flood of one local fault must not flood the log).

    Args:
        logger: Where to log.
        what: What the summary counts (``"local faults"``).
        interval: Seconds between summaries.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = BURST_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self.last: str = ""
        self._logged_at = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, message: str, *args: object) -> None:
        """
        Log ``message % args`` at WARNING now, or count it for the next summary.

        Args:
            message: A %-format string.
            args: Its arguments.
        """
        now = self.clock()
        if self.suppressed and self._timer is None and now - self._logged_at >= self.interval:
            self.flush()  # no running loop summed the last burst up: do it now
        if now - self._logged_at >= self.interval and not self.suppressed:
            self._logged_at = now
            self.logger.warning(message, *args)
            return
        self.suppressed += 1
        self.last = message % args
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: summed up on the next call
                self._timer = asyncio.get_running_loop().call_later(
                    max(self._logged_at + self.interval - now, 0.0), self.flush
                )

    def flush(self) -> None:
        """Log the summary of the repeats counted since the last line, if any."""
        self._timer = None
        if self.suppressed:
            self.logger.warning(
                "%d more %s in the last %gs (last: %s)",
                self.suppressed,
                self.what,
                self.interval,
                self.last,
            )
            self.suppressed = 0
            self._logged_at = self.clock()

    def cancel(self) -> None:
        """Drop the pending summary timer (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def raise_nofile_limit() -> tuple[int, int]:
    """
    Raise the soft ``RLIMIT_NOFILE`` to the hard limit (issue 10, issue 17).

    Returns:
        The soft and hard limits now in force (``resource.RLIM_INFINITY``
        stays as it is when the kernel refuses it).
    """
    import resource  # noqa: PLC0415 -- POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, e)
        else:
            log.info("descriptor limit raised from %d to the hard limit %d", soft, hard)
            soft = hard
    return soft, hard


def connection_capacity(nofile: int, max_connections: int, in_use: int) -> int:
    """
    How many connections the descriptor limit allows, keeping some for lookups.

    Args:
        nofile: The soft ``RLIMIT_NOFILE``.
        max_connections: The configured bound.
        in_use: Descriptors open now (listeners, stores, logs).

    Returns:
        ``min(max_connections, nofile - in_use - reserve)`` with ``reserve``
        = max(:data:`LOOKUP_DESCRIPTOR_RESERVE`, a quarter of ``nofile``) for
        DNS, HTTPS and store sockets, and at least 1.
    """
    reserve = max(LOOKUP_DESCRIPTOR_RESERVE, nofile // 4)
    return max(1, min(max_connections, nofile - in_use - reserve))


def lookup_capacity(nofile: int, max_background: int) -> int:
    """
    How many uncached lookups may run at once within the descriptor reserve.

    Each holds up to two descriptors (a DNS socket and the policy host's
    connection, which a hanging host keeps until the fetch deadline); the
    background checks of cached domains (``max_background``) come first.
    Without this bound, a flood of uncached domains whose policy hosts hang
    used up the descriptors and new Postfix connections were not accepted
    (issue 10, SEC-56).

    Args:
        nofile: The soft ``RLIMIT_NOFILE``.
        max_background: The resolver's bound on background checks.

    Returns:
        ``(reserve - 2 * max_background) // 2`` with the reserve of
        :func:`connection_capacity`, at least 8.
    """
    reserve = max(LOOKUP_DESCRIPTOR_RESERVE, nofile // 4)
    return max(8, (reserve - 2 * max_background) // 2)


def _open_descriptors() -> int:
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:  # pragma: no cover -- Linux has /proc
        return 32


def sd_notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """
    Tell systemd about the service state (``sd_notify(3)``), without libsystemd.

    Args:
        state: For example ``"READY=1"`` or ``"STOPPING=1"``.
        environ: The environment to read ``NOTIFY_SOCKET`` from (default
            :data:`os.environ`).

    Returns:
        Whether a notification was sent.
    """
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", path, e)
        return False
    return True
