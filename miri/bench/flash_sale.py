"""``miri bench flash-sale``: rehearse a sale end to end and check nothing was lost or oversold.

Set-up: buyers are made through the users service directly (``add_bench_users``: one shared
password hash, no argon2 per account, personal data still encrypted), then per run one goods with
``stock`` units opening ``opens_in`` seconds ahead. At opening time every buyer orders until told
``SOLD_OUT`` (see ``client``). After the run the harness waits for the bus to drain and checks the
figures against SQLite (``miri.domain.views.bench``) and live stock.

Targets: by default a ``miri serve`` subprocess on a free loopback port (rate limits off, no
access log), driven over HTTP; ``url`` a server already running on this machine (its data dir is
needed to make buyers and to check); ``in_process`` the services themselves, no HTTP.

Engines: by default the SQLite file and the embedded Redis of the bench's data dir, shared with
the one server it starts. With ``database_url`` (a PostgreSQL server) the bench makes a fresh
schema there, generates the keys every host shares, and runs its own shop and ``hosts`` servers
(each with a data dir of its own, nothing shared on disk) on that schema and on one Redis over
TCP: ``redis_url``, or a throwaway ``redis-server`` it starts (``miri.bench.engines``). Buyers
are spread over the hosts by ``SpreadTarget``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from miri.bench import engines, report, serving, wrk
from miri.bench.client import (
    BareTarget,
    Buyer,
    HttpTarget,
    InProcessTarget,
    LoadResult,
    RawBareTarget,
    RawTarget,
    SpreadTarget,
    run_fixed,
    run_load,
)
from miri.config import Settings, load_settings
from miri.domain.views import bench as bench_views
from miri.infra.database import is_postgres
from miri.infra.processes import free_port
from miri.shop import Shop, open_shop

STRATEGIES = ("lua", "sqlite")
CLIENTS = ("aiohttp", "raw", "wrk")
GOODS_PRICE = 1000


@dataclass
class BenchOptions:
    buyers: int = 5000
    stock: int = 10000
    concurrency: int = 256
    quantity: int = 1
    per_buyer_limit: int | None = None
    payment_abandon_rate: float = 0.0
    payment_seed: int | None = 1
    opens_in: float = 3.0
    rate: float | None = None
    runs: int = 3
    strategy: str = "lua"
    compare: bool = False
    in_process: bool = False
    url: str | None = None
    admin_token: str | None = None
    data_dir: Path | None = None
    keep_data: bool = False
    max_seconds: float = 120.0  # per run, the load phase
    drain_timeout: float = 120.0
    server_workers: int | None = None
    client: str = "aiohttp"  # or "raw": the minimal keep-alive client (rawhttp)
    database_url: str | None = None  # a PostgreSQL server: the bench makes a fresh schema there
    hosts: int = 1  # `miri serve` processes sharing the one database and the one Redis
    redis_url: str | None = None  # default: embedded (SQLite), a throwaway server (PostgreSQL)
    max_in_flight: str = "off"  # the servers' in-flight bound (MIRI_MAX_IN_FLIGHT)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if self.client not in CLIENTS:
            raise ValueError(f"client must be one of {', '.join(CLIENTS)}")
        if self.url and not self.admin_token:
            raise ValueError("--url needs --admin-token (the goods are registered with it)")
        if self.url and self.data_dir is None:
            raise ValueError(
                "--url needs the server's --data-dir: buyers are made through the users service"
                " and the checks read the shop's own figures"
            )
        if self.url and self.in_process:
            raise ValueError("--url and --in-process exclude each other")
        if self.url and self.compare:
            raise ValueError("--compare starts its own servers; leave out --url")
        if self.client == "wrk":
            if self.in_process:
                raise ValueError("--client wrk drives a server over HTTP; leave out --in-process")
            if self.rate:
                raise ValueError(
                    "--client wrk is a closed loop; use --client raw or aiohttp with --rate"
                )
            if self.hosts > 1:
                raise ValueError("--client wrk drives one host; use --client raw with --hosts")
        if self.concurrency > wrk.MAX_CONNECTIONS:
            raise ValueError(f"concurrency is at most {wrk.MAX_CONNECTIONS:,}")
        if self.buyers < 1 or self.stock < 1 or self.concurrency < 1 or self.quantity < 1:
            raise ValueError("buyers, stock, concurrency and quantity must be positive")
        if self.runs < 1:
            raise ValueError("runs must be at least 1")
        if self.opens_in < 1.0:
            raise ValueError("opens-in must be at least 1 second (the goods are registered first)")
        if self.hosts < 1:
            raise ValueError("hosts must be at least 1")
        if self.database_url is not None and not is_postgres(self.database_url):
            raise ValueError("--database-url must be a postgresql:// URL (unset: the SQLite file)")
        if self.hosts > 1 and not self.database_url:
            raise ValueError(
                f"--hosts {self.hosts} needs --database-url: several hosts share one PostgreSQL;"
                " the SQLite file belongs to one host"
            )
        if self.hosts > 1 and (self.url or self.in_process):
            raise ValueError("--hosts starts its own servers; leave out --url and --in-process")
        if self.database_url and self.url:
            raise ValueError(
                "--url drives a running server on its own database; leave out --database-url"
            )
        if self.database_url and self.strategy == "sqlite" and not self.compare:
            raise ValueError(
                "the sqlite strategy is the SQLite-file decrement baseline and does not run on"
                " PostgreSQL; use --strategy lua (--compare skips it there)"
            )
        if self.redis_url and self.url:
            raise ValueError(
                "--url drives a running server on its own Redis; leave out --redis-url"
            )

    @property
    def engine(self) -> str:
        return "postgresql" if self.database_url else "sqlite"


@dataclass
class Ui:
    """Where the harness reports while it runs (the CLI passes a rich console)."""

    console: Any = None
    progress: bool = True
    plot: bool = False

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)


@dataclass
class _People:
    buyers: list[Buyer] = field(default_factory=list)
    seller_id: int | None = None
    seller_token: str | None = None


@dataclass
class Engines:
    """What the bench's shop and its servers run on, for the length of one invocation."""

    database: str = "sqlite"  # or "postgresql"
    database_url: str | None = None  # the fresh schema's URL (PostgreSQL)
    schema: engines.BenchSchema | None = None
    redis_url: str | None = None  # None: the embedded Redis of the data dir
    redis: str = "embedded"  # or "given URL", "throwaway redis-server"
    keys: engines.SharedKeys | None = None
    hosts: int = 1

    def describe(self) -> dict[str, Any]:
        """For the summary, the metadata and the tables (no passwords, no keys)."""
        return {
            "database": self.database,
            "schema": self.schema.name if self.schema else None,
            "redis": self.redis,
            "hosts": self.hosts,
        }

    def label(self) -> str:
        hosts = f"{self.hosts} host" + ("s" if self.hosts != 1 else "")
        return f"{self.database}, {hosts}, redis {self.redis}"


