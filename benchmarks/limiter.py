"""What the in-flight bound costs per request, measured on its own (CPU time, one process).

Three paths through ``miri.server.limiter.middleware`` around a handler that returns at once:
admitted (count in, time the handler, count out, feed the adaptive bound), refused (the 503 with
Retry-After and a request id), and exempt (health). Each is compared with calling the handler
without the middleware; the difference is the bound's own cost.

    python benchmarks/limiter.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from miri.config import load_settings
from miri.server import limiter


async def _ok(_request: web.Request) -> web.StreamResponse:
    return _RESPONSE


_RESPONSE = web.Response(body=b"{}")


class _Route:
    def __init__(self) -> None:
        self.resource = object()


async def _per_call(fn, request: web.Request, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        await fn(request)
    return (time.process_time() - started) / n * 1e9


async def main(n: int) -> None:
    settings = load_settings(data_dir=tempfile.mkdtemp(), env={}, max_in_flight="auto")
    config = limiter.parse(settings)
    assert config is not None
    bound = limiter.InFlightBound(config)
    middleware = limiter.middleware(bound)

    def with_bound(request: web.Request):
        return middleware(request, _ok)

    order = make_mocked_request("POST", "/api/auth/orders")
    health = make_mocked_request("GET", "/api/health")
    for request in (order, health):
        info = web.UrlMappingMatchInfo({}, _Route())  # type: ignore[arg-type]
        request._match_info = info  # the router's answer, as aiohttp sets it before middlewares
    bare = await _per_call(_ok, order, n)
    admitted = await _per_call(with_bound, order, n)
    exempt = await _per_call(with_bound, health, n)
    bound.limit = bound.admin_limit = 0  # everything over the bound from here
    refused = await _per_call(with_bound, order, n)
    print(f"{n:,} calls each; CPU ns per request (process time)")
    print(f"  handler alone                 {bare:8.0f}")
    print(f"  admitted through the bound    {admitted:8.0f}  (+{admitted - bare:.0f})")
    print(f"  health (exempt)               {exempt:8.0f}  (+{exempt - bare:.0f})")
    print(f"  refused: 503 + Retry-After    {refused:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().requests))
