"""install(app): the dashboard's routes under /app, its static files, its error pages."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intently.auth.users import session_user
from intently.web.feedback import error_page
from intently.web.session import COOKIE, PageError, SignInRequired, Viewer, is_htmx, sign_in_url
from intently.web.templating import STATIC
from intently.web.views import (
    accounts,
    fit,
    journey,
    profile,
    scoring,
    segments,
    settings,
    signin,
    sources,
)

PREFIX = "/app"

# No inline script anywhere (chart data travels in <script type="application/json">), so
# scripts are limited to our own files; htmx is told not to eval (see base.html).
# Images may come from https hosts: account logos (logoUrl) live on the company's or a
# logo service's host; Referrer-Policy keeps the dashboard's URLs from them.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class _PageHeaders:
    """Security headers and the server time on dashboard responses. Plain ASGI, so the
    API's hot paths pass through untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        static = path.startswith(PREFIX + "/static")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # The page's server time (to its headers), for devtools and bench/.
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Every area's router; tests/web/test_access.py walks these to check every route.
# profile before accounts: /accounts/profile-upload is not an account's page.
ROUTERS = tuple(
    m.router
    for m in (signin, profile, accounts, journey, segments, scoring, fit, sources, settings)
)


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_BODY_BYTES = 64 * 1024


class _BodyGate:
    """Before a dashboard form's body is read: no session, no body (an anonymous upload is
    answered without taking it in), and no body over the size limit (413).

    The views check the session too; this only keeps what they would refuse off the disk."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX) or scope.get("method") not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        login = path == PREFIX + "/login"
        state = scope["app"].state.intently
        limit = LOGIN_BODY_BYTES if login else state.settings.web_max_body_bytes
        declared = conn.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = error_page(
                Request(scope), 413, f"The upload is larger than the limit of {limit:,} bytes."
            )
            await response(scope, receive, send)
            return
        if not login:
            token = conn.cookies.get(COOKIE)
            user = await run_in_threadpool(session_user, state.engine, token)
            if user is None:
                target = sign_in_url(PREFIX + "/")
                if conn.headers.get("HX-Request") == "true":
                    refusal: Response = Response(status_code=401, headers={"HX-Redirect": target})
                else:
                    refusal = RedirectResponse(target, status_code=303)
                await refusal(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            # A body without a length, or longer than it said: cut off at the limit.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)


def install(app: FastAPI) -> None:
    for area in ROUTERS:
        app.include_router(area, prefix=PREFIX, include_in_schema=False)
    app.mount(PREFIX + "/static", StaticFiles(directory=str(STATIC)), name="web-static")

    @app.get("/", include_in_schema=False)
    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    def home(user: Viewer) -> Response:
        return RedirectResponse(PREFIX + "/accounts", status_code=303)

    app.add_middleware(_BodyGate)
    app.add_middleware(_PageHeaders)

    @app.exception_handler(SignInRequired)
    async def on_sign_in_required(request: Request, exc: SignInRequired) -> Response:
        target = sign_in_url(exc.next_path)
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(PageError)
    async def on_page_error(request: Request, exc: PageError) -> Response:
        return error_page(request, exc.status, exc.message)
