"""The in-flight bound: its settings, its path classes and how it adapts to latency."""

from __future__ import annotations

from pathlib import Path

import pytest

from miri.config import SettingsError, load_settings
from miri.server import limiter
from miri.server.limiter import (
    ADMIN,
    EXEMPT,
    ORDERS,
    OTHER,
    READS,
    STREAMS,
    InFlightBound,
    classify,
)


def _bound(tmp_path: Path, **values: object) -> InFlightBound:
    config = limiter.parse(load_settings(data_dir=tmp_path, env={}, **values))
    assert config is not None
    return InFlightBound(config)


def test_settings_from_env_toml_and_flags(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, env={}).max_in_flight == "auto"
    env = {"MIRI_MAX_IN_FLIGHT": "off"}
    assert limiter.parse(load_settings(data_dir=tmp_path, env=env)) is None
    (tmp_path / "miri.toml").write_text("max_in_flight = 40\nmax_in_flight_floor = 2\n")
    config = limiter.parse(load_settings(data_dir=tmp_path, env={}))
    assert config is not None and (config.adaptive, config.fixed) == (False, 40)
    flagged = limiter.parse(load_settings(data_dir=tmp_path, env={}, max_in_flight="auto"))
    assert flagged is not None and flagged.adaptive and flagged.floor == 2


