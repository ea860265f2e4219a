"""The dashboard shows the whole shop: every host serving it, from the heartbeat table.

Hosts on other machines share nothing on disk with the dashboard's data dir: only the shop's
database knows them. The rows here are what those hosts' heartbeats write.
"""

from __future__ import annotations

import time

import pytest

from miri.domain.views import dashboard as views
from miri.infra.hosts import LIVE, Hosts
from miri.tui.panels import ServerPanel
from miri.tui.tables import HostsTable, JobsTable
from tests.support.tui import cells, column, dashboard, screen_text

pytestmark = pytest.mark.both_engines


async def _host(shop, host_id: str, *, seen_ago: float, leader: bool = False, **extra) -> None:
    """A heartbeat row as a host on another machine writes it, last seen ``seen_ago`` s ago."""
    hostname, pid, _ = host_id.split(":")
    seen = time.time() - seen_ago
    row = {
        "host_id": host_id,
        "hostname": hostname,
        "pid": int(pid),
        "url": f"http://{hostname}:8080",
        "version": "0.1.0",
        "leader": int(leader),
        "started_at": seen - 600,
        "seen_at": seen,
        "stopped_at": None,
        **extra,
    }
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    await shop.db.write(
        lambda c: c.execute(f"INSERT INTO hosts ({names}) VALUES ({marks})", tuple(row.values()))
    )


async def test_the_hosts_of_the_shop_from_any_host(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        shop = app.shop
        assert shop is not None, app.shop_error
        now = time.time()
        await _host(shop, "shop-b:4242:bbbbbb", seen_ago=2)
        await _host(shop, "shop-a:101:aaaaaa", seen_ago=1, leader=True)
        await _host(shop, "shop-c:77:cccccc", seen_ago=LIVE + 30, leader=True)  # killed
        await _host(shop, "shop-d:9:dddddd", seen_ago=60, stopped_at=now - 60)
        await _host(shop, "shop-e:8:eeeeee", seen_ago=7200, stopped_at=now - 7200)
        await app.refresh_all()
        await pilot.pause()

        hosts = app.query_one(HostsTable)
        # Alive first (the one running the jobs on top), then gone, then recently stopped.
        assert column(hosts, "hostname") == ["shop-a", "shop-b", "shop-c", "shop-d"]
        assert column(hosts, "state") == ["● alive", "● alive", "● gone", "● stopped"]
        assert column(hosts, "leader") == ["jobs", "-", "-", "-"]  # a gone host leads nothing
        a = cells(hosts, "shop-a:101:aaaaaa")
        assert a[2] == "101" and a[5:] == ["http://shop-a:8080", "shop-a:101:aaaaaa"]
        seen = cells(hosts, "shop-c:77:cccccc")[4]  # a slow machine may take a second or two
        assert seen.endswith("s ago") and 0 <= int(seen[:-5]) - (LIVE + 30) < 10, seen
        assert hosts.border_subtitle == "2 alive · 1 gone"
        text = screen_text(app)
        assert "Hosts" in text and "shop-a" in text and "gone" in text
        # No server on this data dir, but the shop is served elsewhere: both panels know it.
        assert app.servers == []
        assert "2 hosts serve the shop: see Hosts" in text
        assert all(d[0].isdigit() for d in column(app.query_one(JobsTable), "in"))
        assert app.query_one(ServerPanel).snapshot is app.snapshot


async def test_a_host_that_stops_says_so_and_the_list_follows(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        shop = app.shop
        assert shop is not None, app.shop_error
        other = Hosts(shop.db, "elsewhere:1:abcdef")
        await other.beat()
        await app.refresh_all()
        hosts = app.query_one(HostsTable)
        assert column(hosts, "state") == ["● alive"] and hosts.border_subtitle == "1 alive"
        await other.stopped()
        await app.refresh_all()
        assert column(hosts, "state") == ["● stopped"]
        assert hosts.border_subtitle == "0 alive"
        assert set(column(app.query_one(JobsTable), "in")) == {"no server"}


async def test_the_read_orders_hosts_and_drops_old_stopped_ones(shop):
    now = time.time()
    await _host(shop, "z:1:111111", seen_ago=1)
    await _host(shop, "y:2:222222", seen_ago=100)
    await _host(shop, "x:3:333333", seen_ago=1, stopped_at=now - 1)
    await _host(shop, "w:4:444444", seen_ago=1, leader=True)
    await _host(shop, "v:5:555555", seen_ago=4000, stopped_at=now - views.STOPPED_SHOWN - 1)
    found = await views.shop_hosts(shop.db, time.time())
    assert [(h.hostname, h.state, h.leader) for h in found] == [
        ("w", "alive", True),
        ("z", "alive", False),
        ("y", "gone", False),
        ("x", "stopped", False),
    ]
