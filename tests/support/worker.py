"""A ``streams worker`` subprocess for integration tests, and polling helpers for them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from tests.conftest import settings_environ


class Worker:
    """A ``streams worker`` subprocess with the test's settings (or another command and its
    arguments: ``streams eraser``, ``streams backfill FILE ...``)."""

    def __init__(self, settings: Settings, log_path: Path, command: str = "worker", *args: str) -> None:
        self.env = settings_environ(settings)
        self.log_path = log_path
        self.command = [command, *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", *self.command], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)

    def run_until_exit(self, timeout_s: float) -> tuple[int, str]:
        """Start the worker and wait for it to exit (a bound on a wait that, when broken, never
        ends); its exit code and log."""
        self.start()
        assert self.process is not None
        return self.process.wait(timeout=timeout_s), self.log_path.read_text()

    def log_tail(self, chars: int) -> str:
        """The end of its log, for a teardown to print; empty when it never started."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stack_dump(self) -> str:
        """Every thread's Python and native stack (py-spy), for a failure message."""
        assert self.process is not None
        py_spy = Path(sys.executable).with_name("py-spy")
        try:
            dump = subprocess.run([str(py_spy), "dump", "--native", "--pid", str(self.process.pid)],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"py-spy dump failed: {error}"
        return f"py-spy dump (exit {dump.returncode}):\n{dump.stdout}{dump.stderr}"

    def metric(self, port: int, name: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def samples(self, port: int, name: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every sample named ``name`` (with its suffix, e.g. ``_total``)."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return [(sample.labels, sample.value) for family in text_string_to_metric_families(body)
                for sample in family.samples if sample.name == name]


def wait_until(condition: Callable[[], bool], timeout_s: float = 120, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except OSError:  # the worker's /metrics is not up yet
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll_s)
