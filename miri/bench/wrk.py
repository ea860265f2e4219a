"""wrk as the load generator: a C client that leaves the machine's cores to the server.

The Python clients cost the load generator as much as (aiohttp: twice) what the server spends on
a trivial request, so on a 2-core machine they, not the shop, set the ceiling. wrk needs about a
tenth of a core for the same load. It is driven with a Lua script (``ORDER_SCRIPT`` for the flash
sale, one prepared request per buyer token; ``PATHS_SCRIPT`` for GETs over a list of paths) whose
``response()`` hook counts status and envelope codes per tenth of a second and keeps the
``orderDetailId`` of every 201, and whose ``done()`` writes them, with wrk's own latency
distribution (one bucket per microsecond), to a file this module reads back.

wrk is a Debian package (``apt-get install -y wrk``); it is looked up on PATH, never bundled.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from miri.bench.client import ACCEPTED, ALL, ERROR, LoadResult, classify

INSTALL_HINT = (
    "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu; macOS: brew install wrk)"
)
MAX_CONNECTIONS = 5000
FDS_PER_CONNECTION = 2  # the client's socket and, on loopback, the server's end of it
FD_HEADROOM = 1024  # the shop's own files, Redis, the database, pipes


class WrkMissing(RuntimeError):
    """wrk is not on PATH; the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing()
    return found


def raise_open_files(connections: int) -> int:
    """Lift this process's RLIMIT_NOFILE so ``connections`` sockets fit in the load generator and
    in the servers it starts (children inherit the limit). Returns the soft limit now in force.
    Raising the hard limit needs root (or CAP_SYS_RESOURCE); otherwise the soft limit goes up to
    the hard one and a RuntimeError says how to lift it (``ulimit -Hn``, limits.conf)."""
    needed = connections * FDS_PER_CONNECTION + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    infinite = resource.RLIM_INFINITY
    if hard != infinite and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            raise RuntimeError(
                f"{connections:,} connections need {needed:,} open files; the hard limit is"
                f" {hard:,}: raise it (ulimit -Hn {needed}, or nofile in"
                " /etc/security/limits.conf) or run with fewer connections"
            ) from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# Shared by both scripts. Each thread logs one line per answer to a file of its own (seconds
# since t0, status, envelope code or the 201's orderDetailIds): wrk 4.1's thread:get corrupts the
# Lua stack when it copies tables, so nothing is collected through it. The main state's done()
# writes wrk's totals and latency quantiles (its latency(i) walk crashes, so quantiles it is).
# The clock is CLOCK_REALTIME through LuaJIT's FFI (wrk's Lua has only whole-second os.time),
# so times compare with Python's time.time().
_COMMON = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } miri_timespec;
int clock_gettime(int clk_id, miri_timespec *tp);
]]
local ts = ffi.new("miri_timespec")
local function now()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

QUANTILES = 2000
local log = nil
local t0 = 0
local match, format = string.match, string.format

local function open_log(args)
  OUT, t0 = args[1], tonumber(args[2])
  log = assert(io.open(OUT .. "." .. tid, "w"))
  log:setvbuf("full", 65536)
end

local function log_answer(status, body)
  local detail = ""
  if status >= 400 and body then
    detail = match(body, '"error"%s*:%s*"([%w_]+)"') or ""
  end
  log:write(format("%.4f %d %s\n", now() - t0, status, detail))
end

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("MIRI_WRK_OUT"), "w"))
  out:write("requests ", summary.requests, "\n")
  out:write("duration_us ", summary.duration, "\n")
  local e = summary.errors
  out:write("socket_errors ", e.connect, " ", e.read, " ", e.write, " ", e.status, " ", e.timeout, "\n")
  for i = 0, QUANTILES - 1 do
    out:write("q ", latency:percentile((i + 0.5) * 100 / QUANTILES), "\n")
  end
  out:write("latency_max ", latency.max, "\n")
  out:close()
end
"""

# args: out file, t0, thread count, tokens file, goods id, quantity, path
ORDER_SCRIPT = (
    _COMMON
    + r"""
local reqs = {}
local n = 0
local i = 0

