"""Static checks of docker-compose.yml and the files it relies on.

Needs no Docker and no running service: the compose file is parsed and compared with the
Dockerfile, the Prometheus and ClickHouse configs, the project's settings (read from
``streams/settings.py`` without importing it) and the native local stack's port defaults.
Every check is unconditional: a file that is missing or no longer parses as expected fails
the test instead of skipping its assertions.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SETTINGS = ROOT / "streams" / "settings.py"
STACK = ROOT / "deploy" / "local" / "stack"
USERS_XML = ROOT / "deploy" / "clickhouse" / "users.xml"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# The connection settings a worker needs from its environment.
CONNECTION_SETTINGS = {
    "STREAMS_KAFKA_BOOTSTRAP_SERVERS",
    "STREAMS_CLICKHOUSE_HOST",
    "STREAMS_CLICKHOUSE_PORT",
    "STREAMS_CLICKHOUSE_DATABASE",
    "STREAMS_CLICKHOUSE_USER",
    "STREAMS_CLICKHOUSE_PASSWORD",
    "STREAMS_METRICS_PORT",
}
APP_SERVICES = ("migrate", "worker")
# The ClickHouse login each app service uses: migrations as the admin, inserts as the writer.
CLICKHOUSE_LOGIN = {
    "migrate": ("STREAMS_CLICKHOUSE_ADMIN_USER", "STREAMS_CLICKHOUSE_ADMIN_PASSWORD"),
    "worker": ("STREAMS_CLICKHOUSE_USER", "STREAMS_CLICKHOUSE_PASSWORD"),
}


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and "services" in data
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def settings_fields() -> dict[str, ast.expr | None]:
    """Field name -> default expression of ``class Settings`` in streams/settings.py."""
    tree = ast.parse(SETTINGS.read_text())
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings"]
    assert classes, f"{SETTINGS} has no class Settings"
    fields = {
        stmt.target.id: stmt.value
        for stmt in classes[0].body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    }
    assert fields, "class Settings has no annotated fields"
    return fields


def known_settings() -> set[str]:
    """Every STREAMS_* name the project reads: spelled out, or built as STREAMS_<FIELD>."""
    names = set(re.findall(r"STREAMS_[A-Z_]+", SETTINGS.read_text()))
    return names | {"STREAMS_" + field.upper() for field in settings_fields()}


def settings_default(field: str) -> Any:
    """The literal default of a Settings field (first argument of its ``_setting(...)``)."""
    fields = settings_fields()
    assert field in fields, f"Settings has no field {field}"
    value = fields[field]
    if isinstance(value, ast.Call):
        assert value.args, f"Settings.{field}: _setting(...) without a default"
        value = value.args[0]
    assert value is not None, f"Settings.{field} has no default"
    return ast.literal_eval(value)  # raises, failing the test, when the default is not a literal


def stack_default(variable: str) -> int:
    """Port default of the native stack, from ``${VARIABLE:-default}`` in deploy/local/stack."""
    match = re.search(r"\$\{" + variable + r":-(\d+)\}", STACK.read_text())
    assert match, f"deploy/local/stack has no default for {variable}"
    return int(match.group(1))


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host ip, host port) for 'ip:host:container' port entries."""
    result = {}
    for entry in service.get("ports", []):
        ip, host, container = str(entry).split(":")
        result[int(container)] = (ip, int(host))
    return result


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, address = item.split("://")
        host, port = address.rsplit(":", 1)
        result[name] = (host, int(port))
    return result


def bind_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (named volumes skipped)."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_YML.read_text())


