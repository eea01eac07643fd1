"""The stages' cache of decoded state records: bounded, least recently written out first."""

from __future__ import annotations

from streams.stages.records import DecodedCache


def test_a_full_cache_drops_the_least_recently_written_key() -> None:
    cache: DecodedCache[int] = DecodedCache(limit=3)
    for key in ("a", "b", "c"):
        cache.put(key, 1)
    cache.put("a", 2)  # written again: now the newest
    cache.put("d", 1)
    assert [key for key in "abcd" if cache.get(key) is not None] == ["a", "c", "d"]
    assert cache.get("a") == 2


def test_a_cache_stays_within_its_limit_under_churn() -> None:
    cache: DecodedCache[int] = DecodedCache(limit=100)
    for i in range(10_000):
        cache.put(f"k{i % 250}", i)
    assert len(cache.items) == 100
    assert cache.get("k249") == 9_999 and cache.get("k149") is None


def test_discard_and_clear_forget_keys() -> None:
    cache: DecodedCache[int] = DecodedCache()
    cache.put("a", 1)
    cache.put("b", 2)
    cache.discard("a")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert cache.get("b") is None
