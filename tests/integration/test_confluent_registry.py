"""The Confluent Schema Registry client over real HTTP, against an in-process fake of its API.

No local stack needed, but it opens sockets, so it lives with the integration tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from streams.contracts.codec import Codec
from streams.contracts.registry import ConfluentRegistry, RegistryError, UnknownSchemaError
from streams.core.events import Click, EventType
from streams.settings import load_settings

TOPICS = load_settings({}).input_topics
CLICK = Click("e-1", "c-1", 1_795_000_000_000, "web", None, "/", None, None)


class _FakeConfluent(BaseHTTPRequestHandler):
    """The two endpoints of the Confluent API the client uses, held in memory."""

    schemas: ClassVar[dict[int, str]] = {}
    subjects: ClassVar[dict[str, list[int]]] = {}
    requests: ClassVar[list[str]] = []

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        if not self.path.startswith("/schemas/ids/"):
            self._reply(404, {"message": "no such page"})
            return
        schema_id = int(self.path.rsplit("/", 1)[-1])
        if schema_id in self.schemas:
            self._reply(200, {"schema": self.schemas[schema_id]})
        else:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def do_POST(self) -> None:
        self.requests.append(f"POST {self.path}")
        subject = self.path.split("/")[2]
        text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
        known = [i for i, s in self.schemas.items() if s == text]
        schema_id = known[0] if known else len(self.schemas) + 1
        self.schemas[schema_id] = text
        self.subjects.setdefault(subject, []).append(schema_id)
        self._reply(200, {"id": schema_id})

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def confluent_url() -> Iterator[str]:
    _FakeConfluent.schemas, _FakeConfluent.subjects, _FakeConfluent.requests = {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeConfluent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_confluent_registers_under_topic_name_strategy_and_caches(confluent_url: str) -> None:
    registry = ConfluentRegistry(confluent_url, TOPICS)
    schema_id, schema = registry.latest(EventType.CLICK)
    assert registry.latest(EventType.CLICK) == (schema_id, schema)
    assert _FakeConfluent.subjects == {"interactions.clicks-value": [schema_id]}
    assert _FakeConfluent.requests == ["POST /subjects/interactions.clicks-value/versions"]


def test_confluent_codec_round_trip_with_a_fresh_client(confluent_url: str) -> None:
    value = Codec(ConfluentRegistry(confluent_url, TOPICS)).encode(CLICK)
    reader = Codec(ConfluentRegistry(confluent_url, TOPICS))
    assert reader.decode(value, EventType.CLICK) == CLICK
    assert reader.decode(value, EventType.CLICK) == CLICK
    assert _FakeConfluent.requests.count(f"GET /schemas/ids/{int.from_bytes(value[1:5], 'big')}") == 1


def test_confluent_unknown_id_and_outage_are_told_apart(confluent_url: str) -> None:
    with pytest.raises(UnknownSchemaError):
        ConfluentRegistry(confluent_url, TOPICS).schema(77)
    with pytest.raises(RegistryError):  # a wrong URL is an outage too, not an unknown id
        ConfluentRegistry(confluent_url + "/wrong", TOPICS).schema(77)
    unreachable = ConfluentRegistry("http://127.0.0.1:9", TOPICS, timeout_s=1.0)
    with pytest.raises(RegistryError):
        unreachable.schema(77)
    with pytest.raises(RegistryError):  # an outage is not the record's fault: no DecodeError
        Codec(unreachable).decode(b"\x00\x00\x00\x00\x4d\x00")
