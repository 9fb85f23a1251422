"""
Telling local faults from remote failures: one classifier for every adapter.

An adapter turns what the network did into a result value (``TXTFailure``,
``FetchFailed``, a DNS failure status, a failed STARTTLS probe). When the
failure was this host's, not the remote side's, that value would be a false
verdict on the remote domain: stored as a fetch backoff or a negative entry
it outlives the fault (issue 10, issue 17; RFC 8461 §10). So every adapter
first asks :func:`local_fault` and raises what it returns.

Local resource faults are an :class:`OSError` whose errno is ``EMFILE``,
``ENFILE``, ``ENOBUFS`` or ``ENOMEM`` (and their Winsock twins), a
:class:`MemoryError`, or a resolver failure ``EAI_MEMORY``, found on the
exception itself or anywhere it wraps: ``__cause__``, an unsuppressed
``__context__``, the members of an :class:`ExceptionGroup`, and the
per-nameserver ``errors`` dnspython keeps in ``NoNameservers`` and
``LifetimeTimeout`` (dnspython does not chain them: a UDP or TCP query that
cannot get a socket becomes ``NoNameservers`` with ``OSError(EMFILE)`` in
``kwargs["errors"]``).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import Final

from smtpsts.exceptions import LocalResourceError

__all__ = [
    "RESOURCE_ERRNOS",
    "descriptor_shortage",
    "local_fault",
    "lookup_fault",
    "raise_local_fault",
]

RESOURCE_ERRNOS: Final = frozenset(
    code
    for code in (
        errno.EMFILE,  # this process has no descriptor left
        errno.ENFILE,  # the system has no descriptor left
        errno.ENOBUFS,  # no buffer space (sockets)
        errno.ENOMEM,  # no kernel memory
        getattr(errno, "WSAEMFILE", None),  # Windows sockets
        getattr(errno, "WSAENOBUFS", None),
    )
    if code is not None
)
"""The errno values that mean "this host ran out of something"."""

_MAX_WALK: Final = 64
"""Most exceptions looked at in one chain (chains can be long, or cyclic)."""


def _wrapped(exc: BaseException) -> list[BaseException]:
    # The exceptions ``exc`` carries: the ones that may hold the real cause.
    inner: list[BaseException] = []
    if exc.__cause__ is not None:
        inner.append(exc.__cause__)
    if exc.__context__ is not None and not exc.__suppress_context__:
        inner.append(exc.__context__)
    if isinstance(exc, BaseExceptionGroup):
        inner.extend(exc.exceptions)
    kwargs = getattr(exc, "kwargs", None)
    if isinstance(kwargs, dict):
        # dnspython: NoNameservers / LifetimeTimeout keep one entry per try,
        # (nameserver, tcp, port, exception, response).
        for entry in kwargs.get("errors") or ():
            if isinstance(entry, tuple):
                inner.extend(item for item in entry if isinstance(item, BaseException))
    return inner


def _resource_errno(exc: BaseException) -> int | None:
    # The resource errno ``exc`` itself stands for, if any.
    if isinstance(exc, MemoryError):
        return errno.ENOMEM
    if isinstance(exc, socket.gaierror):
        # getaddrinfo() codes are not errno values; EAI_MEMORY is the one
        # that says "out of memory" (EAI_SYSTEM arrives as a plain OSError).
        eai_memory = getattr(socket, "EAI_MEMORY", None)
        return errno.ENOMEM if eai_memory is not None and exc.errno == eai_memory else None
    if isinstance(exc, ssl.SSLError):
        # ssl.SSLError.errno is an SSL_ERROR_* code, not an errno value.
        return None
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return exc.errno
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return f"out of memory (MemoryError{': ' + str(exc) if str(exc) else ''})"
    return str(exc) or type(exc).__name__


def _during(operation: str, host: str | None) -> str:
    return f"local resource shortage during {operation}" + (f" of {host}" if host else "")


def local_fault(
    exc: BaseException,
    *,
    operation: str,
    host: str | None = None,
    domain: str | None = None,
) -> LocalResourceError | None:
    """
    Tell whether an exception is this host running out of a resource.

    Pure: it only looks at ``exc`` and what it wraps (see the module text).

    Args:
        exc: What an adapter caught.
        operation: What was being done, for the message (``"DNS TXT
            lookup"``, ``"policy fetch (connect)"``).
        host: The name or address concerned, for the message.
        domain: The policy domain, if the adapter knows it.

    Returns:
        A :class:`~smtpsts.LocalResourceError` to raise instead of a failure
        result (its ``detail`` names the operation, the host and the OS
        error text; ``errno`` is the OS error number, ``ENOMEM`` for
        :class:`MemoryError`), or ``None`` when ``exc`` is no local resource
        fault and the adapter's usual result stands. ``exc`` itself when it
        already is a :class:`~smtpsts.LocalResourceError`.
    """
    if isinstance(exc, LocalResourceError):
        return exc
    pending = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_WALK:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        code = _resource_errno(current)
        if code is not None:
            return LocalResourceError(
                f"{_during(operation, host)}: {_describe(current)}", errno=code, domain=domain
            )
        pending.extend(_wrapped(current))
    return None


def raise_local_fault(
    exc: BaseException,
    *,
    operation: str,
    host: str | None = None,
    domain: str | None = None,
) -> None:
    """
    Raise :func:`local_fault`'s error for ``exc``, if there is one.

    Args:
        exc: What an adapter caught.
        operation: What was being done.
        host: The name or address concerned.
        domain: The policy domain, if known.

    Raises:
        smtpsts.LocalResourceError: ``exc`` is a local resource fault
            (chained to ``exc``).
    """
    fault = local_fault(exc, operation=operation, host=host, domain=domain)
    if fault is not None:
        if fault is exc:
            raise fault
        raise fault from exc


def descriptor_shortage() -> OSError | None:
    """
    Try to open one file descriptor, to see whether any is left.

    :func:`socket.getaddrinfo` hides a descriptor shortage: it cannot read
    ``/etc/hosts`` or open a socket to the nameserver, and says "Name or
    service not known" (``EAI_NONAME``), which reads like NXDOMAIN. The
    adapters call this after a failed ``getaddrinfo()`` and treat the
    failure as local when no descriptor can be had.

    Returns:
        The :class:`OSError` (``EMFILE``, ``ENFILE``...) when no descriptor
        could be opened, ``None`` when one could (it is closed again).
    """
    try:
        fd = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return exc if exc.errno in RESOURCE_ERRNOS else None
    os.close(fd)
    return None


def lookup_fault(
    exc: BaseException,
    *,
    operation: str,
    host: str | None = None,
    domain: str | None = None,
) -> LocalResourceError | None:
    """
    :func:`local_fault` for a failed ``getaddrinfo()``, which may hide the cause.

    Not pure: when ``exc`` itself shows no local fault, one descriptor is
    opened and closed (:func:`descriptor_shortage`).

    Args:
        exc: What ``getaddrinfo()`` raised (a :class:`socket.gaierror`).
        operation: What was being done.
        host: The name being looked up.
        domain: The policy domain, if known.

    Returns:
        The error to raise instead of a "no such host" or lookup failure
        result, or ``None`` when the failure is not local.
    """
    fault = local_fault(exc, operation=operation, host=host, domain=domain)
    if fault is not None:
        return fault
    shortage = descriptor_shortage()
    if shortage is None:
        return None
    return LocalResourceError(
        f"{_during(operation, host)}: {exc} (no file descriptor could be opened: {shortage})",
        errno=shortage.errno,
        domain=domain,
    )
