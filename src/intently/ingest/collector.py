"""The website collector: Segment-compatible events in; web events, visitor identities and
`website` signals out.

Request path (`endpoints.py`): the body is parsed and validated here with msgspec, and
the valid events are appended to an in-process buffer; nothing is written to the
database while the sender waits. A flusher thread writes the buffer every
`collector_flush_ms` (default 500 ms), or as soon as `collector_batch` (default 2,000)
events wait, in one transaction per workspace (per `collector_batch` events): the web
events (deduplicated on messageId), the resolved account of each, the visitor
identities, and the `website` signals (through `signals.service.store`).

Durability: an accepted event lives only in this process's memory until its flush
commits. **A crash (kill -9, power loss) loses what is buffered: normally the events of
the last flush window, `collector_flush_ms` (500 ms by default) plus the flush under
way.** When writing falls behind, at most `BUFFER_FLUSHES` x `collector_batch` events
(20,000 by default) wait; beyond that requests are answered 503 with Retry-After, so
senders retry rather than lose data, and the window stays bounded. A normal stop
(SIGTERM) flushes first. A flush that fails (database down or locked) keeps its events
and retries with backoff.

Resolution, first match wins, recorded on the event and its signal (method, provider,
confidence): (1) the event's own evidence (group traits `website`/`domain`, an identify
business email) or an identity set earlier for its anonymous id, user id or group id by
a group or identify call; (2) the IP resolver (workspace ranges, then MaxMind
databases); (3) an earlier IP resolution of the same anonymous id (method
`anonymous_id`, confidence x 0.9). When a group or identify call gives an anonymous id
an identity, its unresolved page and form events of the last 30 days are resolved and
become signals too (back-fill).

Accounting: refused events (malformed: 400; over 32 KB: 413) are kept as rejects
(`invalid_event`, `event_too_large`) with the field and value at fault, and each flush
adds its counts (read, accepted, duplicate, rejected, skipped `do_not_track`) to the
workspace's ingest run of the day (kind `collector`, label `collector YYYY-MM-DD`).

IP retention: raw IPs (`web_events.ip`) are set to NULL once older (by receipt) than the
workspace's `ipRetentionDays` (default 7; 0 never stores them). The flusher does it at
most every `PURGE_EVERY_S` (5 minutes); `intently website purge-ips` does it on demand.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import translate
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy.engine import Connection, Engine

from intently.ingest.resolvers import (
    IpResolver,
    Match,
    database_paths,
    match_email,
    match_group,
)
from intently.ingest.writekeys import WriteKeyCache
from intently.kit.db import (
    fetch_all,
    in_values,
    json_param,
    json_value,
    param_marker,
    read_tx,
    write_tx,
)
from intently.kit.ids import new_id
from intently.kit.metrics import COLLECTOR_WRITTEN
from intently.kit.timefmt import now_us, parse_iso8601
from intently.settings import Settings
from intently.signals import repository as signals_repo
from intently.signals.schemas import default_settings
from intently.signals.service import US_PER_DAY, SignalIn, source_config, store

log = logging.getLogger("intently.collector")

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# Events (and rejects to record) that may wait, in flushes' worth: then requests get 503.
BUFFER_FLUSHES = 10
MAX_ID_CHARS = 256  # ids are indexed; PostgreSQL caps a btree entry at ~2.7 KB
MAX_TOPIC_CHARS = 200
FUTURE_SLACK_US = US_PER_DAY  # a timestamp further ahead than this is the sender's clock
BACKFILL_US = 30 * US_PER_DAY
ANONYMOUS_ID_DECAY = 0.9
PURGE_EVERY_S = 300.0
CONFIG_CACHE_SECONDS = 5.0
MAX_BACKOFF_S = 30.0

EVENT_TYPES = ("page", "track", "identify", "group")
SOURCE = "website"


# ---- the wire format (Segment HTTP tracking API) -----------------------------------------

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
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class WebEvent:
    """A validated event waiting in the buffer."""

    message_id: str
    type: str
    event: str | None
    anonymous_id: str | None
    user_id: str | None
    group_id: str | None  # the group call's groupId, or context.groupId
    occurred_at: int
    received_at: int
    url: str | None
    path: str | None
    title: str | None
    referrer: str | None
    ip: str | None
    email: str | None  # identify traits (or context traits): a candidate business email
    group_traits: dict[str, Any] | None  # group calls
    # What web_events.properties keeps, as JSON already: a buffered event is then a few
    # strings, not a tree of dicts for the garbage collector to walk on every pass.
    doc: str
    match: Match | None = None


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


def _show(value: Any) -> str:
    text = _encoder.encode(value).decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:77] + "..."


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
        occurred_at=occurred,
        received_at=received,
        url=url,
        path=path,
        title=page.title or _text(props.get("title")),
        referrer=page.referrer or _text(props.get("referrer")),
        ip=ip,
        email=email,
        group_traits=e.traits if etype == "group" else None,
        doc=json_param(doc),
    )


def _record(raw: bytes) -> Any:
    """What a reject keeps of an event: the event, or its size when it is too large."""
    if len(raw) > MAX_EVENT_BYTES:
        return {"bytes": len(raw), "head": raw[:200].decode("utf-8", "replace")}
    try:
        return _any_decoder.decode(raw)
    except msgspec.DecodeError:
        return {"raw": raw[:2000].decode("utf-8", "replace")}


def parse_body(body: bytes, kind: str | None, *, received: int, peer: str | None) -> Parsed:
    """A single event (`kind` = its type) or a batch (`kind` None); raises BodyError."""
    peer_ip = _ip(peer)
    batch_ctx: Context | None = None
    batch_sent: int | None = None
    if kind is None:
        try:
            b = _batch_decoder.decode(body)
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
            events.append(_event(raw, kind, batch_ctx, batch_sent, received, peer_ip))
        except _Invalid as exc:
            problems.append(Problem(i, 400, exc.field, str(exc), _record(raw)))
    return Parsed(write_key, events, problems)


# ---- signals from events -----------------------------------------------------------------


@lru_cache(maxsize=256)
def _compiled(
    patterns: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, re.Pattern[str], bool], ...]:
    return tuple(
        (name, re.compile(translate(pattern.lower())), "://" in pattern)
        for name, pattern in patterns
    )


@dataclass(frozen=True, slots=True)
class SignalRules:
    """A workspace's website settings, ready to classify events."""

    high_value: tuple[tuple[str, re.Pattern[str], bool], ...]
    form_events: frozenset[str]
    ip_retention_days: int

    @classmethod
    def of(cls, cfg: dict[str, Any]) -> SignalRules:
        pages = tuple((p["name"], p["pattern"]) for p in cfg.get("highValuePages") or ())
        return cls(
            high_value=_compiled(pages),
            form_events=frozenset(e.strip().lower() for e in cfg.get("formEvents") or ()),
            ip_retention_days=int(cfg.get("ipRetentionDays", 7)),
        )

    def classify(
        self, etype: str, event: str | None, path: str | None, url: str | None
    ) -> tuple[str, str] | None:
        """(signal type, topic) of an event, or None when it makes no signal."""
        if etype == "page":
            lowered_path = (path or "").lower()
            lowered_url = (url or "").lower()
            for name, regex, full_url in self.high_value:
                target = lowered_url if full_url else lowered_path
                if target and regex.match(target):
                    return "high_value_page_view", name[:MAX_TOPIC_CHARS]
            return "page_view", page_topic(path)
        if etype == "track" and event and event.lower() in self.form_events:
            return "form_submit", event[:MAX_TOPIC_CHARS]
        return None


