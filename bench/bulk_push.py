"""POST /api/v1/accounts, 100 accounts a request: new accounts, then upserts of them.

    .venv/bin/python bench/bulk_push.py --db sqlite
    .venv/bin/python bench/bulk_push.py --db postgres --accounts 50000

For each concurrency (1, 2, 4 connections by default) it pushes --accounts new accounts,
then re-sends the same accounts with "upsert": true twice: unchanged (the server finds
nothing to write) and renamed (every account is updated). The best sustained rate of
each kind is checked against its target, with the p99 latency at that concurrency, and
the server's peak RSS (with any children) against 500 MB.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import benchkit as bk

# accounts/s, by database. The issue gives no PostgreSQL upsert target: half of SQLite's,
# as for new accounts, is assumed.
PUSH_TARGET = {"sqlite": 10_000, "postgres": 5_000}
UPSERT_TARGET = {"sqlite": 8_000, "postgres": 4_000}
P99_TARGET_MS = 50.0
PATH = "/api/v1/accounts"


def requests_for(bodies: list[bytes]) -> list[bk.Request]:
    return [bk.Request("POST", PATH, b) for b in bodies]


def measure(
    server: bk.Server,
    title: str,
    runs: list[tuple[int, list[bytes]]],
    per_request: int,
    status: str,
) -> list[bk.LoadResult]:
    bk.say(f"-- {title}")
    results: list[bk.LoadResult] = []
    for concurrency, bodies in runs:
        result = bk.run_load(
            server,
            requests_for(bodies),
            concurrency,
            items_per_request=per_request,
            validate=bk.expect_status(status, per_request),
        )
        bk.say("   " + result.summary("accounts"))
        for e in result.errors[:3]:
            bk.say(f"     error: {e}")
        results.append(result)
    return results


def checks_for(
    label: str, results: list[bk.LoadResult], target: float, *, p99: bool
) -> list[bk.Check]:
    """The best rate against `target`; with `p99`, its p99 latency against P99_TARGET_MS."""
    top = bk.best(results)
    tried = ",".join(str(r.concurrency) for r in results)
    note = f"best of c={tried}: c={top.concurrency}"
    if not p99:
        note += f", p50 {top.pct_ms(0.5):.1f} ms, p99 {top.pct_ms(0.99):.1f} ms"
    errors = sum(len(r.errors) for r in results)
    if errors:
        note += f"; {errors} ERRORS"
    out = [bk.Check(label, top.rate, "accounts/s", target, note=note)]
    if p99:
        # Both at once: of the runs that meet the rate target, the one with the lowest p99.
        meeting = [r for r in results if r.rate >= target]
        run = min(meeting, key=lambda r: r.pct_ms(0.99)) if meeting else top
        where = "lowest of the runs meeting the rate" if meeting else "at the best rate"
        out.append(
            bk.Check(
                f"{label} p99 latency",
                run.pct_ms(0.99),
                "ms",
                P99_TARGET_MS,
                higher_is_better=False,
                note=f"c={run.concurrency}, {run.rate:,.0f} accounts/s, {where}; "
                f"p50 {run.pct_ms(0.5):.1f} ms",
                decimals=1,
            )
        )
    return out


def profile_run(
    server: bk.Server,
    name: str,
    seconds: float,
    bodies: list[bytes],
    concurrency: int,
    status: str,
    per_request: int,
) -> None:
    bk.say(f"-- profiling {name} for {seconds:.0f} s at c={concurrency}")
    bk.settle(server.meter())
    prof = bk.Profiler(server, f"bulk_push-{server.db.kind}-{name}", seconds)
    bk.run_load(
        server,
        requests_for(bodies),
        concurrency,
        items_per_request=per_request,
        validate=bk.expect_status(status, per_request),
        settle_first=False,
    )
    prof.finish()


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bk.common_args(parser)
    parser.add_argument(
        "--accounts",
        type=int,
        default=100_000,
        help="accounts pushed per concurrency level and kind (default 100,000)",
    )
    parser.add_argument("--per-request", type=int, default=100, help="accounts a request (100)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests (20)")
    args = parser.parse_args(argv)
    levels = bk.apply_common(args)
    n, per = args.accounts, args.per_request
    if n < per:
        parser.error("--accounts must be at least --per-request")
    n -= n % per

    db = bk.fresh_postgres() if args.db == "postgres" else bk.fresh_sqlite("push")
    bk.say(f"bulk push on {args.db}: {n:,} accounts per run, {per} a request, c={levels}")
    # Account numbers: warm-up first, then one block per concurrency level.
    warm = args.warmup * per
    blocks = {c: warm + i * n for i, c in enumerate(levels)}
    bk.say("encoding request bodies ...")
    new = {c: bk.push_bodies(blocks[c], n, per_request=per) for c in levels}
    same = {c: bk.push_bodies(blocks[c], n, per_request=per, upsert=True) for c in levels}
    renamed = {
        c: bk.push_bodies(blocks[c], n, per_request=per, upsert=True, rename=True) for c in levels
    }
    extra_start = warm + len(levels) * n

    payload: dict[str, Any] = {"db": args.db, "accounts_per_run": n, "per_request": per}
    try:
        with bk.running_server(db, f"bulk_push-{args.db}") as server:
            warm_bodies = bk.push_bodies(0, warm, per_request=per)
            bk.run_load(server, requests_for(warm_bodies), 1, items_per_request=per)
            warm_up = bk.push_bodies(0, warm, per_request=per, upsert=True, rename=True)
            bk.run_load(server, requests_for(warm_up), 1, items_per_request=per)

            pushed = measure(server, "new accounts", [(c, new[c]) for c in levels], per, "created")
            unchanged = measure(
                server,
                "upsert, unchanged accounts",
                [(c, same[c]) for c in levels],
                per,
                "updated",
            )
            changed = measure(
                server,
                "upsert, renamed accounts",
                [(c, renamed[c]) for c in levels],
                per,
                "updated",
            )
            bk.say(
                f"database size: {bk.db_size_mb(db):,.0f} MB, {bk.count_accounts(db):,} accounts"
            )

            if args.profile > 0:
                top = bk.best(pushed)
                count = int(top.rate * args.profile * 1.3) // per * per + per
                bodies = bk.push_bodies(extra_start, count, per_request=per)
                profile_run(server, "new", args.profile, bodies, top.concurrency, "created", per)
                top = bk.best(changed)
                bodies = bk.push_bodies(
                    extra_start, count, per_request=per, upsert=True, rename=True
                )
                profile_run(server, "upsert", args.profile, bodies, top.concurrency, "updated", per)
            peak = server.peak_rss_mb
    finally:
        db.cleanup()

    upsert_target = UPSERT_TARGET[args.db]
    upsert_label = "upsert {}/request, {}" + (" (target assumed)" if args.db == "postgres" else "")
    checks = [
        *checks_for(f"push {per}/request", pushed, PUSH_TARGET[args.db], p99=True),
        *checks_for(upsert_label.format(per, "unchanged"), unchanged, upsert_target, p99=False),
        *checks_for(upsert_label.format(per, "renamed"), changed, upsert_target, p99=False),
        bk.Check(
            "server peak RSS", peak, "MB", bk.RSS_LIMIT_MB, higher_is_better=False, decimals=1
        ),
    ]
    bk.report(f"bulk push ({args.db})", checks)
    payload |= {
        "new": [r.as_dict("accounts") for r in pushed],
        "upsert_unchanged": [r.as_dict("accounts") for r in unchanged],
        "upsert_renamed": [r.as_dict("accounts") for r in changed],
        "peak_rss_mb": round(peak, 1),
        "checks": bk.check_dicts(checks),
    }
    bk.say(f"results: {bk.save_results(f'bulk_push-{args.db}', payload)}")
    if args.strict and not all(c.passed for c in checks):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
