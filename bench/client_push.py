"""Pushing accounts through the Python client against the server's own bulk rate.

    .venv/bin/python bench/client_push.py                    # SQLite, 100,000 accounts
    .venv/bin/python bench/client_push.py --db postgres --accounts 50000

One `intently serve` on a new database. First the server's own rate: pre-encoded
`POST /accounts` bodies of 100 new accounts over persistent raw connections (the bulk
push benchmark's load generator), at 1 and 2 connections. Then the same number of other
new accounts through `intently.client.Client.push_accounts` (dicts in, one result per
account out) at concurrency 1 and 2. The client's best rate must reach 80% of the
server's best (the target): the client adds little.
"""

from __future__ import annotations

import argparse
import sys
import time

import benchkit as bk

RATIO_TARGET = 0.8
PER_REQUEST = 100
LEVELS = (1, 2)


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args(argv)
    n = args.accounts

    from intently.client import Client

    db = bk.fresh_postgres() if args.db == "postgres" else bk.fresh_sqlite("client_push")
    checks: list[bk.Check] = []
    try:
        with bk.running_server(db, f"client_push-{args.db}") as server:
            warm = bk.push_bodies(10 * n, 2_000, per_request=PER_REQUEST)
            bk.run_load(
                server, [bk.Request("POST", "/api/v1/accounts", b) for b in warm], 1,
                items_per_request=PER_REQUEST,
            )  # fmt: skip
            raw: dict[int, float] = {}
            for i, c in enumerate(LEVELS):
                bodies = bk.push_bodies(i * n, n, per_request=PER_REQUEST)
                result = bk.run_load(
                    server,
                    [bk.Request("POST", "/api/v1/accounts", b) for b in bodies],
                    c,
                    items_per_request=PER_REQUEST,
                    validate=bk.expect_status("created", PER_REQUEST),
                )
                raw[c] = result.rate
                bk.say(f"  server, raw connections, c={c}: {result.rate:,.0f} accounts/s")
            url = f"http://127.0.0.1:{server.port}/api/v1"
            through: dict[int, float] = {}
            for i, c in enumerate(LEVELS):
                first = (len(LEVELS) + i) * n
                records = [bk.account(k) for k in range(first, first + n)]
                with Client(url, server.key, concurrency=c) as api:
                    started = time.perf_counter()
                    results = api.push_accounts(records)
                    seconds = time.perf_counter() - started
                bad = sum(not r.ok for r in results)
                if bad:
                    bk.say(f"  {bad} accounts failed through the client")
                through[c] = (n - bad) / seconds
                bk.say(f"  client, concurrency {c}: {through[c]:,.0f} accounts/s")
    finally:
        db.cleanup()
    best_raw, best_client = max(raw.values()), max(through.values())
    checks.append(
        bk.Check(
            "client push rate / server bulk rate",
            best_client / best_raw,
            "x",
            RATIO_TARGET,
            note=f"client {best_client:,.0f}/s, server {best_raw:,.0f}/s, {n:,} accounts",
            decimals=2,
        )
    )
    bk.report(f"client push ({args.db})", checks)
    bk.save_results(
        f"client_push-{args.db}",
        {"accounts": n, "raw": raw, "client": through, "checks": bk.check_dicts(checks)},
    )
    return checks


if __name__ == "__main__":
    sys.exit(0 if all(c.passed for c in main()) else 1)
