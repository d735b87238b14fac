"""Scoring: the active model, and runs over every (or every touched) account.

A run works in batches of accounts in id order (keyset). Per batch, one aggregate query
joins the rollups with a small table of decay factors and returns each account's points
per source; Python turns those into sub-scores and the account score, compares them with
what is stored, and one write transaction updates only the accounts whose rounded values
changed. A run killed half-way leaves every account fully old or fully new; the next
run redoes what is left (a full run all of it, an incremental one everything since the
last finished run's watermark, which only a finished run moves).

Scoring knows nothing of what follows a score change. A caller passes `follow`: it is
opened once per run (`RunInfo`) and called with each written batch (`ScoredBatch`)
inside that batch's write transaction, and once after the run's batches. The pipeline
(`intently.pipeline`) is that caller: thresholds, stages, journey days, segments.
With `follow=None` a run writes scores and nothing else.

How many workers split the scheduled runs (claims by workspace, parts by account shard)
is `scoring/shards.py`; the score explanation is `scoring/explain.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from intently.catalog import ACCOUNT_SCORE, ALL_SCORES, FIT_SCORE, GRADE, SCORE_COLUMNS
from intently.fit.model import FitScorer, active_scorer
from intently.kit.db import read_tx, tick, write_tx
from intently.kit.heartbeat import Heartbeat, reap
from intently.kit.ids import new_id
from intently.kit.timefmt import US_PER_DAY, format_ms, now_us
from intently.rules import SurgeParams
from intently.scoring import decay, features
from intently.scoring import repository as repo
from intently.scoring.model import active_model, surge_params
from intently.scoring.schemas import default_model, validate_model
from intently.scoring.tables import scoring_parts, scoring_runs
from intently.settings import get_settings

BATCH_SIZE = 10_000
# On PostgreSQL a batch is written in transactions of this many accounts. A scoring write
# holds the workspace's change clock until it commits, and API writes to the workspace
# queue behind it. bench/scale.py's mixed load with a run going on: p99 1,033 ms with
# whole 10,000-account batches, 298 ms with 500, 47 ms with 100; the full rescore of
# 100,000 accounts took 32.3 s with 100 against 30.2 s with whole batches. SQLite has one
# writer for the whole database anyway, and its full rescore is faster with whole batches.
PG_WRITE_CHUNK = 100
# Signals are stamped `received_at` before their transaction commits. An incremental run
# looks this far behind its watermark so that one committed late is still picked up.
LATE_COMMIT_US = 5 * 60 * 1_000_000

Scores = dict[str, float]
StageStep = Callable[[Connection, int, list[str], dict[str, Scores]], dict[str, str | None]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a run tells what follows it, when it opens."""

    ws: int
    kind: str  # full, incremental or accounts
    model: dict[str, Any]
    surge: SurgeParams  # the model's first-party surge windows
    as_of: int | None  # micros the run scores as of; None: now
    staged: bool  # a stage_step places accounts with their scores
    fit: FitScorer | None = None  # the active fit model, read with the scoring model


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """One batch as its write transaction left it, for what follows scoring."""

    ws: int
    kind: str
    ids: list[str]  # the batch's accounts that still exist, in id order
    # Per account as stored before the write: the five scores (ALL_SCORES order), the
    # stage, the model version.
    stored: dict[str, tuple[Any, ...]]
    new: dict[str, Scores]  # the five new scores of every account in `ids`
    written: list[str]  # accounts whose scores (or stepped stage) were written
    clock: int | None  # the change clock of that write; None when nothing was written


class Follower(Protocol):
    """What follows one run's score changes (the pipeline's; scoring never looks inside)."""

    def expect(self, conn: Connection, accounts: int | None) -> None:
        """The run will score this many accounts (None: every account of the workspace or
        of a part), said in the transaction that counted them."""

    def after_batch(self, conn: Connection, batch: ScoredBatch) -> tuple[set[str], int]:
        """In the batch's write transaction: (more accounts that changed, segment moves)."""
        ...

    def after_run(self, engine: Engine) -> int:
        """After every batch of the run committed: segment moves."""
        ...


# Opens a run's follower, in the transaction that read the run's model.
Follow = Callable[[Connection, RunInfo], Follower]


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
    day: int = 0  # the day scored as of
    predictor: dict[str, Any] | None = None  # a trained model's: it gives the account score
    fit: FitScorer | None = None  # None: fit score and grade are left as they are


