"""The analyst user's profile as shipped: users.xml (ClickHouse 18.16 and modern servers) and
its modern-only limits drop-in, consistent with each other, with docker-compose.yml and with the
Grafana data source. Setting names are checked on a modern engine (chdb, in process); what the
profile allows and refuses on 18.16 is tested against the real server in
tests/integration/test_bi_clients.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
USERS_XML = ROOT / "deploy" / "clickhouse" / "users.xml"
LIMITS_XML = ROOT / "deploy" / "clickhouse" / "analyst-limits.xml"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yml"

chdb = pytest.importorskip("chdb")


def analyst_profile() -> ET.Element:
    root = ET.parse(USERS_XML).getroot()
    profile = root.find(f"profiles/{root.findtext('users/analyst/profile')}")
    assert profile is not None
    return profile


def constraints() -> dict[str, ET.Element]:
    found = ET.parse(LIMITS_XML).getroot().find("profiles/analyst/constraints")
    assert found is not None
    return {element.tag: element for element in found}


def test_the_analyst_may_set_query_settings_but_not_write() -> None:
    profile = analyst_profile()
    assert profile.findtext("readonly") == "2"  # reads and settings; 1 refuses BI tools' settings
    assert profile.findtext("allow_ddl") == "0"
    assert profile.find("constraints") is None, "18.16 rejects a profile with <constraints>: analyst-limits.xml"


def test_limits_name_real_settings_and_bound_the_defaults() -> None:
    limits = constraints()
    known = chdb.query("SELECT name FROM system.settings", "CSV").bytes().decode().split()
    assert not {f'"{name}"' for name in limits} - set(known), "unknown setting in analyst-limits.xml"
    profile = analyst_profile()
    for name, element in limits.items():
        low, high = element.findtext("min"), element.findtext("max")
        if low is None and high is None:
            assert element.find("const") is not None, name
            continue
        assert low is not None and int(low) >= 1, f"{name}: without min 1 a session may set 0, no limit"
        default = profile.findtext(name)
        assert default is not None, f"{name}: users.xml sets no default for the capped setting"
        assert int(low) <= int(default) <= int(high or default), name


def test_the_analyst_is_granted_select_on_the_pipeline_database_only() -> None:
    grants = [q.text for q in ET.parse(LIMITS_XML).getroot().findall("users/analyst/grants/query")]
    assert grants == [f"GRANT SELECT ON {Settings().clickhouse_database}.*"]


def test_compose_merges_the_limits_after_users_xml() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(str(v).split(":")[:2] for v in compose["services"]["clickhouse"]["volumes"])
    users, limits = mounts["./deploy/clickhouse/users.xml"], mounts["./deploy/clickhouse/analyst-limits.xml"]
    assert Path(users).parent == Path(limits).parent == Path("/etc/clickhouse-server/users.d")
    assert users < limits, "users.d/ is merged in name order: the limits must come after users.xml"


def test_grafana_query_timeout_is_the_profile_default_within_the_cap() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    [clickhouse] = [s for s in sources if s["uid"] == "clickhouse"]
    timeout = int(clickhouse["jsonData"]["queryTimeout"])  # sent as max_execution_time
    assert str(timeout) == analyst_profile().findtext("max_execution_time")
    cap = constraints()["max_execution_time"]
    assert int(cap.findtext("min", "0")) <= timeout <= int(cap.findtext("max", "0"))
