"""The waiting room over HTTP (API.md "Waiting room"): pre-queue, the opening shuffle, FIFO after,
admission at the set rate and never beyond the units left, single-use passes bound to their
owner and goods, everyone told SOLD_OUT, and two processes sharing one line.

Time is the injected clock; admission runs are driven by calling the leader's ``tick()``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from miri.domain.queue import RoomSettings
from miri.infra.clock import FixedClock
from miri.server.app import create_app
from miri.shop import Shop, open_shop
from tests.support.goods import add_goods
from tests.support.shop import add_user, bearer, make_settings

ADDRESS = "Seoul Gangnam 1"
SEED = 20261123


@pytest.fixture
async def room_shop(data_dir: Path, clock: FixedClock) -> AsyncIterator[Shop]:
    """A shop whose opening shuffle is seeded: the same order on every run."""
    async with open_shop(make_settings(data_dir), clock=clock, rng=random.Random(SEED)) as shop:
        shop.queue.snapshot_age = 0.0  # every poll reads the room: tests see each tick at once
        yield shop


@pytest.fixture
async def api(aiohttp_client: Any, room_shop: Shop) -> Any:
    return await aiohttp_client(create_app(room_shop))


async def _goods_with_room(
    shop: Shop,
    *,
    stock: int,
    rate: int,
    opens_in: float | None = 3600,
    pass_seconds: int = 60,
    limit: int | None = None,
) -> int:
    opens = shop.clock.now() + timedelta(seconds=opens_in) if opens_in else None
    goods = await add_goods(shop, await _seller(shop), stock=stock, opens=opens, limit=limit)
    await shop.queue.configure(goods.goods_id, RoomSettings(True, rate, pass_seconds))
    return goods.goods_id


async def _seller(shop: Shop) -> int:
    """One seller per shop, made on first use."""
    if not hasattr(shop, "test_seller"):
        shop.test_seller = (await add_user(shop, "seller@example.com"))[0]  # type: ignore[attr-defined]
    return shop.test_seller  # type: ignore[attr-defined]


async def _buyers(shop: Shop, n: int, prefix: str = "buyer") -> list[str]:
    return [(await add_user(shop, f"{prefix}{i}@example.com"))[1] for i in range(n)]


async def _join(api: Any, token: str, gid: int) -> tuple[int, dict[str, Any]]:
    resp = await api.post(f"/api/auth/goods/{gid}/queue", headers=bearer(token))
    return resp.status, await resp.json()


async def _ticket(api: Any, token: str, gid: int) -> dict[str, Any]:
    resp = await api.get(f"/api/auth/goods/{gid}/queue", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def _order(api: Any, token: str, gid: int, pass_token: str | None) -> tuple[int, dict]:
    headers = bearer(token)
    if pass_token is not None:
        headers["X-Queue-Pass"] = pass_token
    body = {"goodsId": gid, "quantity": 1, "address": ADDRESS}
    resp = await api.post("/api/auth/orders", json=body, headers=headers)
    return resp.status, await resp.json()


async def _stock(api: Any, gid: int) -> int:
    resp = await api.get(f"/api/goods/{gid}/stock")
    return (await resp.json())["data"]["stockQuantity"]


async def _status(api: Any, admin: str, gid: int) -> dict[str, Any]:
    resp = await api.get(f"/api/admin/goods/{gid}/queue", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


def _spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0] * len(values)
        for rank, i in enumerate(order):
            out[i] = rank
        return out

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


async def _admit(shop: Shop, seconds: float) -> int:
    """Let ``seconds`` pass and run admission once; how many were admitted."""
    shop.clock.advance(seconds=seconds)
    results = await shop.queue.tick()
    return sum(admitted for _, admitted, _, _ in results.values())


async def test_join_before_opening_gives_one_ticket_per_account(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=10, rate=5)
    plain = (await add_goods(room_shop, await _seller(room_shop), stock=10)).goods_id
    kim, lee = await _buyers(room_shop, 2)

    status, body = await _join(api, kim, gid)
    assert status == 201, body
    ticket = body["data"]
    assert ticket["state"] == "WAITING" and ticket["goodsId"] == gid
    assert ticket["position"] is None  # nobody has a place before the opening shuffle
    assert ticket["etaSeconds"] == 3600 and ticket["passToken"] is None
    status, again = await _join(api, kim, gid)
    assert status == 200 and again["data"]["ticketId"] == ticket["ticketId"]
    assert (await _ticket(api, kim, gid))["ticketId"] == ticket["ticketId"]

    resp = await api.get(f"/api/auth/goods/{gid}/queue", headers=bearer(lee))
    assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND"
    status, body = await _join(api, lee, plain)
    assert status == 409 and body["error"] == "INVALID_STATE"
    status, body = await _join(api, lee, 999_999)
    assert status == 404
    resp = await api.post(f"/api/auth/goods/{gid}/queue")
    assert resp.status == 401


async def test_the_opening_shuffles_the_pre_queue_and_later_buyers_queue_fifo(api, room_shop):
    early_n, late_n = 200, 40
    gid = await _goods_with_room(room_shop, stock=1000, rate=20, opens_in=600)
    early = await _buyers(room_shop, early_n, "early")
    late = await _buyers(room_shop, late_n, "late")
    for token in early:  # arrival order: early[0] first
        assert (await _join(api, token, gid))[0] == 201
    await room_shop.queue.tick()  # before the opening: nobody is admitted
    assert (await _ticket(api, early[0], gid))["position"] is None

    room_shop.clock.advance(seconds=600)  # the sale opens; late buyers join after it
    for token in late:
        assert (await _join(api, token, gid))[0] == 201

    early_pos = [(await _ticket(api, t, gid))["position"] for t in early]
    late_pos = [(await _ticket(api, t, gid))["position"] for t in late]
    assert sorted(early_pos) == list(range(1, early_n + 1))  # the whole pre-queue goes first
    assert late_pos == list(range(early_n + 1, early_n + late_n + 1))  # then FIFO
    # Arriving early gives no advantage: arrival order does not predict the place in line.
    rho = _spearman(list(range(early_n)), early_pos)
    assert abs(rho) < 0.2, rho
    first_tenth = sorted(early_pos[: early_n // 10])
    assert sum(first_tenth) / len(first_tenth) > early_n * 0.25  # not bunched at the front

    # Admission follows the line: after 1 s at 20/s the 20 with the first places hold passes.
    assert await _admit(room_shop, 0) == 0  # the opening instant: credit starts from here
    assert await _admit(room_shop, 1.0) == 20
    admitted = {
        i for i, t in enumerate(early) if (await _ticket(api, t, gid))["state"] == "ADMITTED"
    }
    assert admitted == {i for i, p in enumerate(early_pos) if p <= 20}
    assert (await _ticket(api, late[0], gid))["position"] == early_n + 1 - 20


async def test_admission_rate_is_held(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=1000, rate=5, opens_in=None, pass_seconds=600)
    admin = (await add_user(room_shop, "admin@example.com", admin=True))[1]
    for token in await _buyers(room_shop, 60):
        await _join(api, token, gid)
    assert await _admit(room_shop, 0) == 0  # the first run only starts the clock
    assert await _admit(room_shop, 1.0) == 5
    assert await _admit(room_shop, 0.2) == 1
    assert await _admit(room_shop, 0) == 0
    assert await _admit(room_shop, 0.4) == 2
    assert await _admit(room_shop, 60) == 5  # a quiet minute gives no burst: at most a second
    counted = 0
    for _ in range(20):  # 4 s in steps of 0.2 s: 20 buyers
        counted += await _admit(room_shop, 0.2)
    assert counted == 20
    figures = await _status(api, admin, gid)
    assert figures["admittedTotal"] == 33 and figures["admitted"] == 33
    assert figures["waiting"] == 27 and figures["admitPerSecond"] == 5
    assert figures["etaLastSeconds"] == 6

    await room_shop.queue.set_rate(gid, 20)  # the operator's knob, during the sale
    assert await _admit(room_shop, 1.0) == 20


async def test_never_admits_more_buyers_than_units_left(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=3, rate=50, opens_in=None, pass_seconds=30)
    buyers = await _buyers(room_shop, 10)
    for token in buyers:
        await _join(api, token, gid)
    await _admit(room_shop, 0)
    assert await _admit(room_shop, 1.0) == 3
    holders = [t for t in buyers if (await _ticket(api, t, gid))["state"] == "ADMITTED"]
    assert len(holders) == 3
    pass_token = (await _ticket(api, holders[0], gid))["passToken"]
    assert (await _order(api, holders[0], gid, pass_token))[0] == 201
    assert await _admit(room_shop, 1.0) == 0  # 2 units left, 2 passes out: nobody more
    room_shop.clock.advance(seconds=31)  # the two unused passes run out ...
    assert await _admit(room_shop, 0) == 2  # ... and their units go to the next two
    for token in holders[1:]:
        assert (await _ticket(api, token, gid))["state"] == "EXPIRED"


async def test_a_pass_is_bound_to_its_owner_and_goods_and_used_once(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=10, rate=50, opens_in=None, pass_seconds=30)
    other = await _goods_with_room(room_shop, stock=10, rate=50, opens_in=None)
    kim, lee, park, choi = await _buyers(room_shop, 4)
    for token in (kim, lee, park):
        await _join(api, token, gid)
    await _join(api, kim, other)
    await _admit(room_shop, 0)
    await _admit(room_shop, 1.0)
    kim_pass = (await _ticket(api, kim, gid))["passToken"]
    lee_pass = (await _ticket(api, lee, gid))["passToken"]
    kim_other_pass = (await _ticket(api, kim, other))["passToken"]
    assert kim_pass and lee_pass and kim_pass != lee_pass

    refusals = [
        (kim, None),  # no pass
        (kim, lee_pass),  # someone else's
        (kim, kim_other_pass),  # one's own, for other goods
        (choi, kim_pass),  # a buyer without a ticket
        (kim, "x" * 40),  # made up
    ]
    for token, offered in refusals:
        status, body = await _order(api, token, gid, offered)
        assert status == 403 and body["error"] == "QUEUE_PASS_REQUIRED", body
    assert await _stock(api, gid) == 10  # nothing was reserved

    status, body = await _order(api, kim, gid, kim_pass)
    assert status == 201, body
    assert await _stock(api, gid) == 9
    assert (await _ticket(api, kim, gid))["state"] == "USED"
    status, body = await _order(api, kim, gid, kim_pass)  # the same pass again
    assert status == 403 and body["error"] == "QUEUE_PASS_REQUIRED"

    room_shop.clock.advance(seconds=31)  # park's pass runs out unused
    park_pass = (await _ticket(api, park, gid)).get("passToken")
    assert (await _ticket(api, park, gid))["state"] == "EXPIRED" and park_pass is None
    await room_shop.queue.tick()
    status, body = await _order(api, lee, gid, lee_pass)  # lee's ran out too
    assert status == 403 and body["error"] == "QUEUE_PASS_REQUIRED"
    assert await _stock(api, gid) == 9
    # The other goods' pass still works, for those goods.
    assert (await _order(api, kim, other, kim_other_pass))[0] == 201


async def test_a_refusal_for_a_limit_keeps_the_pass_one_for_stock_ends_it(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=10, rate=50, opens_in=None, limit=1)
    kim, lee = await _buyers(room_shop, 2)
    for token in (kim, lee):
        await _join(api, token, gid)
    await _admit(room_shop, 0)
    await _admit(room_shop, 1.0)

    async def order(token: str, quantity: int) -> tuple[int, str | None]:
        pass_token = (await _ticket(api, token, gid))["passToken"]
        headers = {**bearer(token), "X-Queue-Pass": pass_token}
        body = {"goodsId": gid, "quantity": quantity, "address": ADDRESS}
        resp = await api.post("/api/auth/orders", json=body, headers=headers)
        return resp.status, (await resp.json()).get("error")

    assert await order(kim, 2) == (409, "LIMIT_EXCEEDED")
    assert (await _ticket(api, kim, gid))["state"] == "ADMITTED"  # the pass placed nothing
    assert (await order(kim, 1))[0] == 201
    assert (await _ticket(api, kim, gid))["state"] == "USED"
    assert await _stock(api, gid) == 9

    # A refusal for stock ends the ticket SOLD_OUT (API.md), and nothing is reserved.
    short = await _goods_with_room(room_shop, stock=3, rate=50, opens_in=None)
    await _join(api, lee, short)
    await _admit(room_shop, 0)
    await _admit(room_shop, 1.0)
    pass_token = (await _ticket(api, lee, short))["passToken"]
    headers = {**bearer(lee), "X-Queue-Pass": pass_token}
    body = {"goodsId": short, "quantity": 4, "address": ADDRESS}
    resp = await api.post("/api/auth/orders", json=body, headers=headers)
    assert resp.status == 409 and (await resp.json())["error"] == "SOLD_OUT"
    assert (await _ticket(api, lee, short))["state"] == "SOLD_OUT"
    assert await _stock(api, short) == 3


async def _events(resp: Any) -> AsyncIterator[dict[str, Any]]:
    async for line in resp.content:
        if line.startswith(b"data: "):
            yield orjson.loads(line[6:])


async def test_everyone_is_told_sold_out_on_the_poll_and_the_stream(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=2, rate=50, opens_in=None)
    admin = (await add_user(room_shop, "admin@example.com", admin=True))[1]
    buyers = await _buyers(room_shop, 12)
    for token in buyers:
        await _join(api, token, gid)
    await _admit(room_shop, 0)
    assert await _admit(room_shop, 1.0) == 2
    waiting = buyers[-1]
    resp = await api.get(f"/api/auth/goods/{gid}/queue/stream", headers=bearer(waiting))
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    events = _events(resp)
    first = await asyncio.wait_for(anext(events), 5)
    assert first["state"] == "WAITING" and first["position"] == 10

    for token in buyers:
        ticket = await _ticket(api, token, gid)
        if ticket["state"] == "ADMITTED":
            assert (await _order(api, token, gid, ticket["passToken"]))[0] == 201
    await room_shop.queue.tick()  # the leader's next run sees the goods sold out
    states = [(await _ticket(api, t, gid))["state"] for t in buyers]
    assert states.count("USED") == 2 and states.count("SOLD_OUT") == 10
    told = await asyncio.wait_for(anext(events), 5)
    assert told["state"] == "SOLD_OUT" and told["position"] is None
    resp.close()
    figures = await _status(api, admin, gid)
    assert figures["saleSoldOut"] is True and figures["soldOut"] == 10
    assert figures["waiting"] == 0 and figures["used"] == 2
    # Joining after the sell-out is answered at once too.
    late = (await _buyers(room_shop, 1, "late"))[0]
    status, body = await _join(api, late, gid)
    assert status == 201 and body["data"]["state"] == "SOLD_OUT"


async def test_two_processes_share_one_line(aiohttp_client, data_dir, clock, room_shop, api):
    """A second shop on the same data dir stands in for a second worker: same Redis, same line."""
    async with open_shop(make_settings(data_dir), clock=clock) as second:
        second.queue.snapshot_age = 0.0
        api2 = await aiohttp_client(create_app(second))
        gid = await _goods_with_room(room_shop, stock=5, rate=4, opens_in=None)
        buyers = await _buyers(room_shop, 8)
        for i, token in enumerate(buyers):
            assert (await _join(api if i % 2 else api2, token, gid))[0] == 201
        positions = [(await _ticket(api2, t, gid))["position"] for t in buyers]
        assert positions == list(range(1, 9))  # one line, in arrival order, whoever served
        await _admit(room_shop, 0)
        assert await _admit(room_shop, 1.0) == 4  # one admission ticker for the shop
        ticket = await _ticket(api2, buyers[0], gid)
        assert ticket["state"] == "ADMITTED"
        assert (await _order(api2, buyers[0], gid, ticket["passToken"]))[0] == 201
        status, body = await _order(api, buyers[0], gid, ticket["passToken"])
        assert status == 403 and body["error"] == "QUEUE_PASS_REQUIRED"  # used on the other
        assert (await _ticket(api, buyers[4], gid))["position"] == 1


async def test_tickets_and_passes_survive_a_restart(data_dir, clock):
    settings = make_settings(data_dir)
    async with open_shop(settings, clock=clock) as shop:
        gid = await _goods_with_room(shop, stock=5, rate=1, opens_in=None)
        kim, lee = await _buyers(shop, 2)
        kim_id = await shop.users.authenticate(kim)
        lee_id = await shop.users.authenticate(lee)
        await shop.queue.join(kim_id.user_id, gid)
        await shop.queue.join(lee_id.user_id, gid)
        await _admit(shop, 0)
        await _admit(shop, 1.0)
        held = await shop.queue.ticket(kim_id.user_id, gid)
    async with open_shop(settings, clock=clock, background=True) as shop:
        again = await shop.queue.ticket(kim_id.user_id, gid)
        assert again.state == "ADMITTED" and again.pass_token == held.pass_token
        assert (await shop.queue.ticket(lee_id.user_id, gid)).position == 1


async def test_a_wishlist_order_needs_the_pass_too_and_metrics_count_refusals(api, room_shop):
    gid = await _goods_with_room(room_shop, stock=5, rate=50, opens_in=None)
    plain = (await add_goods(room_shop, await _seller(room_shop), stock=5)).goods_id
    kim = (await _buyers(room_shop, 1))[0]
    wish_ids = []
    for goods_id in (plain, gid):
        resp = await api.post(
            "/api/auth/wishlist",
            json={"goodsId": goods_id, "goodsQuantity": 1},
            headers=bearer(kim),
        )
        assert resp.status == 201, await resp.text()
        wish_ids.append((await resp.json())["data"]["wishListId"])
    body = {"wishListIds": wish_ids, "address": ADDRESS}
    resp = await api.post("/api/auth/orders/from-wishlist", json=body, headers=bearer(kim))
    assert resp.status == 403 and (await resp.json())["error"] == "QUEUE_PASS_REQUIRED"
    assert await _stock(api, gid) == 5 and await _stock(api, plain) == 5  # all or nothing

    await _join(api, kim, gid)
    await _admit(room_shop, 0)
    await _admit(room_shop, 1.0)
    headers = {**bearer(kim), "X-Queue-Pass": (await _ticket(api, kim, gid))["passToken"]}
    resp = await api.post("/api/auth/orders/from-wishlist", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    assert await _stock(api, gid) == 4 and await _stock(api, plain) == 4

    # Goods without a room need no pass (and ordering them costs the room nothing).
    assert (await _order(api, kim, plain, None))[0] == 201
    metrics = await (await api.get("/metrics")).text()
    assert 'miri_queue_pass_refusals_total{reason="NO_TICKET"} 1.0' in metrics
    assert f'miri_queue_admitted_total{{goods_id="{gid}"}} 1.0' in metrics


async def test_a_join_that_lands_after_the_shuffle_queues_behind(api, room_shop):
    """A join whose time was read a moment before the opening but that reaches Redis after the
    opening shuffle must not go into a pre-queue nobody will shuffle again."""
    gid = await _goods_with_room(room_shop, stock=10, rate=5, opens_in=60)
    early, straggler = await _buyers(room_shop, 2)
    await _join(api, early, gid)
    room_shop.clock.advance(seconds=60)
    await room_shop.queue.tick()  # the opening: the pre-queue is shuffled into the line
    room_shop.clock.advance(seconds=-0.01)  # the straggler's request read the time just before
    await _join(api, straggler, gid)
    room_shop.clock.advance(seconds=0.01)
    assert (await _ticket(api, early, gid))["position"] == 1
    assert (await _ticket(api, straggler, gid))["position"] == 2
    assert await _admit(room_shop, 1.0) == 2


async def test_a_stream_in_a_line_that_does_not_move_still_sends_keep_alives(room_shop):
    """Every unit promised to a pass: the line stands still, and the stream must still show
    it is alive (a keep-alive), or the buyer's client takes the connection for dead."""
    gid = await _goods_with_room(room_shop, stock=1, rate=50, opens_in=None)
    holder_id, _ = await add_user(room_shop, "holder@example.com")
    waiter_id, _ = await add_user(room_shop, "waiter@example.com")
    await room_shop.queue.join(holder_id, gid)
    await room_shop.queue.join(waiter_id, gid)
    await _admit(room_shop, 0)
    assert await _admit(room_shop, 1.0) == 1  # one unit, one pass: the waiter stays put
    follow = room_shop.queue.follow(waiter_id, gid, quiet=0.5)
    first = await asyncio.wait_for(anext(follow), 5)
    assert first is not None and first.state == "WAITING" and first.position == 1
    assert await asyncio.wait_for(anext(follow), 10) is None  # a keep-alive
    await follow.aclose()


