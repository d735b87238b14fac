"""Every benchmark, SQLite first and then PostgreSQL, with one summary at the end.

    .venv/bin/python bench/run_all.py                       # full size, both databases
    .venv/bin/python bench/run_all.py --db sqlite --list-accounts 200000
    .venv/bin/python bench/run_all.py --reuse               # keep/reuse the 1M seed

Each benchmark starts and stops its own server. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys

import benchkit as bk
import bombora_import
import bulk_push
import client_push
import collector
import dashboard
import ip_lookup
import list_pages

import demo
import scale
import scoring
import segments
import webhooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", choices=("sqlite", "postgres", "both"), default="both", help="default both"
    )
    parser.add_argument("--push-accounts", type=int, default=100_000, help="per push run")
    parser.add_argument("--list-accounts", type=int, default=1_000_000, help="accounts listed")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--reuse", action="store_true", help="reuse the list benchmark's seed")
    parser.add_argument("--settle", type=float, default=bk.OPTIONS.settle_seconds)
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-ingest", action="store_true", help="skip the signal benchmarks")
    parser.add_argument("--no-scoring", action="store_true", help="skip the scoring benchmark")
    parser.add_argument("--no-segments", action="store_true", help="skip the segment benchmark")
    parser.add_argument("--no-webhooks", action="store_true", help="skip the webhook benchmark")
    parser.add_argument("--no-client", action="store_true", help="skip the client benchmark")
    parser.add_argument(
        "--no-dashboard", action="store_true", help="skip the dashboard and demo benchmarks"
    )
    parser.add_argument(
        "--no-scale", action="store_true", help="skip the many-process benchmark (PostgreSQL)"
    )
    args = parser.parse_args()

    shared = ["--concurrency", args.concurrency, "--settle", str(args.settle)]
    shared += ["--profile", str(args.profile)]
    dbs = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    sections: list[tuple[str, list[bk.Check]]] = []
    for db in dbs:
        bk.say(f"\n######## bulk push, {db}")
        argv = ["--db", db, "--accounts", str(args.push_accounts), *shared]
        sections.append((f"bulk push ({db})", bulk_push.main(argv)))
        bk.say(f"\n######## list pages, {db}")
        argv = ["--db", db, "--accounts", str(args.list_accounts), *shared]
        if args.reuse:
            argv.append("--reuse")
        sections.append((f"list pages ({db})", list_pages.main(argv)))

    if not args.no_ingest:
        # The signal targets are set on SQLite (the embedded default) only.
        settle = ["--settle", str(args.settle)]
        bk.say("\n######## collector, sqlite")
        sections.append(("collector (sqlite)", collector.main(settle)))
        bk.say("\n######## IP lookups")
        sections.append(("IP lookups", ip_lookup.main(settle)))
        bk.say("\n######## Bombora import, sqlite")
        sections.append(("Bombora import (sqlite)", bombora_import.main(settle)))
    if not args.no_scoring:
        for db in dbs:
            bk.say(f"\n######## scoring, {db}")
            argv = ["--db", db, "--settle", str(args.settle)]
            if args.reuse:
                argv.append("--reuse")
            sections.append((f"scoring ({db})", scoring.main(argv)))

    if not args.no_segments:  # the target is set on SQLite
        bk.say("\n######## segments, sqlite")
        sections.append(("segments (sqlite)", segments.main(["--reuse"] if args.reuse else [])))
    if not args.no_webhooks:
        for db in dbs:
            bk.say(f"\n######## webhooks, {db}")
            sections.append((f"webhooks ({db})", webhooks.main(["--db", db])))

    if not args.no_client:
        for db in dbs:
            bk.say(f"\n######## client push, {db}")
            sections.append((f"client push ({db})", client_push.main(["--db", db])))
    if not args.no_dashboard:
        for db in dbs:
            bk.say(f"\n######## dashboard, {db}")
            argv = ["--db", db, *(["--reuse"] if args.reuse else [])]
            sections.append((f"dashboard ({db})", dashboard.main(argv)))
        bk.say("\n######## demo, sqlite")
        sections.append(("demo (sqlite)", demo.main([])))
    if not args.no_scale and "postgres" in dbs:
        bk.say("\n######## scale: many processes, postgres")
        sections.append(("scale (postgres)", scale.main(["--settle", str(args.settle)])))

    bk.say("\n######## summary")
    for title, checks in sections:
        bk.report(title, checks)
    missed = sum(not c.passed for _, checks in sections for c in checks)
    total = sum(len(checks) for _, checks in sections)
    bk.say(f"\n{total - missed} of {total} targets met")
    if args.strict and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
