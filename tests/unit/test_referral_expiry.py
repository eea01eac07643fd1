"""Touches that wait for a share that never comes expire once every profile-stage partition
has sent the index every share ingested up to the TTL past theirs (its "clock" messages);
the decoded-record cache stays consistent with the store through expiry; many waiting
touches are stored in pages, of which a batch rewrites only those it changed."""

from __future__ import annotations

import orjson

from streams.core.referrals import WAITING_PAGE, SharePost, Touch
from streams.settings import load_settings
from streams.stages.partitioning import partition_for
from streams.stages.records import BatchOutput, InputRecord, SourceRecord
from streams.stages.referral_stage import ReferralStage
from tests.support.inmemory import DictState

SETTINGS = load_settings({})
TTL = SETTINGS.pending_touch_ttl_ms
RETENTION = SETTINGS.share_retention_ms
T0 = 1_700_000_000_000
ALL = set(range(SETTINGS.topic_partitions))


def touch_record(offset: int, share_id: str, credit_id: str, ingest_ms: int,
                 occurred_ms: int | None = None) -> SourceRecord:
    touch = Touch(credit_id, "buyer", share_id, "click", ingest_ms if occurred_ms is None else occurred_ms,
                  ingest_ms, 0)
    value = orjson.dumps({"k": "touch", **touch.to_json()})
    return InputRecord(SETTINGS.referral_index_topic, 0, offset, share_id.encode(), value, ingest_ms)


def share_record(offset: int, share_id: str, ingest_ms: int) -> SourceRecord:
    # Shared at T0 (before every touch), but it reaches the index only now.
    value = orjson.dumps({"k": "share", **SharePost(share_id, "sharer", T0, "x").to_json()})
    return InputRecord(SETTINGS.referral_index_topic, 0, offset, share_id.encode(), value, ingest_ms)


def shares_read_until(ingest_ms: int, sources: range = range(SETTINGS.topic_partitions)) -> list[SourceRecord]:
    """The clock messages of the profile stage's ``sources`` partitions, on every index partition."""
    return clocks({"ms": ingest_ms, "t": -1}, sources)


def touches_read_until(ingest_ms: int, sources: range = range(SETTINGS.topic_partitions)) -> list[SourceRecord]:
    return clocks({"ms": -1, "t": ingest_ms}, sources)


def clocks(read_until: dict[str, int], sources: range) -> list[SourceRecord]:
    return [InputRecord(SETTINGS.referral_index_topic, partition, 0, None,
                        orjson.dumps({"k": "clock", "p": source, **read_until}), 0)
            for partition in range(SETTINGS.topic_partitions) for source in sources]


def run(stage: ReferralStage, state: DictState, *records: SourceRecord) -> list[str]:
    out = stage.process(records)
    state.apply(out.state_writes)
    return [orjson.loads(m.value or b"")["credit_id"] for m in out.messages]


def test_waiting_touches_expire_and_a_late_share_credits_only_the_rest() -> None:
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    assert run(stage, state, touch_record(0, "s1", "old", T0), touch_record(1, "s2", "gone", T0)) == []
    # A touch ingested past the TTL of the first ones: the shares may still be a day behind.
    assert run(stage, state, touch_record(2, "s1", "fresh", T0 + TTL + 1)) == []
    assert stage.expire(ALL) == (BatchOutput(), 3)
    # Every partition but one has sent every share ingested until then: one may still come.
    last = SETTINGS.topic_partitions - 1
    run(stage, state, *shares_read_until(T0 + TTL + 1, range(last)))
    assert stage.expire(ALL) == (BatchOutput(), 3)

    run(stage, state, *shares_read_until(T0 + TTL + 1, range(last, last + 1)))
    out, waiting = stage.expire(ALL)
    state.apply(out.state_writes)
    assert waiting == 1  # only "fresh" still waits
    assert "s:s2" not in state.data  # nothing left for s2: tombstoned
    assert [t["credit_id"] for t in orjson.loads(state.data["s:s1"])["e"]] == ["fresh"]

    # The share arrives: only the touch that had not expired earns a credit, whether the
    # stage reads its cache or the store (a restart).
    assert run(stage, state, share_record(3, "s1", T0 + TTL + 2)) == ["fresh"]
    restarted = ReferralStage(SETTINGS, DictState())
    restarted.store = state
    assert run(restarted, state, share_record(3, "s1", T0 + TTL + 2)) == ["fresh"]


def test_expiry_visits_only_waiting_shares_and_rebuilds_after_a_rebalance() -> None:
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    run(stage, state, share_record(0, "known", T0), touch_record(1, "lost", "t1", T0))
    out, waiting = stage.expire(ALL)  # builds the waiting set from the store
    assert (out.state_writes, waiting) == ([], 1)
    run(stage, state, touch_record(2, "lost", "t2", T0 + 1), share_record(3, "late", T0))
    out, waiting = stage.expire(ALL)  # kept up to date by process(): no store scan needed
    assert (out.state_writes, waiting) == ([], 2)

    stage.forget_partitions()  # a rebalance: rebuilt from the store, same answer
    run(stage, state, touch_record(4, "lost", "t3", T0 + TTL + 5), *shares_read_until(T0 + TTL + 5))
    out, waiting = stage.expire(ALL)
    state.apply(out.state_writes)
    assert waiting == 1  # t1 and t2 expired, t3 waits
    assert [t["credit_id"] for t in orjson.loads(state.data["s:lost"])["e"]] == ["t3"]


