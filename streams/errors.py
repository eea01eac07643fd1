"""One exception root for the project; every error the pipeline raises on purpose is below it."""

from __future__ import annotations


class StreamsError(Exception):
    """Root of the project's errors."""


class SettingsError(StreamsError):
    """Invalid configuration: the message names the variable and what is expected."""


class DecodeError(StreamsError):
    """A record could not be turned into an event. ``reason`` is a stable code (docs/definitions.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ValidationError(DecodeError):
    """A decoded event breaks a field rule; ``field`` names it."""

    def __init__(self, field: str, problem: str, reason: str = "invalid_field") -> None:
        super().__init__(reason, f"{field}: {problem}")
        self.field = field


class SinkError(StreamsError):
    """ClickHouse refused or could not take a batch."""


class SinkRejected(SinkError):
    """ClickHouse refused a batch for a reason that retrying cannot fix; the message says what to
    fix. ``reason`` is the cause's short name (``streams.clickhouse.errors``)."""

    def __init__(self, table: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.table = table
        self.reason = reason
