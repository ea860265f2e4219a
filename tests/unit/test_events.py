"""Events on the outbox: snake_case JSON both ways, nested items included, old payloads still read."""

from __future__ import annotations

import orjson

from miri.domain.events import (
    Event,
    OrderedItem,
    OrderItemCanceled,
    OrderPlaced,
    PaymentAborted,
)


def test_an_order_placed_goes_through_the_outbox_and_back() -> None:
    event = OrderPlaced(
        order_id=7,
        user_id=3,
        items=[OrderedItem(11, 2, 3, 1000), OrderedItem(12, 5, 1, 250)],
    )
    payload = orjson.loads(event.to_json())
    assert payload["items"][0] == {
        "order_item_id": 11,
        "goods_id": 2,
        "quantity": 3,
        "unit_price": 1000,
    }
    back = Event.from_json("OrderPlaced", event.to_json())
    assert back == event
    assert isinstance(back, OrderPlaced) and isinstance(back.items[0], OrderedItem)


def test_an_order_placed_written_before_snake_case_items_is_still_read() -> None:
    # What an outbox row held before events went snake_case: the API's names in each item.
    old = {
        "event_id": "0123456789abcdef0000000000000001",
        "occurred_at": 1_790_000_000.5,
        "order_id": 7,
        "user_id": 3,
        "items": [{"orderDetailId": 11, "goodsId": 2, "quantity": 3, "unitPrice": 1000}],
    }
    event = Event.from_json("OrderPlaced", orjson.dumps(old))
    assert isinstance(event, OrderPlaced)
    assert event.items == [OrderedItem(order_item_id=11, goods_id=2, quantity=3, unit_price=1000)]
    assert event.event_id == old["event_id"] and event.occurred_at == old["occurred_at"]


def test_flat_events_round_trip() -> None:
    for event in (
        PaymentAborted(order_item_id=1, order_id=2, user_id=3, reason="the buyer left"),
        OrderItemCanceled(order_item_id=1, order_id=2, user_id=3, reason="expired"),
    ):
        assert Event.from_json(event.name, event.to_json()) == event
