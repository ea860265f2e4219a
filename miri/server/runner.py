"""Runs the app: listens, prints where, and shuts down cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from miri.config import Settings
from miri.server import clients
from miri.server.app import create_app
from miri.server.presence import announce
from miri.shop import open_shop

log = logging.getLogger("miri.server")
LISTEN_BACKLOG = 8192


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms rid=%s',
            # The client as every per-client limit sees it (behind a trusted proxy: the forwarded)
            clients.of(request) if isinstance(request, web.Request) else request.remote,
            request.method,
            request.path_qs,
            response.status,
            time * 1000,
            response.headers.get("X-Request-Id", "-"),
        )


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    # A sale's opening connects thousands at once; a short accept queue drops their SYNs and they
    # come back only after the kernel's 1 s / 3 s retries. The kernel caps it at somaxconn.
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


# Young objects collected every 50,000 allocations instead of 700: a request's objects mostly die
# by reference count long before, and each collection costs a walk over everything young.
GC_THRESHOLDS = (50_000, 20, 10)


def settle_heap() -> None:
    """Move everything built so far (modules, the shop, the app) out of the garbage collector's
    sight, and collect young objects less often. Under load a full collection otherwise walks
    those ~100,000 long-lived objects again and again: measured, 3.0 of the server's 4.4 s of
    collection in a 4,000-buyer sale, 1.8 s with them frozen, 0.7 s with the thresholds below
    (benchmarks/README.md, issue 13). They live as long as the process: nothing to lose."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    settings: Settings,
    *,
    access_log: bool = True,
    ready: Callable[[str], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until SIGINT or SIGTERM; ``ready`` gets the URL once the port is open."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_shop(settings, background=True) as shop:
        app = create_app(shop)
        runner = web.AppRunner(
            app,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("miri.access") if access_log else None,
            handle_signals=False,
            shutdown_timeout=10.0,
        )
        await runner.setup()
        sock = _socket(settings.host, settings.port, reuse_port)
        # aiohttp listens again on start with its own backlog (128 unless told): the same here
        site = web.SockSite(runner, sock, backlog=LISTEN_BACKLOG)
        await site.start()
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
        shop.hosts.url = url  # in the heartbeat: where the dashboard and other hosts reach it
        settle_heap()
        if ready:
            ready(url)
        try:
            if reuse_port:  # a worker of `serve --workers N`: the supervisor announces
                await stop.wait()
            else:
                with announce(settings.data_dir, url):  # what `miri dashboard` looks for
                    await stop.wait()
        finally:
            log.info("shutting down")
            await runner.cleanup()
