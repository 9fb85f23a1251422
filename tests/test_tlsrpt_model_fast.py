"""The failure-details fast path of the report reader builds exactly what the plain reader builds (issue 13 item 8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtpsts.exceptions import ReportSyntaxError
from smtpsts.tlsrpt import model
from smtpsts.tlsrpt.model import MAX_COUNT, FailureDetails

KEYS = [
    "result-type",
    "failed-session-count",
    "sending-mta-ip",
    "receiving-mx-hostname",
    "receiving-mx-helo",
    "receiving-ip",
    "additional-information",
    "failure-reason-code",
    "unknown-member",
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=MAX_COUNT + 2),
    st.floats(allow_nan=False),
    st.sampled_from(["", "certificate-expired", "starttls-not-supported", "x", "\ud800", "é"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
ENTRIES = st.one_of(st.dictionaries(st.sampled_from(KEYS), VALUES), VALUES)


def plain(value: object) -> FailureDetails | ReportSyntaxError:
    try:
        return model._Reader().details(value, "failure-details[0]")
    except ReportSyntaxError as e:
        return e


@given(ENTRIES)
def test_fast_path_agrees_with_the_reader(value):
    """Whatever the input, the fast path gives up (None) or gives the reader's own value."""
    fast = model._details_fast(value)
    if fast is not None:
        assert fast == plain(value)
        assert type(fast.result_type) is type(plain(value).result_type)


def test_fast_path_takes_the_usual_entry():
    """A usual entry (as Google and Microsoft send them) takes the fast path."""
    entry = {
        "result-type": "certificate-expired",
        "sending-mta-ip": "192.0.2.1",
        "receiving-mx-hostname": "mx.example",
        "receiving-ip": "198.51.100.1",
        "failed-session-count": 3,
        "additional-information": "",
        "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED",
    }
    fast = model._details_fast(entry)
    assert fast is not None
    assert fast == plain(entry)
    assert (None, None) == (fast.additional_information, fast.receiving_mx_helo)


def test_fast_path_leaves_the_tolerated_forms_to_the_reader():
    """Null counts, empty result types and lone surrogates go the plain way (and are judged there)."""
    for entry in (
        {"result-type": "certificate-expired", "failed-session-count": None},
        {"result-type": ""},
        {"result-type": "x", "receiving-ip": "\ud800"},
        ["not", "an", "object"],
    ):
        assert model._details_fast(entry) is None
