"""Three `miri serve` hosts, one PostgreSQL, one Redis over TCP: they sell as one shop.

Each host has its own data dir (nothing shared on disk) and the same keys. Hundreds of buyers,
each sent to one host as a load balancer would, buy until the goods sell out; mid-sale one host
that does not run the jobs is killed with SIGKILL, and its buyers go to the others. Then: nothing
oversold, every 201 stored once, every item paid or given back, the deliveries the dead host held
finished by the others, and the daily runs (set a few seconds ahead) ran once for the shop.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from miri.bench import serving
from miri.bench.engines import throwaway_redis
from miri.domain.views import dashboard as views
from miri.infra.processes import free_port
from miri.shop import open_shop
from tests.support.servers import ENV, start_server, stop_server, wait_drained
from tests.support.shop import SHARED_KEYS, make_settings

HOSTS = 3
BUYERS = 300
STOCK = {"Sneakers": 500, "Jacket": 500}
ADDRESS = "Seoul 1"
DAILY_AHEAD = 20.0  # seconds from now to the daily runs: after the leader started


@dataclass
class Sale:
    """What the buyers were told, and what the kill cut short."""

    accepted: dict[int, int] = field(default_factory=dict)  # orderId -> units
    lost: int = 0  # requests whose answer never came (their host died under them)
    sold_at_kill: int = 0  # units accepted when the host was killed
    statuses: Counter = field(default_factory=Counter)
    sold_out: set[int] = field(default_factory=set)


def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


async def _prepare(root: Path, url: str, redis_url: str) -> tuple[list[str], list[int]]:
    """The seller's goods and the buyers' tokens, made before any host serves."""
    settings = make_settings(root / "setup", database_url=url, redis_url=redis_url)
    async with open_shop(settings) as shop:
        seller = await shop.users.add_user(
            email="seller@example.com",
            password="password123!",
            user_name="S",
            phone_number="010-0000-0000",
            address=ADDRESS,
        )
        goods = []
        for name, stock in STOCK.items():
            g = await shop.goods.register(
                seller,
                name=name,
                description="For the sale",
                price=100,
                stock=stock,
                category="FASHION",
            )
            goods.append(g.goods_id)
        made = await shop.users.add_bench_users(BUYERS, "hosts")
    return [token for _, token in made], goods


def _host_env(url: str, redis_url: str, daily_at: str) -> dict[str, str]:
    return {
        **ENV,
        "MIRI_DATABASE_URL": url,
        "MIRI_REDIS_URL": redis_url,
        "MIRI_JWT_SECRET": SHARED_KEYS["jwt_secret"],
        "MIRI_DATA_KEY": SHARED_KEYS["data_key"],
        "MIRI_TIMEZONE": "UTC",
        "MIRI_DAILY_RUN_AT": daily_at,
        "MIRI_PAYMENT_DELAY": "0.05",  # payment walks in flight when the host dies
        "MIRI_LOG_LEVEL": "WARNING",
    }


async def _start_hosts(root: Path, env: dict[str, str]) -> tuple[list[subprocess.Popen], list[str]]:
    """The first host starts alone (it takes the jobs lock), the other two together."""
    ports = [free_port() for _ in range(HOSTS)]
    dirs = [root / f"host-{i}" for i in range(1, HOSTS + 1)]
    first = start_server(dirs[0], ports[0], env=env)
    rest = await asyncio.gather(
        *(
            asyncio.to_thread(start_server, d, p, env=env)
            for d, p in zip(dirs[1:], ports[1:], strict=True)
        )
    )
    return [first, *rest], [f"http://127.0.0.1:{p}" for p in ports]


async def _health(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/health") as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["data"]


async def _holds_claims(url: str, pid: int) -> bool:
    rows = await asyncio.to_thread(
        _rows,
        url,
        "SELECT COUNT(*) AS n FROM deliveries WHERE status = 'PENDING' AND claimed_by LIKE %s",
        f"%:{pid}:%",
    )
    return rows[0]["n"] > 0


async def _sell(
    bases: list[str],
    tokens: list[str],
    goods: list[int],
    victim: int,
    proc: subprocess.Popen,
    url: str,
) -> tuple[Sale, list[str]]:
    """Buyers until both goods sell out; the victim host is killed once a third is sold and it
    holds deliveries. Returns the sale and the delivery keys the victim held when it died."""
    sale = Sale()
    alive = list(range(len(bases)))
    total = sum(STOCK.values())
    held: list[str] = []
    killed = asyncio.Event()

    async def buyer(n: int, http: aiohttp.ClientSession) -> None:
        rng = random.Random(n)
        host = n % len(bases)
        headers = {"Authorization": f"Bearer {tokens[n]}"}
        deadline = time.monotonic() + 60
        while len(sale.sold_out) < len(goods) and time.monotonic() < deadline:
            if host not in alive:  # the load balancer sends this buyer elsewhere
                host = alive[n % len(alive)]
            choice = rng.choice([g for g in goods if g not in sale.sold_out] or goods)
            body = {"goodsId": choice, "quantity": rng.choice((1, 1, 2)), "address": ADDRESS}
            try:
                async with http.post(
                    f"{bases[host]}/api/auth/orders", json=body, headers=headers
                ) as r:
                    data = await r.json()
                    sale.statuses[f"{r.status} {data.get('error') or ''}".strip()] += 1
            except (aiohttp.ClientError, TimeoutError):
                sale.lost += 1
                assert host == victim and killed.is_set(), f"host {host} failed a request"
                continue
            if r.status == 201:
                sale.accepted[data["data"]["orderId"]] = body["quantity"]
            elif data.get("error") == "SOLD_OUT" and body["quantity"] == 1:
                sale.sold_out.add(choice)  # (two units may be refused while one is left)

    async def killer() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sold = sum(sale.accepted.values())
            if sold >= total // 4 and await _holds_claims(url, proc.pid):
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        sale.sold_at_kill = sum(sale.accepted.values())
        killed.set()
        alive.remove(victim)
        await asyncio.to_thread(proc.wait, 10)
        rows = await asyncio.to_thread(
            _rows,
            url,
            "SELECT event_id, consumer FROM deliveries WHERE status = 'PENDING'"
            " AND claimed_by LIKE %s",
            f"%:{proc.pid}:%",
        )
        held.extend(f"{r['event_id']}/{r['consumer']}" for r in rows)

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)  # every buyer has a connection of its own
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await asyncio.gather(killer(), *(buyer(n, http) for n in range(BUYERS)))
    return sale, held


@pytest.mark.timeout(240)
async def test_three_hosts_sell_as_one_shop_and_survive_a_sigkill(
    tmp_path: Path, pg_url: str
) -> None:
    with throwaway_redis() as redis_url:
        tokens, goods = await _prepare(tmp_path, pg_url, redis_url)
        daily_at = datetime.now(UTC) + timedelta(seconds=DAILY_AHEAD)
        env = _host_env(pg_url, redis_url, f"{daily_at:%H:%M:%S}")
        procs, bases = await _start_hosts(tmp_path, env)
        victim = HOSTS - 1  # not the leader
        try:
            assert datetime.now(UTC) < daily_at, "the hosts took longer to start than DAILY_AHEAD"
            async with aiohttp.ClientSession() as http:
                health = [await _health(http, b) for b in bases]
            assert [h["engines"]["database"] for h in health] == ["postgresql"] * HOSTS
            leaders = [i for i, h in enumerate(health) if h["host"]["leader"]]
            assert leaders == [0], health  # the first host took the jobs lock
            # The dashboard's read, from a process that serves nothing: the whole shop.
            shown = await _dashboard_hosts(tmp_path, pg_url, redis_url)
            assert {h.host_id for h in shown} == {h["host"]["id"] for h in health}
            assert [(h.state, h.leader) for h in shown] == [("alive", True)] + [
                ("alive", False)
            ] * (HOSTS - 1)
            assert shown[0].host_id == health[0]["host"]["id"]

            sale, held = await _sell(bases, tokens, goods, victim, procs[victim], pg_url)
            assert procs[victim].returncode == -signal.SIGKILL
            # The kill landed mid-sale, with deliveries in the dead host's hands.
            assert 0 < sale.sold_at_kill < sum(STOCK.values()), sale.sold_at_kill
            assert held, "the killed host held no deliveries"
            print(
                f"{len(sale.accepted)} orders accepted; host 3 killed at {sale.sold_at_kill}"
                f" units sold, holding {len(held)} deliveries, {sale.lost} answers lost"
            )
            assert set(sale.statuses) <= {"201", "409 SOLD_OUT"}, sale.statuses
            assert sale.sold_out == set(goods), sale  # the buyers stopped because all was sold

            # The survivors release what the dead host claimed and deliver it.
            await wait_drained(bases[0], timeout=60)
            # The daily runs: due a few seconds after start, run by the leader once.
            wait = (daily_at - datetime.now(UTC)).total_seconds() + 3
            await asyncio.sleep(max(wait, 0))
            runs = await _wait_runs(pg_url, {"shipping", "returns"})
            stock_after = await _live_stock(bases[0], goods)
        finally:
            codes = [stop_server(p, timeout=60) for p in procs]  # the victim too, if spared
        assert codes[:victim] == [0] * victim, "the survivors did not stop cleanly"
        _check_runs(runs, health[0]["host"]["id"])
        _check_orders(pg_url, sale, goods, stock_after)
        _check_deliveries(pg_url, held)
        _check_doctor(tmp_path / "host-1", env)


async def _dashboard_hosts(root: Path, url: str, redis_url: str) -> list[views.ServingHost]:
    settings = make_settings(root / "setup", database_url=url, redis_url=redis_url)
    async with open_shop(settings) as shop:
        return await views.shop_hosts(shop.db, time.time())


async def _wait_runs(url: str, names: set[str], timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _rows(url, "SELECT name, host_id, outcome FROM job_runs ORDER BY id")
        if names <= {r["name"] for r in runs} or time.monotonic() > deadline:
            await asyncio.sleep(1.0)  # any second run another host might make shows by now
            return _rows(url, "SELECT name, host_id, outcome FROM job_runs ORDER BY id")
        await asyncio.sleep(0.2)


async def _live_stock(base: str, goods: list[int]) -> dict[int, int]:
    async with aiohttp.ClientSession() as http:
        found = {}
        for goods_id in goods:
            async with http.get(f"{base}/api/goods/{goods_id}/stock") as r:
                found[goods_id] = (await r.json())["data"]["stockQuantity"]
        return found


def _check_runs(runs: list[dict[str, Any]], leader: str) -> None:
    daily = Counter(r["name"] for r in runs if r["name"] in ("shipping", "returns"))
    assert daily == {"shipping": 1, "returns": 1}, runs
    assert {r["host_id"] for r in runs} == {leader}, runs  # only the leader runs any job
    assert {r["outcome"] for r in runs} == {"ok"}, runs


def _check_orders(url: str, sale: Sale, goods: list[int], live: dict[int, int]) -> None:
    stored = {r["id"] for r in _rows(url, "SELECT id FROM orders")}
    accepted = set(sale.accepted)
    assert accepted <= stored, f"accepted orders lost: {sorted(accepted - stored)[:10]}"
    # An order stored without its 201 can only come from a request cut short by the kill.
    assert len(stored - accepted) <= sale.lost, (len(stored - accepted), sale.lost)
    items = _rows(
        url,
        "SELECT d.id, d.order_id, d.goods_id, d.quantity, d.status, d.stock_released,"
        " p.status AS payment FROM order_items d"
        " LEFT JOIN payments p ON p.order_item_id = d.id",
    )
    assert len({i["id"] for i in items}) == len(items)  # one payment per item
    assert Counter(i["order_id"] for i in items) == Counter(stored)  # one item per order
    units = {i["order_id"]: i["quantity"] for i in items}
    assert all(units[o] == q for o, q in sale.accepted.items())
    # Every item ended paid (held) or given back (released once); none waits.
    bad = [
        i
        for i in items
        if not (
            (i["status"] == "COMPLETED" and i["stock_released"] == 0)
            and i["payment"] == "PAYMENT_COMPLETED"
            or (i["status"] == "CANCELED" and i["stock_released"] == 1)
        )
    ]
    assert bad == [], bad[:5]
    assert {i["status"] for i in items} == {"COMPLETED", "CANCELED"}  # both walks happened
    for goods_id in goods:
        [row] = _rows(url, "SELECT stock_total FROM goods WHERE id = %s", goods_id)
        held = sum(
            i["quantity"] for i in items if i["goods_id"] == goods_id and not i["stock_released"]
        )
        assert held <= row["stock_total"], f"goods {goods_id} oversold: {held}"
        # Units the dead host reserved for no order only lower live stock, never raise it.
        assert 0 <= live[goods_id] <= row["stock_total"] - held, (goods_id, live, held)


def _check_deliveries(url: str, held: list[str]) -> None:
    rows = _rows(url, "SELECT event_id, consumer, status, claimed_by FROM deliveries")
    assert {r["status"] for r in rows} == {"DONE"}, Counter(r["status"] for r in rows)
    assert {r["claimed_by"] for r in rows} == {None}
    # Each delivery took effect exactly once, whichever host ran it (the killed host included):
    # one mark per delivery of each event, in handled_events (the mark names the handler's own
    # step) or, for the mail consumer, in mail_log (one row per mail sent).
    handled = Counter(r["event_id"] for r in _rows(url, "SELECT event_id FROM handled_events"))
    handled += Counter(r["event_id"] for r in _rows(url, "SELECT event_id FROM mail_log"))
    assert handled == Counter(r["event_id"] for r in rows)
    done = {f"{r['event_id']}/{r['consumer']}" for r in rows}
    assert set(held) <= done


def _check_doctor(data_dir: Path, env: dict[str, str]) -> None:
    """`miri doctor --repair` on one host's settings leaves live stock equal to the truth."""
    result = subprocess.run(
        [*serving.MIRI, "doctor", "--repair", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
