"""
Fuzz the strict policy parser (RFC 8461 §3.2).

``Policy.from_text`` and ``scan_policy`` in strict mode may raise only
:class:`smtpsts.PolicySyntaxError` (``scan_policy`` never raises: it
returns the errors). Both agree on whether the body is valid, and a valid
policy re-parses from its ``to_text()`` to the same mode, MX patterns and
``max_age`` (STS-POL-20).

Input: the policy body as served (bytes).
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    import smtpsts
    from smtpsts.policy import scan_policy


def test_one(data: bytes) -> None:
    """Parse one input (see the module docstring)."""
    scan = scan_policy(data)
    try:
        policy = smtpsts.Policy.from_text(data)
    except smtpsts.PolicySyntaxError:
        assert scan.policy is None
        assert scan.errors
        return
    assert scan.policy is not None
    again = smtpsts.Policy.from_text(policy.to_text())
    assert (policy.mode, policy.mx, policy.max_age) == (again.mode, again.mx, again.max_age)
    policy.matches("mx.example.com")


if __name__ == "__main__":
    _harness.main(test_one, allowed=(smtpsts.PolicySyntaxError,), max_len=8192)
