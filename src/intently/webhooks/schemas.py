from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from intently.events.schemas import EVENT_TYPES
from intently.kit.validation import Strict

WebhookStatus = Literal["active", "disabled"]
DELIVERY_STATUSES = ("pending", "delivered", "failed")
MAX_URL_LENGTH = 2048


def check_url(value: str) -> str:
    """An absolute http(s) URL with a host, no credentials and no fragment."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        parts = None
    problem = None
    if parts is None:
        problem = "is not a valid URL"
    elif parts.scheme not in ("http", "https"):
        problem = "must be an http or https URL"
    elif not parts.hostname:
        problem = "must name a host"
    elif parts.username is not None or parts.password is not None:
        problem = "must not carry a user name or password"
    elif parts.fragment:
        problem = "must not have a #fragment"
    elif len(text) > MAX_URL_LENGTH:
        problem = f"must be at most {MAX_URL_LENGTH} characters"
    elif any(c.isspace() or ord(c) < 32 for c in text):
        problem = "must not contain spaces or control characters"
    if problem is not None:
        raise ValueError(f"url {problem}; got '{value}'")
    return text


def check_event_types(value: list[str]) -> list[str]:
    unknown = [t for t in value if t != "*" and t not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"eventTypes has unknown event type '{unknown[0]}'; each must be one of "
            f'{", ".join(EVENT_TYPES)} (or "*" for every type)'
        )
    if "*" in value and len(value) > 1:
        raise ValueError('eventTypes "*" means every type and stands alone')
    return list(dict.fromkeys(value))


def check_secret(value: str) -> str:
    if len(value) < 16 or len(value) > 256 or not value.isprintable() or value != value.strip():
        raise ValueError("secret must be 16 to 256 printable characters without outer spaces")
    return value


UrlStr = Annotated[str, AfterValidator(check_url)]
EventTypes = Annotated[
    list[str], Field(min_length=1, max_length=20), AfterValidator(check_event_types)
]
SecretStr = Annotated[str, AfterValidator(check_secret)]


def check_description(value: str) -> str:
    if len(value) > 500:
        raise ValueError(f"description must be at most 500 characters; got {len(value)}")
    return value


Description = Annotated[str, AfterValidator(check_description)]


class WebhookIn(Strict):
    url: UrlStr
    eventTypes: EventTypes
    secret: SecretStr | None = None
    description: Description | None = None


class WebhookPatch(Strict):
    url: UrlStr | None = None
    eventTypes: EventTypes | None = None
    description: Description | None = None
    status: WebhookStatus | None = None
