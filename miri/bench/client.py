"""The load driver: buyers ordering over keep-alive HTTP connections, or straight into the services.

Two modes:

- **closed loop** (default): ``concurrency`` workers, each with one request in flight. A buyer
  whose order was accepted goes back into the queue and orders again; a buyer told ``SOLD_OUT``
  (or that their per-buyer limit is reached) is done. The run ends when every buyer has been told,
  or at the time / request bound. Latency is measured from the moment the request was sent.
- **open loop** (``rate``): requests are *scheduled* at a fixed arrival rate and latency is
  measured from the *intended* send time, so a stalled server (or a client that had to wait for a
  free connection) shows up in the tail instead of silently slowing the arrivals down (the
  coordinated-omission trap described by Gil Tene and avoided by wrk2).

Latencies go into one HdrHistogram per outcome class (microseconds, 3 significant digits).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from hdrh.histogram import HdrHistogram

# Outcome classes. ``sold_out`` is the expected end of a flash sale for most buyers and never an
# error; ``limit`` (LIMIT_EXCEEDED) and ``not_open`` (SALE_NOT_OPEN) are expected refusals too.
ACCEPTED, SOLD_OUT, LIMIT, NOT_OPEN, RATE_LIMITED, ERROR = (
    "accepted",
    "sold_out",
    "limit",
    "not_open",
    "rate_limited",
    "error",
)
OUTCOMES = (ACCEPTED, SOLD_OUT, LIMIT, NOT_OPEN, RATE_LIMITED, ERROR)
# Latency of every answer together: what wrk reports (it cannot split latency by outcome).
ALL = "all"
LATENCY_CLASSES = (*OUTCOMES, ALL)
HIST_MAX_US = 120_000_000  # 2 minutes
MAX_ERRORS_PER_BUYER = 5  # a buyer who keeps failing gives up (bounded run)


def classify(status: int, code: str | None) -> str:
    if status == 201:
        return ACCEPTED
    if status == 409 and code == "SOLD_OUT":
        return SOLD_OUT
    if status == 409 and code == "LIMIT_EXCEEDED":
        return LIMIT
    if status == 409 and code == "SALE_NOT_OPEN":
        return NOT_OPEN
    if status == 429:
        return RATE_LIMITED
    return ERROR


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


@dataclass(frozen=True)
class Buyer:
    user_id: int
    token: str


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status (or the status the API would give, in-process); 0 = no answer
    code: str | None = None  # the envelope's machine code on failure
    detail_ids: tuple[int, ...] = ()  # orderDetailIds of an accepted order


class Target(Protocol):
    """Something buyers can order from: a server over HTTP, or the services in-process."""

    async def order(self, buyer: Buyer) -> Answer: ...

    async def stock(self) -> int | None: ...


@dataclass
class LoadResult:
    started: float = 0.0  # perf_counter at opening
    sell_out_s: float | None = None  # last accepted answer, seconds after opening
    duration_s: float = 0.0  # until every buyer was told (or a bound stopped the run)
    requests: int = 0
    accepted_units: int = 0
    outcomes: Counter = field(default_factory=Counter)
    status_counts: Counter = field(default_factory=Counter)
    error_codes: Counter = field(default_factory=Counter)
    hist: dict[str, HdrHistogram] = field(default_factory=dict)
    # per tenth of a second since opening: outcome -> count
    timeline: dict[int, Counter] = field(default_factory=dict)
    stock_samples: list[tuple[float, int]] = field(default_factory=list)
    detail_ids: list[int] = field(default_factory=list)
    buyers_told: int = 0
    buyers_gave_up: int = 0
    stopped_by: str = "sold out"  # or "time bound", "request bound"
    mode: str = "closed"
    rate: float | None = None
    late_sends: int = 0  # open loop: sends that left more than 10 ms after their intended time
    cpu_s: float = 0.0  # CPU time this process spent during the load phase (all its threads)
    server_cpu_s: float | None = None  # CPU time of the server process(es) meanwhile, if known

    def record(self, answer: Answer, latency_s: float, done_at: float, quantity: int) -> str:
        outcome = classify(answer.status, answer.code)
        self.requests += 1
        self.outcomes[outcome] += 1
        self.status_counts[str(answer.status)] += 1
        if outcome == ERROR:
            self.error_codes[f"{answer.status} {answer.code or ''}".strip()] += 1
        hist = self.hist.get(outcome)
        if hist is None:
            hist = self.hist[outcome] = new_histogram()
        hist.record_value(max(1, min(int(latency_s * 1e6), HIST_MAX_US)))
        since = done_at - self.started
        tick = int(since * 10)
        bucket = self.timeline.get(tick)
        if bucket is None:
            bucket = self.timeline[tick] = Counter()
        bucket[outcome] += 1
        if outcome == ACCEPTED:
            self.accepted_units += quantity
            self.detail_ids.extend(answer.detail_ids)
            self.sell_out_s = since
        return outcome


Progress = Callable[[LoadResult], None]


async def _sample_stock(target: Target, result: LoadResult, stop: asyncio.Event) -> None:
    """Remaining stock once a second (and at the start), for the plot and the progress bar."""
    while not stop.is_set():
        try:
            stock = await target.stock()
        except Exception:  # noqa: BLE001 - a missed sample is only a gap in the plot
            stock = None
        if stock is not None:
            result.stock_samples.append((time.perf_counter() - result.started, stock))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


async def _ticker(result: LoadResult, progress: Progress | None, stop: asyncio.Event) -> None:
    while not stop.is_set() and progress is not None:
        progress(result)
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass


async def _guarded(target: Target, buyer: Buyer) -> Answer:
    try:
        return await target.order(buyer)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed request is an "error" outcome
        return Answer(0, exc.__class__.__name__)


async def run_load(
    target: Target,
    buyers: list[Buyer],
    *,
    quantity: int,
    concurrency: int,
    rate: float | None = None,
    max_seconds: float = 120.0,
    max_requests: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Drive ``target`` until every buyer was told the goods are gone, or a bound is hit."""
    result = LoadResult(mode="open" if rate else "closed", rate=rate)
    if max_requests is None:
        max_requests = 20 * len(buyers) + 100_000
    result.started = time.perf_counter()
    cpu = time.process_time()
    stop = asyncio.Event()
    helpers = [
        asyncio.create_task(_sample_stock(target, result, stop)),
        asyncio.create_task(_ticker(result, progress, stop)),
    ]
    try:
        if rate:
            await _open_loop(
                target, buyers, quantity, concurrency, rate, max_seconds, max_requests, result
            )
        else:
            await _closed_loop(
                target, buyers, quantity, concurrency, max_seconds, max_requests, result
            )
    finally:
        result.duration_s = time.perf_counter() - result.started
        result.cpu_s = time.process_time() - cpu
        stop.set()
        await asyncio.gather(*helpers, return_exceptions=True)
    try:
        final = await target.stock()
        if final is not None:
            result.stock_samples.append((result.duration_s, final))
    except Exception:  # noqa: BLE001
        pass
    if progress is not None:
        progress(result)
    return result


