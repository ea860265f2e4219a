"""Circuit breakers (purgatory) around the parts that can hang or fail: SMTP, the payment gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState


class CircuitOpen(Exception):
    """The breaker is open: fail fast without calling the dependency."""

    def __init__(self, name: str) -> None:
        super().__init__(f"circuit {name!r} is open")
        self.name = name


class Breakers:
    def __init__(self, threshold: int = 5, ttl: float = 30.0) -> None:
        self._factory = AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
        self._names: set[str] = set()

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        self._names.add(name)
        breaker = await self._factory.get_breaker(name)
        try:
            async with breaker:
                yield
        except OpenedState:
            raise CircuitOpen(name) from None

    async def states(self) -> dict[str, str]:
        """Each known breaker's state: ``closed``, ``opened`` or ``half-opened``."""
        out = {}
        for name in sorted(self._names):
            breaker = await self._factory.get_breaker(name)
            out[name] = breaker.context.state
        return out
