"""A Confluent-compatible Schema Registry through confluent-kafka's ``SchemaRegistryClient``.

The client brings basic auth, TLS, HTTP retries with backoff and failover between URLs; this
module adds what the pipeline needs on top: ids resolved once per process (schemas under an
id never change), unknown ids remembered too, so a flood of records with a bogus id costs one
request, and registry errors sorted into "the record is at fault" (dead letter) and "the
registry is" (retry). Subjects follow TopicNameStrategy: ``<topic>-value``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from confluent_kafka.schema_registry import Schema as RegisteredText
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.contracts.registry import (
    RegistryError,
    Schema,
    UnknownSchemaError,
    event_type_of,
    is_embedded_id,
    latest_files,
    load_schema_files,
)
from streams.core.events import EventType
from streams.settings import Settings

SCHEMA_NOT_FOUND = 40403  # Confluent error codes, which Apicurio's ccompat API shares
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
UNKNOWN_IDS_REMEMBERED = 10_000


def client_from_settings(settings: Settings) -> SchemaRegistryClient:
    """A client for ``STREAMS_SCHEMA_REGISTRY_URL`` with the configured credentials and CA."""
    conf: dict[str, object] = {"url": settings.schema_registry_url, "timeout": settings.schema_registry_timeout_s}
    if settings.schema_registry_user:
        conf["basic.auth.user.info"] = f"{settings.schema_registry_user}:{settings.schema_registry_password.reveal()}"
    if settings.schema_registry_ca_path:
        conf["ssl.ca.location"] = settings.schema_registry_ca_path
    return SchemaRegistryClient(conf)


def subject_of(topics: Mapping[str, str], event_type: EventType) -> str:
    """TopicNameStrategy subject of the type's value schema: ``<topic>-value``."""
    return f"{topics[event_type]}-value"


def as_text(schema: Schema) -> RegisteredText:
    return RegisteredText(json.dumps(schema), "AVRO")


def not_found(error: SchemaRegistryError, code: int) -> bool:
    """The registry's own "not found" (a bare 404 from a wrong URL path has no such code)."""
    return error.http_status_code == 404 and error.error_code == code


class SchemaCache:
    """Schemas by id, fetched once; unknown ids remembered (the newest ``capacity`` of them).

    ``fetch`` raises UnknownSchemaError when the registry does not know the id (remembered: the
    same record replayed or repeated must not reach the registry again) and RegistryError when
    it could not answer (not remembered: the next record asks again).
    """

    def __init__(self, fetch: Callable[[int], Schema], capacity: int = UNKNOWN_IDS_REMEMBERED) -> None:
        self._fetch = fetch
        self._capacity = capacity
        self._known: dict[int, Schema] = {}
        self._unknown: OrderedDict[int, str] = OrderedDict()

    def get(self, schema_id: int) -> Schema:
        schema = self._known.get(schema_id)
        if schema is not None:
            return schema
        reason = self._unknown.get(schema_id)
        if reason is not None:
            raise UnknownSchemaError(reason)
        try:
            schema = self._known[schema_id] = self._fetch(schema_id)
        except UnknownSchemaError as exc:
            self._unknown[schema_id] = str(exc)
            if len(self._unknown) > self._capacity:
                self._unknown.popitem(last=False)
            raise
        return schema

    def put(self, schema_id: int, schema: Schema) -> None:
        self._known[schema_id] = schema


class ConfluentRegistry:
    """:class:`~streams.contracts.registry.SchemaRegistry` over a Confluent-compatible registry.

    ``latest(type)`` registers the newest local schema of the type under its subject (the
    registry returns the existing id when it has it, and refuses an incompatible one), as
    Confluent serializers do with ``auto.register.schemas``.
    """

    def __init__(self, client: SchemaRegistryClient, topics: Mapping[str, str],
                 schemas_dir: Path | None = None) -> None:
        self._client = client
        self._topics = dict(topics)
        self._local_latest = latest_files(load_schema_files(schemas_dir))
        self._schemas = SchemaCache(self._fetch)
        self._latest: dict[EventType, tuple[int, Schema]] = {}

    def _fetch(self, schema_id: int) -> Schema:
        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if not_found(exc, SCHEMA_NOT_FOUND):
                raise UnknownSchemaError(f"the registry has no schema {schema_id}") from None
            raise RegistryError(f"schema {schema_id}: {exc}") from None
        except Exception as exc:  # connection refused, timeouts, TLS: httpx's errors after retries
            raise RegistryError(f"schema {schema_id}: {type(exc).__name__}: {exc}") from exc
        if registered.schema_type not in (None, "AVRO"):
            raise UnknownSchemaError(f"schema {schema_id} is {registered.schema_type}, not AVRO")
        try:
            schema: Schema = json.loads(registered.schema_str or "")
        except ValueError as exc:
            raise UnknownSchemaError(f"schema {schema_id} is not JSON: {exc}") from None
        return schema

    def schema(self, schema_id: int) -> Schema:
        """``GET /schemas/ids/{id}``, once per id."""
        return self._schemas.get(schema_id)

    def event_type(self, schema_id: int) -> EventType:
        """Event type from the record name of schema ``schema_id``."""
        return event_type_of(self.schema(schema_id))

    def register(self, event_type: EventType, schema: Schema) -> int:
        """Register ``schema`` under the type's subject; the schema id (existing or new)."""
        subject = subject_of(self._topics, event_type)
        try:
            schema_id = self._client.register_schema(subject, as_text(schema))
        except SchemaRegistryError as exc:
            raise RegistryError(f"registering {subject}: {exc}") from None
        except Exception as exc:
            raise RegistryError(f"registering {subject}: {type(exc).__name__}: {exc}") from exc
        check_registry_id(schema_id, subject)
        self._schemas.put(schema_id, schema)
        return schema_id

    def latest(self, event_type: EventType) -> tuple[int, Schema]:
        """The newest local schema of the type, registered once per process."""
        cached = self._latest.get(event_type)
        if cached is None:
            schema = self._local_latest[event_type].schema
            cached = self._latest[event_type] = (self.register(event_type, schema), schema)
        return cached


def check_registry_id(schema_id: int, subject: str) -> None:
    """Refuse a registry id in the embedded range: readers would take it for an embedded one."""
    if is_embedded_id(schema_id):
        raise RegistryError(f"{subject}: the registry returned id {schema_id}, inside the range reserved for "
                            "embedded ids; readers cannot tell it apart")
