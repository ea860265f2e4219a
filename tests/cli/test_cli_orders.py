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
from tests.support.goods import add_goods
from tests.support.shop import SHARED_KEYS, add_user, make_settings

pytestmark = pytest.mark.both_engines

runner = CliRunner()


def miri(data_dir: Path, *args: str, columns: int = 200) -> Any:
    return runner.invoke(
        app,
        [*args, "--data-dir", str(data_dir)],
        catch_exceptions=False,
        env={"COLUMNS": str(columns)},
    )


def place(data_dir: Path, goods: int, *extra: str) -> Any:
    """``miri order place`` for the fixture's buyer."""
    return miri(
        data_dir, "order", "place", "--user", "buyer@example.com", "--goods", str(goods), *extra
    )


@pytest.fixture
def sale(
    data_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """A buyer and goods with stock 5, made through the services on the shop the commands use
    (the data dir's SQLite file, or PostgreSQL with the shared keys)."""
    for name, value in (
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_TIME_COST", "1"),
        ("PAYMENT_PROVIDER", "simulated"),
        ("PAYMENT_ABANDON_RATE", "0"),
    ):
        monkeypatch.setenv(f"MIRI_{name}", value)
    if database_url:
        monkeypatch.setenv("MIRI_DATABASE_URL", database_url)
        monkeypatch.setenv("MIRI_JWT_SECRET", SHARED_KEYS["jwt_secret"])
        monkeypatch.setenv("MIRI_DATA_KEY", SHARED_KEYS["data_key"])
        monkeypatch.setenv("MIRI_PAYMENT_WEBHOOK_SECRET", SHARED_KEYS["jwt_secret"][::-1])

    async def make() -> dict[str, int]:
        async with open_shop(make_settings(data_dir, database_url=database_url)) as shop:
            seller, _ = await add_user(shop, "seller@example.com")
            buyer, _ = await add_user(shop, "buyer@example.com")
            goods = await add_goods(
                shop, seller, name="Lip tint", price=1500, stock=5, category="BEAUTY"
            )
            return {"seller": seller, "buyer": buyer, "goods": goods.goods_id}

    return asyncio.run(make())


def test_place_list_show_cancel(data_dir, sale):
    placed = place(data_dir, sale["goods"], "--quantity", "2", "--json")
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


def test_place_and_pay_with_the_checkout_provider(data_dir, sale, monkeypatch):
    monkeypatch.setenv("MIRI_PAYMENT_PROVIDER", "checkout")
    placed = place(data_dir, sale["goods"], "--quantity", "2")
    assert placed.exit_code == 0, placed.output
    assert "Pay at http://127.0.0.1:8080/pay/pay_" in placed.output
    order = json.loads(place(data_dir, sale["goods"], "--json").output)
    assert order["payment"]["amount"] == 1500
    assert order["payment"]["checkoutUrl"].startswith("http://127.0.0.1:8080/pay/pay_")
    item_id = order["items"][0]["orderDetailId"]
    pending = json.loads(miri(data_dir, "order", "show", str(item_id), "--json").output)
    assert (pending["orderStatus"], pending["paymentStatus"]) == (
        "PAYMENT_PENDING",
        "PAYMENT_IN_PROGRESS",
    )

    paid = miri(data_dir, "order", "pay", str(item_id), "--json")
    assert paid.exit_code == 0, paid.output
    got = json.loads(paid.output)
    assert (got["orderStatus"], got["paymentStatus"]) == ("COMPLETED", "PAYMENT_COMPLETED")
    again = miri(data_dir, "order", "pay", str(item_id))
    assert again.exit_code == 1 and "INVALID_STATE" in again.output and "paid" in again.output

    # The first order: Cancel on the checkout, and its two units go back.
    first = json.loads(miri(data_dir, "order", "list", "--json").output)["items"][-1]
    canceled = miri(data_dir, "order", "pay", str(first["orderDetailId"]), "--cancel", "--json")
    assert canceled.exit_code == 0, canceled.output
    got = json.loads(canceled.output)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "PAYMENT_ABORTED")
    stock = json.loads(miri(data_dir, "goods", "show", str(sale["goods"]), "--json").output)
    assert stock["stockQuantity"] == 4


