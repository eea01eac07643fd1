"""Erasure scenarios over simulated traffic: which people to erase, and the checks that they
are gone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.core.events import Identify
from streams.settings import Settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimRecord


def people_to_erase(records: Sequence[SimRecord], cut: int, settings: Settings) -> frozenset[str]:
    """Three customers of the first ``cut`` records: the sharer with the most credits, the
    referred customer with the most, and the customer with the most devices identified as it.
    None of them is named by an identify after the cut (docs: the oracle's erasure rule)."""
    named_later = {r.event.customer_id for r in records[cut:] if isinstance(r.event, Identify)}
    truth = expected(records[:cut], settings)
    known = [c for c in truth.credits.values() if not c["sharer_anonymous"] and not c["referred_anonymous"]]
    devices: dict[str, int] = {}
    for customer in truth.identities.values():
        devices[customer] = devices.get(customer, 0) + 1
    chosen: list[str] = []
    for ranking in (_most(c["sharer_customer_id"] for c in known), _most(c["referred_customer_id"] for c in known),
                    sorted(devices, key=lambda c: (-devices[c], c))):
        chosen.append(next(c for c in ranking if c not in chosen and c not in named_later))
    return frozenset(chosen)


def _most(ids: Iterable[str]) -> list[str]:
    counts: dict[str, int] = {}
    for found in ids:
        counts[found] = counts.get(found, 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))


def mentions(values: Mapping[str, bytes], ids: Iterable[str]) -> list[str]:
    """The state keys whose key or value contains one of ``ids`` (JSON-quoted, so that "c-1"
    does not match inside "c-10")."""
    quoted = [(f'"{i}"'.encode(), f":{i}") for i in ids]
    return sorted(key for key, value in values.items()
                  if any(q in value or key.endswith(suffix) for q, suffix in quoted))


def rows_naming(tables: Mapping[str, Iterable[Mapping[str, Any]]], targets: Mapping[str, Sequence[str]],
                ids: Iterable[str]) -> dict[str, int]:
    """Per table, the rows whose id columns (``targets``) name one of ``ids``."""
    wanted = set(ids)
    counts = {table: sum(1 for row in rows if any(row.get(column) in wanted for column in targets[table]))
              for table, rows in tables.items() if table in targets}
    return {table: n for table, n in counts.items() if n}
