"""
The STARTTLS probe and TLS helpers against real stdlib-ssl SMTP servers on loopback.

Every probe test runs through both drivers, sync and asyncio (the ``probe``
fixture). Certificates come from tests/certfactory.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certfactory import make, pki
from smtpsts import LocalResourceError, smtp
from smtpsts._vocab import ResultType
from smtpsts.certs import TrustStore, check_certificate
from smtpsts.io import tls as tls_module
from smtpsts.io._smtpio import (
    DeliverySession,
    SessionTarget,
    aopen_delivery_session,
    open_delivery_session,
)
from smtpsts.io.http import make_ssl_context
from smtpsts.io.starttls import (
    Reply,
    ReplyReader,
    SMTPReplyError,
    STARTTLSProbe,
    aprobe_starttls,
    probe_starttls,
)
from smtpsts.io.tls import (
    classify_tls_error,
    classify_verify_code,
    opportunistic_context,
    peer_chain,
    pkix_context,
)
from test_local_faults import run_three
from tlsservers import SMTPServer, server_context

HOST = "mx1.example.test"
GOOD = pki(HOST)
NOW = datetime.now(UTC)
EXPIRED = make(HOST, issuer=GOOD.intermediate, not_after=NOW - timedelta(days=1))
FUTURE = make(HOST, issuer=GOOD.intermediate, not_before=NOW + timedelta(days=30))
WRONG_NAME = make("other.example.test", issuer=GOOD.intermediate)
CN_ONLY = make(HOST, issuer=GOOD.intermediate, san=())
SELF_SIGNED = make(HOST)


@pytest.fixture(params=["sync", "async"])
def probe(request: pytest.FixtureRequest) -> Callable[..., STARTTLSProbe]:
    """Run a probe through the sync or the asyncio driver."""

    def run(*args: Any, **kw: Any) -> STARTTLSProbe:
        kw.setdefault("connect_to", "127.0.0.1")
        kw.setdefault("helo_name", "client.example.test")
        if request.param == "sync":
            return probe_starttls(*args, **kw)
        return asyncio.run(aprobe_starttls(*args, **kw))

    return run


def good_server(behaviour: str = "normal") -> SMTPServer:
    """A server presenting the good leaf and its intermediate."""
    return SMTPServer(server_context(GOOD.leaf, GOOD.intermediate), behaviour)


class TestProbe:
    def test_normal(self, probe):
        """STS-CERT-14, STS-CERT-15: the probe upgrades, sends the MX name as SNI, gets TLS 1.3 and the chain."""
        with good_server() as server:
            result = probe(HOST, server.port, timeout=5)
        assert result.handshake_ok
        assert result.connected
        assert "127.0.0.1" == result.address
        assert result.starttls_offered
        assert "TLSv1.3" == result.tls_version
        assert result.cipher
        assert GOOD.chain == result.chain
        assert "mx.test" == result.ehlo_name
        assert "mx.test ESMTP test server" == result.greeting
        assert ("SIZE", "STARTTLS", "8BITMIME") == result.extensions
        assert [HOST] == server.snis
        assert 1 == server.handshakes
        assert not result.verified
        assert (None, None, None, None) == (
            result.step,
            result.result_type,
            result.reason,
            result.error,
        )
        assert 0 < result.elapsed < 5

    def test_chain_feeds_core_check(self, probe):
        """STS-CERT-02, STS-CERT-03: the chain the probe returns passes smtpsts.certs for the MX name."""
        with good_server() as server:
            result = probe(HOST.upper() + ".", server.port, timeout=5)
        check = check_certificate(result.chain, HOST, trust=[GOOD.root.cert], now=NOW)
        assert check.ok
        assert HOST == check.identity
        assert [HOST] == server.snis

    def test_connect_to_mapping(self, probe):
        """Issue 12 item 7: the probe takes the ``{(host, port): (address, port)}`` shape too."""
        with good_server() as server:
            result = probe(HOST, 25, connect_to={(HOST, 25): ("127.0.0.1", server.port)}, timeout=5)
        assert (True, "127.0.0.1", 25) == (result.handshake_ok, result.address, result.port)
        assert [HOST] == server.snis

    def test_connect_to_mapping_without_the_host_resolves_it(self, probe):
        """A mapping that does not name the host and port leaves them as they are."""
        with good_server() as server:
            result = probe(
                "localhost", 1, connect_to={("localhost", 2): ("127.0.0.1", server.port)}, timeout=5
            )
        assert (False, 0) == (result.connected, server.handshakes)

    def test_server_name_override(self, probe):
        """DANE-30: the SNI can be the TLSA base domain instead of the host name."""
        with good_server() as server:
            result = probe(HOST, server.port, timeout=5, server_name="base.example.test")
        assert result.handshake_ok
        assert "base.example.test" == result.server_name
        assert ["base.example.test"] == server.snis

    def test_no_starttls(self, probe):
        """DANE-29: a server that does not offer STARTTLS gives starttls-not-supported."""
        with good_server("no-starttls") as server:
            result = probe(HOST, server.port, timeout=5)
        assert not result.starttls_offered
        assert not result.handshake_ok
        assert ResultType.STARTTLS_NOT_SUPPORTED == result.result_type
        assert ("ehlo", "starttls-not-offered") == (result.step, result.reason)

    def test_starttls_refused(self, probe):
        """A 454 answer to STARTTLS is starttls-not-supported (RFC 8460 §4.3.1)."""
        with good_server("refuse-starttls") as server:
            result = probe(HOST, server.port, timeout=5)
        assert result.starttls_offered
        assert ResultType.STARTTLS_NOT_SUPPORTED == result.result_type
        assert "starttls-refused-454" == result.reason
        assert "454 4.7.0 TLS not available" == result.error

    def test_ehlo_rejected(self, probe):
        """Without EHLO there are no extensions: starttls-not-supported."""
        with good_server("no-ehlo") as server:
            result = probe(HOST, server.port, timeout=5)
        assert ResultType.STARTTLS_NOT_SUPPORTED == result.result_type
        assert "ehlo-rejected-502" == result.reason

    def test_stall_mid_handshake_respects_deadline(self, probe):
        """A server that stalls mid-handshake: io-timeout-during-handshake within the deadline."""
        with good_server("stall-handshake") as server:
            result = probe(HOST, server.port, timeout=0.6)
        assert not result.handshake_ok
        assert ResultType.VALIDATION_FAILURE == result.result_type
        assert ("handshake", "io-timeout-during-handshake") == (result.step, result.reason)
        assert "timed out during handshake" == result.error
        assert 0.5 < result.elapsed < 2.5  # the deadline, plus scheduling slack

    def test_stall_before_greeting_respects_deadline(self, probe):
        """A server that never greets: io-timeout-during-greeting within the deadline."""
        with good_server("stall-greeting") as server:
            result = probe(HOST, server.port, timeout=0.4)
        assert result.connected
        assert ("greeting", "io-timeout-during-greeting") == (result.step, result.reason)
        assert result.result_type is None
        assert 0.3 < result.elapsed < 2.3

    def test_shared_deadline(self, probe):
        """An absolute deadline earlier than the timeout ends the probe."""
        with good_server("stall-greeting") as server:
            result = probe(HOST, server.port, timeout=30, deadline=time.monotonic() + 0.3)
        assert "io-timeout-during-greeting" == result.reason
        assert result.elapsed < 2.3

    def test_deadline_already_passed(self, probe):
        """A deadline in the past: nothing is attempted beyond the connect step."""
        with good_server() as server:
            result = probe(HOST, server.port, deadline=time.monotonic() - 1)
        assert ("connect", "io-timeout-during-connect") == (result.step, result.reason)
        assert not result.connected
        assert 0 == server.handshakes

    def test_pipelined_plaintext_after_starttls(self, probe):
        """Plaintext after the 220 to STARTTLS is refused (RFC 3207 §5 injection)."""
        with good_server("pipelined") as server:
            result = probe(HOST, server.port, timeout=5)
        assert not result.handshake_ok
        assert "data-after-starttls-reply" == result.reason

    def test_overlong_reply_line(self, probe):
        """Every read has a size cap: a 5000-octet greeting is a protocol error."""
        with good_server("long-line") as server:
            result = probe(HOST, server.port, timeout=5)
        assert ("greeting", "smtp-protocol-error") == (result.step, result.reason)

    def test_bad_greeting(self, probe):
        """A 554 greeting ends the probe before EHLO."""
        with good_server("bad-greeting") as server:
            result = probe(HOST, server.port, timeout=5)
        assert "smtp-greeting-554" == result.reason
        assert "554 no service here" == result.error

    def test_connection_refused(self, probe):
        """Nothing listening: connected is false and the reason says so."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = probe(HOST, port, timeout=2)
        assert not result.connected
        assert ("connect", "connect-error") == (result.step, result.reason)
        assert "ConnectionRefusedError" in (result.error or "")

    def test_connection_closed_by_server(self, probe):
        """A server that closes during the greeting: connection-closed-during-greeting."""
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]

            def close_one() -> None:
                conn, _ = listener.accept()
                conn.close()

            thread = threading.Thread(target=close_one)
            thread.start()
            result = probe(HOST, port, timeout=2)
            thread.join()
        assert "connection-closed-during-greeting" == result.reason

    def test_remote_alert(self, probe):
        """A handshake failure with an alert from the server: validation-failure, tls-remote-alert-70."""
        context = server_context(
            GOOD.leaf, GOOD.intermediate, maximum_version=ssl.TLSVersion.TLSv1_2
        )
        client = opportunistic_context(minimum_version=ssl.TLSVersion.TLSv1_3)
        with SMTPServer(context) as server:
            result = probe(HOST, server.port, timeout=5, context=client)
        assert ResultType.VALIDATION_FAILURE == result.result_type
        assert "tls-remote-alert-70" == result.reason

    def test_bad_helo_name(self, probe):
        """An EHLO name that would inject a command is refused before connecting."""
        with pytest.raises(ValueError, match="invalid EHLO name"):
            probe(HOST, 25, helo_name="x\r\nRCPT TO:<a@b>")

    def test_ip_literal_host(self, probe):
        """An address as the host name is connected to directly and sends no name as SNI."""
        with good_server() as server:
            result = probe("127.0.0.1", server.port, timeout=5, connect_to=None)
        assert result.handshake_ok
        assert "127.0.0.1" == result.server_name
        assert [None] == server.snis


