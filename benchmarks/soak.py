"""Soak: mixed traffic against a `miri serve` subprocess for a set time; does memory level off?

    python benchmarks/soak.py                 # 10 minutes
    python benchmarks/soak.py --minutes 3 --concurrency 8

A fresh data dir gets buyers, a seller and goods with plenty of stock; `miri serve` starts on a
free 127.0.0.1 port (rate limits off, the original shop's 20% payment abandon rate). Workers
browse (listing, search, goods pages, live stock), keep a wishlist (add, change, remove, list),
order (directly and from the wishlist), cancel, ask for returns and read their orders and "my
page"; every 30 seconds the daily jobs run through the CLI, as if a day or two later, so items
ship, get delivered and returns complete. Every `--sample` seconds a row shows throughput, errors
(5xx and broken connections; 4xx refusals such as SOLD_OUT are counted apart) and the server's
RSS. At the end: the stock check (`miri doctor`), and whether memory levelled off — the RSS of the
last third of the run against the middle third.

Exit status 1 when a request got a 5xx or no answer, the stock check failed, or memory kept
growing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from rich.console import Console
from rich.table import Table

from miri.bench import serving
from miri.infra.processes import free_port

ADDRESS = "Seoul Mapo 12"
SERVER_ENV = {
    "MIRI_ARGON2_MEMORY_KIB": "1024",
    "MIRI_ARGON2_TIME_COST": "1",
    "MIRI_RATE_LIMITS": "off",
    "MIRI_PAYMENT_ABANDON_RATE": "0.2",
    "MIRI_PAYMENT_DELAY": "0.01",
}
GROWTH_LIMIT = 0.05  # the last third may be at most 5% (or 8 MiB) above the middle third
GROWTH_FLOOR = 8 * 1024 * 1024
console = Console()


async def prepare(data_dir: Path, buyers: int, goods: int, ttl: int) -> tuple[list[str], list[int]]:
    from miri.config import load_settings
    from miri.shop import open_shop

    settings = load_settings(
        data_dir=data_dir, env={}, argon2_memory_kib=1024, argon2_time_cost=1, token_ttl=ttl
    )
    async with open_shop(settings) as shop:
        common = {"password": "password123!", "phone_number": "010-0000-0000", "address": ADDRESS}
        seller = await shop.users.add_user(email="seller@example.com", user_name="Seller", **common)
        ids = []
        for n in range(goods):
            g = await shop.goods.register(
                seller,
                name=f"Soak goods {n}",
                description="Goods for the long run",
                price=1000 + n,
                stock=10_000_000,
                category=("FASHION", "BEAUTY", "ETC")[n % 3],
                reservation_start=None,
                per_buyer_limit=None,
            )
            ids.append(g.goods_id)
        tokens = []
        for n in range(buyers):
            user = await shop.users.add_user(
                email=f"soak{n}@example.com", user_name="Buyer", **common
            )
            tokens.append(shop.users.issue_token(user, "USER"))
    return tokens, ids


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # per interval
        self.total: Counter[str] = Counter()

    def add(self, kind: str, status: int | None) -> None:
        if status is None or status >= 500:
            key = "errors"
        elif status >= 400:
            key = "refusals"
        else:
            key = "ok"
        for c in (self.counts, self.total):
            c[key] += 1
            c["requests"] += 1
            c[kind] += 1

    def take(self) -> Counter[str]:
        out, self.counts = self.counts, Counter()
        return out


class Buyer:
    def __init__(self, base: str, token: str, goods: list[int], rng: random.Random) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {token}"}
        self.goods = goods
        self.rng = rng
        self.items: list[int] = []  # my order items, newest last
        self.wishes: list[int] = []

    async def call(
        self,
        http: aiohttp.ClientSession,
        stats: Stats,
        kind: str,
        method: str,
        path: str,
        **kw: Any,
    ) -> Any:
        try:
            async with http.request(method, self.base + path, **kw) as resp:
                data = await resp.json(content_type=None)
                stats.add(kind, resp.status)
                return data if resp.status < 400 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            stats.add(kind, None)
            return None

    async def step(self, http: aiohttp.ClientSession, stats: Stats) -> None:
        r, g = self.rng.random(), self.rng.choice(self.goods)
        if r < 0.20:
            page = self.rng.randrange(3)
            await self.call(http, stats, "browse", "GET", f"/api/goods?page={page}&size=20")
        elif r < 0.30:
            q = self.rng.choice(["Soak", "goods 1", "7", "nothing"])
            await self.call(http, stats, "browse", "GET", "/api/goods", params={"q": q})
        elif r < 0.42:
            await self.call(http, stats, "browse", "GET", f"/api/goods/{g}")
        elif r < 0.50:
            await self.call(http, stats, "browse", "GET", f"/api/goods/{g}/stock")
        elif r < 0.58:
            body = {"goodsId": g, "goodsQuantity": self.rng.randint(1, 3)}
            data = await self.call(
                http, stats, "wishlist", "POST", "/api/auth/wishlist", json=body, headers=self.auth
            )
            if data and data["data"]["wishListId"] not in self.wishes:
                self.wishes.append(data["data"]["wishListId"])
        elif r < 0.62 and self.wishes:
            wish = self.rng.choice(self.wishes)
            if self.rng.random() < 0.5:
                body = {"goodsQuantity": self.rng.randint(1, 5)}
                await self.call(
                    http, stats, "wishlist", "PATCH", f"/api/auth/wishlist/{wish}", json=body,
                    headers=self.auth,
                )  # fmt: skip
            else:
                self.wishes.remove(wish)
                await self.call(
                    http, stats, "wishlist", "DELETE", f"/api/auth/wishlist/{wish}",
                    headers=self.auth,
                )  # fmt: skip
        elif r < 0.66:
            await self.call(http, stats, "wishlist", "GET", "/api/auth/wishlist", headers=self.auth)
        elif r < 0.78:
            body = {"goodsId": g, "quantity": self.rng.randint(1, 2), "address": ADDRESS}
            data = await self.call(
                http, stats, "order", "POST", "/api/auth/orders", json=body, headers=self.auth
            )
            if data:
                self.items += [i["orderDetailId"] for i in data["data"]["items"]]
        elif r < 0.81 and self.wishes:
            ids, self.wishes = self.wishes[:3], self.wishes[3:]
            body = {"wishListIds": ids, "address": ADDRESS}
            data = await self.call(
                http, stats, "order", "POST", "/api/auth/orders/from-wishlist", json=body,
                headers=self.auth,
            )  # fmt: skip
            if data:
                self.items += [i["orderDetailId"] for i in data["data"]["items"]]
        elif r < 0.86 and self.items:
            item = self.items.pop()
            await self.call(
                http, stats, "cancel", "POST", f"/api/auth/orders/{item}/cancel", headers=self.auth
            )
        elif r < 0.90 and self.items:
            item = self.rng.choice(self.items[: max(1, len(self.items) // 2)])
            body = {"reason": "It did not fit me well"}
            await self.call(
                http, stats, "return", "POST", f"/api/auth/orders/{item}/return", json=body,
                headers=self.auth,
            )  # fmt: skip
        elif r < 0.96:
            await self.call(
                http, stats, "mine", "GET", "/api/auth/orders?size=20", headers=self.auth
            )
        else:
            await self.call(http, stats, "mine", "GET", "/api/auth/users", headers=self.auth)
        del self.items[:-200]  # keep a bounded memory of one's own items


async def jobs(data_dir: Path, stop: asyncio.Event, stats: Stats) -> None:
    """The daily runs through the CLI, as if one and two days later: items ship and arrive."""
    env = {**os.environ, **SERVER_ENV}
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 30)
            return
        except TimeoutError:
            pass
        now = datetime.now(UTC)
        for job, days in (("shipping", 1), ("shipping", 2.5), ("returns", 4)):
            as_of = (now + timedelta(days=days)).isoformat()
            proc = await asyncio.create_subprocess_exec(
                *serving.MIRI, "jobs", "run", job, "--as-of", as_of,
                "--data-dir", str(data_dir),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
            )  # fmt: skip
            stats.add("jobs", 200 if await proc.wait() == 0 else 500)


async def soak(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    tmp = tempfile.TemporaryDirectory(prefix="miri-soak-")
    data_dir = Path(args.data_dir) if args.data_dir else Path(tmp.name) / "data"
    console.print(f"preparing {data_dir} ...")
    tokens, goods = await prepare(data_dir, args.buyers, args.goods, int(seconds) + 3600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serving.start_serve(data_dir, port, env=SERVER_ENV)
    process = psutil.Process(server.pid)
    console.print(
        f"miri serve pid {server.pid} on {base}; {args.concurrency} workers for {args.minutes} min"
    )
    stats, stop = Stats(), asyncio.Event()
    rng = random.Random(args.seed)
    samples: list[dict[str, Any]] = []

    async def worker(n: int, http: aiohttp.ClientSession) -> None:
        buyer = Buyer(base, tokens[n % len(tokens)], goods, random.Random(rng.random()))
        while not stop.is_set():
            await buyer.step(http, stats)

    async def sampler() -> None:
        started = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(args.sample)
            c = stats.take()
            elapsed = time.monotonic() - started
            samples.append(
                {
                    "t": elapsed,
                    "rps": c["requests"] / args.sample,
                    "orders": c["order"],
                    "refusals": c["refusals"],
                    "errors": c["errors"],
                    "rss": process.memory_info().rss,
                    "cpu": process.cpu_percent(),
                }
            )
            if elapsed >= seconds:
                stop.set()

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            process.cpu_percent()
            await asyncio.gather(
                sampler(),
                jobs(data_dir, stop, stats),
                *(worker(n, http) for n in range(args.concurrency)),
            )
    finally:
        serving.stop(server)
    doctor = serving.doctor(data_dir, SERVER_ENV)
    verdict = report(samples, stats, doctor.returncode == 0)
    tmp.cleanup()
    return verdict


def report(samples: list[dict[str, Any]], stats: Stats, doctor_ok: bool) -> int:
    table = Table(title="miri soak")
    for col in ("time", "req/s", "orders", "4xx", "errors", "server RSS", "server CPU"):
        table.add_column(col, justify="right")
    for s in samples:
        table.add_row(
            f"{s['t']:.0f}s",
            f"{s['rps']:.0f}",
            str(s["orders"]),
            str(s["refusals"]),
            str(s["errors"]),
            f"{s['rss'] / 2**20:.1f} MiB",
            f"{s['cpu']:.0f}%",
        )
    console.print(table)
    t = stats.total
    kinds = ", ".join(
        f"{k} {t[k]}" for k in ("browse", "wishlist", "order", "cancel", "return", "mine", "jobs")
    )
    console.print(f"requests {t['requests']} ({kinds}); 4xx {t['refusals']}; errors {t['errors']}")
    third = max(1, len(samples) // 3)
    middle = [s["rss"] for s in samples[third : 2 * third]] or [samples[0]["rss"]]
    last = [s["rss"] for s in samples[-third:]]
    mid_avg, last_avg = sum(middle) / len(middle), sum(last) / len(last)
    growth = last_avg - mid_avg
    level = growth <= max(GROWTH_FLOOR, GROWTH_LIMIT * mid_avg)
    console.print(
        f"server RSS: first {samples[0]['rss'] / 2**20:.1f} MiB, middle third {mid_avg / 2**20:.1f}"
        f" MiB, last third {last_avg / 2**20:.1f} MiB, peak"
        f" {max(s['rss'] for s in samples) / 2**20:.1f} MiB -> "
        + ("[green]levelled off[/]" if level else "[red]still growing[/]")
    )
    console.print("stock check: " + ("[green]clean[/]" if doctor_ok else "[red]MISMATCH[/]"))
    return 0 if level and doctor_ok and t["errors"] == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--buyers", type=int, default=50)
    parser.add_argument("--goods", type=int, default=40)
    parser.add_argument("--sample", type=float, default=15.0, help="seconds per table row")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=None, help="keep the data here (default: temp)")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
