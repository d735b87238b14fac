"""Scoring: the active model, runs over every (or every touched) account, explanations.

A run works in batches of accounts in id order (keyset). Per batch, one aggregate query
joins the rollups with a small table of decay factors and returns each account's points
per source; Python turns those into sub-scores and the account score, compares them with
what is stored, and one write transaction updates only the accounts whose rounded values
changed. A run killed half-way leaves every account fully old or fully new; the next
run redoes what is left (a full run all of it, an incremental one everything since the
last finished run's watermark, which only a finished run moves).

Many workers (`intently worker` on PostgreSQL) split the scheduled work two ways:

- By workspace: the schedule queues one task per workspace and kind; `run_claimed` takes
  the workspace's claim (scoring_claims: held until a time, so a dead holder's lapses),
  and releases it with the run's minimum interval, so a duplicate task finds it done.
- By account shard: a full run of a workspace of more than `SHARD_SIZE` accounts is cut
  into parts (`_plan_parts`): boundaries found by walking the primary key `SHARD_SIZE`
  ids at a time, parts 1..K score the ids in (after_id, upto_id] (the last one open, so
  accounts created meanwhile belong somewhere), part 0 finishes. One `scoring_runs` row
  (kind full, status running) stands for the whole run; its watermark is its start, and
  it turns done only when part 0 has run, so incremental runs start from it only then.
  Each part (`run_part`) is the same batch loop as `run_scoring` with the run's model
  version and day, so parts score exactly as one run would; stage placement, journey
  days and threshold events happen per batch as in a run; the set-wise segment refresh a
  full run ends with happens once, in part 0. A part is claimed with a hold (a fencing
  attempt number, held_until), and every batch's write transaction also records the
  part's progress (last id, counts) and extends the hold, or rolls back if this attempt
  no longer holds it; so a part whose worker was killed is redone from its last
  committed batch once its hold lapses (`resume_parts`, every minute, queues it again)
  and the counts stay exact. Parts complete under a lock on the run row, so whichever
  completes last sees the others done and runs part 0 at once. A part that raises is
  retried; one taken MAX_ATTEMPTS times fails the run. The workspace's full claim is
  held while parts are being taken; a run whose claim lapsed anyway (every worker gone
  for its whole hold) is marked failed and replaced by the next hourly run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.accounts.service import check_aid
from intently.events import service as events_service
from intently.kit.db import read_tx, tick, write_tx
from intently.kit.errors import NotFound
from intently.kit.ids import new_id
from intently.kit.timefmt import format_ms, now_us
from intently.rules import Context, SurgeParams, is_surging
from intently.scoring import decay
from intently.scoring import repository as repo
from intently.scoring.schemas import (
    ACCOUNT_SCORE,
    ALL_SCORES,
    SCORE_COLUMNS,
    default_model,
    validate_model,
)
from intently.segments import membership
from intently.segments.membership import Live
from intently.stages import service as stages_service

US_PER_DAY = 86_400_000_000
BATCH_SIZE = 10_000
# On PostgreSQL a batch is written in transactions of this many accounts. A scoring write
# holds the workspace's change clock until it commits, and API writes to the workspace
# queue behind it. bench/scale.py's mixed load with a run going on: p99 1,033 ms with
# whole 10,000-account batches, 298 ms with 500, 47 ms with 100; the full rescore of
# 100,000 accounts took 32.3 s with 100 against 30.2 s with whole batches. SQLite has one
# writer for the whole database anyway, and its full rescore is faster with whole batches.
PG_WRITE_CHUNK = 100
# A run over at most this many accounts refreshes dynamic segments batch by batch, in the
# batch's own transaction; a larger one refreshes them once, set-wise, after its batches.
SEGMENTS_PER_BATCH_UP_TO = 20_000
# Signals are stamped `received_at` before their transaction commits. An incremental run
# looks this far behind its watermark so that one committed late is still picked up.
LATE_COMMIT_US = 5 * 60 * 1_000_000

Scores = dict[str, float]
StageStep = Callable[[Connection, int, list[str], dict[str, Scores]], dict[str, str | None]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RunSummary:
    scored: int
    changed: int
    seconds: float
    model_version: int
    run_id: str = ""
    kind: str = "full"
    segment_moves: int = 0  # dynamic segment entries and exits

    def as_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "kind": self.kind,
            "scored": self.scored,
            "changed": self.changed,
            "segmentMoves": self.segment_moves,
            "seconds": round(self.seconds, 3),
            "modelVersion": self.model_version,
        }


# ---- the model -----------------------------------------------------------------------------


def active_model(conn: Connection, ws: int) -> tuple[int, dict[str, Any]]:
    """(version, model): the newest stored one, or (0, the default) when none was set."""
    found = repo.latest_model(conn, ws)
    if found is None:
        return 0, default_model()
    return found[0], found[1]


def get_model(engine: Engine, ws: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        found = repo.latest_model(conn, ws)
    if found is None:
        return {"version": 0, "isDefault": True, "createdAt": None, "model": default_model()}
    version, model, created = found
    return {"version": version, "isDefault": False, "createdAt": format_ms(created), "model": model}


def put_model(engine: Engine, ws: int, body: Any) -> dict[str, Any]:
    """Validate and store a new version of the model; returns it with its version."""
    model = validate_model(body)
    now = now_us()
    with write_tx(engine) as conn:
        version = repo.insert_model(conn, ws, model, now)
    return {"version": version, "isDefault": False, "createdAt": format_ms(now), "model": model}


@dataclass(frozen=True, slots=True)
class Plan:
    """The model made ready for one run: factor rows, caps, weights."""

    factors: list[tuple[str, str, int, float, int, float]]
    source_caps: dict[str, float]
    weights: dict[str, float]  # sources counted in the account score
    longest: int  # days the longest horizon reaches back
    surge: SurgeParams  # the model's first-party surge windows, for stage rules
    # The stage list (version, definition) a run places accounts with, read once per run.
    stage_set: tuple[int, dict[str, Any]] | None = None
    # The workspace's score thresholds: crossing one records an event.
    thresholds: tuple[dict[str, Any], ...] = ()
    # Dynamic segments refreshed batch by batch (a run over few accounts), with the rule
    # context; empty when the run refreshes them all after its batches instead.
    segments: tuple[Live, ...] = ()
    segment_ctx: Context | None = None


def plan(model: dict[str, Any], as_of_day: int) -> Plan:
    rows: list[tuple[str, str, int, float, int, float]] = []
    caps: dict[str, float] = {}
    weights: dict[str, float] = {}
    longest = 1
    for source, src in model["sources"].items():
        caps[source] = float(src.get("cap", 100.0))
        enabled = False
        for typ_name, typ in src["types"].items():
            if not typ.get("enabled", True):
                continue
            enabled = True
            uv = 1 if typ.get("unit") == "value" else 0
            fs = decay.factors(typ["decay"])
            longest = max(longest, len(fs))
            inc = float(typ["increment"])
            cap = float(typ["cap"])
            rows.extend(
                (source, typ_name, as_of_day - age, inc * f, uv, cap)
                for age, f in enumerate(fs)
                if f > 0
            )
        if enabled and float(src["weight"]) > 0:
            weights[source] = float(src["weight"])
    return Plan(rows, caps, weights, longest, surge_params(model))


def surge_params(model: dict[str, Any]) -> SurgeParams:
    """The model's first-party surge windows (what stage and segment rules call a surge)."""
    surge = model.get("surge") or {}
    return SurgeParams(
        recent_days=int(surge.get("recent_days", 7)),
        baseline_days=int(surge.get("baseline_days", 28)),
    )


