"""``miri serve --workers 2``: two processes on one port sell no unit twice and run no event twice."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from miri.infra.processes import free_port
from tests.support.servers import (
    assert_doctor_clean,
    query,
    register_goods,
    sale_accounts,
    start_server,
    stop_server,
    wait_drained,
)
from tests.support.shop import bearer


@pytest.mark.timeout(180)
async def test_two_workers_no_oversell_no_double_delivery(data_dir):
    seller, buyers = await sale_accounts(data_dir, 60)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, "--workers", "2", env={"MIRI_PAYMENT_ABANDON_RATE": "0"})
    try:
        workers = [p for p in _children(proc.pid)]
        assert len(workers) == 2
        assert len(_redis_servers_of(data_dir)) == 1  # one embedded Redis for both

        # A fresh connection per request, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            goods_id = await register_goods(http, base, seller, "Sneakers", 100)

            async def buy(n: int) -> int:
                async with http.post(
                    f"{base}/api/auth/orders",
                    json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                    headers=bearer(buyers[n % len(buyers)]),
                ) as r:
                    return r.status

            statuses = await asyncio.gather(*(buy(n) for n in range(300)))
        assert statuses.count(201) == 100 and statuses.count(409) == 200
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0
    finally:
        assert stop_server(proc, timeout=60) == 0
    # The embedded Redis both workers shared stops with them (it used to outlive the supervisor
    # whenever the worker that started it was not the last to stop).
    assert not _redis_servers_of(data_dir)

    served_by = {r[0] for r in query(data_dir, "SELECT DISTINCT claimed_by FROM deliveries")}
    assert served_by == {None}  # every delivery settled and its claim released
    [deliveries] = query(data_dir, "SELECT COUNT(*), SUM(attempts) FROM deliveries")
    # Effects: the consumers that change the shop mark handled_events; the mail consumer logs
    # each mail it sent in mail_log.
    [(handled,)] = query(
        data_dir,
        "SELECT (SELECT COUNT(*) FROM handled_events) + (SELECT COUNT(*) FROM mail_log)",
    )
    assert deliveries[1] == 0  # no delivery failed or was run again after a failure
    assert handled == deliveries[0]  # each delivery took effect exactly once
    assert query(data_dir, "SELECT COUNT(*) FROM deliveries WHERE status != 'DONE'") == [(0,)]
    [(placed,)] = query(data_dir, "SELECT COUNT(*) FROM order_items")
    [(payments,)] = query(data_dir, "SELECT COUNT(*) FROM payments")
    assert placed == payments == 100
    [(pending,)] = query(
        data_dir, "SELECT COUNT(*) FROM order_items WHERE status = 'PAYMENT_PENDING'"
    )
    assert pending == 0
    assert_doctor_clean(data_dir)


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children() if "serve" in " ".join(c.cmdline())]


def _redis_servers_of(data_dir) -> list[int]:
    """Live redis-server processes started for ``data_dir``."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and str(data_dir).encode() in cmdline:
            found.append(int(proc.name))
    return found
