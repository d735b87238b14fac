"""Scoring runs with what follows their score changes (the order is the package's docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.catalog import ALL_SCORES
from intently.events import repository as events_repo
from intently.events.service import crossings
from intently.scoring import service as scoring
from intently.scoring import shards
from intently.scoring.service import (
    BATCH_SIZE,
    Progress,
    RunInfo,
    RunSummary,
    ScoredBatch,
    StageStep,
)
from intently.segments import membership
from intently.stages import definition as stage_list
from intently.stages import service as stages

# A run over at most this many accounts refreshes dynamic segments batch by batch, in the
# batch's own transaction; a larger one refreshes them once, set-wise, after its batches.
SEGMENTS_PER_BATCH_UP_TO = 20_000


class AfterScoring:
    """What follows one scoring run's batches: thresholds, stages, journey days, segments.

    Opened in the transaction that read the run's model, it reads there, once per run, the
    stage list and the thresholds. `place_stages=False` leaves stages and segments alone
    (scores, thresholds and journey days only)."""

    def __init__(self, conn: Connection, run: RunInfo, *, place_stages: bool = True) -> None:
        self.ws, self.kind = run.ws, run.kind
        self.surge = run.surge
        self.stage_set = stage_list.active_definition(conn, run.ws)
        self.thresholds = tuple(events_repo.thresholds(conn, run.ws))
        self.segments = place_stages
        # A stage_step places accounts with their scores; otherwise the stage rules do.
        self.place = place_stages and not run.staged
        # Segment rules see what stage rules see: this run's stage list, surge windows, time.
        self.ctx = stage_list.context(self.stage_set[1], run.as_of, surge=run.surge)
        self.few = False  # a run over few accounts refreshes segments batch by batch
        self.live: tuple[membership.Live, ...] = ()

    def expect(self, conn: Connection, accounts: int | None) -> None:
        self.few = accounts is not None and accounts <= SEGMENTS_PER_BATCH_UP_TO
        if self.segments and self.few:
            self.live = tuple(membership.live_segments(conn, self.ws))

    def after_batch(self, conn: Connection, batch: ScoredBatch) -> tuple[set[str], int]:
        ws = self.ws
        if self.thresholds and batch.written:
            crossed = [
                e
                for aid in batch.written
                for e in crossings(
                    self.thresholds,
                    aid,
                    dict(zip(ALL_SCORES, batch.stored[aid][:5], strict=True)),
                    batch.new[aid],
                )
            ]
            if crossed and batch.clock is not None:
                events_repo.record(conn, ws, crossed, seq=batch.clock)
        moved: set[str] = set()
        if self.place:
            moved.update(
                stages.apply_stages(
                    conn,
                    ws,
                    batch.ids,
                    cause=batch.kind,
                    surge=self.surge,
                    stage_set=self.stage_set,
                    current={aid: batch.stored[aid][5] for aid in batch.ids},
                )
            )
        changed = set(batch.written) | moved
        if changed:
            stages.record_days(conn, ws, sorted(changed))
        segment_moves = 0
        if self.live:
            done = membership.refresh_accounts(conn, ws, self.live, self.ctx, batch.ids)
            segment_moves = done.entered + done.exited
        return moved, segment_moves

    def after_run(self, engine: Engine) -> int:
        """Every account (or very many) scored: one set-based pass per segment beats asking
        every segment about every batch."""
        if not self.segments or self.few:
            return 0
        done = membership.refresh(engine, self.ws, ctx=self.ctx)
        return sum(d.entered + d.exited for d in done.values())


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
    """Score the workspace (see `scoring.service.run_scoring`) and follow every change."""
    return scoring.run_scoring(
        engine, ws, full=full, account_ids=account_ids, as_of=as_of, on_progress=on_progress,
        stage_step=stage_step, batch_size=batch_size,
        follow=partial(AfterScoring, place_stages=place_stages),
    )  # fmt: skip


def run_claimed(
    engine: Engine,
    kind: str,
    *,
    workspaces: Sequence[int] | None = None,
    stage_step: StageStep | None = None,
    shard_size: int = shards.SHARD_SIZE,
    enqueue_part: shards.EnqueuePart | None = None,
) -> list[dict[str, Any]]:
    """The scheduled runs that are due (see `scoring.shards.run_claimed`), followed."""
    return shards.run_claimed(
        engine, kind, workspaces=workspaces, stage_step=stage_step, shard_size=shard_size,
        enqueue_part=enqueue_part, follow=AfterScoring,
    )  # fmt: skip


def run_part(
    engine: Engine,
    ws: int,
    run_id: str,
    part: int,
    *,
    batch_size: int = BATCH_SIZE,
    hold_us: int = shards.PART_HOLD_US,
) -> dict[str, Any]:
    """One part of a sharded full run (see `scoring.shards.run_part`), followed."""
    return shards.run_part(
        engine, ws, run_id, part, batch_size=batch_size, hold_us=hold_us, follow=AfterScoring
    )


# Requeuing lapsed parts scores nothing itself: the parts it sends run through `run_part`.
resume_parts = shards.resume_parts
