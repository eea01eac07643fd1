"""Schema registry: schema ids <-> Avro schemas, embedded (from ``schemas/``) or a Schema Registry.

Every implementation answers the same three questions (:class:`SchemaRegistry`): the schema
with an id, the event type of an id, and the (id, schema) a producer writes with for a type.
Schemas are returned as their JSON objects (``dict``); the codec compiles them.

Embedded ids are fixed by the file layout, never by load order, so records written before a
new version was added keep decoding: ``id = EMBEDDED_ID_BASE + 100 * slot(type) + version``
with the slots below. The base puts them in a range no Schema Registry reaches (registries
number schemas upwards from 1), so one reader can tell the two id spaces apart by the id alone
and never decodes a record with the wrong schema (:class:`TwoIdSpaces`). Records written
before the base existed carry ``100 * slot + version`` (click v1 = 101): the embedded registry
still reads those, a registry reader cannot tell them from its own ids. See ``schemas/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from streams.core.events import EventType
from streams.errors import StreamsError
from streams.settings import Settings

NAMESPACE = "com.interactions.events"
SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
"""The repository's ``schemas/`` directory (top level, next to ``streams/``)."""

# Never renumber: ids derived from these are written into every record.
TYPE_SLOTS: dict[EventType, int] = {
    EventType.CLICK: 1,
    EventType.SHARE: 2,
    EventType.PURCHASE: 3,
    EventType.SUPPORT: 4,
    EventType.IDENTIFY: 5,
}
MAX_VERSION = 99
# Registries hand out ids from 1 upwards; 2,130,706,432 ids are never reached.
EMBEDDED_ID_BASE = 0x7F00_0000
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")

Schema = dict[str, Any]


class UnknownSchemaError(StreamsError):
    """No interaction-event schema has this id (the record, not the registry, is at fault)."""


class RegistryError(StreamsError):
    """The registry could not answer or refused a request; retry, do not dead-letter."""


class SchemaRegistry(Protocol):
    """What the codec needs from a registry; both implementations provide it."""

    def schema(self, schema_id: int) -> Schema:
        """The Avro schema (JSON object) with this id; UnknownSchemaError if none."""
        ...

    def event_type(self, schema_id: int) -> EventType:
        """The event type whose records the schema with this id describes."""
        ...

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        """(id, schema) that producers write ``event_type`` events with."""
        ...


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """One ``schemas/<type>/v<version>.avsc`` file."""

    event_type: EventType
    version: int
    schema: Schema
    path: Path

    @property
    def schema_id(self) -> int:
        return schema_id_for(self.event_type, self.version)

    @property
    def legacy_schema_id(self) -> int:
        return legacy_schema_id_for(self.event_type, self.version)


def schema_id_for(event_type: EventType, version: int) -> int:
    """Embedded registry id of ``event_type`` schema version ``version``."""
    return EMBEDDED_ID_BASE + legacy_schema_id_for(event_type, version)


def legacy_schema_id_for(event_type: EventType, version: int) -> int:
    """The id embedded registries wrote before :data:`EMBEDDED_ID_BASE`; still read, never written."""
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"schema version {version} outside 1..{MAX_VERSION}")
    return 100 * TYPE_SLOTS[event_type] + version


def is_embedded_id(schema_id: int) -> bool:
    """True for ids in the embedded range, which no Schema Registry hands out."""
    return schema_id >= EMBEDDED_ID_BASE


def event_type_of(schema: Mapping[str, Any]) -> EventType:
    """The event type a schema describes, from its record name (``<NAMESPACE>.Click``, ...;
    a dotted name is a full name, as Avro writers put it in a container file's header)."""
    name = schema.get("name") if schema.get("type") == "record" else None
    namespace = schema.get("namespace")
    if isinstance(name, str) and "." in name:
        namespace, _, name = name.rpartition(".")
    if namespace != NAMESPACE or not isinstance(name, str):
        raise UnknownSchemaError(f"not a {NAMESPACE} record: {schema.get('name')!r}")
    for event_type in EventType:
        if name == event_type.value.capitalize():
            return event_type
    raise UnknownSchemaError(f"record {NAMESPACE}.{name} is not an interaction event")


