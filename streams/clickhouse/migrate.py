"""Numbered ClickHouse migrations: literal SQL files applied in order, recorded in a table.

Files live in ``streams/clickhouse/migrations/``:

``NNNN_name.sql``
    The portable statement(s), valid on ClickHouse 18.16 and on modern servers. Statements are
    separated by ``;`` and must be idempotent (``IF NOT EXISTS``): ClickHouse has no
    transactional DDL, so a migration interrupted half-way is simply run again.
``NNNN_name.modern.sql`` (optional)
    A variant using features old servers lack (TTL, LowCardinality, ...). Its first line is
    ``-- requires: X.Y``; it replaces the base file when ``SELECT version()`` is at least X.Y.

The SQL is database-less: it runs on a connection whose database is the pipeline's
(``settings.clickhouse_database``). The database name enters SQL only after
:func:`check_identifier`: in :func:`migrate`'s ``CREATE DATABASE`` and, in cluster mode, in the
rendered statements (distributed DDL runs in each node's default database, so names are qualified).

Each applied migration is a row of ``schema_migrations`` (name, variant file, SHA-256 of that
file, applied_at, server version). Running again applies nothing; editing an applied file is an
error (write a new migration instead), as is adding a migration numbered below an applied one.
Run one migrator at a time (the CLI's ``migrate`` command); there is no lock.

With ``settings.clickhouse_cluster`` set, each statement (and the bookkeeping table) is rendered
for the cluster by :mod:`streams.clickhouse.cluster` and runs ``ON CLUSTER``; the checksums
recorded are the files', so a server and a cluster record the same migrations.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.clickhouse.client import QueryClient, connect, parse_version, server_version
from streams.clickhouse.cluster import create_database, render_replicated_everywhere, render_statement
from streams.errors import StreamsError
from streams.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: The runner's own bookkeeping table, created before anything else (so not a numbered file).
SCHEMA_MIGRATIONS_DDL = """\
CREATE TABLE IF NOT EXISTS schema_migrations
(
    name String,
    variant String,
    checksum String,
    applied_at DateTime('UTC'),
    server_version String
)
ENGINE = MergeTree
ORDER BY name"""

_FILE = re.compile(r"^(?P<name>\d{4}_[a-z0-9_]+)(?P<modern>\.modern)?\.sql$")
_REQUIRES = re.compile(r"^--\s*requires:\s*(?P<version>\d+(?:\.\d+)*)\s*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Echo = Callable[[str], object]


class MigrationError(StreamsError):
    """The migrations on disk and the applied ones disagree, or a file is malformed."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One file of a migration."""

    filename: str
    sql: str
    checksum: str
    #: Lowest server version this variant runs on; ``None`` for the portable base file.
    requires: tuple[int, ...] | None

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the SQL runs: one server (``cluster`` empty) or every node of a cluster."""

    database: str
    cluster: str = ""

    def render(self, statement: str) -> list[str]:
        """``statement`` as it runs on this target."""
        return render_statement(statement, self.cluster, self.database) if self.cluster else [statement]

    @property
    def bookkeeping_ddl(self) -> str:
        if not self.cluster:
            return SCHEMA_MIGRATIONS_DDL
        return render_replicated_everywhere(SCHEMA_MIGRATIONS_DDL, self.cluster, self.database)

    @property
    def create_database(self) -> str:
        # The one place the database name is put into SQL (checked identifier, quoted).
        if self.cluster:
            return create_database(self.database, self.cluster)
        return f"CREATE DATABASE IF NOT EXISTS `{self.database}`"


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    base: Variant
    modern: Variant | None = None

    def variant_for(self, version: Sequence[int]) -> Variant:
        """The modern variant when the server is new enough for it, else the base file."""
        modern = self.modern
        if modern is not None and modern.requires is not None and tuple(version) >= modern.requires:
            return modern
        return self.base

    def variant_named(self, filename: str) -> Variant | None:
        for variant in (self.base, self.modern):
            if variant is not None and variant.filename == filename:
                return variant
        return None


def check_identifier(name: str) -> str:
    """``name`` if it is a plain identifier (safe to put in SQL), else :class:`MigrationError`."""
    if not _IDENTIFIER.match(name):
        raise MigrationError(f"database name {name!r} is not a plain identifier [A-Za-z_][A-Za-z0-9_]*")
    return name


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory``, in order; malformed names or headers raise."""
    bases: dict[str, Variant] = {}
    moderns: dict[str, Variant] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith((".", "__")) or path.is_dir():
            continue
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: expected NNNN_name.sql or NNNN_name.modern.sql")
        raw = path.read_bytes()
        sql = raw.decode("utf-8")
        first_line = sql.split("\n", 1)[0]
        header = _REQUIRES.match(first_line)
        if match.group("modern"):
            if not header:
                raise MigrationError(f"{path.name}: a .modern.sql file starts with '-- requires: X.Y'")
            requires: tuple[int, ...] | None = parse_version(header.group("version"))
        else:
            if header:
                raise MigrationError(f"{path.name}: only .modern.sql variants carry '-- requires:'")
            requires = None
        variant = Variant(path.name, sql, hashlib.sha256(raw).hexdigest(), requires)
        if not variant.statements:
            raise MigrationError(f"{path.name}: no SQL statement")
        (moderns if match.group("modern") else bases)[match.group("name")] = variant
    orphans = sorted(moderns.keys() - bases.keys())
    if orphans:
        raise MigrationError(f"{orphans[0]}.modern.sql has no portable {orphans[0]}.sql")
    numbers = [name[:4] for name in bases]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migrations share a number: {sorted(bases)}")
    return [Migration(name, bases[name], moderns.get(name)) for name in sorted(bases)]


