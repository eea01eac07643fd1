"""Full rows for the pipeline's tables, for tests that write them directly."""

from __future__ import annotations

from typing import Any

from streams.clickhouse.tables import TABLES


def row(table: str, **values: Any) -> dict[str, Any]:
    """A full row of ``table``: zero/empty defaults for every column, then ``values``."""
    out: dict[str, Any] = {}
    for column in TABLES[table].columns:
        if column.type.startswith("Nullable"):
            out[column.name] = None
        elif column.type.startswith("Array"):
            out[column.name] = []
        elif column.type == "String":
            out[column.name] = ""
        else:
            out[column.name] = 0
    unknown = values.keys() - out.keys()
    assert not unknown, unknown
    out.update(values)
    return out
