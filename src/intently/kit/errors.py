"""The one error hierarchy. The app's single handler turns these into the envelope."""

from __future__ import annotations

from typing import Any


class IntentlyError(Exception):
    """A failure the caller can act on: an HTTP status, a sentence, optional data."""

    status: int = 400

    def __init__(
        self,
        custom_message: str,
        *,
        status: int | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(custom_message)
        self.custom_message = custom_message
        if status is not None:
            self.status = status
        self.data = data
        self.headers = headers  # sent with the error (e.g. Retry-After)


class BadRequest(IntentlyError):
    status = 400


class Unauthorized(IntentlyError):
    status = 401


class NotFound(IntentlyError):
    status = 404


class Conflict(IntentlyError):
    status = 409


class PayloadTooLarge(IntentlyError):
    status = 413


class UnsupportedMediaType(IntentlyError):
    status = 415


class ValidationFailed(IntentlyError):
    """The request's shape is wrong: 400 with a list of per-property constraint failures."""

    status = 400

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__("Validation failed", data=errors)
        self.errors = errors


def validation_error(prop: str, path: str, rule: str, text: str) -> ValidationFailed:
    """One-field validation failure, e.g. for a query parameter."""
    return ValidationFailed([{"property": prop, "path": path, "constraints": {rule: text}}])


class UnprocessableEntity(IntentlyError):
    status = 422


class TooManyRequests(IntentlyError):
    """Over a rate limit; the gate adds Retry-After and the RateLimit-* headers."""

    status = 429
