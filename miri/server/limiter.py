"""A bound on the requests in flight in this worker, adapted to the latency it measures.

Past its capacity a server that takes every request queues work it cannot finish in time: every
buyer waits, times out and retries. With a bound, the requests over it get an immediate 503
``UNAVAILABLE`` with ``Retry-After``, before any work is done (no token check, no body read,
nothing reserved), and the ones inside it stay quick.

The bound adapts like the gradient limit of Netflix's concurrency-limits, with a latency budget:
every window of samples (orders and reads) compares the short-term latency (the window's mean time
in handlers plus the event loop's lag) with a long-term average of it. The lag counts because the
time in handlers is not all a buyer waits: with thousands of connections requests also queue in
front of the middleware (read and parsed, not yet run), where no handler sees them, and a timer
that measures how late it fires sees that wait. Over the budget (``max_in_flight_latency``) the
bound is cut at once (by the square root of how far over); under it, while short and long agree,
it grows by its square root (room to find more throughput), and when latency rises above the
long-term figure times a tolerance it shrinks in proportion. Never below the floor nor above the
ceiling, where it starts: a burst the shop answers in time is never refused. A bound that is not
used (fewer than half of it in flight) on a loop that keeps time learns nothing: slow requests
then are not the bound's doing.

A refused buyer is told when to come back, and the hint is spread (evenly from the pacing's figure
to twice it), so a crowd refused at the same moment does not come back at the same moment either.

Refusing helps only if the refused go away for a while. Clients that send again at once (a script,
a buyer pressing reload) turn each refusal into the next request: the worker spins refusing, and
the orders let in wait behind the spin for every step they take (measured: 141 orders/s against
20,000 refusals/s at 2,000 connections, where taking everything gave 6,600 orders/s). For such
clients a slow answer is the only brake (a client waiting for its answer sends nothing else), so
when the hint is at its longest and the refusals still run over what the pacing aims at, second
after second, the bound opens: it lets everything in for a while (``OPEN_SECONDS``, twice as long
each time it opens again in a row), then tries refusing again.

Health checks and metrics are never refused, nor are event streams (they stay open, idle, and a
browser's EventSource does not come back after a 503); admin requests have twice the bound, so
they are the last refused. The hot path is a dict lookup, two integer compares and a few additions
per request: ``benchmarks/limiter.py`` measures it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from miri.config import Settings
from miri.domain.events import new_event_id

# Path classes: where a request goes, for the bound and for /metrics.
EXEMPT = -1  # health and metrics: never bounded, never refused
ORDERS, READS, ADMIN, OTHER, STREAMS = 0, 1, 2, 3, 4
CLASSES = ("orders", "reads", "admin", "other", "streams")

ADMIN_FACTOR = 2  # admin requests are admitted up to twice the bound
# Refusals per second a worker aims at: a tenth of its admitted requests, at least 100. A refusal
# costs more than its own CPU (in pairs at 2,000 connections, aiming at a tenth took 11-30% more
# orders/s than aiming at half, four of four), and a client waiting out a longer hint costs nothing.
SHED_SHARE = 0.1
SHED_MIN = 100
MAX_RETRY = 30  # seconds: the pacing's figure is at most this (the hints given, up to twice it)
IGNORED_SECONDS = 3  # seconds in a row of hints ignored before the bound opens
OPEN_SECONDS = 10.0  # how long the bound first stays open; doubled each time in a row
OPEN_MOST = 80.0
OPEN_LIMIT = 1_000_000  # the limit while open: more than any worker holds
PROBE_EVERY = 0.005  # seconds between two looks at the event loop's lag
WINDOW_SECONDS = 0.05  # a window closes after this long...
WINDOW_SAMPLES = 20  # ...and at least this many samples
TOLERANCE = 1.5  # short-term latency may be this much above the long-term before the bound shrinks
LONG_WEIGHT = 0.05  # how fast the long-term latency follows the windows (~20 windows)
SMOOTHING = 0.3  # how much of each window's new estimate is taken

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REFUSAL = orjson.dumps(
    {
        "code": -1,
        "msg": "the shop is busy; try again in a moment",
        "error": "UNAVAILABLE",
        "data": None,
    }
)
_EXEMPT_PATHS = ("/api/health", "/metrics")


@dataclass(frozen=True)
class BoundSettings:
    """What ``MIRI_MAX_IN_FLIGHT`` and its companions ask for; ``None`` from :func:`parse` when off."""

    adaptive: bool
    floor: int
    ceiling: int
    fixed: int  # the bound when not adaptive; the first figure when adaptive
    retry_after: int
    latency: float  # seconds: the mean time in handlers the adaptive bound keeps under


def parse(settings: Settings) -> BoundSettings | None:
    """The bound the settings ask for, or None for ``off``. Raises ValueError on a bad value."""
    raw = str(settings.max_in_flight).strip().lower()
    floor, ceiling = settings.max_in_flight_floor, settings.max_in_flight_ceiling
    if floor < 1 or ceiling < floor:
        raise ValueError(
            f"max_in_flight_floor ({floor}) must be at least 1 and at most"
            f" max_in_flight_ceiling ({ceiling})"
        )
    retry_after, latency = settings.overload_retry_after, settings.max_in_flight_latency
    if retry_after < 1:
        raise ValueError("overload_retry_after must be at least 1 (seconds)")
    if not 0 < latency <= 60:
        raise ValueError(f"max_in_flight_latency must be over 0 and at most 60 s, not {latency}")
    if raw == "off":
        return None
    if raw == "auto":  # start open: a burst the shop answers in time is never refused
        return BoundSettings(True, floor, ceiling, ceiling, retry_after, latency)
    try:
        fixed = int(raw)
    except ValueError:
        raise ValueError(
            f"max_in_flight must be 'auto', 'off' or a whole number, not {raw!r}"
        ) from None
    if fixed < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {fixed}")
    return BoundSettings(False, fixed, fixed, fixed, retry_after, latency)


def classify(method: str, path: str) -> int:
    """The path class of a request: what the bound counts it as."""
    if path in _EXEMPT_PATHS:
        return EXEMPT
    if path.endswith("/stream"):
        # Server-sent events stay open for minutes: counting them would fill the bound with
        # idle waiters, and a browser's EventSource gives up for good on a 503.
        return STREAMS
    if path.startswith("/api/admin/"):
        return ADMIN
    if path.startswith("/api/auth/orders") and method == "POST":
        return ORDERS
    if method in ("GET", "HEAD"):
        return READS
    return OTHER


class InFlightBound:
    """The bound and its figures for one worker process (one event loop: no locks needed)."""

    __slots__ = (
        "adaptive",
        "floor",
        "ceiling",
        "limit",
        "admin_limit",
        "retry_after",
        "latency",
        "in_flight",
        "in_flight_by",
        "shed_by",
        "_estimate",
        "_long",
        "_sum",
        "_count",
        "_peak",
        "_window_end",
        "_classes",
        "_min_retry",
        "_paced_at",
        "_paced_shed",
        "_paced_admitted",
        "admitted",
        "lag",
        "_lag_sum",
        "_lag_count",
        "_paced_lag",
        "_retry_values",
        "_refused",
        "_ignored",
        "_open_until",
        "_open_for",
    )

    def __init__(self, config: BoundSettings) -> None:
        self.adaptive = config.adaptive
        self.floor = config.floor
        self.ceiling = config.ceiling
        self.retry_after = str(config.retry_after)
        self._retry_values = _spread(config.retry_after)
        self._refused = 0
        self._ignored = 0  # paced seconds in a row with the hints ignored
        self._open_until = 0.0  # while open: when to try refusing again (0: refusing)
        self._open_for = OPEN_SECONDS
        self.lag = 0.0  # seconds: how late the last probe woke (the wait before the middleware)
        self._lag_sum = 0.0
        self._lag_count = 0
        self._paced_lag = [0.0, 0]  # the probes' sum and count since the last pacing (report)
        self._min_retry = config.retry_after
        self._paced_at = 0.0
        self._paced_shed = 0
        self._paced_admitted = 0
        self.admitted = 0  # requests let in, ever (for the pacing of Retry-After)
        self.latency = config.latency
        self.in_flight = 0
        self.in_flight_by = [0] * len(CLASSES)
        self.shed_by = [0] * len(CLASSES)
        self._estimate = float(config.fixed)
        self._long = 0.0  # long-term latency; 0 until the first window
        self._sum = 0.0
        self._count = 0
        self._peak = 0  # most in flight during the window
        self._window_end = 0.0
        self._classes: dict[Any, int] = {}  # route -> path class, filled as routes are used
        self.limit = config.fixed
        self.admin_limit = config.fixed * ADMIN_FACTOR

    def class_of(self, request: web.Request) -> int:
        """The path class, looked up once per route (unmatched paths are classified each time)."""
        route = request.match_info.route
        found = self._classes.get(route)
        if found is not None:
            return found
        found = classify(request.method, request.path)
        if route.resource is not None:  # a system route (404, 405) is new for every request
            self._classes[route] = found
        return found

    def sample(self, seconds: float, now: float) -> None:
        """One answered request's time in the handler; closes the window when it is due."""
        self._sum += seconds
        self._count += 1
        if now >= self._window_end and self._count >= WINDOW_SAMPLES:
            self._adapt(now)

    def probed(self, lag: float) -> None:
        """One look at the event loop: how late a timer fired (seconds)."""
        self.lag = lag
        self._lag_sum += lag
        self._lag_count += 1
        paced = self._paced_lag
        paced[0] += lag
        paced[1] += 1

    def _adapt(self, now: float) -> None:
        lag = self._lag_sum / self._lag_count if self._lag_count else self.lag
        short = self._sum / self._count + lag  # what a buyer waits, about: loop + handler
        peak = self._peak
        self._sum = 0.0
        self._count = 0
        self._lag_sum = 0.0
        self._lag_count = 0
        self._peak = self.in_flight
        self._window_end = now + WINDOW_SECONDS
        if self._open_until:
            return  # everything is let in: the latency says nothing about the bound
        long = self._long
        long = short if long == 0.0 else long + (short - long) * LONG_WEIGHT
        if long > 2 * short:  # latency fell for good (the work changed): catch up faster
            long *= 0.9
        self._long = long
        if peak < self._estimate / 2 and lag * 2 < self.latency:
            return  # the bound is not what holds the work back: nothing learnt
        estimate = self._estimate
        if short > self.latency:
            # Over the budget: cut at once, by the square root of how far over (at most by half),
            # so a latency the bound cannot fix (a busy machine) does not drive it to the floor.
            estimate *= max(0.5, math.sqrt(self.latency / short))
        else:
            gradient = max(0.5, min(1.0, TOLERANCE * long / short)) if short > 0 else 1.0
            if gradient < 1.0:  # latency rising fast: shrink in proportion, smoothed
                target = estimate * gradient + math.sqrt(estimate)
                estimate += (target - estimate) * SMOOTHING
            else:  # inside the budget and steady: room to find more throughput
                estimate += math.sqrt(estimate)
        estimate = max(float(self.floor), min(float(self.ceiling), estimate))
        self._estimate = estimate
        self.limit = int(estimate)
        self.admin_limit = self.limit * ADMIN_FACTOR

    def pace(self, now: float) -> int:
        """Once a second: the Retry-After that keeps refusals near a tenth of the admitted requests.

        A refusal is cheap but not free (aiohttp parses the request and writes the answer; with
        thousands of connections that costs as much as a bare endpoint's answer), and clients that
        wait as told come back at about (clients refused) / Retry-After per second. The clients
        refused are estimated as the last second's refusals times the hint they were given; the
        hint grows with them (up to ``MAX_RETRY``), so however many are refused, refusing them
        costs the worker a bounded share of its time, whatever that time is on this machine.
        """
        shed = sum(self.shed_by)
        admitted = self.admitted
        if self._paced_at:
            seconds = max(now - self._paced_at, 1e-3)
            # Clients waiting: the refusals times the mean hint they got, 1.5 times the figure
            # (see _spread); the new figure's hints average 1.5 times it too: the factors cancel.
            refused = (shed - self._paced_shed) / seconds * int(self.retry_after)
            # After a quiet spell (a sale's opening) last second's admissions say nothing of what
            # the worker can do: count at least what its floor admits at the latency measured (or
            # the budget, if less), or the whole opening crowd is told the longest hint
            # (measured: 4,800 of 5,000 connections sent away for 30-60 s).
            floor_rate = self.floor / max(self._long, self.latency)
            admitted_per_s = max((admitted - self._paced_admitted) / seconds, floor_rate)
            budget = max(SHED_MIN, SHED_SHARE * admitted_per_s)
            wanted = max(self._min_retry, min(MAX_RETRY, math.ceil(refused / budget)))
            if self.adaptive:  # a fixed bound is the operator's: it holds whatever clients do
                self._watch_hints(
                    now, int(self.retry_after), (shed - self._paced_shed) / seconds, budget
                )
            if wanted != int(self.retry_after):
                self.retry_after = str(wanted)
                self._retry_values = _spread(wanted)
        self._paced_at, self._paced_shed, self._paced_admitted = now, shed, admitted
        self._paced_lag = [0.0, 0]
        return int(self.retry_after)

    def _watch_hints(self, now: float, hint: int, refusals: float, budget: float) -> None:
        """Open the bound when the clients refused do not wait as told; close it again later."""
        if self._open_until:
            if now >= self._open_until:  # try refusing again, where the bound was
                self._open_until = 0.0
                self._ignored = 0
                self.limit = int(self._estimate)
                self.admin_limit = self.limit * ADMIN_FACTOR
            return
        if refusals <= budget:
            self._ignored = 0
            self._open_for = OPEN_SECONDS  # they wait as told: the next opening starts short
            return
        # Told to wait the longest there is, and still back within the second: hints ignored.
        self._ignored = self._ignored + 1 if hint >= MAX_RETRY else 0
        if self._ignored >= IGNORED_SECONDS:
            self._open_until = now + self._open_for
            self._open_for = min(OPEN_MOST, self._open_for * 2)
            self.limit = self.admin_limit = OPEN_LIMIT

    def refusal(self, request: web.Request) -> web.Response:
        """503 UNAVAILABLE in the envelope, with Retry-After and the request id."""
        given = request.headers.get("X-Request-Id")
        rid = given if given and _REQUEST_ID.match(given) else new_event_id()
        self._refused += 1
        values = self._retry_values
        return web.Response(
            body=_REFUSAL,
            status=503,
            headers={
                "Content-Type": "application/json",
                "Retry-After": values[self._refused % len(values)],
                "X-Request-Id": rid,
            },
        )

    def _recent_lag(self) -> float:
        """The probes' mean lag since the last pacing (within a second), else the last one's."""
        total, count = self._paced_lag
        return total / count if count else self.lag

    def report(self) -> dict[str, Any]:
        """The figures for /api/health and the dashboard."""
        return {
            "mode": "auto" if self.adaptive else "fixed",
            "open": bool(self._open_until),  # letting everything in: Retry-After was ignored
            "limit": self.limit,
            "adminLimit": self.admin_limit,
            "floor": self.floor,
            "ceiling": self.ceiling,
            "inFlight": dict(zip(CLASSES, self.in_flight_by, strict=True)),
            "shed": dict(zip(CLASSES, self.shed_by, strict=True)),
            "latencyMs": round(self._long * 1000, 3),  # the long-term mean in handlers
            "latencyTargetMs": round(self.latency * 1000, 3),
            "retryAfter": int(self.retry_after),
            "lagMs": round(self._recent_lag() * 1000, 3),  # the event loop's, of late
        }


