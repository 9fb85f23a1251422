"""
Inputs the fuzz targets (fuzz/, issue 10 item 7) found, kept as regression tests.

SEC-16: parsers of network text and stored data never let an exception other
than their documented ParseError escape. Each input is also kept in the
target's committed corpus (fuzz/corpus/<target>/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpsts.cache import CacheEntry, CacheEntryFormatError
from smtpsts.tlsrpt.collect import RowFormatError, result_from_key, result_key

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def test_result_key_with_null_mx_pattern() -> None:
    """
    A stored result key whose mx patterns hold ``null`` is a RowFormatError.

    fuzz_result_key found it: AttributeError escaped from PolicyInfo's
    converter (SEC-16, issue 10 item 7).
    """
    key = (CORPUS / "result_key" / "crash-null-mx-pattern").read_text(encoding="utf-8")
    with pytest.raises(RowFormatError) as info:
        result_from_key(key)
    assert "bad-row" == info.value.reason


def test_result_key_nested_too_deeply() -> None:
    """
    A stored result key nested past the interpreter's recursion limit is a RowFormatError.

    RecursionError escaped from json.loads (SEC-16, issue 10 item 7).
    """
    key = (CORPUS / "result_key" / "deep-nesting").read_text(encoding="utf-8")
    with pytest.raises(RowFormatError) as info:
        result_from_key(key)
    assert "bad-row" == info.value.reason


def test_cache_entry_nested_too_deeply() -> None:
    """
    A stored cache document nested past the recursion limit is a CacheEntryFormatError.

    RecursionError escaped from json.loads, so a damaged store entry was an
    internal error instead of a StoreError-mapped format error (SEC-16,
    issue 10 item 7).
    """
    data = (CORPUS / "cache_entry" / "deep-nesting").read_bytes()[1:]  # byte 0: target flags
    with pytest.raises(CacheEntryFormatError, match="nested too deeply"):
        CacheEntry.from_json(data)


def test_result_key_hostname_with_trailing_dots_reads_back_the_same() -> None:
    """
    A stored key whose MX host name ends in several dots reads back to one result.

    fuzz_result_key found ``m..`` read as ``m.``, whose key then read as
    ``m``: the fallback for a name that is not a host name removed only one
    dot, so a rewritten counter row changed its key (SEC-16, issue 10 item 7).
    """
    key = (CORPUS / "result_key" / "roundtrip-trailing-dots").read_text(encoding="utf-8")
    result = result_from_key(key)
    assert "m" == result.receiving_mx_hostname
    assert result == result_from_key(result_key(result))


def test_result_key_hostname_that_converts_only_without_its_dots() -> None:
    """
    ``m\ufeff..`` reads back to one result: the name left after the dots go is converted too.

    The full fuzz campaign (1,000,000 inputs) found ``m\ufeff..`` kept as
    ``m\ufeff`` (not a host name with its dots), whose key then read as ``m``
    (IDNA maps U+FEFF to nothing), so the counter row changed its key.
    """
    key = (CORPUS / "result_key" / "crash-bom-before-dots").read_text(encoding="utf-8")
    result = result_from_key(key)
    assert "m" == result.receiving_mx_hostname
    assert result == result_from_key(result_key(result))


@pytest.mark.parametrize("name", ["crash-number-report-domain", "crash-null-policy-domain"])
def test_result_key_with_wrong_type_for_text_field(name: str) -> None:
    """
    A stored result key with a number or null where a string belongs is a RowFormatError.

    fuzz_result_key found ``9999`` as report_domain and ``null`` as policy
    domain: AttributeError escaped from the name converters (SEC-16, issue
    10 item 7).
    """
    key = (CORPUS / "result_key" / name).read_bytes().decode("utf-8", "replace")
    with pytest.raises(RowFormatError) as info:
        result_from_key(key)
    assert "bad-row" == info.value.reason


@pytest.mark.parametrize(
    "extras", ['[["certificate-expired", 5]]', '[["certificate-expired", ["x"]]]']
)
def test_result_key_with_malformed_extra_failures(extras: str) -> None:
    """
    A stored key whose extra failure codes are not strings is a RowFormatError.

    They used to be read as their ``str()``, a result whose key differs
    from the one stored (SEC-16, issue 10 item 7).
    """
    key = f'[1,"sts","example.com",[],[],0,null,null,null,null,null,null,null,{extras},null]'
    with pytest.raises(RowFormatError) as info:
        result_from_key(key)
    assert "bad-row" == info.value.reason


def test_result_key_hostname_with_spaces_among_trailing_dots() -> None:
    """
    ``m\ufffd ..`` reads back to one result: trailing white space and dots all go, in any order.

    fuzz_result_key found it after the fix above: the dots went, then the space was left, and
    stripped only when the key was read back (SEC-16, issue 10 item 7).
    """
    key = (CORPUS / "result_key" / "crash-space-before-dots").read_text(
        encoding="utf-8", errors="replace"
    )
    result = result_from_key(key)
    assert "m\ufffd" == result.receiving_mx_hostname
    assert result == result_from_key(result_key(result))
