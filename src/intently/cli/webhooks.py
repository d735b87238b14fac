"""`intently webhooks ...`: register, inspect and drive webhooks from the command line."""

from __future__ import annotations

from typing import Any

import typer

from intently.cli.common import (
    WORKSPACE_HELP,
    engine,
    fail,
    intently_errors,
    out_console,
    print_json,
    workspace_id,
)
from intently.kit.db import read_tx
from intently.kit.pagination import CursorCodec
from intently.kit.secrets import get_or_create_secret
from intently.kit.timefmt import now_us
from intently.kit.validation import validate
from intently.settings import get_settings
from intently.webhooks import repository as repo
from intently.webhooks import service as webhooks_service
from intently.webhooks.dispatcher import Sender, deliver_due
from intently.webhooks.schemas import WebhookIn, WebhookPatch

webhooks_app = typer.Typer(
    help="Webhooks: signed HTTP calls for change events.", no_args_is_help=True
)

Workspace = typer.Option(None, "--workspace", "-w", help=WORKSPACE_HELP)


def _codec(eng: Any) -> Any:
    settings = get_settings()
    return CursorCodec(settings.secret_key or get_or_create_secret(eng, "cursor"))


def _line(h: dict[str, Any]) -> str:
    state = h["status"]
    if h["consecutiveFailures"]:
        state += f", {h['consecutiveFailures']} failures in a row"
    return f"{h['webhookId']}  {h['url']}  [{', '.join(h['eventTypes'])}]  ({state})"


@webhooks_app.command("add")
def add(
    url: str = typer.Argument(..., help="The receiver's http(s) URL."),
    events: str = typer.Option(
        ..., "--events", "-e", help="Comma list of event types, or * for every type."
    ),
    secret: str | None = typer.Option(None, help="Signing secret (generated when left out)."),
    description: str | None = typer.Option(None, help="A note for people."),
    workspace: str | None = Workspace,
) -> None:
    """Register a webhook; prints it as JSON with its secret (shown this once)."""
    body: dict[str, Any] = {
        "url": url,
        "eventTypes": [t.strip() for t in events.split(",") if t.strip()],
    }
    if secret is not None:
        body["secret"] = secret
    if description is not None:
        body["description"] = description
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        print_json(webhooks_service.create(eng, get_settings(), ws, validate(WebhookIn, body)))


@webhooks_app.command("list")
def list_command(
    workspace: str | None = Workspace,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The workspace's webhooks, one a line."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    codec = _codec(eng)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        result = webhooks_service.list_webhooks(eng, codec, ws, limit=1000, cursor=cursor)
        items.extend(result["data"])
        cursor = result["nextCursor"]
        if cursor is None:
            break
    if as_json:
        print_json(items)
        return
    if not items:
        out_console.print("no webhooks", highlight=False)
    for h in items:
        out_console.print(_line(h), highlight=False)


@webhooks_app.command("show")
def show(webhook_id: str, workspace: str | None = Workspace) -> None:
    """One webhook as JSON: its state, why it is disabled if it is, delivery counts."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        print_json(webhooks_service.get(eng, ws, webhook_id))


def _set_status(webhook_id: str, workspace: str | None, status: str) -> None:
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        change = WebhookPatch(status=status)  # type: ignore[arg-type]
        hook = webhooks_service.patch(eng, get_settings(), ws, webhook_id, change)
    out_console.print(_line(hook), highlight=False)


@webhooks_app.command("disable")
def disable(webhook_id: str, workspace: str | None = Workspace) -> None:
    """Stop delivering; new events are not queued, queued ones wait."""
    _set_status(webhook_id, workspace, "disabled")


@webhooks_app.command("enable")
def enable(webhook_id: str, workspace: str | None = Workspace) -> None:
    """Resume: failure counts cleared, waiting deliveries due now."""
    _set_status(webhook_id, workspace, "active")


@webhooks_app.command("remove")
def remove(webhook_id: str, workspace: str | None = Workspace) -> None:
    """Delete a webhook with its deliveries."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        webhooks_service.remove(eng, ws, webhook_id)
    out_console.print(f"webhook {webhook_id} removed", highlight=False)


@webhooks_app.command("deliveries")
def deliveries(
    webhook_id: str,
    status: str | None = typer.Option(None, help="Comma list of pending, delivered, failed."),
    limit: int = typer.Option(50, min=1, max=1000, help="How many, newest first."),
    workspace: str | None = Workspace,
    as_json: bool = typer.Option(False, "--json", help="Print JSON, attempts included."),
) -> None:
    """A webhook's newest deliveries with their last result."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        result = webhooks_service.list_deliveries(
            eng, _codec(eng), ws, webhook_id, limit=limit, cursor=None, status=status
        )
    items = result["data"]
    if as_json:
        print_json(items)
        return
    if not items:
        out_console.print("no deliveries", highlight=False)
    for d in items:
        last = d["lastError"] or (f"HTTP {d['lastStatusCode']}" if d["lastStatusCode"] else "")
        out_console.print(
            f"{d['deliveryId']}  {d['eventType'] or '?'}  event {d['eventId']}  {d['status']}  "
            f"{d['attemptCount']} tries  {last}".rstrip(),
            highlight=False,
        )


@webhooks_app.command("retry")
def retry(webhook_id: str, delivery_id: str, workspace: str | None = Workspace) -> None:
    """Put a failed delivery back in the queue, due now."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        d = webhooks_service.retry_delivery(eng, ws, webhook_id, delivery_id)
    out_console.print(f"delivery {d['deliveryId']} is {d['status']}", highlight=False)


@webhooks_app.command("test")
def test(webhook_id: str, workspace: str | None = Workspace) -> None:
    """Send a `webhook.test` ping now; exit 1 when the receiver did not take it."""
    eng = engine()
    ws = workspace_id(eng, workspace)
    with intently_errors():
        r = webhooks_service.send_test(eng, get_settings(), ws, webhook_id)
    if r["success"]:
        out_console.print(f"ok: HTTP {r['statusCode']} in {r['durationMs']} ms", highlight=False)
        return
    fail(f"the ping failed: {r['error']} ({r['durationMs']} ms)", code=1)


@webhooks_app.command("deliver")
def deliver(
    workspace: str | None = typer.Option(
        None, "--workspace", "-w", help="Only this workspace's deliveries (default: all)."
    ),
) -> None:
    """Send every due delivery now, until none is due; prints the counts."""
    eng = engine()
    ws = workspace_id(eng, workspace) if workspace is not None else None
    settings = get_settings()
    sender = Sender(eng, settings)
    total = rounds = 0
    try:
        while True:
            n = deliver_due(eng, settings, workspace_id=ws, sender=sender)
            if n == 0:
                break
            total += n
            rounds += 1
    finally:
        sender.close()
    with read_tx(eng) as conn:
        waiting = repo.count_pending_due(conn, now_us(), ws)
    out_console.print(
        f"{total:,} deliveries attempted in {rounds} rounds; {waiting:,} due and not held",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")
