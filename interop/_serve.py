"""
The request loop the Python adapters share (the protocol of docs/vectors.md).

An adapter gives :func:`serve` a table ``{group: handler}``. A handler takes
the request (``input`` or ``input_hex``, ``options``) and returns the
response members: ``{"result": ...}``, ``{"error": "<class>"}`` or
``{"unsupported": True}``; raising :class:`Unsupported` means the same as
the last. Any other exception the peer library raises is answered as
``{"error": "Crash", "detail": ...}``: the library crashed on that input.
This module imports nothing from smtpsts, so an adapter is only its peer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]


class Unsupported(Exception):  # noqa: N818 -- a signal, not an error
    """The peer cannot run this case (an option or input form it lacks)."""


def text_of(request: Mapping[str, Any]) -> str:
    """
    Return a request's input as text, or raise Unsupported for bytes that are not UTF-8.

    Args:
        request: The request.

    Returns:
        ``input``, or ``input_hex`` decoded as UTF-8.

    Raises:
        Unsupported: The bytes are not UTF-8 (the peer API takes text).
    """
    if "input_hex" not in request:
        return request["input"]
    try:
        return bytes.fromhex(request["input_hex"]).decode("utf-8")
    except UnicodeDecodeError:
        raise Unsupported from None


def strict_only(request: Mapping[str, Any]) -> None:
    """
    Refuse cases that ask for smtpsts's lenient mode.

    Args:
        request: The request.

    Raises:
        Unsupported: The case has ``options.lenient`` or a lenient input.
    """
    value = request.get("input")
    if request.get("options", {}).get("lenient") or (
        isinstance(value, dict) and value.get("lenient")
    ):
        raise Unsupported


def answer(handlers: Mapping[str, Handler], request: Mapping[str, Any]) -> dict[str, Any]:
    """
    Answer one request.

    Args:
        handlers: The adapter's handlers by group.
        request: The decoded request.

    Returns:
        The response object.
    """
    handler = handlers.get(request.get("group", ""))
    if handler is None:
        return {"id": request.get("id"), "unsupported": True}
    try:
        members = handler(request)
    except Unsupported:
        members = {"unsupported": True}
    except Exception as e:
        members = {"error": "Crash", "detail": f"{type(e).__name__}: {e}"[:500]}
    return {"id": request.get("id"), **members}


def serve(handlers: Mapping[str, Handler]) -> int:
    """
    Answer request lines from stdin until it closes.

    Args:
        handlers: The adapter's handlers by group.

    Returns:
        The exit status.
    """
    for line in sys.stdin.buffer:
        response = answer(handlers, json.loads(line))
        sys.stdout.write(json.dumps(response, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
    return 0
