"""
Fuzz the socketmap netstring decoder (``smtpsts.postfix.netstring``).

``NetstringDecoder.feed`` and ``eof`` may raise only ``NetstringError``.
The stream is fed in chunks split at random points; the payloads, and
whether and where (``offset``) the stream breaks, must be exactly those of
feeding the whole stream at once, and no payload is over the cap. (The
``reason`` may differ: a partial length prefix already over the cap is
``too-long`` before the rest shows it is not a number.)

Input: byte 0 seeds the chunk splits, byte 1 picks the cap (0 to 255, or
the default when 255); the rest is the stream.
"""

from __future__ import annotations

import random

import _harness

with _harness.instrumented():
    from smtpsts.postfix.netstring import DEFAULT_MAX_LENGTH, NetstringDecoder, NetstringError


def _decode(stream: bytes, chunks: list[bytes], max_length: int) -> tuple[list[bytes], object]:
    decoder = NetstringDecoder(max_length)
    out: list[bytes] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
        decoder.eof()
    except NetstringError as e:
        assert decoder.error is e  # noqa: PT017 - no pytest here
        return out, e.offset
    # Every byte went into a netstring (leading zeros in a length are accepted).
    assert not decoder.pending
    assert sum(len(p) + 3 for p in out) <= len(stream)
    return out, None


def test_one(data: bytes) -> None:
    """Decode one input both ways and compare (see the module docstring)."""
    if len(data) < 2:
        return
    rng = random.Random(data[0])  # noqa: S311 - reproducible splits, not secrets
    max_length = DEFAULT_MAX_LENGTH if data[1] == 255 else data[1]
    stream = data[2:]
    cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 8))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = _decode(stream, [stream], max_length)
    assert whole == _decode(stream, chunks, max_length), (whole, chunks)
    assert all(len(p) <= max_length for p in whole[0])


if __name__ == "__main__":
    _harness.main(test_one, allowed=(), max_len=4096)
