"""A /metrics scrape can arrive before the worker's event loop has started: it must not create
Faust's objects on the endpoint's thread (a consumer bound to that thread's event loop left
the worker unable to start: ``ConsumerNotStarted``, or "attached to a different loop")."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from streams.runtime.liveness import Liveness
from streams.runtime.metrics import Metrics
from streams.runtime.worker import build_worker
from streams.settings import load_settings


def test_a_scrape_before_the_start_leaves_the_consumer_on_the_worker_s_event_loop(tmp_path: Path) -> None:
    worker_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(worker_loop)
    try:
        registry = CollectorRegistry()
        pipeline = build_worker(load_settings({}, table_dir=str(tmp_path)), Metrics(registry), Liveness(60.0), {})
        scrape = threading.Thread(target=generate_latest, args=(registry,))
        scrape.start()
        scrape.join()
        consumer = pipeline.app.consumer
        assert consumer.loop is worker_loop  # its thread's start awaits a future of this loop
    finally:
        asyncio.set_event_loop(None)
        worker_loop.close()
