"""The embedded schema registry: stable ids, directory override, naming checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.contracts.registry import (
    ConfluentRegistry,
    EmbeddedRegistry,
    UnknownSchemaError,
    load_schema_files,
    registry_from_settings,
)
from streams.core.events import EventType
from streams.settings import load_settings


def test_embedded_ids_are_fixed_by_type_slot_and_version() -> None:
    registry = EmbeddedRegistry()
    ids = {(f.event_type.value, f.version): f.schema_id for f in load_schema_files()}
    assert ids == {("click", 1): 101, ("click", 2): 102, ("purchase", 1): 301, ("share", 1): 201, ("support", 1): 401}
    assert registry.event_type(301) is EventType.PURCHASE
    assert registry.schema(102)["name"] == "Click"
    assert registry.latest(EventType.CLICK) == (102, registry.schema(102))


def test_embedded_unknown_id() -> None:
    with pytest.raises(UnknownSchemaError):
        EmbeddedRegistry().schema(1)


def test_schemas_dir_override_and_naming_checks(tmp_path: Path) -> None:
    (tmp_path / "click").mkdir()
    (tmp_path / "click" / "v1.avsc").write_text(json.dumps(load_schema_files()[0].schema))
    assert EmbeddedRegistry(tmp_path).latest(EventType.CLICK)[0] == 101
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "v1.avsc").write_text(json.dumps(load_schema_files()[0].schema))
    with pytest.raises(ValueError, match="does not describe share"):
        EmbeddedRegistry(tmp_path)


def test_settings_choose_the_registry() -> None:
    assert isinstance(registry_from_settings(load_settings({})), EmbeddedRegistry)
    remote = registry_from_settings(load_settings({}, schema_registry_url="http://127.0.0.1:1"))
    assert isinstance(remote, ConfluentRegistry)
