"""``miri bench flash-sale --client wrk``: the sale driven by wrk, checked like the Python clients'.

The smoke run needs wrk (``apt-get install -y wrk``) and skips, saying so, without it. Without
wrk the bench must stop before any set-up with a one-line message saying how to install it.
Speed is never asserted: only that the figures exist and every correctness check passes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miri.bench import wrk
from miri.cli.main import app

from .test_bench_smoke import CHECKS

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed: apt-get install -y wrk"
)


@needs_wrk
@pytest.mark.timeout(240)
def test_flash_sale_with_wrk_and_its_bare_ceiling(tmp_path: Path) -> None:
    out_path = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "flash-sale",
            "--client",
            "wrk",
            "--compare",
            "--buyers",
            "80",
            "--stock",
            "300",
            "--concurrency",
            "16",
            "--per-buyer-limit",
            "5",
            "--opens-in",
            "1",
            "--runs",
            "1",
            "--no-progress",
            "--json",
            str(out_path),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(out_path.read_text())
    assert out["oversold"] == 0
    assert {c["name"] for c in out["checks"]} == CHECKS
    assert all(c["passed"] for c in out["checks"]), out["checks"]
    assert out["passed"]
    assert set(out["status_counts"]) <= {"201", "409"}, out["status_counts"]
    for name in ("lua", "sqlite"):
        run = out["strategies"][name]["run_details"][0]
        assert run["client"] == "wrk"
        assert run["outcomes"]["error"] == 0, run["error_codes"]
        # 80 buyers of at most 5 could take 400 > 300 units: the goods sold out.
        assert run["stopped_by"] == "sold out"
        assert run["accepted_units"] == 300
        assert run["accepted_orders_per_s"] > 0
        assert run["server_cpu_us_per_request"] > 0
        assert 0 < run["client_cpu_share"]
        # The timeline accounts for every 201 wrk saw.
        per_row = sum(row["accepted"] * row["width_s"] for row in run["timeline"])
        assert round(per_row) == run["accepted_orders"] == 300
        assert {"p50", "p90", "p99", "max"} <= set(run["latency_ms"]["all"])
        assert run["latency_ms"]["all"]["count"] == run["requests"]
    bare = out["compare"]["bare aiohttp"]
    assert bare["requests_per_s"] > 0 and bare["server_cpu_us_per_request"] > 0
    assert out["bare"]["errors"] == 0
    assert 0 < out["compare"]["lua"]["requests_ratio"]


def test_without_wrk_the_bench_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it: no wrk
    result = CliRunner().invoke(
        app, ["bench", "flash-sale", "--client", "wrk", "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 1
    assert "apt-get install -y wrk" in result.output
    assert not (tmp_path / "data").exists()  # stopped before any set-up


def test_open_files_limit_is_raised_for_many_connections() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3000 * wrk.FDS_PER_CONNECTION + wrk.FD_HEADROOM
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"hard open-files limit {hard} is below {needed}")
    try:
        assert wrk.raise_open_files(3000) >= needed
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@needs_wrk
@pytest.mark.timeout(180)
def test_bench_reads_gives_every_path_against_bare_get(tmp_path: Path) -> None:
    out_path = tmp_path / "reads.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "reads",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--concurrency",
            "16",
            "--goods",
            "12",
            "--json",
            str(out_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "reads at an opening" in result.output
    out = json.loads(out_path.read_text())
    assert [r["path"] for r in out["rows"]] == ["live stock", "goods page", "listing page", "mix"]
    assert out["passed"]
    assert len(out["rows"][3]["paths"]) == 3  # the mix reads all three
    for row in [out["bare"], *out["rows"]]:
        assert row["requests"] > 0
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0, row["status_counts"]
        assert row["server_cpu_us_per_request"] > 0
        assert row["bare_ratio"] > 0
        assert row["latency_ms"]["count"] == row["requests"]
    assert out["bare"]["bare_ratio"] == 1.0
