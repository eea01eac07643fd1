"""Connections to ClickHouse built from :class:`~streams.settings.Settings`.

One place decides user, password, database and timeouts, so workers, the migration runner and
tests connect the same way. Passwords come from settings as :class:`~streams.settings.Secret`;
this is the one place that reveals them, straight to the driver, and never logs them.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from clickhouse_driver import Client

from streams.settings import Settings

log = logging.getLogger(__name__)

#: Database the admin user connects to before the pipeline's database exists.
ADMIN_DATABASE = "default"


class QueryClient(Protocol):
    """The part of ``clickhouse_driver.Client`` the migration runner uses (tests adapt chdb to it)."""

    def execute(self, query: str, params: object = None) -> object: ...


def connect(settings: Settings, admin: bool = False, *, database: str | None = None) -> Client:
    """A client for the pipeline's database (or ``default`` with ``admin=True``).

    ``admin=True`` uses ``clickhouse_admin_user`` (DDL rights) and connects to ``default`` so it
    works before the pipeline's database exists; pass ``database`` to override either default.
    The client connects lazily, on its first query. Connect, send/receive and sync timeouts are
    all ``settings.clickhouse_timeout_s``. No session settings are sent, so a user of any
    profile can connect, a ``readonly=1`` one included.
    """
    user = settings.clickhouse_admin_user if admin else settings.clickhouse_user
    password = settings.clickhouse_admin_password if admin else settings.clickhouse_password
    target = database or (ADMIN_DATABASE if admin else settings.clickhouse_database)
    timeout = settings.clickhouse_timeout_s
    log.debug(
        "ClickHouse client %s@%s:%s/%s", user, settings.clickhouse_host, settings.clickhouse_port, target
    )
    return Client(
        host=settings.clickhouse_host,
        port=settings.clickhouse_port,
        database=target,
        user=user,
        password=password.reveal(),
        connect_timeout=timeout,
        send_receive_timeout=timeout,
        sync_request_timeout=timeout,
        client_name="streams",
    )


_VERSION = re.compile(r"\d+(?:\.\d+)*")


def parse_version(text: str) -> tuple[int, ...]:
    """``'18.16.1'`` -> ``(18, 16, 1)``; trailing build tags (``-testing``) are ignored."""
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def server_version(client: QueryClient) -> tuple[int, ...]:
    """The server's version as integers, from ``SELECT version()``, e.g. ``(18, 16, 1)``."""
    rows = client.execute("SELECT version()")
    assert isinstance(rows, list) and rows, "SELECT version() returned no row"
    return parse_version(str(rows[0][0]))