VERIFY_CASES = [
    # STS-CERT-03: wrong name; STS-CERT-01: expired / not yet valid; STS-CERT-02: untrusted.
    (
        "wrong-name",
        (WRONG_NAME, GOOD.intermediate),
        ResultType.CERTIFICATE_HOST_MISMATCH,
        "no-matching-dns-id",
    ),
    ("expired", (EXPIRED, GOOD.intermediate), ResultType.CERTIFICATE_EXPIRED, "expired"),
    ("not-yet-valid", (FUTURE, GOOD.intermediate), ResultType.CERTIFICATE_EXPIRED, "not-yet-valid"),
    ("self-signed", (SELF_SIGNED,), ResultType.CERTIFICATE_NOT_TRUSTED, "self-signed"),
    ("missing-intermediate", (GOOD.leaf,), ResultType.CERTIFICATE_NOT_TRUSTED, "unknown-ca"),
    (
        "cn-only",
        (CN_ONLY, GOOD.intermediate),
        ResultType.CERTIFICATE_HOST_MISMATCH,
        "no-matching-dns-id",
    ),
]


class TestVerifyMode:
    def test_trusted(self, probe):
        """STS-CERT-02, STS-CERT-03: OpenSSL verifies with the same roots; verified is set."""
        with good_server() as server:
            result = probe(
                HOST, server.port, timeout=5, context=pkix_context(TrustStore([GOOD.root.cert]))
            )
        assert result.handshake_ok
        assert result.verified
        assert GOOD.chain == result.chain

    @pytest.mark.parametrize(
        ("case", "served", "result_type", "reason"), VERIFY_CASES, ids=[c[0] for c in VERIFY_CASES]
    )
    def test_openssl_verdict_mapping(self, probe, case, served, result_type, reason):
        """STS-CERT-01, STS-CERT-02, STS-CERT-03, STS-CERT-04, STS-CERT-16: verify codes map to TLS-RPT result types."""
        with SMTPServer(server_context(*served)) as server:
            result = probe(HOST, server.port, timeout=5, context=pkix_context([GOOD.root.cert]))
        assert not result.handshake_ok
        assert (result_type, reason) == (result.result_type, result.reason)
        assert "handshake" == result.step

    @pytest.mark.parametrize(
        ("case", "served", "result_type", "reason"),
        VERIFY_CASES[:4],
        ids=[c[0] for c in VERIFY_CASES[:4]],
    )
    def test_core_check_agrees_with_openssl(self, case, served, result_type, reason):
        """STS-CERT-16: the core's verdict on the chain the probe got matches OpenSSL's result type."""
        with SMTPServer(server_context(*served)) as server:
            result = probe_starttls(HOST, server.port, connect_to="127.0.0.1", timeout=5)
        assert result.handshake_ok
        check = check_certificate(result.chain, HOST, trust=[GOOD.root.cert], now=NOW)
        assert result_type == check.result_type

    def test_cafile(self, probe, tmp_path: Path):
        """A PEM bundle file as the trust source."""
        bundle = tmp_path / "roots.pem"
        bundle.write_bytes(GOOD.root.pem)
        with good_server() as server:
            result = probe(HOST, server.port, timeout=5, context=pkix_context(cafile=str(bundle)))
        assert result.verified

    def test_default_roots_do_not_trust_private_ca(self, probe):
        """STS-CERT-19: the default context trusts the system roots, not a private CA."""
        with good_server() as server:
            result = probe(HOST, server.port, timeout=5, context=pkix_context())
        assert ResultType.CERTIFICATE_NOT_TRUSTED == result.result_type

    def test_empty_trust_store_trusts_nothing(self, probe):
        """An empty trust store does not fall back to the system roots."""
        with good_server() as server:
            result = probe(HOST, server.port, timeout=5, context=pkix_context(TrustStore([])))
        assert ResultType.CERTIFICATE_NOT_TRUSTED == result.result_type

    def test_contexts(self):
        """STS-CERT-15, DANE-48: TLS 1.2 minimum; PKIX verifies names but never the CN; opportunistic verifies nothing."""
        pkix = pkix_context([GOOD.root.cert])
        opp = opportunistic_context()
        assert ssl.TLSVersion.TLSv1_2 == pkix.minimum_version == opp.minimum_version
        assert (ssl.CERT_REQUIRED, True, False) == (
            pkix.verify_mode,
            pkix.check_hostname,
            pkix.hostname_checks_common_name,
        )
        assert (ssl.CERT_NONE, False) == (opp.verify_mode, opp.check_hostname)