def test_the_first_sweep_decodes_only_the_records_whose_share_is_unknown() -> None:
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    run(stage, state, share_record(0, "known", T0), touch_record(1, "lost", "t1", T0))
    stage.forget_partitions()  # the sweep after a start or a rebalance reads the store
    decoded: list[str] = []
    load = stage.load
    stage.load = lambda share_id: decoded.append(share_id) or load(share_id)  # type: ignore[method-assign]
    assert stage.expire(ALL)[1] == 1
    assert decoded == ["lost", "lost"]  # found waiting by the scan, then swept


def test_expiry_leaves_the_shares_of_partitions_owned_elsewhere_alone() -> None:
    # After a rebalance the store still holds records of partitions now owned by another worker.
    ids = [f"s{n}" for n in range(20)]
    mine = next(i for i in ids if partition_for(i.encode(), SETTINGS.topic_partitions) == 0)
    theirs = next(i for i in ids if partition_for(i.encode(), SETTINGS.topic_partitions) == 1)
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    run(stage, state, touch_record(0, mine, "t-mine", T0), touch_record(1, theirs, "t-theirs", T0))
    stage.forget_partitions()
    run(stage, state, *shares_read_until(T0 + TTL + 1))
    out, _ = stage.expire({0})
    assert [key for _, key, _ in out.state_writes] == [f"s:{mine}"]


def test_a_touch_past_the_ttl_earns_nothing_when_its_share_comes_before_the_expiry_timer() -> None:
    # A backlog: touch and share in one batch, expire() not run in between.
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    touches = (touch_record(0, "s1", "waited-too-long", T0), touch_record(1, "s1", "edge", T0 + 1))
    assert run(stage, state, *touches, share_record(2, "s1", T0 + 1 + TTL)) == ["edge"]


def test_a_share_with_pages_of_waiting_touches_credits_them_all_after_a_restart() -> None:
    # A backlog read the shares topic behind the clicks: 2.5 pages of touches before the share.
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    first = [touch_record(n, "viral", f"t{n}", T0 + n) for n in range(2 * WAITING_PAGE + 500)]
    run(stage, state, *first)
    assert sorted(key for key in state.data if key.startswith("w:")) == ["w:0:viral", "w:1:viral", "w:2:viral"]

    more = [touch_record(len(first) + n, "viral", f"t{len(first) + n}", T0) for n in range(10)]
    out = stage.process(more)
    state.apply(out.state_writes)
    assert [key for _, key, _ in out.state_writes] == ["s:viral", "w:2:viral"]  # only the page it appended to

    restarted = ReferralStage(SETTINGS, DictState())
    restarted.store = state
    credited = run(restarted, state, share_record(len(first) + 10, "viral", T0 + 10))
    assert credited == [f"t{n}" for n in range(len(first) + 10)]


def test_expiry_rewrites_the_pages_left_and_deletes_the_rest() -> None:
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    old = [touch_record(n, "s1", f"old{n}", T0) for n in range(2 * WAITING_PAGE)]
    run(stage, state, *old, touch_record(len(old), "s1", "fresh", T0 + TTL + 1), *shares_read_until(T0 + TTL + 1))
    out, waiting = stage.expire(ALL)
    state.apply(out.state_writes)
    assert waiting == 1
    assert not [key for key in state.data if key.startswith("w:")]  # one touch left: inline again
    assert [t["credit_id"] for t in orjson.loads(state.data["s:s1"])["e"]] == ["fresh"]

    run(stage, state, *(touch_record(len(old) + 1 + n, "s2", f"gone{n}", T0) for n in range(WAITING_PAGE + 1)),
        *shares_read_until(T0 + TTL + 2))
    out, _ = stage.expire(ALL)
    state.apply(out.state_writes)
    assert not [key for key in state.data if "s2" in key]  # record and both pages tombstoned


def test_a_share_is_retired_once_every_touch_up_to_its_retention_was_read() -> None:
    state = DictState()
    stage = ReferralStage(SETTINGS, state)
    assert run(stage, state, share_record(0, "old", T0), share_record(1, "new", T0 + 10)) == []
    assert run(stage, state, touch_record(2, "old", "month-late", T0 + RETENTION, occurred_ms=T0 + 1)) == [
        "month-late"]
    run(stage, state, *touches_read_until(T0 + RETENTION))  # a touch ingested then may still come
    out, _ = stage.expire(ALL)
    assert out.state_writes == [] and "s:old" in state.data

    # Every partition but one has read every touch past the retention: not yet.
    last = SETTINGS.topic_partitions - 1
    run(stage, state, *touches_read_until(T0 + RETENTION + 1, range(last)))
    assert stage.expire(ALL)[0].state_writes == []
    run(stage, state, *touches_read_until(T0 + RETENTION + 1, range(last, last + 1)))
    out, _ = stage.expire(ALL)
    state.apply(out.state_writes)
    assert ("s:old" in state.data, "s:new" in state.data) == (False, True)
    assert out.counts == {("share_retired",): 1}

    # A touch past the retention finds no share: it waits, and earns nothing.
    assert run(stage, state, touch_record(3, "old", "too-late", T0 + RETENTION + 1, occurred_ms=T0 + 1)) == []


def test_retirement_after_a_restart_finds_the_shares_in_the_store_without_decoding_them() -> None:
    state = DictState()
    run(ReferralStage(SETTINGS, state), state, share_record(0, "a", T0), share_record(1, "b", T0 + 10),
        touch_record(2, "waits", "t1", T0))
    restarted = ReferralStage(SETTINGS, state)
    decoded: list[str] = []
    load = restarted.load
    restarted.load = lambda share_id: decoded.append(share_id) or load(share_id)  # type: ignore[method-assign]
    run(restarted, state, *touches_read_until(T0 + RETENTION + 5))
    out, _ = restarted.expire(ALL)
    assert [key for _, key, value in out.state_writes if value is None] == ["s:a"]
    assert decoded == ["waits", "a", "waits"]  # the waiting one twice (scan, sweep), the retired one once
