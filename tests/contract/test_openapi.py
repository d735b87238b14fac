"""schemathesis over the app's own OpenAPI document: no request it can generate makes the
server fail, and every /api/v1 answer wears the envelope with its own status."""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from intently.app import create_app
from intently.auth.service import generate_key
from intently.settings import Settings

_app = create_app(Settings(database_url=os.environ["INTENTLY_TEST_DATABASE_URL"]))
_key = generate_key(
    _app.state.intently.engine, f"schemathesis-{uuid.uuid4().hex[:8]}", "st@example.com"
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


def envelope_check(ctx: Any, response: Any, case: Any) -> bool | None:
    if not case.path.startswith("/api/v1"):
        return None
    body = response.json()
    assert set(body) >= {"statusCode", "timestamp", "path", "data"}, body
    assert body["statusCode"] == response.status_code
    assert "Traceback" not in response.text
    return None


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails(case: Any) -> None:
    response = case.call(headers={"X-Api-Key": _key})
    case.validate_response(response, checks=[not_a_server_error])
    envelope_check(None, response, case)
