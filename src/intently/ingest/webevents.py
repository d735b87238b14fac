"""The collector's queries: web events, visitor identities, the workspace's collector run
of the day, and the purge of old IP addresses.

Bulk writes go through the driver's executemany: a flush writes thousands of rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.ingest.tracking import Problem
from intently.ingest.websignals import SOURCE
from intently.kit.db import (
    fetch_all,
    in_values,
    json_param,
    json_value,
    param_marker,
    read_tx,
    write_tx,
)
from intently.kit.ids import new_id
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.signals import repository as signals_repo
from intently.signals.schemas import default_settings
from intently.signals.store import source_config

_WEB_EVENT_COLUMNS = (
    "workspace_id", "id", "message_id", "type", "event", "anonymous_id", "user_id",
    "occurred_at", "received_at", "url", "path", "title", "referrer", "ip", "domain",
    "match_method", "provider", "confidence", "properties",
)  # fmt: skip

# (domain, match_method, provider, confidence)
Identity = tuple[str, str, str, float]


@dataclass
class Counts:
    """A workspace's counts since its last flush (for its collector run)."""

    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.accepted += other.accepted
        self.duplicate += other.duplicate
        self.rejected.update(other.rejected)
        self.skipped.update(other.skipped)


def _chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def stored_message_ids(conn: Connection, ws: int, ids: list[str]) -> set[str]:
    """Which of these message ids the workspace's web events already have."""
    m = param_marker(conn)
    out: set[str] = set()
    for part in _chunks(ids, 1000):
        cond, params = in_values(conn, "message_id", part)
        sql = f"SELECT message_id FROM web_events WHERE workspace_id = {m} AND {cond}"
        out.update(r[0] for r in fetch_all(conn, sql, (ws, *params)))
    return out


def insert_web_events(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert web events (`_WEB_EVENT_COLUMNS`); a message id already stored is skipped."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"INSERT INTO web_events ({', '.join(_WEB_EVENT_COLUMNS)}) "
        f"VALUES ({', '.join([m] * len(_WEB_EVENT_COLUMNS))}) "
        "ON CONFLICT (workspace_id, message_id) DO NOTHING"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, rows)
    finally:
        cur.close()


def load_identities(conn: Connection, ws: int, keys: list[str]) -> dict[str, Identity]:
    """The stored identity of each key (an anonymous id, `user:<id>`, `group:<id>`)."""
    m = param_marker(conn)
    out: dict[str, Identity] = {}
    for part in _chunks(keys, 1000):
        cond, params = in_values(conn, "anonymous_id", part)
        sql = (
            "SELECT anonymous_id, domain, match_method, provider, confidence FROM web_identities "
            f"WHERE workspace_id = {m} AND {cond}"
        )
        for r in fetch_all(conn, sql, (ws, *params)):
            out[r[0]] = (r[1], r[2], r[3], float(r[4]))
    return out


def save_identities(conn: Connection, ws: int, changed: dict[str, Identity], now: int) -> None:
    """Upsert identities changed by a flush, stamped `now`."""
    if not changed:
        return
    m = param_marker(conn)
    # An IP resolution never replaces a group or email identity, even one that another
    # process wrote since this flush read the table.
    sql = (
        "INSERT INTO web_identities (workspace_id, anonymous_id, domain, match_method, "
        f"provider, confidence, updated_at) VALUES ({', '.join([m] * 7)}) "
        "ON CONFLICT (workspace_id, anonymous_id) DO UPDATE SET domain = excluded.domain, "
        "match_method = excluded.match_method, provider = excluded.provider, "
        "confidence = excluded.confidence, updated_at = excluded.updated_at "
        "WHERE web_identities.match_method = 'ip' OR excluded.match_method <> 'ip'"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, [(ws, k, *v, now) for k, v in changed.items()])
    finally:
        cur.close()


def unresolved_events(
    conn: Connection, ws: int, anonymous_ids: list[str], since: int
) -> list[tuple[Any, ...]]:
    """(id, message_id, type, event, anonymous_id, occurred_at, path, url) still unresolved."""
    m = param_marker(conn)
    out: list[tuple[Any, ...]] = []
    for part in _chunks(anonymous_ids, 500):
        cond, params = in_values(conn, "anonymous_id", part)
        sql = (
            "SELECT id, message_id, type, event, anonymous_id, occurred_at, path, url "
            f"FROM web_events WHERE workspace_id = {m} AND {cond} AND domain IS NULL "
            f"AND type IN ('page', 'track') AND occurred_at >= {m}"
        )
        out.extend(fetch_all(conn, sql, (ws, *params, since)))
    return out


