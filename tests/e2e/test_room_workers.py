"""One waiting room under ``miri serve --workers 2``: the two workers share one line.

Each request here goes over a connection whose worker is known (looked up from the kernel's
socket table), so the test joins, polls, streams and orders through a chosen worker rather than
hoping the kernel spreads the connections. Admission runs only in the worker that leads the
shop's jobs; a pass admitted there works on either worker, once; nobody is admitted beyond the
stock; the sell-out reaches every ticket on both workers; and a restart of ``miri serve`` in the
middle of the sale loses no ticket and no pass.
"""

from __future__ import annotations

import asyncio
import glob
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict

from miri.infra.processes import free_port
from miri.shop import open_shop
from tests.support.goods import post_goods
from tests.support.servers import query, start_server, stop_server
from tests.support.shop import add_user, bearer, make_settings

STOCK = 6
EARLY, LATE = 8, 8  # buyers joining before and after the opening
ADDRESS = "Seoul 1"


class Workers:
    """The worker processes of one ``miri serve --workers 2``, and a connection to each."""

    def __init__(self, proc: Any, base: str) -> None:
        self.base = base
        self.pids = [
            c.pid for c in psutil.Process(proc.pid).children() if "serve" in " ".join(c.cmdline())
        ]
        assert len(self.pids) == 2
        self.sessions: dict[int, aiohttp.ClientSession] = {}

    def serving(self, client: tuple[str, int]) -> int:
        """The worker whose socket is the other end of the client's connection ``client``."""
        for pid in self.pids:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.raddr and (conn.raddr.ip, conn.raddr.port) == client[:2]:
                    return pid
        raise AssertionError(f"no worker holds the connection from {client}")

    async def session_on(self, pid: int) -> aiohttp.ClientSession:
        """A session of one keep-alive connection from a port of its own, opened again until the
        kernel gives it to worker ``pid``."""
        for _ in range(60):
            local = ("127.0.0.1", free_port())
            connector = aiohttp.TCPConnector(limit=1, local_addr=local)
            session = aiohttp.ClientSession(connector=connector)
            session.local = local  # type: ignore[attr-defined]
            async with session.get(f"{self.base}/api/health") as resp:
                await resp.read()
            if self.serving(local) == pid:
                return session
            await session.close()
        raise AssertionError(f"no connection reached worker {pid}")

    async def open(self) -> None:
        for pid in self.pids:
            self.sessions[pid] = await self.session_on(pid)

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()

    async def call(
        self, pid: int, method: str, path: str, token: str, **kw: Any
    ) -> tuple[int, dict[str, Any]]:
        """One request through worker ``pid``: its status and envelope (checked to be served
        there: a connection the server closed would be opened again, to either worker)."""
        headers = {**bearer(token), **kw.pop("headers", {})}
        session = self.sessions[pid]
        async with session.request(method, self.base + path, headers=headers, **kw) as resp:
            body = await resp.json()
        assert self.serving(session.local) == pid, "the request went to the other worker"
        return resp.status, body

    def other(self, pid: int) -> int:
        return next(p for p in self.pids if p != pid)


async def _start(data_dir: Path, port: int) -> tuple[Any, Workers]:
    proc = start_server(data_dir, port, "--workers", "2", env={"MIRI_PAYMENT_ABANDON_RATE": "0"})
    try:
        workers = Workers(proc, f"http://127.0.0.1:{port}")
        await workers.open()
    except BaseException:
        stop_server(proc, timeout=60)
        raise
    return proc, workers


async def _first_event(workers: Workers, pid: int, token: str, gid: int) -> dict[str, Any]:
    """The first ticket the stream of worker ``pid`` sends."""
    session = await workers.session_on(pid)
    try:
        url = f"{workers.base}/api/auth/goods/{gid}/queue/stream"
        async with session.get(url, headers=bearer(token)) as resp:
            assert resp.status == 200
            assert workers.serving(session.local) == pid
            async for line in resp.content:
                if line.startswith(b"data: "):
                    return orjson.loads(line[6:])
    finally:
        await session.close()
    raise AssertionError("the stream ended without a ticket")


def _redis_left(data_dir: Path) -> list[int]:
    """Embedded Redis servers of ``data_dir`` still running."""
    return [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if "redis-server" in " ".join(proc.info["cmdline"] or [])
        and str(data_dir) in " ".join(proc.info["cmdline"] or [])
    ]


