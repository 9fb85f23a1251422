"""
The one pair of driver loops for the core's conversations (issue 11).

A conversation of the sans-I/O core is a generator: it yields each request it
needs performed (a DNS query, a fetch, bytes to send, a TLS handshake) and is
sent the result; its return value is the conversation's result. The core
never touches the network; the adapters supply ``perform`` and run one of the
two loops below, so every sync/async twin of a conversation is the same
loop with a different ``perform``::

    result = drive(tlsa_procedure(host), lookup)           # blocking
    result = await adrive(tlsa_procedure(host), alookup)   # asyncio

An exception raised by ``perform`` is thrown into the conversation at the
point that asked for it, so the core can turn a failure it knows about into
a result; one it does not catch comes out of the loop unchanged (a
:class:`smtpsts.LocalFaultError`, for example, is never a verdict).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["adrive", "drive"]

A = TypeVar("A")
T = TypeVar("T")


def drive(conversation: Generator[A, Any, T], perform: Callable[[A], Any]) -> T:
    """
    Run a conversation to its end, performing each request with a blocking call.

    Args:
        conversation: The core's generator.
        perform: Performs one request and returns its result.

    Returns:
        The conversation's return value.
    """
    try:
        request = next(conversation)
        while True:
            try:
                result = perform(request)
            except Exception as exc:  # noqa: BLE001 -- handed to the conversation
                request = conversation.throw(exc)
            else:
                request = conversation.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        conversation.close()


async def adrive(conversation: Generator[A, Any, T], perform: Callable[[A], Awaitable[Any]]) -> T:
    """
    Run a conversation to its end, performing each request with a coroutine.

    Cancellation is not thrown into the conversation: it ends the loop, and
    the conversation is closed.

    Args:
        conversation: The core's generator.
        perform: Performs one request (asyncio) and returns its result.

    Returns:
        The conversation's return value.
    """
    try:
        request = next(conversation)
        while True:
            try:
                result = await perform(request)
            except Exception as exc:  # noqa: BLE001 -- handed to the conversation
                request = conversation.throw(exc)
            else:
                request = conversation.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        conversation.close()
