"""Pure rules of the product: events, event time, the profile fold, referral attribution,
replay and duplicate admission, the repartition topic's records. No Faust, no I/O (an import
contract in ``make lint`` keeps it so)."""