def scores_of(points: dict[str, float], p: Plan) -> tuple[Scores, dict[str, float]]:
    """(the five stored columns rounded, every source's unrounded sub-score)."""
    subs = {s: decay.source_score(points.get(s, 0.0), cap) for s, cap in p.source_caps.items()}
    out = {col: round(subs.get(src, 0.0), 2) for src, col in SCORE_COLUMNS.items()}
    out[ACCOUNT_SCORE] = round(decay.account_score(subs, p.weights), 2)
    return out, subs


# ---- runs ------------------------------------------------------------------------------------


def run_scoring(
    engine: Engine,
    ws: int,
    *,
    full: bool = True,
    account_ids: Sequence[str] | None = None,
    as_of: int | None = None,
    on_progress: Progress | None = None,
    stage_step: StageStep | None = None,
    batch_size: int = BATCH_SIZE,
    place_stages: bool = True,
) -> RunSummary:
    """Score the workspace's accounts: the given ones, all (`full`), or those touched since
    the last finished full or incremental run; write only those whose rounded scores (or
    stage) changed.

    `as_of` (micros) scores as of that moment's UTC day: rollups after it count for
    nothing. `stage_step`, when given, is called per batch inside its write transaction
    with the new scores and returns each account's stage; a stage change is a change.
    """
    t0 = time.perf_counter()
    started = now_us()
    as_of_day = (as_of if as_of is not None else started) // US_PER_DAY
    with read_tx(engine) as conn:
        version, model = active_model(conn, ws)
        since = None if full or account_ids is not None else repo.last_watermark(conn, ws)
        stage_set = stages_service.active_definition(conn, ws)
        thresholds = tuple(events_service.thresholds(conn, ws))
        live = tuple(membership.live_segments(conn, ws)) if place_stages else ()
    if account_ids is not None:
        kind = "accounts"  # some accounts only: its watermark says nothing about the rest
    else:
        kind = "full" if full or since is None else "incremental"
    run_id = new_id()
    with write_tx(engine) as conn:
        repo.insert_run(
            conn,
            {
                "workspace_id": ws, "id": run_id, "kind": kind, "status": "running",
                "started_at": started, "scored": 0, "changed": 0, "model_version": version,
                "watermark": started,
            },
        )  # fmt: skip
    p = dataclasses.replace(plan(model, as_of_day), stage_set=stage_set, thresholds=thresholds)
    # Segment rules see what stage rules see: this run's stage list, surge windows and time.
    segment_ctx = stages_service.context(stage_set[1], as_of, surge=p.surge)
    scored = changed = segment_moves = 0
    try:
        with read_tx(engine) as conn:
            if account_ids is not None:
                todo: list[str] | None = sorted(set(account_ids))
            elif since is not None and kind == "incremental":
                todo = repo.touched_since(conn, ws, since - LATE_COMMIT_US)
            else:
                todo = None
            total = len(todo) if todo is not None else repo.count_accounts(conn, ws)
        if live and todo is not None and len(todo) <= SEGMENTS_PER_BATCH_UP_TO:
            p = dataclasses.replace(p, segments=live, segment_ctx=segment_ctx)

        def progress(n: int, c: int, moved: int) -> None:
            nonlocal scored, changed, segment_moves
            scored += n
            changed += c
            segment_moves += moved
            if on_progress is not None:
                on_progress(scored, total)

        _score_accounts(
            engine, ws, p, version, todo, kind=kind, batch_size=batch_size,
            stage_step=stage_step, place_stages=place_stages, on_batch=progress,
        )  # fmt: skip
        if live and not p.segments:
            # Every account (or very many): one set-based pass per segment beats asking
            # every segment about every batch.
            for done in membership.refresh(engine, ws, ctx=segment_ctx).values():
                segment_moves += done.entered + done.exited
    except BaseException as exc:
        with write_tx(engine) as conn:
            repo.finish_run(
                conn,
                ws,
                run_id,
                {
                    "status": "failed", "finished_at": now_us(), "scored": scored,
                    "changed": changed, "error": f"{type(exc).__name__}: {exc}"[:2000],
                },
            )  # fmt: skip
        raise
    with write_tx(engine) as conn:
        repo.finish_run(
            conn,
            ws,
            run_id,
            {"status": "done", "finished_at": now_us(), "scored": scored, "changed": changed},
        )
    return RunSummary(
        scored, changed, time.perf_counter() - t0, version, run_id, kind, segment_moves
    )


