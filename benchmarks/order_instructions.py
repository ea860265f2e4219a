"""Instructions per placed order, counted by valgrind (callgrind): the figure no neighbour moves.

Seconds on this shared VM drift by a third within an hour (bare aiohttp POST measured 11,000 to
31,000 answers/s on one day), so a change worth 3% cannot be seen in req/s or in CPU seconds.
Callgrind counts the instructions the process runs, the same for the same code and inputs
whatever else the machine does. What it does not see: the kernel (syscalls), cache misses, and
time spent waiting; it counts a ``rep stos`` as one instruction per byte. So it ranks changes to
the Python path; wrk (``overload.py``) still measures what a change buys.

The order path without HTTP: a fresh shop (SQLite + embedded Redis, as ``miri serve`` opens it,
its heap settled as the server settles it), then waves of 256 concurrent ``Placing.place`` calls
on goods that never sell out. Two processes run under callgrind at once, one placing
``--waves`` A and one B waves; the difference between their totals, divided by the orders that
differ, leaves out the start-up (imports, migrations, buyers) both pay alike.

    python benchmarks/order_instructions.py                # 2 vs 8 waves
    python benchmarks/order_instructions.py --waves 2,14   # a longer run, same figure

Needs valgrind (Debian package ``valgrind``). The Redis server runs outside valgrind, uncounted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

WAVE = 256  # concurrent orders per wave, as wrk's 256 connections
BUYERS = 600
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


async def place_waves(waves: int) -> None:
    """The child: a fresh shop, then ``waves`` waves of WAVE concurrent orders."""
    import overload  # this script's folder is on the path when it runs

    from miri.config import load_settings
    from miri.server.runner import settle_heap
    from miri.shop import open_shop

    overload.BUYERS = BUYERS
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "shop"
        _, [goods] = await overload.prepare(data_dir, 1)
        settings = load_settings(data_dir=data_dir, env={}, **overload.CHEAP_HASH)
        async with open_shop(settings) as shop:
            placing = shop.orders.placing
            buyers = range(2, 2 + BUYERS)  # the seller is user 1
            settle_heap()
            for wave in range(waves):
                await asyncio.gather(
                    *(
                        placing.place(buyers[(wave * WAVE + i) % BUYERS], goods, 1, "Seoul 1")
                        for i in range(WAVE)
                    )
                )


def count(waves: int) -> subprocess.Popen[str]:
    argv = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        os.path.realpath(sys.executable),  # not a shim script: callgrind follows no exec
        __file__,
        "--child",
        str(waves),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def collected(proc: subprocess.Popen[str]) -> int:
    out, _ = proc.communicate()
    found = COLLECTED.search(out)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}):\n{out[-3000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", default="2,8", help="A,B: waves of the two runs (A < B)")
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs, one after another")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        import uvloop

        uvloop.run(place_waves(args.child))
        return
    console = Console()
    if shutil.which("valgrind") is None:
        console.print("valgrind is missing: apt-get install -y valgrind")
        raise SystemExit(2)
    low, high = (int(w) for w in args.waves.split(","))
    if not 0 < low < high:
        parser.error("--waves A,B needs 0 < A < B")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    table = Table(title=f"instructions per placed order ({git.stdout.strip() or '?'})")
    for name in ("run", f"{low} waves", f"{high} waves", "per order", "took"):
        table.add_column(name, justify="right")
    with console.status(f"callgrind: {low} and {high} waves of {WAVE} orders, in parallel"):
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            a, b = count(low), count(high)
            total_a, total_b = collected(a), collected(b)
            per_order = (total_b - total_a) / ((high - low) * WAVE)
            table.add_row(
                str(run),
                f"{total_a:,}",
                f"{total_b:,}",
                f"{per_order:,.0f}",
                f"{time.monotonic() - started:.0f} s",
            )
    console.print(table)


if __name__ == "__main__":
    main()