def split_statements(sql: str) -> list[str]:
    """Split a file on ``;`` outside quotes and comments; statements that are only comments drop."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            current.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(sql[i:end])
            i = end
        elif ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            current.append(sql[i : j + 1])
            i = j + 1
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(without_comments.strip())


def applied_migrations(client: QueryClient) -> dict[str, tuple[str, str]]:
    """name -> (variant filename, checksum) of what the connected database has applied."""
    rows = client.execute(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'"
    )
    assert isinstance(rows, list)
    if not rows[0][0]:
        return {}
    rows = client.execute("SELECT name, variant, checksum FROM schema_migrations ORDER BY name")
    assert isinstance(rows, list)
    return {str(name): (str(variant), str(checksum)) for name, variant, checksum in rows}


def pending_migrations(
    migrations: Sequence[Migration], applied: dict[str, tuple[str, str]]
) -> list[Migration]:
    """Migrations not applied yet; raises on edited, missing or out-of-order ones."""
    by_name = {m.name: m for m in migrations}
    problems = []
    for name, (filename, checksum) in sorted(applied.items()):
        migration = by_name.get(name)
        variant = migration.variant_named(filename) if migration else None
        if variant is None:
            problems.append(f"{name}: applied as {filename}, which no longer exists")
        elif variant.checksum != checksum:
            problems.append(f"{filename}: changed since it was applied (checksum {checksum[:12]}…)")
    pending = [m for m in migrations if m.name not in applied]
    if pending and applied and pending[0].name < max(applied):
        problems.append(f"{pending[0].name} is pending but sorts before applied {max(applied)}")
    if problems:
        raise MigrationError("migrations disagree with the database: " + "; ".join(problems))
    return pending


def apply_migrations(
    client: QueryClient,
    dry_run: bool = False,
    *,
    echo: Echo = print,
    migrations: Sequence[Migration] | None = None,
    target: Target | None = None,
) -> list[str]:
    """Apply pending migrations on ``client``'s database, in order; return their names.

    The variant of each migration is chosen from the server's version. With ``dry_run`` the SQL
    that would run is passed to ``echo`` (default ``print``) and nothing is executed or recorded;
    the names returned are those that would be applied. ``target`` (default: the one server
    ``client`` is on) renders the SQL for a cluster.
    """
    target = target or Target(database="")
    version = server_version(client)
    migrations = load_migrations() if migrations is None else migrations
    applied = applied_migrations(client)
    pending = pending_migrations(migrations, applied)
    if dry_run:
        _echo_plan(echo, pending, version, target, create_bookkeeping=not applied)
        return [m.name for m in pending]
    if pending:
        client.execute(target.bookkeeping_ddl)
    version_text = ".".join(map(str, version))
    done = []
    for migration in pending:
        variant = migration.variant_for(version)
        for statement in variant.statements:
            for rendered in target.render(statement):
                client.execute(rendered)
        # Recorded only once every statement ran: an interrupted migration is re-run whole.
        client.execute(
            "INSERT INTO schema_migrations (name, variant, checksum, applied_at, server_version) VALUES",
            [(migration.name, variant.filename, variant.checksum, int(time.time()), version_text)],
        )
        log.info("applied migration %s (%s)", migration.name, variant.filename)
        done.append(migration.name)
    return done


def _echo_plan(
    echo: Echo, pending: Sequence[Migration], version: Sequence[int], target: Target, create_bookkeeping: bool
) -> None:
    if create_bookkeeping and pending:
        echo(target.bookkeeping_ddl + ";")
    for migration in pending:
        variant = migration.variant_for(version)
        echo(f"-- migration {migration.name} ({variant.filename})")
        for statement in variant.statements:
            for rendered in target.render(statement):
                echo(rendered + ";")


def migrate(settings: Settings, dry_run: bool = False, *, echo: Echo = print) -> list[str]:
    """Create the pipeline's database if needed and apply pending migrations as the admin user.

    The entry point of ``streams migrate``. With ``dry_run`` nothing is created or applied; the
    SQL that would run is echoed. With ``settings.clickhouse_cluster`` it migrates that cluster
    through the server it connects to.
    """
    database = check_identifier(settings.clickhouse_database)
    target = Target(database, settings.clickhouse_cluster)
    admin = connect(settings, admin=True)
    try:
        rows = admin.execute(
            "SELECT count() FROM system.databases WHERE name = %(name)s", {"name": database}
        )
        if not rows[0][0]:
            if dry_run:
                echo(target.create_database + ";")
                migrations = load_migrations()
                _echo_plan(echo, migrations, server_version(admin), target, create_bookkeeping=True)
                return [m.name for m in migrations]
            admin.execute(target.create_database)
            log.info("created database %s", database)
    finally:
        admin.disconnect()
    client = connect(settings, admin=True, database=database)
    try:
        return apply_migrations(client, dry_run, echo=echo, target=target)
    finally:
        client.disconnect()
