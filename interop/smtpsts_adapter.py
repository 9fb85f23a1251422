#!/usr/bin/env python3
"""
smtpsts itself behind the vectors protocol (``smtpsts vectors run --exec``).

Reads one request per line on stdin and answers each on stdout with what
smtpsts's own checkers compute (:func:`smtpsts.vectors.own_answer`), so that
``smtpsts vectors run --exec "python interop/smtpsts_adapter.py"`` must agree
on every case: the protocol's own test (docs/vectors.md).
"""

from __future__ import annotations

import sys

from smtpsts import vectors
from smtpsts.vectors.protocol import decode_request, encode_response


def answer(line: bytes) -> bytes:
    """
    Answer one request line.

    Args:
        line: The request.

    Returns:
        The response line.
    """
    request = decode_request(line)
    group = request.pop("group")
    if group not in vectors.GROUPS:
        return encode_response(request["id"], vectors.Answer(unsupported=True))
    try:
        result = vectors.own_answer(group, request)
    except vectors.VectorMismatch as e:  # smtpsts disagrees with itself: say so
        result = vectors.Answer(error="VectorMismatch", detail=str(e))
    return encode_response(request["id"], result)


def main() -> int:
    """
    Serve requests until stdin closes.

    Returns:
        The exit status.
    """
    for line in sys.stdin.buffer:
        sys.stdout.buffer.write(answer(line))
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