# -- the server subprocess -------------------------------------------------------------------------
def server_env(settings: Settings, strategy: str, max_in_flight: str = "off") -> dict[str, str]:
    """What the server subprocess gets on top of this process's environment (the keys too, when
    several hosts share a database: never on a command line). The in-flight bound is off unless
    asked for: the bench measures what the shop answers, not what it sheds."""
    env = {
        "MIRI_DATA_DIR": str(settings.data_dir),
        "MIRI_RATE_LIMITS": "off",
        "MIRI_MAX_IN_FLIGHT": max_in_flight,
        "MIRI_PAYMENT_PROVIDER": settings.payment_provider,
        "MIRI_PAYMENT_ABANDON_RATE": repr(settings.payment_abandon_rate),
        "MIRI_STOCK_STRATEGY": strategy,
        "MIRI_LOG_LEVEL": "WARNING",
        "MIRI_STOCK_SYNC_INTERVAL": repr(settings.stock_sync_interval),
    }
    if settings.payment_seed is not None:
        env["MIRI_PAYMENT_SEED"] = str(settings.payment_seed)
    if settings.database_url:
        env["MIRI_DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["MIRI_REDIS_URL"] = settings.redis_url
    if settings.jwt_secret:
        env["MIRI_JWT_SECRET"] = settings.jwt_secret
    if settings.data_key:
        env["MIRI_DATA_KEY"] = settings.data_key
    return env


class ServerCpu:
    """CPU seconds used so far by the server processes (every host) and their workers."""

    def __init__(self, *procs: subprocess.Popen | None) -> None:
        self._procs = [psutil.Process(p.pid) for p in procs if p is not None]

    def seconds(self) -> float | None:
        if not self._procs:
            return None
        total = 0.0
        try:
            for root in self._procs:
                for p in (root, *root.children(recursive=True)):
                    t = p.cpu_times()
                    total += t.user + t.system
        except psutil.Error:
            return None
        return total


@contextlib.asynccontextmanager
async def subprocess_server(
    argv: list[str], env: dict[str, str], log_path: Path
) -> AsyncIterator[subprocess.Popen]:
    """Start ``argv``, wait until it says it listens, stop it with SIGINT at the end."""
    proc = await asyncio.to_thread(serving.start_listening, argv, env, log=log_path)
    try:
        yield proc
    finally:
        await asyncio.to_thread(serving.stop, proc, signal.SIGINT)


# -- set-up ----------------------------------------------------------------------------------------
async def make_people(shop: Shop, opts: BenchOptions, people: _People, ui: Ui) -> None:
    """Buyers (and, unless a server's admin token was given, an admin seller), once per bench."""
    if people.buyers:
        return
    prefix = secrets.token_hex(3)
    started = time.perf_counter()
    made = await shop.users.add_bench_users(opts.buyers, prefix)
    people.buyers = [Buyer(uid, token) for uid, token in made]
    if opts.admin_token:
        people.seller_token = opts.admin_token
        people.seller_id = shop.users.tokens.decode(opts.admin_token).user_id
    else:
        [(uid, token)] = await shop.users.add_bench_users(1, prefix + "a", role="ADMIN")
        people.seller_id, people.seller_token = uid, token
    ui.say(
        f"made {len(people.buyers):,} buyers through the users service (no argon2 sign-up)"
        f" in {time.perf_counter() - started:.2f} s"
    )


def goods_body(opts: BenchOptions, opens_at: datetime, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "goodsName": f"Bench sale {n}"[:20],
        "goodsDescription": "Flash-sale benchmark goods",
        "goodsPrice": GOODS_PRICE,
        "stockQuantity": opts.stock,
        "category": "ETC",
        "reservationStartTime": opens_at.isoformat(),
    }
    if opts.per_buyer_limit:
        body["perBuyerLimit"] = opts.per_buyer_limit
    return body


async def register_http(base_url: str, token: str, body: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url}/api/auth/goods", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            payload = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"registering the goods failed: {resp.status} {payload}")
            return int(payload["data"]["goodsId"])


async def register_in_process(
    shop: Shop, seller_id: int, body: dict[str, Any], opens_at: datetime, opts: BenchOptions
) -> int:
    goods = await shop.goods.register(
        seller_id,
        name=body["goodsName"],
        description=body["goodsDescription"],
        price=body["goodsPrice"],
        stock=body["stockQuantity"],
        category=body["category"],
        reservation_start=opens_at,
        per_buyer_limit=opts.per_buyer_limit,
    )
    return int(goods.goods_id)


# -- after the run -----------------------------------------------------------------------------------
async def wait_for_bus(shop: Shop, timeout: float, own_dispatcher: bool) -> dict[str, Any]:
    """Until nothing is pending on the bus (the server's dispatcher or ours delivers it)."""
    started = time.perf_counter()
    if own_dispatcher:
        drained = await shop.bus.drain(timeout=timeout)
        counts = await shop.bus.views.counts()
    else:
        deadline = time.monotonic() + timeout
        while True:
            counts = await shop.bus.views.counts()
            drained = counts["pending"] == 0
            if drained or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    return {"drained": drained, "seconds": round(time.perf_counter() - started, 3), **counts}


def _check(name: str, passed: bool, detail: str, value: Any = None) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail, "value": value}


