"""Numbers and rows as people read them: ``1,234 events``, ``3.6 s``, ``2 min 5 s``, ``EUR 12.34``.

Pure functions for what the command line prints (``streams demo``, ``streams report``); the
values come from ClickHouse or the worker's metrics unformatted.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Columns whose integer values are cents of the reporting currency.
CENTS_SUFFIX = "_cents"
#: Columns whose values are durations in seconds, and in milliseconds.
SECONDS_SUFFIX = "_seconds"
MILLISECONDS_SUFFIX = "_ms_total"


def count(value: float, unit: str = "") -> str:
    """``1234`` -> ``1,234``; a non-integer keeps one decimal; ``unit`` follows after a space."""
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{text} {unit}" if unit else text


def duration(seconds: float) -> str:
    """``0.25`` -> ``250 ms``, ``3.61`` -> ``3.6 s``, ``125`` -> ``2 min 5 s``, ``7260`` -> ``2 h 1 min``,
    ``90000`` -> ``1 d 1 h``; negative durations carry a minus sign."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.5:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    whole = round(seconds)
    if whole < 3_600:
        return _two_units(whole, 60, "min", 1, "s")
    if whole < 86_400:
        return _two_units(whole, 3_600, "h", 60, "min")
    return _two_units(whole, 86_400, "d", 3_600, "h")


def _two_units(whole: int, size: int, unit: str, smaller_size: int, smaller_unit: str) -> str:
    rest = (whole % size) // smaller_size
    return f"{whole // size} {unit}" + (f" {rest} {smaller_unit}" if rest else "")


def money(cents: int, currency: str) -> str:
    """Integer cents -> ``EUR 12.34`` (thousands separated; negative amounts keep their sign)."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{currency} {sign}{whole:,}.{rest:02d}"


def value(name: str, raw: Any, currency: str) -> str:
    """One column's value as text, by what its name says it holds (see the data dictionary)."""
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, int) and name.endswith(CENTS_SUFFIX):
        return money(raw, currency)
    if isinstance(raw, int | float) and name.endswith(SECONDS_SUFFIX):
        return duration(raw)
    if isinstance(raw, int) and name.endswith(MILLISECONDS_SUFFIX):
        return duration(raw / 1000)
    if isinstance(raw, float):
        return "-" if math.isnan(raw) else f"{raw:,.2f}"
    if isinstance(raw, int):
        return count(raw) if not name.endswith("_ms") else str(raw)  # epoch ms read better unseparated
    if isinstance(raw, dt.datetime):
        return raw.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(raw, list | tuple):
        return ", ".join(str(item) for item in raw) or "-"
    return str(raw)


def vertical(row: Mapping[str, Any], currency: str, indent: str = "   ") -> list[str]:
    """A wide row as ``name  value`` lines, the values aligned in one column."""
    width = max((len(name) for name in row), default=0)
    return [f"{indent}{name:<{width}}  {value(name, raw, currency)}" for name, raw in row.items()]


def table(names: Sequence[str], rows: Sequence[Sequence[Any]], currency: str, indent: str = "   ") -> list[str]:
    """Narrow rows as an aligned table: text left, numbers right."""
    cells = [[value(name, raw, currency) for name, raw in zip(names, row, strict=True)] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
               for i in range(len(names))]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(names)]

    def line(texts: Sequence[str]) -> str:
        padded = (t.rjust(w) if right else t.ljust(w) for t, w, right in zip(texts, widths, numeric, strict=True))
        return (indent + "  ".join(padded)).rstrip()

    return [line(names)] + [line(texts) for texts in cells]
