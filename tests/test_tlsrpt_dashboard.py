"""
The TLS-RPT dashboard (issue 13 item 4): ``smtpsts.io.tlsrpt_dashboard`` under a real uvicorn.

The pages are fetched over real HTTP on 127.0.0.1 from a real SQLite report
store, and the numbers on them are checked against the same reports counted
by the executable specification (``smtpsts.tlsrpt.inbox.daily_counts`` and
``breakdown``). Report data is attacker-controlled (RFC 8460 §4: every string
is chosen by the sender): an organisation named ``<script>`` must come out as
text. A real headless Chromium (selenium) loads every page, checks the shown
numbers and that the browser logged nothing (no CSP violation, no failed
load), and saves a screenshot of each page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import html
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from smtpsts._cli import main
from smtpsts.exceptions import StoreError
from smtpsts.io.tlsrpt_dashboard import (
    COOKIE,
    DashboardAuth,
    build_dashboard,
    content_security_policy,
    is_loopback_host,
)
from smtpsts.io.tlsrpt_intake import build_app
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt.inbox import (
    MemoryReportStore,
    Received,
    Source,
    breakdown,
    daily_counts,
    window,
)
from smtpsts.tlsrpt.model import (
    DateRange,
    FailureDetails,
    PolicyResult,
    Report,
    ReportPolicy,
    Summary,
)
from tests.conftest import require_binary

NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)
EVIL_ORG = "<script>alert('org')</script>"
EVIL_MX = '"><img src=x onerror=alert(1)>.example.com'
TOKEN = "s3cret-token-\u00e9"
DOMAINS = ("example.com", "example.net")


def _reports() -> list[Received]:
    """Twelve days of reports from three senders on two domains, with failure details."""
    out = []
    orgs = ("Google Inc.", "Microsoft Corporation", EVIL_ORG)
    for day in range(12):
        start = datetime(2024, 5, 9, tzinfo=UTC) + timedelta(days=day)
        for n, org in enumerate(orgs):
            if (day + n) % 4 == 3:
                continue  # not every sender reports every day
            policies = []
            for d, domain in enumerate(DOMAINS):
                failed = (day * (n + 1) + d) % 7
                details = ()
                if failed:
                    details = (
                        FailureDetails(
                            "certificate-expired",
                            failed - failed // 2,
                            receiving_mx_hostname=f"mx{d}.{domain}",
                            failure_reason_code="X509_V_ERR_CERT_HAS_EXPIRED",
                        ),
                        FailureDetails(
                            "validation-failure" if n != 2 else "sts-webpki-invalid",
                            failed // 2,
                            receiving_mx_hostname=EVIL_MX if n == 2 else f"mx9.{domain}",
                        ),
                    )
                policies.append(
                    PolicyResult(
                        ReportPolicy(
                            "sts",
                            ("version: STSv1", "mode: testing" if day < 6 else "mode: enforce"),
                            domain,
                            (f"mx{d}.{domain}",),
                        ),
                        Summary(100 * (n + 1) + day + d, failed),
                        tuple(x for x in details if x.failed_session_count),
                    )
                )
            report = Report(
                organization_name=org,
                date_range=DateRange(start, start + timedelta(days=1)),
                contact_info="tlsrpt@example.org",
                report_id=f"{day}-{n}",
                policies=tuple(policies),
            )
            out.append(Received(report, Source.HTTPS, start + timedelta(days=1), f"192.0.2.{n}"))
    return out


@pytest.fixture(scope="module")
def reports() -> list[Received]:
    """The reports the store holds."""
    return _reports()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, reports: list[Received]) -> Iterator[Any]:
    """A real SQLite report store with the reports and three quarantined bodies."""
    path = tmp_path_factory.mktemp("dash") / "reports.sqlite"
    s = SQLiteReportStore(str(path), synchronous="NORMAL")
    for r in reports:
        s.add(r)
    for body, reason in (
        (b"<script>alert('q')</script> not json", "not-a-report"),
        (gzip.compress(b"{}"), "no-report-id"),
        (b"x" * 600, "too-large"),
    ):
        s.quarantine(
            body,
            source=Source.HTTPS,
            received_at=NOW,
            client="198.51.100.7",
            reason=reason,
            detail=f"refused: {reason} <b>",
        )
    yield s
    s.close()


class Served:
    """A running server: its base URL."""

    def __init__(self, port: int, prefix: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}{prefix}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], str]:
        """Fetch a page (no redirects followed); the status, headers (lower-case) and text."""
        request = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=10) as response:
                status, head, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            status, head, body = e.code, e.headers, e.read()
        return status, {k.lower(): v for k, v in head.items()}, body.decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def serving(app: Any, prefix: str = "") -> Iterator[Served]:
    """Run an ASGI app under uvicorn on 127.0.0.1 (a thread) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="asyncio", lifespan="off", log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Served(sock.getsockname()[1], prefix)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def mounted(store: Any) -> Iterator[Served]:
    """The intake with the dashboard at /dashboard, no credential (loopback only)."""
    app = build_app(store, dashboard=build_dashboard(store, now=lambda: NOW, page_size=10))
    with serving(app, "/dashboard") as srv:
        yield srv


