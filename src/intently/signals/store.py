"""The signal store: storing signals idempotently with their daily rollup, and the
accounting every import and pull shares (`IngestRun`).

Every source ends here: importers and pullers through `IngestRun`, the collector and
`POST /signals` through `store`. A signal is identified by (source, natural key): the
same key again with the same content is a duplicate; with other content (a revised
LinkedIn day, a re-scored Bombora week) it is an update, and the rollup moves with it.

This is the signals domain's write path (L2): the ingest engines and the signals
service both build on it, so it imports nothing above the repositories.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.catalog import BUILTIN_SOURCES
from intently.kit.db import read_tx, write_tx
from intently.kit.heartbeat import Heartbeat, reap
from intently.kit.ids import new_id
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.settings import get_settings
from intently.signals import repository as repo
from intently.signals.tables import ingest_runs

CREATED, UPDATED, DUPLICATE = "created", "updated", "duplicate"


def day_of(us: int) -> int:
    """UTC days since the epoch."""
    return us // US_PER_DAY


@dataclass(slots=True)
class SignalIn:
    """One signal ready to store: domain normalised, time in micros, key chosen by its source."""

    domain: str
    source: str
    type: str
    occurred_at: int
    natural_key: str
    value: float = 1.0
    topic: str = ""
    provider: str = ""
    match_method: str = "domain"
    confidence: float = 1.0


def content_key(*parts: object) -> str:
    """A natural key from a signal's content, for sources that give no id of their own."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return "h:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def store(conn: Connection, ws: int, items: list[SignalIn], run_id: str | None = None) -> list[str]:
    """Store signals in the caller's write transaction; one outcome per item, in order.

    A key repeated within `items` counts once: later copies are duplicates, or updates
    when their content differs (the last one wins).
    """
    repo.lock_signals(conn, ws)
    now = now_us()
    outcomes: list[str] = [""] * len(items)
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(items):
        by_source.setdefault(s.source, []).append(i)
    inserts: dict[tuple[str, str], list[Any]] = {}
    updates: dict[str, tuple[Any, ...]] = {}
    deltas: repo.RollupDeltas = {}

    def add(key: tuple[str, str, str, str, int], count: int, value: float) -> None:
        d = deltas.get(key)
        if d is None:
            deltas[key] = [count, value]
        else:
            d[0] += count
            d[1] += value

    for source, indexes in by_source.items():
        stored = repo.existing(conn, ws, source, list({items[i].natural_key for i in indexes}))
        for i in indexes:
            s = items[i]
            day = day_of(s.occurred_at)
            nk = s.natural_key
            pending = inserts.get((source, nk))
            if pending is not None:
                # Seen earlier in this batch and not stored before: keep the last content.
                same = (
                    pending[2] == s.domain
                    and pending[4] == s.type
                    and pending[5] == s.topic
                    and pending[6] == s.occurred_at
                    and pending[8] == s.value
                )
                if same:
                    outcomes[i] = DUPLICATE
                    continue
                add((pending[2], source, pending[4], pending[5], pending[7]), -1, -pending[8])
                pending[2], pending[4], pending[5] = s.domain, s.type, s.topic
                pending[6], pending[7], pending[8] = s.occurred_at, day, s.value
                pending[9], pending[10], pending[11] = s.provider, s.match_method, s.confidence
                add((s.domain, source, s.type, s.topic, day), 1, s.value)
                outcomes[i] = UPDATED
                continue
            old = stored.get(nk)
            if old is None:
                sid = new_id()
                inserts[(source, nk)] = [
                    ws, sid, s.domain, source, s.type, s.topic, s.occurred_at, day, s.value,
                    s.provider, s.match_method, s.confidence, nk, run_id, now,
                ]  # fmt: skip
                add((s.domain, source, s.type, s.topic, day), 1, s.value)
                outcomes[i] = CREATED
                continue
            oid, odomain, otype, otopic, oday, ovalue, ooccurred = old
            if (
                odomain == s.domain
                and otype == s.type
                and otopic == s.topic
                and ooccurred == s.occurred_at
                and ovalue == s.value
            ):
                outcomes[i] = DUPLICATE
                continue
            add((odomain, source, otype, otopic, oday), -1, -ovalue)
            add((s.domain, source, s.type, s.topic, day), 1, s.value)
            stored[nk] = (oid, s.domain, s.type, s.topic, day, s.value, s.occurred_at)
            updates[oid] = (
                oid, s.domain, s.type, s.topic, s.occurred_at, day, s.value,
                s.provider, s.match_method, s.confidence, run_id, now,
            )  # fmt: skip
            outcomes[i] = UPDATED
    repo.insert_signals(conn, [tuple(r) for r in inserts.values()])
    repo.update_signals(conn, ws, list(updates.values()))
    repo.add_to_rollup(conn, ws, deltas)
    return outcomes


