"""The Avro contracts: they parse, are documented, evolve BACKWARD, and match streams/core/events.py."""

from __future__ import annotations

import copy
import dataclasses
import json
from itertools import groupby, pairwise
from typing import Any

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from streams.contracts.codec import contract_fields, later_fields
from streams.contracts.registry import NAMESPACE, SchemaFile, load_schema_files
from streams.core.events import EVENT_CLASSES, EventType, TicketAction

FILES = load_schema_files()
BY_TYPE = {t: list(files) for t, files in groupby(FILES, key=lambda f: f.event_type)}
COMMON = ["event_id", "customer_id", "occurred_at", "channel", "session_id"]


def _id(schema_file: SchemaFile) -> str:
    return f"{schema_file.event_type}-v{schema_file.version}"


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


def _backward_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why ``reader`` cannot read ``writer``'s data: Avro resolution plus logical types."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    problems = [] if result.compatibility is SchemaCompatibilityType.compatible else sorted(result.messages)
    # The Avro checker ignores logical types; a changed scale would silently rescale money.
    writer_fields = _fields(writer)
    for name, field in _fields(reader).items():
        if name in writer_fields and field["type"] != writer_fields[name]["type"]:
            problems.append(f"{name}: type {writer_fields[name]['type']} -> {field['type']}")
    return problems


def test_every_type_has_contiguous_versions_from_1() -> None:
    assert set(BY_TYPE) == set(EventType)
    for files in BY_TYPE.values():
        assert [f.version for f in files] == list(range(1, len(files) + 1))


@pytest.mark.parametrize("schema_file", FILES, ids=_id)
def test_schema_parses_with_both_libraries(schema_file: SchemaFile) -> None:
    fastavro.parse_schema(schema_file.schema)
    avro.schema.parse(json.dumps(schema_file.schema))
    assert schema_file.schema["namespace"] == NAMESPACE


@pytest.mark.parametrize("schema_file", FILES, ids=_id)
def test_every_field_and_named_type_has_a_doc(schema_file: SchemaFile) -> None:
    schema = schema_file.schema
    assert schema.get("doc")
    for field in schema["fields"]:
        assert field.get("doc", "").strip(), f"{field['name']} has no doc"
        if isinstance(field["type"], dict) and "name" in field["type"]:
            assert field["type"].get("doc"), f"type of {field['name']} has no doc"


@pytest.mark.parametrize("schema_file", FILES, ids=_id)
def test_common_fields_come_first_and_agree(schema_file: SchemaFile) -> None:
    reference = FILES[0].schema["fields"][: len(COMMON)]
    head = schema_file.schema["fields"][: len(COMMON)]
    assert [f["name"] for f in head] == COMMON
    assert [(f["type"], f.get("default", "-")) for f in head] == [(f["type"], f.get("default", "-")) for f in reference]


@pytest.mark.parametrize("schema_file", FILES, ids=_id)
def test_optional_fields_are_null_unions_defaulting_to_null(schema_file: SchemaFile) -> None:
    for field in schema_file.schema["fields"]:
        if isinstance(field["type"], list):
            assert field["type"][0] == "null" and field["default"] is None, field["name"]


@pytest.mark.parametrize(
    ("reader", "writer"),
    [(new, old) for files in BY_TYPE.values() for new in files for old in files if old.version < new.version],
    ids=lambda f: _id(f),
)
def test_each_version_reads_every_previous_version(reader: SchemaFile, writer: SchemaFile) -> None:
    assert _backward_problems(reader.schema, writer.schema) == []


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return changed


def _retyped(schema: dict[str, Any], name: str, new_type: Any) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    next(f for f in changed["fields"] if f["name"] == name)["type"] = new_type
    return changed


