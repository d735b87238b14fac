"""Score thresholds (GET/PUT /score-thresholds) and the `score.threshold_crossed` events
that scoring runs record: up when old < value <= new, down when new < value <= old."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from intently import pipeline
from intently.kit.timefmt import US_PER_DAY, now_us
from tests.support.api import Api, Workspace
from tests.support.scoring import MODEL, signals
from tests.support.segments import account, events, push, unauthorised, validation

SCORE = "rtp_account_score"
G2 = "rtp_g2_intent_score"


def put(api: Api, *items: tuple[str, Any]) -> dict[str, Any]:
    r = api.put(
        "/score-thresholds", json={"thresholds": [{"score": s, "value": v} for s, v in items]}
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def current(api: Api) -> list[dict[str, Any]]:
    r = api.get("/score-thresholds")
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["thresholds"])


def crossings(api: Api) -> list[tuple[str, str, float, str]]:
    """(rtp_aid, score, threshold value, direction) of every crossing, in log order."""
    return [
        (
            e["rtp_aid"],
            e["threshold"]["score"],
            e["threshold"]["value"],
            e["threshold"]["direction"],
        )
        for e in events(api, type="score.threshold_crossed")
    ]


def score_of(api: Api, aid: str, col: str = SCORE) -> float:
    return float(api.get(f"/accounts/{aid}").json()["data"][col])


def test_none_by_default_then_put_replaces_and_clears(
    workspace: Workspace, other: Workspace
) -> None:
    api = workspace.api
    assert current(api) == []
    data = put(api, (SCORE, 60), (G2, 12.5))
    expected = [{"score": SCORE, "value": 60}, {"score": G2, "value": 12.5}]
    assert data == {"thresholds": expected}
    assert current(api) == expected
    assert current(other.api) == []  # per workspace
    assert put(api, (G2, 100)) == {"thresholds": [{"score": G2, "value": 100}]}
    assert current(api) == [{"score": G2, "value": 100}]
    assert put(api) == {"thresholds": []}
    assert current(api) == []


@pytest.mark.parametrize(
    ("body", "path", "rule"),
    [
        ({}, "thresholds", "isNotEmpty"),
        ({"thresholds": {}}, "thresholds", "isArray"),
        ({"thresholds": [{"score": "rtp_score", "value": 5}]}, "thresholds.0.score", "isIn"),
        ({"thresholds": [{"value": 5}]}, "thresholds.0.score", "isNotEmpty"),
        ({"thresholds": [{"score": SCORE}]}, "thresholds.0.value", "isNotEmpty"),
        ({"thresholds": [{"score": SCORE, "value": 0}]}, "thresholds.0.value", "isValid"),
        ({"thresholds": [{"score": SCORE, "value": -3}]}, "thresholds.0.value", "isValid"),
        ({"thresholds": [{"score": SCORE, "value": 100.01}]}, "thresholds.0.value", "max"),
        ({"thresholds": [{"score": SCORE, "value": "60"}]}, "thresholds.0.value", "isNumber"),
        ({"thresholds": [{"score": SCORE, "value": True}]}, "thresholds.0.value", "isNumber"),
        ({"thresholds": [{"score": SCORE, "value": 5}] * 2}, "thresholds", "isValid"),
        (
            {"thresholds": [{"score": SCORE, "value": i + 1} for i in range(51)]},
            "thresholds",
            "arrayMaxSize",
        ),
    ],
    ids=[
        "missing", "not-array", "unknown-score", "no-score", "no-value", "zero", "negative",
        "over-100", "string", "boolean", "repeated", "too-many",
    ],
)  # fmt: skip
def test_validation(api: Api, body: dict[str, Any], path: str, rule: str) -> None:
    put(api, (SCORE, 50))
    errors = validation(api.put("/score-thresholds", json=body))
    assert list(errors) == [path]
    assert list(errors[path]) == [rule]
    assert current(api) == [{"score": SCORE, "value": 50}]  # nothing changed


def test_validation_texts(api: Api) -> None:
    r = api.put(
        "/score-thresholds",
        json={"thresholds": [{"score": "rtp_score", "value": 0}, {"score": G2, "value": 101}]},
    )
    assert validation(r) == {
        "thresholds.0.score": {
            "isIn": "score must be one of the following values: rtp_account_score, "
            "rtp_website_intent_score, rtp_bombora_intent_score, rtp_g2_intent_score, "
            "rtp_advertising_activity_score"
        },
        "thresholds.0.value": {"isValid": "value must be greater than 0"},
        "thresholds.1.value": {"max": "value must not be greater than 100"},
    }
    r = api.put("/score-thresholds", json={"thresholds": [{"score": G2, "value": 7}] * 2})
    assert validation(r) == {
        "thresholds": {
            "isValid": "thresholds must not repeat rtp_g2_intent_score at 7 (items 0 and 1)"
        }
    }


def test_the_ladder(api: Api) -> None:
    unauthorised(api.with_key(None).get("/score-thresholds"))
    unauthorised(api.with_key(None).put("/score-thresholds", json={"thresholds": []}))
    r = api.put("/score-thresholds", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    r = api.put("/score-thresholds", content=b"[1]", headers={"Content-Type": "application/json"})
    assert (
        r.status_code == 400 and r.json()["customMessage"] == "Request body must be a JSON object"
    )


def test_crossings_up_and_down(workspace: Workspace, other: Workspace, engine: Any) -> None:
    api, ws = workspace.api, workspace.id
    assert api.put("/scoring/model", json=MODEL).status_code == 200
    a, b, quiet = push(api, account("a.com"), account("b.com"), account("c.com"))
    signals(engine, ws, "a.com", "g2", "pricing", 0)
    pipeline.run_scoring(engine, ws, full=True)
    high = score_of(api, a)
    g2 = score_of(api, a, G2)
    assert 0 < high < 100 and 0 < g2 <= 100
    # `high` itself tests the boundary: old < value <= new
    put(api, (SCORE, high / 2), (SCORE, high), (SCORE, min(100, high + 1)), (G2, g2))
    assert crossings(api) == []

    signals(engine, ws, "b.com", "g2", "pricing", 0)
    pipeline.run_scoring(engine, ws, full=False)
    assert score_of(api, b) == high
    assert sorted(crossings(api)) == sorted(
        [(b, SCORE, high / 2, "up"), (b, SCORE, high, "up"), (b, G2, g2, "up")]
    )
    (e,) = [x for x in events(api, type="score.threshold_crossed") if x["threshold"]["score"] == G2]
    assert e == {
        "eventId": e["eventId"],
        "type": "score.threshold_crossed",
        "occurredAt": e["occurredAt"],
        "rtp_aid": b,
        "before": {"score": G2, "value": 0},
        "after": {"score": G2, "value": g2},
        "threshold": {"score": G2, "value": g2, "direction": "up"},
    }

    # ten days on, the 7-day window has passed: both fall to 0 through every threshold
    later = now_us() + 10 * US_PER_DAY
    pipeline.run_scoring(engine, ws, full=True, as_of=later)
    assert score_of(api, a) == score_of(api, b) == 0
    down = [c for c in crossings(api) if c[3] == "down"]
    assert sorted(down) == sorted(
        (aid, col, value, "down")
        for aid in (a, b)
        for col, value in ((SCORE, high / 2), (SCORE, high), (G2, g2))
    )
    assert quiet not in {c[0] for c in crossings(api)}
    assert events(other.api, type="score.threshold_crossed") == []


def test_no_thresholds_no_events(workspace: Workspace, engine: Any) -> None:
    api, ws = workspace.api, workspace.id
    put(api, (SCORE, 1))
    put(api)  # cleared again
    push(api, account("a.com"))
    signals(engine, ws, "a.com", "g2", "pricing", 0)
    pipeline.run_scoring(engine, ws, full=True)
    assert events(api, type="score.threshold_crossed") == []


def test_a_threshold_above_the_new_score_is_not_crossed(workspace: Workspace, engine: Any) -> None:
    api, ws = workspace.api, workspace.id
    (a,) = push(api, account("a.com"))
    put(api, (SCORE, 100))
    signals(engine, ws, "a.com", "g2", "pricing", 0)
    pipeline.run_scoring(engine, ws, full=True)
    assert 0 < score_of(api, a) < 100
    assert crossings(api) == []


def test_concurrent_first_puts_all_succeed(make_workspace: Callable[[], Workspace]) -> None:
    """Two first PUTs of a workspace must not both insert its row (a 500 on PostgreSQL)."""
    for _ in range(3):
        api = make_workspace().api
        barrier = threading.Barrier(6)
        statuses: list[int] = []

        def put_one(i: int, api: Api, barrier: threading.Barrier, out: list[int]) -> None:
            barrier.wait()
            body = {"thresholds": [{"score": SCORE, "value": i + 1}]}
            out.append(api.put("/score-thresholds", json=body).status_code)

        threads = [
            threading.Thread(target=put_one, args=(i, api, barrier, statuses)) for i in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 6
        (kept,) = current(api)
        assert kept["score"] == SCORE and kept["value"] in range(1, 7)
