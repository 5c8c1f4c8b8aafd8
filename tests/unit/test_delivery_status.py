"""A delivery status only moves forward."""

from __future__ import annotations

from dispatcher.bounces.event import BounceType
from dispatcher.model.delivery_status import FINAL, DeliveryStatus


def test_the_statuses_are_ranked_from_accepted_to_complained() -> None:
    order = [
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.DELAYED,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.COMPLAINED,
    ]
    assert [s.rank for s in order] == sorted(s.rank for s in order)
    assert len({s.rank for s in order}) == len(order)
    # a bounce, a drop and a refusal end a mail alike; a complaint may still follow delivery
    assert (
        DeliveryStatus.BOUNCED.rank == DeliveryStatus.DROPPED.rank == DeliveryStatus.REJECTED.rank
    )
    assert DeliveryStatus.ACCEPTED not in FINAL
    assert DeliveryStatus.DELAYED not in FINAL
    assert DeliveryStatus.DELIVERED in FINAL


def test_each_bounce_kind_is_a_delivery_status() -> None:
    assert BounceType.HARDERROR.delivery_status is DeliveryStatus.BOUNCED
    assert BounceType.SOFTERROR.delivery_status is DeliveryStatus.DELAYED
    assert BounceType.DROP.delivery_status is DeliveryStatus.DROPPED
    assert BounceType.COMPLAINT.delivery_status is DeliveryStatus.COMPLAINED