def _after(outcome: str, buyer: Buyer, errors: Counter, result: LoadResult) -> bool:
    """True when the buyer goes on ordering."""
    if outcome in (SOLD_OUT, LIMIT):
        result.buyers_told += 1
        return False
    if outcome == ERROR:
        errors[buyer.user_id] += 1
        if errors[buyer.user_id] >= MAX_ERRORS_PER_BUYER:
            result.buyers_gave_up += 1
            return False
    return True


async def _closed_loop(
    target: Target,
    buyers: list[Buyer],
    quantity: int,
    concurrency: int,
    max_seconds: float,
    max_requests: int,
    result: LoadResult,
) -> None:
    queue: deque[Buyer] = deque(buyers)
    errors: Counter = Counter()
    deadline = result.started + max_seconds
    in_flight = 0
    wake = asyncio.Event()  # set when a buyer comes back into the queue or nothing is in flight

    async def worker() -> None:
        nonlocal in_flight
        clock = time.perf_counter
        while True:
            if not queue:
                # Buyers still in flight may come back (accepted: they order again).
                if in_flight == 0:
                    wake.set()
                    return
                wake.clear()
                await wake.wait()
                continue
            now = clock()
            if now >= deadline:
                result.stopped_by = "time bound"
                return
            if result.requests + in_flight >= max_requests:
                result.stopped_by = "request bound"
                return
            buyer = queue.popleft()
            in_flight += 1
            sent = clock()
            answer = await _guarded(target, buyer)
            done = clock()
            in_flight -= 1
            outcome = result.record(answer, done - sent, done, quantity)
            if _after(outcome, buyer, errors, result):
                queue.append(buyer)
                wake.set()
            elif in_flight == 0:
                wake.set()

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))


