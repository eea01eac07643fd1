"""The shipped observability files, read for tests: dashboards, Grafana provisioning, alert
rules and the worker's metric names; and Grafana's variable and the ClickHouse plugin's macro
expansion, so that tests can run every dashboard query against real servers.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "grafana" / "build_dashboards.py"
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING_DIR = ROOT / "deploy" / "grafana" / "provisioning"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

#: What Grafana puts in for its built-in interval variables when the tests run a query.
PROMETHEUS_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str
    panel: str
    panel_type: str
    ref_id: str
    datasource: Mapping[str, str]
    query: str  # PromQL for Prometheus targets, SQL (with macros) for ClickHouse ones
    time_series: bool  # ClickHouse: format 0, the first column is the time

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def load_generator() -> ModuleType:
    """deploy/grafana/build_dashboards.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("build_dashboards", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> parsed JSON of every committed dashboard."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(boards: Mapping[str, Mapping[str, Any]], datasource_uid: str | None = None) -> list[Target]:
    """Every target of every panel, optionally only those of one data source."""
    found = []
    for board in boards.values():
        for panel in panels(board):
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                if datasource_uid is not None and source.get("uid") != datasource_uid:
                    continue
                found.append(Target(board["title"], panel["title"], panel["type"], target.get("refId", ""),
                                    source, target.get("expr") or target.get("rawSql") or "",
                                    target.get("format") == 0))
    return found


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """uid -> data source entry of the provisioning files."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((PROVISIONING_DIR / "datasources").glob("*.yml")):
        for entry in yaml.safe_load(path.read_text()).get("datasources", []):
            found[entry["uid"]] = entry
    return found


def rules() -> list[dict[str, Any]]:
    """Every recording and alert rule of deploy/prometheus/rules/*.yml."""
    found = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


# --- expansion -------------------------------------------------------------------------------


def expand_promql(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with Grafana's ``$name`` / ``${name}`` replaced; builtins have defaults.

    Raises ValueError when a variable is left over: a query the test cannot run as Grafana would.
    """
    values = {**PROMETHEUS_BUILTINS, **variables}
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $__range
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    if "$" in expr:
        raise ValueError(f"unexpanded variable in {expr!r}")
    return expr


def _unix(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d")


def expand_clickhouse(sql: str, start: dt.datetime, end: dt.datetime) -> str:
    """``sql`` with the grafana-clickhouse-datasource macros expanded as the plugin does
    (its pkg/macros): ``$__timeFilter(c)``, ``$__dateFilter(c)``, ``$__fromTime``, ``$__toTime``.

    Other macros (``$__timeInterval`` needs toStartOfInterval, missing on 18.16) and dashboard
    variables raise ValueError: the dashboards must not use them.
    """
    sql = re.sub(r"\$__timeFilter\(\s*([\w.]+)\s*\)",
                 lambda m: f"{m[1]} >= toDateTime({_unix(start)}) AND {m[1]} <= toDateTime({_unix(end)})", sql)
    sql = re.sub(r"\$__dateFilter\(\s*([\w.]+)\s*\)",
                 lambda m: f"{m[1]} >= toDate('{_date(start)}') AND {m[1]} <= toDate('{_date(end)}')", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({_unix(start)})").replace("$__toTime", f"toDateTime({_unix(end)})")
    if "$" in sql:
        raise ValueError(f"unsupported macro or variable in {sql!r}")
    return sql


# --- metric names ----------------------------------------------------------------------------

_METRIC = re.compile(r"\b(?:streams_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?![:(])")


def referenced_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (recording rules, named with ':', excluded)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    return set(_METRIC.findall(without_strings))


def exported_metrics() -> dict[str, set[str]]:
    """Metric family of the worker's (streams/runtime/metrics.py) and the eraser's
    (streams/runtime/eraser.py) -> the sample names exported for it."""
    from prometheus_client import CollectorRegistry

    from streams.runtime.eraser import EraserMetrics
    from streams.runtime.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    EraserMetrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {family.name: {family.name + s for s in suffixes.get(family.type, ("",))}
            for family in registry.collect()}
