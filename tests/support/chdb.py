"""chdb (ClickHouse in process, a modern engine) as the tests' stand-in for a server: a client
with ``clickhouse_driver.Client.execute``'s shape, bound to one database."""

from __future__ import annotations

import json
from typing import Any


def literal(value: Any) -> str:
    """A Python value as a ClickHouse literal (test adapter only: the driver sends binary)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return literal(str(value))  # date: 'YYYY-MM-DD'


class ChdbClient:
    """``clickhouse_driver.Client.execute`` over a chdb session, bound to one database.

    ``version`` replaces the answer to ``SELECT version()`` (to run the 18.16 variants here).
    """

    def __init__(self, session: Any, database: str, version: str | None = None) -> None:
        self.session = session
        self.database = database
        self.version = version
        session.query(f"CREATE DATABASE IF NOT EXISTS {database}")

    def execute(self, query: str, params: Any = None, *, columnar: bool = False, settings: Any = None) -> Any:
        if query.strip() == "SELECT version()" and self.version:
            return [(self.version,)]
        if params is not None:
            assert query.rstrip().endswith("VALUES"), "only INSERT ... VALUES takes data here"
            rows = list(zip(*params, strict=True)) if columnar else params
            values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
            self._run(f"{query} {values}")
            return len(rows)
        return [tuple(row) for row in self.select(query)[1]]

    def disconnect(self) -> None:
        pass

    def select(self, query: str) -> tuple[list[str], list[list[Any]]]:
        result = self._run(query, "JSONCompact")
        if not result:
            return [], []
        doc = json.loads(result)
        return [m["name"] for m in doc["meta"]], doc["data"]

    def dicts(self, query: str) -> list[dict[str, Any]]:
        names, rows = self.select(query)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def _run(self, query: str, fmt: str = "CSV") -> bytes:
        self.session.query(f"USE {self.database}")
        return bytes(self.session.query(query, fmt).bytes())
