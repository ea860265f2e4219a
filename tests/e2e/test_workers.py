"""``miri serve --workers 2``: two processes on one port sell no unit twice and run no event twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import aiohttp
import pytest

from miri.shop import open_shop
from tests.support.servers import assert_doctor_clean, start_server, wait_drained
from tests.support.shop import free_port, make_settings


@pytest.mark.timeout(180)
async def test_two_workers_no_oversell_no_double_delivery(data_dir):
    async with open_shop(make_settings(data_dir)) as shop:
        seller = await shop.users.add_user(
            email="seller@example.com",
            password="password123!",
            user_name="Seller",
            phone_number="010-0000-0000",
            address="Seoul 1",
        )
        seller_token = shop.users.issue_token(seller, "USER")
        buyers = [token for _, token in await shop.users.add_bench_users(60, "w")]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, "--workers", "2", env={"MIRI_PAYMENT_ABANDON_RATE": "0"})
    try:
        workers = [p for p in _children(proc.pid)]
        assert len(workers) == 2

        # A fresh connection per request, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            resp = await http.post(
                f"{base}/api/auth/goods",
                json={
                    "goodsName": "Sneakers",
                    "goodsDescription": "Only one hundred pairs",
                    "goodsPrice": 100,
                    "stockQuantity": 100,
                    "category": "FASHION",
                },
                headers={"Authorization": f"Bearer {seller_token}"},
            )
            goods_id = (await resp.json())["data"]["goodsId"]

            async def buy(n: int) -> int:
                async with http.post(
                    f"{base}/api/auth/orders",
                    json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                    headers={"Authorization": f"Bearer {buyers[n % len(buyers)]}"},
                ) as r:
                    return r.status

            statuses = await asyncio.gather(*(buy(n) for n in range(300)))
        assert statuses.count(201) == 100 and statuses.count(409) == 200
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    raw = sqlite3.connect(data_dir / "miri.sqlite3")
    try:
        served_by = {r[0] for r in raw.execute("SELECT DISTINCT claimed_by FROM deliveries")}
        assert served_by == {None}  # every delivery settled and its claim released
        deliveries = raw.execute("SELECT COUNT(*), SUM(attempts) FROM deliveries").fetchone()
        handled = raw.execute("SELECT COUNT(*) FROM handled_events").fetchone()[0]
        assert deliveries[1] == 0  # no delivery failed or was run again after a failure
        assert handled == deliveries[0]  # each delivery took effect exactly once
        assert (
            raw.execute("SELECT COUNT(*) FROM deliveries WHERE status != 'DONE'").fetchone()[0] == 0
        )
        placed = raw.execute("SELECT COUNT(*) FROM order_items").fetchone()[0]
        payments = raw.execute("SELECT COUNT(*) FROM payments").fetchone()[0]
        assert placed == payments == 100
        pending = raw.execute(
            "SELECT COUNT(*) FROM order_items WHERE status = 'PAYMENT_PENDING'"
        ).fetchone()[0]
        assert pending == 0
    finally:
        raw.close()
    assert_doctor_clean(data_dir)


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children() if "serve" in " ".join(c.cmdline())]
