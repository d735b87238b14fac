"""The job worker: huey with its storage in the application's database, and periodic jobs.

`intently serve` runs a consumer in its own process unless told `--no-worker`; `intently
worker` runs one alone. Any number may run, on any hosts when the database is PostgreSQL:

- Each periodic job fires once per schedule, not once per consumer: the consumer that
  claims the minute in `jobs_ticks` enqueues it (`intently.kit.jobs.IntentlyHuey`) and logs
  "periodic <task> slot <minute> runs here".
- Scoring is split by workspace: the hourly full run and the minutely incremental run
  each enqueue one task per workspace, which claims the workspace's run (scoring_claims),
  so different workers take different workspaces.
- And by account shard: the full run of a workspace of more than `SHARD_SIZE` accounts is
  cut into parts (keyset ranges of the account id) sent to the queue one task each, so
  several workers score one workspace at once; the worker that completes the last part
  finishes the run (segment refresh, the run's record). `resume_scoring_parts` sends again
  the parts whose worker died (`intently.scoring.shards` has the details).
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

from huey import crontab
from sqlalchemy.engine import Engine

from intently.gate.idempotency import sweep
from intently.gate.ratelimit import sweep_buckets
from intently.ingest.schedule import pull_due
from intently.kit.db import make_engine, read_tx
from intently.kit.jobs import make_huey
from intently.kit.timefmt import now_us
from intently.pipeline import resume_parts, run_claimed, run_part
from intently.scoring import training
from intently.scoring.repository import workspace_ids
from intently.scoring.service import reap_stopped_runs as reap_stopped_scoring
from intently.settings import get_settings
from intently.signals.store import reap_stopped_runs as reap_stopped_imports

log = logging.getLogger("intently.worker")

huey = make_huey(get_settings().database_url)

# Accounts per part of a sharded full run (and the size from which a run is sharded).
SHARD_SIZE = 50_000


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    return make_engine(url)


def engine() -> Engine:
    return _engine(get_settings().database_url)


def _workspace_ids() -> list[int]:
    with read_tx(engine()) as conn:
        return workspace_ids(conn)


@huey.periodic_task(crontab(minute="*/5"))
def pull_due_connections() -> list[dict[str, Any]]:
    """Every 5 minutes: run the vendor pulls whose interval has passed."""
    results = pull_due(engine(), get_settings())
    for r in results:
        log.info("pull %s workspace %s: %s", r["provider"], r["workspace"], r["status"])
    return results


@huey.periodic_task(crontab(minute="0"))
def rescore_all_workspaces() -> list[int]:
    """Every hour: a full scoring task per workspace (each claimed, big ones sharded)."""
    wss = _workspace_ids()
    for ws in wss:
        score_workspace(ws, "full")
    log.info("scoring (full): %d workspace tasks queued", len(wss))
    return wss


@huey.periodic_task(crontab(minute="*"))
def rescore_touched_accounts() -> list[int]:
    """Every minute: an incremental scoring task per workspace (new signals, deals, activities)."""
    wss = _workspace_ids()
    for ws in wss:
        score_workspace(ws, "incremental")
    return wss


@huey.periodic_task(crontab(minute="*"))
def resume_scoring_parts() -> list[dict[str, Any]]:
    """Every minute: send again the parts of sharded runs whose worker died."""
    results = resume_parts(engine(), _enqueue_part)
    for r in results:
        log.warning("scoring part %s of run %s (workspace %s) resumed: %s",
                    r["part"], r["runId"], r["workspace"], r)  # fmt: skip
    return results


def reap_stopped_runs() -> int:
    """Mark failed the imports, pulls and scoring runs whose process ended mid-run (their
    heartbeat lapsed: kit/heartbeat.py); on start-up and every minute."""
    eng = engine()
    n = reap_stopped_imports(eng) + reap_stopped_scoring(eng) + training.reap_stopped(eng)
    if n:
        log.warning("%d run(s) whose process ended marked failed", n)
    return n


@huey.periodic_task(crontab(minute="*"))
def reap_stopped_runs_task() -> int:
    """Every minute: runs whose process ended are marked failed, not left running."""
    return reap_stopped_runs()


# The two tasks below return nothing: huey keeps a task's result until it is read, and
# nobody reads these (the logs and scoring_runs / scoring_parts are their record).


@huey.task()
def score_workspace(ws: int, kind: str) -> None:
    """One workspace's `kind` run, if due and nobody else holds it (a big full one in parts)."""
    results = run_claimed(
        engine(), kind, workspaces=[ws], shard_size=SHARD_SIZE, enqueue_part=_enqueue_part
    )
    for r in results:
        if kind == "full" or r.get("changed") or r.get("error"):
            log.info("scoring (%s) workspace %s: %s", kind, ws, r)


@huey.task()
def score_part(ws: int, run_id: str, part: int) -> None:
    """One part of a sharded full run."""
    result = run_part(engine(), ws, run_id, part)
    log.info("scoring part %s of run %s (workspace %s): %s", part, run_id, ws, result)


@huey.task()
def train_model(ws: int, training_id: str, horizon_days: int, activate: bool, force: bool) -> None:
    """A training started by the API or the dashboard (recorded as running already): its
    outcome goes to model_trainings; a refusal or failure is recorded there, not raised."""
    try:
        training.train(
            engine(), ws, horizon_days=horizon_days, activate=activate, force=force,
            training_id=training_id,
            progress=lambda m: log.info("training %s (workspace %s): %s", training_id, ws, m),
        )  # fmt: skip
    except Exception:
        log.warning("training %s (workspace %s) failed", training_id, ws, exc_info=True)


def _enqueue_part(ws: int, run_id: str, part: int) -> None:
    score_part(ws, run_id, part)


@huey.periodic_task(crontab(minute="17"))
def sweep_idempotency_keys() -> int:
    """Every hour: forget the Idempotency-Key answers older than the time they are kept."""
    settings = get_settings()
    removed = sweep(engine(), now=now_us(), ttl_us=settings.idempotency_ttl_s * 1_000_000)
    if removed:
        log.info("idempotency keys expired: %d", removed)
    return removed


@huey.periodic_task(crontab(minute="23"))
def sweep_rate_buckets() -> int:
    """Every hour: delete the rate-limit buckets idle an hour (full again: no loss), which
    otherwise pile up, one per key and guessing address ever seen."""
    removed = sweep_buckets(engine(), now=time.time())
    if removed:
        log.info("idle rate-limit buckets deleted: %d", removed)
    return removed
