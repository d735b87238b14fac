"""Which vendor pulls are due, claimed so that one worker runs each, however many there are."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from intently.ingest import connections
from intently.kit.db import read_tx, write_tx
from intently.kit.timefmt import US_PER_MINUTE, now_us
from intently.settings import Settings
from intently.signals.tables import connections as conn_t

log = logging.getLogger("intently.pulls")

# Minutes between pulls unless a connection's config says `interval_minutes`: G2 streams
# events through the day; Bombora publishes weekly and LinkedIn's company pivot lags a day.
DEFAULT_INTERVAL_MINUTES = {"bombora": 24 * 60, "g2": 60, "linkedin": 24 * 60}


def interval_us(provider: str, config: dict[str, Any] | None) -> int:
    minutes = (config or {}).get("interval_minutes") or DEFAULT_INTERVAL_MINUTES[provider]
    try:
        minutes = max(1, int(minutes))
    except (TypeError, ValueError):
        minutes = DEFAULT_INTERVAL_MINUTES[provider]
    return minutes * US_PER_MINUTE


def claim_due(
    engine: Engine, now: int | None = None, *, workspace: int | None = None
) -> list[tuple[int, str]]:
    """(workspace, provider) of enabled connections whose interval has passed, each claimed.

    The claim is a conditional UPDATE of last_run_at: when two workers look at once, the
    second finds the row already moved and skips it, so a pull runs once per interval.
    """
    now = now_us() if now is None else now
    q = (
        select(conn_t.c.workspace_id, conn_t.c.provider, conn_t.c.config, conn_t.c.last_run_at)
        .where(conn_t.c.enabled.is_(True))
        .order_by(conn_t.c.workspace_id, conn_t.c.provider)
    )
    if workspace is not None:
        q = q.where(conn_t.c.workspace_id == workspace)
    with read_tx(engine) as conn:
        rows = conn.execute(q).all()
    claimed: list[tuple[int, str]] = []
    for ws, provider, config, last in rows:
        if provider not in DEFAULT_INTERVAL_MINUTES:
            continue
        cutoff = now - interval_us(provider, config)
        if last is not None and last > cutoff:
            continue
        with write_tx(engine) as conn:
            cond = conn_t.c.last_run_at.is_(None) if last is None else conn_t.c.last_run_at == last
            got = conn.execute(
                update(conn_t)
                .where(conn_t.c.workspace_id == ws, conn_t.c.provider == provider, cond)
                .values(last_run_at=now, last_status="running", last_error=None)
            ).rowcount
        if got == 1:
            claimed.append((int(ws), str(provider)))
    return claimed


def run_pull(engine: Engine, settings: Settings, ws: int, provider: str) -> dict[str, Any]:
    """One pull; a failure is recorded on the connection and returned, never raised."""
    module = importlib.import_module(f"intently.ingest.{provider}")
    try:
        report = module.pull(engine, ws, settings=settings)
    except Exception as exc:  # the schedule must go on for the other connections
        log.exception("pull %s for workspace %s failed", provider, ws)
        message = getattr(exc, "custom_message", None) or f"{type(exc).__name__}: {exc}"
        connections.save_state(engine, ws, provider, state=None, status="failed", error=message)
        return {"workspace": ws, "provider": provider, "status": "failed", "error": message}
    out: dict[str, Any] = {"workspace": ws, "provider": provider} | report.as_dict()
    return out


def pull_due(engine: Engine, settings: Settings) -> list[dict[str, Any]]:
    return [run_pull(engine, settings, ws, p) for ws, p in claim_due(engine)]
