"""``streams schemas``: register every contract of ``schemas/`` under its subject, in version order.

As Confluent's Maven plugin does, each version the subject lacks is first tested for
compatibility with what the subject has (the registry's own rule: BACKWARD), and an
incompatible one stops the run with a message naming the subject and the file. Versions the
subject already has are left alone, so a second run registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.contracts.confluent import (
    SCHEMA_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    VERSION_NOT_FOUND,
    as_text,
    check_registry_id,
    not_found,
    subject_of,
)
from streams.contracts.registry import RegistryError, SchemaFile, load_schema_files
from streams.errors import StreamsError


class IncompatibleSchemaError(StreamsError):
    """A contract version the registry's compatibility rule refuses."""


@dataclass(frozen=True, slots=True)
class Registration:
    """What happened to one schema file."""

    subject: str
    version: int
    schema_id: int
    registered: bool  # False: the subject already had it

    def __str__(self) -> str:
        verb = "registered" if self.registered else "already registered"
        return f"{self.subject} v{self.version}: {verb}, id {self.schema_id}"


def _registered_id(client: SchemaRegistryClient, subject: str, schema_file: SchemaFile) -> int | None:
    """The id of ``schema_file`` under ``subject``, or None when the subject lacks it."""
    try:
        return client.lookup_schema(subject, as_text(schema_file.schema)).schema_id
    except SchemaRegistryError as exc:
        if not_found(exc, SCHEMA_NOT_FOUND) or not_found(exc, SUBJECT_NOT_FOUND):
            return None
        raise


def _compatible(client: SchemaRegistryClient, subject: str, schema_file: SchemaFile) -> bool:
    try:
        return bool(client.test_compatibility(subject, as_text(schema_file.schema)))
    except SchemaRegistryError as exc:
        if not_found(exc, SUBJECT_NOT_FOUND) or not_found(exc, VERSION_NOT_FOUND):
            return True  # the subject's first version
        raise


def _register(client: SchemaRegistryClient, subject: str, schema_file: SchemaFile) -> int:
    if not _compatible(client, subject, schema_file):
        raise IncompatibleSchemaError(
            f"{subject}: {schema_file.path.parent.name}/{schema_file.path.name} (version {schema_file.version}) is not "
            "compatible with the versions the subject has, under the registry's compatibility rule; see the "
            "compatibility policy in schemas/README.md")
    return client.register_schema(subject, as_text(schema_file.schema))


def register_contracts(client: SchemaRegistryClient, topics: Mapping[str, str],
                       schemas_dir: Path | None = None) -> list[Registration]:
    """Register the versions each subject lacks, oldest first; what was done, file by file."""
    done: list[Registration] = []
    for schema_file in load_schema_files(schemas_dir):  # sorted by type, then version
        subject = subject_of(topics, schema_file.event_type)
        try:
            schema_id = _registered_id(client, subject, schema_file)
            registered = schema_id is None
            if schema_id is None:
                schema_id = _register(client, subject, schema_file)
        except SchemaRegistryError as exc:
            raise RegistryError(f"{subject} v{schema_file.version}: {exc}") from None
        check_registry_id(schema_id, subject)
        done.append(Registration(subject, schema_file.version, schema_id, registered))
    return done
