"""Several processes or hosts serving one shop: one runs the jobs, all see each other, keys agree."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miri.infra.crypto import new_key
from miri.infra.hosts import Hosts, KeysDiffer
from miri.infra.leadership import AdvisoryLease, Leadership, lease_for
from miri.infra.secrets import MissingSharedKey
from miri.shop import open_shop
from tests.support.shop import make_settings

pytestmark = pytest.mark.both_engines


def _two_hosts(tmp_path: Path, database_url: str | None) -> list:
    """Two processes' settings: two data dirs on one database, or one data dir on SQLite."""
    if database_url:
        return [make_settings(tmp_path / f"host{i}", database_url=database_url) for i in (1, 2)]
    return [make_settings(tmp_path / "shared")] * 2


async def test_one_leader_at_a_time_and_another_takes_over(tmp_path: Path, database_url):
    settings = _two_hosts(tmp_path, database_url)
    events: list[str] = []

    def leadership(name: str, s) -> Leadership:
        async def stop() -> None:
            events.append(f"{name} stops")

        lease = lease_for(s.database_url, s.data_dir)
        return Leadership(lease, lambda: events.append(f"{name} leads"), stop, retry=0.05)

    first, second = leadership("first", settings[0]), leadership("second", settings[1])
    await first.begin()
    await second.begin()
    await asyncio.sleep(0.3)
    assert (first.leading, second.leading) == (True, False)
    assert events == ["first leads"]
    await first.end()  # the leader goes away: its lease is free
    for _ in range(100):
        if second.leading:
            break
        await asyncio.sleep(0.05)
    assert second.leading
    assert events == ["first leads", "first stops", "second leads"]
    await second.end()


async def test_serving_processes_see_each_other_and_one_runs_the_jobs(tmp_path: Path, database_url):
    settings = _two_hosts(tmp_path, database_url)
    async with (
        open_shop(settings[0], background=True) as a,
        open_shop(settings[1], background=True) as b,
    ):
        for _ in range(100):
            live = await a.hosts.live()
            if len(live) == 2:
                break
            await asyncio.sleep(0.05)
        assert {h.host_id for h in live} == {a.hosts.host_id, b.hosts.host_id}
        assert [a.hosts.leader, b.hosts.leader].count(True) == 1
        health = await b.health()
        assert health["host"]["id"] == b.hosts.host_id
        assert health["engines"]["database"] == ("postgresql" if database_url else "sqlite")
    # Both said they stopped: neither is listed as serving any more.
    async with open_shop(settings[0]) as after:
        assert await after.hosts.live() == []


async def test_a_process_that_stops_beating_is_gone_not_live(tmp_path: Path, database_url):
    settings = _two_hosts(tmp_path, database_url)[0]
    async with open_shop(settings) as shop:
        crashed = Hosts(shop.db, host_id="elsewhere:1:dead")
        await crashed.beat()
        assert [h.host_id for h in await shop.hosts.live()] == ["elsewhere:1:dead"]
        assert await shop.hosts.gone(after=0.5) == []
        await asyncio.sleep(0.6)
        assert [h.host_id for h in await shop.hosts.gone(after=0.5)] == ["elsewhere:1:dead"]
        assert await shop.hosts.live(within=0.5) == []
        await shop.hosts.mark_finished("elsewhere:1:dead")
        assert await shop.hosts.gone(after=0.5) == []


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_a_host_of_a_shared_database_never_makes_its_own_keys(tmp_path: Path, database_url):
    bare = make_settings(tmp_path / "h1", database_url=database_url, jwt_secret=None, data_key=None)
    with pytest.raises(MissingSharedKey, match="MIRI_KEYS_DIR"):
        async with open_shop(bare):
            pass
    assert not (tmp_path / "h1" / "keys" / "jwt.key").exists()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_a_host_with_other_keys_is_refused(tmp_path: Path, database_url):
    async with open_shop(make_settings(tmp_path / "h1", database_url=database_url)):
        pass
    other = make_settings(
        tmp_path / "h2", database_url=database_url, jwt_secret=new_key(), data_key=new_key()
    )
    with pytest.raises(KeysDiffer):
        async with open_shop(other):
            pass


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_keys_from_a_shared_mount(tmp_path: Path, database_url):
    mount = tmp_path / "secrets"
    mount.mkdir()
    (mount / "jwt.key").write_text(new_key() + "\n")
    (mount / "data.key").write_text(new_key() + "\n")
    hosts = [
        make_settings(
            tmp_path / f"h{i}",
            database_url=database_url,
            jwt_secret=None,
            data_key=None,
            keys_dir=mount,
        )
        for i in (1, 2)
    ]
    async with open_shop(hosts[0]) as one, open_shop(hosts[1]) as two:
        token = one.users.issue_token(1, "USER")
        assert two.users.tokens.decode(token).user_id == 1


async def test_the_daily_runs_happen_once_however_many_serve(tmp_path: Path, database_url):
    at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%H:%M:%S")
    settings = [
        s.replace(timezone="UTC", daily_run_at=at) for s in _two_hosts(tmp_path, database_url)
    ]
    async with (
        open_shop(settings[0], background=True) as a,
        open_shop(settings[1], background=True) as b,
    ):
        leader = a.hosts.host_id if a.hosts.leader else b.hosts.host_id

        def runs(conn) -> list[tuple[str, str, str]]:
            return [
                (r["name"], r["host_id"], r["outcome"])
                for r in conn.execute(
                    "SELECT * FROM job_runs WHERE name IN ('shipping', 'returns')"
                )
            ]

        for _ in range(200):
            found = await a.db.read(runs)
            if len(found) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a second run, had there been one, would show by now
        found = await a.db.read(runs)
    assert sorted(found) == [("returns", leader, "ok"), ("shipping", leader, "ok")]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_the_server_drops_the_jobs_lock_of_a_vanished_machine(database_url):
    """A killed host's session closes at once; a lost machine's sends nothing: PostgreSQL finds
    it dead only by its own keepalives on that session, which the lease sets (OS default: 2 h)."""
    lease = AdvisoryLease(database_url)
    assert lease.try_acquire()
    try:
        conn = lease._conn
        if conn.info.host.startswith("/"):
            pytest.skip("a unix socket has no TCP keepalives (the throwaway pgserver's)")
        shown = [
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        ]
        assert shown == ["10", "5", "3"]  # seconds, seconds, probes
    finally:
        lease.release()
