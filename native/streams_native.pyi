"""The pipeline's compiled hot path (native/src/lib.rs)."""

from collections.abc import Callable, Sequence
from typing import Any

class RecordReader:
    """Reads Avro record bodies written with one schema into objects built by one callable."""

    def __init__(self, schema: str, wanted: Sequence[str], converters: Sequence[Callable[[Any], Any] | None],
                 build: Callable[..., Any]) -> None:
        """``schema``: the writer's schema as JSON, a record. ``wanted``: the fields passed to
        ``build``, in its argument order; each must be in the schema. ``converters``: one per
        wanted field (None: the value as decoded). Raises ValueError for a schema it cannot read."""

    def read(self, value: bytes, start: int) -> Any:
        """The object built from the body in ``value[start:]``; ValueError names the field when
        the body does not fit the schema."""

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``), as an
    unsigned 32-bit int."""
