"""Domain errors, each with its machine code; the server maps codes to HTTP statuses."""

from __future__ import annotations

from typing import Any


class ShopError(Exception):
    code = "ERROR"
    message = "the request could not be completed"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.data = data


class ValidationFailed(ShopError):
    code = "VALIDATION_FAILED"
    message = "the request is not valid"


class MalformedJson(ShopError):
    code = "MALFORMED_JSON"
    message = "the body must be a JSON object"


class Unauthenticated(ShopError):
    code = "UNAUTHENTICATED"
    message = "a valid access token is required"


class Forbidden(ShopError):
    code = "FORBIDDEN"
    message = "you are not allowed to do this"


class NotFound(ShopError):
    code = "NOT_FOUND"
    message = "not found"


class SoldOut(ShopError):
    code = "SOLD_OUT"
    message = "sold out"


class SaleNotOpen(ShopError):
    code = "SALE_NOT_OPEN"
    message = "the sale has not opened yet"


class LimitExceeded(ShopError):
    code = "LIMIT_EXCEEDED"
    message = "the per-buyer limit for these goods would be exceeded"


class QueuePassRequired(ShopError):
    code = "QUEUE_PASS_REQUIRED"
    message = "these goods are behind a waiting room: order with your own valid queue pass"


class EmailTaken(ShopError):
    code = "EMAIL_TAKEN"
    message = "an account with this email already exists"


class InvalidState(ShopError):
    code = "INVALID_STATE"
    message = "not allowed in the current state"


class IdempotencyConflict(ShopError):
    code = "IDEMPOTENCY_CONFLICT"
    message = "this Idempotency-Key was used with a different request"


class PayloadTooLarge(ShopError):
    code = "PAYLOAD_TOO_LARGE"
    message = "the body is larger than 64 KiB"


class RateLimited(ShopError):
    code = "RATE_LIMITED"
    message = "too many requests"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ShopError):
    code = "UNAVAILABLE"
    message = "a dependency is unavailable; nothing was changed"
