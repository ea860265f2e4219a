"""A minimal HTTP/1.1 keep-alive client for the load generator (``--client raw``).

aiohttp's client costs about twice what the server spends on a trivial request, so on a small
machine the load generator, not the server, sets the ceiling. This client sends pre-built request
bytes over asyncio protocols and parses only what the benchmark needs (status, Content-Length,
body), so far more of the machine is left to the server. It speaks to aiohttp servers on loopback:
no TLS, no chunked request bodies, responses must carry Content-Length (aiohttp's do).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection broke or the answer was not HTTP/1.1 as expected."""


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def _try(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        length = 0
        close = False
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            waiter.set_exception(HttpError(f"bad status line {lines[0][:80]!r}"))
            return
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            low = name.strip().lower()
            if low == b"content-length":
                length = int(value.strip())
            elif low == b"connection" and value.strip().lower() == b"close":
                close = True
            elif low == b"transfer-encoding":
                waiter.set_exception(HttpError("chunked responses are not supported"))
                return
        total = end + 4 + length
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4 : total])
        del self.buf[:total]
        if close:
            self.closed = True
        waiter.set_result((status, body))

    async def request(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise HttpError("connection closed")
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, self._expire, waiter)
        self.transport.write(data)
        self._try()
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future) -> None:
        if not waiter.done():
            self.closed = True
            waiter.set_exception(TimeoutError("no answer in time"))


class RawClient:
    """A pool of keep-alive connections to one ``http://host:port``; one request per connection
    at a time. ``request`` takes a connection, or waits for one (that wait is part of the
    latency, as it should be in an open-loop run)."""

    def __init__(self, base_url: str, size: int, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("the raw client speaks plain http only")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.hostport = f"{self.host}:{self.port}" if parts.port else self.host
        self.size = size
        self.timeout = timeout
        self._idle: list[_Conn] = []
        self._free = asyncio.Semaphore(size)
        self._all: set[_Conn] = set()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        self._all.add(conn)
        return conn

    def build(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.hostport}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(self, data: bytes) -> tuple[int, bytes]:
        async with self._free:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                status, body = await conn.request(data, self.timeout)
            except BaseException:
                self._drop(conn)
                raise
            if conn.closed:
                self._drop(conn)
            else:
                self._idle.append(conn)
            return status, body

    def _drop(self, conn: _Conn) -> None:
        self._all.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def close(self) -> None:
        for conn in list(self._all):
            self._drop(conn)
        self._idle.clear()
