"""Wishlist ("미리 담기", API.md): another user's entries answer 404."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, Field

from miri.domain.goods import model
from miri.domain.goods.wishlist import WishlistEntry, WishlistRow
from miri.server.api import Api, ok, path_id
from miri.server.keys import SHOP
from miri.server.models import Body, Int, Page, Paging, integer, page_of

api = Api("wishlist")

Quantity = Annotated[Int, AfterValidator(model.wish_quantity), integer(1, model.MAX_WISH_QUANTITY)]


class WishBody(Body):
    goodsId: Annotated[Int, Field(ge=1, le=2**53), integer(1, 2**53)]
    goodsQuantity: Quantity


class WishQuantity(Body):
    goodsQuantity: Quantity


class WishOut(BaseModel):
    wishListId: int
    goodsId: int
    goodsQuantity: int

    @classmethod
    def of(cls, entry: WishlistEntry) -> WishOut:
        return cls(wishListId=entry.wish_id, goodsId=entry.goods_id, goodsQuantity=entry.quantity)


class WishRow(WishOut):
    goodsName: str
    goodsPrice: int
    stockQuantity: int
    saleOpen: bool

    @classmethod
    def of_row(cls, row: WishlistRow) -> WishRow:
        return cls(
            **WishOut.of(row.entry).model_dump(),
            goodsName=row.goods_name,
            goodsPrice=row.goods_price,
            stockQuantity=row.stock,
            saleOpen=row.sale_open,
        )


def wish_rows(rows: list[WishlistRow]) -> list[dict[str, Any]]:
    """Wishlist rows as the API shows them."""
    return [WishRow.of_row(r).model_dump() for r in rows]


@api.route(
    "POST",
    "/api/auth/wishlist",
    summary="Put goods aside (adds to the quantity if already there)",
    body=WishBody,
    response=WishOut,
    status=201,
    errors=("NOT_FOUND",),
)
async def add_wish(request: web.Request, body: WishBody) -> web.Response:
    entry = await request.app[SHOP].wishlist.add(
        request["claims"].user_id, body.goodsId, body.goodsQuantity
    )
    return ok(WishOut.of(entry).model_dump(), status=201, msg="put aside")


@api.route(
    "GET",
    "/api/auth/wishlist",
    summary="The caller's wishlist, newest first, with live stock",
    query=Paging,
    response=Page[WishRow],
)
async def list_wishes(request: web.Request, query: Paging) -> web.Response:
    items, total = await request.app[SHOP].wishlist.page(
        request["claims"].user_id, query.page, query.size
    )
    return ok(page_of(wish_rows(items), query, total))


@api.route(
    "PATCH",
    "/api/auth/wishlist/{wishListId}",
    summary="Change the quantity of an entry",
    body=WishQuantity,
    response=WishOut,
)
async def change_wish(request: web.Request, body: WishQuantity) -> web.Response:
    entry = await request.app[SHOP].wishlist.change(
        request["claims"].user_id, path_id(request, "wishListId"), body.goodsQuantity
    )
    return ok(WishOut.of(entry).model_dump(), msg="quantity changed")


@api.route("DELETE", "/api/auth/wishlist/{wishListId}", summary="Remove an entry")
async def remove_wish(request: web.Request) -> web.Response:
    await request.app[SHOP].wishlist.remove(
        request["claims"].user_id, path_id(request, "wishListId")
    )
    return ok(None, msg="removed")
