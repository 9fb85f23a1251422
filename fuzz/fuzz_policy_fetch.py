"""
Fuzz what a policy host answers to the fetch (RFC 8461 §3.3; issue 10).

The policy fetch of :mod:`smtpsts.io.http` (both fetchers share its
sans-I/O conversation) is run against the input as the bytes the policy
host sends, delivered in reads split at random points: the h11 response
parser, 1xx and redirect handling, ``Content-Length`` and chunked bodies,
the ``Content-Encoding`` decoder under the size cap (STS-FETCH-12,
STS-FETCH-13), then ``FetchPolicy.validate`` and ``Policy.from_text`` on
the body, as the policy machine does.

The conversation never raises for what the peer sends: every broken
response is a ``FetchFailed`` (STS-FETCH-18). Only ``Policy.from_text``'s
:class:`smtpsts.PolicySyntaxError` may escape. A body handed on is never
over the cap.

Input: byte 0 seeds the read splits; byte 1 bit 0 sends the request
through a proxy (the input up to the first blank line is the proxy's
``CONNECT`` reply), bit 1 drops the ``text/plain`` requirement (AMB-06);
the rest is the stream.
"""

from __future__ import annotations

import random
import ssl
from typing import Any

import _harness

with _harness.instrumented("h11"):  # h11 parses the peer's bytes: coverage there too
    import smtpsts
    from smtpsts.actions import FetchFailed, FetchPolicy, HTTPResponse
    from smtpsts.io._drive import drive
    from smtpsts.io._http11 import Receive, Send
    from smtpsts.io.http import _Connect, _fetch, _LookupAddresses, _Settings, _StartTLS

_CONTEXT = ssl.create_default_context()
_MAX_BYTES = 4096


class _Peer:
    """Performs the fetch's steps: the input is what the policy host (or proxy) sends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def perform(self, step: object) -> Any:
        if isinstance(step, _LookupAddresses):
            return ["192.0.2.1"]
        if isinstance(step, Receive):
            if not self.chunks:
                return b""
            chunk = self.chunks.pop(0)
            if len(chunk) > step.max_bytes:
                self.chunks.insert(0, chunk[step.max_bytes :])
                chunk = chunk[: step.max_bytes]
            return chunk
        assert isinstance(step, _Connect | _StartTLS | Send), step
        return None


def _split(rng: random.Random, stream: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 8))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def test_one(data: bytes) -> None:
    """Fetch once from the input (see the module docstring)."""
    if len(data) < 2:
        return
    rng = random.Random(data[0])  # noqa: S311 - reproducible splits, not secrets
    flags, stream = data[1], data[2:]
    proxy = ("192.0.2.8", 3128) if flags & 1 else None
    chunks: list[bytes] = []
    if proxy is not None:
        reply, blank, stream = stream.partition(b"\r\n\r\n")
        chunks.append(reply + blank)  # the tunnel must not read into the response
    chunks += _split(rng, stream)
    request = FetchPolicy(
        "https://mta-sts.example.com/.well-known/mta-sts.txt",
        "mta-sts.example.com",
        max_bytes=_MAX_BYTES,
        require_text_plain=not flags & 2,
    )
    settings = _Settings(_CONTEXT, {}, False, proxy, None)  # noqa: FBT003 - positional attrs
    result = drive(_fetch(request, settings, ["connect"]), _Peer(chunks).perform)
    assert isinstance(result, HTTPResponse | FetchFailed), result
    if isinstance(result, FetchFailed):
        return
    assert len(result.body) <= _MAX_BYTES + 1
    body = request.validate(result)
    if isinstance(body, bytes):
        smtpsts.Policy.from_text(body)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(smtpsts.PolicySyntaxError,), max_len=16384)
