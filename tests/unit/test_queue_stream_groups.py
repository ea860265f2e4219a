"""How a process wakes the waiting room's streams: one group per look, each stream once per
``QUIET_NOTIFY``, so buyers admitted together do not all order in the same instant; a sell-out
(or the room closing) wakes every stream at once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from miri.domain.queue.model import RoomFigures
from miri.domain.queue.service import STREAM_GROUPS, StreamGroups

USERS = range(1, 4 * STREAM_GROUPS + 1)
FIGURES = RoomFigures(
    goods_id=1,
    enabled=True,
    admit_per_second=50,
    pass_seconds=120,
    opens_at=None,
    shuffled=True,
    head=0,
    tail=len(USERS),
    pre_queue=0,
    holding=0,
    used=0,
    expired=0,
    sold_out_tickets=0,
    sold_out=False,
    sold_out_at=None,
    admitted_total=0,
)


async def _woken_by(groups: StreamGroups, figures: RoomFigures) -> set[int]:
    """The users whose stream a look at ``figures`` wakes (each stream waiting on its signal)."""
    waits = {user: asyncio.ensure_future(groups.signal(user).wait(60)) for user in USERS}
    await asyncio.sleep(0)  # every stream is waiting
    groups.look(figures)
    for _ in range(5):  # the loop turns a woken wait takes to finish (no clock involved)
        await asyncio.sleep(0)
    woken = {user for user, wait in waits.items() if wait.done()}
    for wait in waits.values():
        wait.cancel()
    await asyncio.gather(*waits.values(), return_exceptions=True)
    return woken


async def test_each_look_wakes_one_group_and_every_stream_once_per_round() -> None:
    groups = StreamGroups()
    assert await _woken_by(groups, FIGURES) == set(USERS)  # the first look: everyone
    rounds: list[set[int]] = []
    for n in range(STREAM_GROUPS):
        moved = replace(FIGURES, head=10 * (n + 1))  # the line moves: no new state for all
        rounds.append(await _woken_by(groups, moved))
    assert all(len(woken) == len(USERS) // STREAM_GROUPS for woken in rounds)
    assert set().union(*rounds) == set(USERS)  # a round of looks reaches every stream once
    assert sum(len(woken) for woken in rounds) == len(USERS)


async def test_a_sell_out_or_a_closed_room_wakes_every_stream_at_once() -> None:
    groups = StreamGroups()
    await _woken_by(groups, FIGURES)
    assert len(await _woken_by(groups, FIGURES)) < len(USERS)
    assert await _woken_by(groups, replace(FIGURES, sold_out=True)) == set(USERS)
    assert len(await _woken_by(groups, replace(FIGURES, sold_out=True))) < len(USERS)
    closed = replace(FIGURES, sold_out=True, enabled=False)
    assert await _woken_by(groups, closed) == set(USERS)
