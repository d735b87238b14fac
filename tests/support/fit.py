"""Helpers for the fit tests: an account's company profile written straight into the
accounts table (a fixture: `POST /accounts` takes the profile from the profile work), and
the fit columns read back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from intently.catalog import PROFILE_COLUMNS
from intently.kit.db import read_tx, tick, write_tx

PROFILE = set(PROFILE_COLUMNS)


def set_profile(engine: Any, ws: int, aid: str, *, touch: bool = False, **columns: Any) -> None:
    """Set profile columns (accounts column names: employee_count=500, ...) of one account,
    as a profile push would store them; `touch` stamps it changed as a push does (so an
    incremental run picks it up), else its change stamp is left alone."""
    assert columns and set(columns) <= PROFILE, columns
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    with write_tx(engine) as conn:
        if touch:
            columns["changed_at"] = tick(conn, ws)
            sets += ", changed_at = :changed_at"
        done = conn.execute(
            text(f"UPDATE accounts SET {sets} WHERE workspace_id = :ws AND id = :id"),
            {**columns, "ws": ws, "id": aid},
        )
        assert done.rowcount == 1


def clear_fit(engine: Any, ws: int) -> None:
    """The workspace's accounts as scored before fit existed (fit and grade NULL)."""
    with write_tx(engine) as conn:
        conn.execute(
            text(
                "UPDATE accounts SET rtp_fit_score = NULL, rtp_grade = NULL "
                "WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        )


def fit_row(engine: Any, ws: int, aid: str) -> dict[str, Any]:
    """rtp_fit_score, rtp_grade, rtp_account_score and changed_at of one account."""
    with read_tx(engine) as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT rtp_fit_score, rtp_grade, rtp_account_score, changed_at "
                    "FROM accounts WHERE workspace_id = :ws AND id = :id"
                ),
                {"ws": ws, "id": aid},
            )
            .mappings()
            .one()
        )


# A small model whose numbers a test can add up by hand.
MODEL: dict[str, Any] = {
    "criteria": [
        {"name": "Mid-market", "points": 40,
         "rule": {"field": "employeeCount", "op": "between", "value": [200, 4999]}},
        {"name": "Revenue 10M+", "points": 30,
         "rule": {"field": "annualRevenue", "op": "gte", "value": 10_000_000}},
        {"name": "Software", "points": 20,
         "rule": {"field": "industry", "op": "eq", "value": "Software"}},
        {"name": "Competitor", "points": -50,
         "rule": {"field": "tags", "op": "contains", "value": "competitor"}},
    ],
    "bands": {
        "fit": [{"grade": "A", "min": 80}, {"grade": "B", "min": 40}, {"grade": "C", "min": 0}],
        "intent": [{"grade": "1", "min": 50}, {"grade": "2", "min": 10}, {"grade": "3", "min": 0}],
    },
}  # fmt: skip
