"""Who serves a data dir: each ``miri serve`` process leaves a small file there while it runs.

``run/server-<pid>.json`` holds the pid, the URL and the start time; it is written once the port
is open and removed on a clean stop. A server that died without removing it is recognised by
its pid: gone, or reused by a process that started later than the file says.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miri.infra.processes import pid_alive

RUN_DIR = "run"
SLACK = 2.0  # seconds of clock slack between a process's start and the time it wrote its file


def presence_path(data_dir: Path, pid: int | None = None) -> Path:
    return data_dir / RUN_DIR / f"server-{pid or os.getpid()}.json"


@contextlib.contextmanager
def announce(data_dir: Path, url: str, **extra: Any) -> Iterator[Path]:
    """Say "this process serves ``url``" in the data dir until the block ends."""
    path = presence_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "url": url, "startedAt": time.time(), **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def servers(data_dir: Path) -> list[dict[str, Any]]:
    """The live servers of ``data_dir`` (blocking: call it from a thread in async code)."""
    found = []
    for path in sorted((data_dir / RUN_DIR).glob("server-*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            pid, started = int(record["pid"]), float(record["startedAt"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid_alive(pid, started_before=started + SLACK):
            found.append(record)
    return found
