"""One run of a piece of work for every caller that asks for it at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    """Concurrent callers asking for the same key share one run of the work (a rebuild, a
    fetch, a read of a room's figures): the first starts it, the others await its outcome."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        future = self._running.get(key)
        if future is None:
            future = asyncio.ensure_future(work())
            self._running[key] = future
            future.add_done_callback(lambda _: self._running.pop(key, None))
            # Every waiter may have gone (cancelled): the outcome is still looked at once, so
            # asyncio does not log an error nobody retrieved.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Shielded: one waiter giving up must not cancel the work for the others.
        return await asyncio.shield(future)
