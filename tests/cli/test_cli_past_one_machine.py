"""The README's "Past one machine" steps through the CLI: keys out, the shop copied into
PostgreSQL, a host on the copy with those keys, the copy refused a second time."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miri.cli.main import app
from miri.config import load_settings
from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.shop import CHEAP_HASH

runner = CliRunner()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded shop's data dir: SQLite and its own keys, no MIRI_* from the caller."""
    for name in list(os.environ):
        if name.startswith("MIRI_"):
            monkeypatch.delenv(name)
    root = tmp_path / "shop-data"
    root.mkdir()
    (root / "miri.toml").write_text("argon2_memory_kib = 1024\nargon2_time_cost = 1\n")
    return root


def _env_lines(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert all("=" in line and " " not in line for line in lines), text  # an env file, whole
    return dict(line.split("=", 1) for line in lines)


async def _embedded_sale(data_dir: Path) -> None:
    async with open_shop(load_settings(data_dir=data_dir, env={}, **CHEAP_HASH)) as shop:
        await add_goods(shop, stock=25, name="Linen Shirt")


async def _host_sees_the_shop(settings) -> None:
    async with open_shop(settings) as other:
        [(found, live)] = (await other.goods.listing(0, 10))[0]
        assert found.name == "Linen Shirt" and found.stock_total == 25
        # Its own (new, empty) Redis: live stock was rebuilt from the truth on PostgreSQL.
        assert live == 25
        assert (await other.goods.check_stock(repair=False)).ok


def test_keys_out_copy_in_and_a_host_on_the_copy(embedded: Path, pg_url: str):
    asyncio.run(_embedded_sale(embedded))

    shown = runner.invoke(app, ["keys", "show", "--data-dir", str(embedded)])
    assert shown.exit_code == 0, shown.output
    keys = _env_lines(shown.stdout)
    assert set(keys) == {"MIRI_JWT_SECRET", "MIRI_DATA_KEY", "MIRI_PAYMENT_WEBHOOK_SECRET"}
    assert keys["MIRI_JWT_SECRET"] == (embedded / "keys" / "jwt.key").read_text().strip()

    copied = runner.invoke(app, ["db", "copy", "--data-dir", str(embedded), "--to", pg_url])
    assert copied.exit_code == 0, copied.output
    assert "Copied rows" in copied.output and "goods" in copied.output
    assert "stock check on PostgreSQL: 1 goods, 0 mismatches" in copied.output
    assert "rich.table" not in copied.output  # the table itself, not its repr

    again = runner.invoke(app, ["db", "copy", "--data-dir", str(embedded), "--to", pg_url])
    assert again.exit_code == 1 and "already holds a shop" in again.output

    # Another host: its own data dir, the URL and the keys from `miri keys show`.
    env = {**keys, "MIRI_DATABASE_URL": pg_url}
    host = load_settings(data_dir=embedded.parent / "host-1", env=env, **CHEAP_HASH)
    asyncio.run(_host_sees_the_shop(host))
