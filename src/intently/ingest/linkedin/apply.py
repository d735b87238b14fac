"""Applying LinkedIn rows: resolve their organizations, then make signals or rejects; the
file importer and the re-apply of `unknown_organization` rejects stand on it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection, Engine

from intently.ingest.files import CsvInput, FileFormatError, FileLimits, match_columns
from intently.ingest.linkedin.orgs import Match, OrgHints, OrgResolver
from intently.ingest.linkedin.rows import (
    EXPECTED,
    OPTIONAL,
    REQUIRED,
    SOURCE,
    Row,
    RowError,
    missing_columns,
    parse_file_row,
    parse_record,
)
from intently.kit.db import read_tx
from intently.signals import repository as signals_repo
from intently.signals.store import IngestRun, RunReport, ingest_run, iter_rejects
from intently.signals.tables import signal_rejects

UNKNOWN = "unknown_organization"
CHUNK_ROWS = 2000  # rows resolved together: one mapping lookup per chunk, not per row


@dataclass(slots=True)
class Pending:
    row: Row
    record: Callable[[], Any]  # the row as read, built only when it is rejected
    line: int | None = None
    reject_id: str | None = None  # when re-applying a reject


def merged_hints(items: list[Pending]) -> dict[str, OrgHints]:
    """Per organization, what its rows say about it (the first non-empty value of each)."""
    out: dict[str, OrgHints] = {}
    for p in items:
        h = p.row.hints
        known = out.get(p.row.org)
        if known is None:
            out[p.row.org] = OrgHints(h.name, h.vanity, h.website)
            continue
        known.name = known.name or h.name
        known.vanity = known.vanity or h.vanity
        known.website = known.website or h.website
    return out


def _unknown_detail(row: Row) -> str:
    name = f" ({row.hints.name})" if row.hints.name else ""
    return (
        f"LinkedIn organization {row.org}{name} is not mapped to a domain: map it with "
        f"`intently linkedin map {row.org} DOMAIN` or give its account a linkedinUrl, then "
        "re-apply"
    )


def constant(value: Any) -> Callable[[], Any]:
    """A record already built, as `Pending.record`."""
    return lambda: value


def _fingerprint(record: Any) -> bytes:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).digest()


class OpenRejects:
    """The open unknown-organization rejects of one run's organizations, as fingerprints of
    their records: a row already waiting there is not rejected twice."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self.engine, self.ws = engine, ws
        self._loaded: set[str] = set()
        self._seen: set[bytes] = set()

    def add(self, record: Any) -> bool:
        """True when the record is new (and now remembered)."""
        fp = _fingerprint(record)
        if fp in self._seen:
            return False
        self._seen.add(fp)
        return True

    def load(self, orgs: set[str]) -> None:
        todo = orgs - self._loaded
        if todo:
            with read_tx(self.engine) as conn:
                self._seen.update(
                    _fingerprint(r) for r in _open_unknown_records(conn, self.ws, todo)
                )
            self._loaded |= todo


def apply_rows(
    engine: Engine,
    ws: int,
    run: IngestRun,
    resolver: OrgResolver,
    items: list[Pending],
    *,
    resolved: dict[str, Match | None] | None = None,
    open_rejects: OpenRejects | None = None,
) -> list[Pending]:
    """Turn resolved rows into signals (zero counts skipped) and unresolved ones into rejects.

    Returns the rows whose organization stayed unknown. Without `open_rejects` (a re-apply)
    they are left alone instead of being rejected again.
    """
    if not items:
        return []
    if resolved is None:
        hints = merged_hints(items)
        resolved = resolver.resolve(hints)
    zero_keys = [
        p.row.key(t)
        for p in items
        if resolved.get(p.row.org) is not None
        for t, n in p.row.counts.items()
        if not n
    ]
    revisable: set[str] = set()
    if zero_keys:
        with read_tx(engine) as conn:
            revisable = set(signals_repo.existing(conn, ws, SOURCE, zero_keys))
    unknown = [p for p in items if resolved.get(p.row.org) is None]
    if unknown and open_rejects is not None:
        open_rejects.load({p.row.org for p in unknown})
    for p in items:
        match = resolved.get(p.row.org)
        if match is None:
            if open_rejects is None:
                continue
            run.read()
            record = p.record()
            if not open_rejects.add(record):
                run.skip("already_rejected")
                continue
            run.reject(UNKNOWN, _unknown_detail(p.row), record, line=p.line, ref=p.row.org)
            continue
        run.read(len(p.row.counts))
        for type_, n in p.row.counts.items():
            if n:
                run.add(p.row.signal(type_, n, match))
            elif p.row.key(type_) in revisable:
                # LinkedIn revised this count to zero: the stored signal follows.
                run.add(p.row.signal(type_, 0.0, match))
            else:
                run.skip("zero_count")
    return unknown


