"""Schema registry: schema ids <-> Avro schemas, embedded (from ``schemas/``) or Confluent REST.

Both implementations answer the same three questions (:class:`SchemaRegistry`): the schema
with an id, the event type of an id, and the (id, schema) a producer writes with for a type.
Schemas are returned as their JSON objects (``dict``); the codec compiles them.

Embedded ids are fixed by the file layout, never by load order, so records written before a
new version was added keep decoding: ``id = 100 * slot(type) + version`` with the slots below
(click v1 = 101, click v2 = 102, share v1 = 201, ...). See ``schemas/README.md``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
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
}
MAX_VERSION = 99
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_SCHEMA_NOT_FOUND = 40403  # Confluent error code

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


def schema_id_for(event_type: EventType, version: int) -> int:
    """Embedded registry id of ``event_type`` schema version ``version``."""
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"schema version {version} outside 1..{MAX_VERSION}")
    return 100 * TYPE_SLOTS[event_type] + version


def event_type_of(schema: Mapping[str, Any]) -> EventType:
    """The event type a schema describes, from its record name (``<NAMESPACE>.Click``, ...)."""
    name = schema.get("name") if schema.get("type") == "record" else None
    if schema.get("namespace") != NAMESPACE or not isinstance(name, str):
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


def _latest_files(files: list[SchemaFile]) -> dict[EventType, SchemaFile]:
    latest: dict[EventType, SchemaFile] = {}
    for schema_file in files:  # sorted by version, so the last one per type wins
        latest[schema_file.event_type] = schema_file
    return latest


class EmbeddedRegistry:
    """Read-only registry built from the schema files; ids per :func:`schema_id_for`."""

    def __init__(self, schemas_dir: Path | None = None) -> None:
        files = load_schema_files(schemas_dir)
        self._by_id = {f.schema_id: f for f in files}
        self._latest = _latest_files(files)

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


class ConfluentRegistry:
    """Client of a Confluent Schema Registry (stdlib HTTP, lazy cache, TopicNameStrategy).

    ``latest(type)`` registers the newest local schema of the type under ``<topic>-value``
    (the registry returns the existing id when it already has it), as Confluent serializers
    do with ``auto.register.schemas``; the registry enforces its compatibility level there.
    """

    def __init__(
        self,
        url: str,
        topics: Mapping[str, str],
        schemas_dir: Path | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = url.rstrip("/")
        self._topics = dict(topics)
        self._timeout_s = timeout_s
        self._local_latest = _latest_files(load_schema_files(schemas_dir))
        self._schemas: dict[int, Schema] = {}
        self._latest: dict[EventType, tuple[int, Schema]] = {}

    def _request(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self._url + path,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            # Only the registry's own "schema not found" blames the record; a bare 404 from a
            # wrong URL must not dead-letter every record.
            if exc.code == 404 and f'"error_code":{_SCHEMA_NOT_FOUND}' in detail.replace(" ", ""):
                raise UnknownSchemaError(f"registry has no {path}") from None
            raise RegistryError(f"{request.method} {path}: HTTP {exc.code} {detail}") from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad JSON
            raise RegistryError(f"{request.method} {self._url}{path}: {exc}") from exc

    def schema(self, schema_id: int) -> Schema:
        """``GET /schemas/ids/{id}``, cached (ids are immutable)."""
        cached = self._schemas.get(schema_id)
        if cached is None:
            payload = self._request(f"/schemas/ids/{schema_id}")
            try:
                schema_type = payload.get("schemaType", "AVRO")
                cached = json.loads(payload["schema"])
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise RegistryError(f"schema {schema_id}: unexpected payload {payload!r:.200}") from exc
            if schema_type != "AVRO":
                raise UnknownSchemaError(f"schema {schema_id} is {schema_type}, not AVRO")
            self._schemas[schema_id] = cached
        return cached

    def event_type(self, schema_id: int) -> EventType:
        """Event type from the record name of schema ``schema_id``."""
        return event_type_of(self.schema(schema_id))

    def subject(self, event_type: EventType) -> str:
        """TopicNameStrategy subject of the type's value schema: ``<topic>-value``."""
        return f"{self._topics[event_type]}-value"

    def register(self, event_type: EventType, schema: Schema) -> int:
        """``POST /subjects/{subject}/versions``; returns the schema id (existing or new)."""
        payload = self._request(f"/subjects/{self.subject(event_type)}/versions", {"schema": json.dumps(schema)})
        schema_id = int(payload["id"])
        self._schemas[schema_id] = schema
        return schema_id

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        """The newest local schema of the type, registered once per process."""
        cached = self._latest.get(event_type)
        if cached is None:
            schema = self._local_latest[event_type].schema
            cached = (self.register(event_type, schema), schema)
            self._latest[event_type] = cached
        return cached


def registry_from_settings(settings: Settings, schemas_dir: Path | None = None) -> SchemaRegistry:
    """Confluent client when ``settings.schema_registry_url`` is set, else the embedded one."""
    if settings.schema_registry_url:
        return ConfluentRegistry(settings.schema_registry_url, settings.input_topics, schemas_dir)
    return EmbeddedRegistry(schemas_dir)
