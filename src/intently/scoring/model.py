"""The workspace's scoring model as runs, segments and stage rules read it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from intently.rules import SurgeParams
from intently.scoring import repository as repo
from intently.scoring.schemas import default_model


def active_model(conn: Connection, ws: int) -> tuple[int, dict[str, Any]]:
    """(version, model): the newest stored one, or (0, the default) when none was set."""
    found = repo.latest_model(conn, ws)
    if found is None:
        return 0, default_model()
    return found[0], found[1]


def surge_params(model: dict[str, Any]) -> SurgeParams:
    """The model's first-party surge windows (what stage and segment rules call a surge)."""
    surge = model.get("surge") or {}
    return SurgeParams(
        recent_days=int(surge.get("recent_days", 7)),
        baseline_days=int(surge.get("baseline_days", 28)),
    )