# ---- the file importer -------------------------------------------------------------------


def import_file(
    engine: Engine,
    ws: int,
    path: str | Path,
    *,
    on_progress: Callable[[RunReport, int, int], None] | None = None,
    limits: FileLimits | None = None,
) -> RunReport:
    """Import a LinkedIn company engagement export (CSV or .csv.gz); see `ingest.linkedin`.

    A file that breaks off (cut short, over a limit) ends the run `failed`, the rows before
    the break stored.
    """
    with CsvInput(path, what="LinkedIn company engagement export", limits=limits) as inp:
        cols = match_columns(inp.header, {**REQUIRED, **OPTIONAL})
        missing = missing_columns(cols)
        if missing:
            raise inp.missing_columns(missing, EXPECTED)
        progress = (
            None
            if on_progress is None
            else (lambda r: on_progress(r, inp.bytes_read(), inp.total_bytes))
        )
        resolver = OrgResolver(engine, ws)
        open_rejects = OpenRejects(engine, ws)
        with ingest_run(
            engine, ws, SOURCE, "file", inp.path.name, on_progress=progress,
            stop_on=FileFormatError,
        ) as run:  # fmt: skip
            pending: list[Pending] = []
            try:
                for line, cells in inp.rows():
                    try:
                        row = parse_file_row(cols, inp.header, cells)
                    except RowError as exc:
                        run.read()
                        run.reject(exc.reason, exc.detail, inp.record(cells), line=line)
                        continue
                    pending.append(Pending(row, partial(inp.record, cells), line))
                    if len(pending) >= CHUNK_ROWS:
                        apply_rows(engine, ws, run, resolver, pending, open_rejects=open_rejects)
                        pending = []
            except FileFormatError:
                # The file broke off: the rows before the break are applied like any other.
                apply_rows(engine, ws, run, resolver, pending, open_rejects=open_rejects)
                raise
            apply_rows(engine, ws, run, resolver, pending, open_rejects=open_rejects)
        return run.report


# ---- re-applying rejects -----------------------------------------------------------------


class _ReapplyRun(IngestRun):
    """An IngestRun whose every write also marks the rejects it re-applied, atomically."""

    def __init__(self, engine: Engine, ws: int) -> None:
        self._marks: list[str] = []
        # Writes happen only when `flush` is called, after whole rejects (never mid-reject).
        super().__init__(
            engine, ws, SOURCE, "reapply", "unknown organizations", batch_size=1 << 62,
            on_flush=self._write_marks,
        )  # fmt: skip

    def mark(self, reject_id: str) -> None:
        self._marks.append(reject_id)

    def _write_marks(self, conn: Connection) -> None:
        marks, self._marks = self._marks, []
        signals_repo.mark_rejects(conn, self.ws, marks, "reapplied")


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def reapply(engine: Engine, ws: int) -> RunReport:
    """Re-process every open `unknown_organization` reject whose organization now maps.

    Each reject's signals and its `reapplied` mark commit in one transaction; rejects whose
    organization still maps to nothing stay open.
    """
    run = _ReapplyRun(engine, ws)
    resolver = OrgResolver(engine, ws)
    try:
        rejects = iter_rejects(engine, ws, source=SOURCE, reason=UNKNOWN, status="open")
        for batch in _batches(rejects, 1000):
            items: list[Pending] = []
            for r in batch:
                try:
                    row = parse_record(r["record"])
                except RowError:
                    continue  # not re-appliable as stored; it stays open for a person to see
                if r["ref"] and row.org != r["ref"]:
                    continue
                items.append(Pending(row, constant(r["record"]), r["line"], r["id"]))
            unknown = apply_rows(engine, ws, run, resolver, items)
            still = {id(p) for p in unknown}
            for p in items:
                if id(p) not in still and p.reject_id is not None:
                    run.mark(p.reject_id)
            run.flush()
    except BaseException as exc:
        run.finish(error=f"{type(exc).__name__}: {exc}")
        raise
    return run.finish()


# ---- queries -----------------------------------------------------------------------------


def _open_unknown_records(conn: Connection, ws: int, orgs: set[str]) -> Iterator[Any]:
    """The records of the open unknown-organization rejects of these organizations."""
    r = signal_rejects.c
    refs = sorted(orgs)
    for i in range(0, len(refs), 5000):
        q = select(r.record).where(
            and_(
                r.workspace_id == ws,
                r.source == SOURCE,
                r.status == "open",
                r.reason == UNKNOWN,
                r.ref.in_(refs[i : i + 5000]),
            )
        )
        for (record,) in conn.execute(q.execution_options(yield_per=2000)):
            yield record
