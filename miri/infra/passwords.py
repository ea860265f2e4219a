"""Password hashing with argon2id (libpass); hashing runs off the event loop."""

from __future__ import annotations

import asyncio

from passlib.hash import argon2

from miri.config import Settings


class PasswordHasher:
    def __init__(self, settings: Settings) -> None:
        self._hasher = argon2.using(
            type="ID",
            memory_cost=settings.argon2_memory_kib,
            rounds=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )
        # A fixed hash to verify against for unknown emails, so both paths cost the same time.
        self._decoy = self._hasher.hash("miri-decoy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        return await asyncio.to_thread(self._hasher.verify, password, hashed or self._decoy)
