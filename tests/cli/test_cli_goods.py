"""``miri goods ...`` and ``miri doctor`` against a real data dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miri.cli.main import app
from miri.domain.errors import ValidationFailed
from miri.shop import open_shop
from tests.support.shop import make_settings

runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("MIRI_"):
            monkeypatch.delenv(name)
    root = tmp_path / "data"
    root.mkdir()
    (root / "miri.toml").write_text("argon2_memory_kib = 1024\nargon2_time_cost = 1\n")
    return root


def miri(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data)])
    # JSON is read from stdout alone: warnings go to stderr.
    return result.exit_code, result.stdout if "--json" in args else result.output


def miri_json(data: Path, *args: str) -> dict:
    code, out = miri(data, *args, "--json")
    assert code == 0, out
    return json.loads(out)


def test_seed_list_show(data: Path) -> None:
    seeded = miri_json(data, "goods", "seed", "--count", "40", "--random-seed", "7")
    assert seeded["created"] == 40
    listed = miri_json(data, "goods", "list", "--size", "100")
    assert listed["totalItems"] == 40
    items = listed["items"]
    assert {g["category"] for g in items} == {"FASHION", "BEAUTY", "ETC"}
    assert any(g["reservationStartTime"] for g in items)
    assert any(g["reservationStartTime"] is None for g in items)
    assert all(1 <= len(g["goodsName"]) <= 20 and g["goodsPrice"] % 100 == 0 for g in items)
    shown = miri_json(data, "goods", "show", str(items[0]["goodsId"]))
    assert shown["sellerName"] == "Miri Seller" and shown["stockQuantity"] > 0
    code, out = miri(data, "goods", "list", "--category", "BEAUTY")
    assert code == 0 and "Goods (" in out
    code, out = miri(data, "goods", "list", "--category", "SHOES")
    assert code == 2 and "one of FASHION, BEAUTY, ETC" in out


def test_add_update_restock_and_refusals(data: Path) -> None:
    code, out = miri(
        data, "user", "add", "--email", "kim@example.com", "--password", "password123!",
        "--name", "Kim", "--phone", "010-1234-5678", "--address", "Seoul 1",
    )  # fmt: skip
    assert code == 0, out
    added = miri_json(
        data, "goods", "add", "--seller", "kim@example.com", "--name", "Linen Shirt",
        "--description", "Summer sale", "--price", "39000", "--stock", "10",
        "--category", "fashion", "--opens", "2099-01-01T10:00:00+09:00", "--limit", "2",
    )  # fmt: skip
    gid = str(added["goodsId"])
    assert added["saleOpen"] is False and added["perBuyerLimit"] == 2
    updated = miri_json(
        data, "goods", "update", gid, "--price", "35000", "--open-now", "--no-limit"
    )
    assert (updated["goodsPrice"], updated["saleOpen"], updated["perBuyerLimit"]) == (
        35000,
        True,
        None,
    )
    assert miri_json(data, "goods", "restock", gid, "5")["stockQuantity"] == 15
    code, out = miri(data, "goods", "restock", gid, "0")
    assert code == 1 and "VALIDATION_FAILED" in out
    code, out = miri(data, "goods", "update", gid, "--description", "short")
    assert code == 1 and "goodsDescription" in out
    # A time it cannot read is refused in one line, as the shop refuses bad input, not a crash.
    result = runner.invoke(
        app, ["goods", "update", gid, "--opens", "notatime", "--data-dir", str(data)]
    )
    assert result.exit_code == 1 and not isinstance(result.exception, ValidationFailed)
    assert "VALIDATION_FAILED" in result.output and "opens" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    code, out = miri(data, "goods", "show", "999")
    assert code == 1 and "NOT_FOUND" in out
    code, out = miri(
        data, "goods", "add", "--seller", "kim@example.com", "--name", "x" * 21,
        "--description", "d", "--price", "-1", "--stock", "1",
    )  # fmt: skip
    assert code == 1 and "goodsName" in out and "goodsPrice" in out
    assert miri_json(data, "goods", "list")["totalItems"] == 1


def test_doctor_finds_and_repairs_a_mismatch(data: Path) -> None:
    miri_json(data, "goods", "seed", "--count", "3", "--random-seed", "1")
    code, out = miri(data, "doctor")
    assert code == 0 and "consistent" in out

    async def corrupt() -> None:
        async with open_shop(make_settings(data)) as shop:
            await shop.redis.client.hset("miri:goods:2", "stock", 12345)
            await shop.redis.client.delete("miri:goods:3")

    asyncio.run(corrupt())
    report = json.loads(miri(data, "doctor", "--json")[1])
    # camelCase, as every other --json
    assert {(m["goodsId"], m["what"]) for m in report["mismatches"]} == {
        (2, "stock"),
        (3, "missing"),
    }
    assert "goods_id" not in json.dumps(report)
    code, out = miri(data, "doctor")
    assert code == 1 and "mismatches" in out
    epoch = asyncio.run(_stock_epoch(data))
    code, out = miri(data, "doctor", "--repair")
    assert code == 0 and "repaired 2 goods" in out
    # Under a new stock epoch: an order reserved on a running server before the repair and
    # stored after it is refused by its own transaction.
    assert asyncio.run(_stock_epoch(data)) == epoch + 1
    repaired = json.loads(miri(data, "doctor", "--json")[1])
    assert repaired == {"ok": True, "checked": 3, "repaired": 0, "mismatches": []}
    assert miri(data, "doctor")[0] == 0


async def _stock_epoch(data: Path) -> int:
    """The stock epoch the database holds (Redis's mark of it is never persisted: a Redis that
    restarts holds no verified stock, by design)."""
    async with open_shop(make_settings(data)) as shop:
        return await shop.goods.upkeep._store.epoch()
