"""
Argument type checks at the public entry points (issue 12 item 7).

Text from the network arrives as ``str`` or ``bytes``; anything else is a
programming mistake and gets a :class:`TypeError` that names the function and
the type it got, instead of an error from deep inside a parser. Pure.
"""

from __future__ import annotations

__all__ = ["require_str", "require_text"]


def require_text(value: object, where: str) -> None:
    """
    Refuse anything but ``str`` and bytes-like values.

    Args:
        value: The argument.
        where: The function, as the caller wrote it (``"Policy.from_text()"``).

    Raises:
        TypeError: *value* is neither text nor bytes.
    """
    if not isinstance(value, str | bytes | bytearray | memoryview):
        raise TypeError(f"{where} takes str or bytes, not {type(value).__name__}")


def require_str(value: object, where: str) -> None:
    """
    Refuse anything but ``str`` (a host name, a domain).

    Args:
        value: The argument.
        where: The function, as the caller wrote it (``"Policy.matches()"``).

    Raises:
        TypeError: *value* is not a ``str``; for ``bytes`` the message says to
            decode it.
    """
    if not isinstance(value, str):
        hint = " (decode it first)" if isinstance(value, bytes | bytearray) else ""
        raise TypeError(f"{where} takes a str, not {type(value).__name__}{hint}")
