"""
Server-side SVG charts for the TLS-RPT dashboard (issue 13 item 4).

Pure code: counts in, SVG text out. No clock, no files, no fonts to fetch,
no script: the charts work with no network at view time and under a
``default-src 'none'`` Content-Security-Policy (colours are presentation
attributes, not CSS). Every piece of text that reaches the SVG (report data
is chosen by whoever sent the report) goes through :func:`xml_text`.

Each bar carries its numbers twice: in a ``<title>`` (the tooltip a browser
shows) and in ``data-*`` attributes, so a test can read back what is drawn.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Final

from smtpsts.tlsrpt.inbox import Breakdown, DayCount

__all__ = [
    "FAILED_COLOUR",
    "MAX_BARS",
    "MAX_DAYS",
    "SUCCESSFUL_COLOUR",
    "breakdown_chart",
    "daily_chart",
    "sparkline",
    "xml_text",
]

SUCCESSFUL_COLOUR: Final = "#2e7d32"
"""Fill of successful sessions."""

FAILED_COLOUR: Final = "#c62828"
"""Fill of failed sessions."""

MAX_DAYS: Final = 400
"""The most days one chart draws (a longer span is cut to its last days)."""

MAX_BARS: Final = 20
"""The most groups :func:`breakdown_chart` draws (the rest are counted in a caption)."""

# XML 1.0 §2.2: these code points may not appear in a document at all, escaped or not.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(text: object) -> str:
    """
    Text made safe for SVG/HTML character data and attribute values.

    ``&``, ``<``, ``>``, ``"`` and ``'`` are escaped; characters XML 1.0
    forbids (C0 controls but tab, CR, LF; lone surrogates; U+FFFE/FFFF) become
    U+FFFD, so the output is well-formed XML and HTML whatever the input.

    Args:
        text: Anything; its ``str()`` is escaped.

    Returns:
        The escaped text.
    """
    return html.escape(_NOT_XML.sub("\ufffd", str(text)), quote=True)


def _days_filled(days: Sequence[DayCount], first: date, count: int) -> list[DayCount]:
    # One entry per day of the span, zeros where no report started that day.
    by_day = {d.day: d for d in days}
    out = []
    for n in range(count):
        day = first + timedelta(days=n)
        out.append(by_day.get(day, DayCount(day, 0, 0)))
    return out


def _span(first: date, count: int) -> tuple[date, int]:
    # A span longer than MAX_DAYS keeps its last MAX_DAYS days.
    if count > MAX_DAYS:
        return first + timedelta(days=count - MAX_DAYS), MAX_DAYS
    return first, max(0, count)


def _bar(x: float, y: float, w: float, h: float, fill: str) -> str:
    return f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{fill}"/>'


def _stack(total_h: float, top: int, ok: int, failed: int) -> tuple[float, float]:
    # Heights of the successful and failed parts of one bar; a non-zero count
    # is at least one pixel high, so rare failures stay visible.
    if top == 0:
        return 0.0, 0.0
    ok_h = total_h * ok / top
    failed_h = total_h * failed / top
    if failed and failed_h < 1:
        failed_h = 1.0
    if ok and ok_h < 1:
        ok_h = 1.0
    return ok_h, failed_h


def daily_chart(
    days: Sequence[DayCount],
    first: date,
    count: int,
    *,
    title: str,
    width: int = 720,
    height: int = 240,
) -> str:
    """
    Sessions per day as stacked bars: successful below, failed on top.

    Args:
        days: The counts (:meth:`~smtpsts.tlsrpt.inbox.ReportStore.daily`);
            days outside the span are ignored, missing days are zero.
        first: The first day drawn.
        count: How many days are drawn (at most :data:`MAX_DAYS`: a longer
            span keeps its last days).
        title: The chart's accessible name (escaped).
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        An ``<svg>`` element.
    """
    first, count = _span(first, count)
    filled = _days_filled(days, first, count)
    left, right, top_margin, bottom = 56, 8, 12, 36
    plot_w = max(1, width - left - right)
    plot_h = max(1, height - top_margin - bottom)
    top = max((d.successful + d.failed for d in filled), default=0)
    slot = plot_w / max(1, len(filled))
    bar_w = max(1.0, slot * 0.8)
    label = xml_text(title)
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}"'
            f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
            f' aria-label="{label}"><title>{label}</title>'
        ),
        (
            f'<line x1="{left}" y1="{top_margin + plot_h}" x2="{left + plot_w}"'
            f' y2="{top_margin + plot_h}" stroke="#888"/>'
        ),
        f'<text x="{left - 6}" y="{top_margin + 4}" text-anchor="end" font-size="11">{top}</text>',
        (
            f'<text x="{left - 6}" y="{top_margin + plot_h}" text-anchor="end"'
            ' font-size="11">0</text>'
        ),
    ]
    step = max(1, len(filled) // 6)
    for n, day in enumerate(filled):
        x = left + n * slot + (slot - bar_w) / 2
        ok_h, failed_h = _stack(plot_h, top, day.successful, day.failed)
        base = top_margin + plot_h
        iso = day.day.isoformat()
        parts.append(
            f'<g class="day" data-day="{iso}" data-successful="{day.successful}"'
            f' data-failed="{day.failed}"><title>{iso}: {day.successful} successful,'
            f" {day.failed} failed</title>"
        )
        if ok_h:
            parts.append(_bar(x, base - ok_h, bar_w, ok_h, SUCCESSFUL_COLOUR))
        if failed_h:
            parts.append(_bar(x, base - ok_h - failed_h, bar_w, failed_h, FAILED_COLOUR))
        parts.append("</g>")
        if n % step == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.2f}" y="{base + 16}" text-anchor="middle"'
                f' font-size="11">{iso[5:]}</text>'
            )
    legend_y = height - 6
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="{SUCCESSFUL_COLOUR}"/>'
        f'<text x="{left + 14}" y="{legend_y}" font-size="11">successful</text>'
        f'<rect x="{left + 90}" y="{legend_y - 9}" width="10" height="10"'
        f' fill="{FAILED_COLOUR}"/>'
        f'<text x="{left + 104}" y="{legend_y}" font-size="11">failed</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(
    days: Sequence[DayCount], first: date, count: int, *, title: str, width: int = 160
) -> str:
    """
    A small daily chart without axes, for the overview table.

    Args:
        days: The counts.
        first: The first day drawn.
        count: How many days (at most :data:`MAX_DAYS`).
        title: The accessible name (escaped).
        width: Width in pixels (the height is 28).

    Returns:
        An ``<svg>`` element.
    """
    first, count = _span(first, count)
    filled = _days_filled(days, first, count)
    height = 28
    top = max((d.successful + d.failed for d in filled), default=0)
    slot = width / max(1, len(filled))
    label = xml_text(title)
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{width}"'
            f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
            f' aria-label="{label}"><title>{label}</title>'
        )
    ]
    # One path per colour (a subpath per bar): the overview draws hundreds.
    ok_path: list[str] = []
    failed_path: list[str] = []
    bar_w = max(1.0, slot - 1)
    for n, day in enumerate(filled):
        ok_h, failed_h = _stack(height, top, day.successful, day.failed)
        x = n * slot
        if ok_h:
            ok_path.append(f"M{x:.1f} {height - ok_h:.1f}h{bar_w:.1f}v{ok_h:.1f}h-{bar_w:.1f}z")
        if failed_h:
            y = height - ok_h - failed_h
            failed_path.append(f"M{x:.1f} {y:.1f}h{bar_w:.1f}v{failed_h:.1f}h-{bar_w:.1f}z")
    for path, fill in ((ok_path, SUCCESSFUL_COLOUR), (failed_path, FAILED_COLOUR)):
        if path:
            parts.append(f'<path d="{"".join(path)}" fill="{fill}"/>')
    parts.append("</svg>")
    return "".join(parts)


def breakdown_chart(rows: Sequence[Breakdown], *, title: str, width: int = 720) -> str:
    """
    Groups as horizontal stacked bars (successful, then failed), largest first as given.

    Args:
        rows: The groups (:meth:`~smtpsts.tlsrpt.inbox.ReportStore.breakdown`);
            the first :data:`MAX_BARS` are drawn, the rest are counted in a caption.
        title: The accessible name (escaped).
        width: Width in pixels (the height follows from the rows).

    Returns:
        An ``<svg>`` element.
    """
    shown = list(rows[:MAX_BARS])
    hidden = len(rows) - len(shown)
    row_h, label_w, right = 22, 240, 80
    height = row_h * len(shown) + (row_h if hidden else 0) + 8
    plot_w = max(1, width - label_w - right)
    top = max((r.successful + r.failed for r in shown), default=0)
    label = xml_text(title)
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}"'
            f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
            f' aria-label="{label}"><title>{label}</title>'
        )
    ]
    for n, row in enumerate(shown):
        y = 4 + n * row_h
        key = row.key if len(row.key) <= 36 else row.key[:35] + "\u2026"
        shown_key = xml_text(key) if row.key else "(none)"
        parts.append(
            f'<g class="group" data-key="{xml_text(row.key)}" data-successful="{row.successful}"'
            f' data-failed="{row.failed}"><title>{xml_text(row.key) or "(none)"}:'
            f" {row.successful} successful, {row.failed} failed</title>"
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end"'
            f' font-size="12">{shown_key}</text>'
        )
        ok_w, failed_w = _stack(plot_w, top, row.successful, row.failed)
        if ok_w:
            parts.append(_bar(label_w, y + 3, ok_w, row_h - 6, SUCCESSFUL_COLOUR))
        if failed_w:
            parts.append(_bar(label_w + ok_w, y + 3, failed_w, row_h - 6, FAILED_COLOUR))
        parts.append(
            f'<text x="{label_w + ok_w + failed_w + 4:.2f}" y="{y + 15}"'
            f' font-size="11">{row.failed} failed</text></g>'
        )
    if hidden:
        parts.append(
            f'<text x="{label_w}" y="{4 + len(shown) * row_h + 15}" font-size="11">'
            f"and {hidden} more (see the table)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
