"""``/metrics`` under ``miri serve --workers 2``: whichever worker answers a scrape, the counters
are the sum of both workers and never go backwards."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from miri.infra.processes import free_port
from tests.support.servers import register_goods, sale_accounts, start_server, stop_server
from tests.support.shop import bearer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


@pytest.mark.timeout(180)
async def test_metrics_add_up_both_workers_and_never_go_backwards(data_dir):
    seller, buyers = await sale_accounts(data_dir, 20)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, "--workers", "2", env={"MIRI_PAYMENT_ABANDON_RATE": "0"})
    try:
        import psutil

        workers = [
            c.pid for c in psutil.Process(proc.pid).children() if "serve" in " ".join(c.cmdline())
        ]
        assert len(workers) == 2
        # A fresh connection per request, so the kernel spreads them over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            goods_id = await register_goods(http, base, seller, "Sneakers", 100)

            async def buy(n: int) -> int:
                async with http.post(
                    f"{base}/api/auth/orders",
                    json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
                    headers=bearer(buyers[n % len(buyers)]),
                ) as r:
                    return r.status

            statuses = await asyncio.gather(*(buy(n) for n in range(40)))
            assert statuses.count(201) == 40

            scrapes = []
            for _ in range(16):
                async with http.get(f"{base}/metrics") as r:
                    assert r.status == 200
                    scrapes.append(_samples(await r.text()))
        files = list((data_dir / "metrics" / str(proc.pid)).glob("counter_*.db"))
        pids = {int(f.stem.split("_")[1]) for f in files}
        assert pids == set(workers), "both workers counted something"
    finally:
        assert stop_server(proc, timeout=60) == 0
    assert not (data_dir / "metrics" / str(proc.pid)).exists()  # removed with the server

    placed = [_total(s, "miri_orders_placed_total") for s in scrapes]
    assert placed == [40.0] * len(scrapes), placed  # one worker alone would show its share
    order_requests = [
        sum(
            v
            for (n, labels), v in s.items()
            if n == "miri_http_requests_total"
            and ("method", "POST") in labels
            and ("status", "201") in labels
            and any(k == "route" and "orders" in val for k, val in labels)
        )
        for s in scrapes
    ]
    assert order_requests == [40.0] * len(scrapes), order_requests
    every = [_total(s, "miri_http_requests_total") for s in scrapes]
    assert every == sorted(every), every  # never backwards, whichever worker answered
    assert every[-1] >= 40 + 1 + len(scrapes) - 1  # orders, the goods, the earlier scrapes
    latency = [_total(s, "miri_http_request_seconds_count") for s in scrapes]
    assert latency == sorted(latency) and latency[-1] == every[-1]
