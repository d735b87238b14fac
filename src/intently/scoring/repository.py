"""Scoring's queries: models, runs, claims, the per-batch aggregate and the score writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from intently.accounts.tables import accounts
from intently.catalog import ALL_SCORES, FIT_SCORE, GRADE
from intently.deals.tables import deal_accounts, deals
from intently.kit.db import fetch_all, in_values, json_value, lock_workspace, param_marker
from intently.scoring.tables import (
    model_trainings,
    scoring_claims,
    scoring_models,
    scoring_parts,
    scoring_runs,
)

FACTORS = "scoring_factors"

# ---- models ------------------------------------------------------------------------------


def latest_model(conn: Connection, ws: int) -> tuple[int, dict[str, Any], int] | None:
    """(version, model, created_at) of the active model (the one activated last), or None."""
    m = scoring_models.c
    row = conn.execute(
        select(m.version, m.model, m.created_at)
        .where(m.workspace_id == ws, m.activated_at.isnot(None))
        .order_by(m.activated_at.desc(), m.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return int(row[0]), json_value(row[1]), int(row[2])


def insert_model(
    conn: Connection, ws: int, model: dict[str, Any], now: int, *, activate: bool = True
) -> int:
    """Store `model` as the next version (serialised with the workspace's other writers),
    active at once unless told otherwise."""
    lock_workspace(conn, ws)
    current = conn.execute(
        select(func.max(scoring_models.c.version)).where(scoring_models.c.workspace_id == ws)
    ).scalar()
    version = int(current or 0) + 1
    # activated_at strictly after every earlier activation, so "activated last" is one row
    # even when two activations fall in the same microsecond.
    at = _next_activation(conn, ws, now) if activate else None
    conn.execute(
        insert(scoring_models).values(
            workspace_id=ws, version=version, model=model, created_at=now, activated_at=at
        )
    )
    return version


def _next_activation(conn: Connection, ws: int, now: int) -> int:
    last = conn.execute(
        select(func.max(scoring_models.c.activated_at)).where(scoring_models.c.workspace_id == ws)
    ).scalar()
    return max(now, int(last or 0) + 1)


def activate_model(conn: Connection, ws: int, version: int, now: int) -> bool:
    """Make `version` the active model; False when there is no such version."""
    lock_workspace(conn, ws)
    at = _next_activation(conn, ws, now)
    n = conn.execute(
        update(scoring_models)
        .where(scoring_models.c.workspace_id == ws, scoring_models.c.version == version)
        .values(activated_at=at)
    ).rowcount
    return bool(n == 1)


def list_models(conn: Connection, ws: int) -> list[dict[str, Any]]:
    """Every stored version, newest first: (version, model, created_at, activated_at)."""
    m = scoring_models.c
    rows = conn.execute(
        select(m.version, m.model, m.created_at, m.activated_at)
        .where(m.workspace_id == ws)
        .order_by(m.version.desc())
    ).all()
    return [
        {"version": int(r[0]), "model": json_value(r[1]), "created_at": int(r[2]),
         "activated_at": r[3]}
        for r in rows
    ]  # fmt: skip


# ---- runs and claims ---------------------------------------------------------------------


def insert_run(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(scoring_runs).values(**row))


def finish_run(conn: Connection, ws: int, run_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(scoring_runs)
        .where(scoring_runs.c.workspace_id == ws, scoring_runs.c.id == run_id)
        .values(**values)
    )


def last_watermark(conn: Connection, ws: int) -> int | None:
    """The watermark of the newest finished run: what incremental runs start from."""
    return conn.execute(
        select(func.max(scoring_runs.c.watermark)).where(
            scoring_runs.c.workspace_id == ws,
            scoring_runs.c.status == "done",
            scoring_runs.c.kind.in_(("full", "incremental")),
        )
    ).scalar()


def recent_runs(conn: Connection, ws: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(scoring_runs)
        .where(scoring_runs.c.workspace_id == ws)
        .order_by(scoring_runs.c.started_at.desc(), scoring_runs.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def claim(conn: Connection, ws: int, kind: str, now: int, hold_us: int) -> bool:
    """Take the workspace's `kind` run until now + hold_us unless someone holds it now.

    A conditional UPDATE: of two workers claiming at once, the second matches no row.
    """
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO scoring_claims (workspace_id, kind, held_until) VALUES ({m}, {m}, 0) "
        "ON CONFLICT (workspace_id, kind) DO NOTHING",
        (ws, kind),
    )
    got = conn.execute(
        update(scoring_claims)
        .where(
            scoring_claims.c.workspace_id == ws,
            scoring_claims.c.kind == kind,
            scoring_claims.c.held_until <= now,
        )
        .values(held_until=now + hold_us, last_started_at=now)
    ).rowcount
    return bool(got == 1)


def release(conn: Connection, ws: int, kind: str, until: int) -> None:
    """Let the next claim succeed from `until` on."""
    conn.execute(
        update(scoring_claims)
        .where(scoring_claims.c.workspace_id == ws, scoring_claims.c.kind == kind)
        .values(held_until=until)
    )


def workspace_ids(conn: Connection) -> list[int]:
    return [int(r[0]) for r in conn.execute(text("SELECT id FROM workspaces ORDER BY id"))]


# ---- the factor table and the aggregate ---------------------------------------------------


def load_factors(conn: Connection, rows: Sequence[tuple[str, str, int, float, int, float]]) -> None:
    """(source, type, day, increment x decay factor, 1 if by value, cap) into a temp table.

    A temporary table lives with this connection only, so concurrent runs do not see
    each other's factors; the key lets the aggregate look a rollup row's factor up.
    """
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FACTORS}")
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {FACTORS} (source VARCHAR(32) NOT NULL, "
        "type VARCHAR(48) NOT NULL, day INTEGER NOT NULL, w DOUBLE PRECISION NOT NULL, "
        "uv INTEGER NOT NULL, cap DOUBLE PRECISION NOT NULL, PRIMARY KEY (source, type, day))"
    )
    m = param_marker(conn)
    if rows:
        conn.exec_driver_sql(
            f"INSERT INTO {FACTORS} (source, type, day, w, uv, cap) "
            f"VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
            list(rows),
        )
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(f"ANALYZE {FACTORS}")


def drop_factors(conn: Connection) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FACTORS}")


def batch_ids(
    conn: Connection, ws: int, after: str, limit: int, upto: str | None = None
) -> list[str]:
    """The next `limit` account ids after `after` (and at most `upto`), in id order."""
    m = param_marker(conn)
    below, params = (
        ("", (ws, after, limit)) if upto is None else (f"AND id <= {m} ", (ws, after, upto, limit))
    )
    return [
        str(r[0])
        for r in fetch_all(
            conn,
            f"SELECT id FROM accounts WHERE workspace_id = {m} AND id > {m} {below}"
            f"ORDER BY id LIMIT {m}",
            params,
        )
    ]


def account_filter(
    conn: Connection, ids: Sequence[str], ranged: bool
) -> tuple[str, tuple[Any, ...]]:
    """The batch as an id range (a keyset batch is every account in it) or an id list."""
    if ranged:
        m = param_marker(conn)
        return f"a.id >= {m} AND a.id <= {m}", (ids[0], ids[-1])
    return in_values(conn, "a.id", list(ids))


def source_points(
    conn: Connection, ws: int, ids: Sequence[str], *, ranged: bool
) -> list[tuple[str, str, float]]:
    """(account id, source, sum of its types' capped, decayed points) for the batch.

    One query: the rollups of the batch's domains joined with the factor table (which
    holds only the days still worth points), summed per type and capped, then summed per
    source. The per-type cap is the one non-linear step, so it has to happen here.
    """
    if not ids:
        return []
    where, params = account_filter(conn, ids, ranged)
    m = param_marker(conn)
    units = "(CASE WHEN f.uv = 1 THEN d.value_sum ELSE d.count END) * f.w"
    if conn.dialect.name == "sqlite":
        # CROSS JOIN fixes SQLite's join order: without statistics it may start from the
        # rollups for an id list and read all of them.
        sql = (
            "SELECT t.aid, t.source, SUM(t.pts) FROM ("
            f"SELECT a.id AS aid, d.source AS source, MIN(MAX(f.cap), SUM({units})) AS pts "
            f"FROM accounts a CROSS JOIN signal_daily d CROSS JOIN {FACTORS} f "
            f"WHERE a.workspace_id = {m} AND {where} "
            "AND d.workspace_id = a.workspace_id AND d.domain = a.domain "
            "AND f.source = d.source AND f.type = d.type AND f.day = d.day "
            "GROUP BY a.id, d.source, d.type) t "
            "GROUP BY t.aid, t.source"
        )
    else:
        # LATERAL: PostgreSQL otherwise hash-joins the whole rollup table with the factors
        # for every batch. JIT compilation cost more than the query itself (~0.5 s each).
        conn.exec_driver_sql("SET LOCAL jit = off")
        sql = (
            "SELECT a.id, x.source, SUM(x.pts) FROM accounts a CROSS JOIN LATERAL ("
            f"SELECT d.source AS source, LEAST(MAX(f.cap), SUM({units})) AS pts "
            f"FROM signal_daily d JOIN {FACTORS} f "
            "ON f.source = d.source AND f.type = d.type AND f.day = d.day "
            "WHERE d.workspace_id = a.workspace_id AND d.domain = a.domain "
            "GROUP BY d.source, d.type) x "
            f"WHERE a.workspace_id = {m} AND {where} "
            "GROUP BY a.id, x.source"
        )
    return [(str(r[0]), str(r[1]), float(r[2] or 0.0)) for r in fetch_all(conn, sql, (ws, *params))]


def stored_scores(
    conn: Connection, ws: int, ids: Sequence[str], *, ranged: bool, extra: Sequence[str] = ()
) -> dict[str, tuple[Any, ...]]:
    """{id: (the five scores..., stage, score_model_version, *extra)} as stored now (extra:
    more accounts columns, named by the catalog or the rule language, never by a caller)."""
    if not ids:
        return {}
    where, params = account_filter(conn, ids, ranged)
    m = param_marker(conn)
    names = (*ALL_SCORES, "rtp_journey_stage", "score_model_version", *extra)
    cols = ", ".join(f"a.{c}" for c in names)
    sql = f"SELECT a.id, {cols} FROM accounts a WHERE a.workspace_id = {m} AND {where}"
    return {str(r[0]): tuple(r[1:]) for r in fetch_all(conn, sql, (ws, *params))}


def write_scores(
    conn: Connection,
    ws: int,
    rows: Sequence[tuple[Any, ...]],
    *,
    with_stage: bool,
    clock: int,
    version: int,
    with_fit: bool = False,
) -> None:
    """Rows of (five scores..., [fit score, grade,] [stage,] id): the account changed;
    stamp it.

    rtp_last_account_date takes the clock's value (micros, now or just after): an account
    whose changed_at equals it was last changed by scoring, which incremental runs skip.
    """
    if not rows:
        return
    fit = [FIT_SCORE, GRADE] if with_fit else []
    cols = [*ALL_SCORES, *fit, *(["rtp_journey_stage"] if with_stage else [])]
    tail = "score_model_version = {m}, rtp_last_account_date = {m}, changed_at = {m}"
    if conn.dialect.name != "sqlite":
        # One statement over arrays: a round trip per row was half of a PostgreSQL run.
        kinds = ["float8"] * len(ALL_SCORES) + ["float8", "text"][: len(fit)]
        kinds += ["text"] if with_stage else []
        arrays = ", ".join(f"%s::{k}[]" for k in ["text", *kinds])
        names = ", ".join(["id", *(f"v{i}" for i in range(len(cols)))])
        sets = ", ".join(f"{c} = v.v{i}" for i, c in enumerate(cols))
        sql = (
            f"UPDATE accounts a SET {sets}, {tail.format(m='%s')} "
            f"FROM unnest({arrays}) AS v({names}) WHERE a.workspace_id = %s AND a.id = v.id"
        )
        columns = [list(c) for c in zip(*rows, strict=True)]
        conn.exec_driver_sql(sql, (version, clock, clock, columns[-1], *columns[:-1], ws))
        return
    m = param_marker(conn)
    sets = ", ".join(f"{c} = {m}" for c in cols)
    sql = f"UPDATE accounts SET {sets}, {tail.format(m=m)} WHERE workspace_id = {m} AND id = {m}"
    conn.exec_driver_sql(sql, [(*r[:-1], version, clock, clock, ws, r[-1]) for r in rows])


def write_versions(conn: Connection, ws: int, ids: Sequence[str], version: int) -> None:
    """Only the model version moved (scores equal): not a change the API shows, no stamp."""
    if not ids:
        return
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(
            "UPDATE accounts SET score_model_version = %s WHERE workspace_id = %s AND id = ANY(%s)",
            (version, ws, list(ids)),
        )
        return
    conn.exec_driver_sql(
        "UPDATE accounts SET score_model_version = ? WHERE workspace_id = ? AND id = ?",
        [(version, ws, i) for i in ids],
    )


# ---- incremental ---------------------------------------------------------------------------


def touched_since(conn: Connection, ws: int, since: int) -> list[str]:
    """Accounts with signals received, deals or activities written, or themselves changed
    by something other than scoring (created, domain or fields changed) after `since`."""
    m = param_marker(conn)
    sql = (
        "SELECT a.id FROM accounts a JOIN (SELECT DISTINCT domain FROM signals "
        f"WHERE workspace_id = {m} AND received_at > {m}) s ON s.domain = a.domain "
        f"WHERE a.workspace_id = {m} "
        f"UNION SELECT a.id FROM accounts a WHERE a.workspace_id = {m} AND a.changed_at > {m} "
        "AND (a.rtp_last_account_date IS NULL OR a.changed_at <> a.rtp_last_account_date) "
        "UNION SELECT a.id FROM deal_accounts da "
        "JOIN accounts a ON a.workspace_id = da.workspace_id "
        "AND (a.external_id = da.external_id OR a.domain = da.domain) "
        f"WHERE da.workspace_id = {m} AND da.deal_id IN (SELECT d.id FROM deals d "
        f"WHERE d.workspace_id = {m} AND d.updated_at > {m}) "
        "UNION SELECT a.id FROM activities x "
        "JOIN accounts a ON a.workspace_id = x.workspace_id AND a.domain = x.domain "
        f"WHERE x.workspace_id = {m} AND x.created_at > {m}"
    )
    rows = fetch_all(conn, sql, (ws, since, ws, ws, since, ws, ws, since, ws, since))
    return sorted(str(r[0]) for r in rows)


def count_accounts(conn: Connection, ws: int) -> int:
    m = param_marker(conn)
    return int(
        fetch_all(conn, f"SELECT count(*) FROM accounts WHERE workspace_id = {m}", (ws,))[0][0]
    )


# ---- explanation -----------------------------------------------------------------------------


def account_row(conn: Connection, ws: int, aid: str) -> dict[str, Any] | None:
    m = param_marker(conn)
    cols = (
        "id", "domain", *ALL_SCORES, "rtp_journey_stage", "score_model_version",
        "rtp_last_account_date",
    )  # fmt: skip
    rows = fetch_all(
        conn,
        f"SELECT {', '.join(cols)} FROM accounts WHERE workspace_id = {m} AND id = {m}",
        (ws, aid),
    )
    return dict(zip(cols, rows[0], strict=True)) if rows else None


def daily_rows(
    conn: Connection, ws: int, domain: str, first_day: int, last_day: int
) -> list[tuple[str, str, int, int, float]]:
    """(source, type, day, count, value_sum) of one domain's rollups in the day range."""
    m = param_marker(conn)
    # `+day`: read the domain's rows off the primary key. Left to itself, SQLite's planner
    # took the (workspace_id, day) index and walked every domain's rows in the window
    # (1.4 s for one account of a 20,000-account workspace; the PK takes under 1 ms).
    sql = (
        "SELECT source, type, day, SUM(count), SUM(value_sum) FROM signal_daily "
        f"WHERE workspace_id = {m} AND domain = {m} AND +day >= {m} AND +day <= {m} "
        "GROUP BY source, type, day"
    )
    return [
        (str(r[0]), str(r[1]), int(r[2]), int(r[3]), float(r[4]))
        for r in fetch_all(conn, sql, (ws, domain, first_day, last_day))
    ]


def insert_history_days(conn: Connection, rows: Sequence[tuple[int, str, int, float, str]]) -> int:
    """(workspace_id, account_id, day, score, stage) rows for days that have none yet."""
    m = param_marker(conn)
    conn.exec_driver_sql(
        "INSERT INTO journey_days (workspace_id, account_id, day, score, stage) "
        f"VALUES ({m}, {m}, {m}, {m}, {m}) "
        "ON CONFLICT (workspace_id, account_id, day) DO NOTHING",
        list(rows),
    )
    return len(rows)


# ---- sharded runs ----------------------------------------------------------------------------

_OPEN = ("pending", "running")


def model_of_version(conn: Connection, ws: int, version: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(scoring_models.c.model).where(
            scoring_models.c.workspace_id == ws, scoring_models.c.version == version
        )
    ).first()
    return None if row is None else json_value(row[0])


def run_row(conn: Connection, ws: int, run_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The run's row; `lock` holds it until commit (PostgreSQL; SQLite writers are serial)."""
    q = select(scoring_runs).where(scoring_runs.c.workspace_id == ws, scoring_runs.c.id == run_id)
    row = conn.execute(q.with_for_update() if lock else q).mappings().first()
    return None if row is None else dict(row)


def shard_bounds(conn: Connection, ws: int, size: int) -> list[str]:
    """The ids that cut the workspace's accounts into runs of `size` (none: one part).

    Each boundary is one walk of `size` entries along the primary key from the previous
    one, so finding them all reads the index once."""
    m = param_marker(conn)
    # the part's last id and the one after it: without that one, the rest is the last part
    sql = (
        f"SELECT id FROM accounts WHERE workspace_id = {m} AND id > {m} "
        f"ORDER BY id LIMIT 2 OFFSET {m}"
    )
    bounds: list[str] = []
    after = ""
    while True:
        rows = fetch_all(conn, sql, (ws, after, size - 1))
        if len(rows) < 2:
            return bounds
        after = str(rows[0][0])
        bounds.append(after)


def insert_parts(conn: Connection, ws: int, run_id: str, bounds: Sequence[str], now: int) -> int:
    """Part 0 (finishing) and parts 1..K over the ranges the bounds cut; returns K."""
    edges: list[str | None] = [None, *bounds, None]
    rows = [
        {
            "workspace_id": ws, "run_id": run_id, "part": i + 1, "after_id": edges[i],
            "upto_id": edges[i + 1], "status": "pending", "attempt": 0, "held_until": 0,
            "queued_at": now, "scored": 0, "changed": 0, "segment_moves": 0,
        }
        for i in range(len(edges) - 1)
    ]  # fmt: skip
    rows.append({**rows[0], "part": 0, "after_id": None, "upto_id": None, "queued_at": None})
    conn.execute(insert(scoring_parts), rows)
    return len(edges) - 1


def _scoring_left(ws: int, run_id: str) -> Any:
    p2 = scoring_parts.alias("p2")
    return (
        select(p2.c.part)
        .where(
            p2.c.workspace_id == ws,
            p2.c.run_id == run_id,
            p2.c.part > 0,
            p2.c.status != "done",
        )
        .exists()
    )


def claim_part(
    conn: Connection, ws: int, run_id: str, part: int, now: int, hold_us: int, max_attempts: int
) -> dict[str, Any] | None:
    """Take the part until now + hold_us unless it is done, held or out of attempts; part 0
    only once every other part is done. Returns the row as taken."""
    p = scoring_parts.c
    cond = [
        p.workspace_id == ws, p.run_id == run_id, p.part == part, p.status.in_(_OPEN),
        p.held_until <= now, p.attempt < max_attempts,
    ]  # fmt: skip
    if part == 0:
        cond.append(~_scoring_left(ws, run_id))
    row = (
        conn.execute(
            update(scoring_parts)
            .where(*cond)
            .values(
                status="running", attempt=p.attempt + 1, held_until=now + hold_us, queued_at=None
            )
            .returning(*scoring_parts.c)
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def _held(ws: int, run_id: str, part: int, attempt: int) -> list[Any]:
    """The part as this attempt holds it (a later attempt or a cancel takes it away)."""
    p = scoring_parts.c
    return [
        p.workspace_id == ws, p.run_id == run_id, p.part == part,
        p.attempt == attempt, p.status == "running",
    ]  # fmt: skip


def checkpoint_part(
    conn: Connection,
    ws: int,
    run_id: str,
    part: int,
    attempt: int,
    *,
    done_upto: str,
    scored: int,
    changed: int,
    moves: int,
    held_until: int,
) -> bool:
    """Add a batch's progress if this attempt still holds the part."""
    p = scoring_parts.c
    n = conn.execute(
        update(scoring_parts)
        .where(*_held(ws, run_id, part, attempt))
        .values(
            done_upto=done_upto,
            scored=p.scored + scored,
            changed=p.changed + changed,
            segment_moves=p.segment_moves + moves,
            held_until=held_until,
        )
    ).rowcount
    return bool(n == 1)


def end_part(
    conn: Connection,
    ws: int,
    run_id: str,
    part: int,
    attempt: int,
    values: dict[str, Any],
) -> bool:
    """Set the part's status (and more) if this attempt still holds it."""
    n = conn.execute(
        update(scoring_parts).where(*_held(ws, run_id, part, attempt)).values(**values)
    ).rowcount
    return bool(n == 1)


def parts_left(conn: Connection, ws: int, run_id: str) -> int:
    """Scoring parts of the run not done yet."""
    p = scoring_parts.c
    return int(
        conn.execute(
            select(func.count()).where(
                p.workspace_id == ws, p.run_id == run_id, p.part > 0, p.status != "done"
            )
        ).scalar_one()
    )


def part_totals(conn: Connection, ws: int, run_id: str) -> tuple[int, int, int, int]:
    """(scored, changed, segment moves, scoring parts) over the run's parts."""
    p = scoring_parts.c
    row = conn.execute(
        select(
            func.coalesce(func.sum(p.scored), 0),
            func.coalesce(func.sum(p.changed), 0),
            func.coalesce(func.sum(p.segment_moves), 0),
            func.count(),
        ).where(p.workspace_id == ws, p.run_id == run_id, p.part > 0)
    ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def cancel_parts(conn: Connection, ws: int, run_ids: Sequence[str], now: int) -> None:
    if not run_ids:
        return
    p = scoring_parts.c
    conn.execute(
        update(scoring_parts)
        .where(p.workspace_id == ws, p.run_id.in_(list(run_ids)), p.status.in_(_OPEN))
        .values(status="cancelled", finished_at=now)
    )


def open_sharded_runs(conn: Connection, ws: int) -> list[str]:
    """Runs of the workspace with parts still to do."""
    p = scoring_parts.c
    return [
        str(r[0])
        for r in conn.execute(
            select(p.run_id).distinct().where(p.workspace_id == ws, p.status.in_(_OPEN))
        )
    ]


def lapsed_parts(
    conn: Connection, now: int, queued_before: int, workspaces: Sequence[int] | None
) -> list[dict[str, Any]]:
    """Open parts nobody holds and the queue has not had lately (their worker died, their
    retry is due, or part 0 is ready and its finisher never came)."""
    p = scoring_parts.c
    q = select(p.workspace_id, p.run_id, p.part, p.attempt, p.queued_at).where(
        p.status.in_(_OPEN),
        p.held_until <= now,
        (p.queued_at.is_(None)) | (p.queued_at <= queued_before),
    )
    if workspaces is not None:
        q = q.where(p.workspace_id.in_(list(workspaces)))
    rows = [dict(r) for r in conn.execute(q.order_by(p.workspace_id, p.run_id, p.part)).mappings()]
    # part 0 only once the run's scoring parts are all done
    return [
        r for r in rows if r["part"] > 0 or not parts_left(conn, r["workspace_id"], r["run_id"])
    ]


def mark_queued(
    conn: Connection, ws: int, run_id: str, part: int, was: int | None, now: int
) -> bool:
    """Note that the part went to the queue, unless someone else just sent it."""
    p = scoring_parts.c
    same = p.queued_at.is_(None) if was is None else p.queued_at == was
    n = conn.execute(
        update(scoring_parts)
        .where(p.workspace_id == ws, p.run_id == run_id, p.part == part, p.status.in_(_OPEN), same)
        .values(queued_at=now)
    ).rowcount
    return bool(n == 1)


def prune_parts(conn: Connection, ws: int, keep_run_id: str) -> None:
    """Forget the parts of the workspace's older, ended runs (the newest run's stay)."""
    p = scoring_parts.c
    conn.execute(
        scoring_parts.delete().where(
            p.workspace_id == ws, p.run_id != keep_run_id, p.status.not_in(_OPEN)
        )
    )


def extend_claim(conn: Connection, ws: int, kind: str, until: int) -> None:
    """Hold the workspace's `kind` claim at least until `until`."""
    c = scoring_claims.c
    conn.execute(
        update(scoring_claims)
        .where(c.workspace_id == ws, c.kind == kind, c.held_until < until)
        .values(held_until=until)
    )


def run_figures(
    conn: Connection,
) -> tuple[list[tuple[str, str, int]], dict[str, tuple[int, int | None] | None]]:
    """For /metrics: runs per (kind, status), and (started, finished) of the newest finished
    run of each kind."""
    runs = scoring_runs
    rows = conn.execute(
        select(runs.c.kind, runs.c.status, func.count()).group_by(runs.c.kind, runs.c.status)
    ).all()
    last: dict[str, tuple[int, int | None] | None] = {}
    for kind in sorted({r[0] for r in rows if r[1] == "done"}):
        row = conn.execute(
            select(runs.c.started_at, runs.c.finished_at)
            .where(runs.c.kind == kind, runs.c.status == "done")
            .order_by(runs.c.finished_at.desc())
            .limit(1)
        ).first()
        last[kind] = None if row is None else (int(row[0]), row[1])
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows], last


# ---- training ------------------------------------------------------------------------------


def deal_links(conn: Connection, ws: int) -> list[tuple[str, str, int, str | None, int]]:
    """(account id, deal id, opened, stage label, closed or last updated) of every deal
    linked to an account of the workspace. Opened is the deal's startDate, else when it was
    first pushed (the backtest's definition); linked as everywhere (rules/facts.py): by an
    association's externalId first, by its domain when that externalId names no account."""
    a, da, d = accounts, deal_accounts, deals
    other = aliased(a)
    ext_taken = (
        select(other.c.id)
        .where(other.c.workspace_id == ws, other.c.external_id == da.c.external_id)
        .exists()
    )
    links = (
        and_(a.c.external_id.isnot(None), da.c.external_id == a.c.external_id),
        and_(da.c.domain == a.c.domain, or_(da.c.external_id.is_(None), ~ext_taken)),
    )
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str, int, str | None, int]] = []
    for link in links:
        q = (
            select(
                a.c.id,
                d.c.id,
                func.coalesce(d.c.start_date, d.c.created_at),
                d.c.stage_label,
                func.coalesce(d.c.closed_date, d.c.updated_at),
            )
            .select_from(a)
            .join(da, and_(da.c.workspace_id == a.c.workspace_id, link))
            .join(d, and_(d.c.workspace_id == da.c.workspace_id, d.c.id == da.c.deal_id))
            .where(a.c.workspace_id == ws, da.c.workspace_id == ws)
        )
        for r in conn.execute(q):
            key = (str(r[0]), str(r[1]))
            if key in seen:
                continue
            seen.add(key)
            out.append((key[0], key[1], int(r[2]), r[3], int(r[4])))
    return out


def profile_counts(conn: Connection, ws: int) -> list[tuple[str | None, str | None, int]]:
    """(industry, country, accounts) over the workspace's accounts."""
    m = param_marker(conn)
    return [
        (r[0], r[1], int(r[2]))
        for r in fetch_all(
            conn,
            "SELECT industry, country, count(*) FROM accounts "
            f"WHERE workspace_id = {m} GROUP BY industry, country",
            (ws,),
        )
    ]


def first_signal_day(conn: Connection, ws: int) -> int | None:
    m = param_marker(conn)
    r = fetch_all(conn, f"SELECT min(day) FROM signal_daily WHERE workspace_id = {m}", (ws,))
    return int(r[0][0]) if r and r[0][0] is not None else None


def insert_training(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(model_trainings).values(**row))


def update_training(conn: Connection, ws: int, tid: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(model_trainings)
        .where(model_trainings.c.workspace_id == ws, model_trainings.c.id == tid)
        .values(**values)
    )


def trainings(
    conn: Connection, ws: int, limit: int, tid: str | None = None
) -> list[dict[str, Any]]:
    t = model_trainings.c
    q = select(model_trainings).where(t.workspace_id == ws)
    if tid is not None:
        q = q.where(t.id == tid)
    rows = conn.execute(q.order_by(t.started_at.desc(), t.id.desc()).limit(limit)).mappings()
    return [{**dict(r), "report": json_value(r["report"]) if r["report"] is not None else None}
            for r in rows]  # fmt: skip
