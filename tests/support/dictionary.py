"""docs/data-dictionary.md read for tests: the columns it documents per table and view."""

from __future__ import annotations

import re
from pathlib import Path

DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"


def documented_columns() -> dict[str, list[str]]:
    """Section name -> the columns its table lists (``### a / b`` documents both a and b)."""
    out: dict[str, list[str]] = {}
    names: list[str] = []
    for line in DICTIONARY.read_text().splitlines():
        if line.startswith("### "):
            names = [n.strip() for n in line[4:].split("/")]
            for name in names:
                out[name] = []
        elif names and (match := re.match(r"^\| `(\w+)` \|", line)):
            for name in names:
                out[name].append(match.group(1))
    return out
