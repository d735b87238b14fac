"""Webhooks: endpoints per workspace, the signed HTTP call, and reading deliveries back.

The dispatcher (dispatcher.py) takes deliveries from the outbox and calls `send`; this
module decides what a webhook is, what a target may be, and how a request is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
import msgspec
from sqlalchemy.engine import Connection, Engine

import intently
from intently.kit import outbound
from intently.kit.db import read_clock, read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict, NotFound, validation_error
from intently.kit.ids import is_id, new_id
from intently.kit.outbound import TargetRefused
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_ms, format_us, now_us
from intently.settings import Settings
from intently.webhooks import repository as repo
from intently.webhooks.outbox import USER_DISABLED
from intently.webhooks.schemas import DELIVERY_STATUSES, WebhookIn, WebhookPatch

USER_AGENT = f"Intently-Webhooks/{intently.__version__}"
SIGNATURE_HEADER = "Intently-Signature"
MAX_RESPONSE_READ = 64 * 1024  # a receiver that answers more loses its kept-alive connection

_encode = msgspec.json.Encoder().encode


# ---- targets (SSRF guard: kit/outbound.py) ----------------------------------------------------


def check_target(url: str, settings: Settings) -> None:
    """Raise TargetRefused unless every address of the URL's host may be called now.

    For a clear answer when a URL is saved; each connection checks the address it
    connects to again (`outbound`), so a name that later points inward is caught then."""
    outbound.check_url(url, outbound.Policy.of(settings))


def _check_target_field(url: str, settings: Settings) -> None:
    try:
        check_target(url, settings)
    except TargetRefused as exc:
        raise validation_error("url", "url", "isAllowedTarget", f"url refused: {exc}") from None


# ---- signing --------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Intently-Signature` value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_s: int = 300, *, now: float | None = None
) -> bool:
    """For receivers: whether `header` signs `body` with `secret` within `tolerance_s` of now.

    Any v1 entry may match (several appear while a secret is being rotated)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# ---- one HTTP call ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def send(
    client: httpx.Client,
    settings: Settings,
    *,
    url: str,
    secret: str,
    body: bytes,
    event_id: str,
    webhook_id: str,
    delivery_id: str,
) -> AttemptResult:
    """POST a signed body once; never raises for the receiver's failures."""
    t0 = time.perf_counter()

    def done(ok: bool, code: int | None, error: str | None) -> AttemptResult:
        return AttemptResult(ok, code, error, int((time.perf_counter() - t0) * 1000))

    headers = {
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "Intently-Event-Id": event_id,
        "Intently-Webhook-Id": webhook_id,
        "Intently-Delivery-Id": delivery_id,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    try:
        # The client checks the target's address at each connection and connects to the
        # address it checked (kit/outbound.py): a name rebound inward since the webhook
        # was saved is refused here, not reached.
        with client.stream("POST", url, content=body, headers=headers) as resp:
            code = resp.status_code
            # Read (a bounded part of) the answer: a connection whose response was left
            # unread cannot go back to the pool, and each send would open a new one.
            read = 0
            for chunk in resp.iter_bytes():
                read += len(chunk)
                if read > MAX_RESPONSE_READ:
                    break
    except TargetRefused as exc:
        return done(False, None, f"target refused: {exc}")
    except httpx.TimeoutException:
        return done(
            False, None, f"no complete answer within {settings.webhook_timeout_s:g} s (timed out)"
        )
    except httpx.ConnectError as exc:
        return done(False, None, f"could not connect: {exc or type(exc).__name__}")
    except (httpx.HTTPError, OSError) as exc:
        return done(False, None, f"{type(exc).__name__}: {exc}")
    if 200 <= code < 300:
        return done(True, code, None)
    # Only the status and its standard phrase: what the receiver said is not shown back,
    # so a target cannot be used to read another server's answers.
    redirect = " (redirect not followed)" if 300 <= code < 400 else ""
    return done(False, code, _status_text(code) + redirect)


def _status_text(code: int) -> str:
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def make_client(settings: Settings) -> httpx.Client:
    """One pooled client on the guarded path for many sends: each request ends within
    `webhook_timeout_s`, redirects are not followed."""
    return outbound.client(
        outbound.Policy.of(settings),
        deadline_s=settings.webhook_timeout_s,
        max_connections=settings.webhook_concurrency,
    )


# ---- webhooks ----------------------------------------------------------------------------------


def public(row: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    def ms(v: Any) -> str | None:
        return None if v is None else format_ms(int(v))

    out = {
        "webhookId": row["id"],
        "url": row["url"],
        "eventTypes": list(row["event_types"] or []),
        "description": row["description"],
        "status": row["status"],
        "disabledReason": row["disabled_reason"],
        "disabledAt": ms(row["disabled_at"]),
        "consecutiveFailures": int(row["consecutive_failures"] or 0),
        "lastSuccessAt": ms(row["last_success_at"]),
        "lastFailureAt": ms(row["last_failure_at"]),
        "createdAt": ms(row["created_at"]),
        "updatedAt": ms(row["updated_at"]),
    }
    if secret:
        out["secret"] = row["secret"]
    return out


def _check_id(value: str, name: str = "webhookId") -> None:
    if not is_id(value):
        raise BadRequest(f"Invalid {name} format")


def _require(conn: Any, ws: int, wid: str, *, lock: bool = False) -> dict[str, Any]:
    _check_id(wid)
    hook = repo.get(conn, ws, wid, lock=lock)
    if hook is None:
        raise NotFound(f"Webhook '{wid}' not found")
    return hook


def create(engine: Engine, settings: Settings, ws: int, body: WebhookIn) -> dict[str, Any]:
    _check_target_field(body.url, settings)
    now = now_us()
    row = {
        "workspace_id": ws,
        "id": new_id(),
        "url": body.url,
        "event_types": body.eventTypes,
        "secret": body.secret or new_secret(),
        "description": body.description,
        "status": "active",
        "disabled_reason": None,
        "disabled_at": None,
        "consecutive_failures": 0,
        "last_success_at": None,
        "last_failure_at": None,
        "created_at": now,
        "updated_at": now,
    }
    with write_tx(engine) as conn:
        repo.insert(conn, row)
    return public(row, secret=True)


def get(engine: Engine, ws: int, wid: str) -> dict[str, Any]:
    with read_tx(engine) as conn:
        hook = _require(conn, ws, wid)
        counts = repo.delivery_counts(conn, ws, wid)
    out = public(hook)
    out["deliveries"] = {s: counts.get(s, 0) for s in DELIVERY_STATUSES}
    return out


def list_webhooks(
    engine: Engine, codec: CursorCodec, ws: int, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    with read_tx(engine) as conn:
        if cursor is not None:
            c = codec.decode(cursor, "webhooks", ws)
            after, sync_us = c.after, c.sync_us
        else:
            after, sync_us = "", read_clock(conn, ws)
        rows = repo.page(conn, ws, after=after, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        codec.encode(Cursor("webhooks", ws, rows[-1]["id"], sync_us)) if more and rows else None
    )
    return page([public(r) for r in rows], next_cursor, format_us(sync_us))


def patch(
    engine: Engine, settings: Settings, ws: int, wid: str, body: WebhookPatch
) -> dict[str, Any]:
    _check_id(wid)
    if body.url is not None:
        _check_target_field(body.url, settings)
    now = now_us()
    with write_tx(engine) as conn:
        hook = _require(conn, ws, wid, lock=True)
        changes: dict[str, Any] = {}
        if body.url is not None and body.url != hook["url"]:
            changes["url"] = body.url
        if body.eventTypes is not None and body.eventTypes != list(hook["event_types"] or []):
            changes["event_types"] = body.eventTypes
        if "description" in body.model_fields_set and body.description != hook["description"]:
            changes["description"] = body.description
        if body.status is not None and body.status != hook["status"]:
            changes["status"] = body.status
            if body.status == "active":
                # Re-enabled: a clean slate, and what waited while it was off goes now.
                changes.update(disabled_reason=None, disabled_at=None, consecutive_failures=0)
                repo.pending_due_now(conn, ws, wid, now)
            else:
                changes.update(disabled_reason=USER_DISABLED, disabled_at=now)
        if changes:
            changes["updated_at"] = now
            repo.update_webhook(conn, ws, wid, changes)
            hook.update(changes)
    return public(hook)


def rotate_secret(engine: Engine, ws: int, wid: str) -> dict[str, Any]:
    with write_tx(engine) as conn:
        hook = _require(conn, ws, wid, lock=True)
        changes = {"secret": new_secret(), "updated_at": now_us()}
        repo.update_webhook(conn, ws, wid, changes)
        hook.update(changes)
    return public(hook, secret=True)


def remove(engine: Engine, ws: int, wid: str) -> dict[str, Any]:
    with write_tx(engine) as conn:
        _require(conn, ws, wid, lock=True)
        repo.remove(conn, ws, wid)
    return {"webhookId": wid, "deleted": True}


# ---- deliveries ------------------------------------------------------------------------------


def _attempt_public(a: Any) -> dict[str, Any]:
    return {
        "attempt": int(a.attempt),
        "at": format_ms(int(a.at)),
        "durationMs": int(a.duration_ms),
        "statusCode": a.status_code,
        "error": a.error,
        "success": a.error is None and a.status_code is not None and 200 <= a.status_code < 300,
    }


def _delivery_public(d: dict[str, Any], attempts: Sequence[Any]) -> dict[str, Any]:
    return {
        "deliveryId": d["id"],
        "webhookId": d["webhook_id"],
        "eventId": d["event_id"],
        "eventType": d.get("event_type"),
        "status": d["status"],
        "attemptCount": int(d["attempts"]),
        "nextAttemptAt": format_ms(int(d["next_attempt_at"])) if d["status"] == "pending" else None,
        "lastStatusCode": d["last_status_code"],
        "lastError": d["last_error"],
        "createdAt": format_ms(int(d["created_at"])),
        "deliveredAt": None if d["delivered_at"] is None else format_ms(int(d["delivered_at"])),
        "attempts": [_attempt_public(a) for a in attempts],
    }


def parse_statuses(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    for v in values:
        if v not in DELIVERY_STATUSES:
            raise validation_error(
                "status",
                "status",
                "isIn",
                f"each value in status must be one of the following values: "
                f"{', '.join(DELIVERY_STATUSES)}; got '{v}'",
            )
    return list(dict.fromkeys(values))


def list_deliveries(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    wid: str,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
) -> dict[str, Any]:
    """A webhook's deliveries, newest first, each with its attempts."""
    with read_tx(engine) as conn:
        _require(conn, ws, wid)
        if cursor is not None:
            c = codec.decode(cursor, f"webhook-deliveries:{wid}", ws)
            before: str | None = c.after
            statuses, sync_us = c.filters.get("status"), c.sync_us
        else:
            before, statuses, sync_us = None, parse_statuses(status), read_clock(conn, ws)
        rows = repo.deliveries_page(conn, ws, wid, before=before, limit=limit, statuses=statuses)
        more = len(rows) > limit
        rows = rows[:limit]
        attempts = repo.attempts_of(conn, ws, [r["id"] for r in rows])
    next_cursor = None
    if more and rows:
        next_cursor = codec.encode(
            Cursor(f"webhook-deliveries:{wid}", ws, rows[-1]["id"], sync_us, {"status": statuses})
        )
    items = [_delivery_public(r, attempts[r["id"]]) for r in rows]
    return page(items, next_cursor, format_us(sync_us))


def _require_delivery(conn: Connection, ws: int, wid: str, did: str) -> dict[str, Any]:
    """The webhook's delivery, or 404 (400 for a malformed id)."""
    _require(conn, ws, wid)
    _check_id(did, "deliveryId")
    d = repo.get_delivery(conn, ws, wid, did)
    if d is None:
        raise NotFound(f"Delivery '{did}' not found")
    return d


def get_delivery(engine: Engine, ws: int, wid: str, did: str) -> dict[str, Any]:
    with read_tx(engine) as conn:
        d = _require_delivery(conn, ws, wid, did)
        attempts = repo.attempts_of(conn, ws, [did])[did]
    return _delivery_public(d, attempts)


def retry_delivery(engine: Engine, ws: int, wid: str, did: str) -> dict[str, Any]:
    """A failed delivery pending again, due now, with a fresh set of tries."""
    with write_tx(engine) as conn:
        d = _require_delivery(conn, ws, wid, did)
        if d["status"] != "failed":
            raise Conflict(
                f"Delivery '{did}' is {d['status']}; only a failed delivery can be retried"
            )
        repo.retry_failed(conn, ws, wid, did, now_us())
        d = repo.get_delivery(conn, ws, wid, did) or d
        attempts = repo.attempts_of(conn, ws, [did])[did]
    return _delivery_public(d, attempts)


def send_test(engine: Engine, settings: Settings, ws: int, wid: str) -> dict[str, Any]:
    """Send a `webhook.test` ping now and answer how it went (nothing is queued)."""
    with read_tx(engine) as conn:
        hook = _require(conn, ws, wid)
    event_id = new_id()
    payload = {
        "eventId": event_id,
        "type": "webhook.test",
        "occurredAt": format_ms(now_us()),
        "webhookId": wid,
    }
    with make_client(settings) as client:
        r = send(
            client,
            settings,
            url=hook["url"],
            secret=hook["secret"],
            body=_encode(payload),
            event_id=event_id,
            webhook_id=wid,
            delivery_id=event_id,
        )
    return {
        "eventId": event_id,
        "success": r.ok,
        "statusCode": r.status_code,
        "error": r.error,
        "durationMs": r.duration_ms,
    }