async def _open_loop(
    target: Target,
    buyers: list[Buyer],
    quantity: int,
    concurrency: int,
    rate: float,
    max_seconds: float,
    max_requests: int,
    result: LoadResult,
) -> None:
    """Fixed arrival rate; at most ``concurrency`` requests on the wire (the rest wait for a
    connection, and that wait counts, since latency starts at the intended send time)."""
    queue: deque[Buyer] = deque(buyers)
    errors: Counter = Counter()
    interval = 1.0 / rate
    wire = asyncio.Semaphore(max(1, concurrency))
    pending: set[asyncio.Task] = set()
    max_pending = max(10 * concurrency, 1000)  # memory bound; sends beyond it are late
    start = result.started
    clock = time.perf_counter

    async def one(buyer: Buyer, intended: float) -> None:
        async with wire:
            answer = await _guarded(target, buyer)
        done = clock()
        outcome = result.record(answer, done - intended, done, quantity)
        if _after(outcome, buyer, errors, result):
            queue.append(buyer)

    i = 0
    while True:
        intended = start + i * interval
        if intended - start >= max_seconds:
            result.stopped_by = "time bound"
            break
        if i >= max_requests:
            result.stopped_by = "request bound"
            break
        if not queue:
            if not pending:
                break  # every buyer was told
            # Nobody to send for right now: wait for an answer, keep the schedule.
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            continue
        wait = intended - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.01:
            result.late_sends += 1
        while len(pending) >= max_pending:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(one(queue.popleft(), intended))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    if pending:
        await asyncio.wait(pending, timeout=max(1.0, start + max_seconds + 30 - clock()))
        for task in pending:
            task.cancel()


