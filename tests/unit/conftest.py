"""Unit tests run with the network blocked: pure logic only, no broker, no database."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import faust
import pytest


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkBlocked(f"unit tests may not open network connections (to {address!r})")

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


@pytest.fixture()
def app() -> Iterator[faust.App]:
    """An unstarted Faust app on the exact:// transport, with an event loop of its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield faust.App("unit-tests", broker="exact://127.0.0.1:1", loop=loop, web_enabled=False,
                        autodiscover=False, store="memory://")
    finally:
        asyncio.set_event_loop(None)
        loop.close()
