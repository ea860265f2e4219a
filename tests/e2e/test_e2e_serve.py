"""``miri serve`` as a subprocess: sign up through real SMTP over HTTP, stop, restart."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.shop import free_port

STARTUP = 60.0
SHUTDOWN = 30.0


def _command() -> list[str]:
    script = Path(sys.executable).with_name("miri")
    if script.exists():
        return [str(script)]
    found = shutil.which("miri")
    return [found] if found else [sys.executable, "-m", "miri.cli.main"]


@asynccontextmanager
async def serving(data_dir: Path, port: int, smtp_port: int, log: Path) -> AsyncIterator[Any]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MIRI_") and k != "PYTHONUNBUFFERED"
    }
    env.update(
        MIRI_ARGON2_MEMORY_KIB="1024",
        MIRI_ARGON2_TIME_COST="1",
        MIRI_SMTP_HOST="127.0.0.1",
        MIRI_SMTP_PORT=str(smtp_port),
        COLUMNS="200",
    )
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *_command(),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )
        try:
            lines: list[str] = []

            async def until_listening() -> str:
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        raise AssertionError(f"exited before listening: {lines} {log.read_text()}")
                    lines.append(raw.decode())
                    found = re.search(r"listening on (http://\S+)", lines[-1])
                    if found:
                        return found.group(1)

            url = await asyncio.wait_for(until_listening(), STARTUP)
            assert url == f"http://127.0.0.1:{port}"
            # The next lines say where the data lives.
            for _ in range(2):
                lines.append((await asyncio.wait_for(proc.stdout.readline(), 10)).decode())
            assert any(str(data_dir) in line for line in lines), lines
            proc.url = url
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def stop(proc: Any) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), SHUTDOWN)


async def test_serve_signup_login_stop_restart(tmp_path: Path, smtp: Any) -> None:
    data_dir = tmp_path / "shop"
    log = tmp_path / "serve.log"
    port = free_port()
    email = "e2e@example.com"
    async with serving(data_dir, port, smtp.port, log) as proc:
        async with aiohttp.ClientSession(proc.url) as http:
            resp = await http.get("/api/health", headers={"X-Request-Id": "e2e-health-1"})
            assert resp.status == 200
            assert resp.headers["X-Request-Id"] == "e2e-health-1"
            health = (await resp.json())["data"]
            assert (health["status"], health["redis"], health["database"]) == ("ok", "ok", "ok")

            resp = await http.post("/api/verify-email", json={"email": email})
            assert resp.status == 200, await resp.text()
            generated = resp.headers["X-Request-Id"]
            assert generated and len(generated) >= 16
            token = await smtp.wait_token(email, timeout=15)
            resp = await http.post(
                "/api/users",
                json={
                    "emailVerificationToken": token,
                    "userName": "End To End",
                    "password": "e2e-password1",
                    "phoneNumber": "010-3333-4444",
                    "address": "Seoul Mapo 5",
                },
            )
            assert resp.status == 201, await resp.text()
            user_id = (await resp.json())["data"]["userId"]
            resp = await http.post("/api/login", json={"email": email, "password": "e2e-password1"})
            assert resp.status == 200, await resp.text()
            access = (await resp.json())["data"]["accessToken"]
            assert resp.headers["Authorization"] == f"Bearer {access}"
            auth = {"Authorization": f"Bearer {access}"}
            resp = await http.get("/api/auth/users", headers=auth)
            assert resp.status == 200
            profile = (await resp.json())["data"]
            assert (profile["userId"], profile["email"], profile["userName"]) == (
                user_id,
                email,
                "End To End",
            )
            resp = await http.get("/api/auth/users")
            assert resp.status == 401

            metrics = await (await http.get("/metrics")).text()
            assert re.search(
                r'miri_http_requests_total\{method="POST",route="/api/login",status="200"\} 1\.0',
                metrics,
            ), metrics
            assert re.search(
                r'miri_http_requests_total\{method="GET",route="/api/auth/users",status="401"\} 1\.0',
                metrics,
            )
            assert 'miri_http_request_seconds_bucket{le="0.1",route="/api/users"}' in metrics
            assert 'miri_http_request_seconds_count{route="/api/verify-email"} 1.0' in metrics

            doc = await (await http.get("/openapi.json")).json()
            assert doc["openapi"].startswith("3.1")
            assert {"post"} <= set(doc["paths"]["/api/login"])
        assert await stop(proc) == 0

    assert "Traceback" not in log.read_text()
    # A restart on the same data dir knows the user, and the old token (same keys) still works.
    async with serving(data_dir, port, smtp.port, log) as proc:
        async with aiohttp.ClientSession(proc.url) as http:
            resp = await http.get("/api/auth/users", headers=auth)
            assert resp.status == 200 and (await resp.json())["data"]["userId"] == user_id
            resp = await http.post("/api/login", json={"email": email, "password": "e2e-password1"})
            assert resp.status == 200
            resp = await http.post("/api/verify-email", json={"email": email})
            assert (await resp.json())["error"] == "EMAIL_TAKEN"
        assert await stop(proc) == 0
    assert "Traceback" not in log.read_text()
