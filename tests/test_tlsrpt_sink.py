"""libtlsrpt datagrams, checked against the real tlsrpt-collectd (sys4 tlsrpt-reporter, run as a subprocess)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVICES
from smtpsts.exceptions import UsageError
from smtpsts.io.tlsrpt_sink import RESULT_TYPE_CODES, CollectdSink, datagram
from smtpsts.tlsrpt import PolicyInfo, ResultType, SessionResult
from smtpsts.tlsrpt.session import SessionFailure

RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@recipient.example"
STS = PolicyInfo(
    "sts",
    "recipient.example",
    ("version: STSv1", "mode: enforce", "mx: mx.recipient.example", "max_age: 86400"),
    ("mx.recipient.example",),
)
TLSA = PolicyInfo("tlsa", "mx.recipient.example", ("3 1 1 ABCDEF",))
NONE = PolicyInfo.no_policy_found("other.example")
EXPIRED = SessionResult.failed(
    STS,
    ResultType.CERTIFICATE_EXPIRED,
    sending_mta_ip="192.0.2.1",
    receiving_mx_hostname="mx.recipient.example",
    receiving_mx_helo="mx1.recipient.example",
    receiving_ip="198.51.100.25",
    failure_reason_code="X509_V_ERR_CERT_HAS_EXPIRED",
    additional_information="https://sender.example/why",
)
OK = SessionResult.succeeded(STS, receiving_mx_hostname="mx.recipient.example")


class TestDatagram:
    def test_libtlsrpt_layout(self) -> None:
        """RPT-JSON-12: the datagram has libtlsrpt's keys, codes and key order."""
        assert (
            b'{"d":"recipient.example","pr":"v=TLSRPTv1; rua=mailto:tlsrpt@recipient.example",'
            b'"policies":[{"policy-type":2,"policy-domain":"recipient.example",'
            b'"policy-string":["version: STSv1","mode: enforce","mx: mx.recipient.example","max_age: 86400"],'
            b'"mx-host":["mx.recipient.example"],'
            b'"failure-details":[{"c":204,"s":"192.0.2.1","n":"mx.recipient.example","h":"mx1.recipient.example",'
            b'"r":"198.51.100.25","a":"https://sender.example/why","f":"X509_V_ERR_CERT_HAS_EXPIRED"}],'
            b'"t":1,"f":1}],"dpv":"1"}'
        ) == datagram([EXPIRED], RECORD)

    def test_success_and_no_policy(self) -> None:
        """A success has no failure details, t=0, f=0; no-policy-found has no policy-string or mx-host."""
        assert {"policy-type": 9, "policy-domain": "other.example", "t": 0, "f": 0} == json.loads(
            datagram([SessionResult.succeeded(NONE)], RECORD)
        )["policies"][0]

    def test_byte_identical(self) -> None:
        """DEPS.md §6: the same policy is serialised to the same bytes every time."""
        again = SessionResult.failed(
            PolicyInfo("sts", "RECIPIENT.example.", STS.policy_strings, ("MX.recipient.example",)),
            "certificate-expired",
            sending_mta_ip="192.0.2.1",
            receiving_mx_hostname="mx.recipient.example",
            receiving_mx_helo="mx1.recipient.example",
            receiving_ip="198.51.100.25",
            failure_reason_code="X509_V_ERR_CERT_HAS_EXPIRED",
            additional_information="https://sender.example/why",
        )
        assert datagram([EXPIRED], RECORD) == datagram([again], RECORD)

    def test_several_failures_and_policies(self) -> None:
        """RPT-AGG-06, RPT-AGG-08: extra failure types are more entries (t counts them); a session under STS and TLSA carries both policies."""
        both = SessionResult.failed(
            STS,
            ResultType.CERTIFICATE_HOST_MISMATCH,
            extra_failures=(SessionFailure(ResultType.CERTIFICATE_EXPIRED),),
        )
        dane = SessionResult.failed(
            TLSA, ResultType.TLSA_INVALID, report_domain="recipient.example"
        )
        policies = json.loads(datagram([both, dane], RECORD))["policies"]
        assert [202, 204] == [f["c"] for f in policies[0]["failure-details"]]
        assert 2 == policies[0]["t"]
        assert {
            "policy-type": 1,
            "policy-domain": "mx.recipient.example",
            "policy-string": ["3 1 1 ABCDEF"],
            "failure-details": [{"c": 304}],
            "t": 1,
            "f": 1,
        } == policies[1]

    def test_every_result_type_has_a_code(self) -> None:
        """Every RFC 8460 result type maps to a libtlsrpt code."""
        assert set(ResultType) == set(RESULT_TYPE_CODES)

    def test_misuse(self) -> None:
        """No results, or results for two report domains, are usage errors."""
        with pytest.raises(UsageError):
            datagram([], RECORD)
        with pytest.raises(UsageError):
            datagram([OK, SessionResult.succeeded(NONE)], RECORD)


