"""The Schema Registry client and ``streams schemas`` against the local Apicurio Registry.

Each test has its own topic prefix, hence its own subjects. Apicurio numbers schemas by
content, so the same schema has the same id under every subject.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from streams.cli import main
from streams.contracts.codec import Codec
from streams.contracts.confluent import ConfluentRegistry, client_from_settings
from streams.contracts.registry import (
    SCHEMAS_DIR,
    RegistryError,
    is_embedded_id,
    load_schema_files,
    registry_from_settings,
)
from streams.contracts.subjects import IncompatibleSchemaError, register_contracts
from streams.core.events import Click, EventType
from streams.errors import DecodeError
from streams.settings import Settings

pytestmark = pytest.mark.integration

CLICK = Click("e-1", "c-1", 1_795_000_000_000, "web", None, "/", None, None)


@pytest.fixture()
def registry_settings(settings: Settings, schema_registry_url: str) -> Settings:
    return dataclasses.replace(settings, schema_registry_url=schema_registry_url)


def test_codec_round_trip_through_the_registry_with_a_fresh_client(registry_settings: Settings) -> None:
    value = Codec(registry_from_settings(registry_settings)).encode(CLICK)
    schema_id = int.from_bytes(value[1:5], "big")
    assert not is_embedded_id(schema_id)
    reader = Codec(registry_from_settings(registry_settings))
    assert reader.decode(value, EventType.CLICK) == CLICK
    client = client_from_settings(registry_settings)
    subject = f"{registry_settings.input_topics['click']}-value"
    assert client.get_latest_version(subject).schema_id == schema_id


def test_unknown_id_is_the_records_fault_an_outage_is_not(registry_settings: Settings) -> None:
    unknown = (2_000_000_000).to_bytes(4, "big")  # below the embedded range: the registry's to answer
    codec = Codec(registry_from_settings(registry_settings))
    for _ in range(2):  # the second time from the cache of unknown ids
        with pytest.raises(DecodeError) as raised:
            codec.decode(b"\x00" + unknown + b"\x00")
        assert raised.value.reason == "unknown_schema"
    wrong_url = f"{registry_settings.schema_registry_url}/x"
    wrong_path = dataclasses.replace(registry_settings, schema_registry_url=wrong_url)
    with pytest.raises(RegistryError):  # a bare 404 from a wrong URL is an outage, not an unknown id
        ConfluentRegistry(client_from_settings(wrong_path), wrong_path.input_topics).schema(1)
    unreachable = dataclasses.replace(registry_settings, schema_registry_url="http://127.0.0.1:9")
    with pytest.raises(RegistryError):  # not the record's fault: no DecodeError, nothing dead-lettered
        Codec(registry_from_settings(unreachable)).decode(b"\x00\x00\x00\x00\x4d\x00")


def test_schemas_command_registers_every_version_in_order_once(
        registry_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMS_TOPIC_PREFIX", registry_settings.topic_prefix)
    monkeypatch.setenv("STREAMS_SCHEMA_REGISTRY_URL", registry_settings.schema_registry_url)
    contracts = load_schema_files()
    assert main(["schemas"]) == 0
    first = capsys.readouterr().out
    assert f"registered {len(contracts)} new, 0 already there" in first
    assert f"{registry_settings.topic_prefix}.clicks-value v2: registered" in first
    assert f"{registry_settings.topic_prefix}.identifies-value v1: registered" in first
    assert main(["schemas"]) == 0
    assert f"registered 0 new, {len(contracts)} already there" in capsys.readouterr().out
    client = client_from_settings(registry_settings)
    clicks = f"{registry_settings.topic_prefix}.clicks-value"
    assert client.get_versions(clicks) == [c.version for c in contracts if c.event_type is EventType.CLICK]
    v1, v2 = (json.loads(client.get_version(clicks, v).schema.schema_str) for v in (1, 2))
    assert [f["name"] for f in v2["fields"]][:len(v1["fields"])] == [f["name"] for f in v1["fields"]]


def test_schemas_command_refuses_an_incompatible_version_naming_it(registry_settings: Settings, tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, schemas, ignore=shutil.ignore_patterns("*.md"))
    kept = [c.version for c in load_schema_files() if c.event_type is EventType.CLICK]
    retyped = json.loads((schemas / "click" / f"v{kept[-1]}.avsc").read_text())
    for field in retyped["fields"]:
        if field["name"] == "page":
            field["type"] = "long"  # a retyped field: old records could not be read
    new = kept[-1] + 1
    (schemas / "click" / f"v{new}.avsc").write_text(json.dumps(retyped))
    client = client_from_settings(registry_settings)
    clicks = f"{registry_settings.topic_prefix}.clicks-value"
    with pytest.raises(IncompatibleSchemaError,
                       match=rf"{clicks}: click/v{new}.avsc \(version {new}\) is not compatible"):
        register_contracts(client, registry_settings.input_topics, schemas)
    assert client.get_versions(clicks) == kept
