"""Segments: static membership now; dynamic segments arrive with the rule engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.accounts import repository as accounts_repo
from intently.custom_fields import repository as cf_repo
from intently.kit.db import lock_workspace, read_clock, read_tx, tick, write_tx
from intently.kit.errors import BadRequest, NotFound, validation_error
from intently.kit.ids import is_id, new_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_us, now_us
from intently.segments import repository as repo
from intently.segments.schemas import MembersChange, SegmentIn, SegmentPatch


def _check_id(sid: str) -> None:
    if not is_id(sid):
        raise BadRequest("Invalid segmentId format")


def require_open_static(conn: Connection, ws: int, sid: str) -> dict[str, Any]:
    """The segment, if it can take new members (E2's segmentId rules); else 400."""
    seg = repo.get(conn, ws, sid) if is_id(sid) else None
    if seg is None:
        raise BadRequest(f"Segment '{sid}' not found")
    if seg["type"] != "static":
        raise BadRequest(f"Segment '{sid}' is not a static segment")
    _require_open(seg)
    return seg


def _require_open(seg: dict[str, Any]) -> None:
    if seg["status"] not in ("active", "draft"):
        raise BadRequest(
            f"Segment '{seg['id']}' is not active or draft and cannot accept new members"
        )


def add_members(conn: Connection, ws: int, seg: dict[str, Any], ids: list[str], clock: int) -> int:
    """Add accounts (rtp_aids) to a segment; returns how many were new members."""
    unique = list(dict.fromkeys(ids))
    new = [aid for aid in unique if aid not in repo.members_among(conn, ws, seg["id"], unique)]
    repo.add(conn, ws, seg["id"], new, now_us())
    if seg["status"] == "active":
        accounts_repo.touch(conn, ws, new, clock)
    return len(new)


def public(seg: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        "segmentId": seg["id"],
        "name": seg["name"],
        "type": seg["type"],
        "status": seg["status"],
        "rules": seg["rules"],
        "memberCount": count,
    }


def _refuse_dynamic() -> BadRequest:
    return BadRequest(
        "Dynamic segments are not available yet: this server keeps static segments only"
    )


def create(engine: Engine, ws: int, body: SegmentIn) -> dict[str, Any]:
    if body.type == "dynamic":
        raise _refuse_dynamic()
    if body.rules is not None:
        raise validation_error(
            "rules", "rules", "isEmpty", "rules must be empty for a static segment"
        )
    now = now_us()
    seg = {
        "workspace_id": ws,
        "id": new_id(),
        "name": body.name.strip(),
        "type": body.type,
        "status": body.status,
        "rules": None,
        "created_at": now,
        "updated_at": now,
    }
    with write_tx(engine) as conn:
        repo.insert(conn, seg)
    return public(seg, 0)


def get(engine: Engine, ws: int, sid: str) -> dict[str, Any]:
    _check_id(sid)
    with read_tx(engine) as conn:
        seg = repo.get(conn, ws, sid)
        if seg is None:
            raise NotFound(f"Segment '{sid}' not found")
        return public(seg, repo.member_count(conn, ws, sid))


def patch(engine: Engine, ws: int, sid: str, body: SegmentPatch) -> dict[str, Any]:
    _check_id(sid)
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        seg = repo.get(conn, ws, sid)
        if seg is None:
            raise NotFound(f"Segment '{sid}' not found")
        if body.rules is not None and seg["type"] == "static":
            raise validation_error(
                "rules", "rules", "isEmpty", "rules must be empty for a static segment"
            )
        changes: dict[str, Any] = {}
        if body.name is not None and body.name.strip() != seg["name"]:
            changes["name"] = body.name.strip()
        if body.status is not None and body.status != seg["status"]:
            changes["status"] = body.status
        if changes:
            repo.update_segment(conn, ws, sid, changes | {"updated_at": now_us()})
            # Members show active segments by name: a rename of an active segment, or a
            # move into or out of active, changes what those accounts return.
            was_active = seg["status"] == "active"
            seg.update(changes)
            if was_active or seg["status"] == "active":
                accounts_repo.touch_segment_members(conn, ws, sid, tick(conn, ws))
        return public(seg, repo.member_count(conn, ws, sid))


def list_segments(
    engine: Engine,
    codec: CursorCodec,
    ws: int,
    *,
    limit: int,
    cursor: str | None,
    types: list[str],
    statuses: list[str],
    with_type: bool,
) -> dict[str, Any]:
    with read_tx(engine) as conn:
        if cursor is not None:
            c = codec.decode(cursor, "segments", ws)
            after, sync_us = c.after, c.sync_us
            types, statuses = c.filters["types"], c.filters["statuses"]
            with_type = bool(c.filters.get("withType"))
        else:
            after, sync_us = "", read_clock(conn, ws)
        rows = repo.page(conn, ws, after=after, limit=limit, types=types, statuses=statuses)
    more = len(rows) > limit
    rows = rows[:limit]
    data = []
    for r in rows:
        entry = {"segmentId": r.id, "name": r.name, "status": r.status}
        if with_type:
            entry["type"] = r.type
        data.append(entry)
    next_cursor = None
    if more:
        filters = {"types": types, "statuses": statuses, "withType": with_type}
        next_cursor = codec.encode(Cursor("segments", ws, rows[-1].id, sync_us, filters))
    return page(data, next_cursor, format_us(sync_us))


def _resolve(conn: Connection, ws: int, body: MembersChange) -> tuple[list[str], list[str]]:
    """(rtp_aids found, identifiers not found as sent) for a members request."""
    aids = body.rtp_aids or []
    domains = body.domains or []
    if not aids and not domains:
        raise validation_error(
            "rtp_aids",
            "rtp_aids",
            "arrayMinSize",
            "rtp_aids or domains must contain at least 1 elements",
        )
    if len(aids) + len(domains) > 1000:
        raise validation_error(
            "rtp_aids",
            "rtp_aids",
            "arrayMaxSize",
            "rtp_aids and domains must contain no more than 1000 elements together",
        )
    for i, aid in enumerate(aids):
        if not is_id(aid):
            raise validation_error(
                "rtp_aids",
                f"rtp_aids.{i}",
                "isRtpAid",
                "each value in rtp_aids must be a 24-character hex id",
            )
    known = accounts_repo.existing_ids(conn, ws, aids)
    by_domain = accounts_repo.ids_by_domains(conn, ws, domains)
    found = [a for a in aids if a in known] + [by_domain[d] for d in domains if d in by_domain]
    missing = [a for a in aids if a not in known] + [d for d in domains if d not in by_domain]
    return list(dict.fromkeys(found)), list(dict.fromkeys(missing))


def _static_segment(conn: Connection, ws: int, sid: str) -> dict[str, Any]:
    _check_id(sid)
    seg = repo.get(conn, ws, sid)
    if seg is None:
        raise NotFound(f"Segment '{sid}' not found")
    if seg["type"] != "static":
        raise BadRequest(f"Segment '{sid}' is not a static segment")
    return seg


def add_accounts(engine: Engine, ws: int, sid: str, body: MembersChange) -> dict[str, Any]:
    with write_tx(engine) as conn:
        clock = tick(conn, ws)  # holds the workspace until commit, like lock_workspace
        seg = _static_segment(conn, ws, sid)
        _require_open(seg)
        found, missing = _resolve(conn, ws, body)
        added = add_members(conn, ws, seg, found, clock)
    return {"added": added, "alreadyMembers": len(found) - added, "notFound": missing}


def remove_accounts(engine: Engine, ws: int, sid: str, body: MembersChange) -> dict[str, Any]:
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        seg = _static_segment(conn, ws, sid)
        found, missing = _resolve(conn, ws, body)
        members = repo.members_among(conn, ws, sid, found)
        gone = [aid for aid in found if aid in members]
        repo.remove(conn, ws, sid, gone)
        if seg["status"] == "active":
            accounts_repo.touch(conn, ws, gone, tick(conn, ws))
    return {"removed": len(gone), "notMembers": len(found) - len(gone), "notFound": missing}


def members_page(
    engine: Engine, codec: CursorCodec, ws: int, sid: str, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    from intently.accounts import service as accounts_service

    _check_id(sid)
    with read_tx(engine) as conn:
        if repo.get(conn, ws, sid) is None:
            raise NotFound(f"Segment '{sid}' not found")
        if cursor is not None:
            c = codec.decode(cursor, "segment-members:" + sid, ws)
            after, sync_us = c.after, c.sync_us
        else:
            after, sync_us = "", read_clock(conn, ws)
        rows = accounts_repo.page(
            conn, ws, after=after, limit=limit, segment_id=sid, keys=cf_repo.active_keys(conn, ws)
        )
    more = len(rows) > limit
    rows = rows[:limit]
    data = accounts_service.items_json(rows)
    next_cursor = (
        codec.encode(Cursor("segment-members:" + sid, ws, rows[-1][0], sync_us)) if more else None
    )
    return page(data, next_cursor, format_us(sync_us))
