"""The bench's peer, a Quix Streams application (tests/bench/peer/quix_app.py), run on a run's
topics and measured as the worker is: from its launch until it has read every input record and
committed, CPU time and peak RSS from /proc. It runs in ``.venv-peer`` (``make peer-venv``):
quixstreams pins another confluent-kafka than the project. See docs/benchmarks.md,
"Peer: Quix Streams".
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from streams.core.events import Purchase
from streams.settings import Settings
from streams.tools.oracle import Expected
from tests.bench.report import REPO
from tests.bench.worker_process import cpu_seconds, peak_rss_bytes

PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
PEER_APP = Path(__file__).resolve().parent / "peer" / "quix_app.py"


def pinned_versions() -> dict[str, str]:
    """The versions of quixstreams and confluent-kafka the peer runs, from its requirements."""
    pins = dict(line.split("==", 1) for line in (PEER_APP.parent / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    return {name: pins[name] for name in ("quixstreams[avro]", "confluent-kafka")}


class PeerFailed(Exception):
    """The peer exited, or did not read every record in time."""


@dataclass(frozen=True, slots=True)
class PeerRun:
    seconds: float  # launch -> every record read and the final commit done
    cpu_s: float
    peak_rss_bytes: int
    summary: dict[str, Any]  # what quix_app.py counted


def run_peer(settings: Settings, topics: Sequence[str], records: int, log_path: Path, timeout_s: float,
             keep: bool = False) -> PeerRun:
    """Launch the peer with a fresh consumer group and state directory on ``topics`` (holding
    ``records`` records) and wait for its summary; its topics (changelogs) are deleted after
    unless ``keep``."""
    if not PEER_PYTHON.exists():
        raise PeerFailed(f"{PEER_PYTHON.relative_to(REPO)} is missing: run `make peer-venv` (or pass --no-peer)")
    group = f"{settings.app_id}-quix-peer"
    summary_path = log_path.with_suffix(".json")
    command = [str(PEER_PYTHON), str(PEER_APP), "--bootstrap-servers", settings.kafka_bootstrap_servers,
               "--registry-url", settings.schema_registry_url, "--topics", ",".join(topics), "--group", group,
               "--state-dir", f"{settings.table_dir}-quix-peer", "--records", str(records),
               # The worker's own commit interval: the same bound on work redone after a crash.
               "--commit-interval", str(settings.commit_interval_s), "--summary", str(summary_path)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "ab") as log:
            started_at = time.monotonic()
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_for(summary_path, process, started_at + timeout_s, log_path)
                # It waits for its stdin to close: /proc still has it, as the worker at "exact".
                cpu_s, rss = cpu_seconds(process.pid), peak_rss_bytes(process.pid)
            finally:
                _stop(process)
        summary = json.loads(summary_path.read_text())
    finally:
        if not keep:
            delete_topics_of(settings, group)
    if summary["records"] < records:
        raise PeerFailed(f"read {summary['records']:,} of {records:,} records")
    return PeerRun(summary["done_monotonic"] - started_at, cpu_s, rss, summary)


def _wait_for(summary_path: Path, process: subprocess.Popen[bytes], deadline: float, log_path: Path) -> None:
    while not summary_path.exists():
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise PeerFailed(f"exited with code {process.returncode}; its log ends:\n{tail}")
        if time.monotonic() > deadline:
            raise PeerFailed(f"no summary before the timeout; log in {log_path}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def delete_topics_of(settings: Settings, group: str) -> None:
    """Quix names its changelog topics after the consumer group: ``changelog__<group>--...``."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id=f"{group}-cleanup")
    try:
        doomed = [topic for topic in admin.list_topics() if group in topic]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()


def oracle_differences(summary: dict[str, Any], truth: Expected) -> list[str]:
    """Where the peer's totals differ from the oracle's (it need not follow every rule of ours:
    no identity stitching, for one); empty when they agree."""
    expected = {
        "skipped": len(truth.dead_letters),
        "duplicates": truth.duplicate_count,
        "events": len(truth.accepted),
        "revenue_cents": sum(a.event.amount_cents for a in truth.accepted if isinstance(a.event, Purchase)),
        "customers": len(truth.profiles),
    }
    return [f"{key} {summary[key]:,} (oracle {want:,})" for key, want in expected.items() if summary[key] != want]
