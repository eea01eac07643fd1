"""Identity stitching rules: an anonymous visitor's profile becomes part of a customer's.
Pure: no Kafka, Faust or ClickHouse (docs/definitions.md, identity).

A person is a customer's own profile together with the profiles of the anonymous ids
identified as the customer. Every profile value is a function of a set of events, and the
events of different ids are different events, so the person's value is the union of the
parts: sums add, minima and maxima combine, tickets with one ``ticket_id`` combine field by
field. :func:`person_view` builds that union, leaving the parts untouched.

Referral credits that involve an anonymous id (its share, or its touch) are kept per credit
id with the person the touch resolved to (:class:`PersonCredit`), so that a later identify
can turn "referred A" into "referred X", or into a self-referral that earns nothing.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from streams.core.profile import DAILY_KEPT, HOURLY_KEPT, REFERRED_CUSTOMERS_KEPT, PersonCredit, Profile, Ticket
from streams.core.windows import keep_newest


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


def fold_part(customer: Profile, anonymous_id: str, part: Profile, part_json: dict[str, Any] | None = None) -> bool:
    """Keep the newest version of an anonymous profile identified as ``customer`` (and its
    changelog form ``part_json`` when the caller has it); True when it changed the person (an
    older or equal version is a resend or a replay)."""
    known = customer.merged.get(anonymous_id)
    if known is not None and known.version >= part.version:
        return False
    customer.merged[anonymous_id] = part
    if part_json is None:
        customer.merged_json.pop(anonymous_id, None)
    else:
        customer.merged_json[anonymous_id] = part_json
    return True


def person_view(profile: Profile, allow_self_referral: bool = False) -> Profile:
    """The person of ``profile``: its own events and those of every anonymous id merged into
    it, with credits involving anonymous ids resolved. Returns ``profile`` itself when there
    is nothing to combine (the common case, kept cheap)."""
    if not profile.merged and not profile.person_credits:
        return profile
    person = _own_part(profile)
    for part in profile.merged.values():
        _union(person, part)
    keep_newest(person.hourly, HOURLY_KEPT)
    keep_newest(person.daily, DAILY_KEPT)
    _count_person_credits(person, allow_self_referral)
    return person


def _count_person_credits(person: Profile, allow_self_referral: bool) -> None:
    """Move credits kept per id into the referral counters, leaving out self-referrals of the
    person (the toucher turned out to be the sharer) unless they are allowed."""
    for credit in person.person_credits.values():
        if credit.referred_person == person.customer_id and not allow_self_referral:
            continue
        if credit.touch_type == "purchase":
            person.referred_purchases += 1
            person.referred_revenue_cents += credit.amount_cents
        else:
            person.referred_clicks += 1
        if len(person.referred_customers) < REFERRED_CUSTOMERS_KEPT:
            person.referred_customers.add(credit.referred_person)
    person.person_credits = {}


def _own_part(profile: Profile) -> Profile:
    """The person before its merged parts: a copy of the profile's own values (what
    :func:`_union` of the profile into an empty person makes, in fewer steps)."""
    return Profile(
        profile.customer_id, version=profile.version, first_seen_at=profile.first_seen_at,
        last_seen_at=profile.last_seen_at, counts=list(profile.counts), last_purchase_at=profile.last_purchase_at,
        shares_by_network=dict(profile.shares_by_network),
        tickets={ticket_id: _copy_ticket(ticket) for ticket_id, ticket in profile.tickets.items()},
        satisfaction_latest=profile.satisfaction_latest, satisfaction_sum=profile.satisfaction_sum,
        satisfaction_count=profile.satisfaction_count,
        hourly={start: list(counts) for start, counts in profile.hourly.items()},
        daily={start: list(counts) for start, counts in profile.daily.items()},
        referred_clicks=profile.referred_clicks, referred_purchases=profile.referred_purchases,
        referred_revenue_cents=profile.referred_revenue_cents, referred_customers=set(profile.referred_customers),
        anonymous=profile.anonymous, person_credits=dict(profile.person_credits),
    )


def _union(person: Profile, part: Profile) -> None:
    person.version += part.version
    person.first_seen_at = _least(person.first_seen_at, part.first_seen_at)
    person.last_seen_at = _greatest(person.last_seen_at, part.last_seen_at)
    person.counts = [a + b for a, b in zip(person.counts, part.counts, strict=True)]
    person.last_purchase_at = _greatest(person.last_purchase_at, part.last_purchase_at)
    for network, count in part.shares_by_network.items():
        person.shares_by_network[network] = person.shares_by_network.get(network, 0) + count
    for ticket_id, ticket in part.tickets.items():
        person.tickets[ticket_id] = _union_ticket(person.tickets.get(ticket_id), ticket)
    if part.satisfaction_latest is not None and (
            person.satisfaction_latest is None or part.satisfaction_latest[:2] > person.satisfaction_latest[:2]):
        person.satisfaction_latest = part.satisfaction_latest
    person.satisfaction_sum += part.satisfaction_sum
    person.satisfaction_count += part.satisfaction_count
    for own, theirs in ((person.hourly, part.hourly), (person.daily, part.daily)):
        for start, counts in theirs.items():
            mine = own.get(start)
            own[start] = list(counts) if mine is None else [a + b for a, b in zip(mine, counts, strict=True)]
    person.referred_clicks += part.referred_clicks
    person.referred_purchases += part.referred_purchases
    person.referred_revenue_cents += part.referred_revenue_cents
    person.referred_customers |= part.referred_customers
    person.person_credits.update(part.person_credits)


def _union_ticket(mine: Ticket | None, theirs: Ticket) -> Ticket:
    if mine is None:
        return _copy_ticket(theirs)
    latest, status = max((mine.latest, mine.status), (theirs.latest, theirs.status))
    return Ticket(_least(mine.opened_at, theirs.opened_at), _least(mine.any_at, theirs.any_at),
                  _least(mine.first_reply_at, theirs.first_reply_at),
                  _greatest(mine.resolved_at, theirs.resolved_at), latest, status)


def _copy_ticket(ticket: Ticket) -> Ticket:
    return Ticket(ticket.opened_at, ticket.any_at, ticket.first_reply_at, ticket.resolved_at,
                  ticket.latest, ticket.status)


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