async def verify(
    shop: Shop,
    goods_id: int,
    opts: BenchOptions,
    result: LoadResult,
    bus: dict[str, Any],
    live_stock: Callable[[], Any],
) -> list[dict[str, Any]]:
    """The checks after the bus drained, from SQLite (the truth) and the live stock."""
    f = await bench_views.sale_figures(shop.db, goods_id, opts.per_buyer_limit)
    live = await live_stock()
    # The write-back: run it now (it is safe beside the server's own), then read what it wrote.
    await shop.goods.sync_stock()
    synced = await bench_views.written_back_stock(shop.db, goods_id)
    oversold = max(0, f.active - f.stock_total) + max(0, -live)
    missing = set(result.detail_ids) - f.order_item_ids
    unanswered = len(f.order_item_ids) - len(set(result.detail_ids) & f.order_item_ids)
    pending = f.by_status.get("PAYMENT_PENDING", 0)
    expected_live = f.stock_total - f.active
    checks = [
        _check(
            "bus drained",
            bus["drained"] and bus.get("deadLetters", 0) == 0,
            f"pending {bus.get('pending')}, dead letters {bus.get('deadLetters')},"
            f" {bus['seconds']} s after the run",
        ),
        _check(
            "oversold",
            oversold == 0,
            f"sold {f.active} of {f.stock_total} units, live stock {live}",
            oversold,
        ),
    ]
    if opts.per_buyer_limit:
        top = f.top_holder[1] if f.top_holder else 0
        checks.append(
            _check(
                "per-buyer limit",
                f.over_limit == 0,
                f"{f.over_limit} buyers over {opts.per_buyer_limit}; most held {top}",
                f.over_limit,
            )
        )
    else:
        checks.append(_check("per-buyer limit", True, "no limit set", 0))
    checks += [
        _check(
            "every 201 has its order",
            not missing,
            f"{len(result.detail_ids)} accepted items, {len(missing)} without an order row"
            + (f"; {unanswered} rows whose 201 never arrived" if unanswered else ""),
            len(missing),
        ),
        _check(
            "no order left PAYMENT_PENDING",
            pending == 0,
            ", ".join(f"{k} {v}" for k, v in sorted(f.by_status.items())) or "no orders",
            pending,
        ),
        _check(
            "live stock = stockTotal - active quantity",
            live == expected_live,
            f"live {live}, {f.stock_total} - {f.active} = {expected_live}",
            live,
        ),
        _check(
            "write-back figure = live figure",
            synced == live,
            f"goods.stock_synced {synced}, live {live}",
            synced,
        ),
    ]
    return checks


