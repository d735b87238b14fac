"""Public write keys: one active key per workspace, made on first use, and the collector's
cached look-up of a key's workspace.

A write key is public (it sits in every page's HTML), so it is stored as is and only
says which workspace an event belongs to; it grants no read access. The collector looks
keys up through `WriteKeyCache`, which remembers an answer for `KEY_CACHE_SECONDS`: a
rotated (revoked) key stops working within that many seconds in every process.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Connection, Engine

from intently.kit.db import fetch_all, lock_workspace, param_marker, read_tx, write_tx
from intently.kit.timefmt import now_us

WRITE_KEY_PREFIX = "itlyw_"
KEY_CACHE_SECONDS = 5.0


def _active_key(conn: Connection, ws: int) -> str | None:
    m = param_marker(conn)
    rows = fetch_all(
        conn,
        f"SELECT key FROM write_keys WHERE workspace_id = {m} AND revoked_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1",
        (ws,),
    )
    return str(rows[0][0]) if rows else None


def _insert_key(conn: Connection, ws: int) -> str:
    key = WRITE_KEY_PREFIX + secrets.token_urlsafe(18)
    m = param_marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO write_keys (workspace_id, key, created_at, revoked_at) "
        f"VALUES ({m}, {m}, {m}, NULL)",
        (ws, key, now_us()),
    )
    return key


def get_write_key(engine: Engine, ws: int) -> str:
    """The workspace's active write key, created on first use."""
    with read_tx(engine) as conn:
        key = _active_key(conn, ws)
    if key is not None:
        return key
    with write_tx(engine) as conn:
        # Two first uses at once must not leave the workspace with two active keys.
        lock_workspace(conn, ws)
        key = _active_key(conn, ws)
        return key if key is not None else _insert_key(conn, ws)


def rotate_write_key(engine: Engine, ws: int) -> str:
    """Revoke the active key and return a new one; the old one stops within the cache time."""
    with write_tx(engine) as conn:
        lock_workspace(conn, ws)
        m = param_marker(conn)
        conn.exec_driver_sql(
            f"UPDATE write_keys SET revoked_at = {m} WHERE workspace_id = {m} "
            "AND revoked_at IS NULL",
            (now_us(), ws),
        )
        return _insert_key(conn, ws)


def workspace_of_key(engine: Engine, key: str) -> int | None:
    """The workspace of an active write key, or None (unknown or revoked)."""
    with engine.connect() as conn:
        m = param_marker(conn)
        rows = fetch_all(
            conn,
            f"SELECT workspace_id FROM write_keys WHERE key = {m} AND revoked_at IS NULL",
            (key,),
        )
    return int(rows[0][0]) if rows else None


def snippet(base_url: str, key: str) -> str:
    """The HTML to paste into every page of a website."""
    return f'<script async src="{base_url.rstrip("/")}/t.js?k={key}"></script>'


class WriteKeyCache:
    """key -> workspace (or None for a bad key), each answer kept for `ttl` seconds.

    Bad keys are cached too, so a site with a stale key costs one query per `ttl`, not
    one per request. The map is cleared when it grows past `max_entries` (a flood of
    random keys must not grow memory without bound).
    """

    def __init__(
        self,
        engine: Engine,
        ttl: float = KEY_CACHE_SECONDS,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.ttl, self.max_entries, self.clock = engine, ttl, max_entries, clock
        self._entries: dict[str, tuple[int | None, float]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, int | None]:
        """(found, workspace) without touching the database."""
        hit = self._entries.get(key)
        if hit is not None and hit[1] > self.clock():
            return True, hit[0]
        return False, None

    def lookup(self, key: str) -> int | None:
        found, ws = self.cached(key)
        if found:
            return ws
        ws = workspace_of_key(self.engine, key)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (ws, self.clock() + self.ttl)
        return ws

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()
