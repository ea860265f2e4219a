"""Does POST /api/password-reset tell whether an account exists by how long it takes?

Known and unknown emails are asked alternately, one request at a time, against the real app on
a loopback port (SQLite, embedded Redis, rate limits off; the mail consumer does not run, as it
never runs inside the request). A bare aiohttp POST measured in the same run is the floor.

    python benchmarks/password_reset.py --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from miri.config import load_settings
from miri.server.app import create_app
from miri.shop import open_shop


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port the OS chose
    return runner, f"http://127.0.0.1:{port}"


async def _bare() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"code": 1, "msg": "OK", "data": None})

    app = web.Application()
    app.router.add_post("/api/password-reset", ok)
    return app


def _summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return (
        f"p50 {statistics.median(ms):.2f} ms  p90 {q[8]:.2f} ms  mean {statistics.fmean(ms):.2f} ms"
    )


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), env={}, rate_limits=False)
        async with open_shop(settings) as shop:
            made = await shop.users.add_bench_users(50, "reset")
            known = [f"bench-reset-{n}@bench.miri" for n in range(len(made))]
            runner, url = await _serve(create_app(shop))
            bare_runner, bare_url = await _serve(await _bare())
            times: dict[str, list[float]] = {"known": [], "unknown": [], "bare": []}
            async with aiohttp.ClientSession() as http:
                for i in range(requests):
                    for kind, base, email in (
                        ("known", url, known[i % len(known)]),
                        ("unknown", url, f"nobody-{i}@example.com"),
                        ("bare", bare_url, "x@example.com"),
                    ):
                        started = time.perf_counter()
                        async with http.post(
                            f"{base}/api/password-reset", json={"email": email}
                        ) as resp:
                            await resp.read()
                            assert resp.status == 200, resp.status
                        if i >= 20:  # warm-up left out
                            times[kind].append((time.perf_counter() - started) * 1000)
            await runner.cleanup()
            await bare_runner.cleanup()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min)")
    for kind, ms in times.items():
        print(f"{kind:8} {len(ms)} requests  {_summary(ms)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    asyncio.run(main(parser.parse_args().requests))
