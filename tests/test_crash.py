"""A server killed with SIGKILL in the middle of 500 concurrent orders loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from miri.shop import open_shop
from tests.conftest import CHEAP_HASH, free_port, make_settings

ENV = {
    "MIRI_ARGON2_MEMORY_KIB": str(CHEAP_HASH["argon2_memory_kib"]),
    "MIRI_ARGON2_TIME_COST": str(CHEAP_HASH["argon2_time_cost"]),
    "MIRI_RATE_LIMITS": "off",
    "MIRI_PAYMENT_ABANDON_RATE": "0.2",
    "MIRI_PAYMENT_DELAY": "0.01",
}


def start_server(
    data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``miri serve`` as a subprocess; returns once it says where it listens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "miri.cli.main",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--no-access-log",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV, **(env or {})},
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Miri") and "listening on" in line:
            break
        if time.monotonic() > deadline:
            raise AssertionError("the server did not say it listens")
    else:
        raise AssertionError(f"server did not start: {proc.wait()}")
    # Keep reading its output, or a full pipe would stall the server.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def assert_doctor_clean(data_dir: Path) -> None:
    """`miri doctor` on the data dir, as an operator would run it, finds stock consistent."""
    doctor = subprocess.run(
        [sys.executable, "-m", "miri.cli.main", "doctor", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
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


@pytest.mark.timeout(240)
async def test_sigkill_mid_sale_loses_nothing(data_dir):
    settings = make_settings(data_dir)
    async with open_shop(settings) as shop:
        seller = await shop.users.add_user(
            email="seller@example.com",
            password="password123!",
            user_name="Seller",
            phone_number="010-0000-0000",
            address="Seoul 1",
        )
        seller_token = shop.users.issue_token(seller, "USER")
        buyers = [
            shop.users.issue_token(
                await shop.users.add_user(
                    email=f"b{n}@example.com",
                    password="password123!",
                    user_name="Buyer",
                    phone_number="010-0000-0000",
                    address="Seoul 1",
                ),
                "USER",
            )
            for n in range(25)
        ]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port)
    accepted: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{base}/api/auth/goods",
                json={
                    "goodsName": "Limited sneakers",
                    "goodsDescription": "Only a few pairs",
                    "goodsPrice": 100,
                    "stockQuantity": 300,
                    "category": "FASHION",
                },
                headers={"Authorization": f"Bearer {seller_token}"},
            )
            assert resp.status == 201, await resp.text()
            goods_id = (await resp.json())["data"]["goodsId"]

            async def buy(n: int) -> None:
                try:
                    async with http.post(
                        f"{base}/api/auth/orders",
                        json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                        headers={"Authorization": f"Bearer {buyers[n % len(buyers)]}"},
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

        proc = start_server(data_dir, port)
        health = await wait_drained(base)
        assert health["bus"]["deadLetters"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    raw = sqlite3.connect(data_dir / "miri.sqlite3")
    try:
        stored = {r[0] for r in raw.execute("SELECT id FROM orders")}
        assert set(accepted) <= stored
        pending = raw.execute(
            "SELECT COUNT(*) FROM order_details WHERE status = 'PAYMENT_PENDING'"
        ).fetchone()[0]
        assert pending == 0
        sold = raw.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_details WHERE stock_released = 0"
        ).fetchone()[0]
        assert sold <= 300
    finally:
        raw.close()
    assert_doctor_clean(data_dir)
