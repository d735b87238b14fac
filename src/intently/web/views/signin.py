"""Sign-in and sign-out."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.auth.users import SESSION_DAYS, end_session, start_session, verify_login
from intently.web.session import COOKIE, Writer, engine_of
from intently.web.templating import render
from intently.web.throttle import throttle

router = APIRouter()

LOGIN_COOKIE = "intently_login_csrf"


def _safe_next(value: str | None) -> str:
    # Only paths of this dashboard: never another host ("//evil", "https://...").
    if value and value.startswith("/app") and not value.startswith("//") and "\\" not in value:
        return value
    return "/app/"


def _login_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str = "",
    workspaces: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "signin.html",
        None,
        status_code=status_code,
        login_token=token,
        next_path=next_path,
        email=email,
        error=error,
        workspaces=workspaces or [],
    )
    # Double-submit token for the sign-in form itself (there is no session yet).
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/app/login",
        max_age=3600,
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_path=_safe_next(next))


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    workspace: Annotated[str, Form(max_length=200)] = "",
    login_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/app/",
) -> Response:
    next_path = _safe_next(next)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_token.encode()):
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            error="The sign-in form expired; please try again.",
            status_code=403,
        )
    if not email.strip() or not password:
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            error="Enter your email and password.",
            status_code=400,
        )
    address = request.client.host if request.client else ""
    wait = throttle.retry_after(email, address)
    if wait:
        response = _login_page(
            request,
            next_path=next_path,
            email=email,
            error=f"Too many failed sign-ins; try again in {max(1, round(wait / 60))} min.",
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    matches = verify_login(engine_of(request), email, password)
    if workspace:
        matches = [m for m in matches if m.workspace_name == workspace]
    if not matches:
        throttle.failed(email, address)
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            error="That email and password do not match a user.",
            status_code=401,
        )
    throttle.succeeded(email, address)
    if len(matches) > 1:
        return _login_page(
            request,
            next_path=next_path,
            email=email,
            error="This email belongs to several workspaces: choose one.",
            workspaces=[m.workspace_name for m in matches],
            status_code=200,
        )
    match = matches[0]
    token = start_session(engine_of(request), match.workspace_id, match.user_id)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
        max_age=SESSION_DAYS * 86_400,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/app/login")
    return response


@router.post("/logout")
def logout(request: Request, user: Writer) -> Response:
    end_session(engine_of(request), request.cookies.get(COOKIE))
    response = RedirectResponse("/app/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
