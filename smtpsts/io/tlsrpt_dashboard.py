"""
The TLS-RPT dashboard (issue 13 item 4): a read-only Starlette app over a report store.

Pages (paths relative to where the app is mounted: ``/dashboard`` under
``smtpsts tlsrpt serve --dashboard``, ``/`` under ``smtpsts tlsrpt
dashboard``); every page takes ``?days=N`` (1 to 366, default 30), the
window of whole UTC days ending today (:func:`smtpsts.tlsrpt.inbox.window`):

==========================  ==================================================
``/``                       every policy domain: sessions successful / failed
                            in the window, failure rate, days with reports, a
                            sparkline per day
``/domain/{domain}``        one domain: sessions per day (chart and table),
                            by sending organisation, by MX host, by result
                            type, by failure reason code, the policies seen
                            (policy type and policy strings)
``/reports``                stored reports, newest first, ``?domain=`` and
                            ``?page=`` (50 a page)
``/report/{id}``            one report's stored JSON, pretty-printed
``/report/{id}.json``       the same JSON as a download
``/quarantine``             the newest refused bodies, with their reasons
==========================  ==================================================

The charts are SVG drawn on the server (:mod:`smtpsts.tlsrpt.charts`):
no script, no fonts or style sheets from elsewhere. Everything a report says
is escaped before it is written into a page (report data is chosen by
whoever sent the report). Every answer carries ``Content-Security-Policy:
default-src 'none'`` (the one inline style sheet is allowed by its hash),
``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store``,
``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY``. Only ``GET``
and ``HEAD`` are answered (``405`` otherwise): the app never writes.

Access (:class:`DashboardAuth`):

- no credential: only clients on loopback, asking for a loopback ``Host``
  (``localhost``, ``127.0.0.0/8``, ``[::1]``), are served; anything else is
  ``403``. The ``Host`` check stops DNS rebinding: a web page the owner
  visits cannot make the browser read a loopback dashboard under the page's
  own name.
- a token: ``Authorization: Bearer TOKEN``, or a browser opens any page once
  with ``?token=TOKEN``: it is answered with a redirect to the same page
  without the token and a cookie (``HttpOnly``, ``SameSite=Strict``,
  ``Secure`` over HTTPS) holding an HMAC of the token, not the token;
- a user and password: HTTP basic authentication (RFC 7617).

Secrets are compared in constant time (:func:`hmac.compare_digest`). A
missing or wrong credential is ``401``.

Needs the ``server`` extra; :mod:`smtpsts` and the core never import it.

The module is over 600 lines because it is one app: the access rules, the
security headers and the five pages share the escaping and layout helpers;
the charts are already apart (:mod:`smtpsts.tlsrpt.charts`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final

import anyio
import anyio.to_thread
import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smtpsts.exceptions import StoreError
from smtpsts.tlsrpt.charts import breakdown_chart, daily_chart, sparkline, xml_text
from smtpsts.tlsrpt.inbox import Breakdown, DayCount, ReportStore, StoredReport, window

__all__ = [
    "COOKIE",
    "CSS",
    "DEFAULT_DAYS",
    "PAGE_SIZE",
    "DashboardAuth",
    "build_dashboard",
    "content_security_policy",
    "is_loopback_host",
]

log = logging.getLogger(__name__)

DEFAULT_DAYS: Final = 30
"""Days shown when a page is not given ``?days=``."""

MAX_DAYS: Final = 366
"""The widest window a page shows."""

PAGE_SIZE: Final = 50
"""Reports per page of ``/reports``; quarantined bodies shown (twice that)."""

COOKIE: Final = "smtpsts_dashboard"
"""The cookie a ``?token=`` visit sets."""

_COOKIE_LABEL: Final = b"smtpsts dashboard cookie v1"
_PREVIEW: Final = 400  # bytes of a quarantined body shown

CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
header{background:#263238;color:#fff;padding:.6em 1.2em}
header a{color:#fff;margin-right:1.2em;text-decoration:none}
header a.here{text-decoration:underline}
main{padding:1em 1.2em;max-width:1100px}
h1{font-size:1.4em;margin:.4em 0}
h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;margin:.4em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;padding:.8em;overflow:auto;max-height:70vh}
.bad{color:#c62828;font-weight:600}
.muted{color:#666}
nav.pages a{margin-right:1em}
svg.chart{background:#fff;border:1px solid #ddd;display:block;margin:.4em 0}
""".strip()
"""The dashboard's one style sheet, inline in every page and allowed by its hash."""