# -- targets ---------------------------------------------------------------------------------------
class HttpTarget:
    """POST /api/auth/orders over a pool of ``concurrency`` keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        goods_id: int,
        quantity: int,
        concurrency: int,
        *,
        path: str = "/api/auth/orders",
        timeout: float = 30.0,
    ) -> None:
        import aiohttp

        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + path
        self.goods_id = goods_id
        self._aiohttp = aiohttp
        self._body = _order_body(goods_id, quantity)
        self._headers: dict[int, dict[str, str]] = {}
        self._connector = aiohttp.TCPConnector(
            limit=concurrency, limit_per_host=concurrency, keepalive_timeout=60, ttl_dns_cache=None
        )
        self.session = aiohttp.ClientSession(
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )

    async def __aenter__(self) -> HttpTarget:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self.session.close()

    def _headers_for(self, buyer: Buyer) -> dict[str, str]:
        headers = self._headers.get(buyer.user_id)
        if headers is None:
            headers = self._headers[buyer.user_id] = _order_headers(buyer)
        return headers

    async def order(self, buyer: Buyer) -> Answer:
        async with self.session.post(
            self.url, data=self._body, headers=self._headers_for(buyer)
        ) as resp:
            raw = await resp.read()
            status = resp.status
        return _answer(status, raw)

    async def stock(self) -> int | None:
        async with self.session.get(f"{self.base_url}/api/goods/{self.goods_id}/stock") as resp:
            if resp.status != 200:
                return None
            return int((await resp.json())["data"]["stockQuantity"])


class RawTarget:
    """The same requests as ``HttpTarget`` through ``rawhttp.RawClient`` (``--client raw``)."""

    def __init__(
        self,
        base_url: str,
        goods_id: int,
        quantity: int,
        concurrency: int,
        *,
        path: str = "/api/auth/orders",
        timeout: float = 30.0,
    ) -> None:
        from miri.bench.rawhttp import RawClient

        self.base_url = base_url.rstrip("/")
        self.goods_id = goods_id
        self._path = path
        self._pool = RawClient(self.base_url, concurrency, timeout)
        self._probe = RawClient(self.base_url, 1, timeout)
        self._body = _order_body(goods_id, quantity)
        self._requests: dict[int, bytes] = {}
        self._stock_request = self._probe.build("GET", f"/api/goods/{goods_id}/stock", {})

    async def __aenter__(self) -> RawTarget:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._pool.close()
        await self._probe.close()

    async def order(self, buyer: Buyer) -> Answer:
        data = self._requests.get(buyer.user_id)
        if data is None:
            data = self._requests[buyer.user_id] = self._pool.build(
                "POST", self._path, _order_headers(buyer), self._body
            )
        status, raw = await self._pool.request(data)
        return _answer(status, raw)

    async def stock(self) -> int | None:
        status, raw = await self._probe.request(self._stock_request)
        if status != 200:
            return None
        return int(orjson.loads(raw)["data"]["stockQuantity"])


def _order_body(goods_id: int, quantity: int) -> bytes:
    """The one order every buyer of a run sends."""
    return orjson.dumps({"goodsId": goods_id, "quantity": quantity, "address": "Seoul Bench 1"})


def _order_headers(buyer: Buyer) -> dict[str, str]:
    return {"Authorization": f"Bearer {buyer.token}", "Content-Type": "application/json"}


def _answer(status: int, raw: bytes) -> Answer:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Answer(status, "NOT_JSON")
    if not isinstance(body, dict):
        return Answer(status, "NOT_AN_ENVELOPE")
    if status == 201:
        items = (body.get("data") or {}).get("items") or ()
        return Answer(status, None, tuple(int(i["orderDetailId"]) for i in items))
    return Answer(status, body.get("error"))


class SpreadTarget:
    """Several hosts of one shop as one target: each buyer always orders from host
    ``user_id % N`` (a load balancer with client affinity), so the load splits evenly and a
    buyer's requests keep their connection's host. Stock is read from the first host (all read
    the one Redis)."""

    def __init__(self, targets: list[HttpTarget] | list[RawTarget]) -> None:
        if not targets:
            raise ValueError("a spread target needs at least one host")
        self.targets = list(targets)
        self.goods_id = targets[0].goods_id
        self._n = len(self.targets)

    async def __aenter__(self) -> SpreadTarget:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        for target in self.targets:
            await target.close()

    async def order(self, buyer: Buyer) -> Answer:
        return await self.targets[buyer.user_id % self._n].order(buyer)

    async def stock(self) -> int | None:
        return await self.targets[0].stock()


class RawBareTarget(RawTarget):
    def __init__(self, base_url: str, concurrency: int) -> None:
        super().__init__(base_url, 1, 1, concurrency, path="/order")

    async def stock(self) -> int | None:
        return None


class InProcessTarget:
    """Calls ``shop.orders.placing.place`` directly: the core's own ceiling, no HTTP."""

    def __init__(self, shop: Any, goods_id: int, quantity: int) -> None:
        from miri.domain.errors import RateLimited, ShopError
        from miri.server.api import status_of

        self._shop = shop
        self.goods_id = goods_id
        self._quantity = quantity
        self._shop_error = ShopError
        self._rate_limited = RateLimited
        self._status_of = status_of

    async def order(self, buyer: Buyer) -> Answer:
        try:
            placed = await self._shop.orders.placing.place(
                buyer.user_id, self.goods_id, self._quantity, "Seoul Bench 1"
            )
        except self._shop_error as exc:
            return Answer(self._status_of(exc.code), exc.code)
        return Answer(201, None, tuple(i.order_item_id for i in placed.items))

    async def stock(self) -> int | None:
        return await self._shop.goods.live_stock(self.goods_id)


class BareTarget(HttpTarget):
    """The ceiling: the same client against a bare aiohttp JSON endpoint (``miri.bench.bare``).

    It never sells out, so the run is bounded by a request count instead.
    """

    def __init__(self, base_url: str, concurrency: int) -> None:
        super().__init__(base_url, 1, 1, concurrency, path="/order")

    async def stock(self) -> int | None:
        return None


async def run_fixed(
    target: Target,
    buyers: list[Buyer],
    *,
    requests: int,
    concurrency: int,
    max_seconds: float = 60.0,
    progress: Progress | None = None,
) -> LoadResult:
    """A closed loop of exactly ``requests`` requests (for the bare ceiling)."""
    result = LoadResult(mode="closed")
    result.started = time.perf_counter()
    cpu = time.process_time()
    deadline = result.started + max_seconds
    left = requests
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(result, progress, stop))

    async def worker(offset: int) -> None:
        nonlocal left
        clock = time.perf_counter
        n = offset
        while left > 0 and clock() < deadline:
            left -= 1
            buyer = buyers[n % len(buyers)]
            n += concurrency
            sent = clock()
            answer = await _guarded(target, buyer)
            done = clock()
            result.record(answer, done - sent, done, 0)

    try:
        await asyncio.gather(*(worker(i) for i in range(max(1, concurrency))))
    finally:
        result.duration_s = time.perf_counter() - result.started
        result.cpu_s = time.process_time() - cpu
        stop.set()
        await ticker
    if left > 0:
        result.stopped_by = "time bound"
    return result
