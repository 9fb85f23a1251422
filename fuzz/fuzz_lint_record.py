"""
Fuzz the TXT record linter (``smtpsts.lint``: ``record_kind``, ``lint_record``).

``lint_record`` reports problems as values and never raises for the text it
is given, whether an ``_mta-sts`` or a ``_smtp._tls`` record.

Input: the record text (UTF-8, bad bytes replaced).
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts.lint import lint_record, record_kind


def test_one(data: bytes) -> None:
    """Lint one input (see the module docstring)."""
    text = data.decode("utf-8", "replace")
    assert record_kind(text) in {"sts", "tlsrpt"}
    for problem in lint_record(text):
        problem.to_json()


if __name__ == "__main__":
    _harness.main(test_one, allowed=(), max_len=4096)
