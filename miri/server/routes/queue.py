"""The waiting room (API.md "Waiting room"): join, my ticket, my ticket as a stream, the figures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel

from miri.domain.queue import Ticket
from miri.server import sse
from miri.server.api import Api, ok, path_id
from miri.server.keys import SHOP

api = Api("queue")
PASS_HEADER = "X-Queue-Pass"
MAX_PASSES = 8  # tokens in one X-Queue-Pass (one per goods of a wishlist order)


class TicketOut(BaseModel):
    ticketId: str
    goodsId: int
    state: Literal["WAITING", "ADMITTED", "USED", "EXPIRED", "SOLD_OUT"]
    position: int | None
    etaSeconds: int | None
    passToken: str | None
    passExpiresAt: str | None


class RoomStatusOut(BaseModel):
    goodsId: int
    enabled: bool
    waiting: int
    admitted: int
    used: int
    expired: int
    soldOut: int
    saleSoldOut: bool
    admitPerSecond: int
    passSeconds: int
    admittedTotal: int
    preQueue: int
    opened: bool
    etaLastSeconds: int


def ticket_out(request: web.Request, ticket: Ticket) -> dict[str, Any]:
    zone = request.app[SHOP].goods.zone

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).astimezone(zone).isoformat()

    return ticket.to_api(iso)


def queue_passes(request: web.Request) -> list[str]:
    """The ``X-Queue-Pass`` tokens an order came with (comma-separated for several goods)."""
    raw = request.headers.get(PASS_HEADER, "")
    return [t.strip() for t in raw.split(",") if t.strip()][:MAX_PASSES]


@api.route(
    "POST",
    "/api/auth/goods/{goodsId}/queue",
    summary="Join the goods' waiting room (one ticket per account)",
    response=TicketOut,
    status=201,
    also=(200,),  # joining again answers the ticket already held
    errors=("INVALID_STATE",),
)
async def join(request: web.Request) -> web.Response:
    goods_id = path_id(request, "goodsId")
    ticket, created = await request.app[SHOP].queue.join(request["claims"].user_id, goods_id)
    if created:
        return ok(ticket_out(request, ticket), status=201, msg="you are in the waiting room")
    return ok(ticket_out(request, ticket), msg="you already have a ticket")


@api.route(
    "GET", "/api/auth/goods/{goodsId}/queue", summary="My waiting-room ticket", response=TicketOut
)
async def my_ticket(request: web.Request) -> web.Response:
    goods_id = path_id(request, "goodsId")
    ticket = await request.app[SHOP].queue.ticket(request["claims"].user_id, goods_id)
    return ok(ticket_out(request, ticket))


@api.route(
    "GET",
    "/api/auth/goods/{goodsId}/queue/stream",
    summary="My waiting-room ticket on every change (Server-Sent Events)",
    response={"type": "string", "description": "text/event-stream; each data: a ticket"},
)
async def ticket_stream(request: web.Request) -> web.StreamResponse:
    shop, goods_id = request.app[SHOP], path_id(request, "goodsId")

    def encode(ticket: Ticket | None) -> bytes:
        if ticket is None:  # a quiet while: the keep-alive
            return sse.KEEP_ALIVE
        return sse.event(orjson.dumps(ticket_out(request, ticket)))

    # 404 before the stream starts when the caller has no ticket.
    return await sse.stream(request, shop.queue.follow(request["claims"].user_id, goods_id), encode)


@api.route(
    "GET",
    "/api/admin/goods/{goodsId}/queue",
    summary="A waiting room's figures (admin)",
    response=RoomStatusOut,
)
async def room_status(request: web.Request) -> web.Response:
    figures = await request.app[SHOP].queue.status(path_id(request, "goodsId"))
    return ok(figures)
