"""``streams report`` against the real ClickHouse: its queries read a simulated run's rows through
the analyst views, and the page it writes draws every chart in headless Chromium, offline.

The rows come from the stages run in memory over simulated traffic (tests/support/inmemory.py),
written by the pipeline's sink into a fresh database; then the page is opened from disk by
Debian's Chromium, whose DOM after the scripts ran must hold each chart's SVG and its marks.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.settings import Settings
from streams.tools.report import read_report_data, write_report
from streams.tools.simulate import SimulationConfig
from tests.support.inmemory import write_simulated_rows

pytestmark = pytest.mark.integration

CHROMIUM = "chromium"
#: Chromium's own network traffic (updates, sync, field trials) is refused on build machines:
#: these flags keep it from trying, so the page is rendered from the file alone.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000")
#: Per chart, a class that only its drawn data carries (plotly's SVG layers).
DATA_MARKS = {"daily": "point", "leaderboard": "point", "referrals": "sankey-node", "funnel": "point",
              "support": "point"}


class ChartClasses(HTMLParser):
    """For every ``<div id="chart-NAME">``, the classes of the elements inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, set[str]] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, chart started by it)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        chart_id = attributes.get("id") or ""
        started = chart_id.removeprefix("chart-") if tag == "div" and chart_id.startswith("chart-") else None
        if started:
            self.charts[started] = set()
        inside = [name for _, name in self._open if name] + ([started] if started else [])
        for name in inside:
            self.charts[name].update((attributes.get("class") or "").split())
            self.charts[name].add(tag)
        if tag not in ("path", "rect", "line", "circle", "text", "tspan", "stop", "use", "image", "br", "meta",
                       "input", "img", "link"):
            self._open.append((tag, started))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                return


def rendered_dom(page: Path, profile_dir: Path) -> str:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is missing: run make install (deploy/local/stack install adds Debian's chromium)")
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom",
                             page.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture()
def landed(clickhouse_settings: Settings) -> Settings:
    """A fresh database holding the rows of a simulated run."""
    migrate(clickhouse_settings, echo=lambda _: None)
    client = connect(clickhouse_settings)
    write_simulated_rows(client, clickhouse_settings, SimulationConfig(seed=11, customers=120, events=3_000))
    client.disconnect()
    return clickhouse_settings


def test_report_queries_read_every_section_from_the_views(landed: Settings) -> None:
    client = connect(landed)
    data = read_report_data(client, landed)
    client.disconnect()
    assert data.daily and data.leaderboard and data.referrals and data.funnel and data.support
    assert sum(row["events"] for row in data.daily) > 0
    leaders = [row["sharer_customer_id"] for row in data.leaderboard]
    assert {row["sharer_customer_id"] for row in data.referrals} <= set(leaders)
    revenue = [row["referred_revenue_cents"] for row in data.leaderboard]
    assert revenue == sorted(revenue, reverse=True)
    assert data.support["tickets_with_reply"] > 0


def test_report_page_draws_every_chart_in_headless_chromium(landed: Settings, tmp_path: Path) -> None:
    page = write_report(landed, tmp_path / "out" / "report.html")
    text = page.read_text(encoding="utf-8")
    assert str(landed.clickhouse_password) not in text and str(landed.clickhouse_admin_password) not in text

    parser = ChartClasses()
    parser.feed(rendered_dom(page, tmp_path / "chromium-profile"))
    assert sorted(parser.charts) == sorted(DATA_MARKS)
    for name, mark in DATA_MARKS.items():
        classes = parser.charts[name]
        assert "main-svg" in classes and "svg" in classes, f"{name}: plotly drew no SVG"
        assert mark in classes, f"{name}: the SVG has no data marks ({mark})"
