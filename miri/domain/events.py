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
from collections.abc import Callable
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


Convert = Callable[[Any], Any]


def _converter(kind: Any) -> Convert | None:
    """How a JSON value becomes ``kind``: a dataclass, a list of them, or as it is (None)."""
    if typing.get_origin(kind) is list:
        inner = _converter(typing.get_args(kind)[0])
        return None if inner is None else lambda values: [inner(v) for v in values]
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return lambda value: _make(kind, value)
    return None


@functools.cache
def _plan(cls: type) -> tuple[dict[str, str], dict[str, Convert]]:
    """Per class, once: its legacy key names, and a converter for each field that needs one."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # a type only its defining scope can resolve: fields are read as they are
        hints = {}
    converters = {}
    for f in dataclasses.fields(cls):
        convert = _converter(hints.get(f.name))
        if convert is not None:
            converters[f.name] = convert
    return getattr(cls, "LEGACY_KEYS", {}), converters


def _make(cls: type, raw: dict[str, Any]) -> Any:
    legacy, converters = _plan(cls)
    if legacy:
        raw = {legacy.get(k, k): v for k, v in raw.items()}
    for name, convert in converters.items():
        if name in raw:
            raw[name] = convert(raw[name])
    return cls(**raw)


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


@dataclass(frozen=True, kw_only=True)
class ItemShipped(Event):
    """The seller (or an admin) handed an item to a carrier; the buyer is mailed the tracking."""

    order_item_id: int
    order_id: int
    user_id: int
    carrier: str
    tracking_number: str


@dataclass(frozen=True, kw_only=True)
class ItemReturned(Event):
    """A return completed and its stock went back; payments gives the money back."""

    order_item_id: int
    order_id: int
    user_id: int


@dataclass(frozen=True, kw_only=True)
class PaymentTakenLate(Event):
    """A provider took money for an item already expired or canceled: payments gives it back
    (its own consumer, so a crash between the webhook and the refund loses no refund)."""

    order_item_id: int
    order_id: int
    user_id: int


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(Event):
    """Money a payment had taken went back to the buyer (a cancel, a late payment, a return)."""

    order_item_id: int
    order_id: int
    user_id: int
    amount: int


@dataclass(frozen=True, kw_only=True)
class PasswordResetRequested(Event):
    """Mail a password-reset token; the token travels encrypted (the outbox is not a secret)."""

    user_id: int
    token_enc: str  # base64 of the AES-GCM ciphertext, context "password-reset"
