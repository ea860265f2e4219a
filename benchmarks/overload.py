"""The in-flight bound under wrk: one `miri serve` worker at 256, 2,000 and 5,000 connections.

For each bound (``--bounds off,auto``) a fresh shop gets one goods per run (stock large enough not
to sell out) and 5,000 buyers; wrk (one thread, C) sends orders with one token per buyer, round
robin, for ``--duration`` seconds at each connection count. Then the bare aiohttp endpoint
(``miri.bench.bare``) takes the same load as the ceiling. After each run the bus is drained and the
shop checked: every 201 stored and nothing else, live stock + stored quantity = stock total,
nothing oversold, no dead letters.

``--honour-retry-after``: the client waits what a 503's ``Retry-After`` says (with ±20% jitter)
before that connection's next request, as the API asks clients to; without it every connection
sends again at once, as the issue's first measurement did. Each server first takes ``--warmup`` s of
orders at 64 connections on goods of their own, unrecorded.

While wrk runs, /api/health (never shed) is read every ``SAMPLE_EVERY`` s: the bound's limit,
what is in flight, the event loop's lag and the Retry-After given, as a timeline in the JSON and a
one-line summary.

Server CPU per answer comes from /proc (utime + stime of the server process over the run); the
load generator's from getrusage of its children. The open-file limit is raised to the hard limit
first (each connection takes a file in wrk and one in the server).

    python benchmarks/overload.py --connections 256,2000,5000 --bounds off,auto --duration 10 \\
        --json benchmarks/results/overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from miri.bench import serving
from miri.config import load_settings
from miri.infra.processes import free_port
from miri.shop import open_shop

STOCK = 10_000_000  # never sold out within a run: every accepted order does the full work
BUYERS = 5000
WARMUP_CONNECTIONS = 64  # the unrecorded run that warms a fresh server up, on goods of its own
SAMPLE_EVERY = 0.5  # seconds between two reads of the bound's figures during a run
LATE_US = 2_000_000  # an answer later than 2 s counts as a timeout, as in the issue
# wrk's own --timeout is longer: wrk also counts a connection as timed out while it waits out a
# Retry-After longer than the timeout, which is the client's choice, not a late answer.
WRK_TIMEOUT = "60s"
CHEAP_HASH = {"argon2_memory_kib": 8, "argon2_time_cost": 1, "payment_provider": "simulated"}
SERVER_ENV = {
    "MIRI_RATE_LIMITS": "off",
    "MIRI_PAYMENT_PROVIDER": "simulated",  # the buyer who pays at once, as in the bench
    "MIRI_PAYMENT_ABANDON_RATE": "0",
    "MIRI_LOG_LEVEL": "WARNING",
}

# Settings a bound in --bounds may change for its server: auto@retry=3 compares hints in one run.
VARIANT_SETTINGS = {
    "retry": "MIRI_OVERLOAD_RETRY_AFTER",
    "latency": "MIRI_MAX_IN_FLIGHT_LATENCY",
    "floor": "MIRI_MAX_IN_FLIGHT_FLOOR",
    "ceiling": "MIRI_MAX_IN_FLIGHT_CEILING",
}

LUA = r"""
local reqs, n, i = {}, 0, 0
counts = {}
local owed = 0

function init(args)
  OUT = args[1]
  local body = string.format('{"goodsId":%d,"quantity":1,"address":"Seoul Bench 1"}', tonumber(args[3]))
  for token in io.lines(args[2]) do
    n = n + 1
    reqs[n] = wrk.format("POST", PATH, {["Content-Type"] = "application/json",
                                         ["Authorization"] = "Bearer " .. token}, body)
  end
end

