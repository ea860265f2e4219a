"""SIGKILL of `miri serve` at random points of a sale, ten times in a row; nothing is lost.

Each round starts the server on the same data dir, sends orders (some for two units, some
cancelled right away) from concurrent buyers, and kills the server with SIGKILL after a random
delay. After the tenth kill the server starts once more, the bus drains, and the invariants of
the orders issue are checked against SQLite and Redis.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from miri.infra.processes import free_port
from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.servers import (
    assert_doctor_clean,
    query,
    start_server,
    stop_server,
    wait_drained,
)
from tests.support.shop import make_settings

ROUNDS = 10
STOCK = {"Sneakers": 3000, "Jacket": 3000}
ADDRESS = "Seoul 1"


async def _prepare(data_dir: Path) -> tuple[list[str], list[int]]:
    async with open_shop(make_settings(data_dir)) as shop:
        common = {"password": "password123!", "phone_number": "010-0000-0000", "address": ADDRESS}
        seller = await shop.users.add_user(email="seller@example.com", user_name="S", **common)
        goods = []
        for name, stock in STOCK.items():
            g = await add_goods(shop, seller, name=name, price=100, stock=stock)
            goods.append(g.goods_id)
        tokens = []
        for n in range(20):
            user = await shop.users.add_user(email=f"b{n}@example.com", user_name="B", **common)
            tokens.append(shop.users.issue_token(user, "USER"))
        return tokens, goods


async def _sale_until_killed(
    base: str,
    proc: subprocess.Popen,
    tokens: list[str],
    goods: list[int],
    rng: random.Random,
    accepted: set[int],
    canceled: set[int],
) -> None:
    kill_after = rng.uniform(0.0, 0.8)
    stop = asyncio.Event()

    async def buyer(n: int, http: aiohttp.ClientSession) -> None:
        token = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        mine = random.Random(rng.random())
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            body = {
                "goodsId": mine.choice(goods),
                "quantity": mine.choice((1, 1, 2)),
                "address": ADDRESS,
            }
            try:
                async with http.post(f"{base}/api/auth/orders", json=body, headers=token) as r:
                    if r.status != 201:
                        continue
                    data = (await r.json())["data"]
                accepted.add(data["orderId"])
                if mine.random() < 0.2:
                    item = data["items"][0]["orderDetailId"]
                    url = f"{base}/api/auth/orders/{item}/cancel"
                    async with http.post(url, headers=token) as r:
                        if r.status == 200:
                            canceled.add(item)
            except (TimeoutError, aiohttp.ClientError):
                return  # the server died under this request: no promise was made

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        stop.set()

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(killer(), *(buyer(n, http) for n in range(16)))
    proc.wait(timeout=10)


@pytest.mark.timeout(300)
async def test_ten_sigkills_in_a_row_lose_nothing(data_dir: Path) -> None:
    seed = int(os.environ.get("MIRI_SIGKILL_SEED", "20261124"))
    rng = random.Random(seed)
    tokens, goods = await _prepare(data_dir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    accepted: set[int] = set()
    canceled: set[int] = set()
    for _ in range(ROUNDS):
        proc = start_server(data_dir, port)
        await _sale_until_killed(base, proc, tokens, goods, rng, accepted, canceled)
        assert proc.returncode == -signal.SIGKILL
    # Enough happened for the kills to land mid-sale, not between sales.
    assert len(accepted) >= 50 and canceled, (len(accepted), len(canceled), seed)
    print(f"{len(accepted)} orders accepted, {len(canceled)} cancelled over {ROUNDS} kills")

    proc = start_server(data_dir, port)
    try:
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0, health
        async with aiohttp.ClientSession() as http:
            for goods_id in goods:
                async with http.get(f"{base}/api/goods/{goods_id}/stock") as r:
                    live = (await r.json())["data"]["stockQuantity"]
                [(held,)] = query(
                    data_dir,
                    "SELECT COALESCE(SUM(quantity), 0) FROM order_items"
                    " WHERE goods_id = ? AND stock_released = 0",
                    goods_id,
                )
                assert live == stock_of(goods, goods_id) - held, (goods_id, live, held, seed)
    finally:
        stop_server(proc)

    stored = {r[0] for r in query(data_dir, "SELECT id FROM orders")}
    assert accepted <= stored, f"accepted orders lost: {sorted(accepted - stored)[:10]}"
    # Every order has items, every item one shipping row; nothing is left half-way.
    assert query(
        data_dir,
        "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS"
        " (SELECT 1 FROM order_items d WHERE d.order_id = o.id)",
    ) == [(0,)]
    assert query(
        data_dir,
        "SELECT COUNT(*) FROM order_items d WHERE"
        " (SELECT COUNT(*) FROM shipping s WHERE s.order_item_id = d.id) != 1",
    ) == [(0,)]
    assert query(data_dir, "SELECT COUNT(*) FROM order_items WHERE status = 'PAYMENT_PENDING'") == [
        (0,)
    ]
    # Paid items are COMPLETED and held; cancelled ones gave their stock back exactly once.
    bad = query(
        data_dir,
        "SELECT d.id, d.status, d.stock_released, p.status FROM order_items d"
        " LEFT JOIN payments p ON p.order_item_id = d.id WHERE"
        " (d.status = 'COMPLETED' AND (d.stock_released != 0 OR p.status != 'PAYMENT_COMPLETED'))"
        " OR (d.status = 'CANCELED' AND d.stock_released != 1)"
        " OR d.status NOT IN ('COMPLETED', 'CANCELED')",
    )
    assert bad == [], bad[:5]
    rows = dict(query(data_dir, "SELECT id, status FROM order_items"))
    assert all(rows[item] == "CANCELED" for item in canceled)
    for goods_id in goods:
        [(total, held)] = query(
            data_dir,
            "SELECT g.stock_total, COALESCE(SUM(d.quantity), 0) FROM goods g LEFT JOIN"
            " order_items d ON d.goods_id = g.id AND d.stock_released = 0"
            " WHERE g.id = ? GROUP BY g.id",
            goods_id,
        )
        assert 0 <= held <= total
    assert_doctor_clean(data_dir)


def stock_of(goods: list[int], goods_id: int) -> int:
    return list(STOCK.values())[goods.index(goods_id)]
