"""What an insert error means for the sink: wait and retry, or stop and have someone fix it (pure).

Retrying is right when the cause goes away by itself: the server is down, slow, merging too
many parts or out of memory for a moment. It is wrong when only a person can fix the cause:
the table or a column is missing (migrations not applied), the credentials are wrong, the user
may not insert, or the rows do not fit the table's types. Retried forever, those look like a
slow stall; they stop the worker instead, with the fix in the message. An unknown error is
retried: the sink's unhealthy report (``STREAMS_SINK_MAX_RETRIES``) brings it to an operator.

Error codes are ClickHouse's (``src/Common/ErrorCodes.cpp``), the same on 18.16 and modern
servers; 497 and 516 exist only on modern ones. clickhouse-driver puts the code on its
``ServerException`` and on its own client-side errors (``TypeMismatchError`` is 53).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: str  # bounded: the metric label and the log's word for the cause
    retryable: bool
    fix: str = ""  # for a person, when not retryable; {table}, {database} and {user} are filled in


_MIGRATE = ("the table {database}.{table} does not match this version of the pipeline: run "
            "`streams migrate` with the same STREAMS_CLICKHOUSE_DATABASE, then restart the worker")
_CREDENTIALS = ("ClickHouse does not accept user {user!r}: check STREAMS_CLICKHOUSE_USER and "
                "STREAMS_CLICKHOUSE_PASSWORD (and the user's allowed networks), then restart the worker")
_PERMISSIONS = ("user {user!r} may not insert into {database}.{table}: give it a profile with readonly=0 "
                "and INSERT on the database (deploy/clickhouse/users.xml), or set STREAMS_CLICKHOUSE_USER "
                "to the writer user, then restart the worker")
_ROWS = ("rows do not fit the columns of {database}.{table}: the table differs from this version's "
         "migrations (check `streams migrate --dry-run` and the table's columns) or the pipeline has a bug")

SCHEMA = Verdict("schema", False, _MIGRATE)
CREDENTIALS = Verdict("credentials", False, _CREDENTIALS)
PERMISSIONS = Verdict("permissions", False, _PERMISSIONS)
ROWS = Verdict("rows", False, _ROWS)
NETWORK = Verdict("network", True)
OVERLOADED = Verdict("overloaded", True)
SERVER = Verdict("server", True)
UNKNOWN = Verdict("unknown", True)

CODES: dict[int, Verdict] = {
    # schema: migrations not applied or applied elsewhere
    8: SCHEMA,  # THERE_IS_NO_COLUMN
    16: SCHEMA,  # NO_SUCH_COLUMN_IN_TABLE
    47: SCHEMA,  # UNKNOWN_IDENTIFIER
    60: SCHEMA,  # UNKNOWN_TABLE
    81: SCHEMA,  # UNKNOWN_DATABASE
    # rows of the wrong type for a column
    6: ROWS,  # CANNOT_PARSE_TEXT
    53: ROWS,  # TYPE_MISMATCH
    70: ROWS,  # CANNOT_CONVERT_TYPE
    # credentials
    192: CREDENTIALS,  # UNKNOWN_USER
    193: CREDENTIALS,  # WRONG_PASSWORD
    194: CREDENTIALS,  # REQUIRED_PASSWORD
    195: CREDENTIALS,  # IP_ADDRESS_NOT_ALLOWED
    516: CREDENTIALS,  # AUTHENTICATION_FAILED (modern servers)
    # permissions
    164: PERMISSIONS,  # READONLY
    291: PERMISSIONS,  # DATABASE_ACCESS_DENIED
    497: PERMISSIONS,  # ACCESS_DENIED (modern servers)
    # the connection
    209: NETWORK,  # SOCKET_TIMEOUT
    210: NETWORK,  # NETWORK_ERROR
    279: NETWORK,  # ALL_CONNECTION_TRIES_FAILED
    # the server is busy, short of resources or of its coordination service, for now
    159: OVERLOADED,  # TIMEOUT_EXCEEDED
    173: OVERLOADED,  # CANNOT_ALLOCATE_MEMORY
    201: OVERLOADED,  # QUOTA_EXPIRED
    202: OVERLOADED,  # TOO_MANY_SIMULTANEOUS_QUERIES
    241: OVERLOADED,  # MEMORY_LIMIT_EXCEEDED
    242: OVERLOADED,  # TABLE_IS_READ_ONLY (a replica lost its ZooKeeper session)
    243: OVERLOADED,  # NOT_ENOUGH_SPACE
    252: OVERLOADED,  # TOO_MANY_PARTS
    999: OVERLOADED,  # KEEPER_EXCEPTION
}


def classify(exc: BaseException) -> Verdict:
    """What ``exc``, raised by an insert, means for the sink."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code in CODES:
        return CODES[code]
    if isinstance(exc, OSError | EOFError):  # TimeoutError and ConnectionError included
        return NETWORK
    if isinstance(exc, TypeError | ValueError | OverflowError | struct.error):
        # Raised by the driver while it encodes the columns it was told the table has.
        return ROWS
    return SERVER if isinstance(code, int) else UNKNOWN


def describe(exc: BaseException) -> str:
    """One line: the exception's type, its ClickHouse code and the server's message (without the
    server's stack trace, which 18.16 appends)."""
    message = str(getattr(exc, "message", None) or exc).split("Stack trace:")[0]
    first = next((line for line in message.splitlines() if line.strip()), "").strip().removesuffix(".")
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}{f' (code {code})' if code is not None else ''}: {first}"