# --- referenced files ---------------------------------------------------------------------------


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    mounted = {name: bind_sources(service) for name, service in services.items()}
    assert all(mounted[name] for name in ("clickhouse", "prometheus", "grafana")), mounted
    for name, mounts in mounted.items():
        for source, _ in mounts:
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_build_uses_the_project_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        build = services[name]["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.exists(), f"{name}: {dockerfile} missing"
        assert dockerfile == ROOT / "deploy" / "docker" / "Dockerfile"


def test_dockerfile_copies_existing_paths() -> None:
    text = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    copies = re.findall(r"^COPY (.+)$", text, re.M)
    assert copies, "the Dockerfile copies nothing"
    for line in copies:
        if line.startswith("--from="):
            continue  # from an earlier stage of the build, not from the repository
        sources = line.split()[:-1]
        for source in sources:
            if any(ch in source for ch in "*?["):
                continue  # optional glob (README.md*)
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_app_services_run_the_cli(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"].get("restart") == "no", "migrate is a one-shot job"
    condition = services["worker"]["depends_on"]["migrate"]["condition"]
    assert condition == "service_completed_successfully"


# --- settings -----------------------------------------------------------------------------------


def test_app_environment_uses_only_known_settings(services: dict[str, dict[str, Any]]) -> None:
    known = known_settings()
    for name in APP_SERVICES:
        unknown = {key for key in env(services[name]) if key not in known}
        assert not unknown, f"{name} sets variables the project does not read: {sorted(unknown)}"


def test_worker_gets_every_connection_setting(services: dict[str, dict[str, Any]]) -> None:
    missing = CONNECTION_SETTINGS - set(env(services["worker"]))
    assert not missing, f"worker lacks {sorted(missing)}"


def test_clickhouse_credentials_match_users_xml(services: dict[str, dict[str, Any]]) -> None:
    users = ET.parse(USERS_XML).getroot().find("users")
    assert users is not None
    for name, (user_var, password_var) in CLICKHOUSE_LOGIN.items():
        variables = env(services[name])
        assert user_var in variables and password_var in variables, f"{name} lacks {user_var} or {password_var}"
        user = users.find(variables[user_var])
        assert user is not None, f"{name}: user {variables[user_var]} not in users.xml"
        digest = hashlib.sha256(variables[password_var].encode()).hexdigest()
        assert user.findtext("password_sha256_hex") == digest, f"{name}: {password_var}"


def test_local_env_credentials_match_users_xml() -> None:
    """deploy/local/local.env (read by tests and `stack env`) logs in to the local stack."""
    users = ET.parse(USERS_XML).getroot().find("users")
    assert users is not None
    lines = (ROOT / "deploy" / "local" / "local.env").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) <= known_settings()
    for role in ("", "ADMIN_"):
        user = users.find(values[f"STREAMS_CLICKHOUSE_{role}USER"])
        assert user is not None
        digest = hashlib.sha256(values[f"STREAMS_CLICKHOUSE_{role}PASSWORD"].encode()).hexdigest()
        assert user.findtext("password_sha256_hex") == digest


def test_users_xml_roles() -> None:
    root = ET.parse(USERS_XML).getroot()
    profiles, users = root.find("profiles"), root.find("users")
    assert profiles is not None and users is not None
    assert {"admin", "writer", "analyst"} <= {user.tag for user in users}
    # The analyst's profile has tests of its own: test_analyst_profile.py.
    writer_profile = profiles.find(users.findtext("writer/profile", ""))
    assert writer_profile is not None and writer_profile.findtext("allow_ddl") == "0"
    default_networks = {ip.text for ip in users.findall("default/networks/ip")}
    # Without a networks list ClickHouse lets 'default' in from anywhere.
    assert default_networks and default_networks <= {"::1", "127.0.0.1"}, "'default' must stay local-only"


# --- ports --------------------------------------------------------------------------------------


def test_kafka_address_matches_broker_listeners(services: dict[str, dict[str, Any]]) -> None:
    kafka = env(services["kafka"])
    bound = listeners(kafka["KAFKA_LISTENERS"])
    advertised = listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    for name in APP_SERVICES:
        host, port = env(services[name])["STREAMS_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)
        assert host == "kafka" and (host, int(port)) in advertised.values()
        assert int(port) in {p for _, p in bound.values()}
    voter_port = int(kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].rsplit(":", 1)[1])
    assert bound[kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]][1] == voter_port
    assert set(advertised) <= set(bound)
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) <= set(protocols)


