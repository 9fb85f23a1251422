"""
Fuzz socketmap requests: ``parse_request`` and ``normalize_key``.

Both are in ``smtpsts.postfix.protocol``.

``parse_request`` may raise only ``RequestSyntaxError``; ``normalize_key``
never raises and returns an A-label that ``to_alabel`` leaves unchanged
(RFC 8461 §3.4, STS-APPLY-01), or ``KeyIgnored``.

Input: one netstring payload, ``NAME KEY``.
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts import to_alabel
    from smtpsts.postfix.protocol import (
        KeyIgnored,
        RequestSyntaxError,
        normalize_key,
        parse_request,
    )


def test_one(data: bytes) -> None:
    """Parse one request (see the module docstring)."""
    request = parse_request(data)
    domain = normalize_key(request.key)
    if not isinstance(domain, KeyIgnored):
        assert domain == to_alabel(domain), (request.key, domain)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(RequestSyntaxError,), max_len=2048)
