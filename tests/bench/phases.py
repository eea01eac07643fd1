"""Where a restarted worker's time went: milestones read from its log (Faust's and the store's
lines, timestamped to the millisecond) and turned into phases between them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

# In the order they happen; each is the first line that matches.
MILESTONES = (
    ("started", re.compile(r"\[\^_Worker\]: Starting")),                    # imports done
    ("assigned", re.compile(r"Setting newly assigned partitions")),         # group joined, synced
    ("loaded", re.compile(r"generation id \d+ app consumers id \d+")),      # stores opened and loaded
    ("recovered", re.compile(r"\[\^---Recovery\]: Recovery complete")),     # changelog tail read
    ("ready", re.compile(r"\[\^---Recovery\]: Worker ready")),              # inputs resumed
)
# Phase name -> (from, to); "launch" and "processed" are the bench's own clock readings.
PHASES = (
    ("process start (imports)", "launch", "started"),
    ("group join and assignment", "started", "assigned"),
    ("store load from disk", "assigned", "loaded"),
    ("changelog tail", "loaded", "recovered"),
    ("resume inputs", "recovered", "ready"),
    ("first batches", "ready", "processed"),
)
_STAMP = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def milestones(lines: Iterable[str]) -> dict[str, float]:
    """Epoch seconds of each milestone's first line in a worker's log (stamped in local time)."""
    found: dict[str, float] = {}
    for line in lines:
        stamp = _STAMP.match(line)
        if stamp is None:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, pattern in MILESTONES:
            if name not in found and pattern.search(line):
                found[name] = at
    return found


def phases(clock: Mapping[str, float]) -> dict[str, float]:
    """Seconds per phase whose two ends are both in ``clock``."""
    return {name: clock[end] - clock[start] for name, start, end in PHASES if start in clock and end in clock}
