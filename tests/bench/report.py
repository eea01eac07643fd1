"""The bench's figures: names and units, medians over runs, the printed table, the JSON file,
and a description of the machine and code they were measured on."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from streams.clickhouse.client import connect
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    unit: str
    digits: int = 0


FIGURES: tuple[Figure, ...] = (
    Figure("pipeline_events_s", "pipeline, launch -> exact", "events/s"),
    Figure("steady_events_s", "pipeline, first row -> exact", "events/s"),
    Figure("startup_s", "launch -> first row landed", "s", 1),
    Figure("wall_s", "launch -> exact", "s", 1),
    Figure("cpu_us_per_event", "worker CPU per input record (start-up included)", "us", 1),
    Figure("startup_cpu_s", "worker CPU until the first row landed", "s", 2),
    Figure("peak_rss_mb", "worker peak RSS (VmHWM)", "MB"),
    Figure("inexact_records_s", "NOT A RESULT: inexact run, records / s until rows settled", "records/s"),
    Figure("consume_msgs_s", "ceiling: aiokafka raw consume", "msgs/s"),
    Figure("decode_events_s", "ceiling: Codec.decode", "events/s"),
    Figure("insert_rows_s", "ceiling: ClickHouse insert, 20k/batch", "rows/s"),
    Figure("pipeline_to_consume", "pipeline / consume ceiling", "ratio", 3),
    Figure("pipeline_to_decode", "pipeline / decode ceiling", "ratio", 3),
    Figure("pipeline_to_insert", "pipeline / insert ceiling", "ratio", 3),
    Figure("steady_to_consume", "steady / consume ceiling", "ratio", 3),
    Figure("peer_events_s", "Quix Streams peer, launch -> all read and committed", "events/s"),
    Figure("peer_cpu_us_per_event", "peer CPU per input record (start-up included)", "us", 1),
    Figure("peer_peak_rss_mb", "peer peak RSS (VmHWM)", "MB"),
    Figure("pipeline_to_peer", "pipeline / Quix Streams peer", "ratio", 2),
    Figure("freshness_target_rate", "freshness: target publish rate", "events/s"),
    Figure("freshness_rate", "freshness: achieved publish rate", "events/s"),
    Figure("freshness_p50_ms", "freshness: publish -> visible p50", "ms"),
    Figure("freshness_p99_ms", "freshness: publish -> visible p99", "ms"),
    Figure("freshness_max_ms", "freshness: publish -> visible max", "ms"),
    Figure("freshness_p50_first_third_ms", "freshness: p50 of the events sent in the first third", "ms"),
    Figure("freshness_p50_last_third_ms", "freshness: p50 of the events sent in the last third (larger: "
           "the worker fell behind)", "ms"),
    Figure("freshness_missing", "freshness: events never seen", "events"),
    Figure("freshness_worker_cores", "freshness: worker CPU, cores used", "cores", 2),
    Figure("freshness_cpu_us_per_event", "freshness: worker CPU per event", "us"),
)


def add_ratios(figures: dict[str, float]) -> None:
    """Pipeline rates over each ceiling and over the Quix Streams peer's rate, per run (their
    median is what the table shows)."""
    for rate, prefix in (("pipeline_events_s", "pipeline"), ("steady_events_s", "steady")):
        for ceiling, name in (("consume_msgs_s", "consume"), ("decode_events_s", "decode"),
                              ("insert_rows_s", "insert")):
            if rate in figures and figures.get(ceiling):
                figures[f"{prefix}_to_{name}"] = figures[rate] / figures[ceiling]
    if "pipeline_events_s" in figures and figures.get("peer_events_s"):
        figures["pipeline_to_peer"] = figures["pipeline_events_s"] / figures["peer_events_s"]


def medians(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = {key for run in runs for key in run}
    return {key: statistics.median(run[key] for run in runs if key in run) for key in sorted(keys)}


def table(runs: Sequence[Mapping[str, float]], median: Mapping[str, float]) -> str:
    """Markdown table: one row per figure, the median first, then each run."""
    head = ["figure", "unit", "median", *(f"run {i}" for i in range(1, len(runs) + 1))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for figure in FIGURES:
        if figure.key not in median:
            continue
        cells = [_fmt(median.get(figure.key), figure.digits)] + [_fmt(r.get(figure.key), figure.digits) for r in runs]
        lines.append(f"| {figure.label} | {figure.unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")


def machine(settings: Settings) -> dict[str, Any]:
    """Cores, memory, versions of what was measured, and the commit (with local changes noted)."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_mem_total_kib() / 2**20, 1),
        "python": platform.python_version(),
        "faust_streaming": version("faust-streaming"),
        "kafka_api": ".".join(map(str, _kafka_api_version(settings))),
        "clickhouse": _clickhouse_version(settings),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # The worker runs from this work tree: name what differs from the commit.
        "uncommitted_in_streams": _git("status", "--porcelain", "--", "streams", "pyproject.toml").splitlines(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _kafka_api_version(settings: Settings) -> tuple[int, ...]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        return tuple(admin._client.check_version())  # the broker's API level, e.g. (4, 1)
    finally:
        admin.close()


def _clickhouse_version(settings: Settings) -> str:
    client = connect(settings, admin=True)  # the admin's database exists before any migration
    try:
        return str(client.execute("SELECT version()")[0][0])
    finally:
        client.disconnect()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()
