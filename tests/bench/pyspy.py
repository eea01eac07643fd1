"""Sampling the worker with py-spy (``--profile``): collapsed stacks on disk, and the functions
where most samples ended (own time), which is where a speed-up has to come from."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r":\d+\)$")  # a frame is "function (file.py:123)"; own time is per function


@dataclass(frozen=True, slots=True)
class Hotspot:
    function: str
    own_share: float
    total_share: float


def py_spy_path() -> str:
    beside_python = Path(sys.executable).with_name("py-spy")
    found = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy (in the test extra)")
    return found


class Recording:
    """``py-spy record --format raw --gil`` attached to ``pid`` until :meth:`stop` (or ``max_s``).

    Only samples of the thread holding the GIL are kept: the worker is one interpreter, so they
    are where its time goes. Without ``--gil`` py-spy also counts threads that only wait (the
    metrics endpoint's select, the watchdog's sleep): a fifth of the samples here."""

    def __init__(self, pid: int, output: Path, max_s: int = 600, rate_hz: int = 100) -> None:
        self.output = output
        self._process = subprocess.Popen(
            [py_spy_path(), "record", "--pid", str(pid), "--format", "raw", "--output", str(output),
             "--rate", str(rate_hz), "--duration", str(max_s), "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        """Ends sampling; py-spy writes its file on SIGINT."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        _, err = self._process.communicate(timeout=60)
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def hotspots(collapsed: Path, top: int = 15) -> dict[str, list[Hotspot]]:
    """From py-spy's collapsed stacks: the ``top`` functions by own samples (where a stack ended;
    time in C code counts for the Python frame that called it), and the project's own
    functions (``streams/``) by inclusive samples, which shows the pipeline's stages."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    per_thread: Counter[str] = Counter()  # samples per outermost frame (one per thread kind)
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        samples += count
        per_thread[frames[0]] += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def spot(name: str) -> Hotspot:
        return Hotspot(name, own[name] / samples, total[name] / samples)

    # Frames in every sample of a thread (the CLI's entry chain) say nothing about where time goes.
    everywhere = set(per_thread.values())
    project = [name for name, n in total.most_common() if "(streams/" in name and n not in everywhere]
    return {"by_own_time": [spot(name) for name, _ in own.most_common(top)],
            "project_by_total_time": [spot(name) for name in project[:top]]}
