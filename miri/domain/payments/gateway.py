"""The payment gateway interface and the original shop's simulated buyer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PaymentRequest:
    payment_id: int
    order_item_id: int
    user_id: int
    amount: int
    order_id: int


class PaymentGateway(Protocol):
    """A real gateway replaces the simulation; either answers, for each of the payments walking
    together, whether its buyer went on.

    ``False`` means the buyer abandoned (a normal outcome); an exception means the gateway
    itself failed, which the circuit breaker counts and the bus retries.
    """

    async def enter_screens(self, requests: Sequence[PaymentRequest]) -> list[bool]: ...

    async def pays(self, requests: Sequence[PaymentRequest]) -> list[bool]: ...


class SimulatedGateway:
    """The original's buyer: abandons at each of the two steps with probability ``abandon_rate``."""

    def __init__(self, abandon_rate: float, seed: int | None = None, delay: float = 0.0) -> None:
        if not 0.0 <= abandon_rate <= 1.0:
            raise ValueError("the abandon rate must be between 0 and 1")
        self.abandon_rate = abandon_rate
        self._rng = random.Random(seed)
        self._delay = delay

    async def _step(self, requests: Sequence[PaymentRequest]) -> list[bool]:
        if self._delay:  # the buyers act at once: one wait for the lot
            await asyncio.sleep(self._delay)
        draw = self._rng.random
        return [draw() >= self.abandon_rate for _ in requests]

    async def enter_screens(self, requests: Sequence[PaymentRequest]) -> list[bool]:
        return await self._step(requests)

    async def pays(self, requests: Sequence[PaymentRequest]) -> list[bool]:
        return await self._step(requests)
