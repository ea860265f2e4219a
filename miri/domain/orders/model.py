"""What the orders module hands out, and what it needs from the goods module (as protocols)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from miri.domain.events import OrderItemCanceled

PAYMENT_PENDING = "PAYMENT_PENDING"


@dataclass(frozen=True)
class Idempotency:
    """A client's ``Idempotency-Key`` and the hash of the request it came with."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class OrderLine:
    """One item of a placed order."""

    order_item_id: int
    goods_id: int
    quantity: int
    unit_price: int
    status: str = PAYMENT_PENDING


@dataclass(frozen=True)
class PlacedOrder:
    order_id: int
    items: list[OrderLine]
    total_price: int


@dataclass(frozen=True)
class Released:
    """Stock an item gave back: committed in the database, to be returned to live stock."""

    goods_id: int
    user_id: int
    quantity: int
    epoch: int | None = None  # the stock epoch read in the commit that flipped the flag


# -- what orders needs of the goods module ----------------------------------------------------
class Priced(Protocol):
    @property
    def price(self) -> int: ...


class Stock(Protocol):
    """Live stock: take it for an order (all items or none), give it back."""

    async def reserve_many(
        self, user_id: int, items: Sequence[tuple[int, int]]
    ) -> Mapping[int, Priced]: ...

    async def release(
        self, user_id: int, goods_id: int, quantity: int, epoch: int | None = None
    ) -> None: ...


class Gate(Protocol):
    """The waiting room's check on the order path: use the buyer's passes before reserving."""

    async def use_passes(
        self, user_id: int, goods_ids: Sequence[int], tokens: Sequence[str]
    ) -> Any: ...

    async def reserved(self, use: Any) -> None: ...

    async def give_back(self, use: Any, *, sold_out: bool) -> None: ...


class Refunds(Protocol):
    """Payments' side of a cancel, asked at once so the cancel's answer shows the refund. The
    outbox delivers the same event to payments as well; both ways are idempotent."""

    async def on_item_canceled(self, event: OrderItemCanceled) -> None: ...


class Sold(Protocol):
    @property
    def seller_id(self) -> int: ...


class Catalogue(Protocol):
    """Whose goods an item is (fulfilment lets only that seller ship it)."""

    async def get(self, goods_id: int) -> Sold: ...


class Wish(Protocol):
    @property
    def goods_id(self) -> int: ...

    @property
    def quantity(self) -> int: ...


class Wishlist(Protocol):
    async def entries(self, user_id: int, wish_ids: Sequence[int]) -> Sequence[Wish]: ...


async def give_back(stock: Stock, released: Sequence[Released]) -> None:
    """Return committed releases to live stock (after the commit that flipped their flag)."""
    for r in released:
        await stock.release(r.user_id, r.goods_id, r.quantity, r.epoch)
