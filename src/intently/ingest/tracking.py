"""The collector's wire format, Segment's HTTP tracking API: a request body read and
validated into web events (with msgspec), and what is wrong with each event refused.

Refused events are 400 (malformed) or 413 (over `MAX_EVENT_BYTES`), each `Problem`
naming the field and the value at fault. Every call type Segment's and RudderStack's SDKs
send is accepted: `page`, `track`, `identify`, `group`, and `screen` (a mobile app's page:
stored, no website signal) and `alias` (links `previousId` to `userId`).

A body nested deeper than msgspec decodes (a flood of `[[[[...`) is a `BodyError` (400),
never a RecursionError escaping as a 500.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from intently.ingest.matches import Match
from intently.kit.db import json_param
from intently.kit.ids import new_id
from intently.kit.text import as_json
from intently.kit.timefmt import US_PER_DAY, parse_iso8601

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_ID_CHARS = 256  # ids are indexed; PostgreSQL caps a btree entry at ~2.7 KB
FUTURE_SLACK_US = US_PER_DAY  # a timestamp further ahead than this is the sender's clock

EVENT_TYPES = ("page", "track", "identify", "group", "screen", "alias")

Id = str | int  # Segment says string; some SDKs send numeric user ids


class PageContext(msgspec.Struct):
    path: str | None = None
    url: str | None = None
    referrer: str | None = None
    title: str | None = None
    search: str | None = None


class Context(msgspec.Struct):
    ip: str | None = None
    page: PageContext | None = None
    userAgent: str | None = None
    groupId: Id | None = None
    traits: dict[str, Any] | None = None


class EventIn(msgspec.Struct):
    type: str | None = None
    messageId: Id | None = None
    anonymousId: Id | None = None
    userId: Id | None = None
    previousId: Id | None = None  # alias: the id the user was known by before
    timestamp: str | None = None
    sentAt: str | None = None
    originalTimestamp: str | None = None
    context: Context | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    groupId: Id | None = None
    event: str | None = None
    name: str | None = None
    writeKey: str | None = None


class BatchIn(msgspec.Struct):
    batch: list[msgspec.Raw]
    writeKey: str | None = None
    sentAt: str | None = None
    context: Context | None = None


class _KeyOnly(msgspec.Struct):
    writeKey: str | None = None


_batch_decoder = msgspec.json.Decoder(BatchIn)
_event_decoder = msgspec.json.Decoder(EventIn)
_key_decoder = msgspec.json.Decoder(_KeyOnly)
_any_decoder = msgspec.json.Decoder()


@dataclass(slots=True)
class WebEvent:
    """A validated event waiting in the buffer."""

    message_id: str
    type: str
    event: str | None
    anonymous_id: str | None
    user_id: str | None
    group_id: str | None  # the group call's groupId, or context.groupId
    previous_id: str | None  # alias: the earlier anonymous or user id of `user_id`
    occurred_at: int
    received_at: int
    url: str | None
    path: str | None
    title: str | None
    referrer: str | None
    ip: str | None
    peer: str | None  # the connection's address (context.ip is the sender's word)
    email: str | None  # identify traits (or context traits): a candidate business email
    group_traits: dict[str, Any] | None  # group calls
    # What web_events.properties keeps, as JSON already: a buffered event is then a few
    # strings, not a tree of dicts for the garbage collector to walk on every pass.
    doc: str
    match: Match | None = None
    # context.ip differs from the connection's address, which is not a trusted sender:
    # the address is the sender's word (a claim), not evidence.
    ip_claimed: bool = False
    # Sent by a trusted server (a relay, a backend, the demo): its claims are evidence.
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one event was refused: 400 (malformed) or 413 (over 32 KB)."""

    index: int
    status: int
    field: str
    message: str
    record: Any

    @property
    def reason(self) -> str:
        return "event_too_large" if self.status == 413 else "invalid_event"

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "field": self.field,
            "message": self.message,
        }


@dataclass(slots=True)
class Parsed:
    """A request body read: its write key (if in the body), good events and problems."""

    write_key: str | None
    events: list[WebEvent]
    problems: list[Problem]

    @property
    def count(self) -> int:
        return len(self.events) + len(self.problems)


class BodyError(ValueError):
    """The body as a whole is unusable (not JSON, not an object, no `batch` list)."""