def resolve_stored(conn: Connection, ws: int, rows: list[tuple[Any, ...]]) -> None:
    """rows: (domain, match_method, provider, confidence, event id)."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"UPDATE web_events SET domain = {m}, match_method = {m}, provider = {m}, "
        f"confidence = {m} WHERE workspace_id = {m} AND id = {m}"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, [(*r[:4], ws, r[4]) for r in rows])
    finally:
        cur.close()


def collector_run(conn: Connection, ws: int, day_label: str, now: int) -> str:
    """The workspace's collector run of the day (its counts grow with every flush)."""
    m = param_marker(conn)
    rows = fetch_all(
        conn,
        f"SELECT id FROM ingest_runs WHERE workspace_id = {m} AND source = {m} "
        f"AND kind = 'collector' AND label = {m} ORDER BY id LIMIT 1",
        (ws, SOURCE, day_label),
    )
    if rows:
        return str(rows[0][0])
    run_id = new_id()
    signals_repo.insert_run(
        conn,
        {
            "workspace_id": ws, "id": run_id, "source": SOURCE, "kind": "collector",
            "label": day_label, "status": "done", "started_at": now, "finished_at": now,
            "read": 0, "accepted": 0, "updated": 0, "duplicate": 0, "rejected": 0,
            "skipped": 0, "reasons": {"rejected": {}, "skipped": {}}, "error": None,
        },
    )  # fmt: skip
    return run_id


def count_run(conn: Connection, ws: int, run_id: str, counts: Counts, now: int) -> None:
    """Add a flush's counts and reasons to the collector run `run_id`."""
    m = param_marker(conn)
    rows = fetch_all(
        conn, f"SELECT reasons FROM ingest_runs WHERE workspace_id = {m} AND id = {m}", (ws, run_id)
    )
    reasons = json_value(rows[0][0]) if rows else {}
    for kind, by in (("rejected", counts.rejected), ("skipped", counts.skipped)):
        merged = Counter(reasons.get(kind) or {})
        merged.update(by)
        reasons[kind] = dict(merged)
    conn.exec_driver_sql(
        f'UPDATE ingest_runs SET "read" = "read" + {m}, accepted = accepted + {m}, '
        f"duplicate = duplicate + {m}, rejected = rejected + {m}, skipped = skipped + {m}, "
        f"reasons = {m}, finished_at = {m} WHERE workspace_id = {m} AND id = {m}",
        (
            counts.read,
            counts.accepted,
            counts.duplicate,
            sum(counts.rejected.values()),
            sum(counts.skipped.values()),
            json_param(reasons),
            now,
            ws,
            run_id,
        ),
    )


def insert_rejects(conn: Connection, ws: int, run_id: str, rejects: list[Problem]) -> None:
    """Keep the refused events as rejects of the collector run `run_id`."""
    if not rejects:
        return
    now = now_us()
    signals_repo.insert_rejects(
        conn,
        [
            {
                "workspace_id": ws, "id": new_id(), "run_id": run_id, "source": SOURCE,
                "line": None, "reason": p.reason, "detail": p.message, "record": p.record,
                "ref": None, "status": "open", "created_at": now,
            }
            for p in rejects
        ],
    )  # fmt: skip


def purge_ips(engine: Engine, ws: int | None = None, *, now: int | None = None) -> int:
    """Set web_events.ip to NULL past each workspace's ipRetentionDays; returns rows changed."""
    now = now_us() if now is None else now
    if ws is not None:
        workspaces = [ws]
    else:
        # Only workspaces that ever had a write key can have web events.
        with read_tx(engine) as conn:
            rows = fetch_all(conn, "SELECT DISTINCT workspace_id FROM write_keys")
        workspaces = [int(r[0]) for r in rows]
    defaults = default_settings(SOURCE)
    total = 0
    for w in workspaces:
        with write_tx(engine) as conn:
            days = int(source_config(conn, w, SOURCE, defaults)["ipRetentionDays"])
            m = param_marker(conn)
            result = conn.exec_driver_sql(
                f"UPDATE web_events SET ip = NULL WHERE workspace_id = {m} "
                f"AND received_at < {m} AND ip IS NOT NULL",
                (w, now - days * US_PER_DAY),
            )
            total += max(result.rowcount, 0)
    return total


def load_claims(conn: Connection, ws: int, subjects: list[str], since: int) -> dict[str, set[str]]:
    """The domains each subject (`v:<visitor>`, `a:<address hash>`) claimed since `since`."""
    m = param_marker(conn)
    out: dict[str, set[str]] = {}
    for part in _chunks(subjects, 1000):
        cond, params = in_values(conn, "subject", part)
        sql = (
            f"SELECT subject, domain FROM web_claims WHERE workspace_id = {m} AND {cond} "
            f"AND claimed_at >= {m}"
        )
        for subject, domain in fetch_all(conn, sql, (ws, *params, since)):
            out.setdefault(subject, set()).add(domain)
    return out


def save_claims(conn: Connection, ws: int, claims: list[tuple[str, str]], now: int) -> None:
    """Record (subject, domain) claims at `now`; a claim made again restarts its window."""
    if not claims:
        return
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO web_claims (workspace_id, subject, domain, claimed_at) "
        f"VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (workspace_id, subject, domain) "
        "DO UPDATE SET claimed_at = excluded.claimed_at",
        [(ws, s, d, now) for s, d in claims],
    )


def purge_claims(engine: Engine, before: int) -> int:
    """Delete claims older than `before` (the window is over); returns rows deleted."""
    with write_tx(engine) as conn:
        m = param_marker(conn)
        result = conn.exec_driver_sql(f"DELETE FROM web_claims WHERE claimed_at < {m}", (before,))
        return max(result.rowcount, 0)
