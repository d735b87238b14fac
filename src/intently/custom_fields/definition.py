"""The workspace's custom field definitions as account writes read them: which fields are
active, whether values fit their types, and merging new values over stored ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from intently.custom_fields import repository as repo
from intently.kit.text import quoted
from intently.kit.timefmt import parse_iso8601


def definitions(conn: Connection, workspace_id: int) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in repo.active(conn, workspace_id)}


def _shown(value: Any) -> str:
    return quoted(value, python=True)  # 'text' in quotes, anything else as Python writes it


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
                return f"Custom field '{key}' expects a string, got {_shown(value)}"
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"Custom field '{key}' expects a number, got {_shown(value)}"
        elif kind == "date":
            ok = isinstance(value, str)
            if ok:
                try:
                    parse_iso8601(value)
                except ValueError:
                    ok = False
            if not ok:
                return f"Custom field '{key}' expects an ISO 8601 date, got {_shown(value)}"
        elif kind == "singleSelection":
            if not isinstance(value, str) or value not in options:
                return (
                    f"Custom field '{key}' expects one of {', '.join(options)}; got {_shown(value)}"
                )
        elif kind == "multiSelection":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"Custom field '{key}' expects an array of its options, got {_shown(value)}"
            bad = [v for v in value if v not in options]
            if bad:
                return (
                    f"Custom field '{key}' expects values among {', '.join(options)}; "
                    f"got {_shown(bad[0])}"
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