def plan(model: dict[str, Any], as_of_day: int, fit: FitScorer | None = None) -> Plan:
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
    return Plan(
        rows, caps, weights, longest, surge_params(model), as_of_day, model.get("predictor"), fit
    )


def load_plan(conn: Connection, p: Plan) -> None:
    """The plan's temporary tables on this connection: the factors, and a trained model's
    day weights."""
    repo.load_factors(conn, p.factors)
    if p.predictor is not None:
        features.load_days(conn, p.predictor["features"], p.day)


def drop_plan(conn: Connection) -> None:
    repo.drop_factors(conn)
    features.drop_days(conn)


def batch_points(
    conn: Connection, ws: int, p: Plan, ids: Sequence[str], *, ranged: bool
) -> tuple[list[tuple[str, str, float]], dict[str, float] | None]:
    """The batch's (account, source, points) and, under a trained model, its account
    scores (None otherwise): one pass over the rollups either way (load_plan first)."""
    if p.predictor is None or not ids:
        return repo.source_points(conn, ws, ids, ranged=ranged), None
    spec = p.predictor["features"]
    rows, sums = features.points_and_sums(
        conn, ws, spec, repo.FACTORS, ids, ranged=ranged, day=p.day
    )
    x, _ = features.batch_features(conn, ws, spec, ids, ranged=ranged, sums=sums)
    return rows, dict(zip(ids, features.predict(p.predictor, x).tolist(), strict=True))


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
    follow: Follow | None,
) -> RunSummary:
    """Score the workspace's accounts: the given ones, all (`full`), or those touched since
    the last finished full or incremental run; write only those whose rounded scores (or
    stage) changed.

    `as_of` (micros) scores as of that moment's UTC day: rollups after it count for
    nothing. `stage_step`, when given, is called per batch inside its write transaction
    with the new scores and returns each account's stage; a stage change is a change.
    `follow` opens what follows the run's score changes (see the module docstring); None
    writes scores and nothing else, so a caller says so.
    """
    t0 = time.perf_counter()
    started = now_us()
    as_of_day = (as_of if as_of is not None else started) // US_PER_DAY
    with read_tx(engine) as conn:
        version, model = active_model(conn, ws)
        since = None if full or account_ids is not None else repo.last_watermark(conn, ws)
        if account_ids is not None:
            kind = "accounts"  # some accounts only: its watermark says nothing about the rest
        else:
            kind = "full" if full or since is None else "incremental"
        fit = active_scorer(conn, ws, as_of if as_of is not None else started)
        p = plan(model, as_of_day, fit)
        info = RunInfo(ws, kind, model, p.surge, as_of, stage_step is not None, fit)
        follower = follow(conn, info) if follow is not None else None
    run_id = new_id()
    with write_tx(engine) as conn:
        repo.insert_run(
            conn,
            {
                "workspace_id": ws, "id": run_id, "kind": kind, "status": "running",
                "started_at": started, "scored": 0, "changed": 0, "model_version": version,
                "watermark": started, "heartbeat_at": started,
            },
        )  # fmt: skip
    scored = changed = segment_moves = 0
    # Until the run's end is written: a run whose process dies is then seen as stopped.
    beat = Heartbeat(engine, scoring_runs, ws, run_id, get_settings().run_lease_s)
    try:
        with read_tx(engine) as conn:
            if account_ids is not None:
                todo: list[str] | None = sorted(set(account_ids))
            elif since is not None and kind == "incremental":
                todo = repo.touched_since(conn, ws, since - LATE_COMMIT_US)
            else:
                todo = None
            total = len(todo) if todo is not None else repo.count_accounts(conn, ws)
            if follower is not None:
                follower.expect(conn, len(todo) if todo is not None else None)

        def progress(n: int, c: int, moved: int) -> None:
            nonlocal scored, changed, segment_moves
            scored += n
            changed += c
            segment_moves += moved
            if on_progress is not None:
                on_progress(scored, total)

        _score_accounts(
            engine, ws, p, version, todo, kind=kind, batch_size=batch_size,
            stage_step=stage_step, follower=follower, on_batch=progress,
        )  # fmt: skip
        if follower is not None:
            segment_moves += follower.after_run(engine)
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
    finally:
        beat.stop()
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
    follower: Follower | None,
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
                load_plan(rconn, p)
            chunk = batch_size if engine.dialect.name == "sqlite" else PG_WRITE_CHUNK
            for ids, ranged in _batches(rconn, ws, todo, batch_size, after, upto):
                with rconn.begin():
                    rows, trained = batch_points(rconn, ws, p, ids, ranged=ranged)
                for part, part_rows in _chunks(ids, rows, chunk):
                    n, c, moved = _write_batch(
                        engine, ws, part, ranged, part_rows, p, version, stage_step, kind,
                        follower, checkpoint, trained,
                    )  # fmt: skip
                    if on_batch is not None:
                        on_batch(n, c, moved)
        finally:
            with rconn.begin():
                drop_plan(rconn)


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
    follower: Follower | None = None,
    checkpoint: Checkpoint | None = None,
    trained: dict[str, float] | None = None,
) -> tuple[int, int, int]:
    """Compare the batch's new scores with the stored ones and write the differences, then
    hand the batch to the run's follower in the same transaction (stage rules read the
    new scores there). Returns (scored, changed, segment moves)."""
    points: dict[str, dict[str, float]] = {}
    for aid, source, pts in rows:
        # PostgreSQL may sum in any order (parallel, hashed): the last bits of a float sum
        # vary between runs, and must not flip a rounded score when nothing changed.
        points.setdefault(aid, {})[source] = round(pts, 9)
    empty: dict[str, float] = {}
    new: dict[str, Scores] = {}
    for aid in ids:
        new[aid] = scores_of(points.get(aid, empty), p)[0]
        if trained is not None:  # a trained model's account score; sub-scores as ever
            new[aid][ACCOUNT_SCORE] = trained.get(aid, 0.0)
    fit = p.fit
    # Stored fit and grade at 7 and 8, then the columns the fit rules read.
    extra = (FIT_SCORE, GRADE, *fit.columns) if fit is not None else ()
    with write_tx(engine) as conn:
        stored = repo.stored_scores(conn, ws, ids, ranged=ranged, extra=extra)
        present = [aid for aid in ids if aid in stored]  # deleted since: skip
        stages = stage_step(conn, ws, present, {a: new[a] for a in present}) if stage_step else {}
        changes: list[tuple[Any, ...]] = []
        version_only: list[str] = []
        for aid in present:
            old = stored[aid]
            values = new[aid]
            scores: tuple[Any, ...] = tuple(values[c] for c in ALL_SCORES)
            differs = any(float(o) != v for o, v in zip(old[:5], scores, strict=True))
            if fit is not None:
                # Memoised per distinct profile; the grade reads the new account score,
                # whatever produced it.
                fit_score, grade = fit.fit_and_grade(old[9:], values[ACCOUNT_SCORE])
                differs = differs or old[7] != fit_score or old[8] != grade
                scores = (*scores, fit_score, grade)
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
        # The workspace's clock before any account row, as every push takes them: a batch
        # that locked rows first and the clock after (a follower's tick) deadlocked with
        # pushes on PostgreSQL under load.
        clock = tick(conn, ws) if changes or version_only else None
        if changes and clock is not None:
            repo.write_scores(
                conn, ws, changes, with_stage=stage_step is not None, clock=clock,
                version=version, with_fit=fit is not None,
            )  # fmt: skip
        repo.write_versions(conn, ws, version_only, version)
        written = [c[-1] for c in changes]
        changed = set(written)
        moved = 0
        if follower is not None:
            batch = ScoredBatch(ws, kind, present, stored, new, written, clock)
            more, moved = follower.after_batch(conn, batch)
            changed |= more
        if checkpoint is not None:
            checkpoint(conn, ids[-1], len(present), len(changed), moved)
    return len(present), len(changed), moved


def reap_stopped_runs(engine: Engine, ws: int | None = None) -> int:
    """Mark failed the runs (of `ws`, or all) whose process ended mid-run. A sharded run
    has no heartbeat: its parts' holds recover it (shards.resume_parts)."""
    sharded = (
        select(scoring_parts.c.run_id)
        .where(
            scoring_parts.c.workspace_id == scoring_runs.c.workspace_id,
            scoring_parts.c.run_id == scoring_runs.c.id,
        )
        .exists()
    )
    return reap(engine, scoring_runs, get_settings().run_lease_s, ws=ws, where=[~sharded])


def list_runs(engine: Engine, ws: int, limit: int = 20) -> list[dict[str, Any]]:
    reap_stopped_runs(engine, ws)
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


def count_accounts(engine: Engine, ws: int) -> int:
    with read_tx(engine) as conn:
        return repo.count_accounts(conn, ws)
