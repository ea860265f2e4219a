"""How many stock-stream watchers one ``miri serve`` worker holds, and how fast a change reaches
them.

    python benchmarks/stock_stream.py --watchers 1000,2500,5000 --changes 20 [--workers 1]

A fresh data dir with one goods and an admin; ``miri serve`` as a subprocess. For each watcher
count: that many connections to ``GET /api/goods/{id}/stock/stream`` (asyncio protocols on uvloop,
which only look for the figure they wait for), then ``--changes`` restocks of one unit through
the API, one at a time. Change-to-client latency is from sending the restock to a watcher reading
the new figure (so it includes the restock itself and the poll interval), over every watcher and
every change. Also: the server's resident memory and CPU per delivered event, the client's CPU.
Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from miri.bench import wrk
from miri.bench.flash_sale import ServerCpu, server_env, subprocess_server
from miri.bench.serving import serve_command
from miri.config import load_settings
from miri.infra.processes import free_port
from miri.shop import open_shop

FIGURE = re.compile(rb'"stockQuantity":(\d+)')


class Watcher(asyncio.Protocol):
    """One stream; notes when the figure it waits for arrives."""

    def __init__(self, request: bytes, board: Board) -> None:
        self._request = request
        self._board = board
        self.last = -1
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        found = FIGURE.findall(data)
        if not found:
            return
        self.last = int(found[-1])
        if not self.connected.done():
            self.connected.set_result(True)
        self._board.seen(self.last)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(False)
        self._board.lost += 1


class Board:
    """The change being waited for, and who has seen it."""

    def __init__(self) -> None:
        self.expected = -1
        self.sent_at = 0.0
        self.arrived = 0
        self.hist = HdrHistogram(1, 60_000_000, 3)
        self.all_seen = asyncio.Event()
        self.wanted = 0
        self.lost = 0

    def start(self, expected: int, wanted: int) -> None:
        self.expected, self.wanted, self.arrived = expected, wanted, 0
        self.all_seen.clear()
        self.sent_at = time.perf_counter()

    def seen(self, figure: int) -> None:
        if figure != self.expected:
            return
        self.arrived += 1
        self.hist.record_value(max(1, int((time.perf_counter() - self.sent_at) * 1e6)))
        if self.arrived >= self.wanted:
            self.all_seen.set()


async def set_up(data_dir: Path) -> tuple[int, str, object]:
    settings = load_settings(data_dir=data_dir, rate_limits=False)
    async with open_shop(settings) as shop:
        [(seller_id, token)] = await shop.users.add_bench_users(1, "watch", role="ADMIN")
        goods = await shop.goods.register(
            seller_id,
            name="Watched goods",
            description="The goods whose stock everyone watches",
            price=1000,
            stock=1000,
            category="ETC",
        )
    return int(goods.goods_id), token, settings


async def one_count(
    n: int, port: int, goods_id: int, token: str, changes: int, server: ServerCpu, proc_pid: int
) -> dict:
    loop = asyncio.get_running_loop()
    board = Board()
    request = (
        f"GET /api/goods/{goods_id}/stock/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    watchers: list[Watcher] = []
    opened_at = time.perf_counter()
    for start in range(0, n, 200):  # in bursts: the listen backlog is finite
        batch = [Watcher(request, board) for _ in range(min(200, n - start))]
        await asyncio.gather(
            *(loop.create_connection(lambda w=w: w, "127.0.0.1", port) for w in batch)
        )
        watchers += batch
    held = sum(await asyncio.gather(*(w.connected for w in watchers)))
    open_s = time.perf_counter() - opened_at
    rss = sum(
        p.memory_info().rss
        for p in [psutil.Process(proc_pid), *psutil.Process(proc_pid).children(recursive=True)]
    )
    missed = 0
    cpu_before, client_before = server.seconds(), time.process_time()
    async with aiohttp.ClientSession() as http:
        stock = max(w.last for w in watchers)
        for _ in range(changes):
            board.start(stock + 1, held)
            async with http.post(
                f"http://127.0.0.1:{port}/api/auth/goods/{goods_id}/restock",
                json={"quantity": 1},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                stock = (await resp.json())["data"]["stockQuantity"]
            try:
                await asyncio.wait_for(board.all_seen.wait(), 10)
            except TimeoutError:
                missed += held - board.arrived
            await asyncio.sleep(0.2)
    cpu = server.seconds() - cpu_before
    client_cpu = time.process_time() - client_before
    for w in watchers:
        w.transport.close()
    await asyncio.sleep(0.5)
    h = board.hist
    return {
        "watchers": n,
        "held": held,
        "open_s": round(open_s, 2),
        "changes": changes,
        "deliveries": h.get_total_count(),
        "missed": missed,
        "p50_ms": h.get_value_at_percentile(50) / 1000,
        "p99_ms": h.get_value_at_percentile(99) / 1000,
        "max_ms": h.get_max_value() / 1000,
        "server_rss_mb": round(rss / 2**20, 1),
        "server_cpu_us_per_event": round(cpu / max(1, h.get_total_count()) * 1e6, 1),
        "client_cpu_s": round(client_cpu, 2),
    }


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="1000,2500,5000")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.watchers.split(",")]
    wrk.raise_open_files(max(counts))
    data_dir = Path(tempfile.mkdtemp(prefix="miri-watch-"))
    rows = []
    try:
        goods_id, token, settings = await set_up(data_dir)
        port = free_port()
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        async with subprocess_server(
            serve_command(data_dir, port, *workers),
            server_env(settings, settings.stock_strategy),
            data_dir / "server.log",
        ) as proc:
            server = ServerCpu(proc)
            for n in counts:
                rows.append(
                    await one_count(n, port, goods_id, token, args.changes, server, proc.pid)
                )
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    load = [round(x, 2) for x in os.getloadavg()]
    table = Table(
        title=f"stock stream, {args.workers} worker(s), {args.changes} changes each (load {load})",
        header_style="bold cyan",
        title_justify="left",
    )
    for col in (
        "watchers",
        "held",
        "p50 ms",
        "p99 ms",
        "max ms",
        "missed",
        "server RSS MB",
        "server µs/event",
        "client CPU s",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['watchers']:,}",
            f"{r['held']:,}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            f"{r['missed']:,}",
            f"{r['server_rss_mb']:.0f}",
            f"{r['server_cpu_us_per_event']:.1f}",
            f"{r['client_cpu_s']:.2f}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": load, "argv": sys.argv}, indent=2))


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
