"""Fixed-window counters in Redis, shared by every worker process."""

from __future__ import annotations

import redis.asyncio as aioredis

from miri.infra import keys

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {n, ttl}
"""

# Give one event back, without ever creating a key that has no expiry.
_UNDO = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis, enabled: bool) -> None:
        self.enabled = enabled
        self._client = client
        self._hit = client.register_script(_HIT)
        self._undo = client.register_script(_UNDO)

    async def hit(self, key: str, limit: int, window: int) -> int | None:
        """Count one event; returns seconds to wait when over ``limit``, else None."""
        if not self.enabled or limit <= 0:
            return None
        count, ttl = await self._hit(keys=[keys.rate_limit(key)], args=[window])
        return max(int(ttl), 1) if int(count) > limit else None

    async def check(self, key: str, limit: int) -> int | None:
        """Seconds to wait if ``key`` is already over ``limit``, without counting."""
        if not self.enabled or limit <= 0:
            return None
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.rate_limit(key))
        pipe.ttl(keys.rate_limit(key))
        count, ttl = await pipe.execute()
        return max(int(ttl), 1) if count is not None and int(count) >= limit else None

    async def undo(self, key: str) -> None:
        """Take back one counted event (the work it stood for did not happen)."""
        if self.enabled:
            await self._undo(keys=[keys.rate_limit(key)])

    async def reset(self, key: str) -> None:
        await self._client.delete(keys.rate_limit(key))
