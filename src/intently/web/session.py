"""Who is signed in: the session cookie, roles, and the CSRF check on every form.

Views take one of these as a parameter:
- `Viewer`: any signed-in user of the workspace (GET pages);
- `Admin`: an admin (GET admin pages);
- `Writer`: a signed-in user whose form or htmx request carries the session's CSRF token;
- `AdminWriter`: the same, for admins.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from intently.auth.users import SessionUser, session_user

COOKIE = "intently_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in page, htmx requests are told to."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """A page-level failure shown as an error page (or fragment for htmx) with a status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.intently.engine
    return engine


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def sign_in_url(next_path: str) -> str:
    return "/app/login?next=" + quote(next_path, safe="/")


def viewer(request: Request) -> SessionUser:
    user = session_user(engine_of(request), request.cookies.get(COOKIE))
    if user is None:
        path = request.url.path
        if request.url.query and request.method == "GET":
            path += "?" + request.url.query
        raise SignInRequired(path if request.method == "GET" else "/app/")
    return user


def admin(user: Annotated[SessionUser, Depends(viewer)]) -> SessionUser:
    if not user.is_admin:
        raise PageError(403, "This page is for workspace admins.")
    return user


async def _check_csrf(request: Request, user: SessionUser) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), user.csrf_token.encode()):
        raise PageError(403, "The form's security token is missing or stale; reload the page.")


async def writer(request: Request, user: Annotated[SessionUser, Depends(viewer)]) -> SessionUser:
    await _check_csrf(request, user)
    return user


async def admin_writer(
    request: Request, user: Annotated[SessionUser, Depends(admin)]
) -> SessionUser:
    await _check_csrf(request, user)
    return user


Viewer = Annotated[SessionUser, Depends(viewer)]
Admin = Annotated[SessionUser, Depends(admin)]
Writer = Annotated[SessionUser, Depends(writer)]
AdminWriter = Annotated[SessionUser, Depends(admin_writer)]
