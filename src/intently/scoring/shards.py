"""Scoring split among workers: by workspace (claims) and by account shard (parts).

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
  Each part (`run_part`) is the same batch loop as `service.run_scoring` with the run's
  model version and day, so parts score exactly as one run would; what follows each
  batch (the caller's `follow`) happens per batch as in a run; what follows the whole
  run happens once, in part 0. A part is claimed with a hold (a fencing
  attempt number, held_until), and every batch's write transaction also records the
  part's progress (last id, counts) and extends the hold, or rolls back if this attempt
  no longer holds it; so a part whose worker was killed is redone from its last
  committed batch once its hold lapses (`resume_parts`, every minute, queues it again)
  and the counts stay exact. Parts complete under a lock on the run row, so whichever
  completes last sees the others done and runs part 0 at once. A part that raises is
  retried; one taken MAX_ATTEMPTS times fails the run. The workspace's full claim is
  held while parts are being taken; a run whose claim lapsed anyway (every worker gone
  for its whole hold) is marked failed and replaced by the next hourly run.

The batch loop is called through the `service` module (not imported by name), so a test
can replace it for one run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.fit.model import active_scorer
from intently.kit.db import read_tx, write_tx
from intently.kit.ids import new_id
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.scoring import repository as repo
from intently.scoring import service
from intently.scoring.model import active_model, surge_params
from intently.scoring.schemas import default_model
from intently.scoring.service import BATCH_SIZE, Follow, Progress, RunInfo, RunSummary, StageStep

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
    follow: Follow | None,
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
            summary = service.run_scoring(
                engine, ws, full=kind == "full", stage_step=stage_step,
                on_progress=_renewing(engine, ws, kind), follow=follow,
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
    follow: Follow | None,
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
        return _finish_parts(engine, ws, run, attempt, base, follow)
    try:
        version = int(run["model_version"])
        with read_tx(engine) as conn:
            model = (repo.model_of_version(conn, ws, version) if version else None) or (
                default_model()
            )
            # Every part scores with the run's model, as of the run's day. The fit model is
            # the active one when the part starts (runs record no fit version): one saved
            # mid-run applies to the parts after it, and to all of the next run.
            started = int(run["started_at"])
            fit = active_scorer(conn, ws, started)
            p = service.plan(model, started // US_PER_DAY, fit)
            info = RunInfo(ws, "full", model, p.surge, None, False, fit)
            follower = follow(conn, info) if follow is not None else None
            if follower is not None:
                follower.expect(conn, None)  # a share of every account; the run's end is part 0's

        def checkpoint(conn: Connection, last: str, n: int, c: int, moved: int) -> None:
            if not repo.checkpoint_part(
                conn, ws, run_id, part, attempt, done_upto=last, scored=n, changed=c,
                moves=moved, held_until=now_us() + hold_us,
            ):  # fmt: skip
                raise LostPart(
                    f"part {part} of run {run_id} is no longer held by attempt {attempt}"
                )

        service._score_accounts(
            engine, ws, p, version, None, kind="full", batch_size=batch_size, stage_step=None,
            follower=follower, after=got["done_upto"] or got["after_id"] or "",
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
        out["finish"] = run_part(
            engine, ws, run_id, 0, batch_size=batch_size, hold_us=hold_us, follow=follow
        )
    return out


def _finish_parts(
    engine: Engine,
    ws: int,
    run: dict[str, Any],
    attempt: int,
    base: dict[str, Any],
    follow: Follow | None,
) -> dict[str, Any]:
    """Part 0: what follows a whole full run (the set-wise segment refresh), then the
    run's record."""
    run_id, version = str(run["id"]), int(run["model_version"])
    try:
        moves = 0
        if follow is not None:
            with read_tx(engine) as conn:
                model = (repo.model_of_version(conn, ws, version) if version else None) or (
                    default_model()
                )
                info = RunInfo(ws, "full", model, surge_params(model), None, False)
                follower = follow(conn, info)
                follower.expect(conn, None)
            moves = follower.after_run(engine)
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
