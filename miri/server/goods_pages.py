"""Goods details and listing pages from an in-process cache, checked against Redis on every read.

At an opening thousands refresh the same goods page. Its goods row and seller name change
rarely; its stock changes with every order. So a process keeps the row (and seller name, and
for a listing page the rows and the total) and reads, per request, only what Redis holds anyway,
in one round trip: each goods' live stock and version (``ver`` in its hash, renewed on every
edit by any process or host) and the catalogue version (``keys.GOODS_CATALOGUE``, bumped when
goods or their waiting room are registered or edited through the API). A changed version reloads at once;
anything else (a seller renamed, goods added from the CLI) is reloaded after ``TTL``, so a page
never shows goods data older than a second. ``saleOpen`` is worked out per request from the
opening time, so the opening itself needs no invalidation.

``cached_answer`` turns such a page into an answer with an ``ETag`` (a hash of the exact bytes),
``Cache-Control`` and ``Vary``, or a ``304`` without a body when ``If-None-Match`` still holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from miri.domain.goods.model import Goods
from miri.infra import keys

TTL = 1.0  # seconds: the oldest goods data a page may show
MAX_PAGES = 2048  # cached pages per kind; past it the cache starts again
# Cache-Control per kind: live stock for a second; goods pages a little longer, revalidated.
STOCK_CACHE = "public, max-age=1"
GOODS_CACHE = "public, max-age=5, must-revalidate"
LISTING_CACHE = "public, max-age=5, must-revalidate"
VARY = "Accept-Encoding"
# One command for a listing page's check: the catalogue version, then stock and version of each
# goods (KEYS[2..]); a missing figure is false (nil). One reply to parse instead of one per goods.
PAGE_FIGURES = """
local out = {redis.call('GET', KEYS[1]) or false}
for i = 2, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'stock', 'ver')
  out[#out + 1] = f[1] or false
  out[#out + 1] = f[2] or false
end
return out
"""


@dataclass
class _Detail:
    data: dict[str, Any]  # the page as shaped for the API; stock and saleOpen set per read
    goods: Goods
    ver: str | None
    catalogue: str | None
    at: float


@dataclass
class _Listing:
    rows: list[dict[str, Any]]  # as shaped for the API; stockQuantity set per read
    ids: list[int]
    total: int
    vers: list[str | None]
    catalogue: str | None
    at: float


class FreshFigures:
    """Stock and version of goods (and the catalogue version), read for many requests at once,
    yet never older than the request: a request waits for the next read that starts after it
    arrived, and all requests waiting then share that one read (one script call for every goods
    asked for). Under load a read serves a whole loop's worth of requests; alone, a request
    costs one round trip as before."""

    def __init__(self, redis: Any) -> None:
        self._script = redis.register_script(PAGE_FIGURES)
        self._ids: set[int] = set()  # asked for by the requests waiting for the next read
        self._waiters: list[asyncio.Future] = []  # one per request: a client may leave
        self._running: asyncio.Task | None = None
        self.reads = 0  # round trips made (for tests)

    async def get(self, ids: list[int]) -> tuple[str | None, list[tuple[str | None, str | None]]]:
        """(catalogue version, [(stock, ver) per goods])."""
        future = asyncio.get_running_loop().create_future()
        self._ids.update(ids)
        self._waiters.append(future)
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        catalogue, figures = await future
        return catalogue, [figures.get(gid, (None, None)) for gid in ids]

    async def _run(self) -> None:
        while self._waiters:
            ids, waiters = list(self._ids), self._waiters
            self._ids, self._waiters = set(), []
            try:
                catalogue, *flat = await self._script(
                    keys=[keys.GOODS_CATALOGUE, *(keys.goods(gid) for gid in ids)]
                )
            except Exception as exc:  # noqa: BLE001 - every waiter of this read gets the error
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.reads += 1
            figures = dict(zip(ids, zip(flat[0::2], flat[1::2], strict=True), strict=True))
            for future in waiters:
                if not future.done():
                    future.set_result((catalogue, figures))


class GoodsPages:
    def __init__(self, goods: Any, clock: Any, ttl: float = TTL) -> None:
        self._goods = goods  # the goods service
        self._clock = clock
        self._ttl = ttl
        self._details: dict[int, _Detail] = {}
        self._listings: dict[tuple[Any, ...], _Listing] = {}
        self.loads = 0  # reloads from the database (for tests)
        self._reloads: dict[tuple[Any, ...], asyncio.Future] = {}
        self.primary = FreshFigures(goods.live.primary)  # live stock: the primary's figure
        self.reader = FreshFigures(goods.live.reader)  # pages: a replica's, when there is one

    async def changed(self) -> None:
        """Goods (or their waiting room) were registered or edited here: every process reloads
        its goods pages and listing pages on their next read."""
        await self._goods.live.primary.incr(keys.GOODS_CATALOGUE)

    async def stock(self, goods_id: int) -> int:
        """Live stock from the primary (read after the request came); the service when Redis
        has no figure (it restores the goods, or says there are none)."""
        _, [(stock, _)] = await self.primary.get([goods_id])
        if stock is None:
            return await self._goods.live_stock(goods_id)
        return int(stock)

    # -- goods details ----------------------------------------------------------------------
    async def detail(
        self, goods_id: int, load: Callable[[], Awaitable[tuple[dict[str, Any], Goods]]]
    ) -> dict[str, Any]:
        """The goods page as ``load`` makes it (the page's data and its goods), kept until the
        goods' version or the catalogue version moves (or ``TTL``); its ``stockQuantity`` and
        ``saleOpen`` are set per read."""
        catalogue, [(stock, ver)] = await self.reader.get([goods_id])
        if stock is None:  # Redis lost it (or no such goods): the service restores or refuses
            return (await load())[0]
        cached = self._details.get(goods_id)
        if (
            cached is None
            or cached.ver != ver
            or cached.catalogue != catalogue
            or time.monotonic() - cached.at > self._ttl
        ):
            # Keyed by the versions seen: a request that saw newer ones never joins an older reload.
            cached = await self._once(
                ("detail", goods_id, ver, catalogue),
                lambda: self._load_detail(goods_id, load, ver, catalogue),
            )
        sale_open = cached.goods.sale_open(self._clock.now())
        return {**cached.data, "stockQuantity": int(stock), "saleOpen": sale_open}

    async def _load_detail(
        self,
        goods_id: int,
        load: Callable[[], Awaitable[tuple[dict[str, Any], Goods]]],
        ver: str | None,
        catalogue: str | None,
    ) -> _Detail:
        data, goods = await load()
        if len(self._details) >= MAX_PAGES:
            self._details.clear()
        self.loads += 1
        cached = self._details[goods_id] = _Detail(data, goods, ver, catalogue, time.monotonic())
        return cached

    async def _once(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        """One reload per page at a time: the requests that find it stale together share it
        (a client that leaves does not cancel it for the others)."""
        task = self._reloads.get(key)
        if task is None:
            task = self._reloads[key] = asyncio.ensure_future(make())
            task.add_done_callback(lambda _t: self._reloads.pop(key, None))
        return await asyncio.shield(task)

    # -- listing pages ----------------------------------------------------------------------
    async def listing(
        self,
        page: int,
        size: int,
        shape: Callable[[list[tuple[Goods, int]]], list[dict[str, Any]]],
        *,
        category: str | None = None,
        q: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A listing page's rows (as ``shape`` makes them) and total, kept until the catalogue
        or a row's goods change (or ``TTL``); each row's ``stockQuantity`` is set per read."""
        key = (page, size, category, q)
        cached = self._listings.get(key)
        if cached is not None and time.monotonic() - cached.at <= self._ttl:
            catalogue, figures = await self.reader.get(cached.ids)
            stocks, vers = [f[0] for f in figures], [f[1] for f in figures]
            fresh = (
                catalogue == cached.catalogue
                and vers == cached.vers
                and all(stock is not None for stock in stocks)
            )
            if fresh:
                rows = [
                    {**row, "stockQuantity": int(n)}
                    for row, n in zip(cached.rows, stocks, strict=True)
                ]
                return rows, cached.total
        return await self._once(("listing", *key), lambda: self._load_listing(key, shape))

    async def _load_listing(
        self,
        key: tuple[Any, ...],
        shape: Callable[[list[tuple[Goods, int]]], list[dict[str, Any]]],
    ) -> tuple[list[dict[str, Any]], int]:
        page, size, category, q = key
        # The catalogue version before the rows: rows newer than it only cost a reload later.
        catalogue, _ = await self.reader.get([])
        listed, total = await self._goods.listing(page, size, category=category, q=q)
        ids = [g.goods_id for g, _ in listed]
        _, figures = await self.reader.get(ids)
        if len(self._listings) >= MAX_PAGES:
            self._listings.clear()
        self.loads += 1
        rows = shape(listed)
        vers = [ver for _, ver in figures]
        self._listings[key] = _Listing(rows, ids, total, vers, catalogue, time.monotonic())
        return rows, total


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` holds: weak comparison (RFC 9110 13.1.2), a list, or ``*``."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def cached_answer(
    request: web.Request, data: Any, cache_control: str, msg: str = "OK"
) -> web.Response:
    """The envelope with ETag, Cache-Control and Vary; 304 with no body when the client's
    ``If-None-Match`` names this very answer."""
    body = orjson.dumps({"code": 1, "msg": msg, "data": data})
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": VARY}
    if _matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


PAGES: web.AppKey[GoodsPages] = web.AppKey("goods_pages", GoodsPages)


def install(app: web.Application, shop: Any) -> None:
    """One page cache per app (per process)."""
    app[PAGES] = GoodsPages(shop.goods, shop.clock)
