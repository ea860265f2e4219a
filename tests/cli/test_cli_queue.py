"""``miri queue status`` and ``miri queue set`` against a real data dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

from miri.domain.queue import RoomSettings
from miri.shop import open_shop
from tests.cli.test_cli_goods import data, miri, miri_json  # noqa: F401 - the fixture
from tests.support.goods import add_goods
from tests.support.shop import add_user, make_settings


def _room(root: Path) -> tuple[int, int]:
    """Goods with a waiting room and three buyers in line; (room goods, goods without one)."""

    async def main() -> tuple[int, int]:
        async with open_shop(make_settings(root)) as shop:
            seller, _ = await add_user(shop, "seller@example.com")
            goods = await add_goods(shop, seller, stock=5)
            plain = await add_goods(shop, seller, stock=5, name="Plain Tee")
            await shop.queue.configure(goods.goods_id, RoomSettings(True, 10, 60))
            for i in range(3):
                buyer, _ = await add_user(shop, f"b{i}@example.com")
                await shop.queue.join(buyer, goods.goods_id)
            return goods.goods_id, plain.goods_id

    return asyncio.run(main())


def test_status_and_set_rate(data: Path) -> None:  # noqa: F811
    gid, plain = _room(data)
    status = miri_json(data, "queue", "status", str(gid))
    assert status["waiting"] == 3 and status["admitPerSecond"] == 10
    assert status["etaLastSeconds"] == 1 and status["saleSoldOut"] is False
    code, out = miri(data, "queue", "status", str(gid))
    assert code == 0 and "waiting" in out and "admitted per second" in out

    changed = miri_json(data, "queue", "set", str(gid), "--admit-rate", "2")
    assert changed["admitPerSecond"] == 2 and changed["etaLastSeconds"] == 2
    assert miri_json(data, "queue", "status", str(gid))["admitPerSecond"] == 2

    code, out = miri(data, "queue", "set", str(gid), "--admit-rate", "0")
    assert code == 1 and "VALIDATION_FAILED" in out
    code, out = miri(data, "queue", "set", str(plain), "--admit-rate", "5")
    assert code == 1 and "INVALID_STATE" in out
    code, out = miri(data, "queue", "status", "999")
    assert code == 1 and "NOT_FOUND" in out


def test_goods_add_and_update_with_a_waiting_room(data: Path) -> None:  # noqa: F811
    code, out = miri(data, "user", "add", "--email", "s@example.com", "--password", "password123!",
                     "--name", "Kim", "--phone", "010-1234-5678", "--address", "Seoul 1")  # fmt: skip
    assert code == 0, out
    added = miri_json(data, "goods", "add", "--seller", "s@example.com", "--name", "Sneaker",
                      "--description", "Limited pairs", "--price", "1000", "--stock", "5",
                      "--waiting-room", "--admit-rate", "20")  # fmt: skip
    room = {"enabled": True, "admitPerSecond": 20, "passSeconds": 120}
    assert added["waitingRoom"] == room
    gid = str(added["goodsId"])
    assert miri_json(data, "queue", "status", gid)["admitPerSecond"] == 20
    changed = miri_json(data, "goods", "update", gid, "--pass-seconds", "60")
    assert changed["waitingRoom"] == {**room, "passSeconds": 60}
    off = miri_json(data, "goods", "update", gid, "--no-waiting-room")
    assert off["waitingRoom"]["enabled"] is False