async def test_a_used_pass_holds_its_unit_back_until_the_reservation_answers(api, room_shop):
    """Between a pass being used and its reservation, the unit is still in live stock: the
    room must not admit someone else to it (that was an over-admission under load)."""
    gid = await _goods_with_room(room_shop, stock=2, rate=50, opens_in=None)
    buyers = await _buyers(room_shop, 4)
    ids = [(await room_shop.users.authenticate(t)).user_id for t in buyers]
    for token in buyers:
        await _join(api, token, gid)
    await _admit(room_shop, 0)
    assert await _admit(room_shop, 1.0) == 2
    first = await room_shop.queue.ticket(ids[0], gid)
    used = await room_shop.queue.use_passes(ids[0], [gid], [first.pass_token])
    assert used is not None  # the pass is used; the reservation has not happened yet
    assert await _admit(room_shop, 1.0) == 0  # two units: one held by a pass, one in flight
    # Here no reservation took the unit, so once the room hears the order answered, the unit
    # is free for the next in line.
    await room_shop.queue.reserved(used)
    assert await _admit(room_shop, 1.0) == 1


NEW_GOODS = {
    "goodsName": "Limited Sneaker",
    "goodsDescription": "Two hundred pairs, one per buyer",
    "goodsPrice": 189000,
    "stockQuantity": 200,
    "category": "FASHION",
}


