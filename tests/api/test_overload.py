"""The in-flight bound on a real `miri serve` driven past it: quick 503s, nothing reserved.

The server runs as a subprocess with a small fixed bound (MIRI_MAX_IN_FLIGHT=4), so hundreds of
concurrent buyers on as many connections put it over the bound for real. The refused get 503
UNAVAILABLE with Retry-After; the accepted orders are stored and the stock identity holds to the
unit; health checks are always answered; and a SIGKILL in the middle of an overloaded sale loses
no accepted order.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from miri.infra.processes import free_port
from miri.server import limiter
from miri.server.runner import LISTEN_BACKLOG
from tests.support.goods import post_goods
from tests.support.servers import (
    query,
    register_goods,
    sale_accounts,
    start_server,
    stop_server,
    wait_drained,
)
from tests.support.shop import add_user

BOUND = "4"
BUYERS = 200
STOCK = 500  # more than the orders that get in, so every refusal is the bound's, not SOLD_OUT
ADDRESS = "Seoul 1"
# Production password-hash cost: each login is real work off the event loop, long enough to
# keep the bound full while the probes are sent.
SLOW_LOGIN = {"MIRI_ARGON2_MEMORY_KIB": "19456", "MIRI_ARGON2_TIME_COST": "2"}


def _order(goods_id: int) -> dict[str, Any]:
    return {"goodsId": goods_id, "quantity": 1, "address": ADDRESS}


async def _answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any], Any]:
    return resp.status, CIMultiDict(resp.headers), await resp.json(content_type=None)


def _assert_refusal(status: int, headers: dict[str, Any], body: Any) -> None:
    assert status == 503, (status, body)
    assert body["code"] == -1 and body["error"] == "UNAVAILABLE", body
    assert int(headers["Retry-After"]) >= 1, headers
    assert headers.get("X-Request-Id"), headers


def _shed_counts(text: str) -> dict[str, float]:
    return {
        m[1]: float(m[2])
        for m in re.finditer(r'^miri_requests_shed_total\{path_class="(\w+)"\} (\S+)$', text, re.M)
    }


def _held(data_dir: Path, goods_id: int) -> int:
    [(held,)] = query(
        data_dir,
        "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE goods_id = ?"
        " AND stock_released = 0",
        goods_id,
    )
    return held


@pytest.mark.timeout(180)
async def test_orders_over_the_bound_get_quick_503s_and_reserve_nothing(data_dir: Path) -> None:
    seller, tokens = await sale_accounts(data_dir, BUYERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, env={"MIRI_MAX_IN_FLIGHT": BOUND})
    answers: list[tuple[int, dict[str, Any], Any]] = []
    health: list[int] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            goods_id = await register_goods(http, base, seller, "Overload Tee", STOCK)
            start = asyncio.Event()

            async def buyer(token: str) -> None:
                await start.wait()
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(2):
                    url = f"{base}/api/auth/orders"
                    async with http.post(url, json=_order(goods_id), headers=headers) as resp:
                        answers.append(await _answer(resp))

            async def prober() -> None:
                await start.wait()
                for _ in range(20):
                    async with http.get(f"{base}/api/health") as resp:
                        health.append(resp.status)
                    await asyncio.sleep(0.005)

            tasks = [asyncio.create_task(buyer(t)) for t in tokens]
            tasks.append(asyncio.create_task(prober()))
            await asyncio.sleep(0.2)  # every connection waiting at the start line
            start.set()
            await asyncio.gather(*tasks)

            drained = await wait_drained(base)
            async with http.get(f"{base}/api/goods/{goods_id}/stock") as resp:
                live = (await resp.json())["data"]["stockQuantity"]
            async with http.get(f"{base}/metrics") as resp:
                shed = _shed_counts(await resp.text())
            async with http.get(f"{base}/api/health") as resp:
                overload = (await resp.json())["data"]["overload"]
    finally:
        assert stop_server(proc) == 0

    statuses = [a[0] for a in answers]
    accepted = [a[2]["data"] for a in answers if a[0] == 201]
    refused = [a for a in answers if a[0] == 503]
    assert len(answers) == 2 * BUYERS
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    assert accepted and refused, "the burst should go past a bound of 4 and still sell"
    for status, headers, body in refused:
        _assert_refusal(status, headers, body)
    assert health == [200] * 20, health  # health is never shed
    assert shed.get("orders") == len(refused), (shed, len(refused))
    assert overload["mode"] == "fixed" and overload["limit"] == int(BOUND), overload
    assert overload["shed"]["orders"] == len(refused), overload
    assert drained["bus"]["deadLetters"] == 0

    # Every 201 is stored; nothing else is: the refused reserved no unit.
    items = {i["orderDetailId"] for order in accepted for i in order["items"]}
    stored = {
        r[0] for r in query(data_dir, "SELECT id FROM order_items WHERE goods_id = ?", goods_id)
    }
    assert items == stored, (len(items), len(stored))
    held = _held(data_dir, goods_id)  # the simulated buyer abandons some payments: released
    assert live + held == STOCK, (live, held)  # live stock + stored orders = total, exactly


@pytest.mark.timeout(180)
async def test_over_the_bound_nothing_is_checked_and_admin_and_health_get_in(
    data_dir: Path,
) -> None:
    """While slow logins hold the bound, a request with a bad token or a broken body is refused
    with 503 (no token check, no body read); health and an admin's request are still served."""
    seller, _ = await sale_accounts(data_dir, 1)
    from miri.shop import open_shop
    from tests.support.shop import add_user, make_settings

    async with open_shop(make_settings(data_dir)) as shop:
        _, admin = await add_user(shop, "admin@example.com", admin=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, env={"MIRI_MAX_IN_FLIGHT": BOUND, **SLOW_LOGIN})
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            stop = asyncio.Event()

            async def login_loop() -> None:  # keeps the bound full with real, slow work
                body = {"email": "nobody@example.com", "password": "wrong-password-1!"}
                while not stop.is_set():
                    async with http.post(f"{base}/api/login", json=body) as resp:
                        await resp.read()

            async def until_refused(send) -> tuple[int, dict[str, Any], Any]:
                # A slot may free between two logins; over a few tries one lands on a full bound.
                for _ in range(200):
                    status, headers, body = await send()
                    if status == 503:
                        return status, headers, body
                    await asyncio.sleep(0.002)
                raise AssertionError(f"never refused; last answer {status} {body}")

            async def bad_token():
                async with http.post(
                    f"{base}/api/auth/orders",
                    json=_order(1),
                    headers={"Authorization": "Bearer not-a-token"},
                ) as resp:
                    status, headers, body = await _answer(resp)
                assert status in (401, 503), (status, body)
                return status, headers, body

            async def broken_body():
                async with http.post(
                    f"{base}/api/users",
                    data=b"{not json",
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    status, headers, body = await _answer(resp)
                assert status in (400, 503), (status, body)
                return status, headers, body

            loggers = [asyncio.create_task(login_loop()) for _ in range(8)]
            try:
                while True:  # until the server says the bound is full
                    async with http.get(f"{base}/api/health") as resp:
                        assert resp.status == 200
                        report = (await resp.json())["data"]["overload"]
                    if report["inFlight"]["other"] >= int(BOUND):
                        break
                    await asyncio.sleep(0.01)
                _assert_refusal(*await until_refused(bad_token))
                _assert_refusal(*await until_refused(broken_body))
                for _ in range(5):  # the bound is full, and these still get in
                    async with http.get(f"{base}/api/health") as resp:
                        assert resp.status == 200
                    async with http.get(
                        f"{base}/api/admin/stats", headers={"Authorization": f"Bearer {admin}"}
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                    async with http.get(f"{base}/metrics") as resp:
                        assert resp.status == 200
            finally:
                stop.set()
                await asyncio.gather(*loggers)
            async with http.get(f"{base}/metrics") as resp:
                shed = _shed_counts(await resp.text())
        assert shed.get("other", 0) >= 1 and shed.get("orders", 0) >= 1, shed
        assert shed.get("admin", 0) == 0, shed
    finally:
        assert stop_server(proc) == 0
    assert query(data_dir, "SELECT COUNT(*) FROM order_items") == [(0,)]


@pytest.mark.timeout(240)
async def test_sigkill_during_an_overloaded_sale_loses_no_accepted_order(data_dir: Path) -> None:
    seller, tokens = await sale_accounts(data_dir, BUYERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"MIRI_MAX_IN_FLIGHT": BOUND}
    proc = start_server(data_dir, port, env=env)
    accepted: set[int] = set()
    refused = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        goods_id = await register_goods(http, base, seller, "Crash Tee", STOCK * 4)

        async def buyer(token: str) -> None:
            nonlocal refused
            headers = {"Authorization": f"Bearer {token}"}
            while proc.poll() is None:
                try:
                    url = f"{base}/api/auth/orders"
                    async with http.post(url, json=_order(goods_id), headers=headers) as resp:
                        if resp.status == 201:
                            body = await resp.json()
                            accepted.update(i["orderDetailId"] for i in body["data"]["items"])
                        elif resp.status == 503:
                            refused += 1
                except (TimeoutError, aiohttp.ClientError):
                    return  # the server died under this request: no promise was made

        async def killer() -> None:
            await asyncio.sleep(random.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)

        await asyncio.gather(killer(), *(buyer(t) for t in tokens))
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert accepted and refused, (len(accepted), refused)

    proc = start_server(data_dir, port, env=env)
    try:
        await wait_drained(base)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/goods/{goods_id}/stock") as resp:
                live = (await resp.json())["data"]["stockQuantity"]
    finally:
        assert stop_server(proc) == 0
    stored = {
        r[0] for r in query(data_dir, "SELECT id FROM order_items WHERE goods_id = ?", goods_id)
    }
    assert accepted <= stored, f"accepted orders lost: {sorted(accepted - stored)[:10]}"
    assert live + _held(data_dir, goods_id) == STOCK * 4


async def test_a_lagging_event_loop_brings_the_bound_down_and_sheds(make_client: Any) -> None:
    """Requests can wait for the event loop before any handler runs (thousands of connections
    being parsed): a real stall of the loop, here a blocking call, is seen by the bound's probe.
    The bound, never half used (so its handlers' latency alone would teach it nothing), falls to
    its floor, the requests over it get 503 with Retry-After, and it grows back once the loop is
    on time again."""
    shop, client = await make_client(
        max_in_flight="auto",
        max_in_flight_floor=2,
        max_in_flight_ceiling=64,
        max_in_flight_latency=0.02,
    )
    _, seller = await add_user(shop, "seller@example.com")
    goods_id = await post_goods(client, seller, stockQuantity=10)
    stop = asyncio.Event()

    async def stall() -> None:  # holds the loop as a burst of parsing and refusing would
        while not stop.is_set():
            time.sleep(0.06)
            await asyncio.sleep(0.005)

    async def reads() -> list[tuple[int, dict[str, Any], Any]]:
        async def one() -> tuple[int, dict[str, Any], Any]:
            async with client.get(f"/api/goods/{goods_id}/stock") as resp:
                return await _answer(resp)

        return await asyncio.gather(*(one() for _ in range(8)))

    async def report() -> dict[str, Any]:
        async with client.get("/api/health") as resp:
            assert resp.status == 200
            return (await resp.json())["data"]["overload"]

    staller = asyncio.create_task(stall())
    refused: list[tuple[int, dict[str, Any], Any]] = []
    try:
        for _ in range(300):
            answers = await reads()
            assert {a[0] for a in answers} <= {200, 503}, answers
            refused += [a for a in answers if a[0] == 503]
            bound = await report()
            if bound["limit"] == 2 and refused:
                break
        else:
            raise AssertionError(f"the bound never came down: {bound}, {len(refused)} refused")
    finally:
        stop.set()
        await staller
    assert bound["mode"] == "auto" and bound["shed"]["reads"] == len(refused), bound
    for status, headers, body in refused:
        _assert_refusal(status, headers, body)
    for _ in range(300):  # the loop is on time: the bound, used, grows back
        answers = await reads()
        bound = await report()
        if bound["limit"] > 2:
            break
    assert bound["limit"] > 2, bound


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
async def test_the_server_listens_with_a_long_accept_queue(data_dir: Path) -> None:
    """A sale's opening connects thousands at once. With aiohttp's default accept queue (128) the
    kernel drops the connections it cannot queue while the worker is busy, and they come back
    only after its 1 s / 3 s retries: answers seconds late that no bound can prevent."""
    port = free_port()
    proc = start_server(data_dir, port)
    try:
        listed = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
    finally:
        assert stop_server(proc) == 0
    # State, Recv-Q, Send-Q (for a listening socket: its backlog, capped by net.core.somaxconn)
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listed[0] == "LISTEN" and int(listed[2]) == min(LISTEN_BACKLOG, somaxconn), listed


@pytest.mark.timeout(120)
async def test_clients_that_resend_at_once_open_the_bound(make_client: Any) -> None:
    """Buyers that send again the moment they are refused, whatever Retry-After says: after a few
    seconds of that the bound stops refusing (refusals only made the worker spin) and every
    request is answered by its handler; health says the bound is open."""
    shop, client = await make_client(
        max_in_flight="auto", max_in_flight_floor=2, max_in_flight_ceiling=2
    )
    _, seller = await add_user(shop, "seller@example.com")
    goods_id = await post_goods(client, seller, stockQuantity=10)
    opened = asyncio.Event()
    statuses: list[int] = []

    async def impatient() -> None:
        while not opened.is_set():
            async with client.get(f"/api/goods/{goods_id}/stock") as resp:
                await resp.read()
                statuses.append(resp.status)

    async def watch() -> dict[str, Any]:
        while True:
            async with client.get("/api/health") as resp:
                bound = (await resp.json())["data"]["overload"]
            if bound["open"]:
                opened.set()
                return bound
            await asyncio.sleep(0.05)

    buyers = [asyncio.create_task(impatient()) for _ in range(16)]
    bound = await asyncio.wait_for(watch(), 60)
    await asyncio.gather(*buyers)
    assert 503 in statuses and bound["shed"]["reads"] > 0, bound  # they were refused first
    assert bound["retryAfter"] == limiter.MAX_RETRY, bound  # and told to wait the longest
    answers = await asyncio.gather(*(client.get(f"/api/goods/{goods_id}/stock") for _ in range(16)))
    assert [a.status for a in answers] == [200] * 16  # open: all of them get in
    for a in answers:
        a.release()
