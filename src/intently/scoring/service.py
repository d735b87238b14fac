"""Scoring: the active model, runs over every (or every touched) account, explanations.

A run works in batches of accounts in id order (keyset). Per batch, one aggregate query
joins the rollups with a small table of decay factors and returns each account's points
per source; Python turns those into sub-scores and the account score, compares them with
what is stored, and one write transaction updates only the accounts whose rounded values
changed. A run killed half-way leaves every account fully old or fully new; the next
run redoes what is left (a full run all of it, an incremental one everything since the
last finished run's watermark, which only a finished run moves).
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
        with engine.connect() as rconn:
            try:
                with rconn.begin():
                    repo.load_factors(rconn, p.factors)
                    if account_ids is not None:
                        todo: list[str] | None = sorted(set(account_ids))
                    elif since is not None and kind == "incremental":
                        todo = repo.touched_since(rconn, ws, since - LATE_COMMIT_US)
                    else:
                        todo = None
                    total = len(todo) if todo is not None else repo.count_accounts(rconn, ws)
                if live and todo is not None and len(todo) <= SEGMENTS_PER_BATCH_UP_TO:
                    p = dataclasses.replace(p, segments=live, segment_ctx=segment_ctx)
                for ids, ranged in _batches(rconn, ws, todo, batch_size):
                    with rconn.begin():
                        rows = repo.source_points(rconn, ws, ids, ranged=ranged)
                    n, c, moved = _write_batch(
                        engine, ws, ids, ranged, rows, p, version, stage_step, kind, place_stages
                    )
                    scored += n
                    changed += c
                    segment_moves += moved
                    if on_progress is not None:
                        on_progress(scored, total)
            finally:
                with rconn.begin():
                    repo.drop_factors(rconn)
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


def _batches(
    conn: Connection, ws: int, todo: list[str] | None, size: int
) -> Iterator[tuple[list[str], bool]]:
    """(ids, ranged) per batch: keyset over every account, or slices of the given ids."""
    if todo is not None:
        for i in range(0, len(todo), size):
            yield todo[i : i + size], False
        return
    after = ""
    while True:
        with conn.begin():
            ids = repo.batch_ids(conn, ws, after, size)
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

# A claim outlives a crashed worker by this much at most; a live run keeps well within it.
CLAIM_HOLD_US = {"full": 55 * 60 * 1_000_000, "incremental": 10 * 60 * 1_000_000}
# After a run, its kind is not run again for the workspace before this much time passed
# since it started: every worker enqueues the same periodic task, and the ones that come
# second must find the work done, not start it again.
MIN_INTERVAL_US = {"full": 50 * 60 * 1_000_000, "incremental": 45 * 1_000_000}


def run_claimed(
    engine: Engine,
    kind: str,
    *,
    workspaces: Sequence[int] | None = None,
    stage_step: StageStep | None = None,
) -> list[dict[str, Any]]:
    """For every workspace whose `kind` run is due and unclaimed: claim it, run it, release it."""
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
        try:
            summary = run_scoring(engine, ws, full=kind == "full", stage_step=stage_step)
            out.append({"workspace": ws, **summary.as_dict()})
        except Exception as exc:  # the other workspaces still get scored
            out.append({"workspace": ws, "kind": kind, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            with write_tx(engine) as conn:
                repo.release(conn, ws, kind, max(now_us(), started + MIN_INTERVAL_US[kind]))
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
