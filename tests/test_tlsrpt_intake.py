"""
The HTTPS intake (issue 13 item 1): ``smtpsts.io.tlsrpt_intake`` under a real uvicorn.

RFC 8460 §5.3.2 (HTTPS POST of application/tlsrpt+json / +gzip), §6.5 (gzip),
RPT-SEND-26 (media types), RPT-SEND-17/18 (our own sender posting to it).
Every test runs the real server on 127.0.0.1 and ::1 with TLS from a test CA.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import ipaddress
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509

from smtpsts.exceptions import StoreError
from smtpsts.io.tlsrpt_intake import (
    RateLimit,
    TokenBuckets,
    build_app,
    client_address,
    head_deadline_protocol,
)
from smtpsts.io.tlsrpt_send import post_report
from smtpsts.tlsrpt.inbox import (
    AddResult,
    IntakeLimits,
    MemoryReportStore,
    Received,
    Source,
)
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.parse import parse_report_message
from smtpsts.tlsrpt.serialize import gzip_report
from tests import certfactory

SAMPLES = Path(__file__).parent / "data" / "peer-samples"
JSON = "application/tlsrpt+json"
GZIP = "application/tlsrpt+gzip"
HOSTS = ("127.0.0.1", "::1")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    """A test CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    root = certfactory.make("Intake Test Root", ca=True)
    leaf = certfactory.make(
        "localhost",
        issuer=root,
        san=[
            "localhost",
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    where = tmp_path_factory.mktemp("intake-tls")
    cert, key = where / "cert.pem", where / "key.pem"
    cert.write_bytes(leaf.pem)
    key.write_bytes(leaf.key_pem)
    ctx = ssl.create_default_context(cadata=root.pem.decode())
    return cert, key, ctx


class Server:
    """A running intake: its store, app, ports and client TLS context."""

    def __init__(self, store: Any, app: Any, ports: dict[str, int], ctx: ssl.SSLContext) -> None:
        self.store = store
        self.app = app
        self.ports = ports
        self.ctx = ctx

    def post(
        self,
        body: bytes,
        content_type: str | None = JSON,
        *,
        host: str = "127.0.0.1",
        method: str = "POST",
        path: str = "/v1/tlsrpt",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return the status, headers and body."""
        conn = http.client.HTTPSConnection(host, self.ports[host], context=self.ctx, timeout=5)
        try:
            all_headers = dict(headers or {})
            if content_type is not None:
                all_headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@contextlib.contextmanager
def running(
    tls_files: tuple[Path, Path, ssl.SSLContext],
    store: Any = None,
    head: float = 5.0,
    **options: Any,
) -> Iterator[Server]:
    """Serve build_app(store, **options) with uvicorn on 127.0.0.1 and ::1 (TLS)."""
    cert, key, ctx = tls_files
    store = MemoryReportStore() if store is None else store
    app = build_app(store, **options)
    sockets, ports = [], {}
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sockets.append(sock)
        ports[host] = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=head_deadline_protocol(head),
        loop="asyncio",
        lifespan="off",
        log_config=None,
        proxy_headers=False,  # as smtpsts tlsrpt serve: the app reads X-Forwarded-For
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        timeout_keep_alive=2,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Server(store, app, ports, ctx)
    finally:
        server.should_exit = True
        thread.join(10)
        for sock in sockets:
            sock.close()


def _samples() -> list[tuple[str, Report]]:
    found = []
    for path in sorted(SAMPLES.glob("*/*")):
        if path.suffix in (".json", ".eml"):
            found.append((path.name, parse_report_message(path.read_bytes())))
    return found


def test_peer_samples_are_stored_once_each(
    tls_files: tuple[Path, Path, ssl.SSLContext],
) -> None:
    """
    Peer samples are stored once each.

    Every peer sample (JSON files and the reports inside the .eml files) POSTed as JSON
    over IPv4 and as gzip over IPv6 is stored once: 201 the first time its
    (organisation, report-id) arrives, 200 after (RFC 8460 §5.3.2, issue 13).
    """
    samples = _samples()
    assert 7 == len(samples)
    with running(tls_files) as srv:
        seen: set[tuple[str | None, str | None]] = set()
        for _name, report in samples:
            key = (report.organization_name, report.report_id)
            expected = 200 if key in seen else 201
            seen.add(key)
            status, _, body = srv.post(report.to_json().encode(), JSON, host="127.0.0.1")
            assert (expected, b"stored\n" if expected == 201 else b"already received\n") == (
                status,
                body,
            )
            status, _, _ = srv.post(gzip_report(report), GZIP, host="::1")
            assert 200 == status
        stored = srv.store.reports(limit=100)
        assert len(seen) == len(stored)
        assert seen == {(s.organization, s.report_id) for s in stored}
        assert {Source.HTTPS} == {s.source for s in stored}
        assert [] == srv.store.quarantined()
        counters = srv.app.state.counters
        assert (len(seen), 2 * len(samples) - len(seen)) == (
            counters.accepted,
            counters.duplicate,
        )


def test_client_address_is_recorded(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """The stored record names the HTTPS client's address, IPv4 or IPv6 (issue 13)."""
    (_, first), (_, second) = _samples()[0], _samples()[2]
    with running(tls_files) as srv:
        assert 201 == srv.post(first.to_json().encode(), host="127.0.0.1")[0]
        assert 201 == srv.post(second.to_json().encode(), host="::1")[0]
        clients = {r.report.report_id: r.client for r in srv.store._reports.values()}
    assert {first.report_id: "127.0.0.1", second.report_id: "::1"} == clients


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        ("text/plain", b'{"a": 1}', 415, "media-type"),
        ("application/xml", b"<report/>", 415, "media-type"),
        (JSON, b"{not json", 400, "not-a-report"),
        (GZIP, b"\x1f\x8b\x08\x00garbage", 400, "bad-gzip"),
        (GZIP, gzip.compress(b"\0" * 4_000_000), 413, "gzip-bomb"),
    ],
)
def test_refused_bodies_are_quarantined(
    tls_files: tuple[Path, Path, ssl.SSLContext],
    content_type: str,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    """
    Refused bodies get their status and go to quarantine.

    Bad media types (415, RPT-SEND-26), malformed JSON or gzip (400) and a gzip bomb
    (413, RFC 8460 §6.5) are answered with one plain-text line, never stored as a
    report, and kept in the quarantine with their reason and bytes.
    """
    with running(tls_files) as srv:
        got, headers, text = srv.post(body, content_type)
        assert status == got
        assert text.endswith(b"\n")
        assert 1 == text.count(b"\n")
        assert headers["content-type"].startswith("text/plain")
        assert [] == srv.store.reports()
        (entry,) = srv.store.quarantined()
        assert (reason, "127.0.0.1", Source.HTTPS, body) == (
            entry.reason,
            entry.client,
            entry.source,
            entry.body,
        )
        assert {reason: 1} == dict(srv.app.state.counters.refused)


def test_body_over_the_cap_is_not_read(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    A body over the cap is not read.

    A body over max_body is answered 413 without reading the rest: declared by
    Content-Length (nothing read), or chunked (at most the cap plus one chunk kept).
    """
    limits = IntakeLimits(max_body=10_000)
    with running(tls_files, limits=limits) as srv:
        status, _, _ = srv.post(b"x" * 200_000)
        assert 413 == status
        cert_ctx = srv.ctx
        raw = socket.create_connection(("127.0.0.1", srv.ports["127.0.0.1"]), timeout=5)
        with cert_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n%s\r\n" % (4096, b"y" * 4096)
            tls.settimeout(1)
            sent = 0
            with contextlib.suppress(OSError):
                while sent < 1_000_000:
                    tls.sendall(chunk)
                    sent += len(chunk)
            tls.settimeout(5)
            answer = b""
            # The server closes with our data unread: its 413 may be lost to a reset.
            with contextlib.suppress(OSError):
                answer = tls.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413 ") or b"" == answer
        assert {"too-large": 2} == dict(srv.app.state.counters.refused)
        entries = srv.store.quarantined()
        assert ["too-large", "too-large"] == [e.reason for e in entries]
        assert b"" == entries[1].body
        # Read at most the cap plus what uvicorn buffers before it pauses reading (64 KiB
        # high-water mark plus one TLS read).
        assert 10_000 < len(entries[0].body) <= 10_000 + 128 * 1024
        assert [] == srv.store.reports()


def test_other_methods_are_405(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """GET, PUT and DELETE on an intake path are 405 with Allow: POST, counted, not quarantined."""
    with running(tls_files) as srv:
        for method in ("GET", "PUT", "DELETE"):
            status, headers, _ = srv.post(b"", None, method=method, path="/")
            assert (405, "POST") == (status, headers["allow"])
        assert 3 == srv.app.state.counters.method_not_allowed
        assert [] == srv.store.quarantined()


def test_flood_over_the_rate_is_429(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    A flood over the rate is answered 429.

    A client over its token bucket is answered 429 with Retry-After; other clients
    (here ::1) still get through; 429s are counted, not quarantined (issue 13).
    """
    report = _samples()[0][1].to_json().encode()
    with running(tls_files, rate=RateLimit(per_minute=6, burst=3)) as srv:
        statuses = [srv.post(report)[0] for _ in range(3)]
        status, headers, _ = srv.post(report)
        assert [201, 200, 200] == statuses
        assert (429, "10") == (status, headers["retry-after"])
        assert 200 == srv.post(report, host="::1")[0]
        assert 1 == srv.app.state.counters.rate_limited
        assert [] == srv.store.quarantined()


def test_trusted_proxy_forwarded_for(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    X-Forwarded-For is believed from trusted proxies only.

    Behind a trusted proxy the client is the X-Forwarded-For address, and the rate
    applies to it; from an untrusted peer the header is ignored (issue 13).
    """
    report = _samples()[0][1].to_json().encode()
    loopback4 = ipaddress.ip_network("127.0.0.0/8")
    with running(
        tls_files, rate=RateLimit(per_minute=1, burst=1), trusted_proxies=[loopback4]
    ) as srv:
        assert 201 == srv.post(report, headers={"X-Forwarded-For": "192.0.2.7"})[0]
        assert 429 == srv.post(report, headers={"X-Forwarded-For": "192.0.2.7"})[0]
        assert 200 == srv.post(report, headers={"X-Forwarded-For": "192.0.2.8"})[0]
        assert 200 == srv.post(report, host="::1", headers={"X-Forwarded-For": "192.0.2.7"})[0]
        (stored,) = srv.store._reports.values()
    assert "192.0.2.7" == stored.client


def test_client_address_walks_trusted_hops() -> None:
    """X-Forwarded-For is read right to left through trusted proxies only; junk stops the walk."""
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert "192.0.2.1" == client_address("10.0.0.1", ["198.51.100.9, 192.0.2.1, 10.0.0.2"], trusted)
    assert "10.0.0.1" == client_address("10.0.0.1", ["junk"], trusted)
    assert "192.0.2.5" == client_address("192.0.2.5", ["198.51.100.9"], trusted)
    assert "192.0.2.1" == client_address("::ffff:10.0.0.1", ["192.0.2.1"], trusted)
    assert "not-an-ip" == client_address("not-an-ip", ["192.0.2.1"], trusted)


def test_drip_client_is_cut_off(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    A drip client is cut off.

    A client sending its body a byte at a time is cut off at the request deadline
    with 408, and what it sent is quarantined as ``timeout`` (issue 13, issue 10).
    """
    with running(tls_files, deadline=0.5) as srv:
        raw = socket.create_connection(("::1", srv.ports["::1"]), timeout=5)
        with srv.ctx.wrap_socket(raw, server_hostname="::1") as tls:
            tls.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+json\r\n"
                b"Content-Length: 1000\r\n\r\n"
            )
            started = time.monotonic()
            tls.settimeout(0.05)
            answer = b""
            while not answer and time.monotonic() - started < 4:
                with contextlib.suppress(TimeoutError, ssl.SSLError, OSError):
                    tls.sendall(b"{")
                with contextlib.suppress(TimeoutError):
                    answer = tls.recv(4096)
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < elapsed < 2.0
        (entry,) = srv.store.quarantined()
        assert "timeout" == entry.reason
        assert entry.body.startswith(b"{")


class _FailingStore(MemoryReportStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def add(self, received: Received) -> AddResult:
        raise self.error


def test_store_error_is_503_other_faults_500(
    tls_files: tuple[Path, Path, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    """
    Store faults are 503, other faults 500.

    A StoreError is answered 503 (the sender retries, RPT-SEND-18); an unexpected
    exception is logged and answered 500 with no traceback in the body (issue 13).
    """
    report = _samples()[0][1].to_json().encode()
    with running(tls_files, store=_FailingStore(StoreError("disk full"))) as srv:
        status, _, body = srv.post(report)
        assert (503, 1) == (status, srv.app.state.counters.store_errors)
        assert b"try again later" in body
    with running(tls_files, store=_FailingStore(KeyError("boom"))) as srv:
        status, _, body = srv.post(report)
        assert (500, b"internal error\n", 1) == (status, body, srv.app.state.counters.errors)
    assert any("Traceback" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_post_report_delivers_to_the_intake(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    Our own sender delivers to this intake end to end.

    Our own RFC 8460 §5.4 sender (post_report, RPT-SEND-17/18) delivers a gzip report
    to this intake with certificate verification on, over IPv4 and IPv6.
    """
    report = _samples()[0][1]
    with running(tls_files) as srv:
        results = []
        for host in HOSTS:
            port = srv.ports[host]
            results.append(
                post_report(
                    f"https://localhost:{port}/v1/tlsrpt",
                    gzip_report(report),
                    verify=True,
                    context=srv.ctx,
                    connect_to={("localhost", port): (host, port)},
                    allow=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")],
                    timeout=5,
                )
            )
        assert [True, True] == [r.ok for r in results]
        assert [(report.organization_name, report.report_id)] == [
            (s.organization, s.report_id) for s in srv.store.reports()
        ]


def test_dashboard_is_mounted(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """An ASGI dashboard given to build_app answers under /dashboard (issue 13 item 4)."""

    async def dashboard(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    with running(tls_files, dashboard=dashboard) as srv:
        status, _, body = srv.post(b"", None, method="GET", path="/dashboard/x")
        assert (200, b"/dashboard/x") == (status, body)
        assert 404 == srv.post(b"{}", path="/elsewhere")[0]


def test_token_bucket_refills_and_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bucket refills at the rate, and the limiter's memory of clients is bounded."""
    now = [0.0]
    buckets = TokenBuckets(RateLimit(per_minute=60, burst=2), clock=lambda: now[0])
    assert [0.0, 0.0, 1.0] == [buckets.take("a") for _ in range(3)]
    now[0] = 1.0
    assert 0.0 == buckets.take("a")
    never = TokenBuckets(RateLimit(per_minute=0, burst=1), clock=lambda: now[0])
    assert (0.0, float("inf")) == (never.take("a"), never.take("a"))
    monkeypatch.setattr("smtpsts.io.tlsrpt_intake._MAX_BUCKETS", 3)
    for n in range(5):
        buckets.take(f"c{n}")
    assert 3 >= len(buckets._buckets)
    now[0] = 100.0
    buckets.take("z")
    assert {"z"} == set(buckets._buckets)


def test_serve_without_the_extra_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without uvicorn, ``smtpsts tlsrpt serve`` is a one-line error naming the extra (issue 13)."""
    from smtpsts._cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert 2 == main(["tlsrpt", "serve", "--store", "x.db"])
    assert "pip install 'smtpsts[server]'\n" == capsys.readouterr().err.split(": ", 1)[1]


def test_serve_metrics_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad --metrics address, or --metrics without prometheus_client, is exit 2 and one line."""
    import importlib.util

    from smtpsts._cli import main

    assert 2 == main(["tlsrpt", "serve", "--store", "x.db", "--metrics", "nowhere"])
    assert "is not HOST:PORT" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "prometheus_client" else real(name, *a),
    )
    assert 2 == main(["tlsrpt", "serve", "--store", "x.db", "--metrics", "127.0.0.1:0"])
    assert "pip install 'smtpsts[metrics]'" in capsys.readouterr().err


def test_intake_collector_counts_refusals() -> None:
    """Every counter is exported, refusals by reason (issue 12 item 6)."""
    from collections import Counter

    from smtpsts.io.tlsrpt_intake import IntakeCollector, IntakeCounters

    counters = IntakeCounters(accepted=2, refused=Counter({"gzip-bomb": 3, "not-json": 1}))
    families = {f.name: f for f in IntakeCollector(counters).collect()}
    refused = {s.labels["reason"]: s.value for s in families["smtpsts_intake_refused"].samples}
    assert {"gzip-bomb": 3, "not-json": 1} == refused
    assert 6 == len(families)


def test_serve_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """--cert without --key, a bad --rate and a bad --listen are usage errors."""
    from smtpsts._cli import main

    assert 2 == main(["tlsrpt", "serve", "--store", "x.db", "--cert", "c.pem"])
    for bad in (
        ["--rate", "ten"],
        ["--rate", "5/hour"],
        ["--listen", "nowhere"],
        ["--max-body", "0"],
        ["--trust-proxy", "10.0.0.1/8"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["tlsrpt", "serve", "--store", "x.db", *bad])
        assert 2 == exc.value.code


def test_received_at_is_aware(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """received_at is an aware UTC time (ReportStore contract); no rate limit when rate=None."""
    with running(tls_files, rate=None) as srv:
        body = _samples()[0][1].to_json().encode()
        # 61 POSTs on one kept-alive connection: one over the default burst of 60.
        conn = http.client.HTTPSConnection("::1", srv.ports["::1"], context=srv.ctx, timeout=5)
        statuses = []
        for _ in range(61):
            conn.request("POST", "/", body=body, headers={"Content-Type": JSON})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()
        assert [201] + [200] * 60 == statuses
        (stored,) = srv.store.reports()
    assert isinstance(stored.received_at, datetime)
    assert stored.received_at.utcoffset() is not None


def test_serve_runs_the_intake(
    tls_files: tuple[Path, Path, ssl.SSLContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    ``smtpsts tlsrpt serve`` serves TLS from --cert/--key into the SQLite store, with metrics.

    The command runs in a thread (uvicorn skips signal handlers there) and is
    stopped as SIGTERM would; the report is in the store file after (issue 13),
    and the /metrics listener counted it (issue 12 item 6).
    """
    import urllib.request

    from smtpsts._cli import main
    from smtpsts.stores.reports_sqlite import SQLiteReportStore

    cert, key, ctx = tls_files
    servers: list[Any] = []
    real_init = uvicorn.Server.__init__

    def record(self: Any, config: Any) -> None:
        real_init(self, config)
        servers.append(self)

    monkeypatch.setattr(uvicorn.Server, "__init__", record)
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    port, metrics_port = ports
    db = tmp_path / "reports.db"
    argv = ["tlsrpt", "serve", "--listen", f"127.0.0.1:{port}", "--store", str(db)]
    argv += ["--metrics", f"127.0.0.1:{metrics_port}"]
    argv += ["--cert", str(cert), "--key", str(key), "--max-body", "100000", "--rate", "30/min"]
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(main(argv)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (servers and servers[0].started):
        assert time.monotonic() < deadline, "smtpsts tlsrpt serve did not start"
        time.sleep(0.01)
    report = _samples()[0][1]
    srv = Server(None, None, {"127.0.0.1": port}, ctx)
    assert 201 == srv.post(gzip_report(report), GZIP, path="/")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as scrape:
        metrics = scrape.read().decode()
    assert 'smtpsts_intake_reports_total{result="accepted"} 1.0' in metrics
    assert "smtpsts_intake_rate_limited_total 0.0" in metrics
    servers[0].should_exit = True
    thread.join(10)
    assert [0] == status
    store = SQLiteReportStore(str(db))
    try:
        assert [report.report_id] == [s.report_id for s in store.reports()]
    finally:
        store.close()


def test_serve_with_a_store_that_cannot_be_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12 item 4: a store in a missing directory is one line and exit 1, nothing created."""
    from smtpsts._cli import main

    store = tmp_path / "missing" / "reports.db"
    assert 1 == main(["tlsrpt", "serve", "--store", str(store)])
    err = capsys.readouterr().err
    assert (1, True) == (len(err.strip().splitlines()), err.startswith("smtpsts tlsrpt serve: "))
    assert not store.parent.exists()


def test_slow_request_head_is_cut_off(tls_files: tuple[Path, Path, ssl.SSLContext]) -> None:
    """
    A slowloris client is cut off.

    A connection that sends its request head a byte at a time, or goes quiet
    after a complete exchange, is closed at the head deadline (issue 13, issue 10),
    well before uvicorn's own keep-alive timeout (2 s here).
    """

    def closes_within(tls: ssl.SSLSocket, limit: float, drip: bytes = b"") -> float:
        started = time.monotonic()
        tls.settimeout(0.05)
        for byte in drip or bytes(1000):
            assert time.monotonic() - started < limit, "the connection was not closed"
            with contextlib.suppress(OSError):
                if drip:
                    tls.sendall(bytes([byte]))
            try:
                if b"" == tls.recv(100):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        return time.monotonic() - started

    body = _samples()[0][1].to_json().encode()
    with running(tls_files, head=0.3) as srv:
        raw = socket.create_connection(("127.0.0.1", srv.ports["127.0.0.1"]), timeout=5)
        with srv.ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            assert 0.25 < closes_within(tls, 1.5, head)
        raw = socket.create_connection(("::1", srv.ports["::1"]), timeout=5)
        with srv.ctx.wrap_socket(raw, server_hostname="::1") as tls:
            tls.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert tls.recv(100).startswith(b"HTTP/1.1 201 ")
            assert closes_within(tls, 1.5) < 1.5
