"""Builds the Grafana dashboards from code: deploy/grafana/dashboards/*.json are its output.

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if they are stale

Typed panels come from Grafana's grafana-foundation-sdk (the ``test`` extra). It has no
ClickHouse query type, so :class:`ClickHouseQuery` writes the plugin's (raw SQL) target.
tests/unit/test_dashboards.py fails when the committed JSON differs from what this builds.

Prometheus panels read the raw metrics of streams/runtime/metrics.py (not recording rules), so they
work against any Prometheus that scrapes the workers. ClickHouse panels read the analyst
views (docs/data-dictionary.md) with SQL that runs on ClickHouse 18.16 and modern servers
alike, and only the plugin macros ``$__timeFilter`` and ``$__dateFilter``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import barchart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

#: Data source uids, as provisioned in provisioning/datasources/datasources.yml.
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
CLICKHOUSE = model.DataSourceRef(type_val="grafana-clickhouse-datasource", uid="clickhouse")

#: The workers the dashboard's $instance variable selects.
WORKERS = 'job="streams-worker", instance=~"$instance"'
#: Changelog topics are assigned to the consumer but never committed: their "lag" is their
#: length. Lag panels show source topics only.
SOURCES = WORKERS + ', topic!~".*-changelog"'
RATE = "[$__rate_interval]"
ERASER = 'job="streams-eraser"'

AnyPanel = cogbuilder.Builder[model.Panel]


# --- ClickHouse targets ----------------------------------------------------------------------


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL target of the grafana-clickhouse-datasource plugin."""

    def __init__(self, ref_id: str, sql: str, fmt: Literal["table", "time_series"]) -> None:
        self.ref_id = ref_id
        self.sql = sql
        self.fmt = fmt

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            # queryType drives the plugin's editor, format (sqlutil: 0 series, 1 table) the backend.
            "queryType": "timeSeries" if self.fmt == "time_series" else "table",
            "format": 0 if self.fmt == "time_series" else 1,
            "rawSql": self.sql.strip(),
        }


class ClickHouseTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, fmt: Literal["table", "time_series"] = "table", ref_id: str = "A") -> None:
        self._query = ClickHouseQuery(ref_id, sql, fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def prom(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(PROMETHEUS)


# --- layout ----------------------------------------------------------------------------------


class Board:
    """A dashboard under construction: rows of panels, each given the next free id."""

    def __init__(self, builder: dash.Dashboard) -> None:
        self.builder = builder
        self._ids: Iterator[int] = itertools.count(1)

    def row(self, title: str) -> None:
        self.builder.with_row(dash.Row(title).id(next(self._ids)))

    def add(self, panel: AnyPanel) -> None:
        # Every panel builder of the SDK has id(); the base Builder type does not say so.
        self.builder.with_panel(panel.id(next(self._ids)))  # type: ignore[attr-defined]

    def json(self) -> str:
        return json.dumps(self.builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def series(title: str, description: str, unit: str, *targets: cogbuilder.Builder[cogvariants.Dataquery],
           width: int = 12, datasource: model.DataSourceRef = PROMETHEUS,
           bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(datasource)
             .height(8).span(width).fill_opacity(10).line_width(1)
             .legend(options.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(options.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    return panel.targets(list(targets))


def single(title: str, description: str, unit: str, target: cogbuilder.Builder[cogvariants.Dataquery],
           datasource: model.DataSourceRef = PROMETHEUS, width: int = 4, decimals: int | None = None) -> stat.Panel:
    panel = (stat.Panel().title(title).description(description).unit(unit).datasource(datasource)
             .height(4).span(width).graph_mode(common.BigValueGraphMode.AREA)
             .color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .with_target(target))
    return panel.decimals(decimals) if decimals is not None else panel


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=color) for value, color in steps]))


def grid(title: str, description: str, sql: str, width: int = 12, height: int = 8) -> table.Panel:
    return (table.Panel().title(title).description(description).datasource(CLICKHOUSE)
            .height(height).span(width).with_target(ClickHouseTarget(sql)))


# --- Pipeline health (Prometheus) ------------------------------------------------------------


def pipeline_health() -> Board:
    instance = (dash.QueryVariable("instance").label("Worker").datasource(PROMETHEUS)
                .query('label_values(up{job="streams-worker"}, instance)')
                .multi(True).include_all(True).all_value(".*")
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))
    board = Board(dash.Dashboard("Pipeline health").uid("streams-pipeline-health")
                  .description("Streams workers: throughput, lag, freshness, input quality, "
                               "ClickHouse sink, state and process. Metrics: docs/operations.md.")
                  .tags(["streams"]).timezone("utc").time("now-1h", "now").refresh("30s")
                  .tooltip(model.DashboardCursorSync.CROSSHAIR).editable().with_variable(instance))
    overview(board)
    throughput(board)
    lag_and_freshness(board)
    input_quality(board)
    sink(board)
    state_and_process(board)
    return board


def overview(board: Board) -> None:
    board.row("Overview")
    board.add(single("Workers up", "Scrape targets of job streams-worker that answer.", "short",
                     prom('sum(up{job="streams-worker"})'))
              .thresholds(thresholds((None, "red"), (1, "green"))))
    board.add(single("Consumed", "Input records read per second, all topics.", "ops",
                     prom(f"sum(rate(streams_events_consumed_total{{{WORKERS}}}{RATE}))")))
    board.add(single("Consumer lag", "Records between committed offsets and log ends, source topics.",
                     "short", prom(f"sum(max by (topic, partition) (streams_consumer_lag_records{{{SOURCES}}}))"))
              .thresholds(thresholds((None, "green"), (1000, "orange"), (100000, "red"))))
    board.add(single("Freshness p99", "Ingest (Kafka timestamp) to rows in ClickHouse; alert above 60 s.", "s",
                     prom("histogram_quantile(0.99, sum by (le) "
                          f"(rate(streams_event_freshness_seconds_bucket{{{WORKERS}}}{RATE})))"))
              .thresholds(thresholds((None, "green"), (60, "red"))))
    board.add(single("Dead letters", "Share of consumed records sent to the dead-letter topic; alert above 1%.",
                     "percentunit",
                     prom(f"sum(rate(streams_dead_letters_total{{{WORKERS}}}{RATE})) / "
                          f"sum(rate(streams_events_consumed_total{{{WORKERS}}}{RATE}))"), decimals=2)
              .thresholds(thresholds((None, "green"), (0.01, "red"))))
    board.add(single("Sink failures", "Failed ClickHouse insert attempts per second (each is retried).", "ops",
                     prom(f"sum(rate(streams_sink_failures_total{{{WORKERS}}}{RATE})) or vector(0)"))
              .thresholds(thresholds((None, "green"), (0.0001, "red"))))


def throughput(board: Board) -> None:
    board.row("Throughput")
    board.add(series("Consumed by topic", "Input records read per second (dead letters included).", "ops",
                     prom(f"sum by (topic) (rate(streams_events_consumed_total{{{WORKERS}}}{RATE}))", "{{topic}}")))
    board.add(series("Processed by topic",
                     "Events applied to profiles per second (after dedup and replay checks).", "ops",
                     prom(f"sum by (topic) (rate(streams_events_processed_total{{{WORKERS}}}{RATE}))", "{{topic}}")))


def lag_and_freshness(board: Board) -> None:
    board.row("Lag and freshness")
    board.add(series("Consumer lag per partition",
                     "Records not yet committed, per source partition (max over workers).", "short",
                     prom(f"max by (topic, partition) (streams_consumer_lag_records{{{SOURCES}}})",
                          "{{topic}}[{{partition}}]")))
    board.add(series("Time since last batch", "Seconds since each worker last processed a batch.", "s",
                     prom(f"time() - streams_last_processed_timestamp_seconds{{{WORKERS}}}", "{{instance}}")))
    board.add(series("Time without progress", "Seconds each worker has had records waiting without "
                     "committing, restoring or retrying anything; at STREAMS_STALL_TIMEOUT_S it exits to be "
                     "restarted.", "s", prom(f"streams_stalled_seconds{{{WORKERS}}}", "{{instance}}")))
    board.add(series("Freshness p50 / p99", "Ingest (Kafka timestamp) to rows in ClickHouse.", "s",
                     prom("histogram_quantile(0.5, sum by (le) "
                          f"(rate(streams_event_freshness_seconds_bucket{{{WORKERS}}}{RATE})))", "p50"),
                     prom("histogram_quantile(0.99, sum by (le) "
                          f"(rate(streams_event_freshness_seconds_bucket{{{WORKERS}}}{RATE})))", "p99", "B")))
    board.add(series("Batch fold time p99", "Time to fold one batch, per stage.", "s",
                     prom("histogram_quantile(0.99, sum by (stage, le) "
                          f"(rate(streams_batch_processing_seconds_bucket{{{WORKERS}}}{RATE})))", "{{stage}}")))


def input_quality(board: Board) -> None:
    board.row("Input quality")
    board.add(series("Dead letters by reason", "Records sent to the dead-letter topic per second.", "ops",
                     prom(f"sum by (reason) (rate(streams_dead_letters_total{{{WORKERS}}}{RATE}))", "{{reason}}"),
                     width=8))
    board.add(series("Late and clamped", "Late events (counted in lifetime values, not in buckets) and "
                     "far-future events clamped to ingest time, per second.", "ops",
                     prom(f"sum by (topic) (rate(streams_late_events_total{{{WORKERS}}}{RATE}))", "late {{topic}}"),
                     prom(f"sum by (topic) (rate(streams_clamped_events_total{{{WORKERS}}}{RATE}))",
                          "clamped {{topic}}", "B"), width=8))
    board.add(series("Duplicates, replays, re-routed, offset gaps", "Producer duplicates dropped, records "
                     "seen again after a restart or rebalance (not re-applied), records re-routed to their key's "
                     "partition (published with a partitioner other than murmur2), and input offsets without "
                     "records (transaction markers; missing: deleted before they were read), per second.", "ops",
                     prom(f"sum by (topic) (rate(streams_duplicate_events_total{{{WORKERS}}}{RATE}))",
                          "duplicate {{topic}}"),
                     prom(f"sum by (topic) (rate(streams_replayed_records_total{{{WORKERS}}}{RATE}))",
                          "replayed {{topic}}", "B"),
                     prom(f"sum by (topic) (rate(streams_rerouted_records_total{{{WORKERS}}}{RATE}))",
                          "re-routed {{topic}}", "C"),
                     prom(f"sum by (outcome) (rate(streams_offset_gaps_total{{{WORKERS}}}{RATE}))",
                          "offsets {{outcome}}", "D"), width=8))


def sink(board: Board) -> None:
    board.row("ClickHouse sink")
    board.add(series("Rows written by table", "Rows inserted into ClickHouse per second.", "rowsps",
                     prom(f"sum by (table) (rate(streams_sink_rows_total{{{WORKERS}}}{RATE}))", "{{table}}"), width=8))
    board.add(series("Inserts by table", "Successful inserts per second.", "ops",
                     prom(f"sum by (table) (rate(streams_sink_batches_total{{{WORKERS}}}{RATE}))", "{{table}}"),
                     width=8))
    board.add(series("Insert latency p99", "Duration of one successful insert, per table.", "s",
                     prom("histogram_quantile(0.99, sum by (table, le) "
                          f"(rate(streams_sink_insert_seconds_bucket{{{WORKERS}}}{RATE})))", "{{table}}"), width=8))
    board.add(series("Retries and failures", "Failed insert attempts by cause (network, overloaded, server, "
                     "unknown: retried; schema, credentials, permissions, rows: the worker stops) and the "
                     "retries after them, per second.", "ops",
                     prom(f"sum by (table, reason) (rate(streams_sink_failures_total{{{WORKERS}}}{RATE}))",
                          "failed {{table}} ({{reason}})"),
                     prom(f"sum by (table) (rate(streams_sink_retries_total{{{WORKERS}}}{RATE}))",
                          "retried {{table}}", "B")))
    board.add(series("Buffered rows", "Rows waiting in the sink buffer (flat and high: ClickHouse not accepting).",
                     "short", prom(f"sum by (instance, stage) (streams_sink_buffered_rows{{{WORKERS}}})",
                                   "{{instance}} {{stage}}")))
    board.add(series("Failed attempts in a row", "Failed attempts of the insert in progress per table; above "
                     "STREAMS_SINK_MAX_RETRIES the worker logs an ERROR and reports its sink unhealthy.", "short",
                     prom(f"max by (table) (streams_sink_failed_attempts_in_a_row{{{WORKERS}}})", "{{table}}")))
    board.add(series("Outage log records", "Records of known outage conditions logged per second (Kafka or "
                     "ClickHouse unreachable, insert retries, Faust consumer checks), before they are folded "
                     "into one line per condition per 10 s.", "ops",
                     prom(f"sum by (condition) (rate(streams_outage_log_records_total{{{WORKERS}}}{RATE}))",
                          "{{condition}}")))


def state_and_process(board: Board) -> None:
    board.row("State and process")
    board.add(series("Profiles held", "Customer profiles in each worker's table.", "short",
                     prom(f"sum by (instance) (streams_profiles{{{WORKERS}}})", "{{instance}}"), width=8))
    board.add(series("Referral share index", "Touches that arrived before their share, waiting (at most "
                     "100,000 per share id), and those dropped past that bound in the interval; shares "
                     "forgotten past their retention (STREAMS_SHARE_RETENTION_MS) in the interval.",
                     "short", prom(f"sum by (instance) (streams_referral_touches_waiting{{{WORKERS}}})",
                                   "{{instance}} waiting"),
                     prom(f"sum by (instance) (increase(streams_referral_touches_dropped_total{{{WORKERS}}}{RATE}))",
                          "{{instance}} dropped", "B"),
                     prom(f"sum by (instance) (increase(streams_referral_shares_retired_total{{{WORKERS}}}{RATE}))",
                          "{{instance}} shares retired", "C"), width=8))
    board.add(series("Referral credits", "Credits emitted by the referral join per second.", "ops",
                     prom(f"sum by (touch_type) (rate(streams_referral_credits_total{{{WORKERS}}}{RATE}))",
                          "{{touch_type}}"), width=8))
    board.add(series("Identities", "Identifies per second by outcome: linked, confirmed, conflict (an anonymous "
                     "id claimed by a second customer; nothing merged); events of identified anonymous ids "
                     "forwarded to their customer (sent, folded, replayed); events past the bound kept before "
                     "an identify (their customer will not count them).", "ops",
                     prom(f"sum by (outcome) (rate(streams_identifies_total{{{WORKERS}}}{RATE}))",
                          "identify {{outcome}}"),
                     prom(f"sum by (outcome) (rate(streams_identity_forwarded_events_total{{{WORKERS}}}{RATE}))",
                          "forwarded {{outcome}}", "B"),
                     prom(f"sum(rate(streams_identity_events_not_kept_total{{{WORKERS}}}{RATE}))",
                          "not kept", "C"),
                     width=8))
    board.add(series("Erasures in the workers", "Erasure requests read per second by outcome (erased, repeated, "
                     "rerouted); records of erased ids dropped instead of re-creating the person (replays, late "
                     "events, credits); share-index entries dropped (shares of erased sharers, waiting touches).",
                     "ops",
                     prom(f"sum by (outcome) (rate(streams_erasure_requests_total{{{WORKERS}}}{RATE}))",
                          "request {{outcome}}"),
                     prom(f"sum by (topic) (rate(streams_erased_records_dropped_total{{{WORKERS}}}{RATE}))",
                          "dropped {{topic}}", "B"),
                     prom(f"sum by (entry) (rate(streams_erasure_index_entries_dropped_total{{{WORKERS}}}{RATE}))",
                          "index {{entry}}", "C"),
                     width=8))
    board.add(series("Backfill", "Backfilled records read per second, and whether each worker holds the backfill "
                     "back because the live records it processes are behind (STREAMS_BACKFILL_LIVE_LAG_S; alert "
                     "StreamsBackfillHeldBack when that lasts).", "short",
                     prom(f"sum by (instance) (rate(streams_events_consumed_total{{{WORKERS}, topic=~\".*backfill\"}}"
                          f"{RATE}))", "{{instance}} read per s"),
                     prom(f"max by (instance) (streams_backfill_held_back{{{WORKERS}}})", "{{instance}} held back", "B"),
                     prom(f"sum by (instance) (increase(streams_backfill_holds_total{{{WORKERS}}}{RATE}))",
                          "{{instance}} holds", "C"),
                     width=8))
    board.add(series("Erasures in ClickHouse (eraser)", "Erased ids whose rows are not verified deleted yet, "
                     "those past the erasure deadline (alert StreamsErasureOverdue), ids verified per second, "
                     "the slowest request to verified (p99), passes throttled by running mutations and failed "
                     "passes.", "short",
                     prom(f"sum(streams_erasure_pending{{{ERASER}}})", "pending"),
                     prom(f"sum(streams_erasure_overdue{{{ERASER}}})", "overdue", "B"),
                     prom(f"sum(rate(streams_erasure_verified_total{{{ERASER}}}{RATE}))", "verified per s", "C"),
                     prom("histogram_quantile(0.99, sum by (le) "
                          f"(rate(streams_erasure_seconds_to_verified_bucket{{{ERASER}}}{RATE})))",
                          "p99 s to verified", "D"),
                     prom(f"sum(increase(streams_eraser_throttled_passes_total{{{ERASER}}}{RATE}))", "throttled", "E"),
                     prom(f"sum(increase(streams_eraser_failed_passes_total{{{ERASER}}}{RATE}))", "failed", "F"),
                     prom(f"time() - max(streams_eraser_last_pass_timestamp_seconds{{{ERASER}}})",
                          "s since last pass", "G"),
                     width=8))
    board.add(series("Rebalances", "Partition assignments received (restarts, scaling, session timeouts).",
                     "short", prom(f"sum by (instance) (increase(streams_rebalances_total{{{WORKERS}}}{RATE}))",
                                   "{{instance}}"), width=8, bars=True))
    board.add(series("Resident memory", "RSS of each worker process.", "bytes",
                     prom(f"process_resident_memory_bytes{{{WORKERS}}}", "{{instance}}"), width=8))
    board.add(series("CPU", "CPU time per second of each worker process (1 = one core).", "percentunit",
                     prom(f"rate(process_cpu_seconds_total{{{WORKERS}}}{RATE})", "{{instance}}"), width=8))
    board.add(series("Garbage-collector pauses", "Slowest pauses of each worker's garbage collector (p99 over "
                     "the interval) and the share of time spent in them, by generation (2: a full collection, "
                     "which walks every object alive). Every thread of the worker waits during a pause.", "s",
                     prom("histogram_quantile(0.99, sum by (instance, generation, le) "
                          f"(rate(streams_gc_pause_seconds_bucket{{{WORKERS}}}{RATE})))",
                          "{{instance}} gen {{generation}} p99"),
                     prom(f"sum by (instance) (rate(streams_gc_pause_seconds_sum{{{WORKERS}}}{RATE}))",
                          "{{instance}} s paused per s", "B"),
                     width=8))


# --- Customer interactions (ClickHouse) ------------------------------------------------------


def customer_interactions() -> Board:
    board = Board(dash.Dashboard("Customer interactions").uid("streams-customer-interactions")
                  .description("What customers do, from the analyst views in ClickHouse "
                               "(docs/data-dictionary.md). Days are UTC days of event time.")
                  .tags(["streams"]).timezone("utc").time("now-30d", "now").refresh("5m").editable())
    totals(board)
    engagement(board)
    referrals_and_support(board)
    ingestion(board)
    return board


def totals(board: Board) -> None:
    board.row("In the selected range")
    board.add(single("Revenue", "Purchase amounts on the selected days (non-late events), in the reporting "
                     "currency (STREAMS_CURRENCY).", "short",
                     ClickHouseTarget("""
SELECT sum(revenue_cents) / 100 AS total_revenue
FROM daily_engagement
WHERE $__dateFilter(day)
"""), CLICKHOUSE, width=6, decimals=2))
    board.add(single("Purchases", "Purchases on the selected days.", "short", ClickHouseTarget("""
SELECT sum(purchases) AS total_purchases
FROM daily_engagement
WHERE $__dateFilter(day)
"""), CLICKHOUSE, width=6))
    board.add(single("Events", "Accepted events on the selected days.", "short", ClickHouseTarget("""
SELECT sum(events) AS total_events
FROM daily_engagement
WHERE $__dateFilter(day)
"""), CLICKHOUSE, width=6))
    board.add(single("Peak daily active customers", "Most customers active on one of the selected days.",
                     "short", ClickHouseTarget("""
SELECT max(active_customers) AS peak_active_customers
FROM daily_engagement
WHERE $__dateFilter(day)
"""), CLICKHOUSE, width=6))


def engagement(board: Board) -> None:
    board.row("Engagement")
    board.add(series("Revenue per day", "Purchase amounts per UTC day of event time, in the reporting "
                     "currency (STREAMS_CURRENCY).", "short",
                     ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, revenue_cents / 100 AS revenue
FROM daily_engagement
WHERE $__dateFilter(day)
ORDER BY day
""", "time_series"), datasource=CLICKHOUSE, bars=True))
    board.add(series("Daily engagement", "Customers active, and customers who purchased, per day.", "short",
                     ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, active_customers, purchasing_customers
FROM daily_engagement
WHERE $__dateFilter(day)
ORDER BY day
""", "time_series"), datasource=CLICKHOUSE))
    board.add(series("Events per day by type", "Accepted, non-late events per day.", "short",
                     ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, clicks, shares, purchases, support_events
FROM daily_engagement
WHERE $__dateFilter(day)
ORDER BY day
""", "time_series"), datasource=CLICKHOUSE, bars=True))
    board.add(series("Click-to-purchase funnel", "Customers who clicked, purchased, and did both on the "
                     "same UTC day.", "short", ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, clicked_customers, purchased_customers, clicked_and_purchased_customers
FROM click_to_purchase_funnel
WHERE $__dateFilter(day)
ORDER BY day
""", "time_series"), ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, conversion
FROM click_to_purchase_funnel
WHERE $__dateFilter(day)
ORDER BY day
""", "time_series", "B"), datasource=CLICKHOUSE)
              .override_by_name("conversion", [model.DynamicConfigValue(id_val="unit", value="percentunit"),
                                               model.DynamicConfigValue(id_val="custom.axisPlacement",
                                                                        value="right")]))
    board.add(series("Events per minute by type", "Live traffic: non-late events per minute of event time.",
                     "short", ClickHouseTarget("""
SELECT minute_start AS time, event_type, sum(events) AS events_per_minute
FROM minute_totals_by_type
WHERE $__timeFilter(minute_start)
GROUP BY minute_start, event_type
ORDER BY minute_start
""", "time_series"), datasource=CLICKHOUSE))
    board.add(barchart.Panel().title("Customer segments").datasource(CLICKHOUSE)
              .description("Customers per segment (customer_360), with their lifetime revenue.")
              .height(8).span(12).x_field("segment").with_target(ClickHouseTarget("""
SELECT segment, count() AS customers, sum(revenue_cents) / 100 AS revenue
FROM customer_360
GROUP BY segment
ORDER BY customers DESC
""")))


def referrals_and_support(board: Board) -> None:
    board.row("Referrals and support")
    board.add(grid("Referral leaderboard", "Sharers whose shares brought the most revenue (lifetime).", """
SELECT
    sharer_customer_id AS sharer,
    referred_customers,
    referred_clicks,
    referred_purchases,
    referred_revenue_cents / 100 AS referred_revenue,
    credited_shares,
    last_credit_at
FROM referral_leaderboard
LIMIT 20
"""))
    board.add(grid("Top customers", "Customers by lifetime revenue, with their segment.", """
SELECT customer_id, segment, purchases, revenue_cents / 100 AS revenue, engagement_score, last_seen_at
FROM customer_360
ORDER BY revenue_cents DESC, customer_id
LIMIT 20
"""))
    board.add(grid("Support KPIs", "Over all customers' current profiles (support_kpis).", """
SELECT
    open_tickets,
    customers_with_open_tickets,
    tickets_resolved,
    avg_first_reply_seconds,
    avg_resolution_seconds,
    avg_satisfaction
FROM support_kpis
""", width=24, height=4))


def ingestion(board: Board) -> None:
    board.row("Ingestion errors")
    board.add(series("Ingestion errors per day", "Dead letters and warnings (late, clamped) per UTC day of "
                     "ingest, by kind and reason.", "short", ClickHouseTarget("""
SELECT toDateTime(day, 'UTC') AS time, concat(kind, ': ', reason) AS kind_reason, errors
FROM ingestion_errors_by_reason
WHERE $__dateFilter(day)
ORDER BY time, kind_reason
""", "time_series"), datasource=CLICKHOUSE, bars=True))
    board.add(grid("Ingestion errors by reason", "Records on the selected days; drill down in "
                   "ingestion_errors (docs/data-dictionary.md).", """
SELECT kind, reason, sum(errors) AS records
FROM ingestion_errors_by_reason
WHERE $__dateFilter(day)
GROUP BY kind, reason
ORDER BY records DESC, kind, reason
"""))


# --- output ----------------------------------------------------------------------------------

DASHBOARDS: dict[str, Callable[[], Board]] = {
    "pipeline-health.json": pipeline_health,
    "customer-interactions.json": customer_interactions,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: build().json() for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
