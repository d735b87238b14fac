"""Scoring: a full rescore of 1,000,000 accounts with 90 days of rollups, and an incremental one.

    .venv/bin/python bench/scoring.py                       # SQLite, 1,000,000 accounts
    .venv/bin/python bench/scoring.py --accounts 100000     # smaller
    .venv/bin/python bench/scoring.py --db postgres --reuse

Seeds a workspace straight into the database (executemany on SQLite, COPY on PostgreSQL;
not through the API): N accounts (with a company profile drawn from a few hundred distinct
ones, which the fit model grades) and about 20 `signal_daily` rows each over the last 90
days across the four sources (website views, high-value views and forms; Bombora surges
by topic with scores 60-99; G2 events of every type; LinkedIn impressions and clicks).
Then, each in a child process whose peak RSS is sampled:

1. a full rescore under the default model (every account's scores change): < 120 s and
   peak RSS < 2 GB at 1,000,000 accounts;
2. the same again with nothing new (reads everything, writes nothing): reported;
3. 1,000 accounts get a new signal each (through the signal store, as an import would),
   then an incremental rescore: < 2 s.

`--trained` then measures the full rescore again under a trained predictive model: a few
deals are seeded (3% of the accounts, opened over the last 75 days), `scoring train
--horizon 30` fits a model on them (not measured) and it is activated; the run's time is
reported with its ratio to the default model's full run of the same invocation.

`--reuse` keeps the seeded database (bench/out/scoring-<N>.sqlite3, or the PostgreSQL
database intently_bench_scoring) and skips seeding; scores are reset before measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchkit as bk

FULL_TARGET_S = 120.0
RSS_TARGET_MB = 2048.0
INCREMENTAL_TARGET_S = 2.0
INCREMENTAL_ACCOUNTS = 1000
PG_DB = "intently_bench_scoring"
US_PER_DAY = 86_400_000_000
CHUNK = 10_000  # accounts per insert batch

G2_TYPES = ("pricing", "comparison", "alternatives", "category", "profile", "sponsored", "other")


def rollups(rnd: random.Random, domain: str, today: int) -> Iterator[tuple[Any, ...]]:
    """(domain, source, type, topic, day, count, value_sum) for one account, ~20 rows.

    Days of one (source, type, topic) are distinct: start + 7j modulo 90 never repeats
    for j < 90 because 7 and 90 are coprime.
    """

    def days(n: int) -> list[int]:
        start = rnd.randrange(90)
        return [today - (start + 7 * j) % 90 for j in range(n)]

    for day in days(rnd.randint(3, 13)):
        n = rnd.randint(1, 6)
        yield domain, "website", "page_view", "", day, n, float(n)
    for day in days(rnd.randint(0, 4)):
        yield domain, "website", "high_value_page_view", "", day, 1, 1.0
    if rnd.random() < 0.1:
        yield domain, "website", "form_submit", "", today - rnd.randrange(90), 1, 1.0
    for t in range(rnd.randint(0, 5)):
        score = float(rnd.randint(60, 99))
        yield domain, "bombora", "surge", f"topic-{t}", today - 7 * rnd.randrange(13), 1, score
    for day in days(rnd.randint(0, 4)):
        yield domain, "g2", G2_TYPES[rnd.randrange(7)], "", day, 1, 1.0
    for day in days(rnd.randint(2, 6)):
        n = rnd.randint(1, 60)
        yield domain, "linkedin", "ad_impression", "", day, 1, float(n)
    for day in days(rnd.randint(0, 2)):
        yield domain, "linkedin", "ad_click", "", day, 1, 1.0


def seed(url: str, accounts: int, kind: str) -> int:
    """Create the bench workspace with its accounts and rollups; returns the rollup rows."""
    from intently.auth.service import generate_key
    from intently.kit.db import make_engine
    from intently.kit.ids import new_id
    from intently.kit.migrate import migrate

    migrate(url)
    engine = make_engine(url)
    generate_key(engine, bk.WORKSPACE, bk.EMAIL)
    ws = workspace_of(engine)
    now = int(time.time() * 1_000_000)
    today = now // US_PER_DAY
    born = now - US_PER_DAY  # seeded a day ago: nothing counts as recently changed
    rnd = random.Random(11)
    firmo = random.Random(12)  # apart, so the rollups are those seeded before profiles
    total = 0
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if kind == "sqlite":
            cur.execute("PRAGMA synchronous=OFF")
        for first in range(0, accounts, CHUNK):
            acc_rows = []
            daily: list[tuple[Any, ...]] = []
            for n in range(first, min(first + CHUNK, accounts)):
                domain = f"acct-{n}.example.com"
                acc_rows.append(
                    (ws, new_id(), domain, f"Company {n}", f"EXT-{n}", "[]", "{}",
                     *profile(firmo), born, born)
                )  # fmt: skip
                daily.extend((ws, *r) for r in rollups(rnd, domain, today))
            total += len(daily)
            acc_sql = (
                "INSERT INTO accounts (workspace_id, id, domain, name, external_id, tags, "
                "custom_fields, employee_count, annual_revenue, industry, country, "
                "rtp_account_score, rtp_website_intent_score, "
                "rtp_bombora_intent_score, rtp_g2_intent_score, rtp_advertising_activity_score, "
                "created_at, changed_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, "
                "{m}, {m}, {m}, {m}, 0, 0, 0, 0, 0, {m}, {m})"
            )
            daily_cols = "(workspace_id, domain, source, type, topic, day, count, value_sum)"
            if kind == "sqlite":
                cur.execute("BEGIN")  # the engine's connections are in autocommit mode
                cur.executemany(acc_sql.format(m="?"), acc_rows)
                cur.executemany(
                    f"INSERT INTO signal_daily {daily_cols} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", daily
                )
            else:
                cur.executemany(acc_sql.format(m="%s"), acc_rows)
                with cur.copy(f"COPY signal_daily {daily_cols} FROM STDIN") as copy:
                    for r in daily:
                        copy.write_row(r)
            raw.commit()
            if (first // CHUNK) % 10 == 0:
                bk.say(f"  {first + len(acc_rows):,} accounts, {total:,} rollup rows")
        if kind != "sqlite":
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return total


def profile(rnd: random.Random) -> tuple[Any, ...]:
    """(employees, revenue, industry, country): a fifth of accounts unknown in each, the
    rest from a few values, as firmographic data comes (a few hundred distinct profiles)."""

    def pick(*values: Any) -> Any:
        return None if rnd.random() < 0.2 else rnd.choice(values)

    return (
        pick(12, 80, 350, 1200, 8000),
        pick(5e5, 3e6, 2.5e7, 4e8),
        pick("Software", "Retail", "Manufacturing", "Financial Services"),
        pick("US", "DE", "GB", "FR"),
    )


def workspace_of(engine: Any) -> int:
    from intently.auth.repository import workspace_id_by_name

    with engine.connect() as conn:
        ws = workspace_id_by_name(conn, bk.WORKSPACE)
    assert ws is not None
    return int(ws)


def reset_scores(url: str) -> None:
    """Every account back to unscored and unplaced, so the full run changes them all again."""
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE accounts SET rtp_account_score = 0, rtp_website_intent_score = 0, "
            "rtp_bombora_intent_score = 0, rtp_g2_intent_score = 0, "
            "rtp_advertising_activity_score = 0, score_model_version = NULL, "
            "rtp_fit_score = NULL, rtp_grade = NULL, "
            "rtp_last_account_date = NULL, rtp_journey_stage = NULL"
        )
        # As after seeding: every account is placed on the journey again, with its events.
        for table in ("scoring_runs", "stage_changes", "journey_days", "events"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def counts(url: str) -> tuple[int, int]:
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        a = conn.exec_driver_sql("SELECT count(*) FROM accounts").scalar_one()
        d = conn.exec_driver_sql("SELECT count(*) FROM signal_daily").scalar_one()
    engine.dispose()
    return int(a), int(d)


def new_signals(url: str, n: int) -> None:
    """One new G2 pricing signal for each of n random accounts, through the signal store."""
    from intently.kit.db import make_engine, write_tx
    from intently.signals.store import SignalIn, store

    engine = make_engine(url)
    ws = workspace_of(engine)
    total, _ = counts(url)
    rnd = random.Random(time.time_ns())
    now = int(time.time() * 1_000_000)
    picks = rnd.sample(range(total), n)
    items = [
        SignalIn(
            domain=f"acct-{i}.example.com", source="g2", type="pricing", occurred_at=now,
            natural_key=f"bench-{now}-{i}", provider="bench",
        )
        for i in picks
    ]  # fmt: skip
    with write_tx(engine) as conn:
        store(conn, ws, items)
    engine.dispose()


def seed_deals(url: str) -> int:
    """Open deals for 3% of the accounts, opened over the last 75 days (for --trained)."""
    from intently.kit.db import make_engine
    from intently.kit.ids import new_id

    engine = make_engine(url)
    ws = workspace_of(engine)
    total, _ = counts(url)
    rnd = random.Random(23)
    now = int(time.time() * 1_000_000)
    deals, links = [], []
    for i in rnd.sample(range(total), max(total * 3 // 100, 200)):
        did, at = new_id(), now - rnd.randrange(1, 75) * US_PER_DAY
        deals.append((ws, did, f"BENCH-{i}", f"Deal {i}", "Discovery", at, at, at))
        links.append((ws, did, f"acct-{i}.example.com"))
    m = "?" if engine.dialect.name == "sqlite" else "%s"
    with engine.begin() as conn:
        # Seeded a day ago, the accounts would postdate every cut-off: training leaves
        # out accounts created after one.
        conn.exec_driver_sql(f"UPDATE accounts SET created_at = created_at - {200 * US_PER_DAY}")
        conn.exec_driver_sql("DELETE FROM deal_accounts")
        conn.exec_driver_sql("DELETE FROM deals")
        conn.exec_driver_sql(
            "INSERT INTO deals (workspace_id, id, external_deal_id, name, stage_label, "
            f"start_date, created_at, updated_at) VALUES ({', '.join([m] * 8)})",
            deals,
        )
        conn.exec_driver_sql(
            "INSERT INTO deal_accounts (workspace_id, deal_id, position, domain) "
            f"VALUES ({m}, {m}, 0, {m})",
            links,
        )
    engine.dispose()
    return len(deals)


def train_and_activate(url: str) -> dict[str, Any]:
    """Train on the seeded deals (horizon 30: the rollups span 90 days) and activate it."""
    from intently.kit.db import make_engine
    from intently.scoring import training

    engine = make_engine(url)
    ws = workspace_of(engine)
    t = training.train(engine, ws, horizon_days=30)
    training.activate_version(engine, ws, t["modelVersion"], force=True)
    engine.dispose()
    return t


def child(url: str, kind: str) -> None:
    """Run one scoring run in this process and print its summary as JSON."""
    from intently.kit.db import make_engine
    from intently.pipeline import run_scoring

    engine = make_engine(url)
    summary = run_scoring(engine, workspace_of(engine), full=kind == "full")
    print(json.dumps(summary.as_dict()), flush=True)


def measured(url: str, kind: str, postgres: bool) -> tuple[dict[str, Any], float, float]:
    """(summary, wall seconds, peak RSS MB) of a run in a child process."""
    bk.settle(bk.CpuMeter([os.getpid()], postgres=postgres))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--url", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler = bk.RssSampler(proc.pid, interval=0.05).start()
    out, _ = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} run failed (exit {proc.returncode})")
    summary = json.loads(out.strip().splitlines()[-1])
    return summary, wall, sampler.peak_mb


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded data")
    parser.add_argument("--settle", type=float, default=bk.OPTIONS.settle_seconds)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--trained", action="store_true", help="also a full rescore under a trained model"
    )
    parser.add_argument("--child", choices=("full", "incremental"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.url, args.child)
        return []
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)
    postgres = args.db == "postgres"
    n = args.accounts

    db = bk.seeded_database(postgres, args.reuse, "scoring", PG_DB, n)
    try:
        from intently.kit.migrate import migrate

        migrate(db.url)  # a new database gets its tables; a kept one its newest schema
        have = counts(db.url)[0] if args.reuse else 0
        if have != n:
            if have:
                raise SystemExit(f"{db.url} holds {have:,} accounts, not {n:,}: remove it")
            bk.say(f"seeding {n:,} accounts into {db.url} ...")
            t0 = time.perf_counter()
            rows = seed(db.url, n, db.kind)
            bk.say(f"  {rows:,} rollup rows in {time.perf_counter() - t0:.0f} s")
        else:
            bk.say(f"reusing {db.url}")
            reset_scores(db.url)
        accounts, rows = counts(db.url)
        if postgres:
            size_mb = float(bk.psql(f"SELECT pg_database_size('{PG_DB}')")) / 1e6
        else:
            size_mb = bk.db_size_mb(db)
        bk.say(f"{accounts:,} accounts, {rows:,} signal_daily rows ({size_mb:,.0f} MB)")

        full, full_wall, full_rss = measured(db.url, "full", postgres)
        bk.say(f"full rescore: {full}  wall {full_wall:.1f} s, peak RSS {full_rss:.0f} MB")
        again, again_wall, _ = measured(db.url, "full", postgres)
        bk.say(f"full rescore, nothing new: {again}  wall {again_wall:.1f} s")
        new_signals(db.url, INCREMENTAL_ACCOUNTS)
        inc, inc_wall, inc_rss = measured(db.url, "incremental", postgres)
        bk.say(f"incremental rescore: {inc}  wall {inc_wall:.1f} s, peak RSS {inc_rss:.0f} MB")
        trained = None
        if args.trained:
            bk.say(f"deals for training: {seed_deals(db.url):,}")
            t0 = time.perf_counter()
            t = train_and_activate(db.url)
            bk.say(f"trained and activated model version {t['modelVersion']} in "
                   f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
            reset_scores(db.url)
            trained, tr_wall, tr_rss = measured(db.url, "full", postgres)
            bk.say(f"full rescore, trained model: {trained}  wall {tr_wall:.1f} s, "
                   f"peak RSS {tr_rss:.0f} MB; {trained['seconds'] / full['seconds']:.2f}x the "
                   "default model's")  # fmt: skip
    finally:
        if not args.reuse:
            db.cleanup()
    if full["changed"] < accounts * 0.9 or again["changed"] != 0:
        raise SystemExit("unexpected counts: the full run should change (nearly) every account")
    if inc["scored"] < INCREMENTAL_ACCOUNTS or inc["changed"] < INCREMENTAL_ACCOUNTS * 0.5:
        raise SystemExit(f"the incremental run did not score the {INCREMENTAL_ACCOUNTS} accounts")
    checks = [
        bk.Check(f"full rescore of {accounts:,} accounts", full["seconds"], "s", FULL_TARGET_S,
                 higher_is_better=False, decimals=1,
                 note=f"{rows:,} rollup rows; process wall {full_wall:.1f} s"),
        bk.Check("full rescore peak RSS", full_rss, "MB", RSS_TARGET_MB, higher_is_better=False),
        bk.Check(f"incremental rescore, {INCREMENTAL_ACCOUNTS:,} accounts with new signals",
                 inc["seconds"], "s", INCREMENTAL_TARGET_S, higher_is_better=False, decimals=2,
                 note=f"{inc['scored']:,} scored"),
    ]  # fmt: skip
    if trained is not None:
        ratio = trained["seconds"] / full["seconds"]
        checks += [
            bk.Check(f"full rescore of {accounts:,} accounts, trained model", trained["seconds"],
                     "s", FULL_TARGET_S, higher_is_better=False, decimals=1,
                     note=f"{ratio:.2f}x the default model's {full['seconds']:.1f} s"),
            bk.Check("full rescore peak RSS, trained model", tr_rss, "MB", RSS_TARGET_MB,
                     higher_is_better=False),
        ]  # fmt: skip
    bk.report(f"scoring ({args.db})", checks)
    payload = {
        "db": args.db,
        "accounts": accounts,
        "rollup_rows": rows,
        "full": full | {"wall_s": round(full_wall, 2), "peak_rss_mb": round(full_rss)},
        "full_unchanged": again | {"wall_s": round(again_wall, 2)},
        "incremental": inc | {"wall_s": round(inc_wall, 2), "peak_rss_mb": round(inc_rss)},
        "trained": None
        if trained is None
        else trained | {"wall_s": round(tr_wall, 2), "peak_rss_mb": round(tr_rss)},
        "checks": bk.check_dicts(checks),
    }
    bk.say(f"results: {bk.save_results(f'scoring-{args.db}-{accounts}', payload)}")
    if args.strict and not all(c.passed for c in checks):
        raise SystemExit(1)
    return checks


if __name__ == "__main__":
    main()
