"""A server killed with SIGKILL in the middle of 500 concurrent orders loses nothing."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import aiohttp
import pytest

from miri.shop import open_shop
from tests.support.servers import assert_doctor_clean, start_server, wait_drained
from tests.support.shop import free_port, make_settings


@pytest.mark.timeout(240)
async def test_sigkill_mid_sale_loses_nothing(data_dir):
    settings = make_settings(data_dir)
    async with open_shop(settings) as shop:
        seller = await shop.users.add_user(
            email="seller@example.com",
            password="password123!",
            user_name="Seller",
            phone_number="010-0000-0000",
            address="Seoul 1",
        )
        seller_token = shop.users.issue_token(seller, "USER")
        buyers = [
            shop.users.issue_token(
                await shop.users.add_user(
                    email=f"b{n}@example.com",
                    password="password123!",
                    user_name="Buyer",
                    phone_number="010-0000-0000",
                    address="Seoul 1",
                ),
                "USER",
            )
            for n in range(25)
        ]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port)
    accepted: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{base}/api/auth/goods",
                json={
                    "goodsName": "Limited sneakers",
                    "goodsDescription": "Only a few pairs",
                    "goodsPrice": 100,
                    "stockQuantity": 300,
                    "category": "FASHION",
                },
                headers={"Authorization": f"Bearer {seller_token}"},
            )
            assert resp.status == 201, await resp.text()
            goods_id = (await resp.json())["data"]["goodsId"]

            async def buy(n: int) -> None:
                try:
                    async with http.post(
                        f"{base}/api/auth/orders",
                        json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                        headers={"Authorization": f"Bearer {buyers[n % len(buyers)]}"},
                    ) as r:
                        if r.status == 201:
                            accepted.append((await r.json())["data"]["orderId"])
                except (TimeoutError, aiohttp.ClientError):
                    pass  # the server died under this request: no promise was made

            async def kill_midway() -> None:
                while len(accepted) < 60:
                    await asyncio.sleep(0.005)
                proc.send_signal(signal.SIGKILL)

            await asyncio.gather(kill_midway(), *(buy(n) for n in range(500)))
        proc.wait(timeout=10)
        assert 60 <= len(accepted) < 500

        proc = start_server(data_dir, port)
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    raw = sqlite3.connect(data_dir / "miri.sqlite3")
    try:
        stored = {r[0] for r in raw.execute("SELECT id FROM orders")}
        assert set(accepted) <= stored
        pending = raw.execute(
            "SELECT COUNT(*) FROM order_items WHERE status = 'PAYMENT_PENDING'"
        ).fetchone()[0]
        assert pending == 0
        sold = raw.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE stock_released = 0"
        ).fetchone()[0]
        assert sold <= 300
    finally:
        raw.close()
    assert_doctor_clean(data_dir)
