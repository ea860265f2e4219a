"""Live stock in Redis, changed only by Lua scripts so concurrent buyers never oversell.

Per goods, one hash ``miri:goods:{id}`` holds ``stock`` (what can still be bought), the sale rules
(``open``: epoch seconds or empty, ``limit``: 0 for none) and ``ver``, a token that changes
whenever the goods are edited or rebuilt, so every worker process can tell its in-process copy
of the goods is stale from the answer it already gets. ``miri:goods:{id}:buyers`` maps a buyer
to the quantity they hold in active orders. ``miri:goods:dirty`` maps goods to a change counter
for the write-back: a counter that moved while the write-back ran keeps the goods dirty.

Every mutating script refuses to touch goods whose hash is missing (Redis lost it): the caller
rebuilds them from SQLite instead of creating a wrong figure out of nothing.

``miri:stock-epoch`` names the stock epoch (``shop_meta.stock_epoch`` in the database) the figures
were rebuilt for. Without it Redis is not trusted: a reservation answers UNVERIFIED (nothing
taken) and the caller rebuilds. It is written with replication off, so a replica promoted by a
failover, or a Redis restarted from its AOF, never has it: either may have lost the last
decrements, and the rebuild puts back the database's truth before another order is taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from miri.infra import keys

T = TypeVar("T")

PREFIX = keys.GOODS_PREFIX
DIRTY = keys.GOODS_DIRTY
REBUILD_LOCK = keys.GOODS_REBUILD_LOCK
RELEASED = keys.GOODS_RELEASED
EPOCH = keys.STOCK_EPOCH

# Many reservations in one call (those that arrived in the same loop tick), each judged and
# applied in turn, each all-or-nothing over its items.
# KEYS: dirty, epoch, then per goods in the batch (once, however many orders name it): goods
# hash, buyers hash.
# ARGV[1]: the reservations as one JSON array: {user, now, {{goods key's index in KEYS, id, qty},
# ...}} each, the ids as strings. One argument, not seven per order: redis-py packs each
# argument in Python, which cost more than the rest of sending the batch (benchmarks/README.md).
# Answers one {status, item (1-based), epoch, version per item...} per reservation.
RESERVE = """
local out = {}
local epoch = redis.call('GET', KEYS[2])
local orders = cjson.decode(ARGV[1])
for o = 1, #orders do
  local user, now, items = orders[o][1], orders[o][2], orders[o][3]
  local n = #items
  local refusal, vers = nil, {}
  if not epoch then refusal = {'UNVERIFIED', 0} end
  for i = 1, (refusal and 0 or n) do
    local gk, bk, qty = KEYS[items[i][1]], KEYS[items[i][1] + 1], items[i][3]
    local g = redis.call('HMGET', gk, 'stock', 'open', 'limit', 'ver')
    if not g[1] then refusal = {'MISSING', i}; break end
    if g[2] and g[2] ~= '' and now < tonumber(g[2]) then refusal = {'SALE_NOT_OPEN', i}; break end
    local limit = tonumber(g[3] or '0') or 0
    if limit > 0 and tonumber(redis.call('HGET', bk, user) or '0') + qty > limit then
      refusal = {'LIMIT_EXCEEDED', i}; break
    end
    if tonumber(g[1]) < qty then refusal = {'SOLD_OUT', i, g[1]}; break end
    vers[i] = g[4] or ''
  end
  if refusal then
    out[#out + 1] = refusal
  else
    for i = 1, n do
      local key, qty = items[i][1], items[i][3]
      redis.call('HINCRBY', KEYS[key], 'stock', -qty)
      redis.call('HINCRBY', KEYS[key + 1], user, qty)
      redis.call('HINCRBY', KEYS[1], items[i][2], 1)
    end
    out[#out + 1] = {'OK', 0, epoch, unpack(vers)}
  end
end
return out
"""

# KEYS: dirty, goods, buyers, epoch, and optionally a token key; ARGV: user, qty, id, epoch.
# With a token, a release whose answer was lost can be sent again: the second one answers 2
# and changes nothing. With an epoch (the one read where the release was committed), it applies
# only to figures of that epoch: 4 when a later rebuild already counted it, 3 when the rebuild
# that counts it as held has not loaded Redis yet (send it again soon).
RELEASE = """
if ARGV[4] ~= '' then
  local e = redis.call('GET', KEYS[4])
  if not e or tonumber(e) < tonumber(ARGV[4]) then return 3 end
  if tonumber(e) > tonumber(ARGV[4]) then return 4 end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if KEYS[5] and not redis.call('SET', KEYS[5], '1', 'NX', 'EX', 3600) then return 2 end
redis.call('HINCRBY', KEYS[2], 'stock', ARGV[2])
local left = redis.call('HINCRBY', KEYS[3], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
return 1
"""

# KEYS: dirty, goods; ARGV: qty, id. Answers {found, stock}.
RESTOCK = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {0, 0} end
local s = redis.call('HINCRBY', KEYS[2], 'stock', ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return {1, s}
"""

# KEYS: goods; ARGV: open, limit, ver.
RULES = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'open', ARGV[1], 'limit', ARGV[2], 'ver', ARGV[3])
return 1
"""

# KEYS: goods, buyers, dirty; ARGV: force, stock, open, limit, ver, id, then user, count pairs.
# Without force, goods that are already there are left alone: whoever restored them first won.
LOAD = """
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'stock', ARGV[2], 'open', ARGV[3], 'limit', ARGV[4], 'ver', ARGV[5])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
return 1
"""

# KEYS: epoch; ARGV: epoch, or '' to take it away. Not replicated, not in the AOF (see above).
SET_EPOCH = """
redis.set_repl(redis.REPL_NONE)
if ARGV[1] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: dirty; ARGV: prefix. Reads each dirty goods' counter and stock at one instant.
SNAPSHOT = """
local d = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #d, 2 do
  local s = redis.call('HGET', ARGV[1] .. d[i], 'stock')
  if s then
    out[#out + 1] = d[i]
    out[#out + 1] = d[i + 1]
    out[#out + 1] = s
  end
end
return out
"""

# KEYS: dirty; ARGV: id, counter pairs. Clears only marks that did not move since the snapshot.
CLEAN = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""


def goods_key(goods_id: int) -> str:
    return keys.goods(goods_id)


def buyers_key(goods_id: int) -> str:
    return keys.goods_buyers(goods_id)


def new_version() -> str:
    # Random, so a rebuilt hash never repeats a version some process cached before the loss.
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Figures:
    """What SQLite says Redis should hold for one goods."""

    goods_id: int
    available: int
    buyers: dict[str, int]
    open: str  # epoch seconds, or "" when the sale is open from the start
    limit: int  # 0: no cap


@dataclass(frozen=True)
class Reservation:
    status: str  # OK, MISSING, UNVERIFIED, SALE_NOT_OPEN, LIMIT_EXCEEDED, SOLD_OUT
    index: int  # 0-based item the refusal is about
    versions: list[str]  # OK: each item's goods version
    left: int | None = None  # SOLD_OUT: the stock that was left for that item
    epoch: int | None = None  # OK: the stock epoch the units were taken in


# What a release answered (see RELEASE).
RELEASE_MISSING, RELEASE_DONE, RELEASE_REPEAT, RELEASE_EARLY, RELEASE_COUNTED = 0, 1, 2, 3, 4


# One reservation waiting for its batch: user, now, (goods id, qty) per item, its answer.
Call = tuple[int, float, Sequence[tuple[int, int]], asyncio.Future]


class ReserveBatch:
    """Reservations that arrive in the same loop tick go to Redis as one script call.

    A thousand buyers at once then cost a few round trips and connections instead of a
    thousand calls (the pool would run out, and redis-py's cost per command dominates). The
    EVALSHA is sent directly; on NOSCRIPT (Redis restarted or flushed its scripts) nothing ran,
    so the script is loaded and the call sent again.
    """

    MAX_PER_CALL = 500  # keeps one script run short: Redis serves nobody else meanwhile

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._sha = hashlib.sha1(RESERVE.encode()).hexdigest()
        self._pending: list[Call] = []
        self._sending: set[asyncio.Task] = set()

    async def __call__(
        self, user_id: int, now: float, items: Sequence[tuple[int, int]]
    ) -> list[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((user_id, now, items, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        for start in range(0, len(batch), self.MAX_PER_CALL):
            task = asyncio.ensure_future(self._send(batch[start : start + self.MAX_PER_CALL]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Call]) -> None:
        keys: list[str] = [DIRTY, EPOCH]
        at: dict[int, int] = {}  # goods id -> its goods key's index in KEYS (1-based, as Lua)
        orders = []
        for user_id, now, items, _ in batch:
            named = []
            for goods_id, qty in items:
                index = at.get(goods_id)
                if index is None:
                    index = at[goods_id] = len(keys) + 1
                    keys += (goods_key(goods_id), buyers_key(goods_id))
                named.append((index, str(goods_id), qty))
            # Ids as strings: they are hash fields, kept digit for digit (no Lua number between).
            orders.append((str(user_id), now, named))
        payload = orjson.dumps(orders)
        try:
            try:
                answers = await self._client.evalsha(self._sha, len(keys), *keys, payload)
            except NoScriptError:
                await self._client.script_load(RESERVE)
                answers = await self._client.evalsha(self._sha, len(keys), *keys, payload)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


class LiveStock:
    """The Redis side of stock; ``reader`` may be a replica, every write goes to ``primary``."""

    def __init__(self, primary: aioredis.Redis, reader: aioredis.Redis | None = None) -> None:
        self.primary = primary
        self.reader = reader or primary
        # register_script: EVALSHA, and a reload on NOSCRIPT after a Redis restart or flush.
        self._reserve = ReserveBatch(primary)
        self._release = primary.register_script(RELEASE)
        self._restock = primary.register_script(RESTOCK)
        self._rules = primary.register_script(RULES)
        self._load = primary.register_script(LOAD)
        self._snapshot = primary.register_script(SNAPSHOT)
        self._clean = primary.register_script(CLEAN)
        self._set_epoch = primary.register_script(SET_EPOCH)

    async def reserve(
        self, user_id: int, items: Sequence[tuple[int, int]], now: float
    ) -> Reservation:
        answer = await self._reserve(user_id, now, items)
        status, index = answer[0], int(answer[1])
        if status == "SOLD_OUT":
            return Reservation(status, index - 1, [], int(answer[2]))
        if status == "OK":
            versions = [str(v) for v in answer[3:]]
            return Reservation(status, 0, versions, epoch=int(answer[2]))
        return Reservation(status, max(index - 1, 0), [])

    async def release(
        self,
        user_id: int,
        goods_id: int,
        qty: int,
        token: str | None = None,
        epoch: int | None = None,
    ) -> int:
        """Give ``qty`` back; answers one of the ``RELEASE_*`` codes. ``token`` (kept an hour)
        makes sending the same release again harmless; ``epoch``: see RELEASE."""
        keys = [DIRTY, goods_key(goods_id), buyers_key(goods_id), EPOCH]
        if token:
            keys.append(f"{RELEASED}{token}")
        args = [user_id, qty, goods_id, "" if epoch is None else epoch]
        return int(await self._release(keys=keys, args=args))

    async def epoch(self) -> int | None:
        """The stock epoch Redis was rebuilt for; None when it has none (not to be trusted)."""
        value = await self.primary.get(EPOCH)
        return None if value is None else int(value)

    async def set_epoch(self, epoch: int | None) -> None:
        """Name the epoch the figures now hold (None: distrust them until the next rebuild)."""
        await self._set_epoch(keys=[EPOCH], args=["" if epoch is None else epoch])

    async def restock(self, goods_id: int, qty: int) -> int | None:
        """The new live stock, or None when Redis lost these goods."""
        found, stock = await self._restock(keys=[DIRTY, goods_key(goods_id)], args=[qty, goods_id])
        return int(stock) if int(found) else None

    async def set_rules(self, goods_id: int, open_at: str, limit: int) -> bool:
        keys = [goods_key(goods_id)]
        return bool(await self._rules(keys=keys, args=[open_at, limit, new_version()]))

    async def load(self, figures: Figures, *, force: bool) -> bool:
        """Write one goods' figures; without ``force`` only when Redis has none."""
        f = figures
        args: list[str | int] = ["1" if force else "0", f.available, f.open, f.limit]
        args += [new_version(), f.goods_id]
        for user, count in f.buyers.items():
            args += [user, count]
        keys = [goods_key(f.goods_id), buyers_key(f.goods_id), DIRTY]
        return bool(await self._load(keys=keys, args=args))

    async def version(self, goods_id: int) -> str | None:
        return await self.primary.hget(goods_key(goods_id), "ver")

    async def stocks(self, ids: Iterable[int], *, replica: bool = False) -> dict[int, int | None]:
        """Live stock per goods in one round trip; None where Redis has no figure."""
        ids = list(ids)
        if not ids:
            return {}
        pipe = (self.reader if replica else self.primary).pipeline(transaction=False)
        for goods_id in ids:
            pipe.hget(goods_key(goods_id), "stock")
        values = await pipe.execute()
        return {gid: None if v is None else int(v) for gid, v in zip(ids, values, strict=True)}

    async def state(self, ids: Sequence[int]) -> dict[int, tuple[list[str | None], dict[str, str]]]:
        """Hash fields (stock, open, limit) and buyers per goods, for the stock check."""
        pipe = self.primary.pipeline(transaction=False)
        for goods_id in ids:
            pipe.hmget(goods_key(goods_id), "stock", "open", "limit")
            pipe.hgetall(buyers_key(goods_id))
        values = await pipe.execute()
        return {gid: (values[2 * i], values[2 * i + 1]) for i, gid in enumerate(ids)}

    async def goods_ids(self) -> set[int]:
        """Every goods id Redis has a hash for (to find goods SQLite does not know)."""
        found = set()
        async for key in self.primary.scan_iter(match=f"{PREFIX}*", count=1000):
            tail = key[len(PREFIX) :]
            if tail.isdigit():
                found.add(int(tail))
        return found

    async def forget(self, goods_id: int) -> None:
        await self.primary.delete(goods_key(goods_id), buyers_key(goods_id))
        await self.primary.hdel(DIRTY, str(goods_id))

    async def dirty_snapshot(self) -> list[tuple[int, str, int]]:
        """(goods id, change counter, live stock) for every dirty goods, read atomically."""
        flat = await self._snapshot(keys=[DIRTY], args=[PREFIX])
        return [(int(flat[i]), str(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]

    async def clean(self, marks: Sequence[tuple[int, str]]) -> int:
        if not marks:
            return 0
        args: list[str | int] = []
        for goods_id, counter in marks:
            args += [goods_id, counter]
        return int(await self._clean(keys=[DIRTY], args=args))

    async def dirty_count(self) -> int:
        return int(await self.primary.hlen(DIRTY))
