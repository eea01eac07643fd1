"""The soak's chart: the worker's memory, lag and freshness against the events processed, one
panel each, as a PNG (matplotlib, Agg), so that a flat or rising line is seen at a glance beside
the figures in docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from tests.bench.soak_figures import Sample


def draw(samples: Sequence[Sample], title: str, path: Path) -> None:
    """Three panels over millions of events landed: RSS (and customers held), lag, freshness."""
    events_m = [s.landed / 1e6 for s in samples]
    # A Figure of its own rather than pyplot's: no global state, and no display needed (a PNG is
    # rendered with Agg whatever the default backend).
    figure = Figure(figsize=(9, 8.5), layout="constrained")
    memory, lag, fresh = figure.subplots(3, 1, sharex=True)
    figure.suptitle(title, fontsize=10)

    memory.plot(events_m, [s.rss_mb for s in samples], color="tab:blue", label="RSS (VmRSS)")
    memory.plot(events_m, [s.peak_rss_mb for s in samples], color="tab:blue", linestyle=":", label="peak (VmHWM)")
    memory.set_ylabel("worker memory (MB)")
    memory.set_ylim(bottom=0)
    customers = memory.twinx()
    customers.plot(events_m, [s.customers_published if s.customers_held is None else s.customers_held
                              for s in samples], color="tab:gray", linestyle="--", label="customers held")
    customers.set_ylabel("customers held", color="tab:gray")
    customers.set_ylim(bottom=0)
    handles = memory.get_legend_handles_labels()[0] + customers.get_legend_handles_labels()[0]
    memory.legend(handles=handles, loc="lower right", fontsize=8)

    lag.plot(events_m, [s.lag or 0 for s in samples], color="tab:orange")
    lag.set_ylabel("lag (records)")
    lag.set_ylim(bottom=0)

    fresh.plot(events_m, [s.fresh_p50_ms for s in samples], color="tab:green", label="p50")
    fresh.plot(events_m, [s.fresh_p99_ms for s in samples], color="tab:red", label="p99")
    fresh.set_ylabel("publish -> visible (ms)")
    fresh.set_ylim(bottom=0)
    fresh.legend(loc="upper right", fontsize=8)
    fresh.set_xlabel("events processed (millions)")

    for axes in (memory, lag, fresh):
        axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
