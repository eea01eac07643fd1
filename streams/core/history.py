"""Backfilled history: what a record of the backfill topic carries besides its event, and the
rule that admits it (docs/definitions.md, history). Pure: no Kafka, no Faust.

An import has one cut-over time: history is what occurred before it, and the live topics carry
what occurred from it on. Every record of the import carries the cut-over in a header, so the
worker applies the same rule as ``streams backfill`` whoever published the record, and an
event sent live and again in a backfill counts once.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.errors import DecodeError

CUTOVER_HEADER = "cutover"


def cutover_headers(cutover_ms: int) -> tuple[tuple[str, bytes], ...]:
    return ((CUTOVER_HEADER, str(cutover_ms).encode()),)


def read_cutover(headers: Sequence[tuple[str, bytes]]) -> int:
    """The cut-over (epoch ms) a backfill record carries; ``bad_backfill`` when it has none."""
    for name, value in headers:
        if name == CUTOVER_HEADER:
            try:
                return int(value)
            except ValueError:
                break
    raise DecodeError("bad_backfill", f"a backfill record needs an integer {CUTOVER_HEADER!r} header (epoch ms)")


def check_before_cutover(occurred_at_ms: int, cutover_ms: int) -> None:
    """History is what occurred before the cut-over; the live topics carry the rest."""
    if occurred_at_ms >= cutover_ms:
        raise DecodeError("after_cutover", f"occurred at {occurred_at_ms}, not before its import's cut-over "
                                           f"{cutover_ms}: the live topics carry it")


def hold_back_backfill(holding: bool, live_behind_s: float | None, bound_s: float) -> bool:
    """Whether the worker should read no backfill for now: live input comes first, and live
    events should reach ClickHouse within ``bound_s`` of their ingest time. Processing gets half
    of it (writing rows and the backfill records already fetched take the rest): the worker
    stops reading the backfill once the live records it processes are more than half the bound
    behind, and reads it again once they are under a quarter of it, or once no live record came
    (``live_behind_s`` None: live input is caught up or idle)."""
    if live_behind_s is None:
        return False
    return live_behind_s > (bound_s / 4 if holding else bound_s / 2)
