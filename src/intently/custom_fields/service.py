"""Custom field definitions and typed value checks (spec E2, E3, E8, E9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from intently.accounts import repository as accounts_repo
from intently.custom_fields import repository as repo
from intently.custom_fields.schemas import SELECTION_TYPES, CustomFieldIn
from intently.kit.db import lock_workspace, read_tx, tick, write_tx
from intently.kit.errors import Conflict, NotFound, validation_error
from intently.kit.timefmt import now_us


def field_key(label: str) -> str:
    """`Revenue (USD)` -> `REVENUE_(USD)_C`: spaces to `_`, upper-cased, nothing else changed."""
    return label.strip().replace(" ", "_").upper() + "_C"


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "label": row["label"],
        "labelType": row["label_type"],
        "description": row["description"],
        "options": list(row["options"] or []),
        "objectType": row["object_type"],
        "status": row["status"],
    }


def create(engine: Engine, workspace_id: int, body: CustomFieldIn) -> dict[str, Any]:
    if body.labelType in SELECTION_TYPES and not body.options:
        raise validation_error(
            "options", "options", "arrayMinSize", "options must contain at least 1 elements"
        )
    options = list(body.options or []) if body.labelType in SELECTION_TYPES else []
    key = field_key(body.label)
    now = now_us()
    values = {
        "label": body.label.strip(),
        "label_type": body.labelType,
        "description": body.description,
        "options": options,
        "object_type": "accounts",
        "status": "active",
        "updated_at": now,
    }
    with write_tx(engine) as conn:
        lock_workspace(conn, workspace_id)
        existing = repo.get(conn, workspace_id, key)
        if existing is not None and existing["status"] == "active":
            raise Conflict(f"Custom field with key '{key}' already exists")
        if existing is None:
            repo.insert(
                conn, {"workspace_id": workspace_id, "key": key, "created_at": now, **values}
            )
        else:
            # Reactivation: the kept values show again, so those accounts have changed.
            repo.update_field(conn, workspace_id, key, values)
            accounts_repo.touch_with_custom_field(conn, workspace_id, key, tick(conn, workspace_id))
        row = repo.get(conn, workspace_id, key)
    assert row is not None
    return public(row)


def list_active(engine: Engine, workspace_id: int) -> list[dict[str, Any]]:
    with read_tx(engine) as conn:
        return [public(r) for r in repo.active(conn, workspace_id)]


def deactivate(engine: Engine, workspace_id: int, key: str) -> dict[str, Any]:
    with write_tx(engine) as conn:
        lock_workspace(conn, workspace_id)
        existing = repo.get(conn, workspace_id, key)
        if existing is None or existing["status"] != "active":
            raise NotFound(f"Custom field '{key}' not found")
        repo.update_field(conn, workspace_id, key, {"status": "inactive", "updated_at": now_us()})
        accounts_repo.touch_with_custom_field(conn, workspace_id, key, tick(conn, workspace_id))
        row = repo.get(conn, workspace_id, key)
    assert row is not None
    return public(row)
