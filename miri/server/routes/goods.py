"""Goods (API.md): the catalogue, live stock, and the seller's side."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from miri.domain.errors import Forbidden
from miri.domain.goods import model
from miri.domain.queue import RoomSettings
from miri.domain.queue import model as room_model
from miri.server.api import Api, ok, path_id
from miri.server.goods_pages import (
    GOODS_CACHE,
    LISTING_CACHE,
    PAGES,
    STOCK_CACHE,
    cached_answer,
)
from miri.server.keys import SHOP
from miri.server.models import (
    Body,
    Int,
    Page,
    Paging,
    at_least_one,
    integer,
    page_of,
    schema_of,
    text,
)

api = Api("goods")

_WS, _TEXT = f"[{model.WHITESPACE}]", f"[^{model.WHITESPACE}]"
GoodsName = Annotated[StrictStr, AfterValidator(model.goods_name), text(_TEXT, min=1, max=20)]
Description = Annotated[StrictStr, AfterValidator(model.description), text(_TEXT, max=255)]
LongDescription = Annotated[  # on edits: at least 10 characters once trimmed
    StrictStr,
    AfterValidator(lambda v: model.description(v, 10)),
    text(f"^{_WS}*{_TEXT}[\\s\\S]{{8,}}{_TEXT}{_WS}*$", max=255),
]
Price = Annotated[Int, AfterValidator(model.price), integer(0, model.MAX_PRICE)]
Stock = Annotated[Int, AfterValidator(model.stock_quantity), integer(0, model.MAX_STOCK)]
Category = Annotated[
    StrictStr,
    AfterValidator(model.category),
    WithJsonSchema({"type": "string", "enum": list(model.CATEGORIES)}),
]
StartTime = Annotated[
    StrictStr,
    AfterValidator(model.parse_time),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "must be in the future; without an offset, read in the shop's zone",
            "examples": ["2030-11-23T10:00:00+09:00"],
        }
    ),
]
BuyerLimit = Annotated[Int, AfterValidator(model.per_buyer_limit), integer(1, model.MAX_LIMIT)]

# API field -> service keyword, for edits.
_EDITS = {
    "goodsName": "name",
    "goodsDescription": "description",
    "goodsPrice": "price",
    "category": "category",
    "reservationStartTime": "reservation_start",
    "perBuyerLimit": "per_buyer_limit",
}


AdmitRate = Annotated[
    Int,
    Field(ge=1, le=room_model.MAX_ADMIT_PER_SECOND),
    integer(1, room_model.MAX_ADMIT_PER_SECOND),
]
PassSeconds = Annotated[
    Int,
    Field(ge=room_model.MIN_PASS_SECONDS, le=room_model.MAX_PASS_SECONDS),
    integer(room_model.MIN_PASS_SECONDS, room_model.MAX_PASS_SECONDS),
]


class WaitingRoomBody(Body):
    """A waiting room in front of the goods (API.md "Waiting room")."""

    enabled: bool = True
    admitPerSecond: AdmitRate = room_model.DEFAULT_ADMIT_PER_SECOND
    passSeconds: PassSeconds = room_model.DEFAULT_PASS_SECONDS

    def settings(self) -> RoomSettings:
        return RoomSettings(self.enabled, self.admitPerSecond, self.passSeconds)


class WaitingRoomOut(BaseModel):
    enabled: bool
    admitPerSecond: int
    passSeconds: int


class NewGoods(Body):
    goodsName: GoodsName
    goodsDescription: Description
    goodsPrice: Price
    stockQuantity: Stock
    category: Category
    reservationStartTime: StartTime | None = None
    perBuyerLimit: BuyerLimit | None = None
    waitingRoom: WaitingRoomBody | None = None


class GoodsPatch(Body):
    """Any of the fields; ``reservationStartTime`` or ``perBuyerLimit`` null clears them."""

    model_config = ConfigDict(json_schema_extra=at_least_one)

    # null is not a value for these (the service says "cannot be null"), so not in the schema.
    goodsName: Annotated[GoodsName | None, schema_of(GoodsName)] = None
    goodsDescription: Annotated[LongDescription | None, schema_of(LongDescription)] = None
    goodsPrice: Annotated[Price | None, schema_of(Price)] = None
    category: Annotated[Category | None, schema_of(Category)] = None
    reservationStartTime: StartTime | None = None
    perBuyerLimit: BuyerLimit | None = None
    # null takes the waiting room away (its line and tickets stay until the goods sell out).
    waitingRoom: WaitingRoomBody | None = None

    @model_validator(mode="after")
    def needs_a_field(self) -> GoodsPatch:
        if not self.model_fields_set:
            raise ValueError(f"give at least one of {', '.join([*_EDITS, 'waitingRoom'])}")
        return self


class RestockBody(Body):
    quantity: Annotated[Int, AfterValidator(model.restock_quantity), integer(1, model.MAX_STOCK)]


class GoodsQuery(Paging):
    category: Literal["FASHION", "BEAUTY", "ETC"] | None = None
    # No NUL: SQLite's LIKE stops at one, so "a\0b" would match every name.
    q: str | None = Field(
        None, min_length=1, max_length=50, pattern="^[^\x00]*$", description="part of the name"
    )


def iso(when: datetime | None, zone: tzinfo) -> str | None:
    """Times leave the shop in its configured zone, with the offset."""
    return when.astimezone(zone).isoformat() if when else None


class GoodsSummary(BaseModel):
    goodsId: int
    goodsName: str
    goodsPrice: int
    category: str
    reservationStartTime: str | None
    stockQuantity: int

    @classmethod
    def of(cls, goods: model.Goods, stock: int, zone: tzinfo) -> GoodsSummary:
        return cls(
            goodsId=goods.goods_id,
            goodsName=goods.name,
            goodsPrice=goods.price,
            category=goods.category,
            reservationStartTime=iso(goods.reservation_start, zone),
            stockQuantity=stock,
        )


class GoodsDetail(GoodsSummary):
    goodsDescription: str
    sellerId: int
    sellerName: str | None
    perBuyerLimit: int | None
    saleOpen: bool
    waitingRoom: WaitingRoomOut | None = None

    @classmethod
    def of_view(cls, view: model.GoodsView, zone: tzinfo) -> GoodsDetail:
        goods = view.goods
        return cls(
            **GoodsSummary.of(goods, view.stock, zone).model_dump(),
            goodsDescription=goods.description,
            sellerId=goods.seller_id,
            sellerName=view.seller_name,
            perBuyerLimit=goods.per_buyer_limit,
            saleOpen=view.sale_open,
        )


def goods_rows(listed: list[tuple[model.Goods, int]], zone: tzinfo) -> list[dict[str, Any]]:
    """Listing rows as the API shows them."""
    return [GoodsSummary.of(goods, stock, zone).model_dump() for goods, stock in listed]


def goods_detail(
    view: model.GoodsView, zone: tzinfo, room: RoomSettings | None = None
) -> dict[str, Any]:
    """The goods page as the API shows it (with its waiting room, when it has one)."""
    detail = GoodsDetail.of_view(view, zone)
    if room is not None:
        detail.waitingRoom = WaitingRoomOut(**room.to_api())
    return detail.model_dump()


async def detail_of(shop: Any, goods_id: int) -> dict[str, Any]:
    """The goods page of ``goods_id``, waiting room included."""
    view = await shop.goods.detail(goods_id)
    return goods_detail(view, shop.goods.zone, await shop.queue.room(goods_id))


class StockOut(BaseModel):
    goodsId: int
    stockQuantity: int


def _claims(request: web.Request) -> Any:
    return request["claims"]


@api.route(
    "GET",
    "/api/goods",
    summary="List goods, newest first (category filter, name search)",
    query=GoodsQuery,
    response=Page[GoodsSummary],
    cache=LISTING_CACHE,
)
async def list_goods(request: web.Request, query: GoodsQuery) -> web.Response:
    zone = request.app[SHOP].goods.zone
    rows, total = await request.app[PAGES].listing(
        query.page,
        query.size,
        lambda listed: goods_rows(listed, zone),
        category=query.category,
        q=query.q,
    )
    return cached_answer(request, page_of(rows, query, total), LISTING_CACHE)


@api.route(
    "GET",
    "/api/goods/{goodsId}",
    summary="One goods with seller, live stock and whether its sale is open",
    response=GoodsDetail,
    cache=GOODS_CACHE,
)
async def show_goods(request: web.Request) -> web.Response:
    shop, goods_id = request.app[SHOP], path_id(request, "goodsId")

    async def load() -> tuple[dict[str, Any], model.Goods]:
        view = await shop.goods.detail(goods_id)
        return goods_detail(view, shop.goods.zone, await shop.queue.room(goods_id)), view.goods

    data = await request.app[PAGES].detail(goods_id, load)
    return cached_answer(request, data, GOODS_CACHE)


@api.route(
    "GET",
    "/api/goods/{goodsId}/stock",
    summary="Live stock (read from the primary Redis)",
    response=StockOut,
    cache=STOCK_CACHE,
)
async def goods_stock(request: web.Request) -> web.Response:
    goods_id = path_id(request, "goodsId")
    stock = await request.app[PAGES].stock(goods_id)
    return cached_answer(request, {"goodsId": goods_id, "stockQuantity": stock}, STOCK_CACHE)


@api.route(
    "POST",
    "/api/auth/goods",
    summary="Register goods; the caller is the seller",
    body=NewGoods,
    response=GoodsDetail,
    status=201,
)
async def register_goods(request: web.Request, body: NewGoods) -> web.Response:
    shop = request.app[SHOP]
    goods = shop.goods
    created = await goods.register(
        _claims(request).user_id,
        name=body.goodsName,
        description=body.goodsDescription,
        price=body.goodsPrice,
        stock=body.stockQuantity,
        category=body.category,
        reservation_start=body.reservationStartTime,
        per_buyer_limit=body.perBuyerLimit,
    )
    if body.waitingRoom is not None:  # checked with the body: configuring it cannot refuse
        await shop.queue.configure(created.goods_id, body.waitingRoom.settings())
    await request.app[PAGES].changed()  # every process's cached pages reload
    return ok(await detail_of(shop, created.goods_id), status=201, msg="goods registered")


@api.route(
    "PATCH",
    "/api/auth/goods/{goodsId}",
    summary="Edit goods (seller only)",
    body=GoodsPatch,
    response=GoodsDetail,
    errors=("FORBIDDEN",),
)
async def edit_goods(request: web.Request, body: GoodsPatch) -> web.Response:
    goods_id = path_id(request, "goodsId")
    shop, claims = request.app[SHOP], _claims(request)
    changes = {_EDITS[n]: getattr(body, n) for n in body.model_fields_set if n in _EDITS}
    if changes:
        await shop.goods.update(claims.user_id, goods_id, changes)
    if "waitingRoom" in body.model_fields_set:
        if not changes:  # the room alone: its seller or an administrator
            if (await shop.goods.get(goods_id)).seller_id != claims.user_id and (
                claims.role != "ADMIN"
            ):
                raise Forbidden("only the seller or an administrator may change the waiting room")
        room = body.waitingRoom
        if room is None:
            current = await shop.queue.settings(goods_id) or RoomSettings()
            await shop.queue.configure(goods_id, RoomSettings(False, *_rates(current)))
        else:
            await shop.queue.configure(goods_id, room.settings())
    await request.app[PAGES].changed()  # every process's cached pages reload
    return ok(await detail_of(shop, goods_id), msg="goods updated")


def _rates(room: RoomSettings) -> tuple[int, int]:
    return room.admit_per_second, room.pass_seconds


@api.route(
    "POST",
    "/api/auth/goods/{goodsId}/restock",
    summary="Add stock (seller or admin)",
    body=RestockBody,
    response=StockOut,
    errors=("FORBIDDEN",),
)
async def restock_goods(request: web.Request, body: RestockBody) -> web.Response:
    goods_id = path_id(request, "goodsId")
    claims = _claims(request)
    stock = await request.app[SHOP].goods.restock(
        claims.user_id, claims.role == "ADMIN", goods_id, body.quantity
    )
    return ok({"goodsId": goods_id, "stockQuantity": stock}, msg="restocked")


@api.route(
    "GET",
    "/api/auth/my/goods",
    summary="The caller's goods, newest first",
    query=Paging,
    response=Page[GoodsSummary],
)
async def my_goods(request: web.Request, query: Paging) -> web.Response:
    goods = request.app[SHOP].goods
    listed, total = await goods.listing(query.page, query.size, seller_id=_claims(request).user_id)
    return ok(page_of(goods_rows(listed, goods.zone), query, total))
