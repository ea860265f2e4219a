"""The ceiling for ``--compare``: a bare aiohttp JSON endpoint, nothing behind it.

``python -m miri.bench.bare --port N`` serves ``POST /order`` (reads the JSON body, answers 201
with an order-shaped envelope) and ``GET /health``, without access logs, until SIGINT/SIGTERM.
The flash-sale client hits it exactly as it hits ``/api/auth/orders``, so the shop's figures can be
given as a fraction of what aiohttp itself manages on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
from aiohttp import web

_COUNTER = {"n": 0}


async def order(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    _COUNTER["n"] += 1
    n = _COUNTER["n"]
    quantity = int(body.get("quantity", 1)) if isinstance(body, dict) else 1
    payload = {
        "code": 1,
        "msg": "order placed; payment follows",
        "data": {
            "orderId": n,
            "items": [
                {
                    "orderDetailId": n,
                    "goodsId": 1,
                    "quantity": quantity,
                    "unitPrice": 1000,
                    "status": "PAYMENT_PENDING",
                }
            ],
            "totalPrice": 1000 * quantity,
        },
    }
    return web.Response(body=orjson.dumps(payload), status=201, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"code": 1, "msg": "ok", "data": {"status": "ok"}})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/order", order)
    app.router.add_get("/health", health)
    return app


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=8192)  # as miri serve's (server/runner.py)
    await site.start()
    print(f"bare endpoint listening on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
