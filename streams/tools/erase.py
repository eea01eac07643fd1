"""``streams erase``: request the erasure of people, and report a request target by target
(docs/operations.md, erasure)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from streams.clickhouse.client import connect
from streams.clickhouse.erasure import request_status
from streams.core.erasure import MAX_ID_LENGTH, ErasureRequest, keyed_hash
from streams.errors import StreamsError
from streams.publisher import Publisher
from streams.settings import Settings, require_erasure_key
from streams.topics import ensure_topics

# How long the request's records may take to be acknowledged by the brokers.
SEND_TIMEOUT_S = 30.0


class ErasureRequestError(StreamsError):
    """An erasure request that names no id, a bad id, or could not be sent."""


def request_erasure(settings: Settings, ids: Sequence[str], request_id: str | None = None) -> str:
    """Publish one erasure request record per id, keyed by the id, and return the request id."""
    require_erasure_key(settings)
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise ErasureRequestError("name at least one customer or anonymous id to erase")
    bad = [i for i in wanted if not i.strip() or len(i) > MAX_ID_LENGTH]
    if bad:
        raise ErasureRequestError(f"{len(bad)} id(s) empty or longer than {MAX_ID_LENGTH} characters")
    request_id = request_id or uuid.uuid4().hex
    requested_at_ms = int(time.time() * 1000)
    ensure_topics(settings)
    with Publisher(settings) as publisher:
        for customer_id in wanted:
            publisher.publish_raw(settings.erasures_topic, customer_id.encode(),
                                  ErasureRequest(request_id, customer_id, requested_at_ms).encode())
        publisher.flush(SEND_TIMEOUT_S)
        counts = publisher.counts
    if counts.sent != len(wanted):
        raise ErasureRequestError(f"request {request_id}: {counts.sent} of {len(wanted)} records acknowledged, "
                                  f"{counts.failed} failed; send it again (the same id may be repeated safely)")
    return request_id


def erasure_status(settings: Settings, request_id: str) -> list[str]:
    """The request's lines, one per erased id and target: status, rows deleted, last update."""
    key = require_erasure_key(settings)
    client = connect(settings, admin=True, database=settings.clickhouse_database)
    try:
        rows = request_status(client, keyed_hash(key, request_id))
    finally:
        client.disconnect()
    if not rows:
        return [f"request {request_id}: not seen yet (its records not processed, or the id is wrong)"]
    lines = []
    for customer_hash, target, status, deleted, updated_at_ms in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(updated_at_ms / 1000))
        lines.append(f"{customer_hash}  {target:20} {status:10} rows={deleted:<8} at {when} UTC")
    return lines