function init(args)
  open_log(args)
  local nthreads = tonumber(args[3])
  local body = format('{"goodsId":%d,"quantity":%d,"address":"Seoul Bench 1"}',
                      tonumber(args[5]), tonumber(args[6]))
  local k = 0
  for token in io.lines(args[4]) do
    if k % nthreads == tid then
      reqs[#reqs + 1] = wrk.format("POST", args[7], {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
      }, body)
    end
    k = k + 1
  end
  n = #reqs
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  if status == 201 then
    local ids = {}
    for id in string.gmatch(body, '"orderDetailId"%s*:%s*(%d+)') do ids[#ids + 1] = id end
    log:write(format("%.4f 201 %s\n", now() - t0, table.concat(ids, ",")))
  else
    log_answer(status, body)
  end
end
"""
)

# args: out file, t0, thread count, paths file (one path a line, repeated to weight it)
PATHS_SCRIPT = (
    _COMMON
    + r"""
local reqs = {}
local n = 0
local i = 0

function init(args)
  open_log(args)
  for path in io.lines(args[4]) do reqs[#reqs + 1] = wrk.format("GET", path) end
  n = #reqs
  i = tid % n
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  log_answer(status, body)
end
"""
)


@dataclass
class WrkResult:
    requests: int = 0
    duration_s: float = 0.0
    started: float = 0.0  # time.time() when wrk was started
    counts: Counter = field(default_factory=Counter)  # (status, code) -> n
    ticks: dict[int, Counter] = field(default_factory=dict)  # tenth -> (status, code) -> n
    detail_ids: list[int] = field(default_factory=list)
    first_201: float | None = None  # time.time()
    last_201: float | None = None
    latency_us: HdrHistogram | None = None
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # wrk's own CPU time (user + system)
    stopped_by: str = "duration"  # or "stop condition"

    @property
    def answers(self) -> int:
        return sum(self.counts.values())


def _parse(totals: str, logs: list[str], result: WrkResult) -> None:
    quantiles: list[int] = []
    top = 0
    for line in totals.splitlines():
        kind, _, rest = line.partition(" ")
        parts = rest.split(" ")
        if kind == "requests":
            result.requests = int(parts[0])
        elif kind == "duration_us":
            result.duration_s = int(parts[0]) / 1e6
        elif kind == "socket_errors":
            names = ("connect", "read", "write", "status", "timeout")
            result.socket_errors = dict(zip(names, map(int, parts), strict=True))
        elif kind == "q":
            quantiles.append(max(1, int(float(parts[0]))))
        elif kind == "latency_max":
            top = max(1, int(float(parts[0])))
    first = last = None
    for text in logs:
        for line in text.splitlines():
            since, status_text, detail = (line.split(" ", 2) + [""])[:3]
            status, t = int(status_text), float(since)
            if status == 201:
                key = (201, "")
                if detail:
                    result.detail_ids.extend(int(i) for i in detail.split(","))
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
            else:
                key = (status, detail)
            result.counts[key] += 1
            bucket = result.ticks.get(int(t * 10))
            if bucket is None:
                bucket = result.ticks[int(t * 10)] = Counter()
            bucket[key] += 1
    result.first_201 = None if first is None else result.started + first
    result.last_201 = None if last is None else result.started + last
    # Rebuilt from wrk's evenly spaced quantiles (each stands for an equal share of the answers)
    # so that runs merge like the Python clients' histograms; exact at the quantiles.
    hist = HdrHistogram(1, 120_000_000, 3)
    answers = result.answers or result.requests
    if quantiles and answers:
        share, extra = divmod(answers, len(quantiles))
        counts = [share + (1 if i < extra else 0) for i in range(len(quantiles))]
        last = max(i for i, n in enumerate(counts) if n)
        if top:  # the slowest answer is one of the last quantile's
            counts[last] -= 1
            quantiles.append(top)
            counts.append(1)
        for value, n in zip(quantiles, counts, strict=True):
            if n > 0:
                hist.record_value(min(value, 120_000_000), n)
    result.latency_us = hist


async def run(
    url: str,
    script: str,
    args: list[str],
    *,
    connections: int,
    seconds: float,
    threads: int | None = None,
    stop_when: Callable[[], Awaitable[bool]] | None = None,
    poll: float = 0.1,
    timeout_s: float = 30.0,
) -> WrkResult:
    """Run wrk against ``url`` for at most ``seconds``, ending it early (SIGINT: wrk stops and
    reports) once ``stop_when()`` says so. ``args`` follow the output file, the start time and the
    thread count on the script's command line."""
    exe = wrk_path()
    if connections > MAX_CONNECTIONS:
        raise ValueError(f"at most {MAX_CONNECTIONS:,} connections")
    raise_open_files(connections)
    threads = max(1, min(threads or 2, connections))
    with tempfile.TemporaryDirectory(prefix="miri-wrk-") as tmp:
        script_path = Path(tmp) / "script.lua"
        script_path.write_text(script, encoding="utf-8")
        out_path = Path(tmp) / "out.txt"
        result = WrkResult(started=time.time())
        argv = [
            exe,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, int(seconds + 0.999))}s",
            f"--timeout={int(timeout_s)}s",
            "-s",
            str(script_path),
            url,
            "--",
            str(out_path),
            f"{result.started:.6f}",
            str(threads),
            *args,
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MIRI_WRK_OUT": str(out_path)},
        )
        # os.wait4 reaps wrk and gives its own CPU time, nobody else's.
        waited = asyncio.ensure_future(asyncio.to_thread(os.wait4, proc.pid, 0))
        try:
            settle = time.monotonic() + 1.0  # wrk's SIGINT handler is set by then
            while not waited.done():
                if stop_when is not None and time.monotonic() > settle and await stop_when():
                    result.stopped_by = "stop condition"
                    proc.send_signal(signal.SIGINT)
                    break
                await asyncio.wait({waited}, timeout=poll)
            _, status, usage = await waited
        except BaseException:
            if not waited.done():
                proc.kill()
                await waited
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        result.cpu_s = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"wrk failed (exit {proc.returncode}): {output[-800:]}")
        logs = [(Path(tmp) / f"out.txt.{i}").read_text(encoding="utf-8") for i in range(threads)]
        _parse(out_path.read_text(encoding="utf-8"), logs, result)
    return result


