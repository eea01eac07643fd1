"""The worker's HTTP endpoint, one port: Prometheus metrics on ``/metrics`` and liveness on
``/healthz`` (200 while the worker makes progress, 503 with the reason once it is stalled;
``streams.runtime.liveness``). Served from a thread, so it answers while the event loop is busy."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from streams.runtime.liveness import Health


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds: no access log."""


def serve(host: str, port: int, registry: CollectorRegistry, health: Callable[[], Health]) -> WSGIServer:
    """Start serving in a daemon thread; returns the server (``shutdown()`` stops it)."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)
        verdict = health()
        body = json.dumps({"status": "ok" if verdict.healthy else "stalled", "reason": verdict.reason,
                           "stalled_seconds": round(verdict.stalled_s, 1),
                           "waiting_records": verdict.waiting}).encode()
        start_response("200 OK" if verdict.healthy else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="http-endpoint", daemon=True).start()
    return server
