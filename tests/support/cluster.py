"""The cluster profile of the local stack (``deploy/local/stack ... --cluster``) for tests: a
fixture that starts it unless it is up (and then stops it), its settings, SIGKILL and
restart of one of its services, and checks of where rows live on its shards and replicas."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.tables import TABLES
from streams.settings import Settings
from tests.conftest import REPO, STACK, local_environ

#: clickhouse-1..4 listen on consecutive ports; shard 01 is nodes 1 and 2, shard 02 nodes 3 and 4.
NODES = (1, 2, 3, 4)
SHARDS = ((1, 2), (3, 4))


def cluster_stack_command(*args: str) -> list[str]:
    return [str(STACK), *args, "--cluster"]


@pytest.fixture(scope="module")
def cluster_stack() -> Iterator[None]:
    """Start the cluster profile unless it is up; stop it after the module only if started here
    (module scope: its eight processes do not stay up for the rest of a test session)."""
    already_up = subprocess.run(cluster_stack_command("status"), capture_output=True).returncode == 0
    if not already_up:
        subprocess.run(cluster_stack_command("up"), check=True)
    yield
    if not already_up:
        subprocess.run(cluster_stack_command("down"), check=True)


@pytest.fixture()
def whole_cluster(cluster_stack: None) -> None:
    """Every service of the profile running before a test: a test that killed one and failed
    before restarting it does not fail the next ones too."""
    subprocess.run(cluster_stack_command("up"), check=True)


def cluster_environ() -> dict[str, str]:
    """The environment with the cluster profile's settings (``stack env --cluster``) on top."""
    env = local_environ()
    exports = subprocess.run(cluster_stack_command("env"), capture_output=True, text=True, check=True).stdout
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


def _pid(service: str) -> int:
    state = Path(os.environ.get("STREAMS_LOCAL_CLUSTER_STATE_DIR", REPO / ".state-cluster"))
    return int((state / "run" / f"{service}.pid").read_text())


def sigkill(service: str) -> None:
    """SIGKILL a cluster service (``kafka-2``, ``clickhouse-3``...) and wait until it is gone."""
    pid = _pid(service)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{service} (pid {pid}) survived SIGKILL")


def restart(service: str) -> None:
    """Start a killed service again. The stack is the test's tooling, not what it tests: a start
    that fails is tried once more, after printing the stack's own account of why (its log's
    tail), which the failure shows too when the second attempt fails as well."""
    accounts = []
    for _ in range(2):
        started = subprocess.run(cluster_stack_command("up", service), capture_output=True, text=True)
        if started.returncode == 0:
            return
        accounts.append(f"{started.stdout}{started.stderr[-8000:]}")
        print(f"{service} did not come back:\n{accounts[-1]}")
    raise AssertionError(f"{service} did not come back, twice:\n" + "\n".join(accounts))


def node_client(settings: Settings, node: int) -> Client:
    """The admin on one ClickHouse node, in the pipeline's database."""
    return connect(dataclasses.replace(settings, clickhouse_port=settings.clickhouse_port + node - 1,
                                       clickhouse_timeout_s=120.0), admin=True,
                   database=settings.clickhouse_database)


def misplaced_rows(settings: Settings) -> dict[str, int]:
    """node.table -> rows on a shard their sharding columns do not hash to (none when correct)."""
    found = {}
    for shard, nodes in enumerate(SHARDS):
        for node in nodes:
            client = node_client(settings, node)
            for table in TABLES.values():
                [(count,)] = client.execute(f"SELECT count() FROM {table.name}_local "
                                            f"WHERE cityHash64({', '.join(table.shard_by)}) % 2 != {shard}")
                if count:
                    found[f"clickhouse-{node}.{table.name}"] = count
            client.disconnect()
    return found


def replica_differences(settings: Settings, timeout_s: float = 60) -> list[str]:
    """Tables whose two replicas of a shard still differ after ``timeout_s`` (``[]`` when equal).
    A restarted replica reads the replication log from ZooKeeper in the background, so SYNC
    REPLICA can return before it has queued every part it misses: replicas converge, not at once."""
    deadline = time.monotonic() + timeout_s
    while (differences := replica_differences_now(settings)) and time.monotonic() < deadline:
        time.sleep(1)
    return differences


def replica_differences_now(settings: Settings) -> list[str]:
    differences = []
    for nodes in SHARDS:
        clients = [node_client(settings, node) for node in nodes]
        for table in TABLES.values():
            summary = f"count(), sum(cityHash64({', '.join(table.key)}{', ' + table.version if table.version else ''}))"
            seen = []
            for client in clients:
                client.execute(f"SYSTEM SYNC REPLICA {table.name}_local")
                seen.append(client.execute(f"SELECT {summary} FROM {table.name}_local FINAL")[0])
            if seen[0] != seen[1]:
                differences.append(f"{table.name} on clickhouse-{nodes[0]} / -{nodes[1]}: {seen[0]} != {seen[1]}")
        for client in clients:
            client.disconnect()
    return differences


def applied_on_each_node(settings: Settings) -> dict[int, list[tuple[str, str]]]:
    """node -> (migration, checksum) rows of its schema_migrations."""
    applied = {}
    for node in NODES:
        client = node_client(settings, node)
        applied[node] = client.execute("SELECT name, checksum FROM schema_migrations ORDER BY name")
        client.disconnect()
    return applied