def _admissions(data_dir: Path) -> dict[int, float]:
    """The admissions each process of the running server made: ``miri_queue_admitted`` in its
    own multiprocess metrics file (the supervisor removes them when it stops)."""
    counted: dict[int, float] = {}
    for path in glob.glob(str(data_dir / "metrics" / "*" / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(path):
            if json.loads(key)[0] == "miri_queue_admitted" and value:
                counted[pid] = counted.get(pid, 0.0) + value
    return counted


def _admitters(data_dir: Path, workers: Workers) -> dict[int, float]:
    """The admissions per worker, checked to come from one: the one leading the jobs."""
    counted = _admissions(data_dir)
    admitting = set(counted)
    leading = query(data_dir, "SELECT pid FROM hosts WHERE leader = 1 AND stopped_at IS NULL")
    assert admitting <= set(workers.pids) and len(admitting) == 1, counted
    assert admitting == {pid for (pid,) in leading}
    return counted


async def _order_once(
    workers: Workers, shown_on: int, token: str, gid: int, pass_token: str
) -> None:
    """Order with ``pass_token`` through the worker that did not show it (201), then again with
    the same pass through the one that did (403: used)."""
    body = {"goodsId": gid, "quantity": 1, "address": ADDRESS}
    headers = {"X-Queue-Pass": pass_token}
    for pid, want in ((workers.other(shown_on), 201), (shown_on, 403)):
        status, answer = await workers.call(
            pid, "POST", "/api/auth/orders", token, json=body, headers=headers
        )
        assert status == want, answer
    assert answer["error"] == "QUEUE_PASS_REQUIRED" and answer["data"]["reason"] == "USED"


@pytest.mark.timeout(240)
async def test_two_workers_share_one_line_and_a_restart_loses_nothing(data_dir: Path) -> None:
    async with open_shop(make_settings(data_dir)) as shop:
        _, seller = await add_user(shop, "seller@example.com")
        _, admin = await add_user(shop, "admin@example.com", admin=True)
        buyers = [token for _, token in await shop.users.add_bench_users(EARLY + LATE, "e2e")]
    port = free_port()
    proc, workers = await _start(data_dir, port)
    a = workers.pids[0]
    try:
        opens = datetime.now(UTC) + timedelta(seconds=4)
        gid = await post_goods(
            workers.sessions[a],
            seller,
            base=workers.base,
            goodsName="Sneakers",
            stockQuantity=STOCK,
            reservationStartTime=opens.isoformat(),
            waitingRoom={"enabled": True, "admitPerSecond": 2, "passSeconds": 600},
        )
        queue = f"/api/auth/goods/{gid}/queue"

        # Before the opening: every other buyer joins through the other worker; joining again
        # on the other worker answers the same ticket.
        tickets: dict[str, str] = {}
        for i, token in enumerate(buyers[:EARLY]):
            status, body = await workers.call(workers.pids[i % 2], "POST", queue, token)
            assert status == 201, body
            tickets[token] = body["data"]["ticketId"]
            status, again = await workers.call(workers.pids[(i + 1) % 2], "POST", queue, token)
            assert status == 200 and again["data"]["ticketId"] == tickets[token]
            assert again["data"]["position"] is None  # no place until the opening's shuffle
        assert datetime.now(UTC) < opens, "the early buyers joined after the opening"
        await asyncio.sleep((opens - datetime.now(UTC)).total_seconds() + 0.5)
        for i, token in enumerate(buyers[EARLY:]):
            status, body = await workers.call(workers.pids[i % 2], "POST", queue, token)
            assert status == 201, body
            tickets[token] = body["data"]["ticketId"]

        # Admission at 2 a second until every unit is promised to a pass; then the line stands
        # still. The buyers poll through alternating workers meanwhile.
        held: dict[str, str] = {}  # buyer -> the pass of an admitted ticket
        for _ in range(200):
            for i, token in enumerate(buyers):
                data = (await workers.call(workers.pids[i % 2], "GET", queue, token))[1]["data"]
                if data["state"] == "ADMITTED":
                    held[token] = data["passToken"]
            assert len(held) <= STOCK  # never more admitted than the units
            if len(held) == STOCK:
                break
            await asyncio.sleep(0.3)
        assert len(held) == STOCK
        await asyncio.sleep(0.6)  # past each worker's snapshot of the room's figures (0.25 s)

        # One line: both workers tell each waiting buyer the same place, every place once.
        places: dict[str, int] = {}
        for token in buyers:
            if token in held:
                continue
            seen = set()
            for pid in workers.pids:
                data = (await workers.call(pid, "GET", queue, token))[1]["data"]
                assert data["state"] == "WAITING"
                seen.add(data["position"])
            assert len(seen) == 1, seen
            places[token] = seen.pop()
        assert sorted(places.values()) == list(range(1, len(buyers) - STOCK + 1))
        for pid in workers.pids:
            status, body = await workers.call(pid, "GET", f"/api/admin/goods/{gid}/queue", admin)
            figures = body["data"]
            assert (figures["waiting"], figures["admitted"]) == (len(buyers) - STOCK, STOCK)
        # Admission ran in one process: the worker leading the shop's jobs.
        assert sum(_admitters(data_dir, workers).values()) == STOCK

        # Half the admitted buyers order now: each pass read through one worker is used on the
        # other, and the same pass is refused afterwards on the first.
        ordered: set[str] = set()
        for i, (token, pass_token) in enumerate(list(held.items())[: STOCK // 2]):
            shown_on = workers.pids[i % 2]
            await _order_once(workers, shown_on, token, gid, pass_token)
            ordered.add(token)
            del held[token]

        # A restart of `miri serve` in the middle of the sale: new worker processes, same line.
        assert stop_server(proc, timeout=60) == 0
        assert _redis_left(data_dir) == []  # stopped with the server: its AOF has the line
        await workers.close()
        proc, workers = await _start(data_dir, port)
        for token, pass_token in held.items():
            for pid in workers.pids:
                data = (await workers.call(pid, "GET", queue, token))[1]["data"]
                assert (data["state"], data["passToken"]) == ("ADMITTED", pass_token)
        for token, place in places.items():
            for pid in workers.pids:
                data = (await workers.call(pid, "GET", queue, token))[1]["data"]
                assert (data["state"], data["position"]) == ("WAITING", place)
        for token in ordered:
            data = (await workers.call(workers.pids[0], "GET", queue, token))[1]["data"]
            assert data["state"] == "USED"

        # Until every ticket is settled: whoever is admitted orders through the worker that did
        # not show the pass, and the same pass is refused on the other one afterwards.
        settled: dict[str, str] = {}
        rounds = 0
        while len(settled) < len(buyers):
            rounds += 1
            assert rounds < 400, f"the sale did not settle: {settled}"
            for i, token in enumerate(buyers):
                if token in settled:
                    continue
                shown_on = workers.pids[(i + rounds) % 2]
                data = (await workers.call(shown_on, "GET", queue, token))[1]["data"]
                assert data["ticketId"] == tickets[token]
                if data["state"] == "ADMITTED":
                    await _order_once(workers, shown_on, token, gid, data["passToken"])
                    ordered.add(token)
                elif data["state"] in ("USED", "SOLD_OUT", "EXPIRED"):
                    settled[token] = data["state"]
            assert len(ordered) <= STOCK
            await asyncio.sleep(0.2)

        # Nobody admitted beyond the stock; every other ticket told SOLD_OUT, by both workers,
        # on the poll and on the stream.
        assert len(ordered) == STOCK
        assert sorted(settled.values()) == ["SOLD_OUT"] * (len(buyers) - STOCK) + ["USED"] * STOCK
        for token in buyers:
            if token in ordered:
                continue
            for pid in workers.pids:
                data = (await workers.call(pid, "GET", queue, token))[1]["data"]
                assert data["state"] == "SOLD_OUT"
        late_one = next(t for t in reversed(buyers) if t not in ordered)
        for pid in workers.pids:
            assert (await _first_event(workers, pid, late_one, gid))["state"] == "SOLD_OUT"

        for pid in workers.pids:
            status, body = await workers.call(pid, "GET", f"/api/admin/goods/{gid}/queue", admin)
            assert status == 200, body
            figures = body["data"]
            assert figures["admittedTotal"] == figures["used"] == STOCK
            assert (figures["waiting"], figures["admitted"], figures["expired"]) == (0, 0, 0)
            assert figures["soldOut"] == len(buyers) - STOCK and figures["saleSoldOut"]
        [(in_orders,)] = query(data_dir, "SELECT COUNT(*) FROM order_items WHERE goods_id = ?", gid)
        assert in_orders == STOCK

        # Every unit was promised before the restart: nobody was admitted after it.
        assert _admissions(data_dir) == {}
    finally:
        await workers.close()
        assert stop_server(proc, timeout=60) == 0
        assert _redis_left(data_dir) == []  # the workers' shared Redis stopped with them
