"""Session fixtures: the real local services (started here when not already up) and settings.

Unit tests (tests/unit) run with the network blocked; integration tests (marked
``integration``) get Kafka, ClickHouse, Prometheus and the Schema Registry from
``deploy/local/stack``. Services
that this session started are stopped at its end; ones already running are left alone.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import PREFIX, Secret, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "deploy" / "local" / "stack"
LOCAL_ENV = REPO / "deploy" / "local" / "local.env"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Testing a build of native/ older than its sources would test old code: stop and say so."""
    spec = importlib.util.spec_from_file_location("native_source_hash", REPO / "native" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    hashing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hashing)
    built = Path(sys.prefix) / hashing.MARKER
    if built.exists() and built.read_text().strip() != hashing.source_hash():
        pytest.exit("native/ changed since streams_native was built into this virtualenv: run `make install`",
                    returncode=4)


def local_environ() -> dict[str, str]:
    """The process environment plus the local stack's development credentials."""
    env = dict(os.environ)
    for line in LOCAL_ENV.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env.setdefault(name, value)
    return env


def settings_environ(settings: Settings) -> dict[str, str]:
    """The environment that makes ``load_settings()`` in a child process return ``settings``:
    every setting, so none that a test changed can be left out."""
    env = local_environ()
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        # A Secret prints as ***: the child needs the value itself, as the operator would set it.
        env[PREFIX + field.name.upper()] = value.reveal() if isinstance(value, Secret) else str(value)
    return env


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """Start the local services unless they are up; stop at the end only what we started."""
    already_up = subprocess.run([str(STACK), "status"], capture_output=True).returncode == 0
    if not already_up:
        subprocess.run([str(STACK), "up"], check=True)
    yield
    if not already_up:
        subprocess.run([str(STACK), "down"], check=True)


@pytest.fixture(scope="session")
def base_settings(stack: None) -> Settings:
    return load_settings(local_environ())


@pytest.fixture(scope="session")
def schema_registry_url(stack: None) -> str:
    """The local stack's Schema Registry (Apicurio), as ``deploy/local/stack env`` names it."""
    exports = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=True).stdout
    prefix = "export STREAMS_SCHEMA_REGISTRY_URL="
    return next(line.removeprefix(prefix) for line in exports.splitlines() if line.startswith(prefix))


@pytest.fixture(scope="session")
def kafka_bootstrap(base_settings: Settings) -> str:
    return base_settings.kafka_bootstrap_servers


@pytest.fixture()
def settings(base_settings: Settings) -> Settings:
    """Settings with a test-unique topic prefix, consumer group and database."""
    name = unique("t")
    return load_settings(local_environ(), topic_prefix=name, app_id=name, clickhouse_database=name)


@pytest.fixture()
def clickhouse_settings(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a fresh, test-unique ClickHouse database, dropped afterwards."""
    from streams.clickhouse.client import connect

    yield settings
    # Dropping a database with many parts can outlast the pipeline's 10 s query timeout on a
    # loaded machine; the test is over, so wait for it.
    admin = connect(dataclasses.replace(settings, clickhouse_timeout_s=120.0), admin=True)
    admin.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    admin.disconnect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path) or "tests\\integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
