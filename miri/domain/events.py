"""The events that cross modules (the old Kafka payloads). Plain data, JSON on the outbox."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

EVENT_TYPES: dict[str, type[Event]] = {}

# Event ids: a random per-process prefix and a counter. Unique across processes and restarts
# like a uuid4, at a fraction of its cost on the order path.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count()


def new_event_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


@dataclass(frozen=True, kw_only=True)
class Event:
    event_id: str = field(default_factory=new_event_id)
    occurred_at: float = field(default_factory=time.time)
    name: ClassVar[str] = "Event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__
        EVENT_TYPES[cls.__name__] = cls

    def to_json(self) -> str:
        return orjson.dumps(self).decode()  # orjson serialises dataclasses natively

    @staticmethod
    def from_json(type_name: str, payload: str | bytes) -> Event:
        cls = EVENT_TYPES[type_name]
        return cls(**orjson.loads(payload))


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    """An order was stored; payments opens one payment per item."""

    order_id: int
    user_id: int
    # Each item: {"orderDetailId", "goodsId", "quantity", "unitPrice"}.
    items: list[dict[str, int]]


@dataclass(frozen=True, kw_only=True)
class PaymentCompleted(Event):
    order_item_id: int
    order_id: int
    user_id: int


@dataclass(frozen=True, kw_only=True)
class PaymentAborted(Event):
    """The buyer abandoned, the gateway refused, or the payment timed out."""

    order_item_id: int
    order_id: int
    user_id: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrderItemCanceled(Event):
    """An item was canceled: by the buyer (payments refunds), by expiry (payment aborted), or
    after a late payment for an item already canceled (payments refunds)."""

    order_item_id: int
    order_id: int
    user_id: int
    reason: str = "buyer"  # "buyer" | "expired" | "late-payment"
