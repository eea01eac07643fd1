"""Seeded, varied events of every type for the codec tests, the benchmark and round trips."""

from __future__ import annotations

import random

from streams.core.events import Click, Event, Purchase, Share, Support, TicketAction

_BASE_MS = 1_795_000_000_000  # 2026-11-18
_CHANNELS = ("web", "ios", "android", "email")
_NETWORKS = ("facebook", "whatsapp", "x", "email", "copy_link")


def _maybe(rng: random.Random, value: str) -> str | None:
    return value if rng.random() < 0.5 else None


def sample_event(rng: random.Random, n: int) -> Event:
    """Event number ``n`` (unique event_id); optional fields set about half the time."""
    common = (
        f"evt-{n:08d}",
        f"cust-{rng.randrange(100_000):06d}",
        _BASE_MS + rng.randrange(30 * 86_400_000),
        rng.choice(_CHANNELS),
        _maybe(rng, f"sess-{rng.randrange(10**9)}"),
    )
    product = _maybe(rng, f"prod-{rng.randrange(5_000)}")
    share_ref = _maybe(rng, f"shr-{rng.randrange(10**6)}")
    kind = n % 4
    if kind == 0:
        return Click(*common, f"/product/{rng.randrange(5_000)}", product, share_ref)
    if kind == 1:
        promo = _maybe(rng, f"promo-{rng.randrange(50)}")
        return Share(*common, f"shr-{n}", rng.choice(_NETWORKS), product, promo)
    if kind == 2:
        cents = rng.choice((1, 1234, 999_999_999_999, rng.randrange(1, 10**7)))
        return Purchase(*common, f"ord-{n}", cents, "EUR", product, share_ref)
    satisfaction = rng.choice((None, 1, 2, 3, 4, 5))
    action = rng.choice(list(TicketAction))
    return Support(*common, f"tkt-{rng.randrange(10**5)}", action, "chat", satisfaction)


def sample_events(count: int, seed: int = 7) -> list[Event]:
    """``count`` events, types in rotation (click, share, purchase, support)."""
    rng = random.Random(seed)
    return [sample_event(rng, n) for n in range(count)]