-- wrk looks for delay() when it loads the script, so it exists only when asked for
if HONOUR then
  function delay()
    if owed > 0 then
      owed = owed - 1
      return RETRY_MS * (0.8 + 0.4 * math.random())
    end
    return 0
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 503 and HONOUR then
    owed = owed + 1
    RETRY_MS = (tonumber(headers["Retry-After"]) or 1) * 1000
  end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local f = assert(io.open(threads[1]:get("OUT"), "w"))
  f:write(string.format("requests %d\nduration_us %d\n", summary.requests, summary.duration))
  local e = summary.errors
  f:write(string.format("errors %d %d %d %d %d\n", e.connect, e.read, e.write, e.status, e.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    f:write(string.format("p%s %d\n", p, latency:percentile(p)))
  end
  f:write(string.format("max %d\n", latency.max))
  -- answers later than LATE_US: the share above the percentile that sits at LATE_US
  local late = 0
  if latency.max > LATE_US then
    local lo, hi = 0, 100
    for _ = 1, 40 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) <= LATE_US then lo = mid else hi = mid end
    end
    late = math.floor(summary.requests * (100 - lo) / 100 + 0.5)
  end
  f:write(string.format("late %d\n", late))
  for _, t in ipairs(threads) do
    for status, c in pairs(t:get("counts")) do f:write(string.format("status %d %d\n", status, c)) end
  end
  f:close()
end
"""


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """The server's CPU: the process and its workers (``--workers N``), not its Redis."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            if p != pid and b"miri" not in Path(f"/proc/{p}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (started from any of its threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found + [d for k in found for d in descendants(k)]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def prepare(data_dir: Path, runs: int) -> tuple[Path, list[int]]:
    """Buyers (tokens written one per line) and one goods per run, before the server starts."""
    settings = load_settings(data_dir=data_dir, env={}, **CHEAP_HASH)
    async with open_shop(settings) as shop:
        seller = await shop.users.add_user(
            email="seller@bench.miri",
            password="password123!",
            user_name="Seller",
            phone_number="010-0000-0000",
            address="Seoul 1",
        )
        goods = []
        for n in range(runs):
            g = await shop.goods.register(
                seller,
                name=f"Overload {n}",
                description="For the sale",
                price=1000,
                stock=STOCK,
                category="FASHION",
                reservation_start=None,
                per_buyer_limit=None,
            )
            goods.append(g.goods_id)
        made = await shop.users.add_bench_users(BUYERS, "overload")
    tokens = data_dir / "tokens.txt"
    tokens.write_text("".join(f"{token}\n" for _, token in made))
    return tokens, goods


def run_wrk(
    url: str, path: str, connections: int, duration: int, tokens: Path, goods: int, honour: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "orders.lua"
        head = (
            f'PATH = "{path}"\nRETRY_MS = 1000\nLATE_US = {LATE_US}\n'
            f"HONOUR = {'true' if honour else 'false'}\n"
        )
        script.write_text(head + LUA)
        out = Path(tmp) / "out.txt"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        argv = [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            f"--timeout={WRK_TIMEOUT}",
            "-s",
            str(script),
            url,
            "--",
            str(out),
            str(tokens),
            str(goods),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
        figures: dict[str, Any] = {"status": {}}
        for line in out.read_text().splitlines():
            key, *rest = line.split()
            if key == "status":
                figures["status"][rest[0]] = int(rest[1])
            elif key == "errors":
                names = ("connect", "read", "write", "status", "timeout")
                figures["socket_errors"] = dict(zip(names, map(int, rest), strict=True))
            else:
                figures[key] = int(rest[0])
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        figures["client_cpu_s"] = round(cpu, 2)
        return figures


async def timeline(base: str, stop: asyncio.Event) -> list[dict]:
    """The bound's figures every SAMPLE_EVERY s until ``stop``: what it did during the run."""
    rows: list[dict] = []
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not stop.is_set():
            try:
                async with http.get(f"{base}/api/health") as resp:
                    bound = (await resp.json())["data"].get("overload") or {}
            except (TimeoutError, aiohttp.ClientError):
                bound = {}
            if bound.get("mode") not in (None, "off"):
                rows.append(
                    {
                        "t": round(time.monotonic() - started, 2),
                        "limit": bound["limit"],
                        "in_flight": sum(bound["inFlight"].values()),
                        "lag_ms": bound.get("lagMs"),
                        "retry_after": bound["retryAfter"],
                        "latency_ms": bound["latencyMs"],
                    }
                )
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
            except TimeoutError:
                pass
    return rows


def spread(rows: list[dict], key: str) -> str:
    values = sorted(r[key] for r in rows if r.get(key) is not None)
    if not values:
        return "-"
    return f"{values[0]:g}/{values[len(values) // 2]:g}/{values[-1]:g}"


async def drained_and_checked(base: str, data_dir: Path, goods: int, accepted: int) -> dict:
    """Wait for the bus; then the checks against SQLite and live stock."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = time.monotonic()
        while True:
            async with http.get(f"{base}/api/health") as resp:
                health = (await resp.json())["data"]
            if health["bus"]["pending"] == 0 or time.monotonic() - started > 300:
                break
            await asyncio.sleep(0.5)
        drain_s = time.monotonic() - started
        async with http.get(f"{base}/api/goods/{goods}/stock") as resp:
            live = (await resp.json())["data"]["stockQuantity"]
    raw = sqlite3.connect(f"file:{data_dir / 'miri.sqlite3'}?mode=ro", uri=True)
    try:
        [(items, held)] = raw.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN stock_released = 0 THEN quantity END), 0)"
            " FROM order_items WHERE goods_id = ?",
            (goods,),
        ).fetchall()
    finally:
        raw.close()
    # wrk stops with a request in flight on every connection: those may be stored unanswered.
    checks = {
        "bus drained": health["bus"]["pending"] == 0 and health["bus"]["deadLetters"] == 0,
        "every 201 stored": items >= accepted,
        "live + stored = total": live + held == STOCK,
        "oversold 0": held <= STOCK,
    }
    return {
        "checks": checks,
        "drain_s": round(drain_s, 1),
        "stored_items": items,
        "stored_unanswered": items - accepted,
        "live": live,
        "held": held,
        "overload": health.get("overload"),
    }


def summarise(name: str, connections: int, duration: int, wrk: dict, cpu: float) -> dict:
    status = wrk["status"]
    answers = sum(status.values())
    return {
        "target": name,
        "connections": connections,
        "accepted_per_s": round(status.get("201", 0) / duration, 1),
        "answers_per_s": round(answers / duration, 1),
        "p50_ms": wrk["p50"] / 1000,
        "p90_ms": wrk["p90"] / 1000,
        "p99_ms": wrk["p99"] / 1000,
        "p99.9_ms": wrk["p99.9"] / 1000,
        "max_ms": wrk["max"] / 1000,
        # No answer within 2 s: answered later, or not at all within wrk's own 60 s.
        "timeouts": wrk["late"] + wrk["socket_errors"]["timeout"],
        "socket_errors": wrk["socket_errors"],
        "status": status,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_us_per_answer": round(cpu / answers * 1e6, 1) if answers else None,
        "server_cores": round(cpu / duration, 2),
        "client_cpu_s": wrk["client_cpu_s"],
        "load": load_average(),
    }


async def shop_runs(
    bound: str,
    connections: list[int],
    duration: int,
    honour: bool,
    root: Path,
    warmup: int,
    workers: int = 1,
) -> list[dict]:
    # "auto@retry=3@latency=0.04": the bound auto, with settings of its own (VARIANT_SETTINGS)
    mode, *changes = bound.split("@")
    name = bound.replace("@", "-").replace("=", "")
    data_dir = root / f"shop-{name}"
    tokens, [warm, *goods] = await prepare(data_dir, len(connections) + 1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**SERVER_ENV, "MIRI_MAX_IN_FLIGHT": mode}
    for change in changes:
        key, _, value = change.partition("=")
        env[VARIANT_SETTINGS[key]] = value
    extra = ("--workers", str(workers)) if workers > 1 else ()
    proc = serving.start_serve(data_dir, port, *extra, env=env, log=root / f"serve-{name}.log")
    rows = []
    try:
        if warmup:  # a fresh server's first seconds (caches, allocator) belong to no run
            run_wrk(base, "/api/auth/orders", WARMUP_CONNECTIONS, warmup, tokens, warm, honour)
            await drained_and_checked(base, data_dir, warm, 0)
        for c, g in zip(connections, goods, strict=True):
            cpu0 = cpu_seconds(proc.pid)
            stop = asyncio.Event()
            sampler = asyncio.create_task(timeline(base, stop))
            try:
                wrk = await asyncio.to_thread(
                    run_wrk, base, "/api/auth/orders", c, duration, tokens, g, honour
                )
            finally:
                stop.set()
                samples = await sampler
            cpu = cpu_seconds(proc.pid) - cpu0
            target = f"shop, bound {bound}" + (f", {workers} workers" if workers > 1 else "")
            row = summarise(target, c, duration, wrk, cpu)
            row["timeline"] = samples
            row.update(await drained_and_checked(base, data_dir, g, wrk["status"].get("201", 0)))
            rows.append(row)
            print(line(row), flush=True)
            if samples:
                print(
                    f"{'':<18} min/median/max: limit {spread(samples, 'limit')},"
                    f" in flight {spread(samples, 'in_flight')}, lag ms {spread(samples, 'lag_ms')},"
                    f" Retry-After {spread(samples, 'retry_after')}",
                    flush=True,
                )
    finally:
        serving.stop(proc)
    return rows


def bare_runs(connections: list[int], duration: int, root: Path, warmup: int) -> list[dict]:
    port = free_port()
    proc = serving.start_listening([sys.executable, "-m", "miri.bench.bare", "--port", str(port)])
    tokens = root / "shop-bare-tokens.txt"
    tokens.write_text("x\n")
    rows = []
    try:
        if warmup:
            run_wrk(
                f"http://127.0.0.1:{port}", "/order", WARMUP_CONNECTIONS, warmup, tokens, 1, False
            )
        for c in connections:
            cpu0 = cpu_seconds(proc.pid)
            wrk = run_wrk(f"http://127.0.0.1:{port}", "/order", c, duration, tokens, 1, False)
            row = summarise("bare aiohttp", c, duration, wrk, cpu_seconds(proc.pid) - cpu0)
            rows.append(row)
            print(line(row), flush=True)
    finally:
        serving.stop(proc)
    return rows


def line(row: dict) -> str:
    checks = row.get("checks")
    verdict = "" if checks is None else (" checks pass" if all(checks.values()) else f" {checks}")
    return (
        f"{row['target']:<18} c={row['connections']:>5}: {row['accepted_per_s']:>8,.0f} 201/s"
        f" {row['answers_per_s']:>8,.0f} answers/s p50/90/99 {row['p50_ms']:.0f}/{row['p90_ms']:.0f}"
        f"/{row['p99_ms']:.0f} ms"
        f" timeouts {row['timeouts']:>5} {row['status']} server {row['server_cores']} cores"
        f" {row['server_cpu_us_per_answer']} us/answer load {row['load']}"
        + (f" drained in {row['drain_s']} s" if "drain_s" in row else "")
        + verdict
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="256,2000,5000")
    parser.add_argument(
        "--bounds",
        default="off,auto",
        help="off, auto or N; auto@retry=3@latency=0.04@floor=N@ceiling=N: changed settings",
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--honour-retry-after", action="store_true")
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--warmup", type=int, default=3, help="seconds, unrecorded; 0: none")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workers", type=int, default=1, help="`miri serve --workers N`")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    # the revision measured is the one checked out when the run starts (a run takes minutes)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    revision = git.stdout.strip()
    files = raise_open_files()
    connections = [int(c) for c in args.connections.split(",")]
    print(f"open-file limit {files}; load {load_average()}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="miri-overload-") as tmp:
        for n, bound in enumerate(args.bounds.split(",")):  # a bound may be listed twice
            root = Path(tmp) / str(n)
            root.mkdir()
            rows += await shop_runs(
                bound,
                connections,
                args.duration,
                args.honour_retry_after,
                root,
                args.warmup,
                args.workers,
            )
        if not args.no_bare:
            rows += bare_runs(connections, args.duration, Path(tmp), args.warmup)
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "revision": revision,
            "duration_s": args.duration,
            "honour_retry_after": args.honour_retry_after,
            "warmup_s": args.warmup,
            "workers": args.workers,
        }
        args.json.write_text(json.dumps({"metadata": meta, "runs": rows}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
