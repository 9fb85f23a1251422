"""
The dashboard's server-side SVG charts (issue 13 item 4): ``smtpsts.tlsrpt.charts``, pure.

Every chart must be well-formed XML whatever the report data says (report
data is attacker-controlled: RFC 8460 §4 fields are free text), and must
draw exactly the numbers it was given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsts.tlsrpt.charts import (
    FAILED_COLOUR,
    MAX_BARS,
    MAX_DAYS,
    SUCCESSFUL_COLOUR,
    breakdown_chart,
    daily_chart,
    sparkline,
    xml_text,
)
from smtpsts.tlsrpt.inbox import Breakdown, DayCount

SVG = "{http://www.w3.org/2000/svg}"
D0 = date(2024, 5, 1)
EVIL = "<script>alert('x')</script>&\x00\x1b\ud800"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _rects(element: ET.Element, fill: str) -> list[ET.Element]:
    return [r for r in element.iter(f"{SVG}rect") if r.get("fill") == fill]


class TestXMLText:
    def test_escapes_markup(self) -> None:
        """The five markup characters are escaped."""
        assert "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;" == xml_text('<a href="x">&\'')

    def test_replaces_characters_xml_forbids(self) -> None:
        """C0 controls (but tab, CR, LF), lone surrogates and U+FFFE/FFFF become U+FFFD."""
        assert "a\ufffd\ufffd\t\n\r\ufffd\ufffdb" == xml_text("a\x00\x1b\t\n\r\ud800\ufffeb")

    @given(st.text())
    def test_any_text_is_well_formed_in_an_element(self, text: str) -> None:
        """Any text at all, escaped, parses as an element's content and attribute."""
        escaped = xml_text(text)
        element = ET.fromstring(f'<t a="{escaped}">{escaped}</t>')
        assert "<" not in escaped
        assert element.text is None or "<" not in element.text or "<" in text


class TestDailyChart:
    def test_draws_each_day_with_its_numbers(self) -> None:
        """One group per day of the span, zeros for days without reports, numbers as given."""
        days = [DayCount(D0, 100, 5), DayCount(D0 + timedelta(days=2), 40, 0)]
        svg = _parse(daily_chart(days, D0, 4, title="t"))
        groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "day"]
        assert [
            ("2024-05-01", "100", "5"),
            ("2024-05-02", "0", "0"),
            ("2024-05-03", "40", "0"),
            ("2024-05-04", "0", "0"),
        ] == [(g.get("data-day"), g.get("data-successful"), g.get("data-failed")) for g in groups]
        assert "2024-05-01: 100 successful, 5 failed" == groups[0].findtext(f"{SVG}title")
        assert 2 == len(_rects(svg, SUCCESSFUL_COLOUR)) - 1  # minus the legend swatch
        assert 1 == len(_rects(svg, FAILED_COLOUR)) - 1
        assert "105" in [t.text for t in svg.iter(f"{SVG}text")]  # the y-axis maximum

    def test_rare_failures_stay_visible(self) -> None:
        """A failed count far below the successful one is still at least a pixel high."""
        svg = _parse(daily_chart([DayCount(D0, 1_000_000, 1)], D0, 1, title="t"))
        failed = _rects(svg, FAILED_COLOUR)[0]
        assert float(failed.get("height", "0")) >= 1.0
        ok_only = _parse(daily_chart([DayCount(D0, 1, 1_000_000)], D0, 1, title="t"))
        assert float(_rects(ok_only, SUCCESSFUL_COLOUR)[0].get("height", "0")) >= 1.0

    def test_empty_span_and_no_sessions(self) -> None:
        """No days, or days with no sessions, draw no bars and still parse."""
        assert [] == list(_parse(daily_chart([], D0, 0, title="t")).iter(f"{SVG}g"))
        svg = _parse(daily_chart([DayCount(D0, 0, 0)], D0, 1, title="t"))
        assert 1 == len(_rects(svg, SUCCESSFUL_COLOUR))  # the legend only

    def test_long_span_keeps_its_last_days(self) -> None:
        """A span over MAX_DAYS keeps its last MAX_DAYS days; days before the span are ignored."""
        old = DayCount(D0, 9, 9)
        last = D0 + timedelta(days=MAX_DAYS + 9)
        svg = _parse(daily_chart([old, DayCount(last, 1, 2)], D0, MAX_DAYS + 10, title="t"))
        groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "day"]
        assert MAX_DAYS == len(groups)
        assert last.isoformat() == groups[-1].get("data-day")
        assert "9" not in {g.get("data-successful") for g in groups}

    def test_title_is_escaped(self) -> None:
        """The title of an attacker-named domain is text, never markup."""
        text = daily_chart([], D0, 1, title=EVIL)
        assert "<script>" not in text
        svg = _parse(text)
        assert "<script>alert('x')</script>&\ufffd\ufffd\ufffd" == svg.findtext(f"{SVG}title")


