"""The processes serving one shop, known to each other through a heartbeat table.

Heartbeats are wall-clock times (the hosts' clocks are kept in step by NTP), never the shop's
injectable clock: whether a process is alive is not a matter of shop time.

Every ``miri serve`` process (a worker on one machine, or one of several hosts on a shared
PostgreSQL) has a row in ``hosts`` that it refreshes every ``BEAT`` seconds. The dashboard and
``/api/health`` list the live ones from it, whichever host they ask; the leader finds a host
that stopped beating and finishes what it left behind (its reservations with no order).

``shop_meta`` keeps shop-wide facts; here, a fingerprint of the keys, so a host started with
another JWT or data key than the rest is refused before it signs a token no other host accepts
or encrypts data no other host can read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from miri import __version__
from miri.infra.database import Database
from miri.infra.processes import pid_alive

log = logging.getLogger(__name__)
BEAT = 5.0  # seconds between heartbeats
LIVE = 15.0  # a host unseen for this long is not listed as serving
GONE = 60.0  # a host unseen for this long is taken for dead: its leftovers are finished


def new_host_id() -> str:
    """``hostname:pid:random``: unique per process start, and readable in an operator's list."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class HostRow:
    host_id: str
    hostname: str
    pid: int
    url: str | None
    version: str
    leader: bool
    started_at: float
    seen_at: float
    stopped_at: float | None


def _host(row: Any) -> HostRow:
    return HostRow(
        host_id=row["host_id"],
        hostname=row["hostname"],
        pid=row["pid"],
        url=row["url"],
        version=row["version"],
        leader=bool(row["leader"]),
        started_at=row["started_at"],
        seen_at=row["seen_at"],
        stopped_at=row["stopped_at"],
    )


class Hosts:
    """This process's heartbeat, and what it knows of the others."""

    def __init__(self, db: Database, host_id: str | None = None) -> None:
        self._db = db
        self.host_id = host_id or new_host_id()
        self.url: str | None = None
        self.leader = False
        self._soon: set[asyncio.Task] = set()

    async def beat(self) -> None:
        now = time.time()
        args = (
            self.host_id,
            socket.gethostname(),
            os.getpid(),
            self.url,
            __version__,
            int(self.leader),
            now,
            now,
        )
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO hosts (host_id, hostname, pid, url, version, leader, started_at,"
                " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET"
                " url = excluded.url, leader = excluded.leader, seen_at = excluded.seen_at",
                args,
            )
        )

    def beat_soon(self) -> None:
        """Beat now, not at the next tick: the leader flag changed and readers should see it."""
        task = asyncio.get_running_loop().create_task(self._beat_quietly())
        self._soon.add(task)
        task.add_done_callback(self._soon.discard)

    async def _beat_quietly(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # noqa: BLE001 - the regular beat writes it soon enough
            log.warning("heartbeat not written: %s", exc)

    async def stopped(self) -> None:
        now = time.time()
        await self._db.write(
            lambda c: c.execute(
                "UPDATE hosts SET stopped_at = ?, seen_at = ?, leader = 0 WHERE host_id = ?",
                (now, now, self.host_id),
            )
        )

    async def live(self, within: float = LIVE) -> list[HostRow]:
        """Hosts that beat within ``within`` seconds and did not say they stopped."""
        since = time.time() - within
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM hosts WHERE seen_at >= ? AND stopped_at IS NULL ORDER BY host_id",
                (since,),
            ).fetchall()
        )
        return [_host(r) for r in rows]

    async def others(self, within: float = LIVE) -> list[HostRow]:
        """Live hosts other than this one; a row of this machine whose process is gone (killed
        before it could say it stopped) is not counted, however recent its last beat."""
        here = socket.gethostname()
        return [
            h
            for h in await self.live(within)
            if h.host_id != self.host_id
            and (h.hostname != here or pid_alive(h.pid, started_before=h.started_at))
        ]

    async def gone(self, after: float | None = None) -> list[HostRow]:
        """Hosts taken for dead that did not say they stopped: unseen for ``after`` seconds, or
        of this machine with their process gone (known at once, however recent the beat)."""
        since = time.time() - (GONE if after is None else after)
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM hosts WHERE stopped_at IS NULL AND host_id != ? ORDER BY host_id",
                (self.host_id,),
            ).fetchall()
        )
        here = socket.gethostname()
        return [
            h
            for h in map(_host, rows)
            if h.seen_at < since
            or (h.hostname == here and not pid_alive(h.pid, started_before=h.started_at))
        ]

    async def run(self) -> None:
        """Beat every ``BEAT`` seconds until cancelled; a failed beat is tried again next time."""
        while True:
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal
                log.warning("heartbeat not written: %s", exc)
            await asyncio.sleep(BEAT)

    async def record_run(
        self, name: str, started_at: float, finished_at: float, outcome: str, detail: str
    ) -> None:
        """A scheduled job ran here (see ``infra/scheduler``)."""
        args = (name, self.host_id, started_at, finished_at, outcome, detail)
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO job_runs (name, host_id, started_at, finished_at, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                args,
            )
        )

    async def mark_finished(self, host_id: str) -> None:
        """A gone host's leftovers are dealt with: it is no longer looked at."""
        now = time.time()
        await self._db.write(
            lambda c: c.execute(
                "UPDATE hosts SET stopped_at = ? WHERE host_id = ? AND stopped_at IS NULL",
                (now, host_id),
            )
        )


def key_fingerprint(jwt_secret: str, data_key: str) -> str:
    """Tells whether two hosts hold the same keys without revealing either."""
    mac = hmac.new(data_key.encode(), b"miri-key-fingerprint:" + jwt_secret.encode(), "sha256")
    return hashlib.sha256(mac.digest()).hexdigest()[:32]


class KeysDiffer(RuntimeError):
    """This host's keys are not the ones the shop's other hosts use."""


async def check_keys(db: Database, fingerprint: str) -> None:
    """Record the shop's key fingerprint on first start; refuse a host whose keys differ."""

    def check(conn: Any) -> str:
        conn.execute(
            "INSERT INTO shop_meta (name, value) VALUES ('key_fingerprint', ?)"
            " ON CONFLICT (name) DO NOTHING",
            (fingerprint,),
        )
        row = conn.execute("SELECT value FROM shop_meta WHERE name = 'key_fingerprint'").fetchone()
        return row["value"]

    recorded = await db.write(check)
    if recorded != fingerprint:
        raise KeysDiffer(
            "this host's MIRI_JWT_SECRET / MIRI_DATA_KEY differ from the ones the shop's"
            " database was started with: every host must use the same keys"
        )
