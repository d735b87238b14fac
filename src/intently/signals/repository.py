"""Queries for the signal store. Bulk paths hand the driver plain tuples, one statement a batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from intently.kit.db import fetch_all, in_values, json_param, json_value, param_marker
from intently.signals.tables import (
    custom_sources,
    ingest_runs,
    signal_rejects,
    signals,
)

# Rollup key: (domain, source, type, topic, day) -> (count delta, value delta)
RollupDeltas = dict[tuple[str, str, str, str, int], list[float]]

_SIGNAL_COLUMNS = tuple(c.name for c in signals.columns)


def lock_signals(conn: Connection, ws: int) -> None:
    """Serialise this transaction with the workspace's other signal writers until it ends.

    Storing checks natural keys and then inserts; two concurrent writers of the same key
    must see each other. SQLite writers are serialised already. A transaction-scoped
    advisory lock (not the workspace row) so signal writes never wait for account writes.
    """
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (7_301, ws))


def existing(
    conn: Connection, ws: int, source: str, keys: list[str]
) -> dict[str, tuple[str, str, str, str, int, float, int]]:
    """natural_key -> (id, domain, type, topic, day, value, occurred_at) of stored signals."""
    out: dict[str, tuple[str, str, str, str, int, float, int]] = {}
    m = param_marker(conn)
    step = 5000  # keeps SQLite under its bound-variable limit
    for i in range(0, len(keys), step):
        cond, params = in_values(conn, "natural_key", keys[i : i + step])
        sql = (
            "SELECT natural_key, id, domain, type, topic, day, value, occurred_at FROM signals "
            f"WHERE workspace_id = {m} AND source = {m} AND {cond}"
        )
        for r in fetch_all(conn, sql, (ws, source, *params)):
            out[r[0]] = (r[1], r[2], r[3], r[4], int(r[5]), float(r[6]), int(r[7]))
    return out


def insert_signals(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Rows as tuples in the table's column order."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"INSERT INTO signals ({', '.join(_SIGNAL_COLUMNS)}) "
        f"VALUES ({', '.join([m] * len(_SIGNAL_COLUMNS))})"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, rows)
    finally:
        cur.close()


def update_signals(conn: Connection, ws: int, rows: list[tuple[Any, ...]]) -> None:
    """(id, domain, type, topic, occurred_at, day, value, provider, match_method, confidence,
    run_id, received_at) of signals whose source revised them."""
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        f"UPDATE signals SET domain = {m}, type = {m}, topic = {m}, occurred_at = {m}, "
        f"day = {m}, value = {m}, provider = {m}, match_method = {m}, confidence = {m}, "
        f"run_id = {m}, received_at = {m} WHERE workspace_id = {m} AND id = {m}"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, [(*r[1:], ws, r[0]) for r in rows])
    finally:
        cur.close()


def add_to_rollup(conn: Connection, ws: int, deltas: RollupDeltas) -> None:
    """Apply count and value deltas to the daily rollup, creating rows as needed."""
    rows = [(ws, *key, int(d[0]), d[1]) for key, d in deltas.items() if d[0] != 0 or d[1] != 0]
    if not rows:
        return
    m = param_marker(conn)
    sql = (
        "INSERT INTO signal_daily (workspace_id, domain, source, type, topic, day, count, "
        f"value_sum) VALUES ({', '.join([m] * 8)}) "
        "ON CONFLICT (workspace_id, domain, source, type, topic, day) DO UPDATE SET "
        "count = signal_daily.count + excluded.count, "
        "value_sum = signal_daily.value_sum + excluded.value_sum"
    )
    cur = conn.connection.cursor()
    try:
        cur.executemany(sql, rows)
    finally:
        cur.close()
    # A revision can move a signal to another day or type: drop rollup rows left empty
    # (only the ones this batch took from, found by their primary key).
    emptied = [(ws, *key) for key, d in deltas.items() if d[0] < 0]
    if emptied:
        cur = conn.connection.cursor()
        try:
            cur.executemany(
                f"DELETE FROM signal_daily WHERE workspace_id = {m} AND domain = {m} "
                f"AND source = {m} AND type = {m} AND topic = {m} AND day = {m} AND count <= 0",
                emptied,
            )
        finally:
            cur.close()


def signals_page(
    conn: Connection,
    ws: int,
    domain: str,
    *,
    before: tuple[int, str] | None,
    limit: int,
    source: str | None = None,
) -> list[tuple[Any, ...]]:
    """A domain's signals newest first (occurred_at, id descending); limit + 1 rows."""
    m = param_marker(conn)
    where = [f"workspace_id = {m}", f"domain = {m}"]
    params: list[Any] = [ws, domain]
    if before is not None:
        where.append(f"(occurred_at < {m} OR (occurred_at = {m} AND id < {m}))")
        params.extend((before[0], before[0], before[1]))
    if source is not None:
        where.append(f"source = {m}")
        params.append(source)
    sql = (
        "SELECT id, source, type, topic, occurred_at, value, provider, match_method, "
        f"confidence, natural_key, received_at FROM signals WHERE {' AND '.join(where)} "
        f"ORDER BY occurred_at DESC, id DESC LIMIT {int(limit) + 1}"
    )
    return fetch_all(conn, sql, tuple(params))


