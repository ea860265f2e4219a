"""Shared pieces of request and response models."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from miri.domain import rules

T = TypeVar("T")


class Body(BaseModel):
    # Strict: "5" is not 5 and 5 is not "5"; clients get told instead of guessed at.
    model_config = ConfigDict(strict=True, str_max_length=1000)


Email = Annotated[StrictStr, AfterValidator(rules.email)]
Password = Annotated[StrictStr, AfterValidator(rules.password)]
PhoneNumber = Annotated[StrictStr, AfterValidator(rules.phone_number)]
Address = Annotated[StrictStr, AfterValidator(rules.address)]
UserName = Annotated[StrictStr, AfterValidator(rules.user_name)]


class Paging(BaseModel):
    """``?page=0&size=10``: 0-based, size 1..100, newest first."""

    page: int = Field(0, ge=0, le=1_000_000)
    size: int = Field(10, ge=1, le=100)


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    size: int
    totalItems: int
    totalPages: int


def page_of(items: list[Any], paging: Paging, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": paging.page,
        "size": paging.size,
        "totalItems": total,
        "totalPages": (total + paging.size - 1) // paging.size,
    }