def page_topic(path: str | None) -> str:
    """The first path segment (`/docs/x` -> `docs`; `/` -> `home`); '' when no path is known."""
    if path is None:
        return ""
    first = path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/", 1)[0]
    return first.lower()[:MAX_TOPIC_CHARS] or "home"


def _signal(
    rules: SignalRules,
    m: Match,
    message_id: str,
    etype: str,
    event: str | None,
    path: str | None,
    url: str | None,
    occurred: int,
) -> SignalIn | None:
    kind = rules.classify(etype, event, path, url)
    if kind is None:
        return None
    return SignalIn(
        domain=m.domain,
        source=SOURCE,
        type=kind[0],
        occurred_at=occurred,
        natural_key="msg:" + message_id,
        topic=kind[1],
        provider=m.provider,
        match_method=m.method,
        confidence=m.confidence,
    )


# ---- queries -----------------------------------------------------------------------------

_WEB_EVENT_COLUMNS = (
    "workspace_id", "id", "message_id", "type", "event", "anonymous_id", "user_id",
    "occurred_at", "received_at", "url", "path", "title", "referrer", "ip", "domain",
    "match_method", "provider", "confidence", "properties",
)  # fmt: skip

# (domain, match_method, provider, confidence)
Identity = tuple[str, str, str, float]


