"""The client's one error hierarchy: every failure the API answers, and a connection that
failed after its retries."""

from __future__ import annotations

from typing import Any


class IntentlyError(Exception):
    """A request that failed: the HTTP status (0 when no answer came), the envelope's
    `message` and `customMessage`, the request path and the envelope's `data`."""

    def __init__(
        self,
        status: int,
        message: str,
        custom_message: str | None = None,
        path: str = "",
        data: Any = None,
    ):
        super().__init__(f"{status} {message}: {custom_message or ''} ({path})".strip())
        self.status = status
        self.message = message
        self.custom_message = custom_message
        self.path = path
        self.data = data


class AuthError(IntentlyError):
    """401 or 403: the key is missing, wrong or revoked, or API access is off."""


class ValidationError(IntentlyError):
    """400: the request's shape is wrong; `errors` lists each field's problems."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.data if isinstance(self.data, list) else []


class NotFound(IntentlyError):
    """404."""


class Conflict(IntentlyError):
    """409."""


class RateLimited(IntentlyError):
    """429; `retry_after` is the server's Retry-After in seconds, when it sent one."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.retry_after = retry_after


class ServerError(IntentlyError):
    """5xx."""


class ConnectionFailed(IntentlyError):
    """No answer (refused, reset, timed out) after the retries allowed."""


def error_for(status: int, body: Any, path: str, retry_after: float | None) -> IntentlyError:
    """The exception for an error response (the envelope when it is one)."""
    envelope = body if isinstance(body, dict) else {}
    args = (
        status,
        str(envelope.get("message") or "Error"),
        envelope.get("customMessage"),
        str(envelope.get("path") or path),
        envelope.get("data"),
    )
    if status in (401, 403):
        return AuthError(*args)
    if status == 404:
        return NotFound(*args)
    if status == 409:
        return Conflict(*args)
    if status == 429:
        return RateLimited(*args, retry_after=retry_after)
    if status >= 500:
        return ServerError(*args)
    if status == 400 and isinstance(envelope.get("data"), list):
        return ValidationError(*args)
    return IntentlyError(*args)