async def test_the_goods_body_puts_goods_behind_a_room_and_details_show_it(api, room_shop):
    seller_id, seller = await add_user(room_shop, "seller@example.com")
    _, other = await add_user(room_shop, "other@example.com")
    _, admin = await add_user(room_shop, "admin@example.com", admin=True)
    buyer = (await _buyers(room_shop, 1))[0]

    bad = {**NEW_GOODS, "waitingRoom": {"admitPerSecond": 0}}
    resp = await api.post("/api/auth/goods", json=bad, headers=bearer(seller))
    body = await resp.json()
    assert resp.status == 400 and "waitingRoom.admitPerSecond" in body["data"], body
    resp = await api.get("/api/auth/my/goods", headers=bearer(seller))
    assert (await resp.json())["data"]["totalItems"] == 0  # nothing was registered

    body = {**NEW_GOODS, "waitingRoom": {"enabled": True, "admitPerSecond": 30}}
    resp = await api.post("/api/auth/goods", json=body, headers=bearer(seller))
    created = (await resp.json())["data"]
    assert resp.status == 201, created
    gid = created["goodsId"]
    room = {"enabled": True, "admitPerSecond": 30, "passSeconds": 120}
    assert created["waitingRoom"] == room
    assert (await (await api.get(f"/api/goods/{gid}")).json())["data"]["waitingRoom"] == room
    assert (await _join(api, buyer, gid))[0] == 201
    assert (await _order(api, buyer, gid, None))[0] == 403

    patch = {"waitingRoom": {"admitPerSecond": 5, "passSeconds": 60}}
    resp = await api.patch(f"/api/auth/goods/{gid}", json=patch, headers=bearer(other))
    assert resp.status == 403
    resp = await api.patch(f"/api/auth/goods/{gid}", json=patch, headers=bearer(admin))
    assert resp.status == 200
    assert (await resp.json())["data"]["waitingRoom"]["admitPerSecond"] == 5
    resp = await api.patch(
        f"/api/auth/goods/{gid}", json={"waitingRoom": None}, headers=bearer(seller)
    )
    assert (await resp.json())["data"]["waitingRoom"]["enabled"] is False
    assert (await _order(api, buyer, gid, None))[0] == 201  # no room: no pass needed
    plain = (await add_goods(room_shop, seller_id, stock=1)).goods_id
    detail = (await (await api.get(f"/api/goods/{plain}")).json())["data"]
    assert detail["waitingRoom"] is None
