"""Shared pieces of request and response models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictStr,
    WithJsonSchema,
)

from miri.domain import paging
from miri.domain.orders.model import PlacedOrder
from miri.domain.users import rules
from miri.domain.views.orders import OrderItemView

T = TypeVar("T")


class Body(BaseModel):
    # Strict: "5" is not 5 and 5 is not "5"; clients get told instead of guessed at.
    model_config = ConfigDict(strict=True, str_max_length=1000)


def text(pattern: str | None = None, **bounds: int) -> WithJsonSchema:
    """The OpenAPI description of a string that a rule function checks.

    The rules (``miri.domain.users.rules``) give the messages clients see; this says the same in JSON
    Schema so that whatever the schema allows is accepted and the rest refused (schemathesis
    checks both directions).
    """
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    schema.update({"minLength" if k == "min" else "maxLength": v for k, v in bounds.items()})
    return WithJsonSchema(schema)


def integer(minimum: int, maximum: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": minimum, "maximum": maximum})


def _integral(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; so does the shop. 5.5, "5" and true are refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def schema_of(annotated: Any) -> WithJsonSchema:
    """The documented schema of an annotated type, to reuse on ``X | None`` fields that take
    null only to explain why not (the service answers "cannot be null")."""
    return next(m for m in annotated.__metadata__ if isinstance(m, WithJsonSchema))


def at_least_one(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` for edit bodies: no defaults shown, at least one field given."""
    props = schema.get("properties", {})
    for prop in props.values():
        prop.pop("default", None)
    schema["anyOf"] = [{"required": [name]} for name in props]
    schema["minProperties"] = 1  # says the same, for tools that skip ``anyOf``


# A JSON integer: strict (no strings, no booleans), but 5.0 is 5.
Int = Annotated[int, BeforeValidator(_integral), Strict()]

_LETTERS = "A-Za-z" + rules.HANGUL
Email = Annotated[StrictStr, AfterValidator(rules.email), text(f"^{rules.EMAIL_PATTERN}$", max=30)]
Password = Annotated[StrictStr, AfterValidator(rules.password), text(f"^{rules.PASSWORD_PATTERN}$")]
PhoneNumber = Annotated[
    StrictStr, AfterValidator(rules.phone_number), text(f"^{rules.PHONE_PATTERN}$")
]
Address = Annotated[
    StrictStr,
    AfterValidator(rules.address),
    text(f"^ *[{_LETTERS}0-9\\-_.,#][{_LETTERS}0-9 \\-_.,#]*$", max=50),
]
UserName = Annotated[
    StrictStr, AfterValidator(rules.user_name), text(f"^ *[{_LETTERS}][{_LETTERS} ]*$", max=20)
]


class Paging(BaseModel):
    """``?page=0&size=10``: 0-based, size 1..100, newest first."""

    page: int = Field(0, ge=0, le=1_000_000)
    size: int = Field(10, ge=1, le=100)


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    size: int
    totalItems: int
    totalPages: int


def page_of(items: list[Any], paging: Paging, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": paging.page,
        "size": paging.size,
        "totalItems": total,
        "totalPages": (total + paging.size - 1) // paging.size,
    }


def page_out(page: paging.Page[Any], shape: Callable[[Any], Any]) -> dict[str, Any]:
    """A domain page as the API's ``Page``, each item put in its API shape by ``shape``."""
    return {
        "items": [shape(item) for item in page.items],
        "page": page.page,
        "size": page.size,
        "totalItems": page.total_items,
        "totalPages": page.total_pages,
    }


# -- orders ---------------------------------------------------------------------------------------
class OrderLine(BaseModel):
    orderDetailId: int
    goodsId: int
    quantity: int
    unitPrice: int
    status: str


class OrderOut(BaseModel):
    orderId: int
    items: list[OrderLine]
    totalPrice: int

    @classmethod
    def of(cls, order: PlacedOrder) -> OrderOut:
        return cls(
            orderId=order.order_id,
            items=[
                OrderLine(
                    orderDetailId=i.order_item_id,
                    goodsId=i.goods_id,
                    quantity=i.quantity,
                    unitPrice=i.unit_price,
                    status=i.status,
                )
                for i in order.items
            ],
            totalPrice=order.total_price,
        )


class OrderItem(BaseModel):
    orderDetailId: int
    orderId: int
    goodsId: int
    goodsName: str
    category: str
    quantity: int
    unitPrice: int
    subTotalPrice: int
    orderStatus: str
    shippingStatus: str
    paymentStatus: str | None
    returnStatus: str | None
    orderedAt: str

    @classmethod
    def of(cls, item: OrderItemView) -> OrderItem:
        return cls(
            orderDetailId=item.order_item_id,
            orderId=item.order_id,
            goodsId=item.goods_id,
            goodsName=item.goods_name,
            category=item.category,
            quantity=item.quantity,
            unitPrice=item.unit_price,
            subTotalPrice=item.sub_total_price,
            orderStatus=item.order_status,
            shippingStatus=item.shipping_status,
            paymentStatus=item.payment_status,
            returnStatus=item.return_status,
            orderedAt=item.ordered_at.isoformat(timespec="seconds"),
        )


def order_out(order: PlacedOrder) -> dict[str, Any]:
    """A placed order as the API answers it: ``OrderOut.of(order).model_dump()``, built directly
    because it is on every 201 of the hot path and building the models costs more than the rest of
    the answer (a unit test holds the two equal, key order included)."""
    return {
        "orderId": order.order_id,
        "items": [
            {
                "orderDetailId": i.order_item_id,
                "goodsId": i.goods_id,
                "quantity": i.quantity,
                "unitPrice": i.unit_price,
                "status": i.status,
            }
            for i in order.items
        ],
        "totalPrice": order.total_price,
    }


def order_item(item: OrderItemView) -> dict[str, Any]:
    """An order item as the API shows it."""
    return OrderItem.of(item).model_dump()
