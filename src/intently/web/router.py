"""install(app): the dashboard's routes under /app, its static files, its error pages."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intently.kit.errors import IntentlyError, ValidationFailed
from intently.web.session import PageError, SignInRequired, Viewer, is_htmx, sign_in_url
from intently.web.templating import STATIC, render
from intently.web.views import accounts, journey, scoring, segments, settings, signin, sources

PREFIX = "/app"

# No inline script anywhere (chart data travels in <script type="application/json">), so
# scripts are limited to our own files; htmx is told not to eval (see base.html).
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
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
ROUTERS = tuple(m.router for m in (signin, accounts, journey, segments, scoring, sources, settings))


def install(app: FastAPI) -> None:
    for area in ROUTERS:
        app.include_router(area, prefix=PREFIX, include_in_schema=False)
    app.mount(PREFIX + "/static", StaticFiles(directory=str(STATIC)), name="web-static")

    @app.get("/", include_in_schema=False)
    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    def home(user: Viewer) -> Response:
        return RedirectResponse(PREFIX + "/accounts", status_code=303)

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


def error_page(request: Request, status: int, message: str) -> Response:
    template = "error_fragment.html" if is_htmx(request) else "error.html"
    return render(request, template, None, status_code=status, status=status, message=message)


def error_text(exc: IntentlyError) -> str:
    """A service error as one sentence, with every field problem of a validation failure."""
    if isinstance(exc, ValidationFailed):
        parts = []
        for item in exc.errors:
            texts = "; ".join(str(t) for t in (item.get("constraints") or {}).values())
            parts.append(f"{item.get('path') or item.get('property')}: {texts}")
        return " · ".join(parts) or exc.custom_message
    return exc.custom_message
