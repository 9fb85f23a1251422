"""
Fuzz stored TLS-RPT session keys: ``smtpsts.tlsrpt.collect.result_from_key``.

Persisted counters (``Batch`` rows) are read back with ``result_from_key``,
which may raise only its documented ``RowFormatError`` (a ParseError); a key
it reads is the one ``result_key`` writes for the result.

Input: the key (UTF-8, bad bytes replaced).
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts.tlsrpt.collect import RowFormatError, result_from_key, result_key


def test_one(data: bytes) -> None:
    """Read one input (see the module docstring)."""
    result = result_from_key(data.decode("utf-8", "replace"))
    assert result == result_from_key(result_key(result))


if __name__ == "__main__":
    _harness.main(test_one, allowed=(RowFormatError,), max_len=4096)