Checkpoint = Callable[[Connection, str, int, int, int], None]


def _score_accounts(
    engine: Engine,
    ws: int,
    p: Plan,
    version: int,
    todo: list[str] | None,
    *,
    kind: str,
    batch_size: int,
    stage_step: StageStep | None,
    place_stages: bool,
    after: str = "",
    upto: str | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> None:
    """Score `todo`, or every account with after < id <= upto, batch by batch; each batch's
    (scored, changed, segment moves) goes to `on_batch` after its commit, and to
    `checkpoint` (with the batch's last id) inside its write transaction."""
    with engine.connect() as rconn:
        try:
            with rconn.begin():
                repo.load_factors(rconn, p.factors)
            chunk = batch_size if engine.dialect.name == "sqlite" else PG_WRITE_CHUNK
            for ids, ranged in _batches(rconn, ws, todo, batch_size, after, upto):
                with rconn.begin():
                    rows = repo.source_points(rconn, ws, ids, ranged=ranged)
                for part, part_rows in _chunks(ids, rows, chunk):
                    n, c, moved = _write_batch(
                        engine, ws, part, ranged, part_rows, p, version, stage_step, kind,
                        place_stages, checkpoint,
                    )  # fmt: skip
                    if on_batch is not None:
                        on_batch(n, c, moved)
        finally:
            with rconn.begin():
                repo.drop_factors(rconn)


def _chunks(
    ids: list[str], rows: list[tuple[str, str, float]], size: int
) -> Iterator[tuple[list[str], list[tuple[str, str, float]]]]:
    """The batch's ids in runs of `size` (in order, so a ranged batch's runs are ranges too),
    each with its own rows."""
    if len(ids) <= size:
        yield ids, rows
        return
    by_id: dict[str, list[tuple[str, str, float]]] = {}
    for r in rows:
        by_id.setdefault(r[0], []).append(r)
    for i in range(0, len(ids), size):
        part = ids[i : i + size]
        yield part, [r for aid in part for r in by_id.get(aid, ())]


def _batches(
    conn: Connection, ws: int, todo: list[str] | None, size: int, after: str, upto: str | None
) -> Iterator[tuple[list[str], bool]]:
    """(ids, ranged) per batch: keyset over the accounts in (after, upto], or slices of the
    given ids."""
    if todo is not None:
        for i in range(0, len(todo), size):
            yield todo[i : i + size], False
        return
    while True:
        with conn.begin():
            ids = repo.batch_ids(conn, ws, after, size, upto)
        if not ids:
            return
        yield ids, True
        after = ids[-1]


def _write_batch(
    engine: Engine,
    ws: int,
    ids: list[str],
    ranged: bool,
    rows: list[tuple[str, str, float]],
    p: Plan,
    version: int,
    stage_step: StageStep | None,
    kind: str = "full",
    place_stages: bool = True,
    checkpoint: Checkpoint | None = None,
) -> tuple[int, int, int]:
    """Compare the batch's new scores with the stored ones and write the differences;
    then place the batch on the journey with the new scores in place (the stage rules
    read them in this transaction), and note the day's score and stage of every account
    that changed."""
    points: dict[str, dict[str, float]] = {}
    for aid, source, pts in rows:
        # PostgreSQL may sum in any order (parallel, hashed): the last bits of a float sum
        # vary between runs, and must not flip a rounded score when nothing changed.
        points.setdefault(aid, {})[source] = round(pts, 9)
    empty: dict[str, float] = {}
    new: dict[str, Scores] = {}
    for aid in ids:
        new[aid] = scores_of(points.get(aid, empty), p)[0]
    with write_tx(engine) as conn:
        stored = repo.stored_scores(conn, ws, ids, ranged=ranged)
        present = [aid for aid in ids if aid in stored]  # deleted since: skip
        stages = stage_step(conn, ws, present, {a: new[a] for a in present}) if stage_step else {}
        changes: list[tuple[Any, ...]] = []
        version_only: list[str] = []
        for aid in present:
            old = stored[aid]
            values = new[aid]
            scores = tuple(values[c] for c in ALL_SCORES)
            differs = any(float(o) != v for o, v in zip(old[:5], scores, strict=True))
            if stage_step is not None:
                stage = stages.get(aid)
                if differs or stage != old[5]:
                    changes.append((*scores, stage, aid))
                    continue
            elif differs:
                changes.append((*scores, aid))
                continue
            if old[6] != version:
                version_only.append(aid)
        if changes:
            clock = tick(conn, ws)
            repo.write_scores(
                conn, ws, changes, with_stage=stage_step is not None, clock=clock, version=version
            )
            if p.thresholds:
                crossed = [
                    e
                    for c in changes
                    for e in events_service.crossings(
                        p.thresholds,
                        c[-1],
                        dict(zip(ALL_SCORES, stored[c[-1]][:5], strict=True)),
                        new[c[-1]],
                    )
                ]
                events_service.record(conn, ws, crossed, seq=clock)
        repo.write_versions(conn, ws, version_only, version)
        changed = {c[-1] for c in changes}
        if stage_step is None and place_stages:
            changed.update(
                stages_service.apply_stages(
                    conn,
                    ws,
                    present,
                    cause=kind,
                    surge=p.surge,
                    stage_set=p.stage_set,
                    current={aid: stored[aid][5] for aid in present},
                )
            )
        if changed:
            stages_service.record_days(conn, ws, sorted(changed))
        moved = 0
        if p.segments and p.segment_ctx is not None:
            done = membership.refresh_accounts(conn, ws, p.segments, p.segment_ctx, present)
            moved = done.entered + done.exited
        if checkpoint is not None:
            checkpoint(conn, ids[-1], len(present), len(changed), moved)
    return len(present), len(changed), moved


def list_runs(engine: Engine, ws: int, limit: int = 20) -> list[dict[str, Any]]:
    with read_tx(engine) as conn:
        rows = repo.recent_runs(conn, ws, limit)
    return [
        {
            "runId": r["id"],
            "kind": r["kind"],
            "status": r["status"],
            "startedAt": format_ms(r["started_at"]),
            "finishedAt": format_ms(r["finished_at"]) if r["finished_at"] else None,
            "seconds": round((r["finished_at"] - r["started_at"]) / 1e6, 3)
            if r["finished_at"]
            else None,
            "scored": r["scored"],
            "changed": r["changed"],
            "modelVersion": r["model_version"],
            "error": r["error"],
        }
        for r in rows
    ]


# ---- the schedule ----------------------------------------------------------------------------

# A claim outlives a crashed worker by this much at most. A live run renews its claim as
# its batches commit (at most every quarter of the hold), so the hold need only cover the
# longest gap between batches: the segment refresh after a full run of a big workspace.
CLAIM_HOLD_US = {"full": 5 * 60 * 1_000_000, "incremental": 2 * 60 * 1_000_000}
# After a run, its kind is not run again for the workspace before this much time passed
# since it started: a task queued twice for one schedule (a backlog, a resent one) must
# find the work done, not start it again.
MIN_INTERVAL_US = {"full": 50 * 60 * 1_000_000, "incremental": 45 * 1_000_000}


# A workspace with more accounts than this has its full run scored in parts of this many
# accounts, each a task of its own, so several workers score it at once.
SHARD_SIZE = 50_000
# A part's worker holds it this long past its latest batch; a part whose worker died is
# free again after it.
PART_HOLD_US = 5 * 60 * 1_000_000
# A part sent to the queue and still not taken this long after is sent again.
REQUEUE_AFTER_US = 15 * 60 * 1_000_000
# A part that raised is tried again after this long; a part taken this many times without
# finishing (raised, or its worker died) fails its run.
RETRY_AFTER_US = 60 * 1_000_000
MAX_ATTEMPTS = 3

# Sends (workspace, run id, part) to the job queue.
EnqueuePart = Callable[[int, str, int], None]


class LostPart(Exception):
    """This worker's hold on a part lapsed and another worker took it, or the run ended."""


def run_claimed(
    engine: Engine,
    kind: str,
    *,
    workspaces: Sequence[int] | None = None,
    stage_step: StageStep | None = None,
    shard_size: int = SHARD_SIZE,
    enqueue_part: EnqueuePart | None = None,
) -> list[dict[str, Any]]:
    """For every workspace whose `kind` run is due and unclaimed: claim it, run it, release it.

    Given `enqueue_part`, the full run of a workspace of more than `shard_size` accounts is
    only planned here: its parts go to the queue, and whoever finishes the run releases it.
    """
    if workspaces is None:
        with read_tx(engine) as conn:
            workspaces = repo.workspace_ids(conn)
    out: list[dict[str, Any]] = []
    for ws in workspaces:
        started = now_us()
        with write_tx(engine) as conn:
            got = repo.claim(conn, ws, kind, started, CLAIM_HOLD_US[kind])
        if not got:
            continue
        sharded = False
        try:
            if kind == "full" and enqueue_part is not None:
                planned = _plan_parts(engine, ws, started, shard_size)
                if planned is not None:
                    sharded = True
                    run_id, parts = planned
                    out.append(
                        {"workspace": ws, "runId": run_id, "kind": kind, "status": "running",
                         "parts": parts}
                    )  # fmt: skip
                    for part in range(1, parts + 1):
                        enqueue_part(ws, run_id, part)
                    continue
            summary = run_scoring(
                engine, ws, full=kind == "full", stage_step=stage_step,
                on_progress=_renewing(engine, ws, kind),
            )  # fmt: skip
            out.append({"workspace": ws, **summary.as_dict()})
        except Exception as exc:  # the other workspaces still get scored
            out.append({"workspace": ws, "kind": kind, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            if not sharded:
                with write_tx(engine) as conn:
                    repo.release(conn, ws, kind, max(now_us(), started + MIN_INTERVAL_US[kind]))
    return out


def _renewing(engine: Engine, ws: int, kind: str) -> Progress:
    """A progress callback that keeps the workspace's claim held while batches commit."""
    hold = CLAIM_HOLD_US[kind]
    renewed = now_us()

    def renew(done: int, total: int) -> None:
        nonlocal renewed
        now = now_us()
        if now - renewed >= hold // 4:
            with write_tx(engine) as conn:
                repo.extend_claim(conn, ws, kind, now + hold)
            renewed = now

    return renew


def _plan_parts(engine: Engine, ws: int, started: int, size: int) -> tuple[str, int] | None:
    """Record a full run in parts of `size` accounts (run id, parts), or None if one will do.

    The caller holds the workspace's full claim: a run still open now was abandoned (its
    claim lapsed with no part taken for that long), and this one replaces it."""
    if size < 1:
        raise ValueError(f"shard_size must be at least 1, not {size}")
    with read_tx(engine) as conn:
        bounds = repo.shard_bounds(conn, ws, size)
        if not bounds:
            return None
        version = active_model(conn, ws)[0]
    run_id = new_id()
    with write_tx(engine) as conn:
        now = now_us()
        for stale in repo.open_sharded_runs(conn, ws):
            _fail_run(conn, ws, stale, f"superseded by run {run_id}", now)
        repo.insert_run(
            conn,
            {
                "workspace_id": ws, "id": run_id, "kind": "full", "status": "running",
                "started_at": started, "scored": 0, "changed": 0, "model_version": version,
                "watermark": started,
            },
        )  # fmt: skip
        parts = repo.insert_parts(conn, ws, run_id, bounds, now)
    return run_id, parts


def run_part(
    engine: Engine,
    ws: int,
    run_id: str,
    part: int,
    *,
    batch_size: int = BATCH_SIZE,
    hold_us: int = PART_HOLD_US,
) -> dict[str, Any]:
    """Take one part of a sharded run and do it: score its accounts (from where a dead
    worker's attempt left off), or, part 0, finish the run. The worker that completes the
    last scoring part goes on to part 0 itself."""
    now = now_us()
    base: dict[str, Any] = {"workspace": ws, "runId": run_id, "part": part}
    with write_tx(engine) as conn:
        got = repo.claim_part(conn, ws, run_id, part, now, hold_us, MAX_ATTEMPTS)
        run = repo.run_row(conn, ws, run_id) if got is not None else None
        if run is not None:
            # A live run keeps the workspace: no hourly run replaces it while parts move.
            repo.extend_claim(conn, ws, "full", now + CLAIM_HOLD_US["full"])
    if got is None or run is None:
        return {**base, "skipped": True}
    attempt = int(got["attempt"])
    base["attempt"] = attempt
    if part == 0:
        return _finish_parts(engine, ws, run, attempt, base)
    try:
        version = int(run["model_version"])
        with read_tx(engine) as conn:
            model = repo.model_of_version(conn, ws, version) if version else None
            stage_set = stages_service.active_definition(conn, ws)
            thresholds = tuple(events_service.thresholds(conn, ws))
        # Every part scores with the run's model, as of the run's day.
        p = dataclasses.replace(
            plan(model or default_model(), int(run["started_at"]) // US_PER_DAY),
            stage_set=stage_set,
            thresholds=thresholds,
        )

        def checkpoint(conn: Connection, last: str, n: int, c: int, moved: int) -> None:
            if not repo.checkpoint_part(
                conn, ws, run_id, part, attempt, done_upto=last, scored=n, changed=c,
                moves=moved, held_until=now_us() + hold_us,
            ):  # fmt: skip
                raise LostPart(
                    f"part {part} of run {run_id} is no longer held by attempt {attempt}"
                )

        _score_accounts(
            engine, ws, p, version, None, kind="full", batch_size=batch_size, stage_step=None,
            place_stages=True, after=got["done_upto"] or got["after_id"] or "",
            upto=got["upto_id"], checkpoint=checkpoint,
        )  # fmt: skip
    except LostPart:
        return {**base, "lost": True}
    except Exception as exc:
        return {**base, "error": _part_failed(engine, ws, run, part, attempt, exc)}
    with write_tx(engine) as conn:
        # Parts complete one at a time per run, so the last one sees all the others done.
        repo.run_row(conn, ws, run_id, lock=True)
        ended = repo.end_part(
            conn, ws, run_id, part, attempt, {"status": "done", "finished_at": now_us()}
        )
        left = repo.parts_left(conn, ws, run_id)
    if not ended:
        return {**base, "lost": True}
    out: dict[str, Any] = {**base, "status": "done", "partsLeft": left}
    if left == 0:
        out["finish"] = run_part(engine, ws, run_id, 0, batch_size=batch_size, hold_us=hold_us)
    return out


def _finish_parts(
    engine: Engine, ws: int, run: dict[str, Any], attempt: int, base: dict[str, Any]
) -> dict[str, Any]:
    """Part 0: the set-wise segment refresh a full run ends with, then the run's record."""
    run_id, version = str(run["id"]), int(run["model_version"])
    try:
        with read_tx(engine) as conn:
            model = repo.model_of_version(conn, ws, version) if version else None
            stage_set = stages_service.active_definition(conn, ws)
        ctx = stages_service.context(
            stage_set[1], None, surge=surge_params(model or default_model())
        )
        moves = sum(d.entered + d.exited for d in membership.refresh(engine, ws, ctx=ctx).values())
    except Exception as exc:
        return {**base, "error": _part_failed(engine, ws, run, 0, attempt, exc)}
    now = now_us()
    with write_tx(engine) as conn:
        repo.run_row(conn, ws, run_id, lock=True)
        values = {"status": "done", "finished_at": now, "segment_moves": moves}
        if not repo.end_part(conn, ws, run_id, 0, attempt, values):
            return {**base, "lost": True}
        scored, changed, part_moves, parts = repo.part_totals(conn, ws, run_id)
        repo.finish_run(
            conn, ws, run_id,
            {"status": "done", "finished_at": now, "scored": scored, "changed": changed},
        )  # fmt: skip
        repo.release(conn, ws, "full", max(now, int(run["started_at"]) + MIN_INTERVAL_US["full"]))
        repo.prune_parts(conn, ws, run_id)
    seconds = (now - int(run["started_at"])) / 1e6
    summary = RunSummary(scored, changed, seconds, version, run_id, "full", part_moves + moves)
    return {**base, "status": "done", "parts": parts, **summary.as_dict()}


def _part_failed(
    engine: Engine, ws: int, run: dict[str, Any], part: int, attempt: int, exc: Exception
) -> str:
    """Let the part be tried again later, or after its last attempt fail the run."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    now = now_us()
    with write_tx(engine) as conn:
        if attempt < MAX_ATTEMPTS:
            retry = {"status": "pending", "held_until": now + RETRY_AFTER_US, "error": error}
            repo.end_part(conn, ws, str(run["id"]), part, attempt, retry)
        elif repo.end_part(
            conn, ws, str(run["id"]), part, attempt,
            {"status": "failed", "finished_at": now, "error": error},
        ):  # fmt: skip
            _fail_run(conn, ws, str(run["id"]), f"part {part}: {error}", now)
    return error


def _fail_run(conn: Connection, ws: int, run_id: str, error: str, now: int) -> None:
    """End a sharded run as failed (in the caller's write transaction); free the workspace."""
    run = repo.run_row(conn, ws, run_id, lock=True)
    repo.cancel_parts(conn, ws, [run_id], now)
    if run is None or run["status"] != "running":
        return
    scored, changed, _, _ = repo.part_totals(conn, ws, run_id)
    repo.finish_run(
        conn, ws, run_id,
        {"status": "failed", "finished_at": now, "scored": scored, "changed": changed,
         "error": error[:2000]},
    )  # fmt: skip
    repo.release(conn, ws, "full", max(now, int(run["started_at"]) + MIN_INTERVAL_US["full"]))


def resume_parts(
    engine: Engine,
    enqueue_part: EnqueuePart,
    *,
    workspaces: Sequence[int] | None = None,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """Send again the parts whose worker died (or whose retry is due, or that the queue
    lost), and part 0 of runs whose finisher never came; fail runs with a part out of
    attempts."""
    now = now_us() if now is None else now
    out: list[dict[str, Any]] = []
    with write_tx(engine) as conn:
        for r in repo.lapsed_parts(conn, now, now - REQUEUE_AFTER_US, workspaces):
            ws, run_id, part, attempt = r["workspace_id"], r["run_id"], r["part"], r["attempt"]
            if attempt >= MAX_ATTEMPTS:
                _fail_run(
                    conn, ws, run_id, f"part {part} was taken {attempt} times, never finished", now
                )
                out.append({"workspace": ws, "runId": run_id, "part": part, "failed": True})
            elif repo.mark_queued(conn, ws, run_id, part, r["queued_at"], now):
                out.append({"workspace": ws, "runId": run_id, "part": part, "attempt": attempt})
    for r in out:
        if not r.get("failed"):
            enqueue_part(r["workspace"], r["runId"], r["part"])
    return out


# ---- explanation ------------------------------------------------------------------------------


def explain(engine: Engine, ws: int, aid: str, *, as_of: int | None = None) -> dict[str, Any]:
    """How the account's score comes about under the active model, type by type."""
    check_aid(aid)
    day = (as_of if as_of is not None else now_us()) // US_PER_DAY
    with read_tx(engine) as conn:
        account = repo.account_row(conn, ws, aid)
        if account is None:
            raise NotFound(f"Account '{aid}' not found")
        version, model = active_model(conn, ws)
        p = plan(model, day)
        rows = repo.daily_rows(conn, ws, account["domain"], day - p.longest + 1, day)
        sp = p.surge
        window = repo.daily_rows(
            conn, ws, account["domain"], day - sp.recent_days - sp.baseline_days + 1, day
        )
        fired = stages_service.last_change(conn, ws, aid)
    by_type: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    for source, typ, d, count, value_sum in rows:
        by_type.setdefault((source, typ), []).append((day - d, count, value_sum))
    sources_out: list[dict[str, Any]] = []
    points_by_source: dict[str, float] = {}
    for source, src in model["sources"].items():
        types_out: list[dict[str, Any]] = []
        total = 0.0
        for typ_name, typ in src["types"].items():
            spec = typ["decay"]
            h = decay.horizon(spec)
            inside = [r for r in by_type.get((source, typ_name), []) if r[0] < h]
            by_value = typ.get("unit") == "value"
            units = {age: (vs if by_value else float(c)) for age, c, vs in inside}
            inc, cap = float(typ["increment"]), float(typ["cap"])
            raw = inc * sum(units.values())
            decayed = inc * sum(u * decay.factor(spec, age) for age, u in units.items())
            on = bool(typ.get("enabled", True))
            points = min(cap, decayed) if on else 0.0
            total += points
            types_out.append(
                {
                    "type": typ_name,
                    "enabled": on,
                    "unit": typ.get("unit", "count"),
                    "increment": inc,
                    "decay": spec,
                    "count": sum(c for _, c, _ in inside),
                    "newestAgeDays": min((a for a, _, _ in inside), default=None),
                    "oldestAgeDays": max((a for a, _, _ in inside), default=None),
                    "rawPoints": raw,
                    "decayApplied": raw - decayed,
                    "decayedPoints": decayed,
                    "cap": cap,
                    "capHit": on and decayed >= cap,
                    "points": points,
                }
            )
        points_by_source[source] = total
        sources_out.append(
            {
                "source": source,
                "column": SCORE_COLUMNS.get(source),
                "weight": float(src["weight"]),
                "countsInAccountScore": source in p.weights,
                "cap": p.source_caps[source],
                "points": total,
                "capHit": total >= p.source_caps[source],
                "types": types_out,
            }
        )
    computed, subs = scores_of(points_by_source, p)
    for s in sources_out:
        s["subScore"] = subs[s["source"]]
    weight_total = sum(p.weights.values())
    return {
        "rtp_aid": aid,
        "domain": account["domain"],
        "modelVersion": version,
        "asOfDay": day,
        "sources": sources_out,
        "weightTotal": weight_total,
        "accountScore": decay.account_score(subs, p.weights),
        "scores": computed,
        "surge": _surge(window, day, p.surge),
        "stage": {
            "name": account["rtp_journey_stage"],
            "rule": fired["rule"]
            if fired and fired["to"] == account["rtp_journey_stage"]
            else None,
            "since": fired["changedAt"] if fired else None,
        },
        "stored": {
            **{c: account[c] for c in ALL_SCORES},
            "modelVersion": account["score_model_version"],
            "rtp_journey_stage": account["rtp_journey_stage"],
        },
    }


def _surge(rows: Sequence[tuple[Any, ...]], day: int, sp: SurgeParams) -> list[dict[str, Any]]:
    """Per source: signals in the recent window, in the baseline before it, and whether
    that is a surge (the rule language's definition, so stage rules agree)."""
    counts: dict[str, list[int]] = {}
    for source, _typ, d, count, _value in rows:
        c = counts.setdefault(source, [0, 0])
        c[0 if d > day - sp.recent_days else 1] += int(count)
    return [
        {
            "source": source,
            "recentDays": sp.recent_days,
            "recent": recent,
            "baselineDays": sp.baseline_days,
            "baseline": baseline,
            "surging": is_surging(recent, baseline, sp),
        }
        for source, (recent, baseline) in sorted(counts.items())
    ]


def count_accounts(engine: Engine, ws: int) -> int:
    with read_tx(engine) as conn:
        return repo.count_accounts(conn, ws)