def _chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _stored_message_ids(conn: Connection, ws: int, ids: list[str]) -> set[str]:
    m = param_marker(conn)
    out: set[str] = set()
    for part in _chunks(ids, 1000):
        cond, params = in_values(conn, "message_id", part)
        sql = f"SELECT message_id FROM web_events WHERE workspace_id = {m} AND {cond}"
        out.update(r[0] for r in fetch_all(conn, sql, (ws, *params)))
    return out


def _insert_web_events(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"INSERT INTO web_events ({', '.join(_WEB_EVENT_COLUMNS)}) "
        f"VALUES ({', '.join([m] * len(_WEB_EVENT_COLUMNS))}) "
        "ON CONFLICT (workspace_id, message_id) DO NOTHING"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, rows)
    finally:
        cur.close()


def _load_identities(conn: Connection, ws: int, keys: list[str]) -> dict[str, Identity]:
    m = param_marker(conn)
    out: dict[str, Identity] = {}
    for part in _chunks(keys, 1000):
        cond, params = in_values(conn, "anonymous_id", part)
        sql = (
            "SELECT anonymous_id, domain, match_method, provider, confidence FROM web_identities "
            f"WHERE workspace_id = {m} AND {cond}"
        )
        for r in fetch_all(conn, sql, (ws, *params)):
            out[r[0]] = (r[1], r[2], r[3], float(r[4]))
    return out


def _save_identities(conn: Connection, ws: int, changed: dict[str, Identity], now: int) -> None:
    if not changed:
        return
    m = param_marker(conn)
    # An IP resolution never replaces a group or email identity, even one that another
    # process wrote since this flush read the table.
    sql = (
        "INSERT INTO web_identities (workspace_id, anonymous_id, domain, match_method, "
        f"provider, confidence, updated_at) VALUES ({', '.join([m] * 7)}) "
        "ON CONFLICT (workspace_id, anonymous_id) DO UPDATE SET domain = excluded.domain, "
        "match_method = excluded.match_method, provider = excluded.provider, "
        "confidence = excluded.confidence, updated_at = excluded.updated_at "
        "WHERE web_identities.match_method = 'ip' OR excluded.match_method <> 'ip'"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, [(ws, k, *v, now) for k, v in changed.items()])
    finally:
        cur.close()


def _unresolved_events(
    conn: Connection, ws: int, anonymous_ids: list[str], since: int
) -> list[tuple[Any, ...]]:
    """(id, message_id, type, event, anonymous_id, occurred_at, path, url) still unresolved."""
    m = param_marker(conn)
    out: list[tuple[Any, ...]] = []
    for part in _chunks(anonymous_ids, 500):
        cond, params = in_values(conn, "anonymous_id", part)
        sql = (
            "SELECT id, message_id, type, event, anonymous_id, occurred_at, path, url "
            f"FROM web_events WHERE workspace_id = {m} AND {cond} AND domain IS NULL "
            f"AND type IN ('page', 'track') AND occurred_at >= {m}"
        )
        out.extend(fetch_all(conn, sql, (ws, *params, since)))
    return out


