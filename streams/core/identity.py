"""Identity stitching rules: an anonymous visitor's events become a customer's.
Pure: no Kafka, Faust or ClickHouse (docs/definitions.md, identity).

A person is a customer together with the anonymous ids identified as the customer. Each
anonymous id's partition admits its events (replays, duplicates) and folds those read before
its identify into its own profile, keeping each such event (:func:`keep_pending`); once the
identify is accepted it forwards them, and every later one, to the customer's partition,
where each is folded into the customer's profile once (:func:`absorb_forwarded`).

Referral credits that involve an anonymous id (its share, or its touch) are kept per credit
id with the person the touch resolved to (:class:`PersonCredit`), so that a later identify
can turn "referred A" into "referred X", or into a self-referral that earns nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from typing import Any

from streams.core.erasure import is_referee_key
from streams.core.profile import REFERRED_CUSTOMERS_KEPT, PersonCredit, Profile
from streams.core.replay import absorb

# Events of one anonymous id read before its identify, kept to be forwarded (a bound of state).
PENDING_KEPT = 1_000
# Anonymous ids identified as one customer that its profile keeps by name (a bound of state).
LINKED_KEPT = 1_000


class IdentifyOutcome(Enum):
    LINKED = "linked"  # the first identify of the anonymous id: it is the customer from now on
    CONFIRMED = "confirmed"  # names the customer it is already identified as: nothing changes
    CONFLICT = "conflict"  # names another customer: reported, nothing changes


def identify(anonymous: Profile, customer_id: str) -> IdentifyOutcome:
    """Apply an accepted identify to the anonymous id's profile; the first one wins."""
    if anonymous.identified_as is None:
        anonymous.identified_as = customer_id
        return IdentifyOutcome.LINKED
    if anonymous.identified_as == customer_id:
        return IdentifyOutcome.CONFIRMED
    return IdentifyOutcome.CONFLICT


def record_person_credit(sharer: Profile, credit_id: str, credit: PersonCredit) -> bool:
    """Keep the newest copy of a credit; True when it changed the sharer's profile."""
    known = sharer.person_credits.get(credit_id)
    if known is not None and known.resolution >= credit.resolution:
        return False
    sharer.person_credits[credit_id] = credit
    sharer.version += 1
    return True


def keyed_referees(profile: Profile, referee_key: Callable[[str], str]) -> None:
    """Name the people ``profile`` referred by ``referee_key`` of their ids.

    A referrer's profile keeps the people it referred (to count them once) as keys made by
    ``referee_key`` (``streams.core.erasure.referee_key``), never as their ids: an erased person
    must not stay named in the state of the people who referred them. Entries that are ids
    (state written by earlier versions) are keyed when the profile is read."""
    if not all(is_referee_key(referred) for referred in profile.referred_customers):
        profile.referred_customers = {r if is_referee_key(r) else referee_key(r) for r in profile.referred_customers}
    for credit_id, credit in profile.person_credits.items():
        if not is_referee_key(credit.referred_person):
            profile.person_credits[credit_id] = dataclasses.replace(
                credit, referred_person=referee_key(credit.referred_person))


def keep_pending(anonymous: Profile, entry: list[Any]) -> bool:
    """Keep an event folded into a not yet identified anonymous profile, to forward it once
    the identify is accepted (``entry``: see :data:`Profile.pending`); False past the bound."""
    if len(anonymous.pending) >= PENDING_KEPT:
        return False
    anonymous.pending.append(entry)
    return True


def forwarded_lane(anonymous_id: str, lane: str) -> str:
    """The lane of one anonymous id's events read from ``lane``, as its customer absorbs them.
    Its topic part (before the first ``@``, escaped out of the id) names the anonymous id, so
    duplicates are never looked for among another id's events."""
    return f"{anonymous_id.replace('%', '%25').replace('@', '%40')}>{lane}"


def linked_anonymous_ids(customer: Profile) -> set[str]:
    """The anonymous ids whose events the customer's profile has absorbed: the id part of each
    forwarded lane (before its last ``>``: the lane after it is a topic's, which has none), and
    those identified as it (``link``)."""
    return customer.linked | {lane.rsplit(">", 1)[0].replace("%40", "@").replace("%25", "%")
                              for lane in customer.book.offsets if ">" in lane}


def link(customer: Profile, anonymous_id: str) -> bool:
    """Keep an anonymous id identified as the customer, to erase it with them; False past the
    bound (an id with events is known by its lanes anyway)."""
    if anonymous_id in customer.linked or len(customer.linked) >= LINKED_KEPT:
        return anonymous_id in customer.linked
    customer.linked.add(anonymous_id)
    return True


def absorb_forwarded(customer: Profile, lane: str, offset: int) -> bool:
    """True (and remembered) when a forwarded event is new to the customer.

    An anonymous id's partition sends each lane's events in offset order: those kept from
    before the identify first (again after every restart or rebalance, before anything else
    of the id), then each later one as it is read (again when replayed). So the customer gets
    every event of the lane in offset order, and an offset at or below the last one absorbed
    was folded already, whichever events the anonymous id's state held when it was sent."""
    return absorb(customer.book.offsets, lane, offset)


def person_view(profile: Profile, allow_self_referral: bool = False,
                referee_key: Callable[[str], str] = str) -> Profile:
    """The person of ``profile`` with credits involving anonymous ids resolved. Returns
    ``profile`` itself when it holds none (the common case, kept cheap). ``referee_key``: how
    the profile keeps the people it referred (see :func:`keyed_referees`)."""
    if not profile.person_credits:
        return profile
    # A shallow copy: only the referral counters change, and the person is only read for rows.
    person = dataclasses.replace(profile, referred_customers=set(profile.referred_customers))
    _count_person_credits(person, allow_self_referral, referee_key(profile.customer_id))
    return person


def _count_person_credits(person: Profile, allow_self_referral: bool, own_key: str) -> None:
    """Move credits kept per id into the referral counters, leaving out self-referrals of the
    person (the toucher turned out to be the sharer) unless they are allowed."""
    for credit in person.person_credits.values():
        if credit.referred_person == own_key and not allow_self_referral:
            continue
        if credit.touch_type == "purchase":
            person.referred_purchases += 1
            person.referred_revenue_cents += credit.amount_cents
        else:
            person.referred_clicks += 1
        if len(person.referred_customers) < REFERRED_CUSTOMERS_KEPT:
            person.referred_customers.add(credit.referred_person)
    person.person_credits = {}
