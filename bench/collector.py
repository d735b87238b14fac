"""POST /v1/batch, 100 page events a request, with IP resolution on: the collector's rate
and accept latency, and a check that every accepted event was written.

    .venv/bin/python bench/collector.py                    # SQLite, ~2 min
    .venv/bin/python bench/collector.py --seconds 10 --concurrency 2,4

The server (`intently serve` on a fresh database) gets a workspace, its write key and
10,000 IP ranges (uploaded as `intently ip upload` does). Each run posts for --seconds
over persistent connections (the write key as HTTP Basic user); 80% of the visitors come
from ranged addresses, so their page views resolve and become signals. A batch answered
503 (the collector is behind) is sent again after 50 ms, as a Segment library would. The
rate counts from the first request until the last accepted event is in `web_events`
(the flush included), not just until the server answered.

Throughput comes from closed-loop runs (each connection sends as fast as it can, at each
--concurrency); the accept latency from a paced run offering --pace events/s (the target
plus 20%), timed from when each request was due.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchkit as bk
import msgspec

RATE_TARGET = 5_000.0  # page events/s
P99_TARGET_MS = 50.0
PER_REQUEST = 100
RANGES = 10_000
VISITORS = 20_000
RANGED_SHARE = 0.8
TEMPLATES = 64
TOKEN = b"@REQ@"
PATHS = ("/", "/pricing", "/blog/post-1", "/docs/setup", "/features", "/about", "/demo")
OK_BODY = b'{"success":true}'
BACKOFF_S = 0.05


def cli(server: bk.Server, *args: str) -> str:
    done = subprocess.run(
        [str(bk.INTENTLY), *args], env=server.env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"intently {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def upload(db: bk.Database, ws: int, csv: Path) -> None:
    """The workspace's IP ranges, as `intently ip upload` stores them (the server's resolver
    notices the change at its next flush)."""
    from intently.ingest.resolvers import upload_ranges
    from intently.kit.db import make_engine

    engine = make_engine(db.url)
    try:
        report = upload_ranges(engine, ws, csv)
    finally:
        engine.dispose()
    if report.status != "done" or report.accepted != RANGES:
        raise SystemExit(f"uploading the ranges failed: {report.as_dict()}")


def range_network(i: int) -> str:
    """The i-th uploaded /24 (in 11.0.0.0/8: public, and no ISP's)."""
    return f"11.{i // 256}.{i % 256}.0/24"


@dataclass(frozen=True)
class Visitor:
    anonymous_id: str
    ip: str
    ranged: bool


def visitors(rng: random.Random) -> list[Visitor]:
    out = []
    for n in range(VISITORS):
        if rng.random() < RANGED_SHARE:
            i = rng.randrange(RANGES)
            ip, ranged = f"11.{i // 256}.{i % 256}.{rng.randrange(1, 255)}", True
        else:  # public, but in no uploaded range
            a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)
            ip, ranged = f"12.{a}.{b}.{c}", False
        out.append(Visitor(f"anon-{n:06d}", ip, ranged))
    return out


def templates(rng: random.Random, people: list[Visitor]) -> tuple[list[bytes], list[int]]:
    """Batch bodies whose message ids hold TOKEN (made unique per request), and how many
    events of each come from ranged visitors (so resolve into signals)."""
    encoder = msgspec.json.Encoder()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    bodies, ranged = [], []
    for _ in range(TEMPLATES):
        batch = []
        hits = 0
        for j in range(PER_REQUEST):
            v = rng.choice(people)
            hits += v.ranged
            path = rng.choice(PATHS)
            batch.append(
                {
                    "type": "page",
                    "messageId": f"m-{TOKEN.decode()}-{j:03d}",
                    "anonymousId": v.anonymous_id,
                    "timestamp": stamp,
                    "context": {
                        "ip": v.ip,
                        "page": {
                            "path": path,
                            "url": "https://www.customer.example" + path,
                            "title": "Customer",
                            "referrer": "https://search.example/",
                        },
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench",
                    },
                }
            )
        bodies.append(encoder.encode({"sentAt": stamp, "batch": batch}))
        ranged.append(hits)
    return bodies, ranged


@dataclass
class Sent:
    requests: list[int]  # request numbers answered 200
    result: bk.LoadResult
    refused: int  # answers 503 (the batch was sent again after a pause)


