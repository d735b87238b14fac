"""The collector's HTTP face: the Segment-compatible routes at the root (`/v1/...`), the
`/t.js` tracker, and `GET /api/v1/website` (the write key and the HTML to paste).

The `/v1/...` routes speak Segment's HTTP tracking API, not the External API: they answer
`{"success": true}`, and problems as `{"success": false, "code": ..., "message": ...}`
(with per-event `errors` for a batch), with CORS headers so that pages on any site can
post to them. `code` and `message` are what Segment's and RudderStack's SDKs read from an
error: without them those SDKs take any 4xx for a network failure and retry it for
minutes. They are left out of the OpenAPI document, which describes the External API.

Rate limits count events (`gate/eventlimits.py`): per write key, per client address, and
failed requests per address (counted before the body is parsed again).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import threading
import zlib
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import msgspec
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from intently.auth.endpoints import CallerDep
from intently.gate.eventlimits import CollectorLimits, Refusal
from intently.gate.middleware import DECISION
from intently.gate.ratelimit import Quota, make_limiter
from intently.ingest.collector import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    BodyError,
    BufferFull,
    Collector,
    parse_body,
)
from intently.ingest.writekeys import get_write_key, snippet
from intently.kit.metrics import COLLECTOR_ACCEPTED
from intently.kit.timefmt import now_us
from intently.kit.web import AppState, State, ok, run_read

TRACKER = resources.files("intently.ingest").joinpath("static/t.js").read_bytes()
_CONFIG_SLOT = b"/*INTENTLY_CONFIG*/null"
_encoder = msgspec.json.Encoder()
_create_lock = threading.Lock()
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Path -> the event type it carries (None: a batch); the one-letter paths are the ones
# Segment's analytics.js posts to.
ROUTES: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/page": "page",
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/group": "group",
    "/v1/screen": "screen",
    "/v1/alias": "alias",
    "/v1/p": "page",
    "/v1/t": "track",
    "/v1/i": "identify",
    "/v1/g": "group",
    "/v1/s": "screen",
    "/v1/a": "alias",
}


T = TypeVar("T")


def _once(app: FastAPI, name: str, make: Callable[[AppState], T]) -> T:
    """`app.state.<name>`, made by `make` on first use, once across threads."""
    made: T | None = getattr(app.state, name, None)
    if made is None:
        with _create_lock:
            made = getattr(app.state, name, None)
            if made is None:
                made = make(app.state.intently)
                setattr(app.state, name, made)
    return made


def collector_of(app: FastAPI) -> Collector:
    """The app's collector, made on first use (the lifespan starts its flusher)."""
    return _once(app, "collector", lambda st: Collector(st.engine, st.settings))


def limits_of(app: FastAPI) -> CollectorLimits:
    """The app's collector rate limits (buckets in memory on SQLite, in the database else)."""

    def make(st: AppState) -> CollectorLimits:
        cfg = st.settings
        return CollectorLimits(
            make_limiter(st.engine),
            key=Quota(cfg.rate_limit_collector_per_minute, cfg.rate_limit_collector_burst),
            address=Quota(
                cfg.rate_limit_collector_address_per_minute,
                cfg.rate_limit_collector_address_burst,
            ),
            failures=Quota(cfg.rate_limit_anonymous_per_minute, cfg.rate_limit_anonymous_burst),
        )

    return _once(app, "collector_limits", make)


def start_collector(app: FastAPI) -> None:
    """App start-up: the flusher thread begins writing the buffer."""
    collector_of(app).start()


def stop_collector(app: FastAPI) -> None:
    """App shut-down: write what is buffered, then let a later start make a fresh collector."""
    c: Collector | None = getattr(app.state, "collector", None)
    if c is not None:
        c.stop()
        app.state.collector = None


def _cors(request: Request) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": request.headers.get("origin") or "*", "Vary": "Origin"}


def _answer(request: Request, status: int, payload: dict[str, Any], **headers: str) -> Response:
    return Response(
        _encoder.encode(payload),
        status_code=status,
        media_type="application/json",
        headers=_cors(request) | headers,
    )


