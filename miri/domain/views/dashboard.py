"""The dashboard's figures: what the operator's live view reads of the orders module's tables, and
of the heartbeat table (every host serving the shop).

Read-only queries for ``miri dashboard`` alone (its list of order items is ``views.orders``'s);
each takes the shop's ``Database`` and returns plain figures in the dashboard's own terms.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from miri.infra.database import Database, marks
from miri.infra.hosts import LIVE


@dataclass(frozen=True)
class Sales:
    """What one goods has sold: units still taken from its stock, and by how many buyers."""

    sold: int
    buyers: int


async def goods_sales(db: Database, goods_ids: Sequence[int]) -> dict[int, Sales]:
    """Units sold and buyers per goods, counting only items whose stock is still taken (the
    ``active_order_items`` view: canceled, aborted and returned items are not sales)."""
    if not goods_ids:
        return {}
    in_goods = marks(len(goods_ids))

    def read(conn: sqlite3.Connection) -> dict[int, Sales]:
        rows = conn.execute(
            "SELECT goods_id, SUM(quantity), COUNT(DISTINCT user_id) FROM active_order_items"
            f" WHERE goods_id IN ({in_goods}) GROUP BY goods_id",
            tuple(goods_ids),
        ).fetchall()
        return {gid: Sales(int(sold), int(buyers)) for gid, sold, buyers in rows}

    return await db.read(read)


async def orders_placed(
    db: Database, *, after_id: int | None = None, since: float = 0.0
) -> list[tuple[int, float]]:
    """(order id, placed at) of orders after ``after_id`` or, without one, placed since ``since``:
    what an orders-per-second chart reads, a few new rows per refresh."""

    def read(conn: sqlite3.Connection) -> list[tuple[int, float]]:
        if after_id is None:
            query, args = "SELECT id, created_at FROM orders WHERE created_at >= ?", (since,)
        else:
            query, args = "SELECT id, created_at FROM orders WHERE id > ?", (after_id,)
        return [(int(i), float(at)) for i, at in conn.execute(query, args).fetchall()]

    return await db.read(read)


async def last_order_id(db: Database) -> int:
    """The newest order's id (0 for none): where an incremental read starts."""
    return await db.read(
        lambda c: int(c.execute("SELECT COALESCE(MAX(id), 0) FROM orders").fetchone()[0])
    )


# -- the hosts serving the shop ----------------------------------------------------------------------
STOPPED_SHOWN = 3600.0  # seconds a host that said it stopped stays listed
HOSTS_SHOWN = 50


@dataclass(frozen=True)
class ServingHost:
    """One ``miri serve`` process of the shop, on any machine, as its heartbeat row tells.

    ``state``: "alive" (beat within ``LIVE`` seconds), "gone" (stopped beating without saying so:
    killed, crashed, its machine lost) or "stopped" (said so on a clean stop)."""

    host_id: str
    hostname: str
    pid: int
    url: str | None
    version: str
    leader: bool  # runs the scheduled jobs (only ever said of an alive host)
    started_at: float
    seen_at: float
    state: str


def _state(seen_at: float, stopped_at: float | None, now: float) -> str:
    if stopped_at is not None:
        return "stopped"
    return "alive" if seen_at >= now - LIVE else "gone"


async def shop_hosts(db: Database, now: float) -> list[ServingHost]:
    """Every host of the shop from the heartbeat table, whichever host asks: the alive ones (the
    leader first), then the gone, then those stopped within ``STOPPED_SHOWN`` seconds."""

    def read(conn: sqlite3.Connection) -> list[ServingHost]:
        rows = conn.execute(
            "SELECT host_id, hostname, pid, url, version, leader, started_at, seen_at, stopped_at"
            " FROM hosts WHERE stopped_at IS NULL OR stopped_at >= ?"
            " ORDER BY seen_at DESC LIMIT ?",
            (now - STOPPED_SHOWN, HOSTS_SHOWN),
        ).fetchall()
        hosts = []
        for host_id, hostname, pid, url, version, leader, started, seen, stopped in rows:
            state = _state(float(seen), stopped, now)
            hosts.append(
                ServingHost(
                    host_id=host_id,
                    hostname=hostname,
                    pid=int(pid),
                    url=url,
                    version=version,
                    leader=bool(leader) and state == "alive",
                    started_at=float(started),
                    seen_at=float(seen),
                    state=state,
                )
            )
        order = {"alive": 0, "gone": 1, "stopped": 2}
        return sorted(hosts, key=lambda h: (order[h.state], not h.leader, h.host_id))

    return await db.read(read)