def run_for(
    server: bk.Server,
    key: str,
    bodies: list[bytes],
    first_request: int,
    seconds: float,
    concurrency: int,
    pace: float = 0.0,
) -> Sent:
    """Post batches over `concurrency` connections for `seconds`; request n uses template
    n % len(bodies) with TOKEN replaced by n (unique message ids).

    With `pace` (events/s), each connection sends on a fixed schedule that offers that
    rate in all, and a latency counts from when the request was due, so a slow answer
    also counts against the requests it held up. Without, each sends as fast as it can.
    """
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    numbers = itertools.count(first_request)
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]
    done: list[list[int]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    refused = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    clock = [0.0, 0.0]  # start, deadline
    interval = concurrency * PER_REQUEST / pace if pace else 0.0

    def worker(t: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        lat, ok = per_thread[t], done[t]
        barrier.wait()
        sent = 0
        n = next(numbers)
        due = clock[0] + t * interval / concurrency
        while time.perf_counter() < clock[1]:
            body = bodies[n % len(bodies)].replace(TOKEN, b"%08d" % n)
            if interval:
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/batch", body=body, headers=headers)
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                continue
            if status == 503:
                # The collector is behind: back off and send the same batch again, as a
                # Segment library does (the refusals are counted; paced, the wait is timed).
                refused[t] += 1
                time.sleep(BACKOFF_S)
                continue
            lat.append(time.perf_counter() - (min(due, t0) if interval else t0))
            if status == 200 and answer == OK_BODY:
                ok.append(n)
            else:
                errors.append(f"HTTP {status}: {answer[:200]!r}")
            n = next(numbers)
            sent += 1
            due = clock[0] + (sent + t / concurrency) * interval
        conn.close()

    meter = server.meter()
    bk.settle(meter)
    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(concurrency)]
    for th in threads:
        th.start()
    cpu0 = meter.sample()
    t0 = time.perf_counter()
    clock[0], clock[1] = t0, t0 + seconds
    barrier.wait()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    cpu = bk.CpuMeter.delta(cpu0, meter.sample())
    latencies = sorted(itertools.chain.from_iterable(per_thread))
    accepted = sorted(itertools.chain.from_iterable(done))
    result = bk.LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        items=len(accepted) * PER_REQUEST,
        seconds=elapsed,
        latencies=latencies,
        cpu=cpu,
        errors=errors,
    )
    return Sent(accepted, result, sum(refused))


def count(db: bk.Database, sql: str) -> int:
    if db.kind == "sqlite":
        assert db.path is not None
        con = sqlite3.connect(db.path, timeout=30)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    return int(bk.psql(sql, database=bk.PG_DB) or 0)


