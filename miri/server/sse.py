"""Server-Sent Events: how every stream of the API answers (the stock stream, the waiting room)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")
KEEP_ALIVE = b": keep-alive\n\n"  # a comment line: clients ignore it, proxies see traffic


def event(data: bytes) -> bytes:
    """One event whose ``data:`` is ``data`` (JSON, one line)."""
    return b"data: " + data + b"\n\n"


async def stream(
    request: web.Request, source: AsyncGenerator[T, None], encode: Callable[[T], bytes]
) -> web.StreamResponse:
    """Send each item of ``source``, encoded, until it ends or the client leaves; ``source`` is
    closed either way (its ``finally`` lets go of what it watched).

    The first item is awaited before the response starts, so an error raised for it (no such
    goods, no ticket, a dependency away) is answered as any other request's, in the envelope.
    """
    try:
        first = await anext(source)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
                # Sent with the headers at prepare(), before the middleware would add it.
                "X-Request-Id": request["request_id"],
            }
        )
        await response.prepare(request)
        try:
            await response.write(encode(first))
            async for item in source:
                await response.write(encode(item))
        except ConnectionError:
            pass  # the client left
        return response
    finally:
        await source.aclose()
