"""Erasure through the processing stages, without Kafka: a sharer, a referred customer and a
customer with identified devices are erased mid-stream; afterwards the state names none of
them, every other customer equals the oracle, and neither later traffic, a full replay nor a
crash around the request brings them back."""

from __future__ import annotations

import random

import pytest

from streams.core.erasure import ErasureRequest, keyed_hash, suppression_key
from streams.core.events import Identify
from streams.settings import Secret, load_settings
from streams.stages.partitioning import partition_for
from streams.tools.oracle import Erasure, erased_people, expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate
from tests.support.compare import compare_all
from tests.support.erasure import mentions, people_to_erase
from tests.support.inmemory import InMemoryPipeline

KEY = "unit-test-erasure-key"
SETTINGS = load_settings({}, erasure_key=Secret(KEY))
CONFIG = SimulationConfig(seed=17, customers=120, events=4_000, anonymous_visits=0.2, identity_conflicts=0.0)


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return generate(CONFIG)


def erase(pipeline: InMemoryPipeline, ids: frozenset[str], at_ms: int) -> None:
    topic = SETTINGS.erasures_topic
    for customer_id in sorted(ids):
        key = customer_id.encode()
        pipeline.logs[topic].append(topic, partition_for(key, SETTINGS.topic_partitions), key,
                                    ErasureRequest("req-1", customer_id, at_ms).encode(), at_ms)


def erased_mid_stream(records: list[SimRecord], cut: int, ids: frozenset[str], rng: random.Random) -> InMemoryPipeline:
    """The first ``cut`` records all read, then the erasure of ``ids``, then the rest."""
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records[:cut])
    pipeline.run(rng)
    erase(pipeline, ids, records[cut].ingest_ms)
    pipeline.run(rng)
    pipeline.publish(records[cut:])
    pipeline.run(rng)
    return pipeline


def replay_everything(pipeline: InMemoryPipeline) -> None:
    """A new consumer group: every input and erasure record read again onto the same state."""
    for topic in (*SETTINGS.input_topics.values(), SETTINGS.erasures_topic):
        for partition in list(pipeline.logs[topic].records):
            pipeline.read[(topic, partition)] = 0


def assert_forgotten(pipeline: InMemoryPipeline, erased: set[str]) -> None:
    """No state record names an erased id, nor the request (a ticket number may name a person);
    each id has its suppression record."""
    state = {**pipeline.profile_state.data, **pipeline.share_state.data}
    assert mentions(state, erased) == []
    assert [key for key, value in state.items() if b"req-1" in value] == []
    for person in erased:
        assert suppression_key(keyed_hash(KEY.encode(), person)) in pipeline.profile_state.data


@pytest.mark.parametrize("seed", [1, 2])
def test_erased_people_leave_the_state_and_everyone_else_stays_exact(records, seed: int) -> None:  # type: ignore[no-untyped-def]
    cut = len(records) // 2
    ids = people_to_erase(records, cut, SETTINGS)
    erasure = Erasure(cut, ids)
    truth = expected(records, SETTINGS, erasure)
    rng = random.Random(seed)
    pipeline = erased_mid_stream(records, cut, ids, rng)
    people = erased_people(records[:cut], ids, SETTINGS)
    assert people > ids  # devices identified as an erased customer go with them
    assert compare_all(truth, without(pipeline.final_rows(), people)) == {}
    assert_forgotten(pipeline, people)
    assert not {c for c in truth.profiles if c in ids}

    replay_everything(pipeline)
    pipeline.run(rng)
    assert compare_all(truth, without(pipeline.final_rows(), people)) == {}
    assert_forgotten(pipeline, people)


def without(rows: dict[str, list[dict]], people: set[str]) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """The rows the eraser leaves: none naming an erased person."""
    columns = ("customer_id", "sharer_customer_id", "referred_customer_id", "anonymous_id")
    return {table: [r for r in table_rows if not any(r.get(c) in people for c in columns)]
            for table, table_rows in rows.items()}


@pytest.mark.parametrize("seed", [61, 62, 63])
def test_a_crash_around_the_erasure_changes_nothing(records, seed: int) -> None:  # type: ignore[no-untyped-def]
    """A kill -9 after the request was read: each state record independently back to the last
    commit or not, the request read again, the later traffic too."""
    cut = len(records) // 2
    ids = people_to_erase(records, cut, SETTINGS)
    rng = random.Random(seed)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records[:cut])
    pipeline.run(rng)
    before = pipeline.checkpoint()
    erase(pipeline, ids, records[cut].ingest_ms)
    for _ in range(rng.randint(1, 4)):
        pipeline.step(rng, batch=rng.randint(1, 40))
    pipeline.crash_to(before, rng)
    pipeline.run(rng)
    pipeline.publish(records[cut:])
    pipeline.run(rng)
    people = erased_people(records[:cut], ids, SETTINGS)
    assert compare_all(expected(records, SETTINGS, Erasure(cut, ids)), without(pipeline.final_rows(), people)) == {}
    assert_forgotten(pipeline, people)