class _LeafOnly:
    """An SSLSocket seen through an interface without any chain API (Python < 3.10 style)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._sock.getpeercert(binary_form=binary_form)


class TestPeerChain:
    def _connect(self, server: SMTPServer) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        reader = ReplyReader()
        for command in (None, b"EHLO me\r\n", b"STARTTLS\r\n"):
            if command:
                sock.sendall(command)
            while (reply := reader.next_reply()) is None:
                reader.feed(sock.recv(4096))
            assert reply.code in (220, 250)
        return opportunistic_context().wrap_socket(sock, server_hostname=HOST)

    def test_full_chain(self):
        """The whole chain the server sent, leaf first."""
        with good_server() as server, self._connect(server) as tls:
            assert GOOD.chain == peer_chain(tls)

    def test_leaf_only_fallback(self):
        """Where no chain API exists, the leaf alone is returned."""
        with good_server() as server, self._connect(server) as tls:
            assert (GOOD.leaf.cert,) == peer_chain(_LeafOnly(tls))  # type: ignore[arg-type]

    def test_unparsable_certificate_truncates(self):
        """A certificate cryptography cannot parse ends the chain there (the leaf stays first)."""
        der = GOOD.leaf.cert.public_bytes(serialization.Encoding.DER)
        inter = GOOD.intermediate.cert.public_bytes(serialization.Encoding.DER)
        assert (GOOD.leaf.cert,) == tls_module._load_certificates([der, b"junk", inter])
        assert () == tls_module._load_certificates([])


class TestClassify:
    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            (10, (ResultType.CERTIFICATE_EXPIRED, "expired")),
            (9, (ResultType.CERTIFICATE_EXPIRED, "not-yet-valid")),
            (62, (ResultType.CERTIFICATE_HOST_MISMATCH, "no-matching-dns-id")),
            (20, (ResultType.CERTIFICATE_NOT_TRUSTED, "unknown-ca")),
            (18, (ResultType.CERTIFICATE_NOT_TRUSTED, "self-signed")),
            (19, (ResultType.CERTIFICATE_NOT_TRUSTED, "self-signed-in-chain")),
            (26, (ResultType.VALIDATION_FAILURE, "bad-eku")),
            (94, (ResultType.VALIDATION_FAILURE, "x509-error-94")),
        ],
    )
    def test_verify_codes(self, code, expected):
        """STS-CERT-16: one table maps OpenSSL verify codes; unknown codes are validation-failure."""
        assert expected == classify_verify_code(code)

    def test_ssl_errors(self):
        """CONFORMANCE §4.4: alerts give tls-remote-alert-NN, other TLS errors a tls-error reason."""
        alert = ssl.SSLError(1, "alert")
        alert.reason = "SSLV3_ALERT_HANDSHAKE_FAILURE"
        other = ssl.SSLError(1, "wrong version")
        other.reason = "WRONG_VERSION_NUMBER"
        unknown_alert = ssl.SSLError(1, "x")
        unknown_alert.reason = "TLSV1_ALERT_SOMETHING_NEW"
        vf = ResultType.VALIDATION_FAILURE
        assert (vf, "tls-remote-alert-40") == classify_tls_error(alert)
        assert (vf, "tls-error-wrong-version-number") == classify_tls_error(other)
        assert (vf, "tls-error-tlsv1-alert-something-new") == classify_tls_error(unknown_alert)
        assert (vf, "tls-connection-closed") == classify_tls_error(ssl.SSLEOFError())
        assert (vf, "tls-connection-closed") == classify_tls_error(ssl.SSLError())
        assert (vf, "io-timeout-during-handshake") == classify_tls_error(TimeoutError())
        assert (vf, "io-error-during-handshake") == classify_tls_error(ConnectionResetError())


def test_reply_names_reexported():
    """Issue 11: the reply parser moved to smtpsts.smtp; the old import path keeps working."""
    assert (Reply, ReplyReader, SMTPReplyError) == (
        smtp.Reply,
        smtp.ReplyReader,
        smtp.SMTPReplyError,
    )


def _client_hello_extensions(context: ssl.SSLContext) -> set[int]:
    """The extension types of the ClientHello ``context`` sends (RFC 8446 §4.1.2)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="mx1.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    data = outgoing.read()
    assert (22, 1) == (data[0], data[5])  # handshake record, ClientHello
    pos = 9 + 2 + 32  # record + handshake headers, legacy_version, random
    pos += 1 + data[pos]  # legacy_session_id
    pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher_suites
    pos += 1 + data[pos]  # legacy_compression_methods
    end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
    pos += 2
    types = set()
    while pos < end:
        types.add(int.from_bytes(data[pos : pos + 2], "big"))
        pos += 4 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    assert end == pos == len(data)
    return types


