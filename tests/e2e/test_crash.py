"""A server killed with SIGKILL in the middle of 500 concurrent orders loses nothing."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from miri.infra.processes import free_port
from tests.support.servers import (
    assert_doctor_clean,
    engine_env,
    query,
    register_goods,
    sale_accounts,
    start_server,
    stop_server,
    wait_drained,
)
from tests.support.shop import bearer


@pytest.mark.both_engines
@pytest.mark.timeout(240)
async def test_sigkill_mid_sale_loses_nothing(data_dir, database_url):
    seller, buyers = await sale_accounts(data_dir, 25, database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = engine_env(database_url)
    proc = start_server(data_dir, port, env=env)
    accepted: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            goods_id = await register_goods(http, base, seller, "Limited sneakers", 300)

            async def buy(n: int) -> None:
                try:
                    async with http.post(
                        f"{base}/api/auth/orders",
                        json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                        headers=bearer(buyers[n % len(buyers)]),
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

        proc = start_server(data_dir, port, env=env)  # restarted on the same shop
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0
    finally:
        stop_server(proc)

    stored = {r[0] for r in query(data_dir, "SELECT id FROM orders", database_url=database_url)}
    assert set(accepted) <= stored
    [(pending,)] = query(
        data_dir,
        "SELECT COUNT(*) FROM order_items WHERE status = 'PAYMENT_PENDING'",
        database_url=database_url,
    )
    assert pending == 0
    [(sold,)] = query(
        data_dir,
        "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE stock_released = 0",
        database_url=database_url,
    )
    assert sold <= 300
    assert_doctor_clean(data_dir, database_url)
