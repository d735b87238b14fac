"""The Jinja2 environment every page renders with: autoescaped, with the dashboard's filters."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import HTMLResponse

from intently.auth.users import SessionUser

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Autoescaping is on for .html (Jinja2Templates' default): a company named "<script>"
# renders as text. Nothing in the templates marks user data |safe.
templates = Jinja2Templates(directory=str(TEMPLATES))
env = templates.env


def _when(us: int | None) -> str:
    if not us:
        return "—"
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M")


def _day(us: int | None) -> str:
    if not us:
        return "—"
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d")


def _ago(us: int | None) -> str:
    if not us:
        return "never"
    seconds = max(0, time.time() - us / 1_000_000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _tojson_attr(value: Any) -> Markup:
    """JSON for a data-* attribute or a <script type=application/json>: every <, > and &
    escaped so no value can close the element."""
    text = json.dumps(value, separators=(",", ":"))
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text.replace("'", "\\u0027"))


env.filters["when"] = _when
env.filters["day"] = _day
env.filters["ago"] = _ago
env.filters["number"] = _number
env.filters["jsondata"] = _tojson_attr


def render(
    request: Request,
    name: str,
    user: SessionUser | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the signed-in user and the CSRF token."""
    context.setdefault("nav", "")
    return templates.TemplateResponse(
        request,
        name,
        {"user": user, "csrf_token": user.csrf_token if user else "", **context},
        status_code=status_code,
    )