def _data(page: str, attribute: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(rf'{attribute}="([^"]*)"', page)]


def _rows(page: str, table: str) -> list[list[str]]:
    # The cells of a table's body rows, as text.
    body = page.split(f'<table id="{table}">', 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1]):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return rows


class TestPages:
    def test_every_page_has_strict_headers(self, mounted: Served) -> None:
        """Every answer carries the CSP, nosniff, no-store, no-referrer and DENY."""
        for path in (
            "/",
            "/domain/example.com",
            "/reports",
            "/report/1",
            "/report/1.json",
            "/quarantine",
            "/nowhere",
        ):
            status, headers, _ = mounted.get(path)
            assert status in (200, 404), path
            assert content_security_policy() == headers["content-security-policy"]
            assert headers["content-security-policy"].startswith("default-src 'none';")
            assert ("nosniff", "no-store", "no-referrer", "DENY") == (
                headers["x-content-type-options"],
                headers["cache-control"],
                headers["referrer-policy"],
                headers["x-frame-options"],
            )

    def test_overview_numbers_equal_the_stored_data(
        self, mounted: Served, reports: list[Received]
    ) -> None:
        """Each domain's successful and failed sessions in the window are the specification's."""
        status, _, page = mounted.get("/")
        assert 200 == status
        since, until = window(30, NOW)
        expected = []
        for domain in DOMAINS:
            days = daily_counts(reports, domain, since, until)
            ok = sum(d.successful for d in days)
            failed = sum(d.failed for d in days)
            rate = f"{100 * failed / (ok + failed):.2f}%"
            expected.append([domain, str(ok), str(failed), rate, str(len(days))])
        assert expected == [r[:5] for r in _rows(page, "domains")]

    def test_window_parameter(self, mounted: Served, reports: list[Received]) -> None:
        """``?days=3`` counts only the last three days; a bad value is 400."""
        _, _, page = mounted.get("/domain/example.com?days=3")
        since, until = window(3, NOW)
        days = daily_counts(reports, "example.com", since, until)
        assert [d.day.isoformat() for d in reversed(days)] == [r[0] for r in _rows(page, "days")]
        for bad in ("0", "367", "x", "-1"):
            assert 400 == mounted.get(f"/?days={bad}")[0]

    def test_domain_page_numbers(self, mounted: Served, reports: list[Received]) -> None:
        """Days, chart bars and every breakdown on a domain page are the stored numbers."""
        domain = "example.net"
        status, _, page = mounted.get(f"/domain/{domain}")
        assert 200 == status
        since, until = window(30, NOW)
        days = daily_counts(reports, domain, since, until)
        assert [[d.day.isoformat(), str(d.successful), str(d.failed)] for d in reversed(days)] == [
            r[:3] for r in _rows(page, "days")
        ]
        bars = re.findall(
            r'<g class="day" data-day="([^"]+)" data-successful="(\d+)" data-failed="(\d+)">',
            page,
        )
        assert 30 == len(bars)
        drawn = {day: (ok, failed) for day, ok, failed in bars}
        for d in days:
            assert (str(d.successful), str(d.failed)) == drawn.pop(d.day.isoformat())
        assert {("0", "0")} == set(drawn.values())
        for by in ("organization", "mx", "result_type", "reason", "policy"):
            groups = breakdown(reports, domain, since, until, by)
            shown = _rows(page, f"by-{by}")
            if by in ("organization", "policy"):
                assert [[g.key, str(g.successful), str(g.failed)] for g in groups] == [
                    r[:3] for r in shown
                ], by
            else:
                assert [[g.key or "(not given)", str(g.failed)] for g in groups] == shown, by
        assert "mode: testing" in page
        assert "mode: enforce" in page

    def test_attacker_strings_are_text(self, mounted: Served) -> None:
        """An organisation named <script> and an MX host with markup are escaped everywhere."""
        for path in ("/", "/domain/example.com", "/reports", "/report/3", "/quarantine"):
            _, _, page = mounted.get(path)
            assert "<script" not in page, path
            assert "<img" not in page, path
        _, _, page = mounted.get("/domain/example.com")
        assert html.escape(EVIL_ORG) in page
        assert EVIL_MX in [r[0] for r in _rows(page, "by-mx")]

    def test_reports_are_paginated(self, mounted: Served, store: Any) -> None:
        """Ten a page, newest first, with links to older and newer pages, and a domain filter."""
        everything = store.reports(limit=1000)
        seen = []
        page_no = 1
        while True:
            _, _, page = mounted.get(f"/reports?page={page_no}")
            seen += [int(r[0]) for r in _rows(page, "reports")] if 'id="reports"' in page else []
            assert ('rel="prev"' in page) == (page_no > 1)
            if 'rel="next"' not in page:
                break
            page_no += 1
        assert [r.id for r in everything] == seen
        assert -(-len(everything) // 10) == page_no
        _, _, page = mounted.get("/reports?domain=example.net&page=1")
        assert 10 == len(_rows(page, "reports"))
        _, _, page = mounted.get("/reports?page=99")
        assert "No reports on this page." in page

    def test_report_raw_json(self, mounted: Served, store: Any) -> None:
        """A report's page shows its stored JSON; the download is that JSON; unknown ids are 404."""
        raw = store.raw(1)
        _, _, page = mounted.get("/report/1")
        shown = html.unescape(page.split('<pre id="raw">', 1)[1].split("</pre>", 1)[0])
        import json

        assert json.loads(raw) == json.loads(shown)
        status, headers, text = mounted.get("/report/1.json")
        assert (200, raw) == (status, text)
        assert headers["content-type"].startswith("application/json")
        assert "attachment" in headers["content-disposition"]
        assert 404 == mounted.get("/report/999")[0]
        assert 404 == mounted.get("/report/999.json")[0]
        assert 404 == mounted.get("/domain/nowhere.example")[0]

    def test_quarantine(self, mounted: Served, store: Any) -> None:
        """The quarantine lists each refused body with its reason, the text escaped, gzip named."""
        _, _, page = mounted.get("/quarantine")
        rows = _rows(page, "quarantine")
        assert [q.reason for q in store.quarantined()] == [r[4] for r in rows]
        assert "(gzip data)" in page
        assert "<b>" not in page.split("<main>", 1)[1].replace("<b>30 days</b>", "")
        assert "600" == rows[0][6]
        assert rows[0][7].endswith("\u2026")

    def test_read_only(self, mounted: Served) -> None:
        """Any method but GET and HEAD is 405: the dashboard never writes."""
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = mounted.get("/", method=method)
            assert (405, "GET") == (status, headers["allow"])
        assert 200 == mounted.get("/", method="HEAD")[0]

    def test_store_failure_is_503(self) -> None:
        """A store that cannot be read is a 503 page, not a crash."""

        class Broken(MemoryReportStore):
            def domains(self) -> list[str]:
                raise StoreError("disk gone")

            def raw(self, report: int) -> str | None:
                raise StoreError("disk gone")

        with serving(build_dashboard(Broken(), now=lambda: NOW)) as srv:
            assert 503 == srv.get("/")[0]
            assert 503 == srv.get("/report/1.json")[0]

    def test_domain_with_nothing_in_the_window(self, reports: list[Received]) -> None:
        """A domain whose reports are all older than the window shows empty sections, not 404."""
        store = MemoryReportStore()
        for r in reports:
            store.add(r)
        later = NOW + timedelta(days=100)
        with serving(build_dashboard(store, now=lambda: later)) as srv:
            status, _, page = srv.get("/domain/example.com?days=7")
            assert 200 == status
            assert "No reports in this window." in page
            for by in ("organization", "mx", "result_type", "reason", "policy"):
                assert f'id="none-{by}"' in page
            _, _, page = srv.get("/?days=7")
            assert [["example.com", "0", "0", "-", "0"], ["example.net", "0", "0", "-", "0"]] == [
                r[:5] for r in _rows(page, "domains")
            ]

    def test_raw_that_is_not_json_is_shown_as_text(self) -> None:
        """Should a store hand back text that is not JSON, it is shown escaped, as it is."""

        class Odd(MemoryReportStore):
            def raw(self, report: int) -> str | None:
                return "<not json>"

        with serving(build_dashboard(Odd(), now=lambda: NOW)) as srv:
            status, _, page = srv.get("/report/7")
            assert 200 == status
            assert '<pre id="raw">&lt;not json&gt;</pre>' in page

    def test_other_asgi_scopes_pass_through(self) -> None:
        """A lifespan scope reaches the app behind the guard (and starts and stops it)."""
        app = build_dashboard(MemoryReportStore())
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
        assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == sent

    def test_empty_store(self) -> None:
        """An empty store shows an empty overview, reports and quarantine."""
        with serving(build_dashboard(MemoryReportStore(), now=lambda: NOW)) as srv:
            assert "No reports stored yet." in srv.get("/")[2]
            assert "No refused bodies." in srv.get("/quarantine")[2]
            assert "No reports on this page." in srv.get("/reports")[2]


class TestAccess:
    def test_loopback_only_checks_the_host_header(self, mounted: Served) -> None:
        """Without a credential a non-loopback Host is 403 (DNS rebinding), loopback names pass."""
        assert 403 == mounted.get("/", {"Host": "attacker.example"})[0]
        for host in ("localhost", "localhost:8460", "127.0.0.1:1", "[::1]:8460", "a.localhost"):
            assert 200 == mounted.get("/", {"Host": host})[0], host

    def test_loopback_only_refuses_other_peers(self) -> None:
        """Without a credential a client that is not on loopback is 403."""
        app = build_dashboard(MemoryReportStore(), now=lambda: NOW)
        for client in (("192.0.2.1", 5000), None, ("not-an-address", 1)):
            assert 403 == _call(app, client)[0]
        assert 403 == _call(app, ("127.0.0.1", 1), host=None)[0]  # no Host header
        assert 200 == _call(app, ("::ffff:127.0.0.1", 5000))[0]

    def test_bearer_token(self, store: Any) -> None:
        """No token or a wrong one is 401 with a challenge; the right one is 200, from anywhere."""
        app = build_dashboard(store, auth=DashboardAuth(token=TOKEN), now=lambda: NOW)
        with serving(app) as srv:
            status, headers, _ = srv.get("/")
            assert 401 == status
            assert headers["www-authenticate"].startswith("Bearer")
            assert 401 == srv.get("/", {"Authorization": "Bearer wrong"})[0]
            assert 401 == srv.get("/", {"Authorization": "Basic " + _b64("a:b")})[0]
            good = {"Authorization": f"Bearer {TOKEN}".encode().decode("latin-1")}
            assert 200 == srv.get("/", good)[0]
            assert 200 == srv.get("/", {**good, "Host": "dashboard.example"})[0]
        assert (
            200 == _call(app, ("192.0.2.1", 1), [(b"authorization", f"Bearer {TOKEN}".encode())])[0]
        )

    def test_token_in_the_query_sets_a_cookie(self, store: Any) -> None:
        """?token= redirects to the page without it and sets an HttpOnly cookie that then works."""
        app = build_dashboard(store, auth=DashboardAuth(token="tok"), now=lambda: NOW)
        with serving(app) as srv:
            assert 401 == srv.get("/reports?token=bad")[0]
            status, headers, _ = srv.get("/reports?page=2&token=tok")
            assert (303, "/reports?page=2") == (status, headers["location"])
            cookie = headers["set-cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            assert "tok" not in cookie.split(";")[0].split("=", 1)[1]
            value = cookie.split(";")[0]
            assert 200 == srv.get("/reports", {"Cookie": value})[0]
            assert 401 == srv.get("/reports", {"Cookie": f"{COOKIE}=forged"})[0]
            status, headers, _ = srv.get("/?token=tok")
            assert (303, "/") == (status, headers["location"])

    def test_basic_auth(self, store: Any) -> None:
        """Basic auth: none, a wrong user or password, or garbage is 401; the right pair is 200."""
        auth = DashboardAuth(user="owner", password="pw:with:colons")
        app = build_dashboard(store, auth=auth, now=lambda: NOW)
        with serving(app) as srv:
            status, headers, _ = srv.get("/")
            assert 401 == status
            assert headers["www-authenticate"].startswith('Basic realm="smtpsts')
            for bad in ("owner:nope", "other:pw:with:colons", "owner", ""):
                assert 401 == srv.get("/", {"Authorization": "Basic " + _b64(bad)})[0], bad
            assert 401 == srv.get("/", {"Authorization": "Basic !!notbase64"})[0]
            assert 401 == srv.get("/", {"Authorization": "Basic " + "//79"})[0]  # not UTF-8
            right = {"Authorization": "Basic " + _b64("owner:pw:with:colons")}
            assert 200 == srv.get("/", right)[0]

    def test_both_credentials(self, store: Any) -> None:
        """With a token and a user, either works, and the challenge names both."""
        auth = DashboardAuth(token="t", user="u", password="p")
        with serving(build_dashboard(store, auth=auth, now=lambda: NOW)) as srv:
            status, headers, _ = srv.get("/")
            assert 401 == status
            assert "Basic" in headers["www-authenticate"]
            assert "Bearer" in headers["www-authenticate"]
            assert 200 == srv.get("/", {"Authorization": "Bearer t"})[0]
            assert 200 == srv.get("/", {"Authorization": "Basic " + _b64("u:p")})[0]

    def test_auth_values(self) -> None:
        """Credentials are checked when made and never shown by repr()."""
        for bad in (
            {"user": "u"},
            {"password": "p"},
            {"token": ""},
            {"user": "a:b", "password": "p"},
        ):
            with pytest.raises(ValueError):
                DashboardAuth(**bad)
        text = repr(DashboardAuth(token="hidden", user="me", password="pw"))
        assert "hidden" not in text
        assert "pw" not in text
        assert not DashboardAuth().configured
        with pytest.raises(ValueError):
            build_dashboard(MemoryReportStore(), page_size=0)

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("localhost", True),
            ("LOCALHOST.", True),
            ("127.0.0.1", True),
            ("127.9.9.9:80", True),
            ("[::1]", True),
            ("[::1]:8080", True),
            ("::1", True),
            ("example.com", False),
            ("localhost.example.com", False),
            ("[::1", False),
            ("10.0.0.1", False),
            ("", False),
        ],
    )
    def test_is_loopback_host(self, host: str, expected: bool) -> None:
        """Loopback Host headers: localhost names, 127/8 and ::1, with or without a port."""
        assert expected == is_loopback_host(host)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _call(
    app: Any,
    client: tuple[str, int] | None,
    headers: list[tuple[bytes, bytes]] | None = None,
    host: bytes | None = b"localhost",
) -> tuple[int, bytes]:
    """Call the ASGI app once (for peers a socket test cannot be)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [*([(b"host", host)] if host else []), *(headers or [])],
        "client": client,
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


# ------------------------------------------------------------------- the CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``smtpsts tlsrpt ARGS`` in this process; the status and stderr."""
    status = main(["tlsrpt", *args])
    return status, capsys.readouterr().err


