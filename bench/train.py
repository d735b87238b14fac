"""Training the predictive model: 100,000 accounts with 180 days of history.

    .venv/bin/python bench/train.py                         # SQLite, 100,000 accounts
    .venv/bin/python bench/train.py --accounts 20000        # smaller
    .venv/bin/python bench/train.py --db postgres --reuse

Seeds a workspace straight into the database (executemany on SQLite, COPY on PostgreSQL;
not through the API): N accounts with a profile (industry, employee count, country) and
about 25 `signal_daily` rows each over the last 180 days across the four sources, and
deals: a third of the accounts have an in-market episode (LinkedIn clicks, G2
comparisons) and those in the ICP (software, 201-1000 employees) open a deal after it.
Then `intently scoring train` runs in a child process (the library call it makes),
whose wall time and peak RSS (sampled, and the child's own ru_maxrss) are checked
against the targets: < 120 s and < 2 GB.

`--reuse` keeps the seeded database (bench/out/train-<N>.sqlite3, or the PostgreSQL
database intently_bench_train) and skips seeding; trainings and trained versions are
removed before measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchkit as bk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import workspace_of

TRAIN_TARGET_S = 120.0
RSS_TARGET_MB = 2048.0
PG_DB = "intently_bench_train"
US_PER_DAY = 86_400_000_000
CHUNK = 10_000
DAYS = 180
INDUSTRIES = ("software", "finance", "retail", "healthcare", "manufacturing", "education")
SIZES = (25, 120, 450, 2500, 12000)
G2_TYPES = ("pricing", "comparison", "alternatives", "category", "profile", "sponsored", "other")


def world(
    rnd: random.Random, domain: str, today: int
) -> tuple[list[tuple[Any, ...]], Any, int | None]:
    """(rollup rows, (industry, employees, country), the day a deal opened or None)."""
    icp = rnd.random() < 0.3
    industry = "software" if icp else rnd.choice(INDUSTRIES)
    size = 450 if icp else rnd.choice(SIZES)
    rows: dict[tuple[str, str, str, int], list[float]] = {}

    def add(source: str, typ: str, day: int, value: float = 1.0, topic: str = "") -> None:
        if day >= today:
            return
        r = rows.setdefault((source, typ, topic, day), [0, 0.0])
        r[0] += 1
        r[1] += value

    for _ in range(rnd.randint(3, 14)):
        add("website", "page_view", today - rnd.randrange(DAYS), float(rnd.randint(1, 4)))
    for _ in range(rnd.randint(0, 3)):
        add("website", "high_value_page_view", today - rnd.randrange(DAYS))
    for t in range(rnd.randint(0, 3)):
        add("bombora", "surge", today - 7 * rnd.randrange(DAYS // 7), rnd.randint(60, 99), f"t{t}")
    for _ in range(rnd.randint(0, 3)):
        add("g2", G2_TYPES[rnd.randrange(7)], today - rnd.randrange(DAYS))
    for _ in range(rnd.randint(1, 5)):
        add("linkedin", "ad_impression", today - rnd.randrange(DAYS), float(rnd.randint(1, 60)))
    opened = None
    if rnd.random() < 0.33:
        start = today - rnd.randrange(10, DAYS - 5)
        for _ in range(rnd.randint(2, 5)):
            add("linkedin", "ad_click", start + rnd.randrange(21))
        for _ in range(rnd.randint(1, 4)):
            add("g2", "comparison", start + rnd.randrange(21))
        if icp and rnd.random() < 0.8:
            opened = start + rnd.randrange(7, 25)
            opened = opened if opened < today else None
    out = [(domain, s, t, topic, d, int(c), float(v)) for (s, t, topic, d), (c, v) in rows.items()]
    return out, (industry, size, rnd.choice(("US", "GB", "DE", "FR"))), opened


def seed(url: str, accounts: int, kind: str) -> tuple[int, int]:
    """The bench workspace with its accounts, rollups and deals; (rollup rows, deals)."""
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
    born = now - 400 * US_PER_DAY  # before every cut-off
    rnd = random.Random(17)
    total = n_deals = 0
    m = "?" if kind == "sqlite" else "%s"
    acc_sql = (
        "INSERT INTO accounts (workspace_id, id, domain, name, external_id, tags, custom_fields, "
        "industry, employee_count, country, rtp_account_score, rtp_website_intent_score, "
        "rtp_bombora_intent_score, rtp_g2_intent_score, rtp_advertising_activity_score, "
        f"created_at, changed_at) VALUES ({', '.join([m] * 10)}, 0, 0, 0, 0, 0, {m}, {m})"
    )
    deal_sql = (
        "INSERT INTO deals (workspace_id, id, external_deal_id, name, stage_label, start_date, "
        f"created_at, updated_at) VALUES ({', '.join([m] * 8)})"
    )
    link_sql = (
        "INSERT INTO deal_accounts (workspace_id, deal_id, position, domain) "
        f"VALUES ({m}, {m}, 0, {m})"
    )
    daily_cols = "(workspace_id, domain, source, type, topic, day, count, value_sum)"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if kind == "sqlite":
            cur.execute("PRAGMA synchronous=OFF")
        for first in range(0, accounts, CHUNK):
            acc_rows, daily, deals, links = [], [], [], []
            for n in range(first, min(first + CHUNK, accounts)):
                domain = f"acct-{n}.example.com"
                rows, (ind, size, cty), opened = world(rnd, domain, today)
                acc_rows.append((ws, new_id(), domain, f"Company {n}", f"EXT-{n}", "[]", "{}",
                                 ind, size, cty, born, born))  # fmt: skip
                daily.extend((ws, *r) for r in rows)
                if opened is not None:
                    did = new_id()
                    at = opened * US_PER_DAY
                    deals.append((ws, did, f"D-{n}", f"Deal {n}", "Discovery", at, at, at))
                    links.append((ws, did, domain))
            total += len(daily)
            n_deals += len(deals)
            if kind == "sqlite":
                cur.execute("BEGIN")
                cur.executemany(acc_sql, acc_rows)
                cur.executemany(
                    f"INSERT INTO signal_daily {daily_cols} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", daily
                )
            else:
                cur.executemany(acc_sql, acc_rows)
                with cur.copy(f"COPY signal_daily {daily_cols} FROM STDIN") as copy:
                    for r in daily:
                        copy.write_row(r)
            if deals:
                cur.executemany(deal_sql, deals)
                cur.executemany(link_sql, links)
            raw.commit()
            if (first // CHUNK) % 10 == 0:
                bk.say(f"  {first + len(acc_rows):,} accounts, {total:,} rollup rows")
        if kind != "sqlite":
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return total, n_deals


def reset(url: str) -> None:
    """No trainings and no stored models: each measurement starts from the default."""
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM model_trainings")
        conn.exec_driver_sql("DELETE FROM scoring_models")
    engine.dispose()


def counts(url: str) -> tuple[int, int, int]:
    from intently.kit.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        a = conn.exec_driver_sql("SELECT count(*) FROM accounts").scalar_one()
        d = conn.exec_driver_sql("SELECT count(*) FROM signal_daily").scalar_one()
        deals = conn.exec_driver_sql("SELECT count(*) FROM deals").scalar_one()
    engine.dispose()
    return int(a), int(d), int(deals)


def child(url: str, horizon: int) -> None:
    """Train in this process; print the training's report and this process's ru_maxrss."""
    from intently.kit.db import make_engine
    from intently.scoring import training

    engine = make_engine(url)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    t = training.train(engine, workspace_of(engine), horizon_days=horizon, progress=say)
    seconds = time.perf_counter() - t0
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"training": t, "seconds": seconds, "maxrss_mb": maxrss_mb}), flush=True)


def measured(url: str, horizon: int, postgres: bool) -> tuple[dict[str, Any], float, float]:
    bk.settle(bk.CpuMeter([os.getpid()], postgres=postgres))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(horizon), "--url", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler = bk.RssSampler(proc.pid, interval=0.05).start()
    out, _ = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the training failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), wall, sampler.peak_mb


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded data")
    parser.add_argument("--settle", type=float, default=bk.OPTIONS.settle_seconds)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.url, int(args.child))
        return []
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)
    postgres = args.db == "postgres"
    n = args.accounts
    db = bk.seeded_database(postgres, args.reuse, "train", PG_DB, n)
    try:
        from intently.kit.migrate import migrate

        migrate(db.url)
        have = counts(db.url)[0] if args.reuse else 0
        if have != n:
            if have:
                raise SystemExit(f"{db.url} holds {have:,} accounts, not {n:,}: remove it")
            bk.say(f"seeding {n:,} accounts with {DAYS} days of history into {db.url} ...")
            t0 = time.perf_counter()
            seed(db.url, n, db.kind)
            bk.say(f"  seeded in {time.perf_counter() - t0:.0f} s")
        else:
            bk.say(f"reusing {db.url}")
        reset(db.url)
        accounts, rows, deals = counts(db.url)
        bk.say(f"{accounts:,} accounts, {rows:,} signal_daily rows, {deals:,} deals")
        out, wall, rss = measured(db.url, args.horizon, postgres)
    finally:
        if not args.reuse:
            db.cleanup()
    t = out["training"]
    r = t["report"]
    bk.say(f"training {t['status']}: model version {t['modelVersion']}; "
           f"{r['training']['samples']:,} training samples ({r['training']['fitted']:,} fitted), "
           f"hold-out {r['holdout']['samples']:,}; trained AUC {r['trained']['rocAuc']} against "
           f"the default's {r['current']['rocAuc']}")  # fmt: skip
    bk.say(f"seconds {out['seconds']:.1f} (process wall {wall:.1f}), peak RSS sampled "
           f"{rss:.0f} MB, ru_maxrss {out['maxrss_mb']:.0f} MB")  # fmt: skip
    peak = max(rss, out["maxrss_mb"])
    checks = [
        bk.Check(f"training on {accounts:,} accounts, {DAYS} days", out["seconds"], "s",
                 TRAIN_TARGET_S, higher_is_better=False, decimals=1,
                 note=f"{rows:,} rollup rows, {deals:,} deals; process wall {wall:.1f} s"),
        bk.Check("training peak RSS", peak, "MB", RSS_TARGET_MB, higher_is_better=False),
    ]  # fmt: skip
    bk.report(f"training ({args.db})", checks)
    payload = {
        "db": args.db,
        "accounts": accounts,
        "rollup_rows": rows,
        "deals": deals,
        "seconds": round(out["seconds"], 2),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss),
        "maxrss_mb": round(out["maxrss_mb"]),
        "report": r,
        "checks": bk.check_dicts(checks),
    }
    bk.say(f"results: {bk.save_results(f'train-{args.db}-{accounts}', payload)}")
    if args.strict and not all(c.passed for c in checks):
        raise SystemExit(1)
    return checks


if __name__ == "__main__":
    main()