class TestSinkSocket:
    def test_missing_socket_loses_quietly(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Sending never raises: a missing collector loses the datagram and logs it."""
        with CollectdSink(tmp_path / "nothing") as sink, caplog.at_level(logging.WARNING):
            assert not sink.send([OK], tlsrpt_record=RECORD)
            assert (0, 1) == (sink.sent, sink.lost)
        assert "cannot send" in caplog.text

    def test_report_delivery_and_size(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RPT-AGG-10: report deliveries are not sent; an oversized datagram is dropped."""
        from smtpsts.io import tlsrpt_sink

        with CollectdSink(tmp_path / "s") as sink:
            assert not sink.send(
                [SessionResult.succeeded(NONE, report_delivery=True)], tlsrpt_record=RECORD
            )
            monkeypatch.setattr(tlsrpt_sink, "MAX_DATAGRAM", 10)
            assert not sink.send([OK], tlsrpt_record=RECORD)
            assert 1 == sink.lost


# --------------------------------------------------------------------------- real collector


def collectd_binary() -> Path:
    path = Path(sys.executable).parent / "tlsrpt-collectd"
    if not path.exists():
        msg = "tlsrpt-collectd is not installed (pip install tlsrpt-reporter)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip(msg)
    return path


@pytest.fixture
def collectd() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    binary = collectd_binary()
    # AF_UNIX paths are short (108 bytes): keep the directory near the root.
    with tempfile.TemporaryDirectory(prefix="tc", dir="/tmp") as tmp:
        home = Path(tmp)
        proc = subprocess.Popen(
            [
                str(binary),
                "--storage",
                f"sqlite://{home}/c.db",
                "--socketname",
                str(home / "s"),
                "--sockettimeout",
                "1",
                "--max_uncommited_datagrams",
                "1",
                "--logfilename",
                str(home / "log"),
                "--log_level",
                "info",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=home,
        )
        deadline = time.monotonic() + 20
        while not (home / "s").exists():
            assert proc.poll() is None, (
                (home / "log").read_text() if (home / "log").exists() else "collectd died"
            )
            assert time.monotonic() < deadline, "collectd did not create its socket"
            time.sleep(0.05)
        try:
            yield home, proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def wait_for(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def total_sessions(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(
                conn.execute("SELECT coalesce(sum(cntrtotal), 0) FROM finalresults").fetchone()[0]
            )
    except sqlite3.Error:
        return -1


@pytest.mark.interop
def test_real_collectd_counts(collectd: tuple[Path, subprocess.Popen[bytes]]) -> None:
    """RPT-AGG-04, RPT-AGG-05, RPT-AGG-07, RPT-AGG-10: tlsrpt-collectd counts our datagrams into one row per policy and its fetcher reports the totals."""
    home, proc = collectd
    with CollectdSink(home / "s") as sink:
        for _ in range(3):
            assert sink.send([EXPIRED], tlsrpt_record=RECORD)
        assert sink.send([OK], tlsrpt_record=RECORD)
        for _ in range(2):
            assert sink.send(
                [SessionResult.succeeded(NONE)],
                tlsrpt_record="v=TLSRPTv1; rua=mailto:r@other.example",
            )
        assert not sink.send(
            [SessionResult.succeeded(NONE, report_delivery=True)], tlsrpt_record=RECORD
        )
        assert (6, 0) == (sink.sent, sink.lost)
    wait_for(lambda: total_sessions(home / "c.db") == 6, "collectd did not commit 6 sessions")
    # Byte-identical policies: one finalresults row per distinct policy.
    with sqlite3.connect(f"file:{home / 'c.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT domain, cntrtotal, cntrfailure FROM finalresults ORDER BY domain"
        ).fetchall()
    assert [("other.example", 2, 0), ("recipient.example", 4, 3)] == rows
    proc.send_signal(signal.SIGUSR2)  # development rollover: today's data becomes "yesterday"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    wait_for(lambda: total_sessions(Path(f"{home}/c.db.yesterday")) == 6, "no rollover")
    fetcher = Path(sys.executable).parent / "tlsrpt-fetcher"
    env = dict(os.environ, PYTHONPATH="")
    listing = subprocess.run(
        [str(fetcher), "--storage", f"sqlite://{home}/c.db", yesterday],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd=home,
        env=env,
    ).stdout.splitlines()
    assert ["other.example", "recipient.example", "."] == [*sorted(listing[3:-1]), listing[-1]]
    details = json.loads(
        subprocess.run(
            [str(fetcher), "--storage", f"sqlite://{home}/c.db", yesterday, "recipient.example"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            cwd=home,
            env=env,
        ).stdout
    )
    [(policy_text, counts)] = details["policies"][RECORD].items()
    policy = json.loads(policy_text)
    assert 2 == policy["policy-type"]
    assert ["mx.recipient.example"] == policy["mx-host"]
    assert (4, 3) == (counts["cntrtotal"], counts["cntrfailure"])
    [(failure_text, failed)] = counts["failures"].items()
    assert 3 == failed
    assert 204 == json.loads(failure_text)["c"]
