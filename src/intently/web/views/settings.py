"""Settings (admins only): users, API keys, webhooks with their delivery log, the API
access switch, custom fields.

Secrets (a new user's password, an API key, a webhook signing secret) appear only in the
response to the action that made them, inside `.secret`; no page reads them back, and
those responses are rendered directly rather than redirected so the secret never travels
through a URL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from intently.auth import service as auth_service
from intently.auth import users as users_service
from intently.custom_fields import service as fields_service
from intently.custom_fields.schemas import LABEL_TYPES, SELECTION_TYPES, CustomFieldIn
from intently.events.schemas import EVENT_TYPES
from intently.kit.errors import BadRequest, IntentlyError
from intently.kit.validation import validate
from intently.settings import Settings
from intently.web.feedback import error_text
from intently.web.session import Admin, AdminWriter, engine_of
from intently.web.templating import render
from intently.webhooks import service as webhooks_service
from intently.webhooks.schemas import DELIVERY_STATUSES, WebhookIn, WebhookPatch

router = APIRouter()

BASE = "/app/settings"
WEBHOOKS_PAGE = 50
DELIVERIES_PAGE = 25
KEYS_PAGE = 50

# After a redirect the page says what happened through a fixed code, never through text
# taken from the URL (which anyone could craft into a link).
DONE = {
    "api-on": "API access is on: keys of this workspace work again.",
    "api-off": "API access is off: every key of this workspace now gets 401.",
    "role": "Role changed.",
    "signin-removed": "Sign-in removed; the user's sessions ended.",
    "revoked": "API key revoked; it stops working at once.",
    "enabled": "Webhook enabled; deliveries that waited go now.",
    "disabled": "Webhook disabled; new events wait until it is enabled.",
    "deleted": "Webhook deleted with its delivery log.",
    "retried": "Delivery queued again; it goes out with the next dispatch.",
    "field-created": "Custom field created.",
    "field-deactivated": "Custom field deactivated; its values are kept, hidden.",
}


def _done(code: str | None) -> tuple[str, str] | None:
    text = DONE.get(code or "")
    return ("ok", text) if text else None


def _back(path: str, done: str) -> Response:
    return RedirectResponse(f"{BASE}{path}?done={done}", status_code=303)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.intently.settings
    return settings


def _page(
    request: Request,
    user: Any,
    template: str,
    *,
    tab: str,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    return render(
        request,
        f"settings/{template}",
        user,
        status_code=status_code,
        nav="settings",
        tab=tab,
        flash=flash,
        **context,
    )


# ---- general: the API access switch ----------------------------------------------------------


@router.get("/settings")
def general(request: Request, user: Admin, done: str | None = None) -> Response:
    return _general(request, user, flash=_done(done))


def _general(
    request: Request, user: Any, *, flash: tuple[str, str] | None = None, status_code: int = 200
) -> Response:
    enabled = auth_service.api_access(engine_of(request), user.workspace_id)
    return _page(
        request,
        user,
        "general.html",
        tab="general",
        flash=flash,
        status_code=status_code,
        api_access=enabled,
    )


@router.post("/settings/api-access")
def set_api_access(
    request: Request, user: AdminWriter, enabled: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    if enabled not in ("on", "off"):
        return _general(
            request,
            user,
            flash=("error", f"enabled should be on or off; got '{enabled}'"),
            status_code=400,
        )
    auth_service.set_api_access_for(engine_of(request), user.workspace_id, enabled == "on")
    return _back("", f"api-{enabled}")


# ---- users -------------------------------------------------------------------------------------


@router.get("/settings/users")
def users(request: Request, user: Admin, done: str | None = None) -> Response:
    return _users(request, user, flash=_done(done))


def _users(
    request: Request,
    user: Any,
    *,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    invited: users_service.CreatedUser | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    rows = users_service.list_users(engine_of(request), user.workspace_id)
    return _page(
        request,
        user,
        "users.html",
        tab="users",
        flash=flash,
        status_code=status_code,
        users=rows,
        roles=users_service.ROLES,
        invited=invited,
        form=form or {"email": "", "role": "member"},
    )


@router.post("/settings/users")
def invite(
    request: Request,
    user: AdminWriter,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=32)] = "member",
) -> Response:
    try:
        created = users_service.invite_user(engine_of(request), user.workspace_id, email, role)
    except IntentlyError as exc:
        return _users(
            request,
            user,
            flash=("error", error_text(exc)),
            status_code=exc.status,
            form={"email": email, "role": role},
        )
    return _users(request, user, invited=created)


@router.post("/settings/users/{user_id}/role")
def change_role(
    request: Request,
    user_id: str,
    user: AdminWriter,
    role: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    try:
        users_service.set_role(engine_of(request), user.workspace_id, user_id, role)
    except IntentlyError as exc:
        return _users(request, user, flash=("error", error_text(exc)), status_code=exc.status)
    if user_id == user.user_id and role != "admin":
        # No longer an admin: Settings would answer 403.
        return RedirectResponse("/app/", status_code=303)
    return _back("/users", "role")


@router.post("/settings/users/{user_id}/disable")
def disable_sign_in(request: Request, user_id: str, user: AdminWriter) -> Response:
    try:
        users_service.disable_sign_in(engine_of(request), user.workspace_id, user_id)
    except IntentlyError as exc:
        return _users(request, user, flash=("error", error_text(exc)), status_code=exc.status)
    if user_id == user.user_id:
        return RedirectResponse("/app/login", status_code=303)
    return _back("/users", "signin-removed")


# ---- API keys ------------------------------------------------------------------------------------


@router.get("/settings/api-keys")
def api_keys(
    request: Request, user: Admin, before: str | None = None, done: str | None = None
) -> Response:
    return _api_keys(request, user, before=before, flash=_done(done))


def _api_keys(
    request: Request,
    user: Any,
    *,
    before: str | None = None,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    issued: auth_service.IssuedKey | None = None,
    email: str = "",
) -> Response:
    engine = engine_of(request)
    keys, next_before = auth_service.list_keys(
        engine, user.workspace_id, before=before or None, limit=KEYS_PAGE
    )
    return _page(
        request,
        user,
        "api_keys.html",
        tab="api-keys",
        flash=flash,
        status_code=status_code,
        keys=keys,
        next_before=next_before,
        paged=bool(before),
        issued=issued,
        email=email,
        emails=[u.email for u in users_service.list_users(engine, user.workspace_id)],
        api_access=auth_service.api_access(engine, user.workspace_id),
    )


@router.post("/settings/api-keys")
def generate_key(
    request: Request, user: AdminWriter, email: Annotated[str, Form(max_length=320)] = ""
) -> Response:
    try:
        issued = auth_service.issue_key(engine_of(request), user.workspace_id, email)
    except IntentlyError as exc:
        return _api_keys(
            request, user, flash=("error", error_text(exc)), status_code=exc.status, email=email
        )
    return _api_keys(request, user, issued=issued)


@router.post("/settings/api-keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, user: AdminWriter) -> Response:
    try:
        auth_service.revoke_key(engine_of(request), user.workspace_id, key_id)
    except IntentlyError as exc:
        return _api_keys(request, user, flash=("error", error_text(exc)), status_code=exc.status)
    return _back("/api-keys", "revoked")


# ---- webhooks ------------------------------------------------------------------------------------


@router.get("/settings/webhooks")
def webhooks(
    request: Request, user: Admin, cursor: str | None = None, done: str | None = None
) -> Response:
    return _webhooks(request, user, cursor=cursor, flash=_done(done))


def _webhooks(
    request: Request,
    user: Any,
    *,
    cursor: str | None = None,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    created: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    result = webhooks_service.list_webhooks(
        engine_of(request),
        request.app.state.intently.codec,
        user.workspace_id,
        limit=WEBHOOKS_PAGE,
        cursor=cursor or None,
    )
    return _page(
        request,
        user,
        "webhooks.html",
        tab="webhooks",
        flash=flash,
        status_code=status_code,
        hooks=result["data"],
        next_cursor=result["nextCursor"],
        paged=bool(cursor),
        created=created,
        event_types=EVENT_TYPES,
        form=form or {"url": "", "event_types": [], "description": ""},
    )


@router.post("/settings/webhooks")
def create_webhook(
    request: Request,
    user: AdminWriter,
    url: Annotated[str, Form(max_length=4096)] = "",
    event_types: Annotated[list[str], Form(alias="eventTypes", max_length=50)] = [],  # noqa: B006
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    form = {"url": url, "event_types": event_types, "description": description}
    try:
        body = validate(
            WebhookIn,
            {
                "url": url,
                "eventTypes": event_types,
                "description": description.strip() or None,
            },
        )
        hook = webhooks_service.create(
            engine_of(request), _settings(request), user.workspace_id, body
        )
    except IntentlyError as exc:
        return _webhooks(
            request, user, flash=("error", error_text(exc)), status_code=exc.status, form=form
        )
    return _webhooks(request, user, created=hook)


@router.get("/settings/webhooks/{webhook_id}")
def webhook(
    request: Request,
    webhook_id: str,
    user: Admin,
    cursor: str | None = None,
    status: str | None = None,
    done: str | None = None,
) -> Response:
    return _webhook(request, user, webhook_id, cursor=cursor, status=status, flash=_done(done))


def _webhook(
    request: Request,
    user: Any,
    webhook_id: str,
    *,
    cursor: str | None = None,
    status: str | None = None,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    secret: str | None = None,
    test: dict[str, Any] | None = None,
) -> Response:
    engine = engine_of(request)
    hook = webhooks_service.get(engine, user.workspace_id, webhook_id)
    log = webhooks_service.list_deliveries(
        engine,
        request.app.state.intently.codec,
        user.workspace_id,
        webhook_id,
        limit=DELIVERIES_PAGE,
        cursor=cursor or None,
        status=status or None,
    )
    return _page(
        request,
        user,
        "webhook.html",
        tab="webhooks",
        flash=flash,
        status_code=status_code,
        hook=hook,
        deliveries=log["data"],
        next_cursor=log["nextCursor"],
        paged=bool(cursor),
        status_filter=status or "",
        statuses=DELIVERY_STATUSES,
        secret=secret,
        test=test,
    )


@router.post("/settings/webhooks/{webhook_id}/status")
def webhook_status(
    request: Request,
    webhook_id: str,
    user: AdminWriter,
    status: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    if status not in ("active", "disabled"):
        raise BadRequest(f"status should be active or disabled; got '{status}'")
    change = validate(WebhookPatch, {"status": status})
    webhooks_service.patch(
        engine_of(request), _settings(request), user.workspace_id, webhook_id, change
    )
    done = "enabled" if status == "active" else "disabled"
    return _back(f"/webhooks/{webhook_id}", done)


@router.post("/settings/webhooks/{webhook_id}/rotate-secret")
def rotate_secret(request: Request, webhook_id: str, user: AdminWriter) -> Response:
    hook = webhooks_service.rotate_secret(engine_of(request), user.workspace_id, webhook_id)
    return _webhook(request, user, webhook_id, secret=str(hook["secret"]))


@router.post("/settings/webhooks/{webhook_id}/test")
def test_webhook(request: Request, webhook_id: str, user: AdminWriter) -> Response:
    result = webhooks_service.send_test(
        engine_of(request), _settings(request), user.workspace_id, webhook_id
    )
    return _webhook(request, user, webhook_id, test=result)


@router.post("/settings/webhooks/{webhook_id}/delete")
def delete_webhook(request: Request, webhook_id: str, user: AdminWriter) -> Response:
    webhooks_service.remove(engine_of(request), user.workspace_id, webhook_id)
    return _back("/webhooks", "deleted")


@router.post("/settings/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request, webhook_id: str, delivery_id: str, user: AdminWriter
) -> Response:
    try:
        webhooks_service.retry_delivery(
            engine_of(request), user.workspace_id, webhook_id, delivery_id
        )
    except IntentlyError as exc:
        if exc.status != 409:  # an unknown webhook or delivery is the error page's 404
            raise
        return _webhook(
            request, user, webhook_id, flash=("error", error_text(exc)), status_code=exc.status
        )
    return _back(f"/webhooks/{webhook_id}", "retried")


# ---- custom fields -------------------------------------------------------------------------------


@router.get("/settings/custom-fields")
def custom_fields(request: Request, user: Admin, done: str | None = None) -> Response:
    return _custom_fields(request, user, flash=_done(done))


def _custom_fields(
    request: Request,
    user: Any,
    *,
    flash: tuple[str, str] | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    fields = fields_service.list_active(engine_of(request), user.workspace_id)
    return _page(
        request,
        user,
        "custom_fields.html",
        tab="custom-fields",
        flash=flash,
        status_code=status_code,
        fields=fields,
        label_types=LABEL_TYPES,
        selection_types=SELECTION_TYPES,
        form=form
        or {"label": "", "label_type": "singleLineText", "description": "", "options": ""},
    )


@router.post("/settings/custom-fields")
def create_custom_field(
    request: Request,
    user: AdminWriter,
    label: Annotated[str, Form(max_length=300)] = "",
    label_type: Annotated[str, Form(alias="labelType", max_length=64)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    options: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    form = {
        "label": label,
        "label_type": label_type,
        "description": description,
        "options": options,
    }
    if label_type not in LABEL_TYPES:
        return _custom_fields(
            request,
            user,
            flash=(
                "error",
                f"labelType should be one of {', '.join(LABEL_TYPES)}; got '{label_type}'",
            ),
            status_code=400,
            form=form,
        )
    # One option per line: options may themselves hold commas ("Yes, signed").
    choices = [line.strip() for line in options.splitlines() if line.strip()]
    try:
        body = validate(
            CustomFieldIn,
            {
                "label": label,
                "labelType": label_type,
                "description": description.strip() or None,
                "options": choices or None,
            },
        )
        fields_service.create(engine_of(request), user.workspace_id, body)
    except IntentlyError as exc:
        return _custom_fields(
            request, user, flash=("error", error_text(exc)), status_code=exc.status, form=form
        )
    return _back("/custom-fields", "field-created")


@router.post("/settings/custom-fields/deactivate")
def deactivate_custom_field(
    request: Request, user: AdminWriter, key: Annotated[str, Form(max_length=400)] = ""
) -> Response:
    if not key:
        raise BadRequest("key should name a custom field; got ''")
    fields_service.deactivate(engine_of(request), user.workspace_id, key)
    return _back("/custom-fields", "field-deactivated")