def _spread(seconds: int) -> tuple[str, ...]:
    """The Retry-After figures given in turn: evenly from ``seconds`` to twice it (1 s: 1, 2),
    1.5 times ``seconds`` on average."""
    return tuple(str(seconds + i) for i in range(seconds + 1))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(bound: InFlightBound) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The first middleware: refuses what is over the bound, counts what is in flight."""
    perf = time.perf_counter
    in_flight_by, shed_by = bound.in_flight_by, bound.shed_by
    adaptive = bound.adaptive

    @web.middleware
    async def bound_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = bound.class_of(request)
        if kind == EXEMPT:
            return await handler(request)
        if kind == STREAMS:  # counted for /metrics only
            in_flight_by[STREAMS] += 1
            try:
                return await handler(request)
            finally:
                in_flight_by[STREAMS] -= 1
        n = bound.in_flight
        if n >= (bound.admin_limit if kind == ADMIN else bound.limit):
            shed_by[kind] += 1
            return bound.refusal(request)
        n += 1
        bound.in_flight = n
        bound.admitted += 1
        in_flight_by[kind] += 1
        if n > bound._peak:
            bound._peak = n
        started = perf()
        try:
            return await handler(request)
        finally:
            bound.in_flight -= 1
            in_flight_by[kind] -= 1
            if adaptive and kind <= READS:  # slow by design (argon2, admin reports): not a signal
                now = perf()
                bound.sample(now - started, now)

    return bound_in_flight


PUBLISH_EVERY = 1.0  # seconds between copies of the figures into the metrics registry


def publish(bound: InFlightBound, metrics: Any, published: list[int]) -> None:
    """Copy the bound's figures into the Prometheus metrics (sheds as deltas since ``published``).

    The hot path keeps plain integers; this runs once a second and at each scrape.
    """
    metrics.in_flight_limit.set(bound.limit)
    for i, name in enumerate(CLASSES):
        metrics.in_flight.labels(name).set(bound.in_flight_by[i])
        delta = bound.shed_by[i] - published[i]
        if delta:
            metrics.shed.labels(name).inc(delta)
            published[i] += delta


def publisher(
    bound: InFlightBound, metrics: Any, published: list[int]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that paces Retry-After and keeps the metrics up to date while the app
    runs (``published``: the sheds already counted in the metrics, as the app holds them)."""
    import asyncio

    async def run(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                bound.pace(time.monotonic())
                publish(bound, metrics, published)
                await asyncio.sleep(PUBLISH_EVERY)

        async def probe() -> None:
            # A timer that fires late measures the wait of everything else in the loop's queue.
            clock = time.perf_counter
            while True:
                due = clock() + PROBE_EVERY
                await asyncio.sleep(PROBE_EVERY)
                bound.probed(max(0.0, clock() - due))

        tasks = [asyncio.create_task(loop()), asyncio.create_task(probe())]
        yield
        for task in tasks:
            task.cancel()
        publish(bound, metrics, published)

    return run


BOUND: web.AppKey[InFlightBound | None] = web.AppKey("in_flight_bound")
PUBLISHED: web.AppKey[list[int]] = web.AppKey("in_flight_published")
