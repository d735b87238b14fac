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

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from intently.accounts.service import check_aid
from intently.accounts.tables import accounts as a
from intently.events.service import Event
from intently.events.service import record as record_events
from intently.kit.db import json_param, param_marker, read_tx, tick, write_tx
from intently.kit.errors import NotFound
from intently.kit.ids import new_id
from intently.kit.timefmt import format_ms, now_us
from intently.rules import (
    Context,
    DealStageMap,
    SurgeParams,
    custom_field_types,
    load_facts,
    matching_ids,
    parse_rule,
)
from intently.rules import evaluate as memory_evaluate
from intently.signals.service import US_PER_DAY
from intently.stages.schemas import check_definition, default_definition
from intently.stages.tables import journey_days, stage_changes, stage_sets


def active_definition(conn: Connection, ws: int) -> tuple[int, dict[str, Any]]:
    """(version, definition); version 0 is the built-in default, never saved."""
    row = conn.execute(
        select(stage_sets.c.version, stage_sets.c.definition)
        .where(stage_sets.c.workspace_id == ws)
        .order_by(stage_sets.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, default_definition()
    return int(row[0]), dict(row[1])


def context(definition: dict[str, Any], as_of: int | None = None, **extra: Any) -> Context:
    """The rule context for this stage list: its deal-stage labels, evaluated at `as_of`."""
    deal_stages = definition["dealStages"]
    return Context(
        as_of=now_us() if as_of is None else as_of,
        deal_stages=DealStageMap(won=tuple(deal_stages["won"]), lost=tuple(deal_stages["lost"])),
        **extra,
    )


def evaluate(
    conn: Connection,
    ws: int,
    account_ids: Collection[str],
    definition: dict[str, Any],
    ctx: Context,
) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """account id -> (stage name, the rule that placed it; None for the fallback).

    SQLite answers best with one query per stage over the batch; PostgreSQL plans those
    correlated subqueries poorly (a 1,000,000-account run spent 380 s in them), so there
    the batch's facts are loaded in a few queries and the rules evaluated in memory. The
    two agree: tests/rules/test_equivalence.py.
    """
    stages = definition["stages"]
    rules = [(st["name"], st["rule"], parse_rule(st["rule"])) for st in stages[:-1]]
    fallback = stages[-1]["name"]
    placed: dict[str, tuple[str, dict[str, Any] | None]] = {}
    if conn.dialect.name == "postgresql":
        needs = parse_rule({"all": [doc for _, doc, _ in rules]}) if rules else None
        facts = load_facts(conn, ws, list(account_ids), ctx, needs=needs)
        for aid in account_ids:
            f = facts.get(aid)
            hit = next(
                ((name, doc) for name, doc, rule in rules if f and memory_evaluate(rule, f, ctx)),
                None,
            )
            placed[aid] = hit if hit is not None else (fallback, None)
        return placed
    remaining = set(account_ids)
    for name, doc, rule in rules:
        if not remaining:
            break
        hits = matching_ids(conn, ws, rule, ctx, account_ids=remaining)
        for aid in hits & remaining:
            placed[aid] = (name, doc)
        remaining -= hits
    for aid in remaining:
        placed[aid] = (fallback, None)
    return placed


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
        current = dict(
            conn.execute(
                select(a.c.id, a.c.rtp_journey_stage).where(
                    a.c.workspace_id == ws, a.c.id.in_(list(placed))
                )
            ).all()
        )
    changed = [aid for aid, (stage, _) in placed.items() if current.get(aid, "") != stage]
    if not changed:
        return []
    stamp = clock if clock is not None else tick(conn, ws)
    now = now_us()
    m = param_marker(conn)
    # Plain tuples to the driver: a full run writes every account of the workspace here.
    # rtp_last_account_date takes the clock value, as scoring writes it: changed_at ==
    # rtp_last_account_date tells an incremental run that scoring made the last change.
    conn.exec_driver_sql(
        f"UPDATE accounts SET rtp_journey_stage = {m}, rtp_last_account_date = {m}, "
        f"changed_at = {m} WHERE workspace_id = {m} AND id = {m}",
        [(placed[aid][0], stamp, stamp, ws, aid) for aid in changed],
    )
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
    conn.exec_driver_sql(
        "INSERT INTO stage_changes (workspace_id, id, account_id, changed_at, from_stage, "
        f"to_stage, rule, stage_set_version, cause) VALUES ({', '.join([m] * 9)})",
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
    day = now_us() // US_PER_DAY
    rows = conn.execute(
        select(a.c.id, a.c.rtp_account_score, a.c.rtp_journey_stage).where(
            a.c.workspace_id == ws, a.c.id.in_(account_ids)
        )
    ).all()
    m = param_marker(conn)
    conn.exec_driver_sql(
        "INSERT INTO journey_days (workspace_id, account_id, day, score, stage) "
        f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (workspace_id, account_id, day) "
        "DO UPDATE SET score = excluded.score, stage = excluded.stage",
        [(ws, r[0], day, float(r[1]), r[2]) for r in rows],
    )


def history_of(engine: Engine, ws: int, aid: str, days: int = 365) -> dict[str, Any]:
    """Daily score and stage (days the account changed) and every stage change."""
    check_aid(aid)
    jd = journey_days.c
    since = now_us() // US_PER_DAY - days
    with read_tx(engine) as conn:
        if (
            conn.execute(select(a.c.id).where(a.c.workspace_id == ws, a.c.id == aid)).first()
            is None
        ):
            raise NotFound(f"Account '{aid}' not found")
        rows = conn.execute(
            select(jd.day, jd.score, jd.stage)
            .where(jd.workspace_id == ws, jd.account_id == aid, jd.day >= since)
            .order_by(jd.day)
        ).all()
    return {
        "days": [
            {"date": format_day(int(r[0])), "score": float(r[1]), "stage": r[2]} for r in rows
        ],
        "stageChanges": stage_changes_of(engine, ws, aid),
    }


def format_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()


# ---- the API --------------------------------------------------------------------------------


def get_stages(engine: Engine, ws: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        version, definition = active_definition(conn, ws)
    return {"version": version, **definition}


def put_stages(engine: Engine, ws: int, doc: Any) -> dict[str, Any]:
    """Validate and save a new version; accounts move on the next scoring run."""
    with read_tx(engine) as conn:
        fields = custom_field_types(conn, ws)
    definition = check_definition(doc, custom_fields=fields)
    with write_tx(engine) as conn:
        version, _ = active_definition(conn, ws)
        conn.execute(
            insert(stage_sets),
            {
                "workspace_id": ws,
                "version": version + 1,
                "definition": definition,
                "created_at": now_us(),
            },
        )
    return {"version": version + 1, **definition}


def last_change(conn: Connection, ws: int, aid: str) -> dict[str, Any] | None:
    """The account's newest stage change (its rule is what placed it), or None."""
    sc = stage_changes.c
    r = (
        conn.execute(
            select(stage_changes)
            .where(sc.workspace_id == ws, sc.account_id == aid)
            .order_by(sc.changed_at.desc(), sc.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if r is None:
        return None
    return {"to": r["to_stage"], "rule": r["rule"], "changedAt": format_ms(r["changed_at"])}


def stage_changes_of(engine: Engine, ws: int, aid: str, limit: int = 1000) -> list[dict[str, Any]]:
    """An account's stage changes, newest first."""
    check_aid(aid)
    sc = stage_changes.c
    with read_tx(engine) as conn:
        exists = conn.execute(select(a.c.id).where(a.c.workspace_id == ws, a.c.id == aid)).first()
        if exists is None:
            raise NotFound(f"Account '{aid}' not found")
        rows = conn.execute(
            select(stage_changes)
            .where(sc.workspace_id == ws, sc.account_id == aid)
            .order_by(sc.changed_at.desc(), sc.id.desc())
            .limit(limit)
        ).mappings()
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
    from intently.stages import repository as stages_repo

    with read_tx(engine) as conn:
        version, definition = active_definition(conn, ws)
        counts = stages_repo.stage_counts(conn, ws)
        moves = stages_repo.stage_moves(conn, ws, since_us, recent_us)
    return version, definition, counts, moves