class TestSparkline:
    def test_bars_per_day(self) -> None:
        """One bar part per non-zero count, nothing else, and the title escaped."""
        days = [DayCount(D0, 10, 1), DayCount(D0 + timedelta(days=1), 0, 3)]
        text = sparkline(days, D0, 3, title=EVIL)
        svg = _parse(text)
        paths = {p.get("fill"): p.get("d", "") for p in svg.iter(f"{SVG}path")}
        assert (1, 2) == (paths[SUCCESSFUL_COLOUR].count("M"), paths[FAILED_COLOUR].count("M"))
        assert "<script>" not in text

    def test_long_span(self) -> None:
        """A sparkline over more than MAX_DAYS draws the last MAX_DAYS."""
        svg = _parse(sparkline([DayCount(D0, 1, 0)], D0, MAX_DAYS + 1, title="t"))
        assert [] == list(svg.iter(f"{SVG}path"))  # D0 is the day cut off


class TestBreakdownChart:
    def test_groups_with_their_numbers(self) -> None:
        """Each group is drawn with its key and numbers; an empty key is shown as (none)."""
        rows = [Breakdown("Google Inc.", 90, 10), Breakdown("", 0, 3), Breakdown("x", 0, 0)]
        svg = _parse(breakdown_chart(rows, title="t"))
        groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "group"]
        assert [("Google Inc.", "90", "10"), ("", "0", "3"), ("x", "0", "0")] == [
            (g.get("data-key"), g.get("data-successful"), g.get("data-failed")) for g in groups
        ]
        assert "(none): 0 successful, 3 failed" == groups[1].findtext(f"{SVG}title")
        assert "(none)" == groups[1].findtext(f"{SVG}text")

    def test_escapes_and_shortens_keys(self) -> None:
        """An attacker's organisation name is escaped, and a long one shortened in the label."""
        rows = [Breakdown(EVIL * 3, 1, 1)]
        text = breakdown_chart(rows, title="t")
        assert "<script>" not in text
        group = next(g for g in _parse(text).iter(f"{SVG}g") if g.get("class") == "group")
        label = group.findtext(f"{SVG}text") or ""
        assert label.endswith("\u2026")
        assert 36 == len(label)

    @pytest.mark.parametrize("extra", [0, 5])
    def test_at_most_max_bars(self, extra: int) -> None:
        """Past MAX_BARS groups the rest are counted in a caption."""
        rows = [Breakdown(f"k{n}", n, 1) for n in range(MAX_BARS + extra)]
        svg = _parse(breakdown_chart(rows, title="t"))
        groups = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "group"]
        assert MAX_BARS == len(groups)
        captions = [t.text for t in svg.iter(f"{SVG}text") if (t.text or "").startswith("and ")]
        assert ([f"and {extra} more (see the table)"] if extra else []) == captions

    def test_empty(self) -> None:
        """No groups is an empty, well-formed chart."""
        svg = _parse(breakdown_chart([], title="t"))
        assert [] == list(svg.iter(f"{SVG}rect"))