@pytest.mark.parametrize(
    "factory",
    [
        lambda: pkix_context(TrustStore(())),
        opportunistic_context,
        make_ssl_context,
    ],
    ids=["pkix", "opportunistic", "policy-fetch"],
)
def test_no_raw_public_keys(factory):
    """DANE-51: our TLS contexts never offer RFC 7250 raw public keys.

    Python's ssl module has no API to enable raw public keys, so the
    ClientHello never carries client_certificate_type (19) or
    server_certificate_type (20), and the server must send X.509.
    """
    types = _client_hello_extensions(factory())
    assert (set(), True) == (types & {19, 20}, 0 in types)  # no RPK; SNI (0) is there


# --------------------------------------------------------------------------- delivery sessions (io._smtpio)


@pytest.fixture(params=["sync", "async"])
def open_session(request: pytest.FixtureRequest) -> Callable[..., tuple[Any, DeliverySession]]:
    """
    Open a delivery session through the blocking or the asyncio adapter.

    The connection that comes back is checked: EHLO goes through and is
    answered (250 unless ``ehlo_reply`` says otherwise; RFC 3207 §4.2: the
    server expects EHLO), then it is closed;
    the first item is ``"tls"``, ``"plain"`` or ``None`` (nothing handed back).
    """

    def run(port: int, **kw: Any) -> tuple[Any, DeliverySession]:
        kw.setdefault("helo_name", "client.example.test")
        kw.setdefault("server_name", HOST)
        kw.setdefault("deadline", time.monotonic() + 5)
        expected = kw.pop("ehlo_reply", b"250-mx.test")
        if request.param == "sync":
            sock, session = open_delivery_session(SessionTarget("127.0.0.1", port, **kw))
            if sock is None:
                return None, session
            with sock:
                sock.sendall(b"EHLO client.example.test\r\n")
                assert sock.recv(4096).startswith(expected)
                return ("tls" if isinstance(sock, ssl.SSLSocket) else "plain"), session

        async def arun() -> tuple[Any, DeliverySession]:
            streams, session = await aopen_delivery_session(SessionTarget("127.0.0.1", port, **kw))
            if streams is None:
                return None, session
            reader, writer = streams
            writer.write(b"EHLO client.example.test\r\n")
            assert (await asyncio.wait_for(reader.read(4096), 5)).startswith(expected)
            kind = "tls" if writer.get_extra_info("ssl_object") is not None else "plain"
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), 2)
            return kind, session

        return asyncio.run(arun())

    return run


