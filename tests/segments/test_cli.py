"""`intently segments create | list | preview | refresh` run as a script would run them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.segments import HOT, account, create, get_segment, member_ids, moves, push


def test_create_and_list(workspace: Workspace, database_url: str, tmp_path: Path) -> None:
    api = workspace.api
    hot, _cold = push(api, account("a.com", "hot"), account("b.com"))
    rules = tmp_path / "hot.json"
    rules.write_text(json.dumps(HOT), encoding="utf-8")
    ws = ("-w", workspace.name)

    done = intently(database_url, "segments", "create", "Hot", "--rules", str(rules), *ws)
    assert done.returncode == 0, done.stderr
    dyn = json.loads(done.stdout)
    assert dyn == {
        "segmentId": dyn["segmentId"],
        "name": "Hot",
        "type": "dynamic",
        "status": "active",
        "rules": HOT,
        "memberCount": 1,
    }
    assert moves(api, dyn["segmentId"]) == [("segment.entered", hot)]

    done = intently(database_url, "segments", "create", "Plain [b]x[/b]", "--status", "draft", *ws)
    assert done.returncode == 0, done.stderr
    plain = json.loads(done.stdout)
    assert (plain["type"], plain["status"], plain["rules"]) == ("static", "draft", None)
    assert get_segment(api, plain["segmentId"])["name"] == "Plain [b]x[/b]"

    done = intently(database_url, "segments", "list", *ws)
    assert done.returncode == 0, done.stderr
    assert [line.split() for line in done.stdout.splitlines()] == [
        [dyn["segmentId"], "dynamic", "active", "1", "Hot"],
        [plain["segmentId"], "static", "draft", "0", "Plain", "[b]x[/b]"],
    ]


def test_preview_and_refresh(workspace: Workspace, database_url: str, tmp_path: Path) -> None:
    api = workspace.api
    hot, _cold = push(api, account("a.com", "hot"), account("b.com"))
    rules = tmp_path / "hot.json"
    rules.write_text(json.dumps(HOT), encoding="utf-8")
    ws = ("-w", workspace.name)
    dyn = create(api, "Hot", HOT)

    done = intently(database_url, "segments", "preview", str(rules), "--sample", "1", *ws)
    assert done.returncode == 0, done.stderr
    preview = json.loads(done.stdout)
    assert preview["count"] == 1 and [x["rtp_aid"] for x in preview["sample"]] == [hot]
    assert preview["sample"][0] == api.get(f"/accounts/{hot}").json()["data"]

    (late,) = push(api, account("c.com", "hot"))
    done = intently(database_url, "segments", "refresh", "Hot", *ws)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{dyn['segmentId']}: 1 entered, 0 exited (")
    assert member_ids(api, dyn["segmentId"]) == [hot, late]

    push(api, account("a.com", "cold"))
    done = intently(database_url, "segments", "refresh", *ws)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{dyn['segmentId']}: 0 entered, 1 exited (")
    assert member_ids(api, dyn["segmentId"]) == [late]


def test_create_refusals(workspace: Workspace, database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"all": [{"field": "colour", "op": "eq", "value": 1},
                            {"field": "rtp_account_score", "op": "gte", "value": "x"}]}),
        encoding="utf-8",
    )  # fmt: skip
    ws = ("-w", workspace.name)
    done = intently(database_url, "segments", "create", "Bad", "--rules", str(bad), *ws)
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert "rules.all.0.field: field must be one of" in err
    assert "rules.all.1.value: value must be a number" in err
    r = workspace.api.get("/segments", params={"type": "all", "status": "active,draft,archived"})
    assert r.json()["data"]["data"] == []
