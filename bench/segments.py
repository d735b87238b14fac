"""Dynamic segments: recomputing 50 segments over 1,000,000 accounts.

    .venv/bin/python bench/segments.py                      # SQLite, 1,000,000 accounts
    .venv/bin/python bench/segments.py --accounts 100000    # smaller
    .venv/bin/python bench/segments.py --db postgres --reuse

Seeds a workspace straight into the database (not through the API): N accounts with
tags, three custom fields (industry, region, employees), scores, journey stages and
about 20 `signal_daily` rows each (the scoring benchmark's mix), and a deal for one
account in twenty. Then 50 dynamic segments of the kinds ABM teams keep (score bands,
stages, tags, firmographics, website activity in a window, surges, open and won deals,
and combinations), all active, and measures:

1. building them: every member enters, with its `segment.entered` event (reported);
2. recomputing all 50 with nothing changed, the hourly pass after a full scoring run:
   < 60 s on SQLite at 1,000,000 accounts (the target);
3. recomputing after 1% of the accounts changed score and tags (reported).

`--reuse` keeps the seeded database (bench/out/segments-<N>.sqlite3, or the PostgreSQL
database intently_bench_segments) and skips seeding, and the build too when the 50
segments are there (`--rebuild` rebuilds them).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import benchkit as bk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import rollups, workspace_of  # the scoring benchmark's signal mix

RECOMPUTE_TARGET_S = 60.0
SEGMENTS = 50
PG_DB = "intently_bench_segments"
US_PER_DAY = 86_400_000_000
CHUNK = 10_000
TAGS = ("target", "competitor", "partner", "customer-advocate", "churn-risk", "tier-1",
        "enterprise", "smb")  # fmt: skip
INDUSTRIES = ("software", "finance", "retail", "health", "manufacturing", "media",
              "energy", "education", "logistics", "telecom", "government", "travel")  # fmt: skip
REGIONS = ("emea", "na", "latam", "apac", "anz")
STAGES = ("Unaware", "Aware", "Engaged", "Consideration", "Decision", "Opportunity", "Customer")
FIELDS = {"INDUSTRY_C": "singleLineText", "REGION_C": "singleLineText", "EMPLOYEES_C": "number"}


def segment_rules() -> list[dict[str, Any]]:
    """50 rules of the kinds ABM teams keep."""
    rules: list[dict[str, Any]] = []
    for lo in range(10, 100, 10):  # 9 score bands
        rules.append({"field": "rtp_account_score", "op": "between", "value": [lo, lo + 9.99]})
    for st in STAGES[1:]:  # 6 stages
        rules.append({"field": "rtp_journey_stage", "op": "eq", "value": st})
    for tag in TAGS:  # 8 tags
        rules.append({"field": "tags", "op": "contains", "value": tag})
    for i in range(6):  # 6 firmographic cuts
        rules.append({"all": [
            {"field": "customFields.INDUSTRY_C", "op": "in", "value": list(INDUSTRIES[2 * i:][:2])},
            {"field": "customFields.REGION_C", "op": "eq", "value": REGIONS[i % 5]},
        ]})  # fmt: skip
    for lo, hi in ((50, 200), (200, 1000), (1000, 5000), (5000, 100000)):  # 4 sizes
        rules.append({"field": "customFields.EMPLOYEES_C", "op": "between", "value": [lo, hi]})
    for days, n in ((7, 3), (14, 5), (30, 10), (30, 20), (7, 10)):  # 5 website activity
        rules.append({"signal": {"source": "website", "type": "page_view"}, "window_days": days,
                      "op": "gte", "value": n})  # fmt: skip
    for days in (7, 30):  # 2 G2 pricing
        rules.append({"signal": {"source": "g2", "type": "pricing"}, "window_days": days,
                      "op": "gte", "value": 1})  # fmt: skip
    rules.append({"surge": {"source": "bombora"}, "op": "eq", "value": True})
    rules.append({"surge": {"source": "website"}, "op": "eq", "value": True})
    rules.append({"deal": {"status": "open"}, "op": "gte", "value": 1})
    rules.append({"deal": {"status": "won"}, "op": "gte", "value": 1})
    rules.append({"deal": {"status": "open", "amount": {"op": "gte", "value": 50000}},
                  "op": "gte", "value": 1})  # fmt: skip
    for tag, score in (("target", 60), ("tier-1", 40), ("enterprise", 70)):  # 3 combinations
        rules.append({"all": [
            {"field": "tags", "op": "contains", "value": tag},
            {"field": "rtp_account_score", "op": "gte", "value": score},
            {"not": {"field": "tags", "op": "contains", "value": "competitor"}},
        ]})  # fmt: skip
    rules.append({"all": [
        {"field": "customFields.REGION_C", "op": "eq", "value": "na"},
        {"field": "customFields.EMPLOYEES_C", "op": "gte", "value": 1000},
    ]})  # fmt: skip
    g2_comparison = {"source": "g2", "type": "comparison"}
    rules.append({"any": [
        {"signal": g2_comparison, "window_days": 30, "op": "gte", "value": 1},
        {"field": "rtp_bombora_intent_score", "op": "gte", "value": 80},
    ]})  # fmt: skip
    assert len(rules) == SEGMENTS, len(rules)
    return rules


def seed(url: str, accounts: int, kind: str) -> None:
    from intently.auth.service import generate_key
    from intently.custom_fields.schemas import CustomFieldIn
    from intently.custom_fields.service import create as create_field
    from intently.kit.db import make_engine
    from intently.kit.ids import new_id

    engine = make_engine(url)
    generate_key(engine, bk.WORKSPACE, bk.EMAIL)
    ws = workspace_of(engine)
    for label, typ in FIELDS.items():
        create_field(engine, ws, CustomFieldIn(label=label[:-2], labelType=typ))
    now = int(time.time() * 1_000_000)
    today = now // US_PER_DAY
    born = now - US_PER_DAY
    rnd = random.Random(13)
    raw = engine.raw_connection()
    m = "?" if kind == "sqlite" else "%s"
    try:
        cur = raw.cursor()
        if kind == "sqlite":
            cur.execute("PRAGMA synchronous=OFF")
        for first in range(0, accounts, CHUNK):
            acc_rows, daily, deals, links = [], [], [], []
            for n in range(first, min(first + CHUNK, accounts)):
                domain = f"acct-{n}.example.com"
                tags = [t for t in TAGS if rnd.random() < 0.08]
                cf = {
                    "INDUSTRY_C": rnd.choice(INDUSTRIES),
                    "REGION_C": rnd.choice(REGIONS),
                    "EMPLOYEES_C": int(rnd.lognormvariate(6, 1.6)),
                }
                scores = [round(min(100.0, rnd.expovariate(1 / 25)), 2) for _ in range(5)]
                stage = STAGES[min(6, int(rnd.expovariate(0.9)))]
                ident = (ws, new_id(), domain, f"Company {n}", f"EXT-{n}")
                acc_rows.append(
                    (*ident, json.dumps(tags), json.dumps(cf), *scores, stage, born, born)
                )
                daily.extend((ws, *r) for r in rollups(rnd, domain, today))
                if n % 20 == 0:
                    did = new_id()
                    label = rnd.choice(("Qualified", "Proposal", "Closed Won", "Closed Lost"))
                    amount = float(rnd.randint(5, 200) * 1000)
                    deals.append((ws, did, f"D-{n}", f"Deal {n}", amount, label, born, born))
                    # CRMs associate by the account's id where they have it, else domain.
                    links.append(
                        (ws, did, 0, f"EXT-{n}", None) if n % 40 else (ws, did, 0, None, domain)
                    )
            if kind == "sqlite":
                cur.execute("BEGIN")  # the engine's connections are in autocommit mode
            cur.executemany(
                "INSERT INTO accounts (workspace_id, id, domain, name, external_id, tags, "
                "custom_fields, rtp_account_score, rtp_website_intent_score, "
                "rtp_bombora_intent_score, rtp_g2_intent_score, rtp_advertising_activity_score, "
                f"rtp_journey_stage, created_at, changed_at) VALUES ({', '.join([m] * 15)})",
                acc_rows,
            )
            cols = "(workspace_id, domain, source, type, topic, day, count, value_sum)"
            if kind == "sqlite":
                cur.executemany(
                    f"INSERT INTO signal_daily {cols} VALUES ({', '.join([m] * 8)})", daily
                )
            else:
                with cur.copy(f"COPY signal_daily {cols} FROM STDIN") as copy:
                    for r in daily:
                        copy.write_row(r)
            cur.executemany(
                "INSERT INTO deals (workspace_id, id, external_deal_id, name, amount, stage_label, "
                f"created_at, updated_at) VALUES ({', '.join([m] * 8)})",
                deals,
            )
            cur.executemany(
                "INSERT INTO deal_accounts (workspace_id, deal_id, position, external_id, domain) "
                f"VALUES ({', '.join([m] * 5)})",
                links,
            )
            raw.commit()
            if (first // CHUNK) % 10 == 0:
                bk.say(f"  {first + len(acc_rows):,} accounts")
        if kind != "sqlite":  # as autovacuum would; the application never ANALYZEs SQLite
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
        engine.dispose()


def reset(url: str) -> None:
    """No segments, members, events or deliveries: the build starts from nothing."""
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        for table in ("segment_members", "segments", "events", "webhook_deliveries"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def count(url: str, sql: str) -> int:
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        n = int(conn.exec_driver_sql(sql).scalar_one())
    engine.dispose()
    return n


def create_segments(url: str) -> list[str]:
    """The 50 segments, saved without computing membership (the build is measured)."""
    from intently.kit.db import make_engine, write_tx
    from intently.kit.ids import new_id
    from intently.segments import repository as repo

    engine = make_engine(url)
    ws = workspace_of(engine)
    ids = []
    now = int(time.time() * 1_000_000)
    with write_tx(engine) as conn:
        for i, rule in enumerate(segment_rules()):
            sid = new_id()
            repo.insert(conn, {"workspace_id": ws, "id": sid, "name": f"bench segment {i}",
                               "type": "dynamic", "status": "active", "rules": rule,
                               "created_at": now, "updated_at": now})  # fmt: skip
            ids.append(sid)
    engine.dispose()
    return ids


def refresh_all(url: str) -> tuple[float, int, int]:
    """(seconds, entered, exited) of one recompute of every live dynamic segment."""
    from intently.kit.db import make_engine
    from intently.segments import membership

    engine = make_engine(url)
    ws = workspace_of(engine)
    t0 = time.perf_counter()
    done = membership.refresh(engine, ws)
    seconds = time.perf_counter() - t0
    engine.dispose()
    assert len(done) == SEGMENTS, len(done)
    return seconds, sum(d.entered for d in done.values()), sum(d.exited for d in done.values())


def change_some(url: str, share: float) -> int:
    """Move the scores and tags of a share of the accounts (as scoring and pushes would)."""
    from intently.kit.db import make_engine

    engine = make_engine(url)
    ws = workspace_of(engine)
    rnd = random.Random(time.time_ns())
    m = "?" if engine.dialect.name == "sqlite" else "%s"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"SELECT id FROM accounts WHERE workspace_id = {m}", (ws,))
        picks = rnd.sample([r[0] for r in cur.fetchall()], int(n_of(cur, ws, m) * share))
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
        cur.executemany(
            f"UPDATE accounts SET rtp_account_score = {m}, tags = {m} "
            f"WHERE workspace_id = {m} AND id = {m}",
            [(round(rnd.uniform(0, 100), 2), json.dumps(rnd.sample(TAGS, 2)), ws, aid)
             for aid in picks],
        )  # fmt: skip
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return len(picks)


def n_of(cur: Any, ws: int, m: str) -> int:
    cur.execute(f"SELECT count(*) FROM accounts WHERE workspace_id = {m}", (ws,))
    return int(cur.fetchone()[0])


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded data")
    parser.add_argument("--rebuild", action="store_true",
                        help="with --reuse: rebuild the segments that are there")  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    postgres = args.db == "postgres"
    n = args.accounts
    db = bk.seeded_database(postgres, args.reuse, "segments", PG_DB, n)
    try:
        from intently.kit.migrate import migrate

        migrate(db.url)
        have = count(db.url, "SELECT count(*) FROM accounts")
        if have != n:
            if have:
                raise SystemExit(f"{db.url} holds {have:,} accounts, not {n:,}: remove it")
            bk.say(f"seeding {n:,} accounts into {db.url} ...")
            t0 = time.perf_counter()
            seed(db.url, n, db.kind)
            bk.say(f"  seeded in {time.perf_counter() - t0:.0f} s")
        else:
            bk.say(f"reusing {db.url}")
        built = count(db.url, "SELECT count(*) FROM segments") == SEGMENTS
        build_s: float | None = None
        if args.rebuild or not built:
            reset(db.url)
            create_segments(db.url)
            build_s, entered, _ = refresh_all(db.url)
            members = count(db.url, "SELECT count(*) FROM segment_members")
            events = count(db.url, "SELECT count(*) FROM events")
            bk.say(f"build: {build_s:.1f} s, {entered:,} entered ({members:,} members, "
                   f"{events:,} events)")  # fmt: skip
            if entered != members:
                raise SystemExit("unexpected counts: the build must enter every member")
        else:
            members = count(db.url, "SELECT count(*) FROM segment_members")
            bk.say(f"reusing the {SEGMENTS} segments ({members:,} members); --rebuild rebuilds")
        again_s, e2, x2 = refresh_all(db.url)
        bk.say(f"recompute, nothing changed: {again_s:.1f} s ({e2:,} entered, {x2:,} exited)")
        changed = change_some(db.url, 0.01)
        moved_s, e3, x3 = refresh_all(db.url)
        bk.say(f"recompute after {changed:,} accounts changed: {moved_s:.1f} s "
               f"({e3:,} entered, {x3:,} exited)")  # fmt: skip
    finally:
        if not args.reuse:
            db.cleanup()
    if e2 or x2:
        raise SystemExit("unexpected counts: an unchanged recompute must move nobody")
    checks = [
        bk.Check(f"recompute {SEGMENTS} dynamic segments over {n:,} accounts", again_s, "s",
                 RECOMPUTE_TARGET_S, higher_is_better=False, decimals=1,
                 note=f"{members:,} memberships"),
    ]  # fmt: skip
    bk.report(f"segments ({args.db})", checks)
    if build_s is not None:
        bk.say(f"  build (every member enters, with its event): {build_s:.1f} s")
    bk.say(f"  recompute after 1% of accounts changed: {moved_s:.1f} s ({e3 + x3:,} moves)")
    payload = {
        "db": args.db, "accounts": n, "segments": SEGMENTS, "memberships": members,
        "build_s": None if build_s is None else round(build_s, 2), "recompute_s": round(again_s, 2),
        "recompute_after_changes_s": round(moved_s, 2), "moves_after_changes": e3 + x3,
        "checks": bk.check_dicts(checks),
    }  # fmt: skip
    bk.say(f"results: {bk.save_results(f'segments-{args.db}-{n}', payload)}")
    if args.strict and not all(c.passed for c in checks):
        raise SystemExit(1)
    return checks


if __name__ == "__main__":
    main()
