"""One stitched journey for the demo: an anonymous visitor follows a friend's shared link,
browses, signs up and buys; the pipeline counts it all for the new customer and credits the
friend (docs/definitions.md, identity). Pure: builds the records, publishes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from streams.core.events import AnyEvent, Click, Identify, Purchase, Share
from streams.tools.simulate import MINUTE_MS, SimRecord

INGEST_DELAY_MS = 1_000


@dataclass(frozen=True, slots=True)
class Journey:
    """Who is who in the journey, and its records in publish order."""

    friend: str
    visitor_device: str
    customer: str
    records: list[SimRecord]


def stitched_journey(run: str, start_ms: int, currency: str) -> Journey:
    """The journey's records; ``run`` keeps its ids apart from other runs' in the same database."""
    friend, device, customer = f"ana-{run}", f"dev-{run}-phone", f"ben-{run}"
    share_id = f"sh-{run}-sneakers"
    events: list[AnyEvent] = [
        Share(f"j-{run}-1", friend, start_ms, "ios", None, share_id, "whatsapp", "p-042", None),
        Click(f"j-{run}-2", "", start_ms + 60 * MINUTE_MS, "web", f"ses-{run}", "/product/p-042", "p-042",
              share_id, device),
        Click(f"j-{run}-3", "", start_ms + 62 * MINUTE_MS, "web", f"ses-{run}", "/search", None, None, device),
        Identify(f"j-{run}-4", customer, start_ms + 70 * MINUTE_MS, "web", f"ses-{run}", device),
        Purchase(f"j-{run}-5", customer, start_ms + 75 * MINUTE_MS, "web", f"ses-{run}", f"ord-{run}", 8_900,
                 currency, "p-042", share_id),
    ]
    records = [SimRecord(e.type, e.actor_id.encode(), e.occurred_at_ms + INGEST_DELAY_MS, e) for e in events]
    return Journey(friend, device, customer, records)