@pytest.mark.parametrize(
    "values",
    [
        {"max_in_flight": "lots"},
        {"max_in_flight": "0"},
        {"max_in_flight_floor": 0},
        {"max_in_flight_floor": 100, "max_in_flight_ceiling": 50},
        {"overload_retry_after": 0},
        {"max_in_flight_latency": 0},
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, values: dict[str, object]) -> None:
    with pytest.raises(SettingsError):
        load_settings(data_dir=tmp_path, env={}, **values)


def test_path_classes() -> None:
    assert classify("GET", "/api/health") == EXEMPT
    assert classify("GET", "/metrics") == EXEMPT
    assert classify("POST", "/api/auth/orders") == ORDERS
    assert classify("POST", "/api/auth/orders/from-wishlist") == ORDERS
    assert classify("GET", "/api/auth/orders") == READS
    assert classify("GET", "/api/goods/7/stock") == READS
    assert classify("GET", "/api/admin/stats") == ADMIN
    assert classify("POST", "/api/login") == OTHER
    assert classify("GET", "/api/auth/goods/3/queue/stream") == STREAMS


def _windows(bound: InFlightBound, latency: float, count: int, now: float) -> float:
    """``count`` windows of samples at ``latency`` s with the bound full; the clock after."""
    for _ in range(count):
        bound.in_flight = bound.limit  # the bound is what holds the work back
        bound._peak = bound.limit
        for _ in range(limiter.WINDOW_SAMPLES):
            bound.sample(latency, now)
        now += limiter.WINDOW_SECONDS
    return now


def test_adaptive_bound_starts_open_cuts_over_budget_and_grows_back(tmp_path: Path) -> None:
    bound = _bound(tmp_path, max_in_flight_floor=8, max_in_flight_ceiling=400)
    assert bound.limit == 400  # a fresh server refuses nothing it can answer in time
    now = _windows(bound, 0.400, 3, 1.0)  # four times the 100 ms budget: cut at once
    assert bound.limit <= 400 * 0.5**2  # halved per window (four times over: sqrt 4 = 2)
    now = _windows(bound, 0.500, 50, now)
    assert bound.limit == 8  # never below the floor
    now = _windows(bound, 0.010, 30, now)  # well inside the budget, and the bound is full
    grown = bound.limit
    assert grown > 8 * 2
    now = _windows(bound, 0.010, 400, now)
    assert bound.limit == 400  # never above the ceiling
    assert bound.admin_limit == 400 * limiter.ADMIN_FACTOR


def test_a_rise_in_latency_under_the_budget_still_shrinks_the_bound(tmp_path: Path) -> None:
    bound = _bound(tmp_path, max_in_flight_latency=1.0)
    now = _windows(bound, 0.010, 40, 1.0)
    assert bound.limit == 512
    _windows(bound, 0.060, 10, now)  # six times the long-term figure, far under 1 s
    assert bound.limit < 300


def test_fixed_bound_reports_itself(tmp_path: Path) -> None:
    bound = _bound(tmp_path, max_in_flight="4")
    report = bound.report()
    assert report["mode"] == "fixed" and report["limit"] == 4 and report["adminLimit"] == 8
    assert report["inFlight"] == {"orders": 0, "reads": 0, "admin": 0, "other": 0, "streams": 0}


def test_retry_after_grows_with_the_clients_refused_and_comes_back(tmp_path: Path) -> None:
    bound = _bound(tmp_path, max_in_flight="8")
    assert bound.pace(100.0) == 1  # the first look only marks the counts
    bound.admitted += 5000  # 5,000 let in a second: refusals aimed at 500 a second
    bound.shed_by[limiter.ORDERS] += 2400  # 2,400 refused in that second, told 1-2 s (1.5 s)
    assert bound.pace(101.0) == 5  # ~3,600 clients waiting: 480 a second if each waits 7.5 s
    bound.admitted += 5000
    bound.shed_by[limiter.READS] += 480  # they waited: 480 refusals in the next second
    assert bound.pace(102.0) == 5
    bound.shed_by[limiter.ORDERS] += 90_000  # and nobody let in: at least 100 a second
    assert bound.pace(103.0) == limiter.MAX_RETRY
    assert bound.pace(104.0) == 1  # nobody refused any more: back to the configured figure
    refusal = bound.refusal(_mocked("POST", "/api/auth/orders"))
    assert refusal.status == 503 and refusal.headers["Retry-After"] in ("1", "2")


def test_refused_crowds_are_told_different_moments_to_come_back(tmp_path: Path) -> None:
    """A crowd refused at once and told the same second would come back as one wave."""
    bound = _bound(tmp_path, max_in_flight="8", overload_retry_after=4)
    given = [
        int(bound.refusal(_mocked("POST", "/api/auth/orders")).headers["Retry-After"])
        for _ in range(500)
    ]
    assert set(given) == {4, 5, 6, 7, 8}  # from the figure to twice it, evenly
    assert sum(given) / len(given) == 6  # 1.5 times the figure: what the pacing counts on


def test_a_lagging_event_loop_cuts_the_bound_even_when_handlers_are_quick(
    tmp_path: Path,
) -> None:
    """Past a few thousand connections the queue forms before the middleware: the handlers
    answer in milliseconds while requests wait for the loop; the probe's lag is that wait."""
    bound = _bound(tmp_path, max_in_flight_floor=16, max_in_flight_ceiling=400)
    now = 1.0
    for _ in range(10):  # quick handlers, a bound half used (no handler-side reason to cut)
        for _ in range(5):
            bound.probed(0.300)  # the loop wakes its timers 300 ms late
        bound._peak = 100
        for _ in range(limiter.WINDOW_SAMPLES):
            bound.sample(0.002, now)
        now += limiter.WINDOW_SECONDS
    assert bound.limit == 16, bound.limit
    assert bound.report()["lagMs"] == 300.0
    for _ in range(40):  # the loop keeps up again: the bound grows back
        bound.probed(0.0005)
        bound.in_flight = bound._peak = bound.limit
        for _ in range(limiter.WINDOW_SAMPLES):
            bound.sample(0.002, now)
        now += limiter.WINDOW_SECONDS
    assert bound.limit > 100, bound.limit


def test_an_unused_bound_on_a_quiet_loop_learns_nothing(tmp_path: Path) -> None:
    bound = _bound(tmp_path)
    now = 1.0
    for _ in range(
        50
    ):  # two requests in flight, slow ones, the loop on time: not the bound's doing
        bound.probed(0.001)
        bound._peak = 2
        for _ in range(limiter.WINDOW_SAMPLES):
            bound.sample(0.5, now)
        now += limiter.WINDOW_SECONDS
    assert bound.limit == 512


def _mocked(method: str, path: str):
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request(method, path)


class _Seconds:
    """Drives ``pace`` once a second with the refusals and admissions of that second."""

    def __init__(self, bound: InFlightBound) -> None:
        self.bound, self.now = bound, 100.0
        bound.pace(self.now)

    def __call__(self, refused: int, admitted: int = 100) -> None:
        self.now += 1.0
        self.bound.shed_by[ORDERS] += refused
        self.bound.admitted += admitted
        self.bound.pace(self.now)

    def open_for(self) -> int:
        """Seconds of nobody refused until the bound refuses again."""
        for n in range(1, 1000):
            self(0, 5000)
            if not self.bound.report()["open"]:
                return n
        raise AssertionError("the bound never closed")


def test_clients_that_ignore_retry_after_open_the_bound_for_a_while(tmp_path: Path) -> None:
    """Refusing a client that sends again at once only makes the worker spin: once the longest
    hint is ignored second after second, the bound lets everyone in, then tries again."""
    bound = _bound(tmp_path)
    second = _Seconds(bound)
    second(100_000)  # 100,000 refusals in a second (100 let in): the hint goes to its longest
    assert bound.retry_after == str(limiter.MAX_RETRY)
    for _ in range(limiter.IGNORED_SECONDS - 1):
        second(20_000)  # told 30-60 s, and back within the second
        assert not bound.report()["open"] and bound.limit == 512
    second(20_000)
    assert bound.report()["open"] and bound.limit == limiter.OPEN_LIMIT  # nobody is refused
    assert second.open_for() == limiter.OPEN_SECONDS
    assert bound.limit == 512 and bound.admin_limit == 1024  # refusing again, where it was
    for _ in range(limiter.IGNORED_SECONDS + 1):  # still ignored: open again, twice as long
        second(100_000)
    assert bound.report()["open"]
    assert second.open_for() == 2 * limiter.OPEN_SECONDS


def test_clients_that_wait_as_told_never_open_the_bound(tmp_path: Path) -> None:
    bound = _bound(tmp_path)
    second = _Seconds(bound)
    second(100_000)  # a huge crowd refused at once: the longest hint
    assert bound.retry_after == str(limiter.MAX_RETRY)
    for _ in range(20):
        second(40)  # they wait as told: a few refused a second, under the pacing's aim
        assert not bound.report()["open"] and bound.limit == 512


def test_a_fixed_bound_holds_whatever_the_clients_do(tmp_path: Path) -> None:
    bound = _bound(tmp_path, max_in_flight="8")
    second = _Seconds(bound)
    for _ in range(20):
        second(20_000)
    assert not bound.report()["open"] and bound.limit == 8


def test_a_sale_opening_after_a_quiet_spell_tells_the_crowd_seconds_not_a_minute(
    tmp_path: Path,
) -> None:
    """Nobody was let in the second before the opening, which says nothing of what the worker
    can do: the pacing counts at least what the floor admits within the latency budget."""
    bound = _bound(tmp_path)  # floor 128, 30 ms: at least ~4,300 admitted a second
    second = _Seconds(bound)
    for _ in range(5):
        second(0, 0)  # quiet: the shop waits for the sale
    assert bound.retry_after == "1"
    second(4_800, 141)  # 5,000 connect at once: 141 let in (so far), 4,800 refused
    # aimed at ~430 a second (a tenth of 4,300): they come back over 12-24 s, not 30-60 s
    assert 1 < int(bound.retry_after) <= 12
    for _ in range(5):
        second(250, 5_000)  # they wait as told, and the worker serves its fill
        assert int(bound.retry_after) <= 12 and not bound.report()["open"]