def _failure(request: Request, status: int, code: str, message: str, **headers: str) -> Response:
    """An error in the shape Segment's and RudderStack's SDKs parse (`code`, `message`)."""
    return _answer(request, status, {"success": False, "code": code, "message": message}, **headers)


def _behind(request: Request) -> Response:
    return _failure(
        request,
        503,
        "unavailable",
        "The collector is behind; retry shortly",
        **{"Retry-After": "2"},
    )


def _too_many(request: Request, refused: Refusal, unit: str = "events") -> Response:
    request.scope.setdefault("state", {})[DECISION] = refused.decision
    limit = refused.limit
    return _failure(
        request,
        429,
        "rate_limited",
        f"Rate limit exceeded for {refused.what}: {limit.per_minute} {unit} a minute, "
        f"bursts of {limit.burst}; retry in {refused.decision.retry_after_s} s",
    )  # Retry-After and RateLimit-* come from the gate's middleware, which reads DECISION


async def _refuse(
    request: Request, st: AppState, peer: str, status: int, code: str, message: str
) -> Response:
    """A failed request (bad body or key): counted per address, 429 when too many."""
    refused = await run_read(st, limits_of(request.app).failed, peer)
    if refused is not None:
        return _too_many(request, refused, "failed requests")
    return _failure(request, status, code, message)


def _preflight(request: Request) -> Response:
    asked = request.headers.get("access-control-request-headers")
    return Response(
        status_code=204,
        headers=_cors(request)
        | {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": asked or "Authorization, Content-Type",
            "Access-Control-Max-Age": "86400",
        },
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body (gunzipped when sent so), or None when it is larger than `limit`."""
    declared = request.headers.get("content-length")
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    if declared and declared.isdigit() and int(declared) > limit and not gzipped:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    if gzipped:
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise BodyError("Request body is not valid gzip") from None
        if len(body) > limit:
            return None
    return body


def _basic_user(header: str) -> str | None:
    """The user name of an HTTP Basic Authorization header; raises ValueError when malformed."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise ValueError(header)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(header) from None
    return decoded.partition(":")[0].strip() or None


async def _workspace(st: AppState, c: Collector, key: str) -> int | None:
    found, ws = c.keys.cached(key)
    if found:
        return ws
    result: int | None = await run_read(st, c.keys.lookup, key)
    return result


async def _settings(st: AppState, c: Collector, ws: int) -> dict[str, Any]:
    cfg = c.cached_settings(ws)
    if cfg is None:
        cfg = await run_read(st, c.website_settings, ws)
    return cfg


async def _over_rate(
    request: Request, st: AppState, ws: int, peer: str, events: int
) -> Response | None:
    """429 when the write key's or the address's bucket lacks `events` tokens."""
    lim = limits_of(request.app)
    admission = await run_read(st, lim.events, ws, peer, events)
    if admission.refused is not None:
        return _too_many(request, admission.refused)
    if admission.key is not None:
        request.scope.setdefault("state", {})[DECISION] = admission.key
    return None


def _trusted(request: Request, peer: str) -> bool:
    """Whether `peer` is a server the operator lists as forwarding visitors' events
    (`collector_trusted_senders`), so its `context.ip` and claims are evidence."""
    nets: list[IPNetwork] | None = getattr(request.app.state, "collector_trusted", None)
    if nets is None:
        st: AppState = request.app.state.intently
        text = st.settings.collector_trusted_senders
        nets = [ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",") if n.strip()]
        request.app.state.collector_trusted = nets
    if not nets:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in n for n in nets)


def _opted_out(request: Request) -> bool:
    h = request.headers
    return h.get("dnt", "").strip() == "1" or h.get("sec-gpc", "").strip() == "1"


