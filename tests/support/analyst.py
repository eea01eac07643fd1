"""The read-only analyst user of deploy/clickhouse/users.xml, as tests connect with it."""

from __future__ import annotations

import dataclasses
import os

from streams.settings import Secret, Settings

#: users.xml's local-only analyst password (deploy/local/local.env holds only the workers' ones).
ANALYST_PASSWORD = os.environ.get("STREAMS_TEST_ANALYST_PASSWORD", "analyst-local")


def as_analyst(settings: Settings) -> Settings:
    """``settings`` with the analyst's login instead of the writer's."""
    return dataclasses.replace(settings, clickhouse_user="analyst", clickhouse_password=Secret(ANALYST_PASSWORD))