def rollup_rows(conn: Connection, ws: int, domain: str) -> list[tuple[Any, ...]]:
    m = param_marker(conn)
    return fetch_all(
        conn,
        "SELECT source, type, topic, day, count, value_sum FROM signal_daily "
        f"WHERE workspace_id = {m} AND domain = {m} ORDER BY day, source, type, topic",
        (ws, domain),
    )


# ---- ingest runs -----------------------------------------------------------------------


def insert_run(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(ingest_runs), row)


def update_run(conn: Connection, ws: int, run_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        update(ingest_runs)
        .where(ingest_runs.c.workspace_id == ws, ingest_runs.c.id == run_id)
        .values(**values)
    )


def get_run(conn: Connection, ws: int, run_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(ingest_runs).where(ingest_runs.c.workspace_id == ws, ingest_runs.c.id == run_id)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def runs_page(
    conn: Connection, ws: int, *, before: str | None, limit: int, source: str | None
) -> list[dict[str, Any]]:
    q = select(ingest_runs).where(ingest_runs.c.workspace_id == ws)
    if before is not None:
        q = q.where(ingest_runs.c.id < before)
    if source is not None:
        q = q.where(ingest_runs.c.source == source)
    q = q.order_by(ingest_runs.c.id.desc()).limit(limit + 1)
    return [dict(r) for r in conn.execute(q).mappings()]


# ---- rejects ---------------------------------------------------------------------------


def insert_rejects(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(signal_rejects), rows)


def rejects_page(
    conn: Connection,
    ws: int,
    *,
    after: str | None,
    limit: int,
    source: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    status: str | None = "open",
) -> list[dict[str, Any]]:
    r = signal_rejects.c
    q = select(signal_rejects).where(r.workspace_id == ws)
    if after is not None:
        q = q.where(r.id > after)
    if source is not None:
        q = q.where(r.source == source)
    if reason is not None:
        q = q.where(r.reason == reason)
    if run_id is not None:
        q = q.where(r.run_id == run_id)
    if status is not None:
        q = q.where(r.status == status)
    q = q.order_by(r.id).limit(limit + 1)
    return [dict(x) for x in conn.execute(q).mappings()]


def mark_rejects(conn: Connection, ws: int, ids: Iterable[str], status: str) -> None:
    wanted = list(ids)
    if wanted:
        conn.execute(
            update(signal_rejects)
            .where(signal_rejects.c.workspace_id == ws, signal_rejects.c.id.in_(wanted))
            .values(status=status)
        )


# ---- settings and custom sources ---------------------------------------------------------


def get_source_config(conn: Connection, ws: int, source: str) -> dict[str, Any] | None:
    m = param_marker(conn)
    rows = fetch_all(
        conn,
        f"SELECT config FROM source_settings WHERE workspace_id = {m} AND source = {m}",
        (ws, source),
    )
    return json_value(rows[0][0]) if rows else None


def put_source_config(
    conn: Connection, ws: int, source: str, config: dict[str, Any], now: int
) -> None:
    m = param_marker(conn)
    conn.exec_driver_sql(
        "INSERT INTO source_settings (workspace_id, source, config, updated_at) "
        f"VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (workspace_id, source) DO UPDATE SET "
        "config = excluded.config, updated_at = excluded.updated_at",
        (ws, source, json_param(config), now),
    )


def custom_source_names(conn: Connection, ws: int) -> list[str]:
    q = (
        select(custom_sources.c.name)
        .where(custom_sources.c.workspace_id == ws)
        .order_by(custom_sources.c.name)
    )
    return [r[0] for r in conn.execute(q)]


def add_custom_source(conn: Connection, ws: int, name: str, now: int) -> bool:
    """True when it was new. Concurrent registrations of one name: one inserts, the others
    find it there (no unique violation)."""
    m = param_marker(conn)
    result = conn.exec_driver_sql(
        f"INSERT INTO custom_sources (workspace_id, name, created_at) VALUES ({m}, {m}, {m}) "
        "ON CONFLICT (workspace_id, name) DO NOTHING",
        (ws, name, now),
    )
    return result.rowcount == 1
