"""Units a dead host reserved for no order go back, found by the leader from the heartbeat table,
without that host ever starting again."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from miri.domain.goods import upkeep
from miri.infra import hosts as hosts_module
from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.shop import add_user

pytestmark = pytest.mark.both_engines
ADDRESS = "Seoul Mapo 12"


async def _host_row(shop, host_id: str, hostname: str, pid: int, seen_ago: float) -> None:
    now = time.time()
    args = (host_id, hostname, pid, now - seen_ago - 1, now - seen_ago)
    await shop.db.write(
        lambda c: c.execute(
            "INSERT INTO hosts (host_id, hostname, pid, url, version, leader, started_at, seen_at)"
            " VALUES (?, ?, ?, NULL, 'test', 0, ?, ?)",
            args,
        )
    )


async def _stopped(shop, host_id: str) -> bool:
    row = await shop.db.read(
        lambda c: c.execute("SELECT stopped_at FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
    )
    return row["stopped_at"] is not None


async def test_the_leader_gives_back_what_a_silent_host_left_reserved(settings, monkeypatch):
    monkeypatch.setattr(upkeep, "ORPHAN_SWEEP_EVERY", 0.2)
    monkeypatch.setattr(hosts_module, "GONE", 1.0)
    async with open_shop(settings, background=True) as shop:
        goods = await add_goods(shop, stock=10)
        buyer, _ = await add_user(shop)
        await shop.orders.placing.place(buyer, goods.goods_id, 2, ADDRESS)  # a real order
        # Another machine's host reserved 3 units and died before its commit.
        await _host_row(shop, "far-away:4242:dead", "far-away", 4242, seen_ago=0)
        await shop.goods.reserve(buyer + 100, goods.goods_id, 3)
        assert await shop.goods.live_stock(goods.goods_id) == 5
        for _ in range(100):  # it stops beating; after GONE the leader's sweep finds it
            if await _stopped(shop, "far-away:4242:dead"):
                break
            await asyncio.sleep(0.1)
        assert await _stopped(shop, "far-away:4242:dead")
        assert await shop.goods.live_stock(goods.goods_id) == 8  # 10 - the 2 really ordered
        assert (await shop.goods.check_stock()).ok


async def test_a_killed_process_on_this_machine_is_gone_at_once(shop):
    goods = await add_goods(shop, stock=4)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    await _host_row(shop, f"{socket.gethostname()}:{dead.pid}:x", socket.gethostname(), dead.pid, 0)
    await _host_row(shop, "far-away:1:live", "far-away", 1, seen_ago=0)
    await shop.goods.reserve(7, goods.goods_id, 1)  # the killed process's orphan
    sweep = upkeep.OrphanSweep(shop.goods.upkeep, shop.hosts)
    assert await sweep.sweep() == 1  # the dead pid, not the host that still beats elsewhere
    assert await shop.goods.live_stock(goods.goods_id) == 4
    assert await sweep.sweep() == 0
