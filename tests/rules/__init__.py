"""Helpers shared by the rule tests: data through the API and the real tables, and a check
that runs a rule both ways (in memory over loaded facts, and as one SQL query)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from intently.accounts.tables import accounts
from intently.kit.db import tick, write_tx
from intently.rules import (
    Context,
    custom_field_types,
    evaluate,
    load_facts,
    matching_ids,
    parse_rule,
)
from intently.signals.store import SignalIn, store
from tests.support.api import Api

DAY = 86_400_000_000


def push_accounts(api: Api, items: list[dict[str, Any]]) -> dict[str, str]:
    """Create accounts through POST /accounts; domain -> rtp_aid."""
    out: dict[str, str] = {}
    for i in range(0, len(items), 100):
        r = api.post("/accounts", json={"accounts": items[i : i + 100]})
        assert r.status_code == 200, r.text
        for item, res in zip(items[i : i + 100], r.json()["data"]["results"], strict=True):
            assert res["status"] == "created", res
            out[item["domain"]] = res["rtp_aid"]
    return out


def set_columns(engine: Any, ws: int, rows: dict[str, dict[str, Any]]) -> None:
    """Write account columns the API does not take (scores, stage, created_at, raw custom
    field documents), stamping changed_at as every account write must."""
    with write_tx(engine) as conn:
        clock = tick(conn, ws)
        for aid, cols in rows.items():
            conn.execute(
                update(accounts)
                .where(accounts.c.workspace_id == ws, accounts.c.id == aid)
                .values(**cols, changed_at=clock)
            )


def add_signals(engine: Any, ws: int, items: list[tuple[str, str, str, str, int, float]]) -> None:
    """(domain, source, type, topic, occurred_at, value) each, through the signal store."""
    signals = [
        SignalIn(dom, src, typ, at, f"k-{i}-{at}", value=val, topic=topic)
        for i, (dom, src, typ, topic, at, val) in enumerate(items)
    ]
    with write_tx(engine) as conn:
        store(conn, ws, signals)


def push_deals(api: Api, deals: list[dict[str, Any]]) -> None:
    for i in range(0, len(deals), 100):
        r = api.post("/deals", json={"deals": deals[i : i + 100]})
        assert r.status_code == 200, r.text
        assert all(x["status"] != "failed" for x in r.json()["data"]["results"]), r.text


def push_activities(api: Api, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 50):
        r = api.post("/sales-activities", json={"activities": items[i : i + 50]})
        assert r.status_code == 200, r.text
        assert all(x["status"] == "created" for x in r.json()["data"]["results"]), r.text


def activity(ext: str, kind: str, domain: str, occurred_at: str) -> dict[str, Any]:
    return {
        "externalActivityId": ext,
        "activityType": kind,
        "occurredAt": occurred_at,
        "domain": domain,
        "ownerEmail": "owner@example.com",
        "contacts": [{"email": f"c-{ext}@example.com"}],
    }


def both_ways(engine: Any, ws: int, doc: Any, ctx: Context, *, typed: bool = True) -> set[str]:
    """The ids a rule matches; fails unless memory and SQL agree."""
    with engine.connect() as conn:
        types = custom_field_types(conn, ws) if typed else None
        rule = parse_rule(doc, custom_fields=types)
        ids = list(
            conn.execute(select(accounts.c.id).where(accounts.c.workspace_id == ws)).scalars()
        )
        facts = load_facts(conn, ws, ids, ctx, needs=rule)
        memory = {aid for aid, f in facts.items() if evaluate(rule, f, ctx)}
        sql = matching_ids(conn, ws, rule, ctx)
    assert memory == sql, (doc, memory, sql)
    return sql
