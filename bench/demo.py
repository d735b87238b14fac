"""`intently demo` with 5,000 accounts into a fresh SQLite file: under 60 s.

    .venv/bin/python bench/demo.py
    .venv/bin/python bench/demo.py --accounts 20000

Runs the command as a user would (`intently demo --no-serve`: migrate the new database,
generate the world, load it through the services and importers, score it, create the
admin), as a subprocess, and checks its wall time against the 60 s target. The CPU time
of the command is printed too: other sessions on the machine slow the wall time, not it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sqlite3
import subprocess
import sys
import time

import benchkit as bk

TIME_TARGET_S = 60.0


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=5000, help="accounts (5,000)")
    parser.add_argument(
        "--settle",
        type=float,
        default=bk.OPTIONS.settle_seconds,
        help="wait up to this long for a quiet machine first (30; 0 to skip)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)

    db = bk.fresh_sqlite("demo")
    env = {**os.environ, "INTENTLY_DATABASE_URL": db.url, "COLUMNS": "120"}
    try:
        bk.settle(bk.CpuMeter([os.getpid()], postgres=False))
        cmd = ["demo", "--no-serve", "--accounts", str(args.accounts)]
        bk.say(f"intently {' '.join(cmd)}  (into {db.path})")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = bk.machine_busy_seconds()
        t0 = time.perf_counter()
        done = subprocess.run([str(bk.INTENTLY), *cmd], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        busy = bk.machine_busy_seconds() - busy0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(
                f"intently demo failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
            )
        if not re.search(r"^Password:\s+\S+$", done.stdout, re.MULTILINE):
            raise SystemExit(f"no password printed:\n{done.stdout}")
        con = sqlite3.connect(str(db.path))
        try:
            accounts = con.execute("SELECT count(*) FROM accounts").fetchone()[0]
            scored = con.execute(
                "SELECT count(*) FROM accounts WHERE score_model_version IS NOT NULL"
            ).fetchone()[0]
            signals = con.execute("SELECT count(*) FROM signals").fetchone()[0]
            events = con.execute("SELECT count(*) FROM web_events").fetchone()[0]
        finally:
            con.close()
    finally:
        db.cleanup()

    if accounts != args.accounts or scored != accounts:
        raise SystemExit(
            f"{accounts:,} accounts stored, {scored:,} scored; {args.accounts:,} wanted"
        )
    bk.say(
        f"  {accounts:,} accounts scored; {signals:,} signals ({events:,} website events); "
        f"command CPU {cpu:.1f} s; machine busy {busy / seconds * 100:.0f}% of one core "
        "(two cores: 200%)"
    )
    checks = [
        bk.Check(f"intently demo, {args.accounts:,} accounts", seconds, "s", TIME_TARGET_S,
                 higher_is_better=False, decimals=1),
    ]  # fmt: skip
    bk.report("demo workspace (sqlite)", checks)
    payload = {
        "accounts": args.accounts,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "signals": signals,
        "web_events": events,
        "checks": bk.check_dicts(checks),
    }
    bk.say(f"results: {bk.save_results('demo-sqlite', payload)}")
    if args.strict and not all(c.passed for c in checks):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
