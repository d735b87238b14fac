"""The gate of /api/v1: who is asking, whether they are within their rate, Idempotency-Key.

`Gate.admit` authenticates the key and takes a token from its bucket; the endpoints'
`current_caller` dependency calls it. (The collector's limits count events, not
requests: `gate.eventlimits`.)
`GateMiddleware` (pure ASGI: it wraps every /api/v1 and collector request) puts the
RateLimit-* headers of that decision on the response, whatever the status, and runs the
API requests that carry an Idempotency-Key: admitted first, then claimed, run once, and
their response stored for replay (`gate.idempotency`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from intently.auth.service import Caller, authenticate
from intently.gate import idempotency
from intently.gate.ratelimit import ANONYMOUS_WORKSPACE, Quota, Take, make_limiter
from intently.kit.body import read_limited
from intently.kit.db import before_commit, database_unavailable
from intently.kit.envelope import envelope_response
from intently.kit.errors import (
    BadRequest,
    Conflict,
    IntentlyError,
    TooManyRequests,
    Unauthorized,
    UnprocessableEntity,
)
from intently.kit.timefmt import now_us
from intently.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CALLER = "intently_caller"  # scope["state"] keys
DECISION = "intently_rate"
API_PREFIX = "/api/v1/"
COLLECTOR_PREFIX = "/v1/"  # the website collector's Segment-style endpoints
_WRITES = frozenset({"POST", "PUT", "PATCH"})


class StillRunning(Conflict):
    """409 with Retry-After: the first request with this Idempotency-Key has not answered."""


class Gate:
    """Authentication plus rate limits, for the API's endpoints and the middleware."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.limiter = make_limiter(engine)
        self.api = Quota(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.anonymous = Quota(
            settings.rate_limit_anonymous_per_minute, settings.rate_limit_anonymous_burst
        )
        self.heartbeat = idempotency.Heartbeat(engine, settings.idempotency_stale_s * 1_000_000)

    def admit(self, state: dict[str, Any], key: str | None, address: str) -> Caller:
        """The caller of this request (once per request), or 401/429."""
        admitted: Caller | None = state.get(CALLER)
        if admitted is not None:
            return admitted
        try:
            caller = authenticate(self.engine, key)
        except Unauthorized:
            # Counted per address, so that guessing keys is slow.
            self._take(
                state,
                ANONYMOUS_WORKSPACE,
                f"addr:{address}",
                self.anonymous,
                "requests without a valid API key from this address",
            )
            raise
        quota = Quota(*caller.rate_limit) if caller.rate_limit is not None else self.api
        times = self.settings.rate_limit_workspace_keys
        together = Quota(quota.per_minute * times, quota.burst * times)
        self._take_all(
            state,
            caller.workspace_id,
            [(f"key:{caller.key_id}", quota), ("workspace", together)],
            ["this API key", "this workspace's API keys together"],
        )
        state[CALLER] = caller
        return caller

    def _take(self, state: dict[str, Any], ws: int, bucket: str, quota: Quota, what: str) -> None:
        self._take_all(state, ws, [(bucket, quota)], [what])

    def _take_all(
        self, state: dict[str, Any], ws: int, takes: list[Take], whats: list[str]
    ) -> None:
        """A token from each bucket (`whats` names them), or 429 naming the one that
        refused; the headers describe the bucket with the fewest requests left."""
        if takes[0][1].off:
            return
        decisions = self.limiter.take_all(ws, takes)
        last = decisions[-1]
        if not last.allowed:
            state[DECISION] = last
            quota, what = takes[len(decisions) - 1][1], whats[len(decisions) - 1]
            raise TooManyRequests(
                f"Rate limit exceeded for {what}: {quota.per_minute} requests a minute, "
                f"bursts of {quota.burst}; retry in {last.retry_after_s} s"
            )
        state[DECISION] = min(decisions, key=lambda d: d.remaining)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class GateMiddleware:
    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not (path.startswith(API_PREFIX) or path.startswith(COLLECTOR_PREFIX)):
            await self.app(scope, receive, send)
            return
        # The decision lands here whoever took the token: the API's key check, or the
        # collector's write-key check.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_rate(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.get(DECISION)
                if decision is not None:
                    message["headers"] = [*message.get("headers", ()), *decision.headers()]
            await send(message)

        if scope["method"] in _WRITES and path.startswith(API_PREFIX):
            key = _header(scope, b"idempotency-key")
            if key is not None:
                await self._idempotent(scope, receive, send_with_rate, state, key.strip())
                return
        await self.app(scope, receive, send_with_rate)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any], key: str
    ) -> None:
        gate = self.gate
        settings = gate.settings
        try:
            if not idempotency.valid_key(key):
                raise BadRequest(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters, "
                    f"got '{key[:300]}'"
                )
            caller = await run_in_threadpool(
                gate.admit, state, _header(scope, b"x-api-key"), address(scope)
            )
            body = await read_limited(Request(scope, receive))
            fp = idempotency.fingerprint(
                scope["method"], scope["path"], scope["query_string"], body
            )
            ws = caller.workspace_id
            claim = await run_in_threadpool(
                idempotency.claim,
                gate.engine,
                ws,
                key,
                fp,
                now=now_us(),
                ttl_us=settings.idempotency_ttl_s * 1_000_000,
                stale_us=settings.idempotency_stale_s * 1_000_000,
                held=gate.heartbeat.holds,
            )
            if claim.verdict == "mismatch":
                raise UnprocessableEntity(
                    f"Idempotency-Key '{key}' was already used with a different request; "
                    "send a new key with a new request"
                )
            if claim.verdict == "lost":
                # Its claim lapsed after its work committed: the request stopped (its
                # process, or its connection to the database) before storing its answer.
                raise Conflict(
                    f"The request with Idempotency-Key '{key}' was carried out and its changes "
                    "are saved, but its answer was not stored (it stopped before answering); "
                    "read the changes back instead of sending it again"
                )
            if claim.verdict == "failed":
                raise Conflict(
                    f"The request with Idempotency-Key '{key}' was carried out in part: it "
                    "saved changes, then failed with a server error, so it is not run again "
                    "with this key; read the changes back, and send it with a new key if it "
                    "still needs doing"
                )
            if claim.verdict == "busy":
                raise StillRunning(
                    f"A request with Idempotency-Key '{key}' is still being processed; "
                    "retry it shortly (Retry-After) to get its answer"
                )
        except IntentlyError as exc:
            await _answer_error(scope, send, exc)
            return
        except DBAPIError as exc:
            if not database_unavailable(exc):
                raise
            await _answer_unavailable(scope, send)
            return
        if claim.verdict == "replay" and claim.stored is not None:
            await _replay(send, claim.stored)
            return
        heartbeat = gate.heartbeat
        heartbeat.hold(ws, key, claim.token)
        try:
            await self._run_once(scope, receive, send, body, ws, key, claim.token)
        finally:
            heartbeat.drop(ws, key, claim.token)

    async def _run_once(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, ws: int, key: str, token: int
    ) -> None:
        """Run the request that holds claim `token`, and store its answer or drop the claim."""
        engine = self.gate.engine
        given = False

        async def replay_receive() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0
        ctype: str | None = None
        chunks: list[bytes] = []
        finished = False

        async def capture(message: Message) -> None:
            nonlocal status, ctype, finished
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", ()):
                    if k.lower() == b"content-type":
                        ctype = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                finished = not message.get("more_body", False)
            await send(message)

        hook = before_commit.set(lambda conn: idempotency.mark_committed(conn, ws, key, token))
        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            before_commit.reset(hook)  # the release's own write must not mark the work
            await run_in_threadpool(_release_quietly, engine, ws, key, token)
            raise
        before_commit.reset(hook)
        if finished and idempotency.storable(status):
            await run_in_threadpool(
                idempotency.complete, engine, ws, key, token, status, ctype, b"".join(chunks)
            )
        else:
            await run_in_threadpool(_release_quietly, engine, ws, key, token)