def test_pay_needs_the_checkout_provider(data_dir, sale):
    order = json.loads(place(data_dir, sale["goods"], "--json").output)
    assert "payment" not in order  # the simulated buyer paid already
    refused = miri(data_dir, "order", "pay", str(order["items"][0]["orderDetailId"]))
    assert refused.exit_code == 1 and "MIRI_PAYMENT_PROVIDER=checkout" in refused.output


def test_an_unknown_status_is_a_usage_error(data_dir, sale):
    bogus = miri(data_dir, "order", "list", "--status", "BOGUS")
    assert bogus.exit_code == 2
    assert "one of PAYMENT_PENDING, COMPLETED, CANCELED" in bogus.output
    assert "Order items" not in bogus.output  # refused, not an empty table
    assert miri(data_dir, "order", "list", "--status", "completed").exit_code == 0


def test_the_item_table_fits_80_columns(data_dir, sale):
    for _ in range(2):
        placed = place(data_dir, sale["goods"])
        assert placed.exit_code == 0, placed.output
    narrow = miri(data_dir, "order", "list", columns=80)
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in narrow.output  # no status cut to "COMPLE…"
    rows = [line for line in lines if "Lip tint" in line]
    assert len(rows) == 2 and all("COMPLETED" in r and "PENDING" in r for r in rows)
    caption = lines[-1].strip()
    assert caption.startswith("payment") and "left out to fit the terminal" in caption
    wide = miri(data_dir, "order", "list", columns=200)
    header = next(line for line in wide.output.splitlines() if "item" in line and "goods" in line)
    assert all(name in header for name in ("payment", "shipping", "return", "ordered"))
    assert "left out" not in wide.output


def test_refusals_exit_one_with_a_reason(data_dir, sale):
    too_many = place(data_dir, sale["goods"], "--quantity", "6")
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
    # The table shows each schedule as it is (brackets and all), not read as markup.
    table = miri(data_dir, "jobs", "list").output
    assert all(job["schedule"] in table for job in jobs.values()), table

    placed = json.loads(place(data_dir, sale["goods"], "--json").output)
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


def test_show_ship_and_export_the_packing_list(data_dir, sale):
    item_id = json.loads(
        place(data_dir, sale["goods"], "--address", "Seoul Mapo 12", "--json").output
    )["items"][0]["orderDetailId"]
    shown = miri(data_dir, "order", "show", str(item_id), "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["buyer"]["email"] == "buyer@example.com" and data["address"] == "Seoul Mapo 12"
    table_view = miri(data_dir, "order", "show", str(item_id)).output
    assert "Seoul Mapo 12" in table_view and "buyer.phoneNumber" in table_view

    bad = miri(data_dir, "order", "ship", str(item_id), "--carrier", "CJ", "--tracking", "no way")
    assert bad.exit_code == 1 and "VALIDATION_FAILED" in bad.output
    shipped = miri(
        data_dir,
        "order",
        "ship",
        str(item_id),
        "--carrier",
        "CJ Logistics",
        "--tracking",
        "6123-4567",
        "--json",
    )
    assert shipped.exit_code == 0, shipped.output
    got = json.loads(shipped.output)
    assert (got["shippingStatus"], got["trackingNumber"]) == ("IN_TRANSIT", "6123-4567")
    again = miri(data_dir, "order", "ship", str(item_id), "--carrier", "CJ", "--tracking", "6123")
    assert again.exit_code == 1 and "INVALID_STATE" in again.output

    place(data_dir, sale["goods"], "--address", "Jeju 5")
    exported = miri(data_dir, "sales", "export", "--seller", "seller@example.com")
    assert exported.exit_code == 0, exported.output
    lines = [line for line in exported.stdout.splitlines() if line]
    assert lines[0].startswith("orderDetailId,orderId,goodsId")
    assert len(lines) == 3 and "Seoul Mapo 12" in lines[1] and "Jeju 5" in lines[2]
    assert "6123-4567" in lines[1] and "CJ Logistics" in lines[1]
    pending = miri(
        data_dir, "sales", "export", "--seller", str(sale["seller"]), "--shipping", "pending"
    )
    assert len([line for line in pending.stdout.splitlines() if line]) == 2
    nobody = miri(data_dir, "sales", "export", "--seller", "buyer@example.com")
    assert len([line for line in nobody.stdout.splitlines() if line]) == 1
    assert miri(data_dir, "sales", "export", "--status", "SHIPPED").exit_code == 2
