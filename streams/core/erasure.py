"""Erasure rules (docs/definitions.md, erasure): what a request is, and the keyed hash that
stands for an id wherever the pipeline must remember an erased person without naming them."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from streams.errors import DecodeError

# Hex digits of the keyed hash kept: 128 bits, far from any collision among customer ids.
HASH_HEX_DIGITS = 32
# The longest id a request may name: the contracts' longest customer or anonymous id.
MAX_ID_LENGTH = 256


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, as hex: without the key it names no one, and
    the same id always gives the same hash, so a suppression record finds the id's replays."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_DIGITS]


def suppression_key(id_hash: str) -> str:
    """State key of the suppression record of an erased id (on the id's partition)."""
    return f"x:{id_hash}"


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """One id to erase, as one record of the erasures topic (keyed by the id).

    ``request_id`` names the request that asked for it, shared by every id of one request and
    by the anonymous ids an erased customer was identified from."""

    request_id: str
    customer_id: str
    requested_at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "customer_id": self.customer_id,
                "requested_at_ms": self.requested_at_ms}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_json())


def read_request(value: bytes | None) -> ErasureRequest:
    """An erasure request from its record's value (JSON, see schemas/README.md), or a
    :class:`DecodeError` that says what is wrong."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError as error:
        raise DecodeError("bad_erasure_request", f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise DecodeError("bad_erasure_request", "expected a JSON object")
    request_id, customer_id, requested_at = (data.get(name) for name in
                                             ("request_id", "customer_id", "requested_at_ms"))
    if not isinstance(request_id, str) or not request_id.strip():
        raise DecodeError("bad_erasure_request", "request_id must be a non-empty string")
    if not isinstance(customer_id, str) or not customer_id.strip() or len(customer_id) > MAX_ID_LENGTH:
        raise DecodeError("bad_erasure_request", f"customer_id must be a non-empty string of at most "
                                                 f"{MAX_ID_LENGTH} characters")
    if not isinstance(requested_at, int) or isinstance(requested_at, bool) or requested_at < 0:
        raise DecodeError("bad_erasure_request", "requested_at_ms must be a non-negative integer")
    return ErasureRequest(request_id, customer_id, requested_at)
