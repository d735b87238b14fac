"""Dynamic segment membership: the accounts whose data satisfies the segment's rule.

Set-based: per segment and slice of accounts, one query finds the accounts that enter
(the rule holds, not yet a member) and one the members that exit (the rule no longer
holds); only those rows are written. The rule compiles to the same SQL the journey
stages use (`intently.rules`), so membership is exactly the rule applied to the data.

Who keeps what: draft segments keep their membership quietly (it can be looked at
before going live); active segments also record `segment.entered` / `segment.exited`
events and mark the accounts changed, since their `segments` field changed; archived
segments keep none. When membership is recomputed: for the accounts a scoring run
scores (an incremental run every minute picks up every changed account), for every
account after a full run (hourly, which also moves time windows on), and for one
segment when it is created, its rule changes or it comes back from the archive.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.accounts import repository as accounts_repo
from intently.events.repository import record as record_events
from intently.kit.db import lock_workspace, make_engine, read_tx, tick, write_tx
from intently.kit.errors import ValidationFailed
from intently.kit.timefmt import now_us
from intently.rules import (
    Context,
    Rule,
    compile_rule,
    custom_field_types,
    parse_rule,
    size_problems,
)
from intently.scoring.model import active_model, surge_params
from intently.segments import repository as repo
from intently.segments.repository import membership_events
from intently.stages.definition import active_definition, context

# Accounts written per transaction when a whole-workspace refresh applies what differs:
# SQLite's one writer is never held long.
SLICE = 20_000
# Segments compared with the data at once by a whole-workspace refresh of a workspace of
# at least PARALLEL_FROM accounts (below that, starting workers costs more than it saves).
WORKERS = max(1, min(2, os.cpu_count() or 1))
PARALLEL_FROM = 50_000
# Ids per IN list: under every driver's parameter limit.
ID_CHUNK = 5_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Live:
    """A segment ready to evaluate: its row and its parsed rule."""

    seg: dict[str, Any]
    rule: Rule


@dataclass(slots=True)
class Changes:
    entered: int = 0
    exited: int = 0
    seconds: float = 0.0

    def add(self, other: Changes) -> None:
        self.entered += other.entered
        self.exited += other.exited

    def as_dict(self) -> dict[str, Any]:
        return {"entered": self.entered, "exited": self.exited, "seconds": round(self.seconds, 3)}


def rule_context(conn: Connection, ws: int, as_of: int | None = None) -> Context:
    """The context rules are evaluated in: the stage list's deal-stage labels and the
    scoring model's surge windows, at `as_of` (now by default)."""
    _, definition = active_definition(conn, ws)
    _, model = active_model(conn, ws)
    return context(definition, as_of, surge=surge_params(model))


def live_segments(conn: Connection, ws: int) -> list[Live]:
    """The workspace's draft and active dynamic segments with their rules parsed.

    A rule saved before the limits on a rule's size existed and beyond them is left out
    (its membership stays as it was), with a warning logged: one such rule must not fail
    every scoring run of its workspace."""
    types = custom_field_types(conn, ws)
    out = []
    for seg in repo.live_dynamic(conn, ws):
        rule = parse_stored(seg["rules"], types)
        problems = size_problems(rule, "rules")
        if problems:
            text = "; ".join(problems[0]["constraints"].values())
            _warn_skipped(ws, seg["id"], text)
            continue
        out.append(Live(seg, rule))
    return out


@lru_cache(maxsize=1024)
def _warn_skipped(ws: int, sid: str, text: str) -> None:
    # Cached: an incremental run reads the live segments every minute.
    log.warning("workspace %s: segment %s not refreshed: %s; narrow its rule", ws, sid, text)


def parse_stored(doc: dict[str, Any], custom_fields: dict[str, str]) -> Rule:
    """A saved rule, its custom fields typed by their definitions. A field deactivated
    since the rule was saved no longer parses typed; its type is then inferred, and an
    account without the (hidden) value simply does not match, rather than failing the run.
    The limits on size are not applied here (see `live_segments`)."""
    try:
        return parse_rule(doc, custom_fields=custom_fields, bounded=False)
    except ValidationFailed:
        return parse_rule(doc, bounded=False)


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + ID_CHUNK]) for i in range(0, len(ids), ID_CHUNK)]


def apply(
    conn: Connection,
    ws: int,
    live: Live,
    ctx: Context,
    scope: tuple[str, str] | Collection[str],
    clock: int | None = None,
) -> tuple[Changes, int | None]:
    """Bring one segment's membership up to date over `scope` (an id range (lo, hi] or
    ids) in the caller's write transaction. Returns the changes and the clock used (the
    one given, or a new tick when something changed)."""
    sid = live.seg["id"]
    cond = compile_rule(live.rule, ws, ctx, conn.dialect.name)
    scopes: list[Any] = [scope] if isinstance(scope, tuple) else _chunks(sorted(scope))
    ins: list[str] = []
    outs: list[str] = []
    for s in scopes:
        ins.extend(repo.entering(conn, ws, sid, cond, s))
        outs.extend(repo.exiting(conn, ws, sid, cond, s))
    if not ins and not outs:
        return Changes(), clock
    now = now_us()
    repo.add(conn, ws, sid, ins, now)
    for part in _chunks(outs):
        repo.remove(conn, ws, sid, part)
    if live.seg["status"] == "active":
        clock = clock if clock is not None else tick(conn, ws)
        accounts_repo.touch(conn, ws, ins + outs, clock)
        record_events(conn, ws, membership_events(live.seg, ins, outs), seq=clock)
    return Changes(len(ins), len(outs)), clock