def _release_quietly(engine: Engine, ws: int, key: str, token: int) -> None:
    # With the database down the claim stays; it lapses after idempotency_stale_s.
    with contextlib.suppress(DBAPIError):
        idempotency.release(engine, ws, key, token)


async def _answer_error(scope: Scope, send: Send, exc: IntentlyError) -> None:
    headers = {"Retry-After": "1"} if isinstance(exc, StillRunning) else None
    response = envelope_response(
        scope["path"],
        exc.data,
        exc.status,
        custom_message=exc.custom_message,
        error=True,
        headers=headers,
    )
    await response(scope, _no_receive, send)


async def _answer_unavailable(scope: Scope, send: Send) -> None:
    response = envelope_response(
        scope["path"],
        None,
        503,
        custom_message="The database is unavailable; try again shortly",
        error=True,
    )
    await response(scope, _no_receive, send)


async def _replay(send: Send, stored: idempotency.Stored) -> None:
    headers = [
        (b"content-length", str(len(stored.body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    if stored.content_type:
        headers.append((b"content-type", stored.content_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


_RATE_HEADERS = {
    "RateLimit-Limit": "Requests the key's bucket holds.",
    "RateLimit-Remaining": "Requests left in the bucket now.",
    "RateLimit-Reset": "Seconds until the bucket is full again.",
}


def document_gate(method: str, operation: dict[str, Any]) -> None:
    """The gate's headers and answers in one /api/v1 operation of the OpenAPI document."""
    header = {"schema": {"type": "integer"}}
    responses = operation.setdefault("responses", {})
    for response in responses.values():
        response.setdefault("headers", {}).update(
            {name: {"description": text, **header} for name, text in _RATE_HEADERS.items()}
        )
    responses["429"] = {
        "description": "Over the key's rate limit: retry after Retry-After seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", **header}},
    }
    if method.upper() in _WRITES:
        operation.setdefault("parameters", []).append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Run this write once: a retry with the same key and body within "
                "24 h gets the first answer; the key with another body is 422.",
                "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.KEY_MAX},
            }
        )
        responses["409"] = {
            "description": "A request with this Idempotency-Key still runs (with Retry-After: "
            "try again), or ran and its answer was not stored (read its changes back)."
        }
        responses["422"] = {"description": "This Idempotency-Key was used with another request."}