def test_kafka_host_listener_is_published(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    ports = published(kafka)
    host_listeners = {
        name: address
        for name, address in listeners(env(kafka)["KAFKA_ADVERTISED_LISTENERS"]).items()
        if address[0] == "127.0.0.1"
    }
    assert host_listeners, "no listener advertised for clients on the host"
    bound = listeners(env(kafka)["KAFKA_LISTENERS"])
    for name, (_, port) in host_listeners.items():
        assert ports[bound[name][1]] == ("127.0.0.1", port)


def test_clickhouse_port_is_the_native_port(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        variables = env(services[name])
        assert variables["STREAMS_CLICKHOUSE_HOST"] == "clickhouse"
        assert variables["STREAMS_CLICKHOUSE_PORT"] == "9000"  # the image's tcp_port
    assert 9000 in published(services["clickhouse"])


def test_prometheus_scrapes_the_worker_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    worker = env(services["worker"])
    port = int(worker["STREAMS_METRICS_PORT"])
    # Unset, the host defaults to loopback: it must be set, and to a reachable address.
    assert worker.get("STREAMS_METRICS_HOST", "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"), (
        "the worker's /metrics must be reachable from the prometheus container"
    )
    assert str(port) in {str(p) for p in services["worker"].get("expose", [])}
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    job = jobs["streams-worker"]
    targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    assert f"worker:{port}" in targets


def test_prometheus_rule_files_are_mounted(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(bind_sources(services["prometheus"]))
    assert mounts.get("./deploy/prometheus") == "/etc/prometheus"
    patterns = prometheus_config().get("rule_files", [])
    assert patterns, "prometheus.yml loads no rule files"
    for pattern in patterns:
        assert pattern.startswith("/etc/prometheus/")
        local = ROOT / "deploy" / "prometheus" / pattern.removeprefix("/etc/prometheus/")
        paths = glob.glob(str(local))
        assert paths, f"{pattern} matches no file under deploy/prometheus"
        for path in paths:
            assert "groups" in yaml.safe_load(Path(path).read_text()), path


def test_published_ports_are_loopback_and_unique(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[int, str] = {}
    for name, service in services.items():
        for ip, host_port in published(service).values():
            assert ip == "127.0.0.1", f"{name} publishes on {ip}"
            assert host_port not in seen, f"{name} and {seen.get(host_port)} share {host_port}"
            seen[host_port] = name


def test_published_ports_match_the_local_stack(services: dict[str, dict[str, Any]]) -> None:
    """The host sees the same ports with Docker as with deploy/local/stack."""
    expected = {
        ("kafka", 19092): stack_default("STREAMS_LOCAL_KAFKA_PORT"),
        ("clickhouse", 9000): stack_default("STREAMS_LOCAL_CLICKHOUSE_PORT"),
        ("clickhouse", 8123): stack_default("STREAMS_LOCAL_CLICKHOUSE_HTTP_PORT"),
        ("prometheus", 9090): stack_default("STREAMS_LOCAL_PROMETHEUS_PORT"),
    }
    for (name, container_port), host_port in expected.items():
        assert published(services[name])[container_port][1] == host_port, (name, container_port)


def test_settings_defaults_point_at_the_local_stack() -> None:
    assert settings_default("kafka_bootstrap_servers") == f"127.0.0.1:{stack_default('STREAMS_LOCAL_KAFKA_PORT')}"
    assert settings_default("clickhouse_port") == stack_default("STREAMS_LOCAL_CLICKHOUSE_PORT")
    assert settings_default("metrics_port") == stack_default("STREAMS_LOCAL_METRICS_PORT")


def test_schema_registry_is_the_local_stacks_release_on_its_port(services: dict[str, dict[str, Any]]) -> None:
    registry = services["schema-registry"]
    version = re.search(r"^APICURIO_VERSION=(\S+)$", STACK.read_text(), re.MULTILINE)
    assert version and registry["image"] == f"apicurio/apicurio-registry:{version.group(1)}"
    assert published(registry) == {8080: ("127.0.0.1", stack_default("STREAMS_LOCAL_SCHEMA_REGISTRY_PORT"))}
    for name in APP_SERVICES:
        assert env(services[name])["STREAMS_SCHEMA_REGISTRY_URL"] == "http://schema-registry:8080/apis/ccompat/v7"
    assert env(registry)["APICURIO_RULES_GLOBAL_COMPATIBILITY"] == "BACKWARD"
