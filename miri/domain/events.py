"""The events that cross modules (the old Kafka payloads): snake_case dataclasses, JSON on the outbox.

An event may nest dataclasses (``OrderPlaced.items``); ``to_json`` writes them as objects and
``from_json`` builds them again from the field types. A nested dataclass may name the keys its
older payloads used (``LEGACY_KEYS``): outbox rows written before a rename are still read.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
import typing
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


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError:  # a type only its defining scope can resolve: fields are read as they are
        return {}


def _build(kind: Any, value: Any) -> Any:
    """``value`` as read from JSON, made into ``kind`` where that is a dataclass or a list of them."""
    if typing.get_origin(kind) is list:
        (inner,) = typing.get_args(kind)
        return [_build(inner, v) for v in value]
    if dataclasses.is_dataclass(kind) and isinstance(value, dict):
        return _make(kind, value)
    return value


def _make(cls: type, raw: dict[str, Any]) -> Any:
    legacy: dict[str, str] = getattr(cls, "LEGACY_KEYS", {})
    types = _field_types(cls)
    values = {legacy.get(k, k): v for k, v in raw.items()}
    return cls(**{k: _build(types.get(k), v) for k, v in values.items()})


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
        return orjson.dumps(self).decode()  # orjson serialises (nested) dataclasses natively

    @staticmethod
    def from_json(type_name: str, payload: str | bytes) -> Event:
        return _make(EVENT_TYPES[type_name], orjson.loads(payload))


@dataclass(frozen=True)
class OrderedItem:
    """One item of a placed order, as payments needs it to open a payment."""

    order_item_id: int
    goods_id: int
    quantity: int
    unit_price: int
    # Outbox rows written before events went snake_case carry the API's names.
    LEGACY_KEYS: ClassVar[dict[str, str]] = {
        "orderDetailId": "order_item_id",
        "goodsId": "goods_id",
        "unitPrice": "unit_price",
    }


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    """An order was stored; payments opens one payment per item."""

    order_id: int
    user_id: int
    items: list[OrderedItem]


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