def known_sources(conn: Connection, ws: int) -> set[str]:
    return set(BUILTIN_SOURCES) | set(repo.custom_source_names(conn, ws))


# ---- ingest runs: the accounting every import and pull shares -----------------------------


@dataclass
class RunReport:
    """What an import or pull did: read = accepted + updated + duplicate + rejected + skipped."""

    run_id: str
    source: str
    label: str
    read: int = 0
    accepted: int = 0
    updated: int = 0
    duplicate: int = 0
    rejected: int = 0
    skipped: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    status: str = "running"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "source": self.source,
            "label": self.label,
            "status": self.status,
            "read": self.read,
            "accepted": self.accepted,
            "updated": self.updated,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "rejectedByReason": dict(sorted(self.rejected_by_reason.items())),
            "skipped": self.skipped,
            "skippedByReason": dict(sorted(self.skipped_by_reason.items())),
            "error": self.error,
        }


class IngestRun:
    """Accounts for one import or pull, and writes its signals in batches.

    Each batch (signals, rejects and the run's counts) commits in one transaction, so a
    run that stops halfway leaves whole batches and a report that matches them; running
    it again turns what was written into duplicates.
    """

    def __init__(
        self,
        engine: Engine,
        ws: int,
        source: str,
        kind: str,
        label: str,
        *,
        batch_size: int = 5000,
        on_progress: Callable[[RunReport], None] | None = None,
        on_flush: Callable[[Connection], None] | None = None,
    ) -> None:
        """`on_flush(conn)` runs inside each batch's transaction, for writes that must
        commit with the batch's signals (marking re-applied rejects, say)."""
        self.engine, self.ws, self.batch_size = engine, ws, batch_size
        self.on_flush = on_flush
        self.report = RunReport(run_id=new_id(), source=source, label=label)
        self.kind = kind
        self.on_progress = on_progress
        self._signals: list[SignalIn] = []
        self._rejects: list[dict[str, Any]] = []
        self._started = now_us()
        with write_tx(engine) as conn:
            repo.insert_run(
                conn, self._run_row() | {"started_at": self._started, "heartbeat_at": self._started}
            )
        # Until finish(): a run whose process dies is then seen as stopped (kit/heartbeat.py).
        self._heartbeat = Heartbeat(
            engine, ingest_runs, ws, self.run_id, get_settings().run_lease_s, owner=self
        )

    @property
    def run_id(self) -> str:
        return self.report.run_id

    def read(self, n: int = 1) -> None:
        """Count rows (or events) read from the input."""
        self.report.read += n

    def add(self, signal: SignalIn) -> None:
        self._signals.append(signal)
        if len(self._signals) >= self.batch_size:
            self.flush()

    def reject(
        self,
        reason: str,
        detail: str,
        record: Any,
        *,
        line: int | None = None,
        ref: str | None = None,
    ) -> None:
        """Keep a row that cannot be used, with its reason (a short code) and a sentence."""
        self.report.rejected += 1
        self.report.rejected_by_reason[reason] += 1
        self._rejects.append(
            {
                "workspace_id": self.ws,
                "id": new_id(),
                "run_id": self.run_id,
                "source": self.report.source,
                "line": line,
                "reason": reason,
                "detail": detail,
                "record": record,
                "ref": ref,
                "status": "open",
                "created_at": now_us(),
            }
        )
        if len(self._rejects) >= self.batch_size:
            self.flush()

    def skip(self, reason: str) -> None:
        """A usable row that the workspace's settings leave out (below threshold, topic)."""
        self.report.skipped += 1
        self.report.skipped_by_reason[reason] += 1

    def flush(self) -> None:
        batch, rejects = self._signals, self._rejects
        self._signals, self._rejects = [], []
        with write_tx(self.engine) as conn:
            outcomes = store(conn, self.ws, batch, self.run_id) if batch else []
            counts = Counter(outcomes)
            self.report.accepted += counts[CREATED]
            self.report.updated += counts[UPDATED]
            self.report.duplicate += counts[DUPLICATE]
            repo.insert_rejects(conn, rejects)
            if self.on_flush is not None:
                self.on_flush(conn)
            repo.update_run(conn, self.ws, self.run_id, self._run_row())
        if self.on_progress is not None:
            self.on_progress(self.report)

    def finish(self, error: str | None = None) -> RunReport:
        try:
            if error is None:
                self.flush()
            self.report.status = "failed" if error else "done"
            self.report.error = error
            with write_tx(self.engine) as conn:
                repo.update_run(
                    conn, self.ws, self.run_id, self._run_row() | {"finished_at": now_us()}
                )
        finally:
            self._heartbeat.stop()
        return self.report

    def _run_row(self) -> dict[str, Any]:
        r = self.report
        return {
            "workspace_id": self.ws,
            "id": r.run_id,
            "source": r.source,
            "kind": self.kind,
            "label": r.label,
            "status": r.status,
            "read": r.read,
            "accepted": r.accepted,
            "updated": r.updated,
            "duplicate": r.duplicate,
            "rejected": r.rejected,
            "skipped": r.skipped,
            "reasons": {
                "rejected": dict(r.rejected_by_reason),
                "skipped": dict(r.skipped_by_reason),
            },
            "error": r.error,
        }


