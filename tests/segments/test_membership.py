"""Dynamic membership is the rule applied to the data, after every kind of change, and
the entered/exited events replay to exactly that membership."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from sqlalchemy import select

from intently import pipeline
from intently.events.tables import events as ev
from intently.kit.db import read_tx
from intently.rules import matching_ids, parse_rule
from intently.segments import membership
from intently.segments import repository as seg_repo
from tests.support.api import Api, Workspace
from tests.support.scoring import signals

RULES: list[dict[str, Any]] = [
    {"field": "tags", "op": "contains", "value": "hot"},
    {"all": [{"field": "customFields.TIER", "op": "in", "value": ["1", "2"]},
             {"not": {"field": "tags", "op": "contains", "value": "competitor"}}]},
    {"signal": {"source": "website", "type": "page_view"}, "window_days": 30,
     "op": "gte", "value": 2},
    {"any": [{"deal": {"status": "open"}, "op": "gte", "value": 1},
             {"field": "rtp_account_score", "op": "gt", "value": 0}]},
    {"field": "name", "op": "starts_with", "value": "A"},
]  # fmt: skip


def _create(api: Api, name: str, rules: dict[str, Any], status: str = "active") -> str:
    r = api.post("/segments", json={"name": name, "type": "dynamic", "rules": rules,
                                     "status": status})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["segmentId"])


def _members(engine: Any, ws: int, sid: str) -> set[str]:
    with read_tx(engine) as conn:
        return set(seg_repo.member_ids(conn, ws, sid))


def _expected(engine: Any, ws: int, rules: dict[str, Any]) -> set[str]:
    with read_tx(engine) as conn:
        ctx = membership.rule_context(conn, ws)
        return matching_ids(conn, ws, parse_rule(rules), ctx)


def _replayed(engine: Any, ws: int, sid: str) -> set[str]:
    """Membership rebuilt from the segment's entered/exited events, in log order."""
    members: set[str] = set()
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(ev.c.type, ev.c.account_id, ev.c.data)
            .where(ev.c.workspace_id == ws, ev.c.type.in_(("segment.entered", "segment.exited")))
            .order_by(ev.c.seq, ev.c.id)
        ).all()
    for typ, aid, data in rows:
        if data["segment"]["segmentId"] != sid:
            continue
        if typ == "segment.entered":
            assert aid not in members, "entered twice without exiting"
            members.add(aid)
        else:
            assert aid in members, "exited without being a member"
            members.remove(aid)
    return members


def _push(api: Api, items: list[dict[str, Any]]) -> None:
    r = api.post("/accounts", json={"accounts": items, "upsert": True})
    assert r.status_code == 200, r.text
    assert all(x["status"] != "failed" for x in r.json()["data"]["results"]), r.text


@pytest.mark.parametrize("mode", ["per-batch", "after-run", "after-run-parallel"])
def test_membership_follows_every_kind_of_change(
    workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode != "per-batch":  # force the set-wise pass that large runs take
        monkeypatch.setattr("intently.pipeline.scoring.SEGMENTS_PER_BATCH_UP_TO", 0)
    if mode == "after-run-parallel":  # and its parallel comparison, as in big workspaces
        monkeypatch.setattr(membership, "PARALLEL_FROM", 0)
        monkeypatch.setattr(membership, "WORKERS", 2)
    api, ws = workspace.api, workspace.id
    rnd = random.Random(5)
    r = api.post("/accounts/custom-field", json={"label": "TIER", "labelType": "singleLineText"})
    assert r.status_code in (200, 201), r.text
    key = r.json()["data"][0]["key"]
    rules = [json.loads(json.dumps(x).replace("customFields.TIER", f"customFields.{key}"))
             for x in RULES]  # fmt: skip
    domains = [f"m{i}-{ws}.example.com" for i in range(30)]
    _push(api, [{"domain": d, "name": rnd.choice(["Acme", "Beta", "Alpha"]) + d} for d in domains])
    sids = [_create(api, f"dyn{i}", rule) for i, rule in enumerate(rules)]
    draft = _create(api, "drafty", rules[0], status="draft")

    seen: dict[str, set[frozenset[str]]] = {sid: set() for sid in sids}

    def check() -> None:
        for sid, rule in zip(sids, rules, strict=True):
            expected = _expected(engine, ws, rule)
            seen[sid].add(frozenset(expected))
            assert _members(engine, ws, sid) == expected
            assert _replayed(engine, ws, sid) == expected
        assert _members(engine, ws, draft) == _expected(engine, ws, rules[0])
        assert _replayed(engine, ws, draft) == set()  # drafts are silent

    check()
    for round_ in range(6):
        kind = round_ % 3
        picked = rnd.sample(domains, 8)
        if kind == 0:  # account fields: tags, custom field, name
            _push(api, [{"domain": d, "name": rnd.choice(["Acme", "Alpha", "Zed"]),
                         "tags": rnd.sample(["hot", "competitor", "cold"], rnd.randint(0, 2)),
                         "customFields": {key: rnd.choice(["1", "2", "3"])}}
                        for d in picked])  # fmt: skip
        elif kind == 1:  # signals
            for d in picked:
                signals(engine, ws, d, "website", "page_view", *[rnd.randint(0, 40)] * 2)
        else:  # deals
            body = {"deals": [{"externalDealId": f"d{round_}-{d}", "name": "x",
                               "stageLabel": rnd.choice(["Qualified", "Closed Won", "Closed Lost"]),
                               "associatedAccounts": [{"domain": d}]} for d in picked]}  # fmt: skip
            assert api.post("/deals", json=body).status_code == 200
        pipeline.run_scoring(engine, ws, full=False)
        check()
    pipeline.run_scoring(engine, ws, full=True)
    check()
    # The rounds really moved accounts in and out of every segment.
    assert all(len(states) >= 2 for states in seen.values()), [len(v) for v in seen.values()]
