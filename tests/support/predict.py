"""Generated worlds for the predictive model: accounts with a profile, 180 days of
signals, and deals opened by some of them, with known true drivers."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from intently.kit.db import write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.signals.store import SignalIn, store
from tests.support.api import Api

INDUSTRIES = ("software", "finance", "retail", "healthcare", "manufacturing")
SIZES = (25, 120, 450, 2500, 12000)  # one per employee band the model sees
ICP_INDUSTRY = "software"
ICP_SIZE = 450


def push_accounts(api: Api, domains: list[str]) -> dict[str, str]:
    """domain -> rtp_aid, 100 per request."""
    out: dict[str, str] = {}
    for i in range(0, len(domains), 100):
        body = {"accounts": [{"domain": d, "name": d} for d in domains[i : i + 100]]}
        r = api.post("/accounts", json=body)
        assert r.status_code == 200, r.text
        for d, res in zip(domains[i : i + 100], r.json()["data"]["results"], strict=True):
            out[d] = res["rtp_aid"]
    return out


def set_profiles(engine: Any, ws: int, rows: list[tuple[str, str | None, int | None, str]]) -> None:
    """(domain, industry, employee count, country) straight into the account rows, and
    the accounts dated back so that they existed before every cut-off."""
    with write_tx(engine) as conn:
        conn.execute(
            text(
                "UPDATE accounts SET industry = :i, employee_count = :e, country = :c, "
                "created_at = created_at - :back WHERE workspace_id = :ws AND domain = :d"
            ),
            [
                {"i": i, "e": e, "c": c, "d": d, "ws": ws, "back": 400 * US_PER_DAY}
                for d, i, e, c in rows
            ],
        )


def put_signals(engine: Any, ws: int, items: list[SignalIn]) -> None:
    for i in range(0, len(items), 20_000):
        with write_tx(engine) as conn:
            store(conn, ws, items[i : i + 20_000])


def push_deals(api: Api, deals: list[tuple[str, str, int]]) -> None:
    """(external id, domain, opened micros) as open deals with that startDate."""
    for i in range(0, len(deals), 100):
        body = {
            "deals": [
                {"externalDealId": ext, "name": ext, "stageLabel": "Discovery",
                 "startDate": datetime.fromtimestamp(at / 1e6, UTC).date().isoformat(),
                 "associatedAccounts": [{"domain": dom}]}
                for ext, dom, at in deals[i : i + 100]
            ]
        }  # fmt: skip
        r = api.post("/deals", json=body)
        assert r.status_code == 200, r.text


def build_world(
    api: Api, engine: Any, ws: int, *, accounts: int = 2500, seed: int = 7, prefix: str = "w"
) -> dict[str, Any]:
    """A world where only ICP companies (software, 201-1000 employees) buy, and what comes
    before a deal is LinkedIn ad clicks and G2 comparison views. Blog (page) views, high
    value page views and Bombora surges are noise, heavier at companies that never buy,
    which is what misleads the default model's weights."""
    rnd = random.Random(seed)
    now = now_us()
    today = now // US_PER_DAY
    domains = [f"{prefix}{i:05d}.example.com" for i in range(accounts)]
    push_accounts(api, domains)
    profiles = []
    items: list[SignalIn] = []
    deals: list[tuple[str, str, int]] = []
    n = 0

    def sig(dom: str, source: str, typ: str, day: int, value: float = 1.0) -> None:
        nonlocal n
        n += 1
        at = day * US_PER_DAY + rnd.randrange(US_PER_DAY)
        if at < now:
            items.append(SignalIn(dom, source, typ, at, f"k{n}", value))

    for dom in domains:
        icp = rnd.random() < 0.35
        industry = ICP_INDUSTRY if icp else rnd.choice(INDUSTRIES)
        size = ICP_SIZE if icp else rnd.choice(SIZES)
        if not icp and industry == ICP_INDUSTRY and size == ICP_SIZE:
            size = SIZES[0]
        profiles.append((dom, industry, size, rnd.choice(("US", "GB", "DE"))))
        # blog views for everybody; heavy readers (and Bombora surges) that never buy
        reader = rnd.random() < 0.3 and not icp
        for _ in range(rnd.randint(0, 4) + (25 if reader else 0)):
            sig(dom, "website", "page_view", today - rnd.randrange(180))
        if reader:
            for _ in range(rnd.randint(3, 8)):
                sig(dom, "website", "high_value_page_view", today - rnd.randrange(180))
            for _ in range(rnd.randint(2, 6)):
                sig(dom, "bombora", "surge", today - rnd.randrange(180), rnd.randint(60, 99))
        # an in-market episode: LinkedIn clicks and G2 comparisons for about 3 weeks
        if rnd.random() < 0.55:
            start = today - rnd.randrange(10, 175)
            for _ in range(rnd.randint(3, 7)):
                sig(dom, "linkedin", "ad_click", start + rnd.randrange(21), rnd.randint(1, 3))
            for _ in range(rnd.randint(2, 5)):
                sig(dom, "g2", "comparison", start + rnd.randrange(21))
            if icp and rnd.random() < 0.85:
                opened = (start + rnd.randrange(7, 25)) * US_PER_DAY
                if opened < now - US_PER_DAY:
                    deals.append((f"{prefix}-deal-{len(deals)}", dom, opened))
    set_profiles(engine, ws, profiles)
    put_signals(engine, ws, items)
    push_deals(api, deals)
    return {"accounts": accounts, "signals": len(items), "deals": len(deals)}
