"""The local stack's services as processes, for tests that pause one (``deploy/local/stack``)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import REPO


def service_pid(service: str) -> int:
    """Process id of a local stack service (kafka, clickhouse, prometheus), from its pid file."""
    state = Path(os.environ.get("STREAMS_STATE_DIR", REPO / ".state"))
    return int((state / "run" / f"{service}.pid").read_text())
