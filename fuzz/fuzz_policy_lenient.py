"""
Fuzz the lenient policy parser and the policy linter (RFC 8461 §3.2, AMB-01).

``Policy.from_text(lenient=True)`` may raise only
:class:`smtpsts.PolicySyntaxError`; ``scan_policy(lenient=True)`` and
``smtpsts.lint.lint_policy`` never raise. A body that parses strictly
parses the same leniently (AMB-01: lenient accepts a superset).

Input: the policy body as served (bytes); byte 0 bit 0 set reads it as
text (UTF-8, bad bytes replaced) instead.
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    import smtpsts
    from smtpsts.lint import lint_policy
    from smtpsts.policy import scan_policy


def test_one(data: bytes) -> None:
    """Parse one input (see the module docstring)."""
    body = _harness.text_or_bytes(data)
    if body is None:
        return
    scan = scan_policy(body, lenient=True)
    lint_policy(body)
    try:
        policy = smtpsts.Policy.from_text(body, lenient=True)
    except smtpsts.PolicySyntaxError:
        assert scan.policy is None
        return
    assert scan.policy is not None
    if not policy.lenient:
        strict = smtpsts.Policy.from_text(body)
        assert (strict.mode, strict.mx, strict.max_age) == (
            policy.mode,
            policy.mx,
            policy.max_age,
        )


if __name__ == "__main__":
    _harness.main(test_one, allowed=(smtpsts.PolicySyntaxError,), max_len=8192)
