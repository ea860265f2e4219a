"""The server's CPU per accepted order over the whole of an order's life (issue 13).

The benches report the server's CPU during the load only; with wrk most of a paid order's work
(its payment, its confirmation mail, the outbox deliveries) runs after the load, while the bus
drains. And a flash sale's figure per accepted order also carries every `409 SOLD_OUT` answered
after the sell-out. So this script drives goods that never sell out (`benchmarks/overload.py`,
in-flight bound off, 256 connections, 10 s of wrk) and watches the `miri serve` process from
outside (`/proc/<pid>/stat`): its CPU from the moment wrk starts to its exit (after the bus drained
and the checks ran), divided by the orders stored.

    python benchmarks/order_cpu.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from overload import descendants  # this script's folder is on the path when it runs

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _watch(bench: subprocess.Popen, seen: dict[str, float]) -> None:
    """Sample the serve process every 20 ms: its CPU when wrk starts, and its last reading."""
    serve = None
    while bench.poll() is None:
        kids = descendants(bench.pid)
        if serve is None:
            serve = next((k for k in kids if " serve " in _cmdline(k)), None)
        if serve is not None:
            cpu = _cpu_seconds(serve)
            if cpu is not None:
                seen["last"] = cpu
                if "at_load" not in seen and any("wrk" in _cmdline(k) for k in kids):
                    seen["at_load"] = cpu
        time.sleep(0.02)


def one_run(connections: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        script = Path(__file__).with_name("overload.py")
        argv = [sys.executable, str(script), "--bounds", "off", "--no-bare", "--json", str(out)]
        argv += ["--connections", str(connections), "--duration", str(seconds)]
        bench = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen: dict[str, float] = {}
        watcher = threading.Thread(target=_watch, args=(bench, seen))
        watcher.start()
        _, err = bench.communicate()
        watcher.join()
        if bench.returncode != 0:
            raise SystemExit(f"the bench failed ({bench.returncode}):\n{err[-3000:]}")
        report = json.loads(out.read_text())
    [run] = report["runs"]
    accepted = run["stored_items"]
    if not all(run["checks"].values()):
        raise SystemExit(f"the run did not pass its checks: {run['checks']}")
    cpu = seen["last"] - seen.get("at_load", 0.0)
    return {
        "stored orders": accepted,
        "orders/s under load": run["accepted_per_s"],
        "µs/order under load": run["server_cpu_us_per_answer"],
        "server_cpu_s": round(cpu, 2),
        "us_per_order": round(cpu / accepted * 1e6, 1),
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        run = one_run(args.connections, args.seconds)
        runs.append(run)
        print(f"run {i + 1}: {run}", flush=True)
    figures = [r["us_per_order"] for r in runs]
    print(
        f"server CPU per accepted order, load to exit: median {statistics.median(figures):.1f} µs"
        f" (spread {min(figures):.1f}-{max(figures):.1f})"
    )


if __name__ == "__main__":
    main()
