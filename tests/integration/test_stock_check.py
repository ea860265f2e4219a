"""Stock truth: the check, the rebuild after Redis lost data, and the write-back to SQLite."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import psycopg
import pytest

from miri.domain.errors import LimitExceeded
from miri.domain.goods.store import GoodsStore
from miri.infra.hosts import Hosts
from miri.infra.sqlite import DatabaseUnavailable
from miri.shop import open_shop
from tests.support.goods import add_goods, add_order_item, buyers, release_order_item, synced
from tests.support.shop import add_user

pytestmark = pytest.mark.both_engines


async def _beat_as(shop, host_id: str, pid: int) -> None:
    """A heartbeat row of process ``pid`` on this machine, as if it were serving."""
    now = time.time()
    args = (host_id, socket.gethostname(), pid, now, now)
    await shop.db.write(
        lambda c: c.execute(
            "INSERT INTO hosts (host_id, hostname, pid, url, version, leader, started_at, seen_at)"
            " VALUES (?, ?, ?, NULL, 'test', 0, ?, ?)",
            args,
        )
    )


async def _sell(shop, user_id: int, goods_id: int, quantity: int) -> int:
    """What orders does: reserve in Redis, then store the item in SQLite."""
    await shop.goods.reserve(user_id, goods_id, quantity)
    return await add_order_item(shop, user_id, goods_id, quantity)


async def _figures(shop, goods_id: int) -> tuple[int, dict]:
    return await shop.goods.live_stock(goods_id), await buyers(shop, goods_id)


async def test_check_agrees_with_orders_and_repairs_a_drift(shop):
    buyer, _ = await add_user(shop)
    other, _ = await add_user(shop, "other@example.com")
    goods = await add_goods(shop, stock=10, limit=5)
    await _sell(shop, buyer, goods.goods_id, 3)
    item = await _sell(shop, other, goods.goods_id, 2)
    await release_order_item(shop, item)
    await shop.goods.release(other, goods.goods_id, 2)
    report = await shop.goods.check_stock(repair=False)
    assert report.ok and report.checked == 1
    key = f"miri:goods:{goods.goods_id}"
    await shop.redis.client.hset(key, mapping={"stock": 99, "limit": 0})
    await shop.redis.client.hset(f"{key}:buyers", "12345", 4)
    report = await shop.goods.check_stock(repair=False)
    assert {m.what for m in report.mismatches} == {"stock", "buyers", "rules"}
    assert report.to_dict()["ok"] is False
    report = await shop.goods.check_stock(repair=True)
    assert report.repaired == 1
    assert await _figures(shop, goods.goods_id) == (7, {str(buyer): "3"})
    assert (await shop.goods.check_stock(repair=False)).ok


async def test_flushed_while_running_is_rebuilt_on_first_use(shop):
    buyer, _ = await add_user(shop)
    goods = await add_goods(shop, stock=10)
    await _sell(shop, buyer, goods.goods_id, 4)
    await shop.redis.client.flushall()
    report = await shop.goods.check_stock(repair=False)
    assert [m.what for m in report.mismatches] == ["missing"]
    # Hundreds of buyers hit the lost goods at once: one rebuild, then no oversell.
    outcomes = await asyncio.gather(
        *(shop.goods.reserve(100 + i, goods.goods_id, 1) for i in range(300)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 6
    assert (await _figures(shop, goods.goods_id))[0] == 0
    assert (await buyers(shop, goods.goods_id))[str(buyer)] == "4"


async def test_listing_and_restock_rebuild_lost_goods(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    goods = await add_goods(shop, seller, stock=10)
    await shop.redis.client.flushall()
    assert await shop.goods.live_stocks([goods.goods_id, 999]) == {goods.goods_id: 10}
    await shop.redis.client.flushall()
    assert await shop.goods.restock(seller, False, goods.goods_id, 5) == 15
    await shop.redis.client.flushall()
    await shop.goods.release(1, goods.goods_id, 1)  # no figure to give back to: left alone
    assert await shop.goods.live_stock(goods.goods_id) == 15


async def test_redis_lost_while_stopped_is_rebuilt_at_start(settings, clock):
    async with open_shop(settings, clock=clock) as shop:
        buyer, _ = await add_user(shop)
        other, _ = await add_user(shop, "other@example.com")
        seller, _ = await add_user(shop, "seller@example.com")
        a = await add_goods(shop, seller, stock=100, limit=10)
        b = await add_goods(shop, seller, stock=5, name="Lip Balm")
        await _sell(shop, buyer, a.goods_id, 7)
        await _sell(shop, other, a.goods_id, 2)
        canceled = await _sell(shop, other, b.goods_id, 3)
        await release_order_item(shop, canceled)
        await shop.goods.release(other, b.goods_id, 3)
        await _sell(shop, buyer, b.goods_id, 1)
        before = {g: await _figures(shop, g) for g in (a.goods_id, b.goods_id)}
    shutil.rmtree(settings.redis_dir)  # every Redis file gone while the shop is down
    async with open_shop(settings, clock=clock, background=True) as shop:
        after = {g: await _figures(shop, g) for g in (a.goods_id, b.goods_id)}
        assert after == before
        assert before[a.goods_id] == (91, {str(buyer): "7", str(other): "2"})
        assert (await shop.goods.check_stock(repair=False)).ok
        # The rules came back too.
        with pytest.raises(LimitExceeded):
            await shop.goods.reserve(buyer, a.goods_id, 4)


async def test_start_repairs_stale_figures_unless_another_server_is_serving(settings, clock):
    async with open_shop(settings, clock=clock) as shop:
        goods = await add_goods(shop, stock=10)
        await shop.goods.upkeep.rebuild("as a serving shop has")  # Redis holds a verified epoch
        # A figure gone wrong in a trusted Redis: more stock than the database's truth.
        await shop.redis.client.hset(f"miri:goods:{goods.goods_id}", "stock", 12)
        # Another host is serving: its in-flight reservations may not be in the database yet.
        other = Hosts(shop.db, "elsewhere:1:live")
        await other.beat()
        report = await shop.goods.startup_check()
        assert [m.what for m in report.mismatches] == ["stock"] and report.repaired == 0
        # The check above made this process beat as serving too; now nobody serves.
        await other.stopped()
        await shop.hosts.stopped()
    async with open_shop(settings, clock=clock) as shop:
        await shop.goods.startup_check()  # what a server runs before its first order
        assert await shop.goods.live_stock(goods.goods_id) == 10


async def test_the_mark_of_a_killed_server_does_not_stop_the_repair(shop):
    goods = await add_goods(shop, stock=10)
    await shop.redis.client.hset(f"miri:goods:{goods.goods_id}", "stock", 7)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id on this host that no longer runs
    await _beat_as(shop, f"{socket.gethostname()}:{dead.pid}:x", dead.pid)
    report = await shop.goods.startup_check()
    assert report.repaired == 1
    assert await shop.goods.live_stock(goods.goods_id) == 10


async def test_goods_unknown_to_sqlite_are_reported_and_removed(shop):
    goods = await add_goods(shop, stock=3)
    await shop.redis.client.hset("miri:goods:777", mapping={"stock": 5, "open": "", "limit": 0})
    report = await shop.goods.check_stock(repair=False)
    assert [(m.goods_id, m.what) for m in report.mismatches] == [(777, "unknown")]
    await shop.goods.check_stock(repair=True)
    assert await shop.redis.client.exists("miri:goods:777") == 0
    assert await shop.goods.live_stock(goods.goods_id) == 3


# -- write-back ------------------------------------------------------------------------------------
async def test_write_back_copies_dirty_goods_once(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    a = await add_goods(shop, seller, stock=10)
    b = await add_goods(shop, seller, stock=10, name="Lip Balm")
    await shop.goods.sync_stock()
    await shop.goods.reserve(1, a.goods_id, 3)
    assert await shop.goods.sync_stock() == 1
    assert (await synced(shop, a.goods_id), await synced(shop, b.goods_id)) == (7, 10)
    assert await shop.goods.sync_stock() == 0
    assert await shop.goods.live.dirty_count() == 0


async def test_a_change_landing_during_write_back_is_not_lost(shop):
    goods = await add_goods(shop, stock=10)
    await shop.goods.reserve(1, goods.goods_id, 1)
    live = shop.goods.live
    snapshot = await live.dirty_snapshot()  # the write-back has read stock 9 ...
    await shop.goods.reserve(2, goods.goods_id, 1)  # ... an order lands ...
    await GoodsStore(shop.db).write_synced(snapshot, 0.0)  # ... it writes 9 ...
    await live.clean([(g, n) for g, n, _ in snapshot])  # ... and must not clear the mark.
    assert await synced(shop, goods.goods_id) == 9
    assert await live.dirty_count() == 1
    assert await shop.goods.sync_stock() == 1
    assert await synced(shop, goods.goods_id) == 8


REFUSE_SYNC = {
    "sqlite": [
        "CREATE TRIGGER refuse_sync BEFORE UPDATE OF stock_synced ON goods"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_sync() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$",
        "CREATE TRIGGER refuse_sync BEFORE UPDATE OF stock_synced ON goods"
        " FOR EACH ROW EXECUTE FUNCTION refuse_sync()",
    ],
}


async def test_a_failed_database_write_keeps_the_dirty_mark(shop, engine):
    goods = await add_goods(shop, stock=10)
    await shop.goods.sync_stock()
    await shop.goods.reserve(1, goods.goods_id, 4)

    def refuse(conn) -> None:  # a real database failure for exactly this write: a trigger
        for statement in REFUSE_SYNC[engine]:
            conn.execute(statement)

    await shop.db.write(refuse)
    with pytest.raises((sqlite3.IntegrityError, psycopg.Error, DatabaseUnavailable)):
        await shop.goods.sync_stock()
    assert await shop.goods.live.dirty_count() == 1
    assert await synced(shop, goods.goods_id) == 10
    await shop.db.write(
        lambda c: c.execute(
            "DROP TRIGGER refuse_sync ON goods"
            if engine == "postgresql"
            else "DROP TRIGGER refuse_sync"
        )
    )
    assert await shop.goods.sync_stock() == 1
    assert await synced(shop, goods.goods_id) == 6


async def test_write_back_racing_hundreds_of_orders_loses_nothing(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    goods = [await add_goods(shop, seller, stock=200, name=f"Goods {i}") for i in range(5)]
    ids = [g.goods_id for g in goods]

    async def orders() -> None:
        await asyncio.gather(
            *(shop.goods.reserve(u, ids[u % 5], 1 + u % 3) for u in range(400)),
            return_exceptions=True,
        )

    async def write_backs() -> None:
        for _ in range(20):
            await shop.goods.sync_stock()
            await asyncio.sleep(0)

    await asyncio.gather(orders(), write_backs(), orders())
    await shop.goods.sync_stock()
    live = await shop.goods.live_stocks(ids)
    assert sum(live.values()) < 1000
    for gid in ids:
        assert await synced(shop, gid) == live[gid]
    assert await shop.goods.live.dirty_count() == 0


async def test_the_server_writes_back_on_shutdown(settings, clock):
    async with open_shop(settings, clock=clock, background=True) as shop:
        goods = await add_goods(shop, stock=10)
        await shop.goods.reserve(1, goods.goods_id, 2)
    async with open_shop(settings, clock=clock) as shop:
        assert await synced(shop, goods.goods_id) == 8