class TestDeliverySession:
    def test_tls(self, open_session):
        """RFC 3207 §4, STS-CERT-14: TLS up, the chain and what TLS-RPT needs; the server expects EHLO."""
        with good_server() as server:
            kind, session = open_session(server.port)
        assert "tls" == kind
        assert (True, True, True, None, None) == (
            session.connected,
            session.starttls_offered,
            session.handshake_ok,
            session.handshake_error,
            session.error,
        )
        assert (GOOD.chain, "mx.test", "127.0.0.1") == (
            session.chain,
            session.helo,
            session.local_address,
        )
        assert (True, False) == (session.tls_decided, session.broken)
        assert [HOST] == server.snis

    @pytest.mark.parametrize("behaviour", ["no-starttls", "refuse-starttls"])
    def test_no_tls_goes_on_in_cleartext(self, open_session, behaviour):
        """STS-APPLY-16: no STARTTLS, or an error reply to it, counts as not offered; the connection stays."""
        with good_server(behaviour) as server:
            kind, session = open_session(server.port)
        assert "plain" == kind
        assert (False, False, None, True, False) == (
            session.starttls_offered,
            session.handshake_ok,
            session.error,
            session.tls_decided,
            session.broken,
        )
        assert () == session.chain

    def test_ehlo_refused(self, open_session):
        """RFC 3207 §4: EHLO refused means no STARTTLS; a verdict without TLS, no receiving-mx-helo."""
        with good_server("no-ehlo") as server:
            kind, session = open_session(server.port, ehlo_reply=b"502")
        assert ("plain", None, False, True) == (
            kind,
            session.helo,
            session.starttls_offered,
            session.tls_decided,
        )

    def test_plaintext_after_220(self, open_session):
        """RFC 3207 §5: plaintext after the 220 breaks the session; a verdict, and a new connection for cleartext."""
        with good_server("pipelined") as server:
            kind, session = open_session(server.port)
        assert (None, False, True, True) == (
            kind,
            session.starttls_offered,
            session.tls_decided,
            session.broken,
        )
        assert "the server sent plaintext after its 220 reply to STARTTLS" == session.error

    def test_handshake_stall(self, open_session):
        """A stalled handshake ends at the deadline: io-timeout-during-handshake, nothing handed back."""
        with good_server("stall-handshake") as server:
            started = time.monotonic()
            kind, session = open_session(server.port, deadline=time.monotonic() + 0.5)
        assert time.monotonic() - started < 3
        assert (None, True, False, "io-timeout-during-handshake") == (
            kind,
            session.starttls_offered,
            session.handshake_ok,
            session.handshake_error,
        )
        assert (True, True) == (session.tls_decided, session.broken)

    def test_bad_greeting(self, open_session):
        """RFC 5321 §5.1: a refused greeting is no TLS verdict: try the next address."""
        with good_server("bad-greeting") as server:
            kind, session = open_session(server.port)
        assert (None, True, False) == (kind, session.connected, session.tls_decided)
        assert "554 no service here" == session.error

    def test_connect_refused(self, open_session):
        """STS-APPLY-11: a connect failure has no verdict and says why."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        kind, session = open_session(port)
        assert (None, False, False, None) == (
            kind,
            session.connected,
            session.tls_decided,
            session.local_address,
        )
        assert f"[Errno {errno.ECONNREFUSED}]" in (session.error or "")

    def test_greeting_only(self, open_session):
        """The cleartext retry: the greeting only; the server expects EHLO."""
        with good_server() as server:
            kind, session = open_session(server.port, starttls=False)
        assert ("plain", None, False) == (kind, session.report.ehlo, session.starttls_offered)

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_out_of_descriptors(self, kind):
        """Issue 17: a delivery session out of descriptors raises LocalResourceError, no connect failure."""
        with good_server() as server:
            target = SessionTarget("127.0.0.1", server.port, "c.test", HOST, time.monotonic() + 5)

            def sync() -> Any:
                sock, session = open_delivery_session(target)
                if sock is not None:
                    sock.close()
                return session

            async def asynchronous() -> Any:
                streams, session = await aopen_delivery_session(target)
                if streams is not None:
                    streams[1].close()
                return session

            before, during, after = run_three(
                sync if kind == "sync" else asynchronous, is_async=kind == "async"
            )
        assert isinstance(during, LocalResourceError), during
        assert errno.EMFILE == during.errno
        assert f"SMTP session (connect) of [127.0.0.1]:{server.port}" in during.detail
        assert (True, True) == (before.handshake_ok, after.handshake_ok)
