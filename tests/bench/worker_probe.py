"""What a long run reads from a running worker besides CPU and peak memory: its resident set
now, a metric from its /metrics endpoint, and whether it is ready to take traffic."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from streams.settings import PREFIX
from tests.bench.phases import milestones
from tests.bench.worker_process import WorkerProcess


def resident_bytes(pid: int | str = "self") -> int:
    """VmRSS of a process (this one by default): its resident set now (a worker's
    ``peak_rss_bytes`` is the high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


def metric(worker: WorkerProcess, name: str) -> float | None:
    """The sum of a metric's samples on the worker's /metrics; None while it does not answer."""
    port = worker.env[PREFIX + "METRICS_PORT"]
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith((name + "{", name + " ")))


def wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> float:
    """Wait for the worker's "Worker ready" line (partitions assigned, inputs resumed), so that
    what is published next is timed against a worker that can take it; seconds since launch."""
    deadline = time.monotonic() + timeout_s
    while "ready" not in milestones(worker.log_tail(1_000_000).splitlines()):
        if not worker.alive():
            raise RuntimeError(f"worker exited ({worker.returncode}):\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker not ready after {timeout_s:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.2)
    return time.monotonic() - worker.started_at
