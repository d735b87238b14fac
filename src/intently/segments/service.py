"""Segments: static ones hold the accounts put into them, dynamic ones the accounts their
rule holds for (kept by `membership`). Only active segments are live: they show in the
accounts' `segments` field and record `segment.entered` / `segment.exited` events, so
every move into or out of active is an entry or exit for each member."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.accounts import repository as accounts_repo
from intently.accounts.present import items_json
from intently.custom_fields import repository as cf_repo
from intently.events.repository import record as record_events
from intently.kit.db import lock_workspace, read_clock, read_tx, tick, time_limit, write_tx
from intently.kit.errors import BadRequest, NotFound, ValidationFailed, validation_error
from intently.kit.ids import check_id, is_id, new_id
from intently.kit.pagination import Cursor, CursorCodec, page
from intently.kit.timefmt import format_us, now_us
from intently.rules import compile_rule, custom_field_types, parse_rule, size_problems
from intently.segments import membership
from intently.segments import repository as repo
from intently.segments.definition import require_open
from intently.segments.schemas import MembersChange, PreviewIn, SegmentIn, SegmentPatch


def public(seg: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        "segmentId": seg["id"],
        "name": seg["name"],
        "type": seg["type"],
        "status": seg["status"],
        "rules": seg["rules"],
        "memberCount": count,
    }


def _check_rules(conn: Connection, ws: int, seg_type: str, rules: Any) -> dict[str, Any] | None:
    """The rule tree as stored, or 400 naming every problem: only and always for dynamic."""
    if seg_type == "static":
        if rules is not None:
            raise validation_error(
                "rules", "rules", "isEmpty", "rules must be empty for a static segment"
            )
        return None
    if rules is None:
        raise validation_error(
            "rules", "rules", "isNotEmpty", "rules should not be empty for a dynamic segment"
        )
    parse_rule(rules, path="rules", custom_fields=custom_field_types(conn, ws))
    return dict(rules)


def create(engine: Engine, ws: int, body: SegmentIn) -> dict[str, Any]:
    """Create a segment; a dynamic one's membership is computed before this returns."""
    now = now_us()
    with read_tx(engine) as conn:
        rules = _check_rules(conn, ws, body.type, body.rules)
    seg: dict[str, Any] = {
        "workspace_id": ws,
        "id": new_id(),
        "name": body.name.strip(),
        "type": body.type,
        "status": body.status,
        "rules": rules,
        "created_at": now,
        "updated_at": now,
    }
    with write_tx(engine) as conn:
        repo.insert(conn, seg)
    if seg["type"] == "dynamic" and seg["status"] != "archived":
        membership.refresh(engine, ws, segment_ids=[seg["id"]])
    return get(engine, ws, seg["id"])


def get(engine: Engine, ws: int, sid: str) -> dict[str, Any]:
    check_id(sid, "segmentId")
    with read_tx(engine) as conn:
        seg = repo.get(conn, ws, sid)
        if seg is None:
            raise NotFound(f"Segment '{sid}' not found")
        return public(seg, repo.member_count(conn, ws, sid))


def patch(engine: Engine, ws: int, sid: str, body: SegmentPatch) -> dict[str, Any]:
    """Rename, change status or (dynamic) change the rule. Moving into or out of active
    enters or exits every member; a new rule or a return from the archive recomputes a
    dynamic segment's membership before this returns."""
    check_id(sid, "segmentId")
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        seg = repo.get(conn, ws, sid)
        if seg is None:
            raise NotFound(f"Segment '{sid}' not found")
        changes: dict[str, Any] = {}
        if "rules" in body.model_fields_set:
            rules = _check_rules(conn, ws, seg["type"], body.rules)
            if rules != seg["rules"]:
                changes["rules"] = rules
        if body.name is not None and body.name.strip() != seg["name"]:
            changes["name"] = body.name.strip()
        if body.status is not None and body.status != seg["status"]:
            changes["status"] = body.status
        recompute = False
        if changes:
            was_active = seg["status"] == "active"
            old_status = seg["status"]
            repo.update_segment(conn, ws, sid, changes | {"updated_at": now_us()})
            seg.update(changes)
            now_active = seg["status"] == "active"
            if was_active or now_active:
                clock = tick(conn, ws)
                # Members show active segments by name: a rename, or a move into or out of
                # active, changes what those accounts return.
                accounts_repo.touch_segment_members(conn, ws, sid, clock)
                if now_active and not was_active and "rules" in changes:
                    # Going live under a new rule: the members kept under the old one
                    # were never live; the refresh below enters the new rule's members.
                    repo.clear(conn, ws, sid)
                elif was_active != now_active:
                    members = repo.member_ids(conn, ws, sid)
                    ins, outs = (members, []) if now_active else ([], members)
                    record_events(conn, ws, repo.membership_events(seg, ins, outs), seq=clock)
            if seg["type"] == "dynamic":
                if seg["status"] == "archived":
                    repo.clear(conn, ws, sid)  # archived segments keep no live membership
                elif "rules" in changes or old_status == "archived":
                    recompute = True
    if recompute:
        membership.refresh(engine, ws, segment_ids=[sid])
    return get(engine, ws, sid)


