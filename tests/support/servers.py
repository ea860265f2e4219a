"""`miri serve` as a subprocess, as an operator runs it, and the checks made on it after."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from miri.bench import serving
from miri.shop import open_shop
from tests.support.shop import CHEAP_HASH, add_user, bearer, make_settings

ENV = {
    "MIRI_ARGON2_MEMORY_KIB": str(CHEAP_HASH["argon2_memory_kib"]),
    "MIRI_ARGON2_TIME_COST": str(CHEAP_HASH["argon2_time_cost"]),
    "MIRI_RATE_LIMITS": "off",
    "MIRI_PAYMENT_PROVIDER": "simulated",
    "MIRI_PAYMENT_ABANDON_RATE": "0.2",
    "MIRI_PAYMENT_DELAY": "0.01",
}


def start_server(
    data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``miri serve`` as a subprocess; returns once it says where it listens."""
    return serving.start_serve(data_dir, port, *extra, env={**ENV, **(env or {})})


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (a clean stop); its exit code."""
    return serving.stop(proc, timeout=timeout)


def assert_doctor_clean(data_dir: Path) -> None:
    """`miri doctor` on the data dir, as an operator would run it, finds stock consistent."""
    doctor = serving.doctor(data_dir, ENV, timeout=60)
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


async def sale_accounts(data_dir: Path, buyers: int) -> tuple[str, list[str]]:
    """A seller's token and ``buyers`` buyers' tokens, made in the data dir before a server runs."""
    async with open_shop(make_settings(data_dir)) as shop:
        _, seller = await add_user(shop, "seller@example.com")
        made = await shop.users.add_bench_users(buyers, "e2e")
    return seller, [token for _, token in made]


async def register_goods(
    http: aiohttp.ClientSession, base: str, token: str, name: str, stock: int
) -> int:
    """Goods on sale now, registered over HTTP; their id."""
    body = {
        "goodsName": name,
        "goodsDescription": "For the sale",
        "goodsPrice": 100,
        "stockQuantity": stock,
        "category": "FASHION",
    }
    async with http.post(f"{base}/api/auth/goods", json=body, headers=bearer(token)) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["data"]["goodsId"]


def query(data_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the data dir's SQLite file, as a check after the server stopped."""
    raw = sqlite3.connect(data_dir / "miri.sqlite3")
    try:
        return raw.execute(sql, params).fetchall()
    finally:
        raw.close()
