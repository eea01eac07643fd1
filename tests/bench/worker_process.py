"""A ``streams worker`` subprocess, configured only through ``STREAMS_*`` variables, and what
/proc tells about it (CPU time, peak RSS). The worker is a black box here."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from streams.settings import Settings
from tests.bench.workload import free_port
from tests.conftest import settings_environ

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of process ``pid``: its resident set's high-water mark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


class WorkerProcess:
    """One worker process; ``started_at`` is the ``time.monotonic()`` of its launch."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.env = settings_environ(settings)
        self.log_path = log_path
        self.started_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self._process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=self.env,
                                         stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """None while running; negative: killed by that signal."""
        return None if self._process is None else self._process.poll()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        return cpu_seconds(self.pid)

    def peak_rss_bytes(self) -> int:
        """VmHWM: the resident set's high-water mark."""
        return peak_rss_bytes(self.pid)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """``how`` (SIGTERM), then SIGKILL after 30 s."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(how)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class WorkerGroup:
    """``count`` workers of one consumer group, launched together and watched as one: each has
    its own table directory and metrics port; the group is alive while all of them are."""

    def __init__(self, settings: Settings, count: int, log_dir: Path, label: str) -> None:
        self.workers = [
            WorkerProcess(dataclasses.replace(settings, table_dir=f"{settings.table_dir}-w{i}",
                                              metrics_port=free_port()), log_dir / f"worker-{label}-w{i}.log")
            for i in range(count)
        ]

    @property
    def started_at(self) -> float:
        return self.workers[0].started_at

    @property
    def returncode(self) -> int | None:
        return next((w.returncode for w in self.workers if w.returncode is not None), None)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def alive(self) -> bool:
        return all(worker.alive() for worker in self.workers)

    def cpu_seconds(self) -> list[float]:
        return [worker.cpu_seconds() for worker in self.workers]

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"-- {w.log_path.name}:\n{w.log_tail(chars)}" for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
