"""`intently import bombora` of a 1,000,000-row Company Surge file into a fresh SQLite file.

    .venv/bin/python bench/bombora_import.py
    .venv/bin/python bench/bombora_import.py --rows 200000

Generates a realistic ADAT-shaped file once (bench/out/bombora-<rows>.csv.gz: about
100,000 domains with ten topics each out of 3,000, composite scores around 55 so that
about a third are 60 or more, and one malformed row in 2,000), then runs the import
command as a subprocess and checks its wall time (< 60 s) and its peak RSS (< 300 MB).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchkit as bk

TIME_TARGET_S = 60.0
RSS_TARGET_MB = 300.0
WEEK = "2026-11-23"
TOPICS_PER_DOMAIN = 10
HEADER = [
    "Company Name", "Domain", "Size", "Industry", "Category", "Topic", "Composite Score",
    "Bucket Code", "Metro Area", "Metro Composite Score", "Metro Bucket Code",
    "Domain Origin Country",
]  # fmt: skip
SIZES = ["1-10 employees", "11-50 employees", "51-200 employees", "201-500 employees",
         "501-1,000 employees", "1,001-5,000 employees", "5,000+ employees"]  # fmt: skip
INDUSTRIES = ["Software", "Finance", "Healthcare", "Manufacturing", "Retail", "Education",
              "Media", "Telecommunications", "Energy", "Government"]  # fmt: skip
CATEGORIES = ["Technology", "Business", "Marketing", "Security", "Finance", "HR", "Legal"]
METROS = ["New York", "San Francisco", "London", "Chicago", "Berlin", "Paris", "Toronto",
          "Austin", "Boston", "Sydney", ""]  # fmt: skip
COUNTRIES = ["US", "GB", "DE", "FR", "CA", "AU", "NL", "IN"]
TLDS = ["com", "com", "com", "io", "net", "co.uk", "de", "org"]


def bucket(score: int) -> str:
    return "A" if score >= 80 else "B" if score >= 70 else "C" if score >= 60 else "D"


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write the file gzipped, through a temporary name: a half-written one is never reused."""
    rnd = random.Random(seed)
    topics = [
        f"{rnd.choice(CATEGORIES)} {w} {n}"
        for n, w in enumerate(
            rnd.choice(["Cloud", "Data", "CRM", "Payroll", "Endpoint", "Analytics", "AI"])
            for _ in range(3000)
        )
    ]
    domains = max(1, rows // TOPICS_PER_DOMAIN)
    tmp = path.with_suffix(".tmp")
    written = 0
    with gzip.open(tmp, "wt", encoding="utf-8", newline="", compresslevel=6) as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for d in range(domains):
            name = f"Company {d}"
            domain = f"company-{d}.{TLDS[d % len(TLDS)]}"
            size, industry = rnd.choice(SIZES), rnd.choice(INDUSTRIES)
            country = rnd.choice(COUNTRIES)
            per = TOPICS_PER_DOMAIN if d < domains - 1 else rows - written
            for topic in rnd.sample(topics, min(per, len(topics))):
                score = max(0, min(100, round(rnd.gauss(55, 12))))
                metro = rnd.choice(METROS)
                metro_score = max(0, min(100, score + rnd.randint(-10, 10))) if metro else ""
                cells = [
                    name, domain, size, industry, topic.split(" ", 1)[0], topic, str(score),
                    bucket(score), metro, str(metro_score),
                    bucket(int(metro_score)) if metro else "", country,
                ]  # fmt: skip
                if rnd.random() < 0.0005:  # the odd malformed row a real feed has
                    cells[rnd.choice((1, 5, 6))] = rnd.choice(["", "n/a", "not a domain"])
                w.writerow(cells)
                written += 1
    os.replace(tmp, path)


def run(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bk.INTENTLY), *args], env=env, capture_output=True, text=True, check=False, **kw
    )


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the file (1,000,000)")
    parser.add_argument("--regenerate", action="store_true", help="write the file again")
    parser.add_argument(
        "--settle",
        type=float,
        default=bk.OPTIONS.settle_seconds,
        help="wait up to this long for a quiet machine first (30; 0 to skip)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)

    bk.OUT.mkdir(parents=True, exist_ok=True)
    path = bk.OUT / f"bombora-{args.rows}.csv.gz"
    if args.regenerate or not path.exists():
        bk.say(f"generating {path} ({args.rows:,} rows) ...")
        t0 = time.perf_counter()
        generate(path, args.rows)
        bk.say(f"  {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e6:.1f} MB")
    else:
        bk.say(f"reusing {path} ({path.stat().st_size / 1e6:.1f} MB)")

    db = bk.fresh_sqlite("bombora")
    env = {**os.environ, "INTENTLY_DATABASE_URL": db.url}
    try:
        keys = run(
            [
                "keys",
                "generate",
                "--workspace",
                bk.WORKSPACE,
                "--email",
                bk.EMAIL,
                "--create-workspace",
            ],
            env,
        )
        if keys.returncode != 0:
            raise SystemExit(f"keys generate failed: {keys.stderr.strip()}")
        meter = bk.CpuMeter([os.getpid()], postgres=False)
        bk.settle(meter)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        log = bk.OUT / "bombora_import.log"
        cmd = ["import", "bombora", str(path), "--workspace", bk.WORKSPACE, "--week", WEEK]
        bk.say(f"intently {' '.join(cmd)}  (into {db.path})")
        cpu0 = bk.machine_busy_seconds()
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(bk.INTENTLY), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT
            )
            sampler = bk.RssSampler(proc.pid, interval=0.05).start()
            code = proc.wait()
            seconds = time.perf_counter() - t0
            sampler.stop()
        busy = bk.machine_busy_seconds() - cpu0
        # ru_maxrss of waited-for children, in KB on Linux: exact, where sampling may miss
        # a short peak. It covers `keys generate` too, which is far smaller.
        maxrss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        peak_mb = max(maxrss_mb, sampler.peak_mb)
        if code != 0:
            raise SystemExit(f"import failed (exit {code}); see {log}:\n{log.read_text()[-2000:]}")
        con = sqlite3.connect(str(db.path))
        try:
            row = con.execute(
                "SELECT read, accepted, updated, duplicate, rejected, skipped, reasons, status "
                "FROM ingest_runs ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            signals = con.execute("SELECT count(*) FROM signals").fetchone()[0]
        finally:
            con.close()
        size_mb = bk.db_size_mb(db)
    finally:
        db.cleanup()

    read, accepted, updated, duplicate, rejected, skipped, reasons, status = row
    bk.say(
        f"  run {status}: read {read:,}, accepted {accepted:,}, updated {updated:,}, "
        f"duplicate {duplicate:,}, rejected {rejected:,}, skipped {skipped:,} {reasons}"
    )
    bk.say(
        f"  {read / seconds:,.0f} rows/s; {signals:,} signals stored; database {size_mb:,.0f} MB;"
        f" machine CPU {busy / seconds * 100:.0f}% of one core; peak RSS sampled "
        f"{sampler.peak_mb:.0f} MB, ru_maxrss {maxrss_mb:.0f} MB (before: {before / 1024:.0f} MB)"
    )
    if read != args.rows:
        raise SystemExit(f"the run read {read:,} rows, not {args.rows:,}")
    checks = [
        bk.Check(f"bombora import {args.rows:,} rows", seconds, "s", TIME_TARGET_S,
                 higher_is_better=False, decimals=1),
        bk.Check("bombora import peak memory", peak_mb, "MB", RSS_TARGET_MB,
                 higher_is_better=False),
    ]  # fmt: skip
    bk.report("bombora import (sqlite)", checks)
    payload = {
        "rows": args.rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(read / seconds),
        "peak_rss_mb": round(peak_mb, 1),
        "run": {"read": read, "accepted": accepted, "rejected": rejected, "skipped": skipped},
        "signals": signals,
        "checks": bk.check_dicts(checks),
    }
    bk.say(f"results: {bk.save_results('bombora_import-sqlite', payload)}")
    if args.strict and not all(c.passed for c in checks):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
