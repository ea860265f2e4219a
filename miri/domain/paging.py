"""One page of a longer list: the arithmetic every listing shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    size: int
    total_items: int

    @property
    def total_pages(self) -> int:
        return (self.total_items + self.size - 1) // self.size if self.size else 0
