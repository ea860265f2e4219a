"""CI smoke runs of ``miri bench flash-sale``: a few hundred orders, correctness figures only.

Speed is never asserted here (the CI machine is shared); the sale must end with nothing
oversold, nobody over the limit, every 201 backed by an order, nothing left PAYMENT_PENDING,
live stock equal to SQLite's truth and the write-back equal to the live figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miri.bench.flash_sale import BenchOptions, flash_sale
from miri.cli.main import app

REQUIRED_KEYS = {
    "oversold",
    "accepted_orders_per_s",
    "requests_per_s",
    "sell_out_s",
    "latency_ms",
    "status_counts",
    "checks",
    "metadata",
}
CHECKS = {
    "bus drained",
    "oversold",
    "per-buyer limit",
    "every 201 has its order",
    "no order left PAYMENT_PENDING",
    "live stock = stockTotal - active quantity",
    "write-back figure = live figure",
}


def assert_correct(out: dict) -> None:
    assert REQUIRED_KEYS <= set(out)
    assert out["oversold"] == 0
    assert {c["name"] for c in out["checks"]} == CHECKS
    failed = [c for c in out["checks"] if not c["passed"]]
    assert not failed, failed
    # Only accepted orders and the expected refusals: sold out is never an error.
    assert set(out["status_counts"]) <= {"201", "409"}, out["status_counts"]
    for section in out["strategies"].values():
        for run in section["run_details"]:
            assert run["outcomes"]["error"] == 0, run["error_codes"]
            assert run["stopped_by"] == "sold out"
            assert 0 < run["accepted_units"]
            per_row = sum(row["accepted"] * row["width_s"] for row in run["timeline"])
            assert round(per_row) == run["accepted_orders"]
    assert {"p50", "p90", "p99", "max"} <= set(out["latency_ms"]["accepted"])
    assert {"p50", "p90", "p99", "max"} <= set(out["latency_ms"]["sold_out"])
    meta = out["metadata"]
    assert {
        "date",
        "git_revision",
        "cpu",
        "memory",
        "python",
        "libraries",
        "redis",
        "settings",
    } <= set(meta)
    assert meta["settings"]["jwt_secret"] in (None, "<redacted>")


@pytest.mark.timeout(180)
def test_flash_sale_over_http_through_the_cli(tmp_path: Path) -> None:
    """The default mode: ``miri serve`` as a subprocess, driven over HTTP; --json written."""
    out_path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "flash-sale",
            "--buyers",
            "60",
            "--stock",
            "240",
            "--concurrency",
            "16",
            "--per-buyer-limit",
            "6",
            "--payment-abandon-rate",
            "0.2",
            "--opens-in",
            "1",
            "--runs",
            "1",
            "--no-progress",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "time to sell out" in result.output
    out = json.loads(out_path.read_text())
    assert_correct(out)
    run = out["strategies"]["lua"]["run_details"][0]
    # 60 buyers at most 6 each can hold 360 > 240: the goods sold out, and everyone was told.
    assert run["buyers_told"] == 60
    assert run["outcomes"]["sold_out"] + run["outcomes"]["limit"] == 60


@pytest.mark.timeout(120)
async def test_flash_sale_in_process_sqlite_open_loop(tmp_path: Path) -> None:
    """--in-process with the SQLite baseline, in open-loop mode at a fixed arrival rate."""
    opts = BenchOptions(
        buyers=50,
        stock=150,
        concurrency=8,
        quantity=2,
        rate=2000.0,
        runs=2,
        opens_in=1.0,
        strategy="sqlite",
        in_process=True,
        data_dir=tmp_path / "data",
    )
    out = await flash_sale(opts)
    assert_correct(out)
    for run in out["strategies"]["sqlite"]["run_details"]:
        assert run["mode"] == "open"
        assert run["accepted_units"] == 150  # no payment abandons: every unit sold once
    assert out["figures"]["accepted_orders_per_s"]["n"] == 2


@pytest.mark.timeout(240)
def test_flash_sale_on_postgresql_with_two_hosts(tmp_path: Path, pg_url: str) -> None:
    """Two ``miri serve`` hosts, each with its own data dir, on one PostgreSQL schema and one
    throwaway Redis over TCP, the buyers spread over both: every check passes, and the bench's
    schema is gone afterwards."""
    import psycopg

    out_path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "flash-sale",
            "--buyers",
            "60",
            "--stock",
            "180",
            "--concurrency",
            "16",
            "--per-buyer-limit",
            "4",
            "--payment-abandon-rate",
            "0.2",
            "--opens-in",
            "1",
            "--runs",
            "1",
            "--no-progress",
            "--database-url",
            pg_url,
            "--hosts",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "postgresql, 2 hosts" in result.output
    out = json.loads(out_path.read_text())
    assert_correct(out)
    engines = out["engines"]
    assert engines["database"] == "postgresql"
    assert engines["hosts"] == 2
    assert engines["redis"] == "throwaway redis-server"
    assert out["metadata"]["engines"] == engines
    assert out["strategies"]["lua"]["engines"] == engines
    # Each host kept its own data dir; neither made an SQLite file (the shop is in PostgreSQL).
    for host in ("host-1", "host-2"):
        assert (tmp_path / "data" / host).is_dir()
        assert not (tmp_path / "data" / host / "miri.sqlite3").exists()
    with psycopg.connect(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (engines["schema"],)
        ).fetchone()
    assert left == (0,)


def test_several_hosts_need_a_database_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "flash-sale", "--hosts", "2", "--data-dir", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 2
    assert "--database-url" in result.output
