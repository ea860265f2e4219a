"""`miri serve` as a subprocess, as an operator runs it, and the checks made on it after."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from miri.bench import serving
from miri.shop import open_shop
from tests.support.goods import post_goods
from tests.support.shop import CHEAP_HASH, SHARED_KEYS, add_user, make_settings

ENV = {
    "MIRI_ARGON2_MEMORY_KIB": str(CHEAP_HASH["argon2_memory_kib"]),
    "MIRI_ARGON2_TIME_COST": str(CHEAP_HASH["argon2_time_cost"]),
    "MIRI_RATE_LIMITS": "off",
    "MIRI_PAYMENT_PROVIDER": "simulated",
    "MIRI_PAYMENT_ABANDON_RATE": "0.2",
    "MIRI_PAYMENT_DELAY": "0.01",
}


def engine_env(database_url: str | None) -> dict[str, str]:
    """What a server of a shop on PostgreSQL gets on top of ``ENV``: the URL and the shared keys
    (none on SQLite: the data dir holds its own)."""
    if not database_url:
        return {}
    return {
        "MIRI_DATABASE_URL": database_url,
        "MIRI_JWT_SECRET": SHARED_KEYS["jwt_secret"],
        "MIRI_DATA_KEY": SHARED_KEYS["data_key"],
    }


def start_server(
    data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``miri serve`` as a subprocess; returns once it says where it listens."""
    return serving.start_serve(data_dir, port, *extra, env={**ENV, **(env or {})})


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (a clean stop); its exit code."""
    return serving.stop(proc, timeout=timeout)


def assert_doctor_clean(data_dir: Path, database_url: str | None = None) -> None:
    """`miri doctor` on the data dir, as an operator would run it, finds stock consistent."""
    doctor = serving.doctor(data_dir, {**ENV, **engine_env(database_url)}, timeout=60)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


async def wait_drained(base: str, timeout: float = 90.0) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with http.get(f"{base}/api/health") as resp:
                data = (await resp.json())["data"]
            if data["bus"]["pending"] == 0:
                return data
            await asyncio.sleep(0.2)
    raise AssertionError("the bus did not drain")


async def sale_accounts(
    data_dir: Path, buyers: int, database_url: str | None = None
) -> tuple[str, list[str]]:
    """A seller's token and ``buyers`` buyers' tokens, made in the shop before a server runs."""
    async with open_shop(make_settings(data_dir, database_url=database_url)) as shop:
        _, seller = await add_user(shop, "seller@example.com")
        made = await shop.users.add_bench_users(buyers, "e2e")
    return seller, [token for _, token in made]


async def register_goods(
    http: aiohttp.ClientSession, base: str, token: str, name: str, stock: int
) -> int:
    """Goods on sale now, registered over HTTP; their id."""
    return await post_goods(
        http, token, base=base, goodsName=name, goodsPrice=100, stockQuantity=stock
    )


def query(
    data_dir: Path, sql: str, *params: Any, database_url: str | None = None
) -> list[tuple[Any, ...]]:
    """Rows straight from the shop's database (the data dir's SQLite file, or PostgreSQL), as a
    check after the server stopped. ``sql`` uses ``?`` parameters."""
    if database_url:
        with psycopg.connect(database_url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()
    raw = sqlite3.connect(data_dir / "miri.sqlite3")
    try:
        return raw.execute(sql, params).fetchall()
    finally:
        raw.close()
