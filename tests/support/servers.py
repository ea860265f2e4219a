"""`miri serve` as a subprocess, as an operator runs it, and the checks made on it after."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.shop import CHEAP_HASH

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
