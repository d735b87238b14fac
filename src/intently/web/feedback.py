"""How the dashboard words a failure: a service error as one sentence, and the error page.

The router's handlers and the views both use these, so they live apart from either.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from intently.kit.errors import IntentlyError, ValidationFailed
from intently.web.session import is_htmx
from intently.web.templating import render


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