# -- one strategy, N runs -----------------------------------------------------------------------------
class _Progress:
    def __init__(self, ui: Ui, label: str, stock: int, buyers: int) -> None:
        self._ui = ui
        self._bar = None
        self._task = None
        self._stock = stock
        self._buyers = buyers
        if ui.progress and ui.console is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} units"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=ui.console,
                transient=False,
            )
            self._task = self._bar.add_task(label, total=stock, info="waiting for the opening")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def show_stock(self, stock: int) -> None:
        """wrk runs outside this process: the bar follows the live stock only."""
        if self._bar is not None:
            info = "wrk driving the sale" if stock else "sold out: telling the last buyers"
            self._bar.update(self._task, completed=self._stock - stock, info=info)

    def update(self, result: LoadResult) -> None:
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - result.started, 1e-9)
        sold = self._stock - result.stock_samples[-1][1] if result.stock_samples else 0
        sold = max(sold, min(result.accepted_units, self._stock))
        info = (
            f"{result.requests:,} req ({result.requests / elapsed:,.0f}/s), "
            f"{result.outcomes['accepted']:,} accepted, {result.outcomes['error']:,} errors, "
            f"told {result.buyers_told:,}/{self._buyers:,}"
        )
        self._bar.update(self._task, completed=sold, info=info)


def host_dirs(data_dir: Path, settings: Settings, opts: BenchOptions) -> list[Path]:
    """Each server's data dir: the bench's own on SQLite (the server shares its file and its
    embedded Redis), one apiece on PostgreSQL (the hosts share nothing on disk)."""
    if not opts.database_url:
        return [settings.data_dir]
    return [data_dir / f"host-{i}" for i in range(1, opts.hosts + 1)]


