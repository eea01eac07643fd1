"""Typed, frozen settings read from the environment: the only reader of ``os.environ``.

Every variable is ``STREAMS_<FIELD>``. Defaults point at the local stack that
``deploy/local/stack up`` starts. An invalid value raises :class:`SettingsError` naming the
variable and what is expected, so a worker fails at start-up rather than mid-stream.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.errors import SettingsError

PREFIX = "STREAMS_"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Secret:
    """A value that never shows itself: ``repr``, ``str`` and formatting give ``***``.

    Not a ``str``: a secret cannot reach a log line, an f-string, an exception message or a
    concatenation by accident, because only :meth:`reveal` hands out the value, and only the
    code that needs the value itself calls it: the clients that authenticate, and the keyed
    hash of erasure (:func:`require_erasure_key`). Equal values compare equal, in constant time.
    """

    __slots__ = ("_value",)
    MASK = "***"

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret takes a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The value itself: pass it straight to the library that authenticates, nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.MASK!r})"

    def __str__(self) -> str:
        return self.MASK

    def __format__(self, spec: str) -> str:
        return format(self.MASK, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


def _setting(default: Any, doc: str, **extra: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **extra})


@dataclass(frozen=True, slots=True)
class Settings:
    # Kafka
    kafka_bootstrap_servers: str = _setting("127.0.0.1:19092", "Kafka bootstrap servers, host:port[,host:port]")
    topic_prefix: str = _setting("interactions", "prefix of every topic the pipeline reads or writes")
    topic_partitions: int = _setting(4, "partitions of every input and internal topic", minimum=1)
    topic_replication: int = _setting(1, "replication factor of created topics", minimum=1)
    topic_min_insync_replicas: int = _setting(
        1, "min.insync.replicas of created topics: replicas that must have a record before it counts as "
        "written (2 with replication 3: one broker may die without loss)", minimum=1)
    input_retention_ms: int = _setting(7 * 86_400_000, "retention of input, internal and dead-letter topics; at "
                                       "most the erasure deadline", minimum=1)
    schema_registry_url: str = _setting(
        "", "Confluent-compatible Schema Registry URL (Apicurio: .../apis/ccompat/v7); records with registry "
        "ids and with embedded ids are both read; empty: the embedded registry from schemas/ only")
    schema_ids: str = _setting(
        "", "ids producers write: registry or embedded; empty: registry when STREAMS_SCHEMA_REGISTRY_URL is "
        "set, else embedded (schemas/README.md, schema ids)")
    schema_registry_user: str = _setting("", "Schema Registry basic-auth user; empty: no authentication")
    schema_registry_password: Secret = _setting(Secret(""), "password of schema_registry_user (secret)")
    schema_registry_ca_path: str = _setting("", "CA certificate file (PEM) the registry's TLS certificate is checked "
                                            "against; empty: the system's CAs")
    schema_registry_timeout_s: float = _setting(5.0, "timeout of one Schema Registry request", minimum=0.1)
    # Worker
    app_id: str = _setting("interaction-pipeline", "Faust application id (consumer group, changelog topic prefix)")
    table_dir: str = _setting(".state/worker", "directory of the table store (rocksdb), one subdirectory per app_id")
    store: str = _setting("rocksdb://", "table store: rocksdb:// (on disk, restarts replay the changelog's tail) or memory://")
    batch_max_events: int = _setting(1000, "events processed as one batch", minimum=1)
    batch_max_wait_ms: int = _setting(200, "longest wait before a partial batch is processed", minimum=1)
    broker_session_timeout_s: float = _setting(10.0, "how soon a dead worker's partitions move", minimum=6.0)
    group_instance_id: str = _setting(
        "", "static group membership: a name unique to this worker and kept across its restarts (e.g. "
        "a StatefulSet pod's name); a restarted worker takes its partitions back at once instead of "
        "after the session timeout, a stopped one keeps them until then; empty: off")
    commit_interval_s: float = _setting(1.0, "how often consumed offsets are committed", minimum=0.1)
    metrics_host: str = _setting("127.0.0.1", "address the /metrics and /healthz endpoint binds to")
    metrics_port: int = _setting(19100, "port of the /metrics and /healthz endpoint", minimum=1, maximum=65535)
    producer_batch_bytes: int = _setting(
        512 * 1024, "largest batch of records the worker sends to one partition at once; at most the "
        "topics' max.message.bytes (1 MiB by default). The producer sends one batch per partition per "
        "request, so each further batch a partition needs waits a round trip (a larger record goes "
        "alone)", minimum=16_384)
    producer_timeout_s: float = _setting(
        60.0, "longest a produced record may take to reach Kafka (metadata, queueing, retries); "
        "past it the send fails and the worker exits", minimum=1.0)
    stall_timeout_s: float = _setting(
        60.0, "a worker with records waiting and no progress this long answers 503 on /healthz "
        "and exits (code 70) to be restarted", minimum=1.0)
    # Event rules (see docs/definitions.md)
    currency: str = _setting("EUR", "reporting currency; purchases in another currency are dead-lettered")
    allowed_lateness_ms: int = _setting(3_600_000, "events older than ingest time minus this are late", minimum=0)
    max_future_skew_ms: int = _setting(300_000, "events further ahead of ingest time are clamped to it", minimum=0)
    attribution_window_ms: int = _setting(7 * 86_400_000, "longest share-to-touch time that earns a credit", minimum=0)
    allow_self_referral: bool = _setting(False, "credit customers for touches on their own shares")
    pending_touch_ttl_ms: int = _setting(86_400_000, "how long a touch waits for its share (ingest time)", minimum=0)
    share_retention_ms: int = _setting(
        30 * 86_400_000, "how long after a share's ingest its touches are credited (ingest time); the share index "
        "forgets the share once every touch up to then is read. At least a minute: a crash re-reads the last "
        "seconds of input, and their touches must still find the share", minimum=60_000)
    # Backfill (docs/operations.md, backfill)
    backfill_live_lag_s: float = _setting(
        5.0, "how far behind their ingest time live events may reach ClickHouse while a backfill runs: the worker "
        "reads no backfill while the live records it processes are more than half this behind, and reads it "
        "again once they are under a quarter of it", minimum=0.1)
    # Erasure (docs/operations.md, erasure)
    erasure_key: Secret = _setting(
        Secret(""), "key of the keyed hash (HMAC-SHA256) that suppression records and erasure bookkeeping keep "
        "instead of customer and request ids; at least 16 characters, kept secret and never changed (secret)")
    erasure_deadline_s: int = _setting(
        30 * 86_400, "time from an erasure request to its verified completion; a request open longer raises an "
        "alert, and topic retention must not be longer", minimum=60)
    eraser_interval_s: float = _setting(30.0, "how often the eraser looks for erasures to delete from ClickHouse",
                                        minimum=0.1)
    eraser_max_mutations: int = _setting(
        4, "the eraser starts no delete while this many mutations are running in the database", minimum=1)
    eraser_metrics_port: int = _setting(19190, "port of the eraser's /metrics endpoint", minimum=1, maximum=65535)
    # ClickHouse
    clickhouse_host: str = _setting("127.0.0.1", "ClickHouse host (native protocol)")
    clickhouse_port: int = _setting(19000, "ClickHouse native port", minimum=1, maximum=65535)
    clickhouse_database: str = _setting("interactions", "database holding the pipeline's tables and views")
    clickhouse_user: str = _setting("writer", "user the workers insert as")
    clickhouse_password: Secret = _setting(Secret(""), "password of clickhouse_user (secret)")
    clickhouse_admin_user: str = _setting("admin", "user that applies migrations")
    clickhouse_admin_password: Secret = _setting(Secret(""), "password of clickhouse_admin_user (secret)")
    clickhouse_timeout_s: float = _setting(10.0, "connect and query timeout", minimum=0.1)
    clickhouse_cluster: str = _setting(
        "", "ClickHouse cluster (a remote_servers name) to migrate ON CLUSTER, as Replicated tables per shard "
        "behind Distributed ones (docs/cluster.md); empty: one server")
    sink_max_rows: int = _setting(20_000, "rows buffered before a flush is forced", minimum=1)
    sink_max_wait_ms: int = _setting(500, "longest time a row waits in the buffer", minimum=1)
    sink_max_retries: int = _setting(
        8, "failed inserts in a row before the sink logs an ERROR and reports itself unhealthy (it keeps "
        "retrying; errors only a person can fix stop the worker at once)", minimum=0)
    sink_backoff_max_s: float = _setting(5.0, "cap of the exponential retry backoff", minimum=0.01)

    @property
    def input_topics(self) -> dict[str, str]:
        """Event type -> input topic name."""
        names = {"click": "clicks", "share": "shares", "purchase": "purchases", "support": "support",
                 "identify": "identifies"}
        return {event_type: f"{self.topic_prefix}.{name}" for event_type, name in names.items()}

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dlq"

    @property
    def repartition_topic(self) -> str:
        """Where input records that arrived on another partition than their key's are re-routed."""
        return f"{self.topic_prefix}.repartition"

    @property
    def referral_index_topic(self) -> str:
        return f"{self.topic_prefix}.referral-index"

    @property
    def referral_credits_topic(self) -> str:
        return f"{self.topic_prefix}.referral-credits"

    @property
    def backfill_topic(self) -> str:
        """Historical events of every type, keyed like the inputs (``streams backfill``)."""
        return f"{self.topic_prefix}.backfill"

    @property
    def erasures_topic(self) -> str:
        """Erasure requests, keyed by the id to erase (co-partitioned with the inputs)."""
        return f"{self.topic_prefix}.erasures"


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r}: expected true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if kind is Secret:
        return Secret(raw)
    return raw


