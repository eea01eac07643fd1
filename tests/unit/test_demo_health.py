"""The demo's health line: measured on the run, in words and units people read."""

from __future__ import annotations

from streams.tools.demo import Landing


def test_health_line_when_everything_landed_and_the_worker_caught_up() -> None:
    landing = Landing(expected=10_000, visible=10_000, published_s=4.6, visible_s=6.2, caught_up_s=8.0)
    assert landing.line() == ("10,000 accepted events visible in ClickHouse 1.6 s after publishing ended "
                              "(1,613 events/s end to end); worker lag 0 records 3.4 s after publishing ended")


def test_health_line_says_what_is_missing_and_where_to_look() -> None:
    short = Landing(expected=10_000, visible=7_250, published_s=4.6, visible_s=180.0, caught_up_s=None)
    assert short.line() == ("only 7,250 of 10,000 accepted events visible in ClickHouse after 3 min: "
                            "see `deploy/local/stack logs worker`")
    lagging = Landing(expected=10, visible=10, published_s=1.0, visible_s=2.0, caught_up_s=None)
    assert lagging.line().endswith("the worker still lags (or its /metrics is unreachable)")