async def run_strategy(
    settings: Settings,
    opts: BenchOptions,
    strategy: str,
    people: _People,
    ui: Ui,
    eng: Engines | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """``opts.runs`` sales with one strategy; returns the summary with its runs."""
    eng = eng or Engines()
    own_server = not opts.url and not opts.in_process
    async with open_shop(settings, background=opts.in_process) as shop:
        await make_people(shop, opts, people, ui)
        redis_info = {"mode": shop.redis.mode}
        with contextlib.suppress(Exception):
            redis_info["version"] = (await shop.redis.client.info("server"))["redis_version"]
        async with contextlib.AsyncExitStack() as stack:
            base_urls = [opts.url.rstrip("/")] if opts.url else None
            if own_server:
                base_urls, procs = [], []
                workers = ["--workers", str(opts.server_workers)] if opts.server_workers else []
                for host_dir in host_dirs(data_dir or settings.data_dir, settings, opts):
                    port = free_port()
                    base_urls.append(f"http://127.0.0.1:{port}")
                    ui.say(
                        f"starting miri serve ({strategy} strategy; {eng.label()}) on {base_urls[-1]}"
                    )
                    host_settings = settings.replace(data_dir=host_dir)
                    host_dir.mkdir(parents=True, exist_ok=True)
                    procs.append(
                        await stack.enter_async_context(
                            subprocess_server(
                                serving.serve_command(host_dir, port, *workers),
                                server_env(host_settings, strategy, opts.max_in_flight),
                                host_dir / f"bench-server-{strategy}.log",
                            )
                        )
                    )
                server = ServerCpu(*procs)
            else:
                server = ServerCpu()
            runs, hists = [], []
            for n in range(1, opts.runs + 1):
                run, hist = await one_run(shop, opts, strategy, people, base_urls, n, ui, server)
                runs.append(run)
                hists.append(hist)
    summary = report.summarize(runs, hists)
    summary["strategy"] = strategy
    summary["target"] = "in-process" if opts.in_process else ("url" if opts.url else "subprocess")
    summary["redis"] = redis_info
    summary["engines"] = eng.describe()
    summary["run_details"] = runs
    if ui.plot and runs:
        from miri.bench import plot

        color = bool(ui.console is not None and ui.console.is_terminal)
        text = plot.render(runs[-1], hists[-1].get("accepted"), color=color)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return summary


async def one_run(
    shop: Shop,
    opts: BenchOptions,
    strategy: str,
    people: _People,
    base_urls: list[str] | None,
    n: int,
    ui: Ui,
    server: ServerCpu | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    opens_at = datetime.now(UTC) + _seconds(opts.opens_in)
    body = goods_body(opts, opens_at, n)
    if base_urls:
        assert people.seller_token is not None
        goods_id = await register_http(base_urls[0], people.seller_token, body)
        if opts.client == "wrk":
            return await one_wrk_run(
                shop, opts, strategy, people, base_urls[0], goods_id, n, ui, server, opens_at
            )
        kind = RawTarget if opts.client == "raw" else HttpTarget
        per_host = [kind(u, goods_id, opts.quantity, opts.concurrency) for u in base_urls]
        target: Any = per_host[0] if len(per_host) == 1 else SpreadTarget(per_host)
    else:
        assert people.seller_id is not None
        goods_id = await register_in_process(shop, people.seller_id, body, opens_at, opts)
        target = InProcessTarget(shop, goods_id, opts.quantity)
    label = f"run {n}/{opts.runs} {strategy}"
    try:
        with _Progress(ui, label, opts.stock, len(people.buyers)) as bar:
            # Start a hair after the opening: the server's clock is the same clock.
            await asyncio.sleep(max(0.0, opens_at.timestamp() - time.time()) + 0.002)
            cpu_before = server.seconds() if server else None
            result = await run_load(
                target,
                people.buyers,
                quantity=opts.quantity,
                concurrency=opts.concurrency,
                rate=opts.rate,
                max_seconds=opts.max_seconds,
                progress=bar.update,
            )
            if cpu_before is not None and server is not None:
                after = server.seconds()
                result.server_cpu_s = None if after is None else after - cpu_before
    finally:
        if isinstance(target, HttpTarget | RawTarget | SpreadTarget):
            await target.close()
    bus = await wait_for_bus(shop, opts.drain_timeout, own_dispatcher=opts.in_process)

    async def live() -> int:
        return await shop.goods.live_stock(goods_id)

    checks = await verify(shop, goods_id, opts, result, bus, live)
    run = report.run_figures(
        result, checks, {"goods_id": goods_id, "strategy": strategy, "bus": bus}
    )
    _say_run(ui, label, run, checks)
    return run, dict(result.hist)


async def one_wrk_run(
    shop: Shop,
    opts: BenchOptions,
    strategy: str,
    people: _People,
    base_url: str,
    goods_id: int,
    n: int,
    ui: Ui,
    server: ServerCpu | None,
    opens_at: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One sale driven by wrk (one prepared request per buyer token), stopped once the live stock
    says the sale is over; then the same drain and checks as the Python clients'."""
    label = f"run {n}/{opts.runs} {strategy} (wrk)"
    with _Progress(ui, label, opts.stock, len(people.buyers)) as bar:

        async def read_stock() -> int | None:
            stock = await shop.goods.live_stock(goods_id)
            bar.show_stock(stock)
            return stock

        with tempfile.TemporaryDirectory(prefix="miri-wrk-") as tmp:
            tokens = wrk.tokens_file([b.token for b in people.buyers], Path(tmp))
            await asyncio.sleep(max(0.0, opens_at.timestamp() - time.time()) + 0.002)
            watch = wrk.SaleWatch(read_stock, len(people.buyers))
            cpu_before = server.seconds() if server else None
            run = await wrk.run(
                base_url + "/api/auth/orders",
                wrk.ORDER_SCRIPT,
                [str(tokens), str(goods_id), str(opts.quantity), "/api/auth/orders"],
                connections=opts.concurrency,
                seconds=opts.max_seconds,
                stop_when=watch,
            )
            after = server.seconds() if server else None
    run.stopped_by = watch.reason if run.stopped_by == "stop condition" else "time bound"
    result = wrk.as_load_result(run, opts.quantity)
    if cpu_before is not None and after is not None:
        result.server_cpu_s = after - cpu_before
    result.stock_samples = [(t - run.started, s) for t, s in watch.samples]
    result.stock_samples.append((result.duration_s, await shop.goods.live_stock(goods_id)))
    bus = await wait_for_bus(shop, opts.drain_timeout, own_dispatcher=False)

    async def live() -> int:
        return await shop.goods.live_stock(goods_id)

    checks = await verify(shop, goods_id, opts, result, bus, live)
    figures = report.run_figures(
        result,
        checks,
        {"goods_id": goods_id, "strategy": strategy, "bus": bus, "client": "wrk"},
    )
    _say_run(ui, label, figures, checks)
    return figures, dict(result.hist)


def _say_run(ui: Ui, label: str, run: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    failed = [c["name"] for c in checks if not c["passed"]]
    ui.say(
        f"{label}: sold out in {run['sell_out_s']} s, {run['accepted_orders_per_s']:,} accepted"
        f" orders/s, {run['requests_per_s']:,} req/s"
        + (f" — [red]FAILED: {', '.join(failed)}[/]" if failed else " — checks pass")
    )


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


async def _bare_wrk(
    base: str, people: _People, opts: BenchOptions, seconds: float, server: ServerCpu
) -> LoadResult:
    """The bare endpoint under the same wrk script and tokens as the sale, for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="miri-wrk-") as tmp:
        tokens = wrk.tokens_file([b.token for b in people.buyers], Path(tmp))
        before = server.seconds()
        run = await wrk.run(
            base + "/order",
            wrk.ORDER_SCRIPT,
            [str(tokens), "1", str(opts.quantity), "/order"],
            connections=opts.concurrency,
            seconds=seconds,
        )
        after = server.seconds()
    result = wrk.as_load_result(run, opts.quantity)
    if before is not None and after is not None:
        result.server_cpu_s = after - before
    return result


async def run_bare(
    opts: BenchOptions,
    people: _People,
    requests: int,
    data_dir: Path,
    ui: Ui,
    seconds: float = 5.0,
) -> dict[str, Any]:
    """The ceiling: the same client against ``python -m miri.bench.bare`` (``requests`` answers
    for the Python clients, ``seconds`` of wrk)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    amount = f"{seconds:.0f} s of wrk" if opts.client == "wrk" else f"{requests:,} requests"
    ui.say(f"starting the bare aiohttp endpoint on {base} ({amount})")
    rates: list[float] = []
    cpu: list[float] = []
    server_us: list[float | None] = []
    async with subprocess_server(
        [sys.executable, "-m", "miri.bench.bare", "--port", str(port)],
        {},
        data_dir / "bench-bare.log",
    ) as proc:
        server = ServerCpu(proc)
        for _ in range(opts.runs):
            if opts.client == "wrk":
                result = await _bare_wrk(base, people, opts, seconds, server)
                rates.append(result.requests / result.duration_s)
                cpu.append(result.cpu_s / result.duration_s)
                server_us.append(report.server_cpu(result)["server_cpu_us_per_request"])
                continue
            kind = RawBareTarget if opts.client == "raw" else BareTarget
            async with kind(base, opts.concurrency) as target:
                before = server.seconds()
                result = await run_fixed(
                    target, people.buyers, requests=requests, concurrency=opts.concurrency
                )
                after = server.seconds()
            if before is not None and after is not None:
                result.server_cpu_s = after - before
            rates.append(result.requests / result.duration_s)
            cpu.append(result.cpu_s / result.duration_s)
            server_us.append(report.server_cpu(result)["server_cpu_us_per_request"])
    figure = report.spread(rates)
    us = report.spread(server_us)
    return {
        "requests_per_s": figure["median"],
        "server_cpu_us_per_request": us["median"],
        "figures": {
            "requests_per_s": figure,
            "client_cpu_share": report.spread(cpu),
            "server_cpu_us_per_request": us,
        },
        "errors": result.outcomes["error"],
    }


# -- the whole bench -----------------------------------------------------------------------------------
def bench_settings(
    data_dir: Path, opts: BenchOptions, strategy: str, eng: Engines | None = None
) -> Settings:
    eng = eng or Engines()
    return load_settings(
        data_dir=data_dir,
        rate_limits=False,
        # The simulated buyer pays behind each order, whatever a shop's default provider: the
        # figures stay comparable with every earlier run.
        payment_provider="simulated",
        payment_abandon_rate=opts.payment_abandon_rate,
        payment_seed=opts.payment_seed,
        stock_strategy=strategy,
        database_url=eng.database_url,
        redis_url=eng.redis_url,
        jwt_secret=eng.keys.jwt_secret if eng.keys else None,
        data_key=eng.keys.data_key if eng.keys else None,
    )


def open_engines(opts: BenchOptions, stack: contextlib.ExitStack, ui: Ui) -> Engines:
    """The fresh schema, the shared keys and the one Redis of a PostgreSQL bench (dropped and
    stopped when ``stack`` closes, unless ``keep_data``); the defaults on SQLite."""
    if not opts.database_url:
        redis = "given URL" if opts.redis_url else "embedded"
        return Engines(redis_url=opts.redis_url, redis=redis, hosts=opts.hosts)
    try:
        schema = engines.create_schema(opts.database_url)
    except Exception as exc:  # noqa: BLE001 - told to the operator as a failed bench
        raise RuntimeError(f"cannot make a schema for the bench on PostgreSQL: {exc}") from exc
    if opts.keep_data:
        stack.callback(ui.say, f"kept PostgreSQL schema {schema.name} ({schema.shown})")
    else:
        stack.callback(engines.drop_schema, schema)
    ui.say(f"PostgreSQL schema {schema.name} made for this bench ({schema.shown})")
    if opts.redis_url:
        redis_url, redis = opts.redis_url, "given URL"
    elif opts.in_process:
        redis_url, redis = None, "embedded"  # one process: nothing to share it with
    else:
        redis_url = stack.enter_context(engines.throwaway_redis())
        redis = "throwaway redis-server"
        ui.say(f"throwaway redis-server (no persistence) on {redis_url}")
    return Engines(
        database="postgresql",
        database_url=schema.url,
        schema=schema,
        redis_url=redis_url,
        redis=redis,
        keys=engines.SharedKeys.new(),
        hosts=opts.hosts,
    )


async def flash_sale(opts: BenchOptions, ui: Ui | None = None) -> dict[str, Any]:
    """Run the bench; returns everything ``--json`` writes."""
    ui = ui or Ui(progress=False)
    if opts.client == "wrk":
        wrk.wrk_path()  # WrkMissing says how to install it, before any set-up
    # Every connection is a file on both ends; the servers started below inherit the limit.
    wrk.raise_open_files(opts.concurrency)
    temp = opts.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="miri-bench-")) if temp else Path(opts.data_dir)
    strategies = list(STRATEGIES) if opts.compare else [opts.strategy]
    if opts.database_url and "sqlite" in strategies:
        strategies.remove("sqlite")
        ui.say("skipping the sqlite strategy: it is the SQLite-file baseline, not for PostgreSQL")
    people = _People()
    sections: dict[str, Any] = {}
    settings = None
    held = contextlib.ExitStack()
    try:
        eng = open_engines(opts, held, ui)
        # On PostgreSQL the bench's own shop has a data dir of its own too, beside each host's.
        own_dir = data_dir / "bench" if opts.database_url else data_dir
        for strategy in strategies:
            settings = bench_settings(own_dir, opts, strategy, eng)
            sections[strategy] = await run_strategy(
                settings, opts, strategy, people, ui, eng, data_dir
            )
        compare = None
        if opts.compare:
            lua_requests = sections["lua"]["run_details"][0]["requests"]
            lua_seconds = sections["lua"]["run_details"][0]["duration_s"]
            bare = await run_bare(
                opts, people, max(lua_requests, 10_000), data_dir, ui, max(5.0, lua_seconds)
            )
            sections["bare"] = bare
            compare = {}
            for name in strategies:
                s = sections[name]
                compare[name] = {
                    "requests_per_s": s["requests_per_s"],
                    "accepted_orders_per_s": s["accepted_orders_per_s"],
                    "requests_ratio": _ratio(s["requests_per_s"], bare["requests_per_s"]),
                    "accepted_ratio": _ratio(s["accepted_orders_per_s"], bare["requests_per_s"]),
                    "client_cpu_share": s["figures"]["client_cpu_share"]["median"],
                    "server_cpu_us_per_request": s["figures"]["server_cpu_us_per_request"][
                        "median"
                    ],
                    "engines": eng.describe(),
                }
            compare["bare aiohttp"] = {
                "requests_per_s": bare["requests_per_s"],
                "requests_ratio": 1.0,
                "client_cpu_share": bare["figures"]["client_cpu_share"]["median"],
                "server_cpu_us_per_request": bare["server_cpu_us_per_request"],
            }
    finally:
        try:
            await asyncio.to_thread(held.close)
        finally:
            if temp and not opts.keep_data:
                shutil.rmtree(data_dir, ignore_errors=True)
    primary = sections[strategies[0]]
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    options["admin_token"] = "<given>" if opts.admin_token else None
    options["database_url"] = report.redact_url(opts.database_url)
    options["redis_url"] = report.redact_url(opts.redis_url)
    out = {
        "oversold": primary["oversold"],
        "accepted_orders_per_s": primary["accepted_orders_per_s"],
        "requests_per_s": primary["requests_per_s"],
        "sell_out_s": primary["sell_out_s"],
        "latency_ms": primary["latency_ms"],
        "status_counts": primary["status_counts"],
        "checks": [
            {"name": c["name"], "passed": c["passed"], "detail": c["detail"]}
            for c in primary["checks"]
        ],
        "passed": all(c["passed"] for s in strategies for c in sections[s]["checks"]),
        "strategy": strategies[0],
        "engines": eng.describe(),
        "figures": primary["figures"],
        "strategies": {name: _public(sections[name]) for name in strategies},
        "compare": compare,
        "bare": sections.get("bare"),
        "data_dir": str(data_dir) if (not temp or opts.keep_data) else None,
        "metadata": {
            **report.metadata(settings, options, primary.get("redis", {})),
            "engines": eng.describe(),
        },
    }
    return out


def _public(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if not k.startswith("_")}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 4)
