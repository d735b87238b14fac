"""`intently events list` and `intently events thresholds` run as a script would."""

from __future__ import annotations

import json

from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.segments import HOT, account, create, events, push


def test_events_list(workspace: Workspace, database_url: str) -> None:
    api = workspace.api
    a, b = push(api, account("a.com", "hot"), account("b.com"))
    create(api, "Hot", HOT)
    ws = ("-w", workspace.name)
    done = intently(database_url, "events", "list", *ws)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == events(api)
    done = intently(
        database_url, "events", "list", "--type", "segment.entered", "--since", "2000-01-01", *ws
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["rtp_aid"] for line in done.stdout.splitlines()] == [a]
    assert b != a
    done = intently(database_url, "events", "list", "--type", "segment.left", *ws)
    assert done.returncode == 2
    assert "got 'segment.left'" in " ".join(done.stderr.split())


def test_thresholds(workspace: Workspace, database_url: str) -> None:
    api = workspace.api
    ws = ("-w", workspace.name)
    done = intently(
        database_url, "events", "thresholds",
        "--set", "rtp_account_score=60", "--set", "rtp_g2_intent_score=12.5", *ws,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = [
        {"score": "rtp_account_score", "value": 60},
        {"score": "rtp_g2_intent_score", "value": 12.5},
    ]
    assert json.loads(done.stdout) == {"thresholds": expected}
    assert api.get("/score-thresholds").json()["data"]["thresholds"] == expected

    done = intently(
        database_url, "events", "thresholds",
        "--set", "rtp_score=5", "--set", "rtp_account_score=nan", *ws,
    )  # fmt: skip
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert "thresholds.0.score: score must be one of the following values" in err
    assert "thresholds.1.value: value must be a number" in err
    done = intently(database_url, "events", "thresholds", "--set", "rtp_account_score", *ws)
    assert done.returncode == 2
    assert "--set 'rtp_account_score' must be SCORE=VALUE" in " ".join(done.stderr.split())
    assert api.get("/score-thresholds").json()["data"]["thresholds"] == expected

    done = intently(database_url, "events", "thresholds", "--clear", *ws)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"thresholds": []}
    assert api.get("/score-thresholds").json()["data"]["thresholds"] == []


def test_error_messages_show_user_values_verbatim(workspace: Workspace, database_url: str) -> None:
    done = intently(database_url, "events", "list", "--type", "[/x]", "-w", workspace.name)
    assert done.returncode == 2, done.stderr[-500:]
    assert "got '[/x]'" in " ".join(done.stderr.split())
