"""The ``streams report`` page: query results in, one self-contained HTML file out.

Pure functions: :func:`sections` turns the rows read from the analyst views
(:class:`ReportData`, filled by :mod:`streams.tools.report`) into plotly figures, and
:func:`render` lays them out on one page with plotly.js inlined, so the file opens offline
and can be mailed or archived as it is. Every chart sits in a ``<div class="chart"
id="chart-NAME">``; a section without data says so instead of drawing an empty chart.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from streams.tools.humanize import count, duration, money

Row = Mapping[str, Any]

#: Event types in the order every chart stacks them, with their columns in daily_engagement.
EVENT_COLUMNS = (("clicks", "clicks"), ("shares", "shares"), ("purchases", "purchases"),
                 ("support", "support_events"))
PRIVACY_NOTE = ("This page names customers by id: personal data. Keep it on the operator's machine; "
                "do not publish or forward it.")


@dataclass(frozen=True, slots=True)
class ReportData:
    """What the report shows, as read from ClickHouse (column names as in docs/data-dictionary.md)."""

    database: str
    currency: str
    generated_at: dt.datetime
    daily: Sequence[Row] = ()  # daily_engagement, by day
    leaderboard: Sequence[Row] = ()  # referral_leaderboard, best first, top N
    referrals: Sequence[Row] = ()  # sharer_customer_id, referred_customer_id, credits, revenue_cents
    funnel: Sequence[Row] = ()  # click_to_purchase_funnel, by day
    support: Row = field(default_factory=dict)  # support_kpis' one row


@dataclass(frozen=True, slots=True)
class Section:
    name: str  # the chart's id is chart-<name>
    title: str
    explanation: str
    figure: go.Figure | None  # None: no data, the explanation says so


def _layout(figure: go.Figure, **extra: Any) -> go.Figure:
    figure.update_layout(**{"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
                            "height": 420, **extra})
    return figure


def daily_activity(data: ReportData) -> Section:
    title = "Daily activity"
    if not data.daily:
        return Section("daily", title, "No events have landed yet.", None)
    days = [str(row["day"]) for row in data.daily]
    figure = go.Figure([go.Bar(name=label, x=days, y=[row[column] for row in data.daily])
                        for label, column in EVENT_COLUMNS])
    figure.add_trace(go.Scatter(name="active customers", x=days, y=[row["active_customers"] for row in data.daily],
                                mode="lines+markers", yaxis="y2"))
    total = sum(row["events"] for row in data.daily)
    revenue = sum(row["revenue_cents"] for row in data.daily)
    return Section("daily", title,
                   f"Events per UTC day by type (bars) and active customers (line), from daily_engagement: "
                   f"{count(total, 'events')} on time, {money(revenue, data.currency)} revenue over "
                   f"{count(len(days), 'day' if len(days) == 1 else 'days')}.",
                   # Days as categories: a few late events days earlier do not stretch the axis.
                   _layout(figure, barmode="stack", yaxis_title="events", xaxis={"type": "category"},
                           yaxis2={"title": "active customers", "overlaying": "y", "side": "right",
                                   "rangemode": "tozero"},
                           legend={"orientation": "h", "y": -0.15}))


def referral_leaderboard(data: ReportData) -> Section:
    title = "Referral leaderboard"
    if not data.leaderboard:
        return Section("leaderboard", title, "No referral credits yet.", None)
    rows = list(reversed(data.leaderboard))  # horizontal bars draw bottom-up: best on top
    figure = go.Figure(go.Bar(
        orientation="h", y=[row["sharer_customer_id"] for row in rows],
        x=[row["referred_revenue_cents"] / 100 for row in rows],
        text=[money(row["referred_revenue_cents"], data.currency) for row in rows], textposition="auto",
        customdata=[[count(row["referred_clicks"]), count(row["referred_purchases"]),
                     count(row["referred_customers"])] for row in rows],
        hovertemplate="%{y}<br>%{text}<br>clicks %{customdata[0]}, purchases %{customdata[1]}, "
                      "customers %{customdata[2]}<extra></extra>"))
    return Section("leaderboard", title,
                   f"The {count(len(rows))} sharers whose shares brought the most revenue, from referral_leaderboard "
                   "(lifetime credits; hover for referred clicks, purchases and customers).",
                   _layout(figure, xaxis_title=f"referred revenue ({data.currency})",
                           height=max(300, 28 * len(rows) + 90), yaxis={"type": "category"}))


def referral_network(data: ReportData) -> Section:
    title = "Who referred whom"
    if not data.referrals:
        return Section("referrals", title, "No referral credits yet.", None)
    sharers = list(dict.fromkeys(row["sharer_customer_id"] for row in data.referrals))
    referred = list(dict.fromkeys(row["referred_customer_id"] for row in data.referrals))
    # Sharers on the left, referred customers on the right: one node per side even for a
    # customer on both, so that the flows never loop back.
    figure = go.Figure(go.Sankey(
        arrangement="snap",
        node={"label": sharers + referred, "pad": 6, "thickness": 12,
              "color": ["#636efa"] * len(sharers) + ["#00cc96"] * len(referred)},
        link={"source": [sharers.index(row["sharer_customer_id"]) for row in data.referrals],
              "target": [len(sharers) + referred.index(row["referred_customer_id"]) for row in data.referrals],
              "value": [row["credits"] for row in data.referrals],
              "customdata": [money(row["revenue_cents"], data.currency) for row in data.referrals],
              "hovertemplate": "%{source.label} → %{target.label}<br>%{value} credited touches, "
                               "%{customdata}<extra></extra>"}))
    return Section("referrals", title,
                   f"Credited touches from the leaderboard's sharers (left) to the customers who clicked or bought "
                   f"through their shares (right), from referral_credits: {count(len(data.referrals))} pairs, "
                   f"{count(len(sharers))} sharers, {count(len(referred))} referred customers.",
                   _layout(figure, height=max(420, 14 * max(len(sharers), len(referred)))))


def click_to_purchase(data: ReportData) -> Section:
    title = "Click-to-purchase funnel"
    clicked = sum(row["clicked_customers"] for row in data.funnel)
    if not clicked:
        return Section("funnel", title, "No clicks yet.", None)
    converted = sum(row["clicked_and_purchased_customers"] for row in data.funnel)
    figure = go.Figure(go.Funnel(y=["clicked", "clicked and purchased"], x=[clicked, converted],
                                 textinfo="value+percent initial"))
    return Section("funnel", title,
                   f"Customer-days with a click, and those with a purchase on the same UTC day, summed over "
                   f"{count(len(data.funnel))} days of click_to_purchase_funnel: {converted / clicked:.1%} converted.",
                   _layout(figure, height=300))


def support_kpis(data: ReportData) -> Section:
    title = "Support"
    kpis = data.support
    if not kpis or not (kpis["open_tickets"] or kpis["tickets_resolved"] or kpis["tickets_with_reply"]):
        return Section("support", title, "No support tickets yet.", None)
    figure = go.Figure(go.Bar(
        x=["open", "resolved", "with a reply"],
        y=[kpis["open_tickets"], kpis["tickets_resolved"], kpis["tickets_with_reply"]],
        text=[count(kpis["open_tickets"]), count(kpis["tickets_resolved"]), count(kpis["tickets_with_reply"])],
        textposition="auto", marker_color=["#ef553b", "#00cc96", "#636efa"]))
    reply, resolution, satisfaction = (kpis["avg_first_reply_seconds"], kpis["avg_resolution_seconds"],
                                       kpis["avg_satisfaction"])
    return Section("support", title,
                   f"Tickets by state, from support_kpis. Average first reply "
                   f"{'-' if reply is None else duration(reply)}, average resolution "
                   f"{'-' if resolution is None else duration(resolution)}, satisfaction "
                   f"{'-' if satisfaction is None else f'{satisfaction:.2f}'} of 5 "
                   f"({count(kpis['satisfaction_responses'], 'ratings')}); "
                   f"{count(kpis['customers_with_open_tickets'], 'customers')} wait on an open ticket.",
                   _layout(figure, yaxis_title="tickets", height=320))


def sections(data: ReportData) -> list[Section]:
    return [daily_activity(data), referral_leaderboard(data), referral_network(data), click_to_purchase(data),
            support_kpis(data)]


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta, footer { color: #666; font-size: 0.9rem; }
section { margin: 2rem 0; } .empty { color: #999; font-style: italic; }
footer { border-top: 1px solid #ddd; margin-top: 3rem; padding-top: 1rem; }
"""


def _section_html(section: Section) -> str:
    body = (f'<p class="empty">{html.escape(section.explanation)}</p>' if section.figure is None else
            f"<p>{html.escape(section.explanation)}</p>"
            + pio.to_html(section.figure, include_plotlyjs=False, full_html=False, div_id=f"chart-{section.name}",
                          config={"displaylogo": False, "responsive": True}))
    return f'<section id="{section.name}"><h2>{html.escape(section.title)}</h2>{body}</section>'


def render(data: ReportData) -> str:
    """The whole page: plotly.js inline (no network needed to open it), one section per chart."""
    generated = data.generated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Customer interactions: {html.escape(data.database)}</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        "<h1>Customer interactions</h1>",
        f'<p class="meta">ClickHouse database <code>{html.escape(data.database)}</code>, read through its analyst '
        f"views at {generated}. Days are UTC days; amounts in {html.escape(data.currency)}.</p>",
        *(_section_html(section) for section in sections(data)),
        f"<footer>{html.escape(PRIVACY_NOTE)} Written by <code>streams report</code>.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts)
