"""Which consumer handles which event type: the table the publisher, dispatcher and views share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from miri.domain.events import Event

Handler = Callable[[Any], Awaitable[None]]
ManyHandler = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batched:
    """A handler that also takes its events many at a time: one write for a sale's thousands.

    ``many`` must be all-or-nothing per event, as ``one`` is (each event's mark and effect in
    one commit, or a repeat that does nothing): when it raises, the dispatcher delivers the
    same events one by one through ``one``, so a single bad event fails alone.
    """

    one: Handler
    many: ManyHandler

    async def __call__(self, event: Event) -> None:
        await self.one(event)


class Subscriptions:
    """``(consumer, event type) -> handler``; each consumer is its own group, as in Kafka."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._by_type: dict[str, list[str]] = {}
        self.consumers: list[str] = []
        # The consumers as one JSON array: the store's statements take them in one parameter.
        self.consumers_json = "[]"

    def add(self, consumer: str, event_type: type[Event], handler: Handler) -> None:
        key = (consumer, event_type.name)
        if key in self._handlers:
            raise ValueError(f"{consumer} already handles {event_type.name}")
        self._handlers[key] = handler
        self._by_type.setdefault(event_type.name, []).append(consumer)
        self.consumers = sorted({c for c, _ in self._handlers})
        self.consumers_json = orjson.dumps(self.consumers).decode()

    def handler(self, consumer: str, type_name: str) -> Handler | None:
        return self._handlers.get((consumer, type_name))

    def consumers_of(self, type_name: str) -> list[str]:
        return self._by_type.get(type_name, [])

    def __bool__(self) -> bool:
        return bool(self._handlers)