@contextmanager
def ingest_run(
    engine: Engine,
    ws: int,
    source: str,
    kind: str,
    label: str,
    *,
    batch_size: int = 5000,
    on_progress: Callable[[RunReport], None] | None = None,
    stop_on: type[Exception] | tuple[type[Exception], ...] = (),
) -> Iterator[IngestRun]:
    """An IngestRun that finishes itself: `done` on success, `failed` with the error kept.

    An exception of a `stop_on` type (the input broke off: a file cut short, over a limit)
    is not raised: what was read before it is written, and the run ends `failed` with its
    message, so the report says where the input stopped and counts exactly what is stored.
    """
    run = IngestRun(engine, ws, source, kind, label, batch_size=batch_size, on_progress=on_progress)
    try:
        yield run
    except stop_on as exc:
        run.flush()
        run.finish(error=str(exc))
        return
    except BaseException as exc:
        run.finish(error=f"{type(exc).__name__}: {exc}")
        raise
    run.finish()


def reap_stopped_runs(engine: Engine, ws: int | None = None) -> int:
    """Mark failed the imports and pulls (of `ws`, or all) whose process ended mid-run."""
    return reap(engine, ingest_runs, get_settings().run_lease_s, ws=ws)


# ---- reading -----------------------------------------------------------------------------


def source_config(
    conn: Connection, ws: int, source: str, defaults: dict[str, Any]
) -> dict[str, Any]:
    """A source's settings for the workspace: the stored ones over the defaults."""
    return defaults | (repo.get_source_config(conn, ws, source) or {})


def read_source_config(
    engine: Engine, ws: int, source: str, defaults: dict[str, Any]
) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return source_config(conn, ws, source, defaults)


def iter_rejects(
    engine: Engine,
    ws: int,
    *,
    source: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    status: str | None = "open",
    batch: int = 1000,
) -> Iterator[dict[str, Any]]:
    """Every matching reject, oldest first, read in keyset batches (for exports)."""
    after = None
    while True:
        with read_tx(engine) as conn:
            rows = repo.rejects_page(
                conn, ws, after=after, limit=batch, source=source, reason=reason,
                run_id=run_id, status=status,
            )  # fmt: skip
        yield from rows[:batch]
        if len(rows) <= batch:
            return
        after = rows[batch - 1]["id"]
