"""Insert errors sorted into those the sink waits out and those a person must fix, with the
exceptions clickhouse-driver raises (codes as ClickHouse 18.16 and modern servers send them)."""

from __future__ import annotations

import struct

import pytest
from clickhouse_driver.errors import (
    ErrorCodes,
    NetworkError,
    ServerException,
    SocketTimeoutError,
    TypeMismatchError,
    UnexpectedPacketFromServerError,
)

from streams.clickhouse.errors import classify, describe


def server(code: int) -> ServerException:
    return ServerException("DB::Exception: something", code=code)


@pytest.mark.parametrize(("code", "reason"), [
    (ErrorCodes.UNKNOWN_TABLE, "schema"),
    (ErrorCodes.NO_SUCH_COLUMN_IN_TABLE, "schema"),
    (ErrorCodes.UNKNOWN_IDENTIFIER, "schema"),
    (ErrorCodes.THERE_IS_NO_COLUMN, "schema"),
    (ErrorCodes.UNKNOWN_DATABASE, "schema"),
    (ErrorCodes.TYPE_MISMATCH, "rows"),
    (ErrorCodes.CANNOT_PARSE_TEXT, "rows"),
    (ErrorCodes.UNKNOWN_USER, "credentials"),
    (ErrorCodes.WRONG_PASSWORD, "credentials"),
    (ErrorCodes.REQUIRED_PASSWORD, "credentials"),
    (ErrorCodes.IP_ADDRESS_NOT_ALLOWED, "credentials"),
    (516, "credentials"),  # AUTHENTICATION_FAILED, modern servers
    (ErrorCodes.READONLY, "permissions"),
    (ErrorCodes.DATABASE_ACCESS_DENIED, "permissions"),
    (497, "permissions"),  # ACCESS_DENIED, modern servers
])
def test_errors_only_a_person_can_fix_are_not_retried(code: int, reason: str) -> None:
    verdict = classify(server(code))
    assert (verdict.reason, verdict.retryable) == (reason, False)
    assert verdict.fix


@pytest.mark.parametrize(("code", "reason"), [
    (ErrorCodes.TOO_MANY_PARTS, "overloaded"),
    (ErrorCodes.MEMORY_LIMIT_EXCEEDED, "overloaded"),
    (ErrorCodes.TIMEOUT_EXCEEDED, "overloaded"),
    (ErrorCodes.TOO_MANY_SIMULTANEOUS_QUERIES, "overloaded"),
    (ErrorCodes.NOT_ENOUGH_SPACE, "overloaded"),
    (ErrorCodes.TABLE_IS_READ_ONLY, "overloaded"),
    (ErrorCodes.NETWORK_ERROR, "network"),
    (ErrorCodes.SOCKET_TIMEOUT, "network"),
    (1000, "server"),  # an unknown server error is retried; the unhealthy report surfaces it
])
def test_errors_that_pass_by_themselves_are_retried(code: int, reason: str) -> None:
    verdict = classify(server(code))
    assert (verdict.reason, verdict.retryable) == (reason, True)


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
    EOFError("Unexpected EOF while reading bytes"),
    NetworkError("Connection refused (127.0.0.1:19000)"),
    SocketTimeoutError("Timed out reading from socket"),
])
def test_connection_errors_are_network_and_retried(exc: Exception) -> None:
    verdict = classify(exc)
    assert (verdict.reason, verdict.retryable) == ("network", True)


def test_rows_the_driver_cannot_encode_for_the_tables_columns_are_not_retried() -> None:
    for exc in (TypeMismatchError("Type mismatch in VALUES section"), TypeError("not an integer"),
                struct.error("ushort format requires 0 <= number <= 65535"), OverflowError("int too big")):
        assert classify(exc).reason == "rows"
        assert not classify(exc).retryable


def test_other_client_errors_are_retried_as_unknown() -> None:
    assert classify(UnexpectedPacketFromServerError("Unexpected packet")).reason == "server"
    assert classify(RuntimeError("?")).reason == "unknown"
    assert classify(RuntimeError("?")).retryable


def test_the_description_has_the_code_and_the_servers_message_not_just_the_code_line() -> None:
    exc = ServerException("DB::Exception: Wrong password for user writer", code=193)
    assert str(exc).splitlines()[0] == "Code: 193."
    assert describe(exc) == "ServerException (code 193): DB::Exception: Wrong password for user writer"
    on_18_16 = ServerException("DB::Exception: Wrong password for user writer. Stack trace:\n\n0. clickhouse", code=193)
    assert describe(on_18_16) == "ServerException (code 193): DB::Exception: Wrong password for user writer"
    assert describe(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
