"""``miri order ...`` and ``miri jobs ...`` against a real data dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from miri.cli.main import app
from miri.shop import open_shop
from tests.support.shop import add_user, make_settings

runner = CliRunner()


def miri(data_dir: Path, *args: str) -> Any:
    return runner.invoke(
        app, [*args, "--data-dir", str(data_dir)], catch_exceptions=False, env={"COLUMNS": "200"}
    )


@pytest.fixture
def sale(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A buyer and goods with stock 5, made through the services on the data dir."""
    for name, value in (
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_TIME_COST", "1"),
        ("PAYMENT_ABANDON_RATE", "0"),
    ):
        monkeypatch.setenv(f"MIRI_{name}", value)

    async def make() -> dict[str, int]:
        async with open_shop(make_settings(data_dir)) as shop:
            seller, _ = await add_user(shop, "seller@example.com")
            buyer, _ = await add_user(shop, "buyer@example.com")
            goods = await shop.goods.register(
                seller,
                name="Lip tint",
                description="A long lasting tint",
                price=1500,
                stock=5,
                category="BEAUTY",
            )
            return {"seller": seller, "buyer": buyer, "goods": goods.goods_id}

    return asyncio.run(make())


def test_place_list_show_cancel(data_dir, sale):
    placed = miri(
        data_dir,
        "order",
        "place",
        "--user",
        "buyer@example.com",
        "--goods",
        str(sale["goods"]),
        "--quantity",
        "2",
        "--json",
    )
    assert placed.exit_code == 0, placed.output
    order = json.loads(placed.output)
    assert order["totalPrice"] == 3000
    item_id = order["items"][0]["orderDetailId"]

    listed = miri(data_dir, "order", "list", "--user", "buyer@example.com", "--json")
    items = json.loads(listed.output)["items"]
    assert [i["orderDetailId"] for i in items] == [item_id]
    # The command delivered the payment before it returned.
    assert items[0]["paymentStatus"] == "PAYMENT_COMPLETED"
    assert "Lip tint" in miri(data_dir, "order", "list").output

    shown = json.loads(miri(data_dir, "order", "show", str(item_id), "--json").output)
    assert shown["orderStatus"] == "COMPLETED" and shown["shippingStatus"] == "PENDING"

    canceled = miri(data_dir, "order", "cancel", str(item_id), "--json")
    assert canceled.exit_code == 0, canceled.output
    got = json.loads(canceled.output)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "REFUNDED")
    again = miri(data_dir, "order", "cancel", str(item_id))
    assert again.exit_code == 1 and "INVALID_STATE" in again.output


def test_refusals_exit_one_with_a_reason(data_dir, sale):
    too_many = miri(
        data_dir,
        "order",
        "place",
        "--user",
        "buyer@example.com",
        "--goods",
        str(sale["goods"]),
        "--quantity",
        "6",
    )
    assert too_many.exit_code == 1 and "SOLD_OUT" in too_many.output
    missing = miri(data_dir, "order", "show", "999")
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.output
    short = miri(data_dir, "order", "return", "1", "--reason", "short")
    assert short.exit_code == 2


def test_jobs_list_and_run_as_of(data_dir, sale):
    listed = miri(data_dir, "jobs", "list", "--json")
    jobs = {j["name"]: j for j in json.loads(listed.output)}
    assert set(jobs) == {"shipping", "returns", "payment-expiry", "stock-sync"}
    assert "T06:00:00+09:00" in jobs["shipping"]["nextRun"]

    placed = json.loads(
        miri(
            data_dir,
            "order",
            "place",
            "--user",
            "buyer@example.com",
            "--goods",
            str(sale["goods"]),
            "--json",
        ).output
    )
    item_id = placed["items"][0]["orderDetailId"]
    now_run = json.loads(miri(data_dir, "jobs", "run", "shipping", "--json").output)
    assert now_run["result"] == {"inTransit": 0, "delivered": 0}
    later = json.loads(
        miri(data_dir, "jobs", "run", "shipping", "--as-of", "2099-01-01T06:00:00", "--json").output
    )
    assert later["result"] == {"inTransit": 1, "delivered": 0}
    assert later["asOf"] == "2099-01-01T06:00:00+09:00"
    shown = json.loads(miri(data_dir, "order", "show", str(item_id), "--json").output)
    assert shown["shippingStatus"] == "IN_TRANSIT"
    bad = miri(data_dir, "jobs", "run", "nightly")
    assert bad.exit_code == 2
    assert miri(data_dir, "jobs", "run", "shipping", "--as-of", "tomorrow").exit_code == 2