PREVIEW_TOO_COSTLY = (
    "The preview took longer than {seconds:g} s and was stopped; narrow the rule (fewer "
    "signal, surge, deal or activity conditions, shorter windows) and try again"
)


def preview(
    engine: Engine, ws: int, body: PreviewIn, *, time_limit_s: float | None = None
) -> dict[str, Any]:
    """What a rule would match now, before it is saved: the count and the first accounts.
    With `time_limit_s`, a preview running longer is stopped (422, PREVIEW_TOO_COSTLY)."""
    with read_tx(engine) as conn:
        rule = parse_rule(body.rules, path="rules", custom_fields=custom_field_types(conn, ws))
        ctx = membership.rule_context(conn, ws)
        cond = compile_rule(rule, ws, ctx, conn.dialect.name)
        limit: AbstractContextManager[None] = (
            nullcontext()
            if time_limit_s is None
            else time_limit(conn, time_limit_s, PREVIEW_TOO_COSTLY.format(seconds=time_limit_s))
        )
        with limit:
            count, sample_ids = repo.matching(conn, ws, cond, body.sampleSize)
        rows, _ = (
            accounts_repo.page(
                conn,
                ws,
                after="",
                limit=len(sample_ids),
                ids=sample_ids,
                keys=cf_repo.active_keys(conn, ws),
            )
            if sample_ids
            else ([], False)
        )
    return {"count": count, "sample": items_json(rows)}


def refresh(engine: Engine, ws: int, sid: str | None = None) -> dict[str, Any]:
    """Recompute dynamic membership now (one segment, or every live one)."""
    if sid is not None:
        seg = get(engine, ws, sid)
        if seg["type"] != "dynamic":
            raise BadRequest(f"Segment '{sid}' is not a dynamic segment")
        if seg["status"] == "archived":
            raise BadRequest(f"Segment '{sid}' is archived and keeps no membership")
        with read_tx(engine) as conn:
            rule = membership.parse_stored(seg["rules"], custom_field_types(conn, ws))
        too_big = size_problems(rule, "rules")
        if too_big:  # saved before the limits on size: scoring skips it, and says why here
            raise ValidationFailed(too_big)
    done = membership.refresh(engine, ws, segment_ids=None if sid is None else [sid])
    return {"segments": [{"segmentId": k, **v.as_dict()} for k, v in done.items()]}


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


def require_static_open(conn: Connection, ws: int, sid: str) -> dict[str, Any]:
    """A static segment that can take members (active or draft), else 404/400."""
    seg = _static_segment(conn, ws, sid)
    require_open(seg)
    return seg


def _static_segment(conn: Connection, ws: int, sid: str) -> dict[str, Any]:
    check_id(sid, "segmentId")
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
        require_open(seg)
        found, missing = _resolve(conn, ws, body)
        added = repo.add_members(conn, ws, seg, found, clock)
    return {"added": added, "alreadyMembers": len(found) - added, "notFound": missing}


def remove_accounts(engine: Engine, ws: int, sid: str, body: MembersChange) -> dict[str, Any]:
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        seg = _static_segment(conn, ws, sid)
        found, missing = _resolve(conn, ws, body)
        members = repo.members_among(conn, ws, sid, found)
        gone = [aid for aid in found if aid in members]
        repo.remove(conn, ws, sid, gone)
        if seg["status"] == "active" and gone:
            clock = tick(conn, ws)
            accounts_repo.touch(conn, ws, gone, clock)
            record_events(conn, ws, repo.membership_events(seg, [], gone), seq=clock)
    return {"removed": len(gone), "notMembers": len(found) - len(gone), "notFound": missing}


def members_page(
    engine: Engine, codec: CursorCodec, ws: int, sid: str, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    check_id(sid, "segmentId")
    with read_tx(engine) as conn:
        if repo.get(conn, ws, sid) is None:
            raise NotFound(f"Segment '{sid}' not found")
        if cursor is not None:
            c = codec.decode(cursor, "segment-members:" + sid, ws)
            after, sync_us = c.after, c.sync_us
        else:
            after, sync_us = "", read_clock(conn, ws)
        rows, more = accounts_repo.page(
            conn, ws, after=after, limit=limit, segment_id=sid, keys=cf_repo.active_keys(conn, ws)
        )
    data = items_json(rows)
    next_cursor = (
        codec.encode(Cursor("segment-members:" + sid, ws, rows[-1][0], sync_us)) if more else None
    )
    return page(data, next_cursor, format_us(sync_us))


def all_segments(engine: Engine, ws: int) -> list[dict[str, Any]]:
    """Every segment of the workspace with its member count (for the CLI and dashboard)."""
    with read_tx(engine) as conn:
        return [public(seg, count) for seg, count in repo.all_with_counts(conn, ws)]