class TestCLI:
    @pytest.mark.parametrize(
        "args",
        [
            ("serve", "--dashboard", "--listen", "0.0.0.0:0"),
            ("serve", "--dashboard", "--listen", "[::]:0"),
            ("dashboard", "--listen", "192.0.2.1:0"),
            ("dashboard", "--listen", "dashboard.example:0"),
        ],
    )
    def test_open_listen_without_credential_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
    ) -> None:
        """A non-loopback --listen with the dashboard and no credential: exit 2, one line."""
        status, err = _cli(capsys, *args, "--store", str(tmp_path / "s.sqlite"))
        assert 2 == status
        assert 1 == len(err.strip().splitlines())
        assert "needs --dashboard-token-file" in err
        assert not (tmp_path / "s.sqlite").exists()

    def test_credential_options_are_checked(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        Bad credential options are refused with exit 2 and the reason.

        A user without a password file, an empty or missing secret file, a
        file that is not UTF-8, or a credential without ``--dashboard``.
        """
        empty = tmp_path / "empty"
        empty.write_text("\n")
        binary = tmp_path / "binary"
        binary.write_bytes(b"\xff\xfe")
        token = tmp_path / "token"
        token.write_text("abc\n")
        store = str(tmp_path / "s.sqlite")
        cases = [
            (("dashboard", "--dashboard-user", "u"), "go together"),
            (("dashboard", "--dashboard-token-file", str(empty)), "first line is empty"),
            (("dashboard", "--dashboard-token-file", str(tmp_path / "no")), "No such file"),
            (("dashboard", "--dashboard-token-file", str(binary)), "utf-8"),
            (
                ("dashboard", "--dashboard-user", "a:b", "--dashboard-password-file", str(token)),
                "may not contain",
            ),
            (("serve", "--dashboard-token-file", str(empty)), "first line is empty"),
            (("serve", "--dashboard-token-file", str(token)), "needs --dashboard"),
            (("dashboard", "--cert", "c.pem"), "--cert and --key go together"),
        ]
        for args, message in cases:
            status, err = _cli(capsys, *args, "--store", store)
            assert (2, True) == (status, message in err), (args, err)

    def test_unreadable_store(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A store that cannot be opened is exit 1 with the reason."""
        status, err = _cli(capsys, "dashboard", "--store", str(tmp_path / "no" / "dir" / "s"))
        assert 1 == status
        assert "cannot open" in err

    @pytest.mark.parametrize("command", ["dashboard", "serve"])
    def test_runs_with_a_token(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
    ) -> None:
        """``tlsrpt dashboard`` and ``tlsrpt serve --dashboard`` serve the store, token required."""
        token = tmp_path / "token"
        token.write_text("cli-token\n")
        path = tmp_path / "copy.sqlite"
        with SQLiteReportStore(str(path)) as copy:
            for r in _reports():
                copy.add(r)
        port = _free_port()
        args = ["tlsrpt", command, "--store", str(path), "--listen", f"127.0.0.1:{port}"]
        prefix = ""
        if command == "serve":
            args.append("--dashboard")
            prefix = "/dashboard"
        args += ["--dashboard-token-file", str(token)]
        servers: list[uvicorn.Server] = []

        class Recorded(uvicorn.Server):
            # The real server, remembered so that the test can stop it.
            def __init__(self, config: uvicorn.Config) -> None:
                super().__init__(config)
                servers.append(self)

        monkeypatch.setattr(uvicorn, "Server", Recorded)
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(main(args)), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not (servers and servers[0].started):
                assert thread.is_alive(), "the command ended"
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.02)
            srv = Served(port, prefix)
            assert 401 == srv.get("/")[0]
            status, _, page = srv.get("/", {"Authorization": "Bearer cli-token"})
            assert 200 == status
            assert "example.com" in page
        finally:
            if servers:
                servers[0].should_exit = True
            thread.join(20)
        assert [0] == result


