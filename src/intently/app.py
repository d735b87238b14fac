"""create_app(settings): the routers on both mounts, the one error handler, the docs."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

import intently
from intently.accounts import endpoints as accounts_endpoints
from intently.activities import endpoints as activities_endpoints
from intently.auth.endpoints import API_KEY_SCHEME
from intently.custom_fields import endpoints as custom_fields_endpoints
from intently.deals import endpoints as deals_endpoints
from intently.events import endpoints as events_endpoints
from intently.fit import endpoints as fit_endpoints
from intently.gate.middleware import Gate, GateMiddleware, document_gate
from intently.ingest import endpoints as collector_endpoints
from intently.kit.db import database_unavailable, make_engine
from intently.kit.envelope import envelope_response
from intently.kit.errors import IntentlyError, ValidationFailed
from intently.kit.logs import RequestContext
from intently.kit.metrics import observe_request
from intently.kit.metrics import render as render_metrics
from intently.kit.pagination import CursorCodec
from intently.kit.secrets import get_or_create_secret
from intently.kit.web import BODY_MODELS, AppState, preview_slots
from intently.scoring import endpoints as scoring_endpoints
from intently.scoring import repository as scoring_repo
from intently.segments import endpoints as segments_endpoints
from intently.settings import Settings, get_settings
from intently.signals import endpoints as signals_endpoints
from intently.stages import endpoints as stages_endpoints
from intently.web import feedback
from intently.web import router as web_router
from intently.webhooks import endpoints as webhooks_endpoints

log = logging.getLogger("intently")

MOUNTS = ("/api/v1", "/api/v1/crm")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Everything imported and built so far lives until exit. Frozen, it is left out of
    # garbage collections, which otherwise walk it all (routes, schemas, modules) and
    # stalled requests ~100 ms each time the collector's churn triggered a full collection
    # (bench/collector.py: accept p99 60 ms before, 8 ms frozen).
    gc.freeze()
    # The collector writes its buffer from a thread; stopping flushes what is left.
    collector_endpoints.start_collector(app)
    try:
        yield
    finally:
        await run_in_threadpool(collector_endpoints.stop_collector, app)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )
    secret = settings.secret_key or get_or_create_secret(engine, "cursor")
    app = FastAPI(
        title="Intently External API",
        version=intently.__version__,
        description="Wire-compatible with the Recotap External API v1, plus extensions.",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.intently = AppState(
        settings=settings,
        engine=engine,
        codec=CursorCodec(secret),
        previews=preview_slots(settings),
    )
    # Keys, rate limits and Idempotency-Key for /api/v1 (and the collector's rate limit).
    app.state.gate = Gate(settings, engine)
    app.add_middleware(GateMiddleware, gate=app.state.gate)
    # Outermost (added last): request ids and access lines cover what the gate answers too.
    app.add_middleware(RequestContext, observe=observe_request if settings.metrics else None)

    for prefix in MOUNTS:
        crm = prefix.endswith("/crm")
        # Fixed paths first: /accounts/custom-fields must not match /accounts/{rtp_aid}.
        app.include_router(custom_fields_endpoints.router(), prefix=prefix)
        app.include_router(accounts_endpoints.router(crm=crm), prefix=prefix)
        app.include_router(deals_endpoints.router(), prefix=prefix)
        app.include_router(activities_endpoints.router(), prefix=prefix)
        app.include_router(segments_endpoints.router(), prefix=prefix)
        app.include_router(signals_endpoints.router(), prefix=prefix)
        app.include_router(stages_endpoints.router(), prefix=prefix)
        app.include_router(scoring_endpoints.router(), prefix=prefix)
        app.include_router(fit_endpoints.router(), prefix=prefix)
        app.include_router(events_endpoints.router(), prefix=prefix)
        app.include_router(webhooks_endpoints.router(), prefix=prefix)
    # The website collector (/v1/..., /t.js) and GET /api/v1/website, at the root.
    app.include_router(collector_endpoints.router())
    # The dashboard, under /app.
    web_router.install(app)

    _add_error_handlers(app)
    _add_service_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IntentlyError)
    async def on_intently_error(request: Request, exc: IntentlyError) -> Response:
        if request.url.path.startswith(web_router.PREFIX):
            page = feedback.error_page(request, exc.status, feedback.error_text(exc))
            page.headers.update(exc.headers or {})
            return page
        if isinstance(exc, ValidationFailed):
            return envelope_response(request.url.path, exc.errors, 400, error=True)
        return envelope_response(
            request.url.path,
            exc.data,
            exc.status,
            custom_message=exc.custom_message,
            error=True,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path
        if path.startswith(web_router.PREFIX):
            text = "Page not found." if exc.status_code in (404, 405) else str(exc.detail)
            return feedback.error_page(request, exc.status_code, text)
        if exc.status_code in (404, 405):
            # Like the NestJS original: a method a path does not serve is an unknown route.
            return envelope_response(
                path, None, 404, custom_message=f"Cannot {request.method} {path}", error=True
            )
        return envelope_response(
            path, None, exc.status_code, custom_message=str(exc.detail), error=True
        )

    @app.exception_handler(RequestValidationError)
    async def on_request_validation(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(web_router.PREFIX):
            text = "; ".join(
                f"{e['loc'][-1]}: {e['msg']} (got {str(e.get('input'))[:80]!r})"
                for e in exc.errors()
            )
            return feedback.error_page(request, 400, text)
        errors = [
            {
                "property": str(e["loc"][-1]),
                "path": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][-1]),
                "constraints": {e["type"]: str(e["msg"])},
            }
            for e in exc.errors()
        ]
        return envelope_response(request.url.path, errors, 400, error=True)

    @app.exception_handler(DBAPIError)
    async def on_database_error(request: Request, exc: DBAPIError) -> Response:
        if not database_unavailable(exc):
            return await on_unexpected(request, exc)
        cause = type(exc.orig).__name__
        log.warning("database unavailable: %s", cause)
        message = "The database is unavailable; try again shortly"
        if cause in ("DeadlockDetected", "SerializationFailure"):
            # PostgreSQL rolled this request back to let a concurrent one through.
            message = "The request met a concurrent write and was rolled back; retry it"
        return envelope_response(
            request.url.path,
            None,
            503,
            custom_message=message,
            error=True,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope_response(
            request.url.path,
            None,
            500,
            custom_message="An unexpected error occurred",
            error=True,
        )


def _add_service_routes(app: FastAPI) -> None:
    app.mount(
        "/docs-static",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="docs-static",
    )

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> Response:
        engine = request.app.state.intently.engine
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    if app.state.intently.settings.metrics:
        # No key: Prometheus scrapes it; restrict it at the proxy (docs/deploy.md).
        @app.get("/metrics", include_in_schema=False)
        def metrics(request: Request) -> Response:
            st = request.app.state.intently
            body, content_type = render_metrics(
                st.engine, st.settings.database_url, scoring_repo.run_figures
            )
            return Response(body, media_type=content_type)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Intently API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = {"ApiKey": API_KEY_SCHEME}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                operation["security"] = [{"ApiKey": []}]
                document_gate(method, operation)
    components = schema["components"].setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    app.openapi_schema = schema
    return schema
