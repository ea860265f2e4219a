"""``miri bus status | dead-letters | replay`` through typer's CliRunner against a data dir."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from miri.cli.main import app
from miri.domain.events import Event
from miri.infra.bus import Bus
from miri.infra.sqlite import Database
from tests.integration.test_bus import BusTestPing
from tests.support.shop import make_settings

runner = CliRunner()


def dead_letters_in(data_dir: Path, count: int) -> list[str]:
    """Leave ``count`` dead letters (and one delivered event) in the data dir's database."""
    settings = make_settings(data_dir, bus_retry_base=0.001, bus_max_attempts=2)

    async def main() -> list[str]:
        db = Database(settings.db_path)
        bus = Bus(db, settings)

        async def refuse(event: Event) -> None:
            if getattr(event, "n", 0) > 0:
                raise RuntimeError("card declined")

        bus.subscribe("payments", BusTestPing, refuse)
        events = [BusTestPing(n=i) for i in range(count + 1)]

        def job(conn: sqlite3.Connection) -> None:
            for event in events:
                bus.record(conn, event)

        await db.write(job)
        assert await bus.drain(10)
        await bus.stop()
        await db.close()
        return [e.event_id for e in events[1:]]

    return asyncio.run(main())


def invoke(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["bus", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_bus_cli_status_dead_letters_and_replay(data_dir: Path):
    ids = dead_letters_in(data_dir, 3)

    code, out = invoke(data_dir, "status", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["deadLetters"] == 3 and status["delivered"] == 1 and status["pending"] == 0
    assert status["consumers"]["payments"] == {"pending": 0, "dead": 3, "done": 1}

    code, out = invoke(data_dir, "status")
    assert code == 0 and "payments" in out and "dead letters" in out

    code, out = invoke(data_dir, "dead-letters", "--json")
    assert code == 0, out
    dead = json.loads(out)
    assert sorted(d["eventId"] for d in dead) == sorted(ids)
    assert {d["lastError"] for d in dead} == {"RuntimeError: card declined"}
    assert {d["attempts"] for d in dead} == {2}

    code, out = invoke(data_dir, "dead-letters", "--limit", "1")
    assert code == 0 and "Dead letters (1)" in out and "payments" in out

    code, out = invoke(data_dir, "replay", ids[0], "--json")
    assert code == 0 and json.loads(out) == {"replayed": 1}
    code, out = invoke(data_dir, "replay", ids[0])
    assert code == 1 and "no dead letter" in out

    code, out = invoke(data_dir, "replay", "--all")
    assert code == 0 and "replayed 2" in out
    code, out = invoke(data_dir, "status", "--json")
    status = json.loads(out)
    assert status["pending"] == 3 and status["deadLetters"] == 0


def test_bus_replay_needs_an_id_or_all(data_dir: Path):
    code, _ = invoke(data_dir, "replay")
    assert code == 2
    code, _ = invoke(data_dir, "replay", "abc", "--all")
    assert code == 2