def load_schema_files(schemas_dir: Path | None = None) -> list[SchemaFile]:
    """Every schema file under ``schemas_dir``, sorted by (type, version), checked for naming."""
    root = SCHEMAS_DIR if schemas_dir is None else schemas_dir
    files = []
    for path in sorted(root.glob("*/v*.avsc")):
        match = _VERSION_FILE.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: schema files are named v<version>.avsc")
        event_type = EventType(path.parent.name)
        schema = json.loads(path.read_text(encoding="utf-8"))
        if event_type_of(schema) is not event_type:
            raise ValueError(f"{path}: record {schema['name']} does not describe {event_type}")
        files.append(SchemaFile(event_type, int(match.group(1)), schema, path))
    if not files:
        raise ValueError(f"no schemas under {root}")
    return sorted(files, key=lambda f: (f.event_type.value, f.version))


def latest_files(files: list[SchemaFile]) -> dict[EventType, SchemaFile]:
    """The highest version of each type."""
    latest: dict[EventType, SchemaFile] = {}
    for schema_file in files:  # sorted by version, so the last one per type wins
        latest[schema_file.event_type] = schema_file
    return latest


class EmbeddedRegistry:
    """Read-only registry built from the schema files; ids per :func:`schema_id_for`.

    ``legacy_ids`` also reads the ids written before the embedded range existed; only a reader
    without a Schema Registry may, since a registry can hand out the same small numbers.
    """

    def __init__(self, schemas_dir: Path | None = None, legacy_ids: bool = True) -> None:
        files = load_schema_files(schemas_dir)
        self._by_id = {f.schema_id: f for f in files}
        if legacy_ids:
            self._by_id.update({f.legacy_schema_id: f for f in files})
        self._latest = latest_files(files)

    def _file(self, schema_id: int) -> SchemaFile:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"no schema with id {schema_id}") from None

    def schema(self, schema_id: int) -> Schema:
        """The schema with this id."""
        return self._file(schema_id).schema

    def event_type(self, schema_id: int) -> EventType:
        """The event type of the schema with this id."""
        return self._file(schema_id).event_type

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        """The highest version of ``event_type`` in ``schemas/``."""
        newest = self._latest[event_type]
        return newest.schema_id, newest.schema


class TwoIdSpaces:
    """Reads ids of both spaces, each from its own registry; writes the ids of one of them.

    An id in the embedded range is looked up in the schema files, any other in the Schema
    Registry: the ranges are disjoint, so a record never meets the wrong schema, whichever
    setting its producer had.
    """

    def __init__(self, embedded: EmbeddedRegistry, remote: SchemaRegistry, write_embedded: bool) -> None:
        self._embedded = embedded
        self._remote = remote
        self._writer = embedded if write_embedded else remote

    def _reader(self, schema_id: int) -> SchemaRegistry:
        return self._embedded if is_embedded_id(schema_id) else self._remote

    def schema(self, schema_id: int) -> Schema:
        """The schema with this id, from the registry of its id space."""
        return self._reader(schema_id).schema(schema_id)

    def event_type(self, schema_id: int) -> EventType:
        """The event type of the schema with this id."""
        return self._reader(schema_id).event_type(schema_id)

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        """(id, schema) producers write with, in the id space ``STREAMS_SCHEMA_IDS`` chose."""
        return self._writer.latest(event_type)


def registry_from_settings(settings: Settings, schemas_dir: Path | None = None) -> SchemaRegistry:
    """Both id spaces when ``settings.schema_registry_url`` is set, else the embedded registry.

    Producers write registry ids unless ``settings.schema_ids`` is ``embedded``.
    """
    if not settings.schema_registry_url:
        return EmbeddedRegistry(schemas_dir)
    # Here, not at the top: streams.contracts.confluent imports this module, and the client
    # library loads only where a registry is configured.
    from streams.contracts.confluent import ConfluentRegistry, client_from_settings

    remote = ConfluentRegistry(client_from_settings(settings), settings.input_topics, schemas_dir)
    return TwoIdSpaces(EmbeddedRegistry(schemas_dir, legacy_ids=False), remote, settings.schema_ids == "embedded")