def _check_range(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and value < low:
        raise SettingsError(f"{name}={value!r}: must be at least {low}")
    if high is not None and value > high:
        raise SettingsError(f"{name}={value!r}: must be at most {high}")


_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "Secret": Secret}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) plus explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        name = PREFIX + f.name.upper()
        kind = _TYPES[str(f.type)]
        if f.name in overrides:
            value = overrides[f.name]
        elif name in env:
            value = _parse(name, env[name], kind)
        else:
            continue
        _check_range(name, value, f.metadata)
        values[f.name] = value
    settings = Settings(**values)
    if settings.store.split("://")[0] not in ("memory", "rocksdb"):
        raise SettingsError(f"{PREFIX}STORE={settings.store!r}: expected memory:// or rocksdb://")
    _check_schema_registry(settings)
    if settings.topic_min_insync_replicas > settings.topic_replication:
        raise SettingsError(f"{PREFIX}TOPIC_MIN_INSYNC_REPLICAS={settings.topic_min_insync_replicas}: must be at most "
                            f"{PREFIX}TOPIC_REPLICATION ({settings.topic_replication}), or no write could succeed")
    if settings.clickhouse_cluster and not _IDENTIFIER.match(settings.clickhouse_cluster):
        raise SettingsError(f"{PREFIX}CLICKHOUSE_CLUSTER={settings.clickhouse_cluster!r}: expected the name of a "
                            "cluster in the servers' remote_servers, a plain identifier [A-Za-z_][A-Za-z0-9_]*")
    deadline_ms = settings.erasure_deadline_s * 1000
    if settings.input_retention_ms == -1 or settings.input_retention_ms > deadline_ms:
        raise SettingsError(f"{PREFIX}INPUT_RETENTION_MS={settings.input_retention_ms}: must be at most the erasure "
                            f"deadline {PREFIX}ERASURE_DEADLINE_S in ms ({deadline_ms}): a topic's records cannot "
                            "be deleted per person, so an erased person's records must age out within it")
    if len(settings.currency) != 3 or not settings.currency.isupper():
        raise SettingsError(f"{PREFIX}CURRENCY={settings.currency!r}: expected an ISO 4217 code such as EUR")
    # A healthy worker may go this long without visible progress: a batch and a flush wait,
    # a commit interval, and a ClickHouse attempt that times out followed by a full backoff.
    quiet_s = (settings.batch_max_wait_ms + settings.sink_max_wait_ms) / 1000 + settings.commit_interval_s \
        + settings.clickhouse_timeout_s + settings.sink_backoff_max_s
    if settings.stall_timeout_s < 2 * quiet_s:
        raise SettingsError(f"{PREFIX}STALL_TIMEOUT_S={settings.stall_timeout_s!r}: must be at least {2 * quiet_s:g}, "
                            "twice the longest a healthy worker goes without progress (batch and sink waits, "
                            "commit interval, ClickHouse timeout and backoff)")
    return settings