def content_security_policy() -> str:
    """
    The ``Content-Security-Policy`` of every answer.

    Returns:
        ``default-src 'none'``, the style sheet allowed by its SHA-256, icons
        from ``data:`` (the empty favicon) and no framing, base or forms.
    """
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _nonempty(_instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None and not value:
        raise ValueError(f"{attribute.name} may not be empty")


@attrs.frozen(repr=False)
class DashboardAuth:
    """
    Who may read the dashboard.

    With neither a token nor a user, only loopback clients are served. With
    both, either credential is accepted.

    Attributes:
        token: A bearer token (``Authorization: Bearer``, or ``?token=``
            once to set a cookie).
        user: A basic-authentication user name (needs ``password``).
        password: Its password.

    Raises:
        ValueError: A user without a password (or the reverse), an empty
            secret, or a user name with ``:`` (RFC 7617 §2).
    """

    token: str | None = attrs.field(default=None, validator=_nonempty)
    user: str | None = attrs.field(default=None, validator=_nonempty)
    password: str | None = attrs.field(default=None, validator=_nonempty)

    def __attrs_post_init__(self) -> None:
        """Check that the user and password come together."""
        if (self.user is None) != (self.password is None):
            raise ValueError("a dashboard user needs a password, and a password a user")
        if self.user is not None and ":" in self.user:
            raise ValueError("a basic-auth user name may not contain ':' (RFC 7617 §2)")

    def __repr__(self) -> str:
        """Say which credentials are set, never what they are."""
        return (
            f"DashboardAuth(token={'set' if self.token else None},"
            f" user={'set' if self.user else None})"
        )

    @property
    def configured(self) -> bool:
        """Whether any credential is set (else the dashboard is loopback only)."""
        return self.token is not None or self.user is not None


def _same(given: bytes, secret: str) -> bool:
    return hmac.compare_digest(given, secret.encode())


def _raw(header_value: str) -> bytes:
    # Starlette decodes header bytes as Latin-1: this gives the bytes back
    # (a UTF-8 secret arrives as its UTF-8 bytes).
    return header_value.encode("latin-1")


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()


def is_loopback_host(host: str) -> bool:
    """
    Whether a ``Host`` header names this machine by a loopback name.

    Args:
        host: The header's value (a name or address, maybe with a port).

    Returns:
        ``True`` for ``localhost`` (and ``*.localhost``, RFC 6761 §6.3),
        ``127.0.0.0/8`` and ``[::1]``.
    """
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_loopback_peer(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class _Guard:
    # Pure ASGI middleware: method, access and the security headers of every answer.

    def __init__(self, app: ASGIApp, auth: DashboardAuth) -> None:
        self.app = app
        self.auth = auth
        self.headers = [
            (b"content-security-policy", content_security_policy().encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-resource-policy", b"same-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in self.headers if k not in names]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        await self.app(scope, receive, secured)

    def _refusal(self, scope: Scope) -> Response | None:
        if scope["method"] not in ("GET", "HEAD"):
            return _page(
                405, "Read only", "<p>The dashboard only reads.</p>", "", headers={"Allow": "GET"}
            )
        auth = self.auth
        if not auth.configured:
            if _is_loopback_peer(scope) and is_loopback_host(_header(scope, b"host")):
                return None
            return _page(
                403,
                "Loopback only",
                "<p>With no credential configured the dashboard answers only on loopback.</p>",
                "",
            )
        request = Request(scope)
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if auth.token is not None:
            if scheme == "bearer" and _same(_raw(value), auth.token):
                return None
            cookie = request.cookies.get(COOKIE, "")
            if cookie and _same(cookie.encode(), _cookie_value(auth.token)):
                return None
            offered = request.query_params.get("token")
            if offered is not None and _same(offered.encode(), auth.token):
                return self._set_cookie(request, auth.token)
        if auth.user is not None and auth.password is not None and scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, sep, password = decoded.partition(":")
            # Both compared whatever the first says: no timing difference.
            same_user = _same(user.encode(), auth.user)
            same_password = _same(password.encode(), auth.password)
            if sep and same_user and same_password:
                return None
        challenges = []
        if auth.user is not None:
            challenges.append('Basic realm="smtpsts TLS-RPT dashboard", charset="UTF-8"')
        if auth.token is not None:
            challenges.append('Bearer realm="smtpsts TLS-RPT dashboard"')
        return _page(
            401,
            "Credential needed",
            "<p>This dashboard needs a credential.</p>",
            "",
            headers={"WWW-Authenticate": ", ".join(challenges)},
        )

    def _set_cookie(self, request: Request, token: str) -> Response:
        # Send the browser on to the same page without the token in the URL
        # (so it stays out of history and logs), holding the cookie.
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        base = request.scope.get("root_path", "") or ""
        response.set_cookie(
            COOKIE,
            _cookie_value(token),
            path=base.rstrip("/") + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response


# ---------------------------------------------------------------- rendering


def _num(value: int) -> str:
    return f'<td class="n">{value}</td>'


def _rate(successful: int, failed: int) -> str:
    total = successful + failed
    if not total:
        return '<td class="n muted">-</td>'
    rate = 100 * failed / total
    css = ' class="n bad"' if failed else ' class="n"'
    return f"<td{css}>{rate:.2f}%</td>"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _page(
    status: int,
    title: str,
    body: str,
    base: str,
    *,
    headers: Mapping[str, str] | None = None,
    here: str = "",
) -> HTMLResponse:
    links = (("", "Overview"), ("/reports", "Reports"), ("/quarantine", "Quarantine"))
    nav = "".join(
        f'<a href="{xml_text(base + path + "/" if not path else base + path)}"'
        f"{' class=' + chr(34) + 'here' + chr(34) if here == path else ''}>{label}</a>"
        for path, label in links
    )
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{xml_text(title)} · smtpsts TLS-RPT</title>'
        f"<style>{CSS}</style></head><body><header><nav>{nav}</nav></header>"
        f"<main><h1>{xml_text(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(text, status, headers=headers)


@attrs.frozen
class _View:
    # What a page is rendered from: the request, the mount path, the window.
    request: Request
    base: str
    days: int


class _Pages:
    # The page handlers; store calls run in worker threads.

    def __init__(
        self,
        store: ReportStore,
        now: Callable[[], datetime],
        page_size: int,
    ) -> None:
        self.store = store
        self.now = now
        self.page_size = page_size
        self.slots = anyio.CapacityLimiter(4)

    async def run(self, request: Request, render: Callable[[_View], str]) -> Response:
        base = (request.scope.get("root_path", "") or "").rstrip("/")
        days = _days_param(request)
        try:
            title, body = await anyio.to_thread.run_sync(
                self._render, render, request, base, days, limiter=self.slots
            )
        except StoreError as e:
            log.error("report store failed: %s", e)  # noqa: TRY400 -- a known fault
            return _page(503, "Store unavailable", "<p>The report store cannot be read.</p>", base)
        here = "/" + request.url.path[len(base) :].strip("/").split("/")[0]
        return _page(200, title, body, base, here="" if here == "/" else here)

    @staticmethod
    def _render(
        render: Callable[[_View], str], request: Request, base: str, days: int
    ) -> tuple[str, str]:
        body = render(_View(request, base, days))
        title, _, rest = body.partition("\n")
        return title, rest

    def _window(self, days: int) -> tuple[datetime, datetime, date]:
        since, until = window(days, self.now())
        return since, until, since.date()

    # -------------------------------------------------------------- overview

    def overview(self, view: _View) -> str:
        base, days = view.base, view.days
        since, until, first = self._window(days)
        rows = []
        totals = [0, 0]
        for domain in self.store.domains():
            counts = self.store.daily(domain, since, until)
            ok = sum(d.successful for d in counts)
            failed = sum(d.failed for d in counts)
            totals[0] += ok
            totals[1] += failed
            href = f"{base}/domain/{urllib.parse.quote(domain, safe='')}?days={days}"
            spark = sparkline(counts, first, days, title=f"{domain}: sessions per day")
            rows.append(
                f'<tr data-domain="{xml_text(domain)}"><td><a href="{xml_text(href)}">'
                f"{xml_text(domain)}</a></td>{_num(ok)}{_num(failed)}{_rate(ok, failed)}"
                f"{_num(len(counts))}<td>{spark}</td></tr>"
            )
        body = [
            (
                f"<p>The last {days} days ({first.isoformat()} to "
                f"{(until.date() - timedelta(days=1)).isoformat()}, UTC), counted by the day each"
                f" report's range starts. {_windows(base + '/', days)}</p>"
            )
        ]
        if rows:
            body.append(
                '<table id="domains"><thead><tr><th>Policy domain</th>'
                '<th class="n">Successful</th><th class="n">Failed</th>'
                '<th class="n">Failure rate</th><th class="n">Days with reports</th>'
                "<th>Per day</th></tr></thead><tbody>"
                + "".join(rows)
                + f"</tbody><tfoot><tr><th>All</th>{_num(totals[0])}{_num(totals[1])}"
                f"{_rate(*totals)}<td></td><td></td></tr></tfoot></table>"
            )
        else:
            body.append("<p>No reports stored yet.</p>")
        return "Policy domains\n" + "".join(body)

    # -------------------------------------------------------------- domain

    def domain(self, view: _View) -> str:
        request, base, days = view.request, view.base, view.days
        domain = request.path_params["domain"]
        if domain not in self.store.domains():
            raise HTTPException(404, "no reports for this policy domain")
        since, until, first = self._window(days)
        counts = self.store.daily(domain, since, until)
        ok = sum(d.successful for d in counts)
        failed = sum(d.failed for d in counts)
        quoted = urllib.parse.quote(domain, safe="")
        reports = f"{base}/reports?domain={quoted}"
        parts = [
            (
                f'<p id="totals" data-successful="{ok}" data-failed="{failed}">'
                f"The last {days} days:"
                f" <b>{ok}</b> successful and <b>{failed}</b> failed sessions"
                f" ({_rate_text(ok, failed)}). "
                f'<a href="{xml_text(reports)}">Reports on {xml_text(domain)}</a>. '
                f"{_windows(f'{base}/domain/{quoted}', days)}</p>"
            ),
            "<h2>Sessions per day</h2>",
            daily_chart(counts, first, days, title=f"{domain}: sessions per day"),
            _day_table(counts),
        ]
        sections = (
            ("organization", "By sending organisation", "Organisation", True),
            ("mx", "By MX host", "MX host (receiving-mx-hostname)", False),
            ("result_type", "By result type", "Result type", False),
            ("reason", "By failure reason code", "failure-reason-code", False),
            ("policy", "Policies seen", "Policy type: policy strings", True),
        )
        for by, heading, column, has_ok in sections:
            rows = self.store.breakdown(domain, since, until, by)
            parts.append(f'<h2 id="h-{by}">{heading}</h2>')
            if not rows:
                parts.append(f'<p class="muted" id="none-{by}">Nothing in this window.</p>')
                continue
            if by != "policy":
                parts.append(breakdown_chart(rows, title=f"{domain}: {heading.lower()}"))
            parts.append(_breakdown_table(by, column, rows, has_ok=has_ok))
        return f"{domain}\n" + "".join(parts)

    # -------------------------------------------------------------- reports

    def reports(self, view: _View) -> str:
        request, base = view.request, view.base
        domain = request.query_params.get("domain") or None
        page = _int_param(request, "page", 1, 1, 1_000_000)
        size = self.page_size
        rows = self.store.reports(domain, limit=size + 1, offset=(page - 1) * size)
        more = len(rows) > size
        rows = rows[:size]
        parts = []
        if domain is not None:
            parts.append(f"<p>Reports on <b>{xml_text(domain)}</b>.</p>")
        if rows:
            parts.append(_report_table(rows, base))
        else:
            parts.append('<p class="muted">No reports on this page.</p>')
        links = []
        query = {} if domain is None else {"domain": domain}
        if page > 1:
            prev = urllib.parse.urlencode({**query, "page": page - 1})
            links.append(f'<a rel="prev" href="{xml_text(f"{base}/reports?{prev}")}">Newer</a>')
        if more:
            nxt = urllib.parse.urlencode({**query, "page": page + 1})
            links.append(f'<a rel="next" href="{xml_text(f"{base}/reports?{nxt}")}">Older</a>')
        parts.append(f'<nav class="pages">Page {page}. {"".join(links)}</nav>')
        return "Reports\n" + "".join(parts)

    def report(self, view: _View) -> str:
        request, base = view.request, view.base
        ident = int(request.path_params["id"])
        raw = self.store.raw(ident)
        if raw is None:
            raise HTTPException(404, "no such report")
        try:
            pretty = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:  # stored by this library, so valid: shown as it is otherwise
            pretty = raw
        download = f"{base}/report/{ident}.json"
        return (
            f"Report {ident}\n<p>The report as stored (normalised JSON, RFC 8460 §4). "
            f'<a href="{xml_text(download)}" download>Download</a>.</p>'
            f'<pre id="raw">{xml_text(pretty)}</pre>'
        )

    async def report_json(self, request: Request) -> Response:
        ident = int(request.path_params["id"])
        try:
            raw = await anyio.to_thread.run_sync(self.store.raw, ident, limiter=self.slots)
        except StoreError as e:
            log.error("report store failed: %s", e)  # noqa: TRY400 -- a known fault
            return _page(503, "Store unavailable", "<p>The report store cannot be read.</p>", "")
        if raw is None:
            raise HTTPException(404, "no such report")
        return Response(
            raw,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="report-{ident}.json"'},
        )

    # -------------------------------------------------------------- quarantine

    def quarantine(self, view: _View) -> str:  # noqa: ARG002 -- one signature for every page
        limit = 2 * self.page_size
        rows = self.store.quarantined(limit=limit)
        if not rows:
            return "Quarantine\n<p>No refused bodies.</p>"
        cells = []
        for q in rows:
            if q.body.startswith(b"\x1f\x8b"):
                preview = '<span class="muted">(gzip data)</span>'
            else:
                text = q.body[:_PREVIEW].decode("utf-8", "replace")
                more = "\u2026" if len(q.body) > _PREVIEW or q.truncated else ""
                preview = f"<code>{xml_text(text)}{more}</code>"
            size = f"{len(q.body)}{'+' if q.truncated else ''}"
            cells.append(
                f'<tr data-id="{q.id}"><td class="n">{q.id}</td><td>{_when(q.received_at)}</td>'
                f"<td>{xml_text(q.source)}</td><td>{xml_text(q.client)}</td>"
                f"<td>{xml_text(q.reason)}</td><td>{xml_text(q.detail)}</td>"
                f'<td class="n">{size}</td><td>{preview}</td></tr>'
            )
        return (
            f"Quarantine\n<p>Refused bodies, newest first (at most {limit} shown). They were"
            " never stored as reports.</p>"
            '<table id="quarantine"><thead><tr><th class="n">#</th><th>Received</th>'
            "<th>Source</th><th>Client</th><th>Reason</th><th>Detail</th>"
            '<th class="n">Bytes</th><th>Start of the body</th></tr></thead><tbody>'
            + "".join(cells)
            + "</tbody></table>"
        )


def _rate_text(successful: int, failed: int) -> str:
    total = successful + failed
    return f"{100 * failed / total:.2f}% failed" if total else "no sessions"


def _windows(href: str, days: int) -> str:
    links = []
    for n in (7, 30, 90, 365):
        if n == days:
            links.append(f"<b>{n} days</b>")
        else:
            links.append(f'<a href="{xml_text(f"{href}?days={n}")}">{n} days</a>')
    return "Show: " + " · ".join(links)


def _day_table(counts: Sequence[DayCount]) -> str:
    if not counts:
        return '<p class="muted">No reports in this window.</p>'
    rows = "".join(
        f'<tr data-day="{d.day.isoformat()}"><td>{d.day.isoformat()}</td>'
        f"{_num(d.successful)}{_num(d.failed)}{_rate(d.successful, d.failed)}</tr>"
        for d in reversed(counts)
    )
    return (
        '<table id="days"><thead><tr><th>Day (UTC)</th><th class="n">Successful</th>'
        '<th class="n">Failed</th><th class="n">Failure rate</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _breakdown_table(by: str, column: str, rows: Sequence[Breakdown], *, has_ok: bool) -> str:
    head = f"<th>{xml_text(column)}</th>"
    head += '<th class="n">Successful</th>' if has_ok else ""
    head += '<th class="n">Failed</th>'
    head += '<th class="n">Failure rate</th>' if has_ok else ""
    body = []
    for r in rows:
        key = xml_text(r.key) if r.key else '<span class="muted">(not given)</span>'
        cells = f"<td>{key}</td>"
        cells += _num(r.successful) if has_ok else ""
        cells += _num(r.failed)
        cells += _rate(r.successful, r.failed) if has_ok else ""
        body.append(f'<tr data-key="{xml_text(r.key)}">{cells}</tr>')
    return (
        f'<table id="by-{by}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _report_table(rows: Sequence[StoredReport], base: str) -> str:
    cells = []
    for r in rows:
        domains = ", ".join(
            f'<a href="{xml_text(base + "/domain/" + urllib.parse.quote(d, safe=""))}">'
            f"{xml_text(d)}</a>"
            for d in r.domains
        )
        dkim = "-" if r.dkim is None else (xml_text(r.dkim) or "none")
        cells.append(
            f'<tr data-id="{r.id}"><td class="n"><a href="{base}/report/{r.id}">{r.id}</a></td>'
            f"<td>{xml_text(r.organization)}</td><td>{xml_text(r.report_id)}</td>"
            f"<td>{_when(r.start)}</td><td>{_when(r.end)}</td><td>{domains}</td>"
            f"{_num(r.successful)}{_num(r.failed)}<td>{xml_text(r.source)}</td>"
            f"<td>{_when(r.received_at)}</td><td>{dkim}</td></tr>"
        )
    return (
        '<table id="reports"><thead><tr><th class="n">#</th><th>Organisation</th>'
        "<th>Report id</th><th>From</th><th>To</th><th>Policy domains</th>"
        '<th class="n">Successful</th><th class="n">Failed</th><th>Source</th>'
        "<th>Received</th><th>DKIM</th></tr></thead><tbody>" + "".join(cells) + "</tbody></table>"
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _days_param(request: Request) -> int:
    return _int_param(request, "days", DEFAULT_DAYS, 1, MAX_DAYS)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    base = (request.scope.get("root_path", "") or "").rstrip("/")
    titles = {400: "Bad request", 404: "Not found", 405: "Read only"}
    title = titles.get(exc.status_code, "Error")
    body = f"<p>{xml_text(exc.detail)}</p>"
    return _page(exc.status_code, title, body, base, headers=exc.headers)


_AUTH: Final = DashboardAuth()


def build_dashboard(
    store: ReportStore,
    *,
    auth: DashboardAuth = _AUTH,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    page_size: int = PAGE_SIZE,
) -> Starlette:
    """
    The dashboard as an ASGI application (read-only).

    Mount it under the intake with
    ``build_app(store, dashboard=build_dashboard(store, auth=...))`` or run it alone.

    Args:
        store: The report store it reads (never writes).
        auth: Who may read it (loopback only by default).
        now: The wall clock (aware UTC): today's date ends every window.
        page_size: Reports per page.

    Returns:
        The app.
    """
    if page_size < 1 or math.isnan(page_size):
        raise ValueError("page_size must be at least 1")
    pages = _Pages(store, now, page_size)

    def page(render: Callable[[_View], str]) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            return await pages.run(request, render)

        return endpoint

    routes = [
        Route("/", page(pages.overview), methods=["GET"]),
        Route("/domain/{domain}", page(pages.domain), methods=["GET"]),
        Route("/reports", page(pages.reports), methods=["GET"]),
        Route("/report/{id:int}.json", pages.report_json, methods=["GET"]),
        Route("/report/{id:int}", page(pages.report), methods=["GET"]),
        Route("/quarantine", page(pages.quarantine), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, auth=auth)],
        exception_handlers={HTTPException: _http_error},
    )