@pytest.mark.parametrize(
    "break_it",
    [
        lambda s: _with_field(s, {"name": "coupon", "type": "string", "doc": "no default"}),
        lambda s: _retyped(s, "occurred_at", "string"),
        lambda s: _retyped(s, "amount", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}),
        lambda s: _retyped(s, "session_id", "string"),
    ],
    ids=["added-field-without-default", "retyped", "decimal-scale-changed", "optional-made-required"],
)
def test_an_incompatible_new_version_is_rejected(break_it: Any) -> None:
    old = BY_TYPE[EventType.PURCHASE][-1].schema
    assert _backward_problems(break_it(old), old) != []


def test_adding_an_optional_field_is_accepted() -> None:
    old = BY_TYPE[EventType.PURCHASE][-1].schema
    new = _with_field(old, {"name": "coupon", "type": ["null", "string"], "default": None, "doc": "x"})
    assert _backward_problems(new, old) == []


# --- contract drift: Avro fields vs streams/core/events.py -----------------------------------------

_AVRO_TYPE_OF_ANNOTATION = {"str": "string", "int": "long"}


def _expected_avro_type(attr: str, annotation: str) -> Any:
    if attr == "occurred_at_ms":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if attr == "amount_cents":
        return {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
    if attr == "satisfaction":
        return ["null", "int"]
    base = annotation.removesuffix(" | None")
    avro_type = _AVRO_TYPE_OF_ANNOTATION.get(base, base)
    return ["null", avro_type] if annotation.endswith("| None") else avro_type


@pytest.mark.parametrize("schema_file", FILES, ids=_id)
def test_every_dataclass_field_is_in_every_version_with_its_type(schema_file: SchemaFile) -> None:
    cls = EVENT_CLASSES[schema_file.event_type]
    annotations = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    fields = _fields(schema_file.schema)
    for attr, name in contract_fields(schema_file.event_type):
        if name in later_fields(schema_file.event_type) and name not in fields:
            continue  # added by a later version: older records are read with the default
        assert name in fields, f"{cls.__name__}.{attr} has no Avro field {name}"
        actual = fields[name]["type"]
        if attr == "action":
            assert actual["type"] == "enum" and actual["symbols"] == [a.value for a in TicketAction]
        else:
            assert actual == _expected_avro_type(attr, annotations[attr]), name


def test_first_versions_have_exactly_the_dataclass_fields_in_order() -> None:
    for event_type, files in BY_TYPE.items():
        names = [name for _, name in contract_fields(event_type) if name not in later_fields(event_type)]
        assert [f["name"] for f in files[0].schema["fields"]] == names


def test_fields_added_later_have_defaults_and_sit_last_in_the_dataclass() -> None:
    # The codec builds events positionally from the fields a writer's version has; the defaults
    # fill the rest, so they must come last.
    for event_type in EventType:
        names = [name for _, name in contract_fields(event_type)]
        later = later_fields(event_type)
        assert names[len(names) - len(later):] == [n for n in names if n in later]
        newest = BY_TYPE[event_type][-1].schema
        assert later <= set(_fields(newest)), f"{event_type}: {sorted(later)} not in the newest version"


def test_anonymous_versions_add_only_an_optional_anonymous_id() -> None:
    for event_type in (EventType.CLICK, EventType.SHARE, EventType.PURCHASE, EventType.SUPPORT):
        older, newest = BY_TYPE[event_type][-2:]
        added = set(_fields(newest.schema)) - set(_fields(older.schema))
        assert added == {"anonymous_id"}
        assert _fields(newest.schema)["anonymous_id"]["type"] == ["null", "string"]
        assert _backward_problems(newest.schema, older.schema) == []


def test_later_versions_never_remove_or_change_a_field() -> None:
    # Avro's BACKWARD allows dropping fields; our policy does not (other readers use them).
    for files in BY_TYPE.values():
        for older, newer in pairwise(files):
            kept = _fields(newer.schema)
            for name, field in _fields(older.schema).items():
                assert name in kept, f"v{newer.version} removed {name}"
                assert kept[name]["type"] == field["type"], f"v{newer.version} retyped {name}"
