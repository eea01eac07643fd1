"""Instructions per input record of the processing stages, counted by valgrind, for comparing
revisions: ``python -m tests.bench.stage_instructions [--events N] [--customers N] REV [REV ...]``.

``tests.bench.stage_bench`` measures the stages in CPU seconds, and on a shared machine two runs
of the same code differ by 10-20 %: a step worth 2 % does not show. This counts the instructions
the process executes instead, which do not depend on what else the machine runs (the hash seed
is fixed, so dict and set order is too). Each revision is checked out in a scratch worktree and
its stages run over the simulator's traffic under cachegrind twice: once up to the records
published in memory, once through both stages, the sink's buffer and its insert columns. The
difference, per input record, is the stages' work, the sink's, and the in-memory routing of
records between the stages (``tests.support.inmemory``), which is the same for every revision.

Instructions are not time: cache misses and memory stalls do not count, and a step that trades
instructions for allocations may not pay. Confirm a step with ``stage_bench`` (alternated pairs)
and ``make bench`` too. What is compared is each revision's ``streams/`` and ``tests/support/``;
the harness below and the installed compiled part (``native/``) are the current checkout's, so a
change to ``native/`` is not measured here (``codec_bench`` measures it). Needs valgrind
(``apt install valgrind``); a run of 5,000 events takes about a minute per revision.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# A backlog's batches: whole fetches, larger than the worker's limit for live traffic
# (STREAMS_BATCH_MAX_EVENTS). Fixed, so that revisions with other defaults count the same batches.
BACKLOG_BATCH = 2_000


class _IntoSink:
    """Wraps a stage's ``process``: its rows go into the sink's buffer, as in the worker."""

    def __init__(self, process: Callable[[Sequence[Any]], Any], sink: Any) -> None:
        self.process = process
        self.sink = sink

    def __call__(self, records: Sequence[Any]) -> Any:
        out = self.process(records)
        for table, row in out.rows:
            self.sink.add(table, row)
        return out


def _child(events: int, customers: int, run: bool) -> None:
    """In the revision's worktree (its ``streams`` and ``tests.support`` on the path)."""
    from streams.clickhouse.sink import ClickHouseSink
    from streams.settings import load_settings
    from streams.tools.simulate import SimulationConfig, generate
    from tests.support.inmemory import InMemoryPipeline

    class NoServer:
        def execute(self, *_: object, **__: object) -> None:
            pass

        def disconnect(self) -> None:
            pass

    settings = load_settings({})
    records = generate(SimulationConfig(seed=7, customers=customers, events=events))
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records)
    sink = ClickHouseSink(settings, NoServer)
    for stage in (pipeline.profile_stage, pipeline.referral_stage):
        stage.process = _IntoSink(stage.process, sink)  # type: ignore[method-assign]
    # Rows go to the sink only: the in-memory row store is the oracle tests' (and how it keeps
    # rows is test code, which must not count).
    pipeline.rows.add = lambda table, row: None  # type: ignore[method-assign]
    if run:
        pipeline.run(random.Random(1), BACKLOG_BATCH)
        asyncio.run(sink.flush())


def _instructions(tree: Path, events: int, customers: int, run: bool) -> int:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, str(Path(__file__).resolve()), "--child", "run" if run else "setup",
               "--events", str(events), "--customers", str(customers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tree), os.environ.get("PYTHONPATH")))),
           "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the {'run' if run else 'setup'} under valgrind failed in {tree}:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_record(revision: str, events: int, customers: int) -> float:
    """Instructions per input record of the stages at ``revision`` (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="stage-instructions-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(tree), revision],
                       check=True)
        try:
            setup = _instructions(tree, events, customers, run=False)
            return (_instructions(tree, events, customers, run=True) - setup) / events
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def _commit(revision: str) -> str:
    """The commit ``revision`` names, checked before minutes of valgrind are spent on others."""
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise SystemExit(f"{revision!r} names no commit of {ROOT}")
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="*", metavar="REV", help="commits to compare (the first is the base)")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=2_500)
    parser.add_argument("--child", choices=("setup", "run"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.events, args.customers, args.child == "run")
        return
    if not args.revisions:
        parser.error("name at least one revision, e.g. HEAD~1 HEAD")
    if args.events < 1:
        parser.error("--events must be at least 1")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt install valgrind")
    commits = [_commit(revision) for revision in args.revisions]
    base = None
    for revision, commit in zip(args.revisions, commits, strict=True):
        count = per_record(commit, args.events, args.customers)
        base = base or count
        print(f"{revision:>12}  {count:>10,.0f} instructions per input record  {count / base:6.3f} of the first",
              flush=True)


if __name__ == "__main__":
    main()
