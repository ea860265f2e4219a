"""``miri serve --workers N``: N server processes on one port (SO_REUSEPORT), one data dir.

Each worker is a whole server: it shares the SQLite file (each with its own group-commit
writer; a lock file beside it orders their batches), the embedded Redis (stock scripts are
atomic across processes) and the bus (deliveries are claimed atomically, so none runs twice).
Worker 0 starts first and alone, so the start-up stock check runs before anyone takes an order;
only worker 0 runs the scheduled jobs. The supervisor forwards SIGINT/SIGTERM and replaces a
worker that dies, a bounded number of times.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from miri.config import Settings
from miri.infra.metrics import MULTIPROC_ENV, multiproc_dir
from miri.infra.processes import free_port
from miri.infra.redis import stop_embedded

log = logging.getLogger("miri.server")
READY_TIMEOUT = 60.0
MAX_RESTARTS = 5


class Worker:
    def __init__(self, index: int, argv: list[str], env: dict[str, str]) -> None:
        self.index = index
        self._argv = argv
        self._env = env
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self._argv, env=self._env, stdout=subprocess.PIPE, stderr=None, text=True
        )

    def wait_ready(self) -> bool:
        """Read the worker's output until it says it listens; pass the rest through."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        for line in self.proc.stdout:
            if "listening on" in line:
                threading.Thread(target=self._pump, daemon=True).start()
                return True
            sys.stdout.write(line)
            if time.monotonic() > deadline:
                break
        return False

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(f"[worker {self.index}] {line}")


def supervise(
    settings: Settings,
    workers: int,
    *,
    access_log: bool,
    ready: Callable[[str], None],
    announce: Callable[[Path, str], object] | None = None,
) -> int:
    """Run ``workers`` server processes until a signal; returns the exit code."""
    port = settings.port or free_port(settings.host)
    base = [
        sys.executable,
        "-m",
        "miri.cli.main",
        "serve",
        "--workers",
        "1",
        "--host",
        settings.host,
        "--port",
        str(port),
        "--data-dir",
        str(settings.data_dir),
        "--max-in-flight",  # each worker has its own bound; the flag may have set it
        settings.max_in_flight,
    ]
    if settings.redis_url:
        base += ["--redis-url", settings.redis_url]
    if not access_log:
        base.append("--no-access-log")
    if settings.redis_replica:
        base.append("--redis-replica")
    pool = []
    # One metrics directory for all workers: /metrics on any of them sums them all.
    metrics = multiproc_dir(settings.data_dir, os.getpid())
    for index in range(workers):
        env = {**os.environ, "MIRI_WORKER_INDEX": str(index), MULTIPROC_ENV: str(metrics)}
        pool.append(Worker(index, [*base, "--reuse-port"], env))

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for w in pool:
            if w.proc and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for w in pool:  # one at a time: worker 0's start-up check runs before others serve
        w.start()
        if not w.wait_ready():
            log.error("worker %d did not start", w.index)
            stop(signal.SIGTERM, None)
            shutil.rmtree(metrics, ignore_errors=True)
            return 1
    url = f"http://{settings.host}:{port}"
    ready(url)
    context = announce(settings.data_dir, url) if announce else None
    if context is not None:
        context.__enter__()  # type: ignore[attr-defined]
    try:
        while not stopping:
            time.sleep(0.2)
            for w in pool:
                code = w.proc.poll() if w.proc else 0
                if code is None or stopping:
                    continue
                if w.restarts >= MAX_RESTARTS:
                    log.error("worker %d keeps dying (exit %s); stopping", w.index, code)
                    stop(signal.SIGTERM, None)
                    break
                log.warning("worker %d exited with %s; starting it again", w.index, code)
                w.restarts += 1
                w.start()
                w.wait_ready()
    finally:
        for w in pool:
            if w.proc:
                try:
                    w.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
        if not settings.redis_url:  # the workers' shared embedded server goes with them
            stop_embedded(settings)
        if context is not None:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]
        shutil.rmtree(metrics, ignore_errors=True)
    return 0
