"""Custom field definitions and typed value checks (spec E2, E3, E8, E9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.accounts import repository as accounts_repo
from intently.custom_fields import repository as repo
from intently.custom_fields.schemas import SELECTION_TYPES, CustomFieldIn
from intently.kit.db import lock_workspace, read_tx, tick, write_tx
from intently.kit.errors import Conflict, NotFound, validation_error
from intently.kit.timefmt import now_us, parse_iso8601


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


def definitions(conn: Connection, workspace_id: int) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in repo.active(conn, workspace_id)}


def _fmt(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def check_values(values: dict[str, Any], defs: dict[str, dict[str, Any]]) -> str | None:
    """The first problem with these custom field values, as a sentence naming the key."""
    for key, value in values.items():
        d = defs.get(key)
        if d is None:
            return f"Custom field '{key}' does not exist or is not active"
        if value is None:
            continue
        kind = d["label_type"]
        options = d["options"] or []
        if kind in ("singleLineText", "multiLineText"):
            if not isinstance(value, str):
                return f"Custom field '{key}' expects a string, got {_fmt(value)}"
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"Custom field '{key}' expects a number, got {_fmt(value)}"
        elif kind == "date":
            ok = isinstance(value, str)
            if ok:
                try:
                    parse_iso8601(value)
                except ValueError:
                    ok = False
            if not ok:
                return f"Custom field '{key}' expects an ISO 8601 date, got {_fmt(value)}"
        elif kind == "singleSelection":
            if not isinstance(value, str) or value not in options:
                return (
                    f"Custom field '{key}' expects one of {', '.join(options)}; got {_fmt(value)}"
                )
        elif kind == "multiSelection":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"Custom field '{key}' expects an array of its options, got {_fmt(value)}"
            bad = [v for v in value if v not in options]
            if bad:
                return (
                    f"Custom field '{key}' expects values among {', '.join(options)}; "
                    f"got {_fmt(bad[0])}"
                )
    return None


def merge(stored: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Stored values with `values` merged per key; null clears a key."""
    out = dict(stored)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out
