"""A server as a subprocess on this machine: ``miri serve`` (or the bare endpoint) started, awaited
until it says where it listens, and stopped. The bench, the scripts in ``benchmarks/`` and the
end-to-end tests all start servers this one way.

The server's output goes through a pipe until its "listening on" line, and is then drained by a
thread (into a log file when one is given) so that a full pipe never stalls the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

READY = "listening on"
MIRI = [sys.executable, "-m", "miri.cli.main"]


def serve_command(data_dir: Path, port: int, *extra: str, host: str = "127.0.0.1") -> list[str]:
    """``miri serve`` on ``host:port`` for ``data_dir``, without an access log."""
    return [
        *MIRI,
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--no-access-log",
        *extra,
    ]


def start_listening(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    log: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[str]:
    """Start ``argv`` (``env`` on top of this process's environment); return once it prints
    "listening on". Raises RuntimeError, with the output so far, when it exits or takes longer
    than ``timeout`` first."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if READY in line:
            break
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the server did not listen within {timeout:g} s:\n{''.join(seen)}")
    else:
        code = proc.wait()
        raise RuntimeError(f"the server exited with {code} before listening:\n{''.join(seen)}")
    threading.Thread(target=_drain, args=(proc.stdout, log, seen), daemon=True).start()
    return proc


def _drain(out: IO[str], log: Path | None, seen: list[str]) -> None:
    if log is None:
        for _ in out:
            pass
        return
    with log.open("a", encoding="utf-8") as sink:
        sink.writelines(seen)
        for line in out:
            sink.write(line)
            sink.flush()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send ``sig`` (a clean stop) unless it already exited; kill it after ``timeout`` seconds.
    Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def start_serve(
    data_dir: Path,
    port: int,
    *extra: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[str]:
    """``miri serve`` for ``data_dir`` on 127.0.0.1:``port``, listening when this returns."""
    return start_listening(serve_command(data_dir, port, *extra), env, log=log, timeout=timeout)


@contextlib.contextmanager
def serving(
    data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``start_serve`` for the length of a block, stopped with SIGTERM at its end."""
    proc = start_serve(data_dir, port, *extra, env=env)
    try:
        yield proc
    finally:
        stop(proc)


def doctor(
    data_dir: Path, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``miri doctor`` on ``data_dir``, as an operator runs it (exit 0: stock is consistent)."""
    return subprocess.run(
        [*MIRI, "doctor", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
