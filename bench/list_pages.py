"""GET /api/v1/accounts?limit=100 over 1,000,000 accounts: pages/s, deep pages, memory.

    .venv/bin/python bench/list_pages.py --db sqlite
    .venv/bin/python bench/list_pages.py --db postgres --accounts 200000
    .venv/bin/python bench/list_pages.py --db sqlite --reuse   # keep the seeded file

Steps: seed --accounts accounts through the API (100 a request; the time it takes is a
push figure too); walk every page once with the cursors the API returns, keeping them;
replay 3,000 pages spread over the whole walk from those cursors over 1, 2 and 4
connections (pages/s; the best is checked); then time the first page against the page
at --depth (900,000 by default), interleaved, and compare medians. The server's peak
RSS is checked throughout.

--reuse keeps the seeded database (bench/out/list-<N>.sqlite3 on SQLite; the database
intently_bench on PostgreSQL) and skips seeding when it already holds the accounts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import benchkit as bk
import msgspec

PAGES_TARGET = {"sqlite": 800, "postgres": 400}
DEPTH_RATIO_TARGET = 1.5
LIMIT = 100
PATH = f"/api/v1/accounts?limit={LIMIT}"


class Page(msgspec.Struct):
    data: list[msgspec.Raw]
    nextCursor: str | None
    hasNextPage: bool


class Envelope(msgspec.Struct):
    data: Page


_decode_page = msgspec.json.Decoder(Envelope).decode


def page_path(cursor: str | None) -> str:
    return PATH if cursor is None else f"{PATH}&cursor={cursor}"


def rss(server: bk.Server) -> str:
    assert server.rss is not None
    return f"server RSS {server.rss.sample():,.0f} MB (peak {server.rss.peak_mb:,.0f} MB)"


def full_page(body: bytes) -> str | None:
    found = body.count(b'"rtp_aid"')  # PostgreSQL renders JSON with spaces
    return None if found == LIMIT else f"page with {found} items, not {LIMIT}: {body[:200]!r}"


def open_database(kind: str, accounts: int, reuse: bool) -> tuple[bk.Database, bool]:
    """The database to use, and whether it already holds the seeded accounts."""
    if kind == "postgres":
        db = bk.Database(kind, bk.PG_URL)
        if reuse and bk.postgres_exists() and bk.count_accounts(db) == accounts:
            return db, True
        return bk.fresh_postgres(), False
    if not reuse:
        return bk.fresh_sqlite("list"), False
    path = bk.OUT / f"list-{accounts}.sqlite3"
    db = bk.sqlite_at(path)
    if path.exists() and bk.count_accounts(db) == accounts:
        return db, True
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return db, False


def seed(server: bk.Server, accounts: int, concurrency: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    bodies = bk.push_bodies(0, accounts)
    encode_s = time.perf_counter() - t0
    bk.say(
        f"-- seeding {accounts:,} accounts, c={concurrency} (bodies encoded in {encode_s:.1f} s)"
    )
    result = bk.run_load(
        server,
        [bk.Request("POST", "/api/v1/accounts", b) for b in bodies],
        concurrency,
        items_per_request=100,
        validate=bk.expect_status("created", 100),
    )
    bk.say(f"   seeded in {result.seconds:,.1f} s: " + result.summary("accounts"))
    if result.errors:
        raise SystemExit(f"seeding failed: {result.errors[:3]}")
    return result.as_dict("accounts")


def walk(server: bk.Server, accounts: int) -> tuple[list[str], bk.LoadResult]:
    """Every page once, in order; the cursors (cursors[i] fetches page i+2)."""
    client = server.connect()
    cursors: list[str] = []
    latencies: list[float] = []
    seen = 0
    cursor: str | None = None
    meter = server.meter()
    bk.settle(meter)
    cpu0 = meter.sample()
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        status, body = client.get(page_path(cursor))
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise SystemExit(f"page {len(latencies)}: HTTP {status}: {body[:300]!r}")
        page = _decode_page(body).data
        seen += len(page.data)
        if not page.hasNextPage or page.nextCursor is None:
            break
        cursor = page.nextCursor
        cursors.append(cursor)
    seconds = time.perf_counter() - start
    result = bk.LoadResult(
        concurrency=1,
        requests=len(latencies),
        items=len(latencies),
        seconds=seconds,
        latencies=sorted(latencies),
        cpu=bk.CpuMeter.delta(cpu0, meter.sample()),
    )
    client.close()
    if seen != accounts:
        raise SystemExit(f"the walk saw {seen:,} accounts, expected {accounts:,}")
    return cursors, result


def compare_depth(
    server: bk.Server, deep_cursor: str, second_cursor: str, samples: int
) -> dict[str, list[float]]:
    """Latencies (s) of the first, second and deep page, requested in turn on one connection."""
    client = server.connect()
    times: dict[str, list[float]] = {"first": [], "second": [], "deep": []}
    paths = {"first": page_path(None), "second": page_path(second_cursor)}
    paths["deep"] = page_path(deep_cursor)
    for _ in range(samples):
        for name, path in paths.items():
            t0 = time.perf_counter()
            status, body = client.get(path)
            times[name].append(time.perf_counter() - t0)
            if status != 200 or full_page(body):
                raise SystemExit(f"{name} page: HTTP {status}: {body[:300]!r}")
    client.close()
    return times


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bk.common_args(parser)
    parser.add_argument("--accounts", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument(
        "--depth", type=int, default=0, help="deep page offset (default 90%% of --accounts)"
    )
    parser.add_argument(
        "--seed-concurrency",
        type=int,
        default=0,
        help="connections while seeding (default 2 on SQLite, 4 on PostgreSQL)",
    )
    parser.add_argument("--samples", type=int, default=300, help="depth comparison samples")
    parser.add_argument(
        "--replay-pages",
        type=int,
        default=3000,
        help="pages replayed at each concurrency, spread over the whole walk (0: all)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep and reuse the seeded database")
    args = parser.parse_args(argv)
    levels = bk.apply_common(args)
    accounts = args.accounts - args.accounts % LIMIT
    if accounts < 3 * LIMIT:
        parser.error(f"--accounts must be at least {3 * LIMIT}")
    depth = args.depth or accounts * 9 // 10
    depth -= depth % LIMIT
    if not LIMIT <= depth < accounts:
        parser.error("--depth must be at least 100 and below --accounts")
    seed_c = args.seed_concurrency or (2 if args.db == "sqlite" else 4)

    db, seeded = open_database(args.db, accounts, args.reuse)
    bk.say(f"list pages on {args.db}: {accounts:,} accounts, limit={LIMIT}, deep page at {depth:,}")
    payload: dict[str, Any] = {"db": args.db, "accounts": accounts, "depth": depth}
    info: list[str] = []
    try:
        with bk.running_server(db, f"list_pages-{args.db}") as server:
            if seeded:
                bk.say(f"-- reusing the seeded database ({db.url})")
                info.append("seed: reused an already seeded database")
            else:
                seeding = seed(server, accounts, seed_c)
                payload["seed"] = seeding
                info.append(
                    f"seed {accounts:,} accounts through the API: {seeding['seconds']:,.1f} s, "
                    f"{seeding['accounts_per_s']:,.0f} accounts/s (c={seed_c}, "
                    f"p99 {seeding['p99_ms']:.1f} ms)"
                )
            bk.say(f"database size: {bk.db_size_mb(db):,.0f} MB; {rss(server)}")

            bk.say("-- walking every page once, following nextCursor")
            cursors, walked = walk(server, accounts)
            bk.say("   " + walked.summary("pages"))
            info.append(f"sequential walk with nextCursor: {walked.rate:,.0f} pages/s")
            payload["walk"] = walked.as_dict("pages")
            bk.say(f"   {rss(server)}")

            pages = [None, *cursors]
            step = max(1, len(pages) // args.replay_pages) if args.replay_pages else 1
            sample = pages[::step]
            bk.say(f"-- replaying {len(sample):,} pages (every {step}) from the stored cursors")
            requests = [bk.Request("GET", page_path(c)) for c in sample]
            replays: list[bk.LoadResult] = []
            for c in levels:
                result = bk.run_load(server, requests, c, items_per_request=1, validate=full_page)
                bk.say("   " + result.summary("pages"))
                for e in result.errors[:3]:
                    bk.say(f"     error: {e}")
                replays.append(result)
            payload["replay"] = [r.as_dict("pages") for r in replays]
            bk.say(f"   {rss(server)}")

            bk.say(f"-- first page vs page at {depth:,}, {args.samples} samples each")
            times = compare_depth(server, cursors[depth // LIMIT - 1], cursors[0], args.samples)
            medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
            for name, ms in medians.items():
                p99 = sorted(times[name])[int(0.99 * (len(times[name]) - 1))] * 1000
                bk.say(f"   {name:>6} page: median {ms:6.2f} ms, p99 {p99:6.2f} ms")
            payload["depth_medians_ms"] = medians

            if args.profile > 0:
                top = bk.best(replays)
                count = min(len(requests), int(top.rate * args.profile * 1.3) + 1)
                bk.say(f"-- profiling page reads for {args.profile:.0f} s at c={top.concurrency}")
                bk.settle(server.meter())
                profiler = bk.Profiler(server, f"list_pages-{args.db}", args.profile)
                bk.run_load(
                    server,
                    requests[-count:],
                    top.concurrency,
                    items_per_request=1,
                    settle_first=False,
                )
                profiler.finish()
            peak = server.peak_rss_mb
    finally:
        db.cleanup()

    top = bk.best(replays)
    errors = sum(len(r.errors) for r in replays)
    note = f"best of c={args.concurrency}: c={top.concurrency}, p50 {top.pct_ms(0.5):.1f} ms"
    note += f", p99 {top.pct_ms(0.99):.1f} ms" + (f"; {errors} ERRORS" if errors else "")
    ratio = medians["deep"] / medians["first"]
    checks = [
        bk.Check(
            f"list {LIMIT}/page over {accounts:,}",
            top.rate,
            "pages/s",
            PAGES_TARGET[args.db],
            note=note,
        ),
        bk.Check(
            f"page at {depth:,} vs first page (median)",
            ratio,
            "x",
            DEPTH_RATIO_TARGET,
            higher_is_better=False,
            note=f"{medians['deep']:.2f} ms vs {medians['first']:.2f} ms; "
            f"second page {medians['second']:.2f} ms",
            decimals=2,
        ),
        bk.Check(
            "server peak RSS", peak, "MB", bk.RSS_LIMIT_MB, higher_is_better=False, decimals=1
        ),
    ]
    bk.report(f"list pages ({args.db})", checks)
    for line in info:
        bk.say(f"  info: {line}")
    payload |= {"peak_rss_mb": round(peak, 1), "checks": bk.check_dicts(checks), "info": info}
    bk.say(f"results: {bk.save_results(f'list_pages-{args.db}', payload)}")
    if args.strict and not all(c.passed for c in checks):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
