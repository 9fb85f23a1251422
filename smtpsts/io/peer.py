"""
Run the reference vectors against another implementation, as a child process.

The child speaks the JSON-lines protocol of :mod:`smtpsts.vectors.protocol`
on its stdin and stdout (``docs/vectors.md``). :func:`run_exec` sends every
case and judges each answer with the group's checker
(:func:`smtpsts.vectors.judge_answer`). The child cannot crash or hang the
run: every response has a deadline, every line a length cap, and a child
that dies, overruns its deadline or writes a bad line fails that case and is
replaced by a fresh one for the next case. After :data:`GIVE_UP_AFTER`
deadlines overrun in a row, or as many fresh children dying before their
first answer, the remaining cases fail without starting it again.
At the end the child's stdin is closed and, if it does not exit within a
second, its process group is killed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Self

from smtpsts import vectors
from smtpsts.exceptions import VectorMismatch
from smtpsts.vectors import CaseResult
from smtpsts.vectors.protocol import MAX_LINE, decode_response, encode_request

__all__ = ["GIVE_UP_AFTER", "TIMEOUT", "Peer", "run_exec"]

TIMEOUT = 10.0
"""The default deadline for one response, in seconds."""

GIVE_UP_AFTER = 3
"""Hung requests, or fresh children dead before answering, in a row after which a run stops."""

_EXIT_GRACE = 1.0
_STDERR_TAIL = 2000
_CHUNK = 65536


class _NoAnswer(Exception):  # noqa: N818 -- private control flow, never leaves this module
    """
    The child gave no usable response line (internal to this module's callers).

    Attributes:
        message: What happened, for the failed case.
        timeout: Whether the deadline passed (the child may be hung).
    """

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timeout = timeout


class Peer:
    """
    One running child process speaking the protocol.

    Args:
        command: The program and its arguments (no shell).
        timeout: Seconds to wait for each response line.
        max_line: The longest response line accepted, in bytes.
        cwd: The child's working directory (default: this process's).
        env: The child's environment (default: this process's).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        timeout: float = TIMEOUT,
        max_line: int = MAX_LINE,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_line = max_line
        self.answered = 0
        """How many response lines this child has given."""
        self._lines: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._writes: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(  # noqa: S603 -- the operator's own command, no shell
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True),
            threading.Thread(target=self._write, args=(self._proc.stdin,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: IO[bytes]) -> None:
        # One item per line: ("line", bytes), ("long", b"") once per overlong line, ("eof", b"").
        try:
            while True:
                line = stream.readline(self.max_line + 1)
                if not line:
                    break
                if line.endswith(b"\n"):
                    self._lines.put(("line", line[:-1].rstrip(b"\r")))
                    continue
                if len(line) <= self.max_line:  # the last line, without a newline
                    self._lines.put(("line", line))
                    continue
                self._lines.put(("long", b""))
                while line and not line.endswith(b"\n"):
                    line = stream.readline(_CHUNK)
        except (OSError, ValueError):
            pass
        self._lines.put(("eof", b""))

    def _drain(self, stream: IO[bytes]) -> None:
        # Keep the last few kilobytes of stderr for messages.
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: os.read(stream.fileno(), _CHUNK), b""):
                with self._lock:
                    self._stderr.append(chunk)
                    self._stderr_size += len(chunk)
                    while self._stderr_size - len(self._stderr[0]) >= _STDERR_TAIL:
                        self._stderr_size -= len(self._stderr.popleft())

    def _write(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while (data := self._writes.get()) is not None:
                stream.write(data)
                stream.flush()
        with contextlib.suppress(OSError, ValueError):
            stream.close()

    def stderr_tail(self) -> str:
        """
        Return the end of what the child wrote to stderr.

        Returns:
            At most about 2000 characters, decoded leniently.
        """
        with self._lock:
            data = b"".join(self._stderr)
        return data[-_STDERR_TAIL:].decode("utf-8", "replace").strip()

    def ask(self, request: bytes) -> bytes:
        """
        Send one request line and wait for one response line.

        Args:
            request: The request line, ending in a newline.

        Returns:
            The response line, without its newline.

        Raises:
            _NoAnswer: No line came within the deadline, the child closed
                its stdout (exited), or the line was over the cap.
        """
        self._writes.put(request)
        try:
            kind, line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise _NoAnswer(f"no response within {self.timeout:g} s", timeout=True) from None
        if kind == "long":
            raise _NoAnswer(f"response line longer than {self.max_line} bytes")
        if kind == "eof":
            status = self._wait(_EXIT_GRACE)
            tail = self.stderr_tail()
            raise _NoAnswer(
                f"the program exited ({'still running' if status is None else status})"
                + (f": {tail[-300:]}" if tail else "")
            )
        self.answered += 1
        return line

    def _wait(self, seconds: float) -> int | None:
        try:
            return self._proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> int | None:
        """
        Close the child's stdin, wait a second for it to exit, then kill it.

        Returns:
            Its exit status, negative for a signal (``None`` only if even the
            kill did not end it within a second).
        """
        self._writes.put(None)
        status = self._wait(_EXIT_GRACE)
        if status is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            status = self._wait(_EXIT_GRACE)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return status

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_exec(
    command: Sequence[str],
    documents: Iterable[Mapping[str, Any]],
    *,
    groups: Iterable[str] | None = None,
    timeout: float = TIMEOUT,
    max_line: int = MAX_LINE,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[CaseResult]:
    """
    Run vector documents against a program speaking the protocol.

    Args:
        command: The program and its arguments (no shell).
        documents: Validated vector documents.
        groups: Only these groups (default: every document's group).
        timeout: Seconds to wait for each response.
        max_line: The longest response line accepted, in bytes.
        cwd: The child's working directory.
        env: The child's environment.

    Returns:
        One result per case run, in order: agreed (``ok``), unsupported, or
        disagreed with what differed or what went wrong.
    """
    wanted = None if groups is None else set(groups)
    cases = [
        (doc["group"], case)
        for doc in documents
        if wanted is None or doc["group"] in wanted
        for case in doc["cases"]
    ]
    results: list[CaseResult] = []
    peer: Peer | None = None
    failures, last = 0, ""
    try:
        for group, case in cases:
            if failures >= GIVE_UP_AFTER:
                message = f"not run: the program failed {failures} times in a row ({last})"
                results.append(CaseResult(group, case["id"], ok=False, message=message))
                continue
            if peer is None:
                try:
                    peer = Peer(command, timeout=timeout, max_line=max_line, cwd=cwd, env=env)
                except OSError as e:
                    failures, last = GIVE_UP_AFTER, f"cannot start: {e}"
                    results.append(CaseResult(group, case["id"], ok=False, message=last))
                    continue
            try:
                line = peer.ask(encode_request(group, case))
                answer = decode_response(line, case["id"])
            except (_NoAnswer, VectorMismatch) as e:
                hung_or_dead = isinstance(e, _NoAnswer) and (e.timeout or peer.answered == 0)
                failures, last = (failures + 1 if hung_or_dead else 0), str(e)
                results.append(CaseResult(group, case["id"], ok=False, message=last))
                peer.close()
                peer = None
                continue
            failures = 0
            results.append(vectors.judge_answer(group, case, answer))
    finally:
        if peer is not None:
            peer.close()
    return results
