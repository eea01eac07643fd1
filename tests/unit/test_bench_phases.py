"""The restart bench's phases, read from a worker's log."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.bench.phases import milestones, phases

LOG = """\
2026-11-29 21:01:46,100 INFO streams.runtime.worker: metrics on http://127.0.0.1:1/metrics
[2026-11-29 21:01:46,802] [11720] [INFO] [^_Worker]: Starting...
[2026-11-29 21:01:46,862] [11720] [INFO] Setting newly assigned partitions
+Topic Partition Set----+
[2026-11-29 21:01:47,175] [11720] [INFO] generation id 19 app consumers id 19
[2026-11-29 21:01:47,187] [11720] [INFO] [^---Recovery]: Recovery complete
[2026-11-29 21:01:47,216] [11720] [INFO] [^---Recovery]: Worker ready
[2026-11-29 21:01:50,000] [11720] [INFO] [^---Recovery]: Worker ready
"""


def at(clock: str) -> float:
    return datetime.strptime(f"2026-11-29 {clock}", "%Y-%m-%d %H:%M:%S.%f").timestamp()


def test_each_milestone_is_its_first_line() -> None:
    assert milestones(LOG.splitlines()) == {
        "started": at("21:01:46.802"), "assigned": at("21:01:46.862"), "loaded": at("21:01:47.175"),
        "recovered": at("21:01:47.187"), "ready": at("21:01:47.216")}


def test_phases_run_from_launch_to_processed() -> None:
    clock = milestones(LOG.splitlines()) | {"launch": at("21:01:46.000"), "processed": at("21:01:48.000")}
    got = phases(clock)
    assert list(got) == ["process start (imports)", "group join and assignment", "store load from disk",
                         "changelog tail", "resume inputs", "first batches"]
    assert got["process start (imports)"] == pytest.approx(0.802)
    assert got["store load from disk"] == pytest.approx(0.313)
    assert got["first batches"] == pytest.approx(0.784)


def test_a_phase_without_both_ends_is_left_out() -> None:
    assert phases({"launch": 1.0, "started": 2.5, "ready": 4.0}) == {"process start (imports)": 1.5}