def tokens_file(tokens: list[str], directory: Path) -> Path:
    path = directory / "wrk-tokens.txt"
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


# -- the flash sale through wrk --------------------------------------------------------------------
SOCKET_ERRORS = (
    "connect",
    "read",
    "write",
    "timeout",
)  # "status" counts non-2xx answers: not errors


def as_load_result(run: WrkResult, quantity: int) -> LoadResult:
    """wrk's answers in the Python clients' shape, so the report and the checks read both alike.
    Latency is for all answers together ("all"): wrk's Lua cannot tie an answer to its request's
    send time, so there is no per-outcome split."""
    result = LoadResult(mode="closed")
    result.started = run.started
    result.duration_s = run.duration_s
    for (status, code), n in run.counts.items():
        outcome = classify(status, code or None)
        result.requests += n
        result.outcomes[outcome] += n
        result.status_counts[str(status)] += n
        if outcome == ERROR:
            result.error_codes[f"{status} {code}".strip()] += n
    for name in SOCKET_ERRORS:
        n = run.socket_errors.get(name, 0)
        if n:
            result.requests += n
            result.outcomes[ERROR] += n
            result.status_counts["0"] += n
            result.error_codes[f"socket {name}"] += n
    for tick, bucket in run.ticks.items():
        counter = result.timeline.setdefault(tick, Counter())
        for (status, code), n in bucket.items():
            counter[classify(status, code or None)] += n
    result.accepted_units = result.outcomes[ACCEPTED] * quantity
    result.detail_ids = list(run.detail_ids)
    if run.last_201 is not None:
        result.sell_out_s = run.last_201 - run.started
    if run.latency_us is not None and run.latency_us.get_total_count():
        result.hist[ALL] = run.latency_us
    result.cpu_s = run.cpu_s
    result.stopped_by = run.stopped_by
    return result


class SaleWatch:
    """When to stop wrk: the remaining stock, read over HTTP ten times a second. The sale is over
    once the stock is 0 and every buyer has had time to be told (round robin over the buyers, at
    the rate the stock went down), or once the stock stopped moving for ``settle_s`` (every buyer
    at the per-buyer limit)."""

    def __init__(
        self, read_stock: Callable[[], Awaitable[int | None]], buyers: int, settle_s: float = 1.5
    ) -> None:
        self._read = read_stock
        self._buyers = buyers
        self._settle = settle_s
        self.samples: list[tuple[float, int]] = []  # (time.time(), stock)
        self.started = time.time()
        self._first: int | None = None
        self._changed = time.time()
        self._empty_at: float | None = None
        self.reason = "time bound"

    async def __call__(self) -> bool:
        try:
            stock = await self._read()
        except Exception:  # noqa: BLE001 - a missed sample only delays the stop
            return False
        if stock is None:
            return False
        now = time.time()
        if self.samples and self.samples[-1][1] != stock:
            self._changed = now
        self.samples.append((now, stock))
        if self._first is None:
            self._first = stock
        if stock <= 0:
            if self._empty_at is None:
                self._empty_at = now
            sold = self._first or 1
            rate = sold / max(now - self.started, 1e-3)
            tail = min(5.0, max(0.3, self._buyers / max(rate, 1.0)))
            if now - self._empty_at >= tail:
                self.reason = "sold out"
                return True
            return False
        if stock < (self._first or 0) and now - self._changed >= self._settle:
            self.reason = "stock settled"
            return True
        return False