def stage_run(pipeline: InMemoryPipeline, *requests: tuple[str, str | None]) -> None:
    """Publish erasure requests (id, key as sent; None: no key) and run."""
    topic = SETTINGS.erasures_topic
    for customer_id, key in requests:
        value = ErasureRequest("req-2", customer_id, 1).encode()
        pipeline.logs[topic].append(topic, 0, key.encode() if key else None, value, 1)
    pipeline.run(random.Random(0))


def outcomes(pipeline: InMemoryPipeline) -> dict[str, str]:
    rows = pipeline.rows.tables["erasure_requests"].values()
    return {row["target"]: row["status"] for row in rows}


def test_an_unknown_id_repeated_and_misrouted_requests_are_each_handled_once_on_the_id_s_partition() -> None:
    pipeline = InMemoryPipeline(SETTINGS)
    misrouted = next(f"cust-{n}" for n in range(100) if partition_for(f"cust-{n}".encode(), 4) != 0)
    stage_run(pipeline, ("nobody", "nobody"), (misrouted, None))
    stage_run(pipeline, ("nobody", "nobody"))
    tombstones = {row["customer_id"] for row in pipeline.rows.tables["erased_customers"].values()}
    assert tombstones == {"nobody", misrouted}
    # Both ids acknowledged by every partition of both stages: the eraser may delete.
    acknowledged = {f"{stage}/{p}": "cleared" for stage in ("profiles", "share-index") for p in range(4)}
    assert outcomes(pipeline) == {"state": "erased", "request": "hidden", **acknowledged}
    acks = [row for row in pipeline.rows.tables["erasure_requests"].values() if row["status"] == "cleared"]
    assert len(acks) == len(tombstones) * len(acknowledged)
    for person in tombstones:
        assert suppression_key(keyed_hash(KEY.encode(), person)) in pipeline.profile_state.data
    rerouted = pipeline.logs[SETTINGS.erasures_topic].records[partition_for(misrouted.encode(), 4)]
    assert [r.key for r in rerouted] == [misrouted.encode()]
    assert mentions(pipeline.profile_state.data, tombstones) == []


def test_a_malformed_request_is_dead_lettered_with_its_reason() -> None:
    pipeline = InMemoryPipeline(SETTINGS)
    topic = SETTINGS.erasures_topic
    pipeline.logs[topic].append(topic, 0, b"x", b'{"customer_id": "x"}', 1)
    pipeline.run(random.Random(0))
    assert [dict(m.headers)["reason"] for m in pipeline.dead_letters] == [b"bad_erasure_request"]
    # No ingestion_errors row: its payload might name a person, and nothing would delete it.
    assert "erased_customers" not in pipeline.rows.tables and "ingestion_errors" not in pipeline.rows.tables


def test_an_identify_naming_an_erased_customer_erases_its_anonymous_id_too(records) -> None:  # type: ignore[no-untyped-def]
    """The customer is gone when the identify comes: the anonymous id is linked to no one and
    erased by the same request, with everything it did."""
    identify = next(r for r in records if isinstance(r.event, Identify))
    customer, anonymous = identify.event.customer_id, identify.event.anonymous_id
    pipeline = InMemoryPipeline(SETTINGS)
    stage_run(pipeline, (customer, customer))
    pipeline.publish([r for r in records if r.key == anonymous.encode()])
    pipeline.run(random.Random(0))
    assert mentions(pipeline.profile_state.data, {customer, anonymous}) == []
    tombstones = {row["customer_id"] for row in pipeline.rows.tables["erased_customers"].values()}
    assert tombstones == {customer, anonymous}


def test_records_of_an_erased_id_are_dropped_even_when_malformed() -> None:
    pipeline = InMemoryPipeline(SETTINGS)
    stage_run(pipeline, ("cust-1", "cust-1"))
    topic = SETTINGS.input_topics["click"]
    pipeline.logs[topic].append(topic, partition_for(b"cust-1", 4), b"cust-1", b"not avro", 1)
    pipeline.run(random.Random(0))
    assert pipeline.dead_letters == []
    assert "ingestion_errors" not in pipeline.rows.tables


def test_a_state_rebuilt_from_scratch_never_shows_an_erased_person(records) -> None:  # type: ignore[no-untyped-def]
    """A new application id reads every topic, internal ones included, from the start onto empty
    state: the requests still in the erasures topic, read at the worker's start, drop the erased
    people's records from the first batch on, before their requests are read again."""
    cut = len(records) // 2
    ids = people_to_erase(records, cut, SETTINGS)
    rng = random.Random(5)
    original = erased_mid_stream(records, cut, ids, rng)
    topic = SETTINGS.erasures_topic
    in_topic = {r.key.decode(): ErasureRequest("req-1", r.key.decode(), 1)
                for part in original.logs[topic].records.values() for r in part if r.key}
    people = erased_people(records[:cut], ids, SETTINGS)
    assert set(in_topic) == people  # the customers' requests and those they sent for their devices
    rebuilt = InMemoryPipeline(SETTINGS, requested_erasures=in_topic)
    rebuilt.logs = original.logs
    rebuilt.run(rng)
    columns = ("customer_id", "sharer_customer_id", "referred_customer_id", "anonymous_id", "record_key")
    named = [(table, row) for table, rows in rebuilt.final_rows().items() for row in rows
             if table != "erased_customers" and any(row.get(c) in people for c in columns)]
    assert named == []
    assert_forgotten(rebuilt, people)
