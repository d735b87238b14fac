"""A static segment as account writes see it: whether it can take new members."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from intently.kit.errors import BadRequest
from intently.kit.ids import is_id
from intently.segments import repository as repo


def require_open_static(conn: Connection, ws: int, sid: str) -> dict[str, Any]:
    """The segment, if it can take new members (E2's segmentId rules); else 400."""
    seg = repo.get(conn, ws, sid) if is_id(sid) else None
    if seg is None:
        raise BadRequest(f"Segment '{sid}' not found")
    if seg["type"] != "static":
        raise BadRequest(f"Segment '{sid}' is not a static segment")
    require_open(seg)
    return seg


def require_open(seg: dict[str, Any]) -> None:
    if seg["status"] not in ("active", "draft"):
        raise BadRequest(
            f"Segment '{seg['id']}' is not active or draft and cannot accept new members"
        )