async def collect(request: Request, kind: str | None) -> Response:
    """One Segment call (`kind` its type) or a batch (`kind` None)."""
    if request.method == "OPTIONS":
        return _preflight(request)
    st: AppState = request.app.state.intently
    c = collector_of(request.app)
    peer = request.client.host if request.client else "unknown"
    wait = limits_of(request.app).shunned(peer)
    if wait:
        return _failure(
            request,
            429,
            "rate_limited",
            f"Too many failed requests from this address; retry in {wait} s",
            **{"Retry-After": str(wait)},
        )
    if c.full:
        return _behind(request)
    limit = MAX_BATCH_BYTES if kind is None else MAX_EVENT_BYTES
    try:
        body = await _read_body(request, limit)
        if body is None:
            what = "batch" if kind is None else "event"
            return await _refuse(
                request,
                st,
                peer,
                413,
                "payload_too_large",
                f"The {what} is larger than {limit // 1024} KB",
            )
        parsed = parse_body(
            body, kind, received=now_us(), peer=peer, trusted=_trusted(request, peer)
        )
    except BodyError as exc:
        return await _refuse(request, st, peer, 400, "invalid_request", str(exc))
    auth = request.headers.get("authorization")
    key = parsed.write_key
    if auth:
        try:
            key = _basic_user(auth)
        except ValueError:
            return await _refuse(
                request,
                st,
                peer,
                401,
                "unauthorized",
                "Authorization must be HTTP Basic with the write key as user name",
            )
    if not key:
        return await _refuse(
            request,
            st,
            peer,
            401,
            "unauthorized",
            "Missing write key: send it as the HTTP Basic user name or as writeKey in the body",
        )
    ws = await _workspace(st, c, key)
    if ws is None:
        return await _refuse(
            request, st, peer, 401, "unauthorized", "Invalid write key (unknown or rotated)"
        )
    limited = await _over_rate(request, st, ws, peer, max(1, parsed.count))
    if limited is not None:
        return limited
    if _opted_out(request) and (await _settings(st, c, ws)).get("respectDoNotTrack", True):
        c.accept(ws, [], skipped="do_not_track", skipped_count=parsed.count)
        return _answer(request, 200, {"success": True})
    try:
        c.accept(ws, parsed.events, parsed.problems)
    except BufferFull:
        return _behind(request)
    COLLECTOR_ACCEPTED.inc(len(parsed.events))
    problems = parsed.problems
    if not problems:
        return _answer(request, 200, {"success": True})
    status = 413 if any(p.status == 413 for p in problems) else 400
    if kind is not None:
        p = problems[0]
        return _answer(
            request,
            p.status,
            {"success": False, "code": p.reason, "message": p.message, "field": p.field},
        )
    return _answer(
        request,
        status,
        {
            "success": False,
            "code": "event_too_large" if status == 413 else "invalid_event",
            "message": f"{len(problems)} of {parsed.count} events were rejected; "
            "the others were accepted",
            "accepted": len(parsed.events),
            "errors": [p.as_dict() for p in problems],
        },
    )


def _route(kind: str | None) -> Any:
    async def handler(request: Request) -> Response:
        return await collect(request, kind)

    return handler


def router() -> APIRouter:
    r = APIRouter()
    for path, kind in ROUTES.items():
        r.add_route(path, _route(kind), methods=["POST", "OPTIONS"], include_in_schema=False)

    @r.get("/t.js", include_in_schema=False)
    async def tracker(request: Request, st: State) -> Response:
        """The tracking script; with `?k=KEY` it carries the workspace's Do-Not-Track choice."""
        body, max_age = TRACKER, 3600
        key = request.query_params.get("k")
        if key:
            c = collector_of(request.app)
            ws = await _workspace(st, c, key)
            if ws is not None:
                cfg = await _settings(st, c, ws)
                config = _encoder.encode({"dnt": bool(cfg.get("respectDoNotTrack", True))})
                # Short, so a changed setting reaches visitors within minutes.
                body, max_age = TRACKER.replace(_CONFIG_SLOT, config), 300
        return Response(
            body,
            media_type="text/javascript; charset=utf-8",
            headers={
                "Cache-Control": f"public, max-age={max_age}",
                "Access-Control-Allow-Origin": "*",
            },
        )

    @r.get("/api/v1/website", tags=["website"])
    def website(request: Request, st: State, caller: CallerDep) -> Response:
        """The workspace's public write key (made on first use) and the snippet to paste."""
        key = get_write_key(st.engine, caller.workspace_id)
        return ok(request, {"writeKey": key, "snippet": snippet(str(request.base_url), key)})

    return r
