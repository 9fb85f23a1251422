"""
Fuzz stored policy cache documents: ``CacheEntry.from_json``.

Stores hand back what they hold, which a damaged disk, another smtpsts
version or whoever can write the store may have changed. ``from_json`` may
raise only its documented ``CacheEntryFormatError`` (a ParseError); an
entry it reads writes back (``to_json``) to a document it reads to the same
entry.

Input: byte 0 bit 0 set passes the rest as text (UTF-8, bad bytes
replaced) instead of bytes.
"""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from smtpsts.cache import CacheEntry, CacheEntryFormatError


test_one = _harness.round_trip(CacheEntry.from_json, CacheEntry.to_json)


if __name__ == "__main__":
    _harness.main(test_one, allowed=(CacheEntryFormatError,), max_len=4096)