def wait_landed(db: bk.Database, ws: int, expected: int, timeout: float = 120.0) -> float:
    """Seconds until `expected` web events of the workspace are stored (or the timeout)."""
    t0 = time.perf_counter()
    sql = f"SELECT count(*) FROM web_events WHERE workspace_id = {ws}"
    while count(db, sql) < expected and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bk.common_args(parser)
    parser.set_defaults(concurrency="2,4")
    parser.add_argument("--seconds", type=float, default=15.0, help="per run (default 15)")
    parser.add_argument(
        "--pace",
        type=float,
        default=1.2 * RATE_TARGET,
        help="events/s offered in the latency run (default 6,000: the target + 20%%)",
    )
    args = parser.parse_args(argv)
    levels = bk.apply_common(args)
    rng = random.Random(7)
    people = visitors(rng)
    bodies, ranged_per_template = templates(rng, people)

    # This one client from 127.0.0.1 plays a relay forwarding every visitor (context.ip):
    # the collector's limits count events per write key and per address (issue 16), so
    # they are set above what it offers (the limiter still runs on every request), and
    # the relay is a trusted sender whose context.ip is evidence.
    os.environ.setdefault("INTENTLY_RATE_LIMIT_COLLECTOR_PER_MINUTE", "100000000")
    os.environ.setdefault("INTENTLY_RATE_LIMIT_COLLECTOR_ADDRESS_PER_MINUTE", "100000000")
    os.environ.setdefault("INTENTLY_COLLECTOR_TRUSTED_SENDERS", "127.0.0.1")
    db = bk.fresh_postgres() if args.db == "postgres" else bk.fresh_sqlite("collector")
    bk.say(
        f"collector on {args.db}: {PER_REQUEST} page events a request, {args.seconds:.0f} s "
        f"per run, c={levels}; {RANGES:,} IP ranges, {RANGED_SHARE:.0%} of visitors in them"
    )
    payload: dict[str, Any] = {"db": args.db, "per_request": PER_REQUEST, "runs": []}
    # (load, written/s, 503 answers) of the closed-loop runs, and of the paced one
    runs: list[tuple[bk.LoadResult, float, int]] = []
    paced: tuple[bk.LoadResult, float, int]
    problems: list[str] = []
    try:
        with bk.running_server(db, f"collector-{args.db}") as server:
            csv = Path(db._tmpdir or bk.OUT) / "ranges.csv"
            lines = ["network,domain,company"]
            lines += [f"{range_network(i)},company-{i}.com,Company {i}" for i in range(RANGES)]
            csv.write_text("\n".join(lines) + "\n")
            ws = count(db, f"SELECT id FROM workspaces WHERE name = '{bk.WORKSPACE}'")
            t0 = time.perf_counter()
            upload(db, ws, csv)
            bk.say(f"uploaded {RANGES:,} ranges in {time.perf_counter() - t0:.1f} s")
            key = cli(server, "website", "write-key", "--workspace", bk.WORKSPACE).split()[-1]
            # Warm-up: the first flush loads the ranges; the first requests warm the server.
            warm = run_for(server, key, bodies, 0, 2.0, 1)
            wait_landed(db, ws, len(warm.requests) * PER_REQUEST)
            stored = len(warm.requests) * PER_REQUEST
            signals = sum(ranged_per_template[n % TEMPLATES] for n in warm.requests)
            next_request = 10_000_000
            totals = [stored, signals]

            def one_run(c: int, pace: float) -> tuple[bk.LoadResult, float, int]:
                nonlocal next_request
                sent = run_for(server, key, bodies, next_request, args.seconds, c, pace)
                next_request += 10_000_000
                totals[0] += len(sent.requests) * PER_REQUEST
                totals[1] += sum(ranged_per_template[n % TEMPLATES] for n in sent.requests)
                extra = wait_landed(db, ws, totals[0])
                r = sent.result
                landed_rate = r.items / (r.seconds + extra)
                how = f"paced at {pace:,.0f} events/s" if pace else "as fast as it can"
                bk.say(
                    f"   {how}: {r.summary('events')}\n"
                    f"        all written {extra:.2f} s after the last answer: "
                    f"{landed_rate:,.0f} events/s end to end; {sent.refused:,} batches "
                    "refused with 503 (collector behind) and sent again"
                )
                for e in r.errors[:3]:
                    bk.say(f"     error: {e}")
                payload["runs"].append(
                    r.as_dict("events")
                    | {
                        "paced_events_per_s": pace,
                        "written_per_s": round(landed_rate, 1),
                        "refused_503": sent.refused,
                    }
                )
                return r, landed_rate, sent.refused

            bk.say("-- closed loop (throughput)")
            runs = [one_run(c, 0.0) for c in levels]
            bk.say(f"-- paced (accept latency at {args.pace:,.0f} events/s offered)")
            paced = one_run(min(levels), args.pace)
            stored, signals = totals
            written = count(db, f"SELECT count(*) FROM web_events WHERE workspace_id = {ws}")
            made = count(
                db,
                f"SELECT count(*) FROM signals WHERE workspace_id = {ws} AND source = 'website'",
            )
            resolved = count(
                db,
                f"SELECT count(*) FROM web_events WHERE workspace_id = {ws} "
                "AND match_method = 'ip'",
            )
            bk.say(
                f"stored: {written:,} web events (expected {stored:,}), {resolved:,} resolved "
                f"by IP, {made:,} signals (expected {signals:,}); "
                f"database {bk.db_size_mb(db):,.0f} MB"
            )
            if written != stored:
                problems.append(f"{written:,} web events stored, {stored:,} accepted")
            if made != signals:
                problems.append(f"{made:,} signals, {signals:,} expected")
            peak = server.peak_rss_mb
    finally:
        db.cleanup()

    best = max(runs, key=lambda x: (x[1], -x[0].concurrency))
    load, landed, refused = best
    errors = sum(len(r.errors) for r, _, _ in [*runs, paced])
    note = f"best of c={','.join(str(c) for c in levels)}: c={load.concurrency}"
    note += f", answered at {load.rate:,.0f}/s, {refused:,} batches refused (503) and resent"
    if errors or problems:
        note += f"; {errors} request ERRORS; " + "; ".join(problems)
    p99_run, paced_rate, paced_refused = paced
    p99_note = (
        f"{args.pace:,.0f} events/s offered over c={p99_run.concurrency}, written at "
        f"{paced_rate:,.0f}/s; p50 {p99_run.pct_ms(0.5):.1f} ms; as fast as it can: "
        + ", ".join(f"c={r.concurrency} p99 {r.pct_ms(0.99):.1f} ms" for r, _, _ in runs)
    )
    if paced_refused:
        p99_note += f"; {paced_refused} batches refused (503)"
    checks = [
        bk.Check("collector page events", landed, "events/s", RATE_TARGET, note=note),
        bk.Check(
            "collector accept p99",
            p99_run.pct_ms(0.99),
            "ms",
            P99_TARGET_MS,
            higher_is_better=False,
            note=p99_note,
            decimals=1,
        ),
        bk.Check(
            "server peak RSS", peak, "MB", bk.RSS_LIMIT_MB, higher_is_better=False, decimals=1
        ),
    ]
    bk.report(f"collector ({args.db})", checks)
    if problems:
        bk.say("DATA CHECK FAILED: " + "; ".join(problems))
    payload |= {"problems": problems, "peak_rss_mb": round(peak, 1)}
    payload["checks"] = bk.check_dicts(checks)
    bk.say(f"results: {bk.save_results(f'collector-{args.db}', payload)}")
    if problems or (args.strict and not all(c.passed for c in checks)):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
