"""
POST one JSON document to a webhook (``smtpsts tlsrpt alert --webhook``).

The owner configures the URL, so unlike a report ``rua`` (see
:func:`smtpsts.io.tlsrpt_send.post_report`) any address may be contacted,
``http:`` is allowed (a chat bridge on the same host), and an ``https:``
certificate is always verified. One request on a fresh connection, through
the shared h11 exchange (:mod:`smtpsts.io._http11`): one overall deadline
for the connect, the TLS handshake, the request and the response, at most
64 KiB of the response read, no redirects followed.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from typing import Final

import attrs
import h11

from smtpsts.io._http11 import Deadline, drive_on_socket, exchange

__all__ = ["DEFAULT_WEBHOOK_TIMEOUT", "WebhookResult", "post_json"]

DEFAULT_WEBHOOK_TIMEOUT: Final = 10.0
"""Seconds for one whole POST."""

_RESPONSE_CAP: Final = 64 * 1024


@attrs.frozen
class WebhookResult:
    """
    What one POST did.

    Attributes:
        ok: The server answered 2xx.
        detail: ``HTTP <status>``, or what went wrong, in words.
    """

    ok: bool
    detail: str


def post_json(
    url: str,
    body: bytes,
    *,
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
    context: ssl.SSLContext | None = None,
    user_agent: str = "smtpsts",
) -> WebhookResult:
    """
    POST ``body`` as ``application/json`` to ``url``.

    Args:
        url: An ``http:`` or ``https:`` URL.
        body: The JSON bytes.
        timeout: Seconds for the whole exchange.
        context: The TLS context for ``https:`` (system trust by default).
        user_agent: The ``User-Agent`` header.

    Returns:
        The outcome; never raises for network, TLS or HTTP errors.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return WebhookResult(ok=False, detail=f"not an http: or https: URL: {url!r}")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return WebhookResult(ok=False, detail="invalid port")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    name = f"[{host}]" if ":" in host else host  # RFC 9110 §7.2: IPv6 literal in brackets
    default = 443 if parts.scheme == "https" else 80
    headers = [
        ("Host", name if port == default else f"{name}:{port}"),
        ("Content-Type", "application/json"),
        ("User-Agent", user_agent),
        ("Connection", "close"),
    ]
    deadline = Deadline(timeout)
    try:
        raw = socket.create_connection((host, port), timeout=deadline.left())
        sock: socket.socket = raw
        try:
            if parts.scheme == "https":
                tls = context or ssl.create_default_context()
                raw.settimeout(deadline.left())
                sock = tls.wrap_socket(raw, server_hostname=host)
            with sock:
                response = drive_on_socket(
                    exchange(
                        "POST",
                        target,
                        headers,
                        body,
                        max_body=_RESPONSE_CAP,
                        keep_partial_body=True,
                    ),
                    sock,
                    deadline,
                )
        finally:
            raw.close()
    except ssl.SSLCertVerificationError as exc:
        return WebhookResult(ok=False, detail=f"certificate error: {exc.verify_message}")
    except TimeoutError:
        return WebhookResult(ok=False, detail=f"timeout: no answer within {timeout:g} s")
    except (OSError, h11.ProtocolError) as exc:
        return WebhookResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return WebhookResult(ok=200 <= response.status < 300, detail=f"HTTP {response.status}")