def refresh_accounts(
    conn: Connection,
    ws: int,
    segments: Sequence[Live],
    ctx: Context,
    account_ids: Collection[str],
    clock: int | None = None,
) -> Changes:
    """Every live dynamic segment over these accounts, in the caller's write transaction."""
    total = Changes()
    if not segments or not account_ids:
        return total
    lock_workspace(conn, ws)  # two refreshes of one segment must not add the same member
    for live in segments:
        changes, clock = apply(conn, ws, live, ctx, account_ids, clock)
        total.add(changes)
    return total


def refresh(
    engine: Engine,
    ws: int,
    *,
    segment_ids: Collection[str] | None = None,
    as_of: int | None = None,
    ctx: Context | None = None,
    workers: int | None = None,
    parallel_from: int | None = None,
) -> dict[str, Changes]:
    """Recompute the membership of the workspace's live dynamic segments (or of these
    ones) over every account, in `ctx` (by default the workspace's rule context at `as_of`).

    Each segment is first compared with the data in a read transaction: the rule over
    every account, the expensive part, which takes no lock. Only the accounts found to
    differ are then written, re-checked in a short write transaction per slice, so a
    change that committed in between is never undone.

    In a workspace of `parallel_from` accounts or more, `workers` segments are compared
    at once: in child processes on SQLite (threads gain nothing there: two threads on
    two connections ran no faster than one), in threads on PostgreSQL (the server does
    the work)."""
    workers = WORKERS if workers is None else workers
    parallel_from = PARALLEL_FROM if parallel_from is None else parallel_from
    with read_tx(engine) as conn:
        if ctx is None:
            ctx = rule_context(conn, ws, as_of)
        segments = [
            s for s in live_segments(conn, ws) if segment_ids is None or s.seg["id"] in segment_ids
        ]
        big = bool(segments) and repo.account_count(conn, ws) >= parallel_from
    if not segments:
        return {}
    if workers <= 1 or len(segments) == 1 or not big:
        return {
            live.seg["id"]: _apply_differ(engine, ws, live, ctx, _differ(engine, ws, live, ctx))
            for live in segments
        }
    t0 = time.perf_counter()
    out: dict[str, Changes] = {}
    pool: Executor
    if engine.dialect.name == "sqlite":
        url = engine.url.render_as_string(hide_password=False)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        submit = lambda live: pool.submit(_differ_in_child, url, ws, live, ctx)  # noqa: E731
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segments")
        submit = lambda live: pool.submit(_differ, engine, ws, live, ctx)  # noqa: E731
    with pool:
        futures = {submit(live): live for live in segments}
        for future in as_completed(futures):  # written here, one segment at a time
            live = futures[future]
            done = _apply_differ(engine, ws, live, ctx, future.result())
            done.seconds = time.perf_counter() - t0  # from the start until it was written
            out[live.seg["id"]] = done
    return {live.seg["id"]: out[live.seg["id"]] for live in segments}


def _differ(engine: Engine, ws: int, live: Live, ctx: Context) -> list[str]:
    """The accounts whose membership of this segment is not what its rule says."""
    with read_tx(engine) as conn:
        # The rule once over every account, compared with the members as sets: cheaper
        # than asking, account by account, whether each is a member and whether each
        # member still matches (which evaluates the rule twice for members).
        cond = compile_rule(live.rule, ws, ctx, conn.dialect.name)
        matching = set(repo.matching_all(conn, ws, cond))
        members = set(repo.member_ids(conn, ws, live.seg["id"]))
    return sorted(matching ^ members)


_child_engines: dict[str, Engine] = {}


def _differ_in_child(url: str, ws: int, live: Live, ctx: Context) -> list[str]:
    """`_differ` in a worker process, on an engine of its own (kept for its next task)."""
    engine = _child_engines.get(url)
    if engine is None:
        engine = _child_engines[url] = make_engine(url, pool_size=1)
    return _differ(engine, ws, live, ctx)


def _apply_differ(engine: Engine, ws: int, live: Live, ctx: Context, differ: list[str]) -> Changes:
    """Write what differs, each slice re-checked against the data in its transaction."""
    t0 = time.perf_counter()
    sid = live.seg["id"]
    done = Changes()
    for i in range(0, len(differ), SLICE):
        with write_tx(engine) as conn:
            lock_workspace(conn, ws)
            current = repo.get(conn, ws, sid)
            if current is None or current["status"] not in ("draft", "active"):
                break  # archived or deleted meanwhile: it keeps no membership
            if current["rules"] != live.seg["rules"]:
                break  # a new rule: the change that saved it recomputes it
            changes, _ = apply(conn, ws, Live(current, live.rule), ctx, differ[i : i + SLICE])
            done.add(changes)
    done.seconds = time.perf_counter() - t0
    return done