ERASURE_KEY_MIN_LENGTH = 16


def require_erasure_key(settings: Settings) -> bytes:
    """The erasure key, for the commands that hash ids (the worker, the eraser, ``streams erase``);
    a missing or short one stops them at start-up rather than leave erased people unrecognised."""
    key = settings.erasure_key.reveal()
    if len(key) < ERASURE_KEY_MIN_LENGTH:
        raise SettingsError(f"{PREFIX}ERASURE_KEY is {'too short' if key else 'not set'}: set it to a secret of at "
                            f"least {ERASURE_KEY_MIN_LENGTH} characters (e.g. `openssl rand -hex 32`), the same "
                            "for every worker and never changed: erased people are recognised by hashes made with it")
    return key.encode()


def _check_schema_registry(settings: Settings) -> None:
    if settings.schema_ids not in ("", "registry", "embedded"):
        raise SettingsError(f"{PREFIX}SCHEMA_IDS={settings.schema_ids!r}: expected registry or embedded")
    if settings.schema_ids == "registry" and not settings.schema_registry_url:
        raise SettingsError(f"{PREFIX}SCHEMA_IDS=registry needs {PREFIX}SCHEMA_REGISTRY_URL")
    if settings.schema_registry_password and not settings.schema_registry_user:
        raise SettingsError(f"{PREFIX}SCHEMA_REGISTRY_PASSWORD is set: set {PREFIX}SCHEMA_REGISTRY_USER too")
    if settings.schema_registry_ca_path and not os.path.isfile(settings.schema_registry_ca_path):
        raise SettingsError(f"{PREFIX}SCHEMA_REGISTRY_CA_PATH={settings.schema_registry_ca_path!r}: no such file")
    url = settings.schema_registry_url
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(f"{PREFIX}SCHEMA_REGISTRY_URL={url!r}: expected an http:// or https:// URL")
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:  # the URL shows up in errors and logs
        raise SettingsError(f"{PREFIX}SCHEMA_REGISTRY_URL: no credentials in the URL; set {PREFIX}SCHEMA_REGISTRY_USER "
                            f"and {PREFIX}SCHEMA_REGISTRY_PASSWORD")


def shown(value: Any) -> str:
    """A setting's value as tables and ``streams settings`` show it: secrets as their mask."""
    return str(value) if isinstance(value, Secret) else repr(value)


def describe(settings: Settings | None = None) -> list[tuple[str, str, str]]:
    """(variable, value, meaning) for every setting, with the defaults or ``settings``' values.

    The README table, ``--help`` and ``streams settings`` use it; secrets show only their mask.
    """
    source = Settings() if settings is None else settings
    return [(PREFIX + f.name.upper(), shown(getattr(source, f.name)), f.metadata["doc"])
            for f in dataclasses.fields(Settings)]