# ------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real headless Chromium driven by selenium, logging the browser console."""
    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_chromium_shows_the_stored_numbers(
    browser: Any, store: Any, reports: list[Received], tmp_path: Path
) -> None:
    """
    Every page loads in Chromium with no console message, shows the stored numbers, is screenshot.

    The dashboard is mounted in the intake with a token; the browser logs in with
    ``?token=`` once (the cookie carries it after), as an owner would.
    """
    from selenium.webdriver.common.by import By

    app = build_app(
        store,
        dashboard=build_dashboard(store, auth=DashboardAuth(token="browser"), now=lambda: NOW),
    )
    shots = [tmp_path]
    if os.environ.get("SMTPSTS_SCREENSHOTS"):
        shots.append(Path(os.environ["SMTPSTS_SCREENSHOTS"]))
        shots[-1].mkdir(parents=True, exist_ok=True)
    since, until = window(30, NOW)
    with serving(app, "/dashboard") as srv:
        browser.get(srv.url + "/?token=browser")
        assert browser.current_url == srv.url + "/"  # the token left the URL
        pages = {
            "overview": "/",
            "domain": "/domain/example.com",
            "reports": "/reports",
            "report": "/report/1",
            "quarantine": "/quarantine",
        }
        for name, path in pages.items():
            browser.get(srv.url + path)
            assert "smtpsts TLS-RPT" in browser.title, name
            assert browser.find_elements(By.CSS_SELECTOR, "main h1"), name
            for where in shots:
                assert browser.save_screenshot(str(where / f"dashboard-{name}.png"))
            if name == "overview":
                cells = [
                    [c.text for c in row.find_elements(By.TAG_NAME, "td")[:3]]
                    for row in browser.find_elements(By.CSS_SELECTOR, "#domains tbody tr")
                ]
                expected = []
                for domain in DOMAINS:
                    days = daily_counts(reports, domain, since, until)
                    expected.append(
                        [
                            domain,
                            str(sum(d.successful for d in days)),
                            str(sum(d.failed for d in days)),
                        ]
                    )
                assert expected == cells
            if name == "domain":
                days = daily_counts(reports, "example.com", since, until)
                bars = {
                    g.get_attribute("data-day"): (
                        g.get_attribute("data-successful"),
                        g.get_attribute("data-failed"),
                    )
                    for g in browser.find_elements(By.CSS_SELECTOR, "svg g.day")
                }
                assert 30 == len(bars)
                for d in days:
                    assert (str(d.successful), str(d.failed)) == bars[d.day.isoformat()]
                orgs = [
                    r.find_elements(By.TAG_NAME, "td")[0].text
                    for r in browser.find_elements(By.CSS_SELECTOR, "#by-organization tbody tr")
                ]
                assert EVIL_ORG in orgs  # shown as text, not run
                # The style sheet applied (its hash is in the CSP): the header is dark.
                header = browser.find_element(By.TAG_NAME, "header")
                assert header.value_of_css_property("background-color") == "rgba(38, 50, 56, 1)"
            if name == "reports":
                ids = [
                    int(r.get_attribute("data-id"))
                    for r in browser.find_elements(By.CSS_SELECTOR, "#reports tbody tr")
                ]
                assert [r.id for r in store.reports(limit=50)] == ids
            if name == "report":
                import json

                raw = browser.find_element(By.ID, "raw").text
                assert json.loads(store.raw(1)) == json.loads(raw)
            if name == "quarantine":
                rows = browser.find_elements(By.CSS_SELECTOR, "#quarantine tbody tr")
                assert 3 == len(rows)
        assert browser.execute_script("return typeof alert_called") == "undefined"
        log = browser.get_log("browser")
        assert [] == log
    for where in shots:
        for name in pages:
            assert (where / f"dashboard-{name}.png").stat().st_size > 1000
