"""A CI smoke run of ``miri bench flash-sale --waiting-room``: correctness figures only.

Speed is never asserted (the machine is shared); both sales must end with every unit sold and
none oversold, the room's late buyers admitted first come first served, every buyer who did not
get the goods told SOLD_OUT, and the command's table and JSON written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miri.cli.main import app

runner = CliRunner()


@pytest.mark.timeout(300)
def test_the_room_and_the_bare_sale_side_by_side(tmp_path: Path) -> None:
    out_path = tmp_path / "room.json"
    result = runner.invoke(
        app,
        [
            "bench", "flash-sale", "--waiting-room", "--buyers", "60", "--stock", "40",
            "--admit-rate", "50", "--opens-in", "2", "--max-seconds", "60",
            "--json", str(out_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "waiting room" in result.output and "rank corr" in result.output
    out = json.loads(out_path.read_text(encoding="utf-8"))
    room, bare = out["room"], out["bare"]
    assert room["buyers"] == {"early": 30, "late": 30}
    for sale in (room, bare):
        assert sale["sale"]["oversold"] == 0 and sale["sale"]["lost"] == 0
        assert sale["sale"]["sold"] == 40
    assert room["outcomes"] == {"ordered": 40, "sold_out": 20}
    # Stock for 40: the 30 of the pre-queue (if every one joined before the opening) and 10 late.
    assert room["served"]["preQueue"] + room["served"]["late"] == 40
    assert room["rankCorrelation"]["late"] == 1.0
    assert room["toldSoldOut"] == 20 and room["lastToldAfterSoldOutSeconds"] is not None
    # An admitted buyer's order is never refused (a 503 is shedding before any work: retried).
    assert room["orders"]["byStatus"]["201"] == 40
    assert set(room["orders"]["byStatus"]) <= {"201", "503"}
    assert bare["outcomes"]["ordered"] == 40
    # The server's own figures (its access log) count every order request the client timed.
    for sale in (room, bare):
        server = sale["serverOrders"]
        assert server["count"] == sale["orders"]["requests"]
        assert server["byStatus"] == sale["orders"]["byStatus"]
        assert server["p50Ms"] <= server["p99Ms"] <= server["maxMs"]
        assert sum(row["n"] for row in server["perSecond"]) == server["count"]
        assert sale["clientLoopLag"]["count"] > 0
