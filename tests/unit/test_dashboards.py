"""The Grafana dashboards and their provisioning, without Grafana: the committed JSON is what
deploy/grafana/build_dashboards.py builds, it has the structure Grafana needs, every data source
it names is provisioned, every PromQL query parses (promtool) and reads metrics the worker
exports, and every ClickHouse query runs on a modern server (chdb, after the modern migrations)
holding rows of a simulated run. The same queries run on the real 18.16 server and Prometheus
in tests/integration/test_observability.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.clickhouse.migrate import apply_migrations
from streams.settings import load_settings
from streams.tools.simulate import DEFAULT_START_MS, SimulationConfig
from tests.support.inmemory import write_simulated_rows
from tests.support.observability import (
    DASHBOARDS_DIR,
    PROVISIONING_DIR,
    ROOT,
    Target,
    dashboards,
    expand_clickhouse,
    expand_promql,
    exported_metrics,
    load_generator,
    panels,
    provisioned_datasources,
    referenced_metrics,
    targets,
)

BOARDS = dashboards()
PROMQL = targets(BOARDS, "prometheus")
SQL = targets(BOARDS, "clickhouse")
#: Any value will do for a syntax check; the integration test uses the real worker's.
VARIABLES = {"instance": "127.0.0.1:19101"}


# --- generated, committed, complete ----------------------------------------------------------


def test_committed_json_is_what_the_generator_builds() -> None:
    built = load_generator().render()
    committed = {path.name: path.read_text() for path in DASHBOARDS_DIR.glob("*.json")}
    assert set(committed) == set(built), "a dashboard file is missing or not generated"
    for name, text in built.items():
        assert committed[name] == text, f"{name} is stale: run .venv/bin/python deploy/grafana/build_dashboards.py"


def test_the_two_dashboards_exist() -> None:
    assert {b["title"] for b in BOARDS.values()} >= {"Pipeline health", "Customer interactions"}
    assert len({b["uid"] for b in BOARDS.values()}) == len(BOARDS)


# --- structure Grafana needs -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_structure(name: str) -> None:
    board = BOARDS[name]
    assert isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] >= 36
    assert board.get("uid") and board.get("title") and board.get("panels")
    ids = [panel.get("id") for panel in panels(board)]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        assert panel.get("type") and panel.get("title"), panel
        pos = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= pos.keys() and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("datasource", {}).get("uid"), f"{panel['title']}: datasource by uid"
        refs = [t.get("refId") for t in panel.get("targets", [])]
        assert refs and all(refs) and len(refs) == len(set(refs)), f"{panel['title']}: refIds {refs}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(BOARDS[name]):
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_datasource_is_provisioned_with_the_same_type() -> None:
    provisioned = provisioned_datasources()
    for target in targets(BOARDS):
        uid = target.datasource.get("uid")
        assert uid in provisioned, f"{target.name}: data source {uid!r} is not provisioned"
        assert target.datasource.get("type") == provisioned[uid]["type"], target.name
    for board in BOARDS.values():
        for variable in board.get("templating", {}).get("list", []):
            if "datasource" in variable:
                assert variable["datasource"]["uid"] in provisioned


def test_clickhouse_targets_are_raw_sql_of_a_known_format() -> None:
    assert SQL, "no ClickHouse panels"
    for board in BOARDS.values():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == "clickhouse":
                    assert target["editorType"] == "sql" and target["rawSql"], panel["title"]
                    assert (target["queryType"], target["format"]) in {("table", 1), ("timeSeries", 0)}


# --- provisioning ----------------------------------------------------------------------------


def test_datasources_provisioning() -> None:
    sources = provisioned_datasources()
    assert set(sources) == {"prometheus", "clickhouse"}
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    clickhouse = sources["clickhouse"]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    assert {k: clickhouse["jsonData"][k] for k in ("host", "port", "protocol", "username")} == {
        "host": "clickhouse", "port": 9000, "protocol": "native", "username": "analyst"}
    # Grafana's own env interpolation; the secret never sits in the repository.
    assert clickhouse["secureJsonData"]["password"] == "$CLICKHOUSE_ANALYST_PASSWORD"


def test_dashboard_provider_reads_where_compose_mounts_the_json() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(str(v).split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [p for f in sorted((PROVISIONING_DIR / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert [p["options"]["path"] for p in providers] == [mounts["./deploy/grafana/dashboards"]]
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"


def test_no_placeholders_left() -> None:
    assert not list((ROOT / "deploy" / "grafana").rglob(".gitkeep"))


# --- PromQL ----------------------------------------------------------------------------------


def test_health_dashboard_shows_every_worker_metric() -> None:
    shown = set().union(*(referenced_metrics(t.query) for t in PROMQL))
    for family, names in exported_metrics().items():
        if family.startswith("process_") and family not in {"process_resident_memory_bytes",
                                                             "process_cpu_seconds"}:
            continue  # virtual memory, fds, start time: on /metrics, not worth a panel
        assert shown & names, f"no panel shows {family}"


def test_promql_reads_only_exported_metrics() -> None:
    exported = set().union(*exported_metrics().values()) | {"up"}
    for target in PROMQL:
        unknown = referenced_metrics(target.query) - exported
        assert not unknown, f"{target.name} reads {sorted(unknown)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promql_parses(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule: a syntax check without a server."""
    rule_list = [{"record": f"dashboard:check_{i}:expr", "expr": expand_promql(t.query, VARIABLES)}
                 for i, t in enumerate(PROMQL)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rule_list}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- ClickHouse queries on a modern server (chdb) --------------------------------------------

START = dt.datetime.fromtimestamp(DEFAULT_START_MS / 1000, dt.UTC)
#: The simulated run's events fall within a day of START; some shares are days older.
RANGE = (START - dt.timedelta(days=15), START + dt.timedelta(days=2))


@pytest.fixture(scope="module")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A chdb database migrated with the modern variants and holding a simulated run's rows."""
    chdb_session = pytest.importorskip("chdb.session")
    from tests.support.chdb import ChdbClient

    session = chdb_session.Session(str(tmp_path_factory.mktemp("chdb_dashboards")))
    session.query("SET output_format_json_quote_64bit_integers = 0")
    try:
        client = ChdbClient(session, "interactions")
        apply_migrations(client, echo=lambda _: None)
        write_simulated_rows(client, load_settings({}), SimulationConfig(seed=3, customers=80, events=1_500))
        yield client
    finally:
        session.close()


@pytest.mark.parametrize("target", SQL, ids=lambda t: t.name)
def test_clickhouse_query_returns_rows_on_a_modern_server(chdb_client: Any, target: Target) -> None:
    names, rows = chdb_client.select(expand_clickhouse(target.query, *RANGE))
    assert rows, f"{target.name}: no rows"
    if target.time_series:
        assert names[0] == "time", f"{target.name}: a time series starts with its time column"


def test_clickhouse_macros_expand_like_the_plugin() -> None:
    start = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    assert expand_clickhouse("WHERE $__timeFilter(t) AND $__dateFilter(d)", start, end) == (
        "WHERE t >= toDateTime(1793534400) AND t <= toDateTime(1793620800)"
        " AND d >= toDate('2026-11-01') AND d <= toDate('2026-11-02')")
    with pytest.raises(ValueError):
        expand_clickhouse("SELECT $__timeInterval(t)", start, end)
