"""Helpers for the scoring, segments and web tests: accounts through the API, signals
through the store."""

from __future__ import annotations

import itertools
import time
from typing import Any

from sqlalchemy import text

from intently.kit.db import read_tx, write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.signals.store import SignalIn, store
from tests.support.api import Api

_keys = itertools.count()

# The day a test sees, read on first use and kept until the next test (tests/conftest.py
# forgets it): a day read at import would be yesterday for tests that run after midnight.
_day: int | None = None
MIDNIGHT_MARGIN_S = 60  # longer than a test that reads the day takes, CLI runs included


def today() -> int:
    """This test's UTC day (days since 1970), the one scoring counts signal ages from.

    A test reads the day more than once: for signals by age, then in the run scoring as of
    now, perhaps in a CLI subprocess. Both must see the same day, so a test that first asks
    in the last minute before midnight waits for midnight to pass."""
    global _day
    if _day is None:
        left = US_PER_DAY - now_us() % US_PER_DAY
        if left < MIDNIGHT_MARGIN_S * 1_000_000:
            time.sleep(left / 1e6 + 0.01)
        _day = now_us() // US_PER_DAY
    return _day


def forget_day() -> None:
    global _day
    _day = None


def push_accounts(api: Api, *domains: str) -> list[str]:
    r = api.post("/accounts", json={"accounts": [{"domain": d, "name": d} for d in domains]})
    assert r.status_code == 200, r.text
    return [str(x["rtp_aid"]) for x in r.json()["data"]["results"]]


def signals(engine: Any, ws: int, domain: str, source: str, type_: str, *ages: int,
            value: float = 1.0, topic: str = "") -> None:  # fmt: skip
    """One signal per age (days before this test's day) for the domain."""
    day = today()
    items = [
        SignalIn(
            domain=domain,
            source=source,
            type=type_,
            occurred_at=(day - age) * US_PER_DAY + 3_600_000_000,
            natural_key=f"t{next(_keys)}",
            value=value,
            topic=topic,
            provider="test",
        )
        for age in ages
    ]
    with write_tx(engine) as conn:
        store(conn, ws, items)


def row(engine: Any, ws: int, aid: str) -> dict[str, Any]:
    with read_tx(engine) as conn:
        r = (
            conn.execute(
                text(
                    "SELECT rtp_account_score, rtp_website_intent_score, rtp_bombora_intent_score, "
                    "rtp_g2_intent_score, rtp_advertising_activity_score, rtp_journey_stage, "
                    "rtp_last_account_date, changed_at, score_model_version FROM accounts "
                    "WHERE workspace_id = :ws AND id = :id"
                ),
                {"ws": ws, "id": aid},
            )
            .mappings()
            .one()
        )
    return dict(r)


def clock(engine: Any, ws: int) -> int:
    with read_tx(engine) as conn:
        return int(
            conn.execute(
                text("SELECT change_clock FROM workspaces WHERE id = :ws"), {"ws": ws}
            ).scalar_one()
        )


LIN10 = {"kind": "linear", "days": 10}
WIN7 = {"kind": "window", "days": 7}

# website: page views 10 points each, cap 50, linear over 10 days;
# g2: pricing 20 each, cap 30, window 7; bombora surge 0.5 per point, cap 100 (source cap 50).
MODEL: dict[str, Any] = {
    "sources": {
        "website": {
            "weight": 1,
            "types": {"page_view": {"increment": 10, "cap": 50, "decay": LIN10}},
        },
        "g2": {
            "weight": 3,
            "types": {"pricing": {"increment": 20, "cap": 30, "decay": WIN7}},
        },
        "bombora": {
            "weight": 0,
            "cap": 50,
            "types": {"surge": {"increment": 0.5, "unit": "value", "cap": 100, "decay": LIN10}},
        },
    }
}