_TOO_DEEP = "Request body is nested too deeply to be an event (arrays or objects inside each other)"


def _show(value: Any) -> str:
    return as_json(value, limit=80, ellipsis="...", compact=True)


def _path_value(doc: Any, path: str) -> Any:
    """The value at a msgspec error path (`context.ip`, `batch[0]`) of a decoded document."""
    for name, index in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", path):
        if name and isinstance(doc, dict):
            doc = doc.get(name)
        elif index and isinstance(doc, list) and int(index) < len(doc):
            doc = doc[int(index)]
        else:
            return None
    return doc


def _ident(value: Id | None, name: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise _Invalid(name, f"is longer than {MAX_ID_CHARS} characters")
    return text or None


class _Invalid(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _instant(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_iso8601(value)
    except (ValueError, OverflowError):
        raise _Invalid(name, f"{_show(value)} is not an ISO 8601 date-time") from None


def _ip(value: str | None) -> str | None:
    """The canonical text of an IP address, or None when it is not one."""
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    text = str(ip)
    return text if len(text) <= 45 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _email_of(traits: dict[str, Any] | None) -> str | None:
    if not traits:
        return None
    email = traits.get("email")
    return email.strip() if isinstance(email, str) and "@" in email else None


def _event(
    raw: bytes,
    kind: str | None,
    batch_ctx: Context | None,
    batch_sent: int | None,
    received: int,
    peer_ip: str | None,
    trusted: bool,
) -> WebEvent:
    """One event from its JSON; raises _Invalid (400) naming the field and the value."""
    if b"\\u0000" in raw:
        raise _Invalid("event", "contains a NUL character (\\u0000), which cannot be stored")
    try:
        e = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        what, _, where = str(exc).partition(" - at `$")
        where = where.rstrip("`")
        value = _path_value(_any_decoder.decode(raw), where)
        expected = re.match(r"Expected `(.+?)`, got `.+?`", what)
        text = f"expected {expected[1]}" if expected else what
        raise _Invalid(where.lstrip(".") or "event", f"{text}, got {_show(value)}") from None
    etype = kind or e.type
    if not etype:
        raise _Invalid("type", f"is missing (one of {', '.join(EVENT_TYPES)})")
    if etype not in EVENT_TYPES:
        raise _Invalid("type", f"{_show(etype)} is not one of {', '.join(EVENT_TYPES)}")
    anonymous_id = _ident(e.anonymousId, "anonymousId")
    user_id = _ident(e.userId, "userId")
    previous_id = _ident(e.previousId, "previousId")
    if etype == "alias":
        if previous_id is None:
            raise _Invalid("previousId", "is missing (an alias call names the earlier id)")
        if user_id is None:
            raise _Invalid("userId", "is missing (an alias call names the new user id)")
    if anonymous_id is None and user_id is None:
        raise _Invalid("userId", "an event needs a userId or an anonymousId; it has neither")
    message_id = _ident(e.messageId, "messageId") or "itly-" + new_id()
    ctx = e.context or batch_ctx
    page = ctx.page if ctx is not None and ctx.page is not None else PageContext()
    props = e.properties or {}
    timestamp = _instant(e.timestamp, "timestamp")
    original = _instant(e.originalTimestamp, "originalTimestamp")
    sent = _instant(e.sentAt, "sentAt")
    if sent is None:
        sent = batch_sent
    if timestamp is not None:
        occurred = timestamp
    elif original is not None:
        # Segment's clock-skew correction: the sender's clock may be off, its intervals not.
        occurred = received - (sent - original) if sent is not None else original
    else:
        occurred = received
    if occurred > received + FUTURE_SLACK_US:
        occurred = received
    event_name = e.event.strip() if e.event else None
    if etype == "track" and not event_name:
        raise _Invalid("event", "is missing (a track call names its event)")
    group_id = _ident(e.groupId, "groupId")
    if etype == "group" and group_id is None:
        raise _Invalid("groupId", "is missing (a group call names its group)")
    if group_id is None and ctx is not None:
        group_id = _ident(ctx.groupId, "context.groupId")
    ip: str | None = None
    if ctx is not None and ctx.ip:
        ip = _ip(ctx.ip)
        if ip is None:
            raise _Invalid("context.ip", f"{_show(ctx.ip)} is not an IP address")
    else:
        ip = peer_ip
    url = page.url or _text(props.get("url"))
    path = page.path or _text(props.get("path"))
    if path is None and url:
        path = urlsplit(url).path or "/"
    email = None
    if etype == "identify":
        email = _email_of(e.traits) or (user_id if user_id and "@" in user_id else None)
    if email is None and ctx is not None:
        email = _email_of(ctx.traits)
    doc: dict[str, Any] = {}
    if e.properties:
        doc["properties"] = e.properties
    if e.traits:
        doc["traits"] = e.traits
    if group_id:
        doc["groupId"] = group_id
    if previous_id:
        doc["previousId"] = previous_id
    if e.name:
        doc["name"] = e.name
    if ctx is not None and ctx.userAgent:
        doc["userAgent"] = ctx.userAgent
    search = page.search or _text(props.get("search"))
    if search:
        doc["search"] = search
    return WebEvent(
        message_id=message_id,
        type=etype,
        event=event_name,
        anonymous_id=anonymous_id,
        user_id=user_id,
        group_id=group_id,
        previous_id=previous_id,
        occurred_at=occurred,
        received_at=received,
        url=url,
        path=path,
        title=page.title or _text(props.get("title")) or (e.name if etype == "screen" else None),
        referrer=page.referrer or _text(props.get("referrer")),
        ip=ip,
        peer=peer_ip,
        email=email,
        group_traits=e.traits if etype == "group" else None,
        doc=json_param(doc),
        ip_claimed=not trusted and peer_ip is not None and ip is not None and ip != peer_ip,
        trusted=trusted,
    )


def _record(raw: bytes) -> Any:
    """What a reject keeps of an event: the event, or its size when it is too large."""
    if len(raw) > MAX_EVENT_BYTES:
        return {"bytes": len(raw), "head": raw[:200].decode("utf-8", "replace")}
    try:
        return _any_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return {"raw": raw[:2000].decode("utf-8", "replace")}


def parse_body(
    body: bytes,
    kind: str | None,
    *,
    received: int,
    peer: str | None,
    trusted: bool = True,
) -> Parsed:
    """A single event (`kind` = its type) or a batch (`kind` None); raises BodyError.

    `trusted`: the sender is a server the operator trusts (the collector's endpoints pass
    whether the peer is a listed trusted sender), so its `context.ip`, group traits and
    identify emails are evidence rather than the browser's word."""
    peer_ip = _ip(peer)
    batch_ctx: Context | None = None
    batch_sent: int | None = None
    if kind is None:
        try:
            b = _batch_decoder.decode(body)
        except RecursionError:
            raise BodyError(_TOO_DEEP) from None
        except msgspec.ValidationError as exc:
            raise BodyError(f"Request body is not a batch: {exc}") from None
        except msgspec.DecodeError:
            raise BodyError("Request body is not valid JSON") from None
        try:
            batch_sent = _instant(b.sentAt, "sentAt")
        except _Invalid as exc:
            raise BodyError(str(exc)) from None
        write_key, batch_ctx = b.writeKey, b.context
        items: list[bytes] = [bytes(r) for r in b.batch]
    else:
        try:
            write_key = _key_decoder.decode(body).writeKey
        except RecursionError:
            raise BodyError(_TOO_DEEP) from None
        except msgspec.ValidationError as exc:
            raise BodyError(f"Request body must be a JSON object: {exc}") from None
        except msgspec.DecodeError:
            raise BodyError("Request body is not valid JSON") from None
        items = [body]
    events: list[WebEvent] = []
    problems: list[Problem] = []
    for i, raw in enumerate(items):
        if len(raw) > MAX_EVENT_BYTES:
            problems.append(
                Problem(
                    i,
                    413,
                    "event",
                    f"event is {len(raw):,} bytes; the limit is {MAX_EVENT_BYTES // 1024} KB",
                    _record(raw),
                )
            )
            continue
        try:
            events.append(_event(raw, kind, batch_ctx, batch_sent, received, peer_ip, trusted))
        except _Invalid as exc:
            problems.append(Problem(i, 400, exc.field, str(exc), _record(raw)))
        except RecursionError:
            # A batch item is decoded lazily (msgspec.Raw): its depth shows only here.
            raise BodyError(_TOO_DEEP) from None
    return Parsed(write_key, events, problems)