def _resolve_stored(conn: Connection, ws: int, rows: list[tuple[Any, ...]]) -> None:
    """rows: (domain, match_method, provider, confidence, event id)."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"UPDATE web_events SET domain = {m}, match_method = {m}, provider = {m}, "
        f"confidence = {m} WHERE workspace_id = {m} AND id = {m}"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, [(*r[:4], ws, r[4]) for r in rows])
    finally:
        cur.close()


def _collector_run(conn: Connection, ws: int, day_label: str, now: int) -> str:
    """The workspace's collector run of the day (its counts grow with every flush)."""
    m = param_marker(conn)
    rows = fetch_all(
        conn,
        f"SELECT id FROM ingest_runs WHERE workspace_id = {m} AND source = {m} "
        f"AND kind = 'collector' AND label = {m} ORDER BY id LIMIT 1",
        (ws, SOURCE, day_label),
    )
    if rows:
        return str(rows[0][0])
    run_id = new_id()
    signals_repo.insert_run(
        conn,
        {
            "workspace_id": ws, "id": run_id, "source": SOURCE, "kind": "collector",
            "label": day_label, "status": "done", "started_at": now, "finished_at": now,
            "read": 0, "accepted": 0, "updated": 0, "duplicate": 0, "rejected": 0,
            "skipped": 0, "reasons": {"rejected": {}, "skipped": {}}, "error": None,
        },
    )  # fmt: skip
    return run_id


def _count_run(conn: Connection, ws: int, run_id: str, counts: Counts, now: int) -> None:
    m = param_marker(conn)
    rows = fetch_all(
        conn, f"SELECT reasons FROM ingest_runs WHERE workspace_id = {m} AND id = {m}", (ws, run_id)
    )
    reasons = json_value(rows[0][0]) if rows else {}
    for kind, by in (("rejected", counts.rejected), ("skipped", counts.skipped)):
        merged = Counter(reasons.get(kind) or {})
        merged.update(by)
        reasons[kind] = dict(merged)
    conn.exec_driver_sql(
        f'UPDATE ingest_runs SET "read" = "read" + {m}, accepted = accepted + {m}, '
        f"duplicate = duplicate + {m}, rejected = rejected + {m}, skipped = skipped + {m}, "
        f"reasons = {m}, finished_at = {m} WHERE workspace_id = {m} AND id = {m}",
        (
            counts.read,
            counts.accepted,
            counts.duplicate,
            sum(counts.rejected.values()),
            sum(counts.skipped.values()),
            json_param(reasons),
            now,
            ws,
            run_id,
        ),
    )


def _insert_rejects(conn: Connection, ws: int, run_id: str, rejects: list[Problem]) -> None:
    if not rejects:
        return
    now = now_us()
    signals_repo.insert_rejects(
        conn,
        [
            {
                "workspace_id": ws, "id": new_id(), "run_id": run_id, "source": SOURCE,
                "line": None, "reason": p.reason, "detail": p.message, "record": p.record,
                "ref": None, "status": "open", "created_at": now,
            }
            for p in rejects
        ],
    )  # fmt: skip


def purge_ips(engine: Engine, ws: int | None = None, *, now: int | None = None) -> int:
    """Set web_events.ip to NULL past each workspace's ipRetentionDays; returns rows changed."""
    now = now_us() if now is None else now
    if ws is not None:
        workspaces = [ws]
    else:
        # Only workspaces that ever had a write key can have web events.
        with read_tx(engine) as conn:
            rows = fetch_all(conn, "SELECT DISTINCT workspace_id FROM write_keys")
        workspaces = [int(r[0]) for r in rows]
    defaults = default_settings(SOURCE)
    total = 0
    for w in workspaces:
        with write_tx(engine) as conn:
            days = int(source_config(conn, w, SOURCE, defaults)["ipRetentionDays"])
            m = param_marker(conn)
            result = conn.exec_driver_sql(
                f"UPDATE web_events SET ip = NULL WHERE workspace_id = {m} "
                f"AND received_at < {m} AND ip IS NOT NULL",
                (w, now - days * US_PER_DAY),
            )
            total += max(result.rowcount, 0)
    return total


# ---- the buffer and the flusher ----------------------------------------------------------


@dataclass
class Counts:
    """A workspace's counts since its last flush (for its collector run)."""

    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected.update(other.rejected)
        self.skipped.update(other.skipped)


@dataclass
class FlushResult:
    written: int = 0  # new web events stored
    duplicate: int = 0
    signals: int = 0  # signals created (including back-filled ones)
    backfilled: int = 0  # of those, signals of earlier events a new identity resolved
    failed: int = 0  # events kept in the buffer for the next flush
    errors: list[str] = field(default_factory=list)


