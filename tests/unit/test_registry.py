"""Schema ids: the embedded registry's fixed ids, the two disjoint id spaces, the id cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.contracts.confluent import SchemaCache, client_from_settings
from streams.contracts.registry import (
    EMBEDDED_ID_BASE,
    EmbeddedRegistry,
    RegistryError,
    Schema,
    TwoIdSpaces,
    UnknownSchemaError,
    is_embedded_id,
    load_schema_files,
    registry_from_settings,
)
from streams.core.events import EventType
from streams.errors import SettingsError
from streams.settings import load_settings

REGISTRY_URL = "http://127.0.0.1:1/apis/ccompat/v7"


def test_embedded_ids_are_fixed_by_type_slot_and_version() -> None:
    registry = EmbeddedRegistry()
    ids = {(f.event_type.value, f.version): f.schema_id - EMBEDDED_ID_BASE for f in load_schema_files()}
    assert ids == {("click", 1): 101, ("click", 2): 102, ("click", 3): 103, ("purchase", 1): 301, ("purchase", 2): 302,
                   ("share", 1): 201, ("share", 2): 202, ("support", 1): 401, ("support", 2): 402,
                   ("identify", 1): 501}
    assert registry.event_type(EMBEDDED_ID_BASE + 301) is EventType.PURCHASE
    assert registry.schema(EMBEDDED_ID_BASE + 102)["name"] == "Click"
    assert registry.latest(EventType.CLICK) == (EMBEDDED_ID_BASE + 103, registry.schema(103))


def test_embedded_registry_reads_the_ids_written_before_the_embedded_range() -> None:
    assert EmbeddedRegistry().schema(101) == EmbeddedRegistry().schema(EMBEDDED_ID_BASE + 101)
    with pytest.raises(UnknownSchemaError):  # beside a registry, 101 is the registry's
        EmbeddedRegistry(legacy_ids=False).schema(101)


def test_embedded_unknown_id() -> None:
    with pytest.raises(UnknownSchemaError):
        EmbeddedRegistry().schema(1)


def test_schemas_dir_override_and_naming_checks(tmp_path: Path) -> None:
    (tmp_path / "click").mkdir()
    (tmp_path / "click" / "v1.avsc").write_text(json.dumps(load_schema_files()[0].schema))
    assert EmbeddedRegistry(tmp_path).latest(EventType.CLICK)[0] == EMBEDDED_ID_BASE + 101
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "v1.avsc").write_text(json.dumps(load_schema_files()[0].schema))
    with pytest.raises(ValueError, match="does not describe share"):
        EmbeddedRegistry(tmp_path)


class _NumberedRegistry:
    """Stands in for a Schema Registry that numbers schemas from 1: knows ids 1..9."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def schema(self, schema_id: int) -> Schema:
        self.asked.append(schema_id)
        if schema_id > 9:
            raise UnknownSchemaError(f"no schema {schema_id}")
        return {"id": schema_id}

    def event_type(self, schema_id: int) -> EventType:
        return EventType.CLICK

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        return 7, {"id": 7}


def test_two_id_spaces_route_by_range_and_write_the_chosen_one() -> None:
    remote = _NumberedRegistry()
    both = TwoIdSpaces(EmbeddedRegistry(legacy_ids=False), remote, write_embedded=False)
    assert both.schema(EMBEDDED_ID_BASE + 101)["name"] == "Click" and remote.asked == []
    assert both.schema(1) == {"id": 1} and remote.asked == [1]
    with pytest.raises(UnknownSchemaError):  # an embedded-range id nobody wrote: no request
        both.schema(0x7FFF_FF00)
    assert remote.asked == [1]
    assert both.latest(EventType.CLICK) == (7, {"id": 7})
    embedded_writer = TwoIdSpaces(EmbeddedRegistry(legacy_ids=False), remote, write_embedded=True)
    assert embedded_writer.latest(EventType.CLICK)[0] == EMBEDDED_ID_BASE + 103
    assert is_embedded_id(EMBEDDED_ID_BASE) and not is_embedded_id(EMBEDDED_ID_BASE - 1)


def test_cache_asks_once_per_id_known_or_unknown() -> None:
    remote = _NumberedRegistry()
    cache = SchemaCache(remote.schema, capacity=2)
    for _ in range(3):
        assert cache.get(1) == {"id": 1}
        with pytest.raises(UnknownSchemaError, match="no schema 50"):
            cache.get(50)
    assert remote.asked == [1, 50]
    for bogus in (51, 52):  # the oldest unknown id is forgotten beyond the capacity
        with pytest.raises(UnknownSchemaError):
            cache.get(bogus)
    with pytest.raises(UnknownSchemaError):
        cache.get(50)
    assert remote.asked == [1, 50, 51, 52, 50]


def test_cache_does_not_remember_outages() -> None:
    calls = []

    def down(schema_id: int) -> Schema:
        calls.append(schema_id)
        raise RegistryError("connection refused")

    cache = SchemaCache(down)
    for _ in range(2):
        with pytest.raises(RegistryError):
            cache.get(3)
    assert calls == [3, 3]


def test_settings_choose_the_registry_and_the_written_ids() -> None:
    assert isinstance(registry_from_settings(load_settings({})), EmbeddedRegistry)
    remote = registry_from_settings(load_settings({}, schema_registry_url=REGISTRY_URL))
    assert isinstance(remote, TwoIdSpaces)
    embedded = registry_from_settings(load_settings({}, schema_registry_url=REGISTRY_URL, schema_ids="embedded"))
    assert embedded.latest(EventType.SHARE)[0] == EMBEDDED_ID_BASE + 202  # no request: written from the files


def test_registry_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="STREAMS_SCHEMA_IDS=registry needs STREAMS_SCHEMA_REGISTRY_URL"):
        load_settings({"STREAMS_SCHEMA_IDS": "registry"})
    with pytest.raises(SettingsError, match="expected registry or embedded"):
        load_settings({"STREAMS_SCHEMA_IDS": "confluent"})
    with pytest.raises(SettingsError, match="SCHEMA_REGISTRY_USER"):
        load_settings({"STREAMS_SCHEMA_REGISTRY_PASSWORD": "p"})
    with pytest.raises(SettingsError, match="no such file"):
        load_settings({"STREAMS_SCHEMA_REGISTRY_CA_PATH": str(tmp_path / "ca.pem")})
    with pytest.raises(SettingsError, match="http"):
        load_settings({"STREAMS_SCHEMA_REGISTRY_URL": "127.0.0.1:18081"})
    with pytest.raises(SettingsError, match="no credentials in the URL") as raised:
        load_settings({"STREAMS_SCHEMA_REGISTRY_URL": "https://svc:s3cret-pw@registry.example/apis/ccompat/v7"})
    assert "s3cret-pw" not in str(raised.value)


def test_registry_password_stays_out_of_reprs() -> None:
    settings = load_settings({"STREAMS_SCHEMA_REGISTRY_URL": REGISTRY_URL, "STREAMS_SCHEMA_REGISTRY_USER": "svc",
                              "STREAMS_SCHEMA_REGISTRY_PASSWORD": "s3cret-pw"})
    assert "s3cret-pw" not in repr(settings)
    client = client_from_settings(settings)
    assert "s3cret-pw" not in repr(client)
