"""Placing accounts on the journey: the workspace's stage list, evaluated set-wise.

Evaluation goes from the stage nearest to purchase down, one SQL query per stage over
the accounts still unplaced (the rule language compiles each rule to one query), so a
batch of thousands of accounts costs a handful of queries. Every change of stage is
recorded with its time, the old and new stage and the rule that fired.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.events.repository import record as record_events
from intently.events.schemas import Event
from intently.kit.db import json_param, lock_workspace, read_tx, tick, write_tx
from intently.kit.errors import NotFound
from intently.kit.ids import check_aid, new_id
from intently.kit.timefmt import US_PER_DAY, US_PER_SECOND, format_ms, now_us
from intently.rules import SurgeParams, custom_field_types
from intently.stages import repository as repo
from intently.stages.definition import active_definition, context, evaluate, oversize_rules
from intently.stages.schemas import check_definition


def apply_stages(
    conn: Connection,
    ws: int,
    account_ids: Collection[str],
    *,
    cause: str,
    as_of: int | None = None,
    clock: int | None = None,
    surge: SurgeParams | None = None,
    stage_set: tuple[int, dict[str, Any]] | None = None,
    current: Mapping[str, str | None] | None = None,
) -> list[str]:
    """Evaluate and store the stages of these accounts in the caller's write transaction;
    only accounts whose stage changed are written. Returns their ids.

    A scoring run passes the stage list it read once (`stage_set`: version, definition)
    and the stages it already read with the scores (`current`), so a batch reads neither
    again."""
    if not account_ids:
        return []
    version, definition = stage_set if stage_set is not None else active_definition(conn, ws)
    ctx = context(definition, as_of, **({"surge": surge} if surge is not None else {}))
    placed = evaluate(conn, ws, account_ids, definition, ctx)
    if current is None:
        current = repo.current_stages(conn, ws, list(placed))
    changed = [aid for aid, (stage, _) in placed.items() if current.get(aid, "") != stage]
    if not changed:
        return []
    stamp = clock if clock is not None else tick(conn, ws)
    now = now_us()
    repo.write_stages(conn, ws, [(aid, placed[aid][0]) for aid in changed], stamp)
    rules: dict[str, str | None] = {
        st["name"]: json_param(st["rule"]) if "rule" in st else None for st in definition["stages"]
    }
    # The rule that fired is in stage_changes (and the score explanation); the event says
    # which stage list and why. Documents are shared, so each is encoded once.
    about = {"stageSetVersion": version, "cause": cause}
    stage_doc: dict[str | None, dict[str, Any]] = {}

    def doc(stage: str | None) -> dict[str, Any]:
        return stage_doc.setdefault(stage, {"stage": stage})

    record_events(
        conn,
        ws,
        [
            Event("stage.changed", aid, doc(current.get(aid)), doc(placed[aid][0]), about)
            for aid in changed
        ],
        seq=stamp,
    )
    repo.insert_changes(
        conn,
        [
            (
                ws,
                new_id(),
                aid,
                now,
                current.get(aid),
                placed[aid][0],
                rules.get(placed[aid][0]),
                version,
                cause,
            )
            for aid in changed
        ],
    )
    return changed


def record_days(conn: Connection, ws: int, account_ids: list[str]) -> None:
    """Note today's score and stage of these accounts (one row per account and day)."""
    if not account_ids:
        return
    repo.note_days(conn, ws, account_ids, now_us() // US_PER_DAY)


def history_of(engine: Engine, ws: int, aid: str, days: int = 365) -> dict[str, Any]:
    """Daily score and stage (days the account changed) and every stage change."""
    check_aid(aid)
    since = now_us() // US_PER_DAY - days
    with read_tx(engine) as conn:
        if not repo.account_exists(conn, ws, aid):
            raise NotFound(f"Account '{aid}' not found")
        rows = repo.days_of(conn, ws, aid, since)
    return {
        "days": [
            {"date": format_day(int(r[0])), "score": float(r[1]), "stage": r[2]} for r in rows
        ],
        "stageChanges": stage_changes_of(engine, ws, aid),
    }


def format_day(day: int) -> str:
    return datetime.fromtimestamp(day * US_PER_DAY / US_PER_SECOND, tz=UTC).date().isoformat()


# ---- the API --------------------------------------------------------------------------------


def get_stages(engine: Engine, ws: int) -> dict[str, Any]:
    """The active stage list; `problems` names any stage rule saved before the limits on a
    rule's size and beyond them (scoring skips those stages)."""
    with read_tx(engine) as conn:
        version, definition = active_definition(conn, ws)
    problems = oversize_rules(definition)
    return {"version": version, **definition, **({"problems": problems} if problems else {})}


def put_stages(engine: Engine, ws: int, doc: Any) -> dict[str, Any]:
    """Validate and save a new version; accounts move on the next scoring run."""
    with read_tx(engine) as conn:
        fields = custom_field_types(conn, ws)
    definition = check_definition(doc, custom_fields=fields)
    with write_tx(engine) as conn:
        # Concurrent saves would read the same version and the later insert would fail on
        # the key (PostgreSQL): they take turns, and each makes a version of its own.
        lock_workspace(conn, ws)
        version, _ = active_definition(conn, ws)
        repo.insert_stage_set(conn, ws, version + 1, definition, now_us())
    return {"version": version + 1, **definition}


def stage_changes_of(engine: Engine, ws: int, aid: str, limit: int = 1000) -> list[dict[str, Any]]:
    """An account's stage changes, newest first."""
    check_aid(aid)
    with read_tx(engine) as conn:
        if not repo.account_exists(conn, ws, aid):
            raise NotFound(f"Account '{aid}' not found")
        rows = repo.changes_of(conn, ws, aid, limit)
        return [
            {
                "changedAt": format_ms(r["changed_at"]),
                "from": r["from_stage"],
                "to": r["to_stage"],
                "rule": r["rule"],
                "stageSetVersion": r["stage_set_version"],
                "cause": r["cause"],
            }
            for r in rows
        ]


def journey_summary(
    engine: Engine, ws: int, since_us: int, recent_us: int
) -> tuple[int, dict[str, Any], dict[str | None, int], list[tuple[str | None, str, int, int]]]:
    """(stage list version, stage list, accounts per stage now, stage moves since
    `since_us` with those since `recent_us`), read in one transaction: the journey page."""
    with read_tx(engine) as conn:
        version, definition = active_definition(conn, ws)
        counts = repo.stage_counts(conn, ws)
        moves = repo.stage_moves(conn, ws, since_us, recent_us)
    return version, definition, counts, moves