class BufferFull(Exception):
    """More events wait than the collector holds: the sender should retry later."""


class Collector:
    """Buffer of accepted events per workspace, and the thread that writes it."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        resolver: IpResolver | None = None,
        clock: Callable[[], int] = now_us,
        max_buffered: int | None = None,
    ) -> None:
        self.engine = engine
        self.flush_s = settings.collector_flush_ms / 1000
        self.batch = settings.collector_batch
        self.max_buffered = max_buffered or BUFFER_FLUSHES * settings.collector_batch
        self.clock = clock
        self.resolver = (
            resolver
            if resolver is not None
            else IpResolver(engine, database_paths(settings.ip_databases))
        )
        self.keys = WriteKeyCache(engine)
        self._pending: dict[int, list[WebEvent]] = {}
        self._rejects: dict[int, list[Problem]] = {}
        self._counts: dict[int, Counts] = {}
        self._size = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._configs: dict[int, tuple[dict[str, Any], float]] = {}
        self._last_purge = time.monotonic()

    # -- the request side --

    @property
    def pending(self) -> int:
        return self._size

    @property
    def full(self) -> bool:
        """Refuse requests before reading them: parsing what cannot be kept slows the flush."""
        return self._size >= self.max_buffered

    def accept(
        self,
        ws: int,
        events: list[WebEvent],
        problems: Sequence[Problem] = (),
        *,
        skipped: str | None = None,
        skipped_count: int = 0,
    ) -> None:
        """Buffer a request's events and rejects; raises BufferFull instead of growing forever."""
        added = len(events) + len(problems)
        with self._lock:
            if self._size + added > self.max_buffered and added:
                raise BufferFull(f"{self._size:,} events are waiting to be written")
            if events:
                self._pending.setdefault(ws, []).extend(events)
            if problems:
                self._rejects.setdefault(ws, []).extend(problems)
            counts = self._counts.get(ws)
            if counts is None:
                counts = self._counts[ws] = Counts()
            counts.read += added + skipped_count
            for p in problems:
                counts.rejected[p.reason] += 1
            if skipped is not None and skipped_count:
                counts.skipped[skipped] += skipped_count
            self._size += added
            full = self._size >= self.batch
        if full:
            self._wake.set()

    def website_settings(self, ws: int) -> dict[str, Any]:
        """The workspace's website settings, cached for CONFIG_CACHE_SECONDS."""
        hit = self._configs.get(ws)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with read_tx(self.engine) as conn:
            cfg = source_config(conn, ws, SOURCE, default_settings(SOURCE))
        self._configs[ws] = (cfg, time.monotonic() + CONFIG_CACHE_SECONDS)
        return cfg

    def cached_settings(self, ws: int) -> dict[str, Any] | None:
        hit = self._configs.get(ws)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    # -- the flusher --

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="intently-collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread, then write what is left (retrying briefly if the database fails)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while self._size and time.monotonic() < deadline:
            if self.flush().failed:
                time.sleep(min(1.0, self.flush_s))
        if self._size:
            log.error("collector stopped with %d events it could not write", self._size)
        self.resolver.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # Back off from a failing database; a full buffer must not turn this into
                # a tight loop (requests get 503 meanwhile).
                self._stop.wait(min(MAX_BACKOFF_S, self.flush_s * 2**failures))
            else:
                self._wake.wait(self.flush_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                result = self.flush()
            except Exception:  # the thread must survive anything a flush can raise
                log.exception("collector flush failed")
                failures += 1
                continue
            failures = failures + 1 if result.failed else 0
            if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
                self._last_purge = time.monotonic()
                try:
                    purge_ips(self.engine, now=self.clock())
                except Exception:
                    log.exception("purging old IP addresses failed")

    def flush(self) -> FlushResult:
        """Write everything buffered now; what fails stays buffered for the next flush."""
        result = FlushResult()
        with self._flush_lock:
            with self._lock:
                pending, rejects, counts = self._pending, self._rejects, self._counts
                self._pending, self._rejects, self._counts = {}, {}, {}
            for ws in sorted(set(pending) | set(rejects) | set(counts)):
                events = pending.get(ws, [])
                problems = rejects.get(ws, [])
                c = counts.get(ws) or Counts()
                for start in range(0, max(len(events), 1), self.batch):
                    chunk = events[start : start + self.batch]
                    # The rejects and counts go with the first chunk.
                    first = start == 0
                    try:
                        self._write(
                            ws, chunk, problems if first else [], c if first else Counts(), result
                        )
                    except Exception as exc:
                        rest = events[start:]
                        self._requeue(ws, rest, problems if first else [], c if first else None)
                        result.failed += len(rest) + (len(problems) if first else 0)
                        result.errors.append(f"workspace {ws}: {type(exc).__name__}: {exc}")
                        log.warning(
                            "collector: writing %d events of workspace %d failed (%s: %s); "
                            "they stay buffered",
                            len(rest), ws, type(exc).__name__, exc,
                        )  # fmt: skip
                        break
                    with self._lock:
                        self._size -= len(chunk) + (len(problems) if first else 0)
        return result

    def _requeue(
        self, ws: int, events: list[WebEvent], problems: list[Problem], counts: Counts | None
    ) -> None:
        with self._lock:
            if events:
                self._pending[ws] = events + self._pending.get(ws, [])
            if problems:
                self._rejects[ws] = problems + self._rejects.get(ws, [])
            if counts is not None:
                current = self._counts.get(ws)
                if current is None:
                    self._counts[ws] = counts
                else:
                    counts.add(current)
                    self._counts[ws] = counts

    def _write(
        self,
        ws: int,
        events: list[WebEvent],
        problems: list[Problem],
        counts: Counts,
        result: FlushResult,
    ) -> None:
        """One workspace's chunk in one transaction."""
        now = self.clock()
        if events:
            self.resolver.refresh(ws)
        with write_tx(self.engine) as conn:
            # Serialises flushes of the workspace across processes (PostgreSQL), so the
            # message ids read below are still the stored ones at insert time.
            signals_repo.lock_signals(conn, ws)
            rules = SignalRules.of(source_config(conn, ws, SOURCE, default_settings(SOURCE)))
            fresh, duplicate = self._fresh(conn, ws, events)
            signals, backfilled = self._resolve_and_store(conn, ws, fresh, rules, now)
            outcomes = store(conn, ws, signals) if signals else []
            created = sum(1 for o in outcomes if o == "created")
            counts = Counts(
                read=counts.read,
                accepted=counts.accepted + len(fresh),
                duplicate=counts.duplicate + duplicate,
                rejected=counts.rejected,
                skipped=counts.skipped,
            )
            if counts.read or counts.accepted or counts.duplicate or problems:
                day = datetime.fromtimestamp(now / 1e6, tz=UTC).date().isoformat()
                run_id = _collector_run(conn, ws, f"collector {day}", now)
                _insert_rejects(conn, ws, run_id, problems)
                _count_run(conn, ws, run_id, counts, now)
        result.written += len(fresh)
        COLLECTOR_WRITTEN.inc(len(fresh))
        result.duplicate += duplicate
        result.signals += created
        result.backfilled += backfilled

    @staticmethod
    def _fresh(conn: Connection, ws: int, events: list[WebEvent]) -> tuple[list[WebEvent], int]:
        """The events whose messageId is new to the workspace, and how many were not."""
        seen: set[str] = set()
        unique: list[WebEvent] = []
        for e in events:
            if e.message_id not in seen:
                seen.add(e.message_id)
                unique.append(e)
        stored = _stored_message_ids(conn, ws, list(seen)) if seen else set()
        fresh = [e for e in unique if e.message_id not in stored]
        return fresh, len(events) - len(fresh)

    def _resolve_and_store(
        self, conn: Connection, ws: int, events: list[WebEvent], rules: SignalRules, now: int
    ) -> tuple[list[SignalIn], int]:
        """Resolve, insert the events, update identities, back-fill; returns the signals."""
        if not events:
            return [], 0
        keys: set[str] = set()
        for e in events:
            e.match = None  # a retried chunk resolves afresh (and re-learns its identities)
            if e.anonymous_id:
                keys.add(e.anonymous_id)
            if e.user_id:
                keys.add("user:" + e.user_id)
            if e.group_id:
                keys.add("group:" + e.group_id)
        identities = _load_identities(conn, ws, sorted(keys))
        changed: dict[str, Identity] = {}
        established: dict[str, Identity] = {}  # anonymous id -> its new group/email identity

        def remember(key: str, ident: Identity) -> None:
            old = identities.get(key)
            if ident[1] == "ip" and old is not None and old[1] != "ip":
                return  # group and email beat ip
            if old != ident:
                identities[key] = changed[key] = ident

        # Pass 1: group and identify evidence, so the pages of this flush resolve with it.
        for e in events:
            m = self._own_match(e)
            if m is None:
                continue
            e.match = m
            ident: Identity = (m.domain, m.method, m.provider, m.confidence)
            if e.anonymous_id:
                remember(e.anonymous_id, ident)
                established[e.anonymous_id] = ident
            if e.user_id:
                remember("user:" + e.user_id, ident)
            if e.type == "group" and e.group_id:
                remember("group:" + e.group_id, ident)
        # Pass 2: everything else, in arrival order.
        for e in events:
            if e.match is None:
                e.match = self._match(ws, e, identities, remember)
        keep_ip = rules.ip_retention_days > 0
        rows = []
        signals: list[SignalIn] = []
        for e in events:
            m = e.match
            rows.append(
                (
                    ws, new_id(), e.message_id, e.type, e.event, e.anonymous_id, e.user_id,
                    e.occurred_at, e.received_at, e.url, e.path, e.title, e.referrer,
                    e.ip if keep_ip else None,
                    m.domain if m else None, m.method if m else None,
                    m.provider if m else None, m.confidence if m else None,
                    e.doc,
                )
            )  # fmt: skip
            if m is not None:
                s = _signal(rules, m, e.message_id, e.type, e.event, e.path, e.url, e.occurred_at)
                if s is not None:
                    signals.append(s)
        _insert_web_events(conn, rows)
        _save_identities(conn, ws, changed, now)
        backfill = self._backfill(conn, ws, established, rules, now)
        return signals + backfill, len(backfill)

    @staticmethod
    def _own_match(e: WebEvent) -> Match | None:
        if e.type == "group":
            m = match_group(e.group_traits)
            if m is not None:
                return m
        return match_email(e.email) if e.email else None

    def _match(
        self,
        ws: int,
        e: WebEvent,
        identities: dict[str, Identity],
        remember: Callable[[str, Identity], None],
    ) -> Match | None:
        # (1) an identity a group or identify call gave this visitor, user or group
        for key in (
            e.anonymous_id,
            "user:" + e.user_id if e.user_id else None,
            "group:" + e.group_id if e.group_id else None,
        ):
            ident = identities.get(key) if key else None
            if ident is not None and ident[1] != "ip":
                return Match(ident[0], ident[1], ident[2], ident[3])
        # (2) the IP address
        if e.ip:
            m = self.resolver.lookup(ws, e.ip)
            if m is not None:
                if e.anonymous_id:
                    remember(e.anonymous_id, (m.domain, "ip", m.provider, m.confidence))
                return m
        # (3) where this visitor's IP resolved before
        ident = identities.get(e.anonymous_id) if e.anonymous_id else None
        if ident is not None and ident[1] == "ip":
            return Match(ident[0], "anonymous_id", ident[2], ident[3] * ANONYMOUS_ID_DECAY)
        return None

    @staticmethod
    def _backfill(
        conn: Connection,
        ws: int,
        established: dict[str, Identity],
        rules: SignalRules,
        now: int,
    ) -> list[SignalIn]:
        """Resolve the earlier unresolved events of visitors that just got an identity."""
        if not established:
            return []
        rows = _unresolved_events(conn, ws, sorted(established), now - BACKFILL_US)
        updates = []
        signals: list[SignalIn] = []
        for eid, message_id, etype, event, anonymous_id, occurred, path, url in rows:
            domain, method, provider, confidence = established[anonymous_id]
            updates.append((domain, method, provider, confidence, eid))
            m = Match(domain, method, provider, confidence)
            s = _signal(rules, m, message_id, etype, event, path, url, int(occurred))
            if s is not None:
                signals.append(s)
        _resolve_stored(conn, ws, updates)
        return signals
