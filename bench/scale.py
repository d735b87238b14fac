"""Many processes on PostgreSQL: two API processes against one, and a mixed load at 200/s.

    .venv/bin/python bench/scale.py                          # ~15 min
    .venv/bin/python bench/scale.py --push-seconds 5 --seconds 15 --no-workers2

Push scaling (POST /api/v1/accounts, 100 new accounts a request, closed loop): these
deployments run side by side, each on its own fresh database (`intently_bench_scale_<name>`),
and are measured one after the other at each --concurrency (so that the load other
sessions put on the shared machine falls on all of them alike); the best rate of each counts:

  one       1 x `intently serve --no-worker`                      rate limiting off
  two       2 x `intently serve --no-worker`, two ports           rate limiting off
            (the client connections alternate between them)
  workers2  1 x `intently serve --no-worker --workers 2`          rate limiting off
            (uvicorn's two children share one port; --no-workers2 skips it)
  limited   as `one`, rate limiting on at a limit never reached   what the limiter costs

The target: two >= 1.6 x one, both from this run. The CPU of every server process, of
PostgreSQL and of the load generator is printed per run (the machine has 2 cores for all
of them).

Mixed load (open loop): 2 x `intently serve --no-worker` and 2 x `intently worker` on a
fresh database (`intently_bench_scale_mixed`) seeded with --mixed-accounts accounts;
requests are sent on a fixed schedule at --rate requests/s (alternating between the two
API processes), whatever the answers' speed, and each latency counts from when its
request was due, so queueing is not hidden (no coordinated omission). After --warmup
seconds, --seconds are measured; the measured window is placed so that it holds one of
the workers' periodic checks, so their every-minute incremental scoring runs inside it.
p50/p95/p99 per request kind and overall. While each run lasts, pg_stat_activity is
sampled: how many backends wait for a lock, and in which statement.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import benchkit as bk
import msgspec

PG_DB = "intently_bench_scale"  # one database per deployment: PG_DB + "_" + its name
MIXED_DB = f"{PG_DB}_mixed"
RATIO_TARGET = 1.6
MIXED_RATE = 200.0  # requests/s offered
MIXED_P99_MS = 200.0
PER_REQUEST = 100
PATH = "/api/v1/accounts"
NO_LIMIT = {"INTENTLY_RATE_LIMIT_PER_MINUTE": "0"}
# Limiting on, at limits the benchmark never reaches: what remains is the limiter's cost.
HIGH_LIMIT = {
    "INTENTLY_RATE_LIMIT_PER_MINUTE": "6000000",
    "INTENTLY_RATE_LIMIT_BURST": "1000000",
}

# The mixed load: share of requests, and items a request where it is a batch. A CRM
# connector pushing and syncing, integrations reading single accounts, a website's events.
MIX: list[tuple[str, float, int]] = [
    ("push accounts (new)", 0.05, 100),
    ("push accounts (upsert)", 0.05, 100),
    ("push deals", 0.05, 50),
    ("push activities", 0.05, 20),
    ("list page", 0.25, 100),
    ("delta page (lastSync)", 0.10, 100),
    ("get account", 0.25, 1),
    ("collector batch", 0.20, 20),
]
IDLE_S = 4.0  # a client connection idle this long is opened anew
OK_COLLECTOR = b'{"success":true}'
FAILED = b'"status":"failed"'
_encoder = msgspec.json.Encoder()


# ---- push scaling ------------------------------------------------------------------------


class Numbers:
    """Account numbers never used before in this run (every push creates new accounts)."""

    def __init__(self, start: int = 0):
        self.next = start

    def take(self, count: int) -> int:
        first = self.next
        self.next += count
        return first


@dataclass
class Deployment:
    name: str
    title: str
    processes: int  # `intently serve` processes
    args: list[str]
    env: dict[str, str]


def deployments(workers2: bool) -> list[Deployment]:
    out = [
        Deployment("one", "1 x serve --no-worker", 1, ["--no-worker"], NO_LIMIT),
        Deployment("two", "2 x serve --no-worker (two ports)", 2, ["--no-worker"], NO_LIMIT),
    ]
    if workers2:
        out.append(
            Deployment(
                "workers2",
                "1 x serve --no-worker --workers 2 (one port)",
                1,
                ["--no-worker", "--workers", "2"],
                NO_LIMIT,
            )
        )
    out.append(
        Deployment(
            "limited",
            "1 x serve --no-worker, rate limiting on (6,000,000/min, burst 1,000,000)",
            1,
            ["--no-worker"],
            HIGH_LIMIT,
        )
    )
    return out


def process_cpu(group: bk.ServerGroup) -> dict[str, float]:
    """CPU seconds of each server process (uvicorn's children named apart from their parent)."""
    out: dict[str, float] = {}
    for n, server in enumerate(group.servers, 1):
        pids = server.pids()
        out[f"api{n}"] = bk.cpu_seconds(pids[:1])
        for k, child in enumerate(pids[1:], 1):
            out[f"api{n}.{k}"] = bk.cpu_seconds([child])
    return out


def per_process(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    parts = []
    for name, value in after.items():
        used = value - before.get(name, 0.0)
        if used > 0.05 * seconds or "." not in name:
            parts.append(f"{name} {used / seconds * 100:3.0f}%")
    return ", ".join(parts)


class PgActivity:
    """pg_stat_activity of one database, sampled every 20 ms in the background: how many of
    its backends are running a statement, how many of those wait for a lock, and in which
    statements (samples counted per wait event and statement start)."""

    def __init__(self, database: str, interval: float = 0.02):
        import psycopg

        self.conn = psycopg.connect(
            host=bk.PG_HOST, port=bk.PG_PORT, user="postgres", dbname=database, autocommit=True
        )
        self.database = database
        self.interval = interval
        self.busy: list[tuple[int, int]] = []  # (active, waiting for a lock), when any active
        self.events: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PgActivity:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()

    def _run(self) -> None:
        query = (
            "SELECT state = 'active', wait_event_type = 'Lock', "
            "wait_event || ' in ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 48) "
            "FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        while not self._stop.wait(self.interval):
            rows = self.conn.execute(query, (self.database,)).fetchall()
            active = sum(1 for a, _, _ in rows if a)
            if not active:
                continue
            waiting = [e for a, lock, e in rows if a and lock]
            self.busy.append((active, len(waiting)))
            for e in waiting:
                self.events[e] = self.events.get(e, 0) + 1

    def summary(self) -> str:
        if not self.busy:
            return "postgres: no statement seen running"
        n = len(self.busy)
        active = sum(a for a, _ in self.busy) / n
        waiting = sum(w for _, w in self.busy) / n
        some = sum(1 for _, w in self.busy if w) / n
        events = ", ".join(
            f"{k} {v}" for k, v in sorted(self.events.items(), key=lambda kv: -kv[1])
        )
        return (
            f"postgres, while busy: {active:.2f} backends running a statement, {waiting:.2f} of "
            f"them waiting for a lock ({some:.0%} of samples)" + (f" [{events}]" if events else "")
        )

    def as_dict(self) -> dict[str, Any]:
        n = max(1, len(self.busy))
        return {
            "samples_busy": len(self.busy),
            "active_avg": round(sum(a for a, _ in self.busy) / n, 2),
            "lock_waiting_avg": round(sum(w for _, w in self.busy) / n, 2),
            "lock_wait_events": self.events,
        }


@dataclass
class PushRun:
    result: bk.LoadResult
    processes: str  # CPU per server process
    locks: dict[str, Any] = field(default_factory=dict)


def push_run(
    group: bk.ServerGroup, numbers: Numbers, c: int, seconds: float, expected_rate: float
) -> PushRun:
    """One closed-loop run of new-account pushes at concurrency c for `seconds`."""
    # Enough bodies for twice the expected rate, encoded before the clock starts.
    count = max(4 * c, int(2 * expected_rate * seconds / PER_REQUEST) + 10 * c)
    bodies = bk.push_bodies(numbers.take(count * PER_REQUEST), count * PER_REQUEST)
    requests = [bk.Request("POST", PATH, b) for b in bodies]
    before = process_cpu(group)
    with PgActivity(group.db.url.rsplit("/", 1)[1]) as pg:
        result = bk.run_load(
            group,
            requests,
            c,
            items_per_request=PER_REQUEST,
            validate=bk.expect_status("created", PER_REQUEST),
            seconds=seconds,
        )
    split = per_process(before, process_cpu(group), result.seconds)
    if result.requests >= len(requests):
        bk.say("     (ran out of request bodies before the time was up)")
    bk.say("   " + result.summary("accounts"))
    bk.say(f"        per server process: {split}")
    bk.say(f"        {pg.summary()}")
    for e in result.errors[:3]:
        bk.say(f"     error: {e}")
    return PushRun(result, split, pg.as_dict())


def push_scaling(
    deps: list[Deployment], levels: list[int], seconds: float, rounds: int, profile: float
) -> dict[str, list[PushRun]]:
    """Every deployment up at once, each on its own fresh database, measured in turn.

    The machine is shared: other sessions' load comes and goes. Runs of the deployments
    follow each other at each concurrency (in a rotating order), so each deployment's best
    run meets about the same competition, and the ratio compares like with like.
    """
    runs: dict[str, list[PushRun]] = {d.name: [] for d in deps}
    numbers = {d.name: Numbers() for d in deps}
    with ExitStack() as stack:
        groups: dict[str, bk.ServerGroup] = {}
        for dep in deps:
            db = bk.fresh_postgres(f"{PG_DB}_{dep.name}")
            bk.say(f"-- {dep.name}: {dep.title}; fresh database {PG_DB}_{dep.name}")
            g = stack.enter_context(
                bk.running_servers(
                    db, f"scale-{dep.name}", dep.processes, args=dep.args, env=dep.env
                )
            )
            # Warm-up: every process (and each of uvicorn's children) answers some pushes.
            warm = 2 * max(2, 2 * dep.processes)
            n = warm * 10 * PER_REQUEST
            bk.run_load(
                g,
                [bk.Request("POST", PATH, b) for b in bk.push_bodies(numbers[dep.name].take(n), n)],
                warm // 2,
                items_per_request=PER_REQUEST,
                settle_first=False,
            )
            groups[dep.name] = g
        turn = 0
        for r in range(rounds):
            for c in levels:
                order = deps[turn % len(deps) :] + deps[: turn % len(deps)]
                turn += 1
                for dep in order:
                    bk.say(f"-- {dep.name}, c={c}" + (f", round {r + 1}" if rounds > 1 else ""))
                    expected = 8_000.0 * max(dep.processes, 2 if "--workers" in dep.args else 1)
                    run = push_run(groups[dep.name], numbers[dep.name], c, seconds, expected)
                    runs[dep.name].append(run)
        if profile > 0:
            for dep in deps:
                g = groups[dep.name]
                top = bk.best([r.result for r in runs[dep.name]])
                bk.say(f"-- profiling {dep.name} for {profile:.0f} s at c={top.concurrency}")
                bk.settle(g.meter())
                profilers = [
                    bk.Profiler(s, f"scale-{dep.name}-api{k}", profile)
                    for k, s in enumerate(g.servers, 1)
                ]
                n = (int(2 * top.rate * profile / PER_REQUEST) + 10) * PER_REQUEST
                bodies = bk.push_bodies(numbers[dep.name].take(n), n)
                bk.run_load(
                    g,
                    [bk.Request("POST", PATH, b) for b in bodies],
                    top.concurrency,
                    items_per_request=PER_REQUEST,
                    settle_first=False,
                    seconds=profile,
                )
                for p in profilers:
                    p.finish()
    for dep in deps:
        with suppress(SystemExit):
            bk.psql(f"DROP DATABASE IF EXISTS {PG_DB}_{dep.name} WITH (FORCE)")
    return runs


# ---- the mixed load ----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str
    method: str
    path: str
    body: bytes = b""
    collector: bool = False


@dataclass
class Outcome:
    kind: str
    due: float  # seconds after the start of the schedule
    sent: float  # when it went out, on the same clock
    latency: float  # seconds from due to the end of the answer
    ok: bool


class Worker:
    """`intently worker` (the job worker alone) as a subprocess."""

    def __init__(self, db: bk.Database, n: int, env: dict[str, str]):
        self.log_path = bk.OUT / f"scale-worker-{n}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(bk.INTENTLY), "worker"],
            env={**os.environ, "INTENTLY_DATABASE_URL": db.url, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=bk.ROOT,
        )
        log.close()

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # huey: SIGINT is the graceful stop
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def running_workers(db: bk.Database, count: int, env: dict[str, str]) -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    try:
        for n in range(count):
            workers.append(Worker(db, n + 1, env))
        time.sleep(3.0)  # each migrates (nothing to do) and starts its consumer
        for w in workers:
            if w.proc.poll() is not None:
                raise SystemExit(f"worker exited early; see {w.log_path}")
        bk.say(f"workers: pids {', '.join(str(w.proc.pid) for w in workers)}")
        yield workers
    finally:
        for w in workers:
            w.stop()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seed(group: bk.ServerGroup, accounts: int) -> tuple[list[str], list[str]]:
    """Push `accounts` accounts; returns their rtp_aids and the cursors of a walk of all pages."""
    aids: list[str] = []
    results = msgspec.json.Decoder()

    def collect(body: bytes) -> str | None:
        data = results.decode(body)["data"]["results"]
        aids.extend(r["rtp_aid"] for r in data if r["status"] == "created")
        return None if len(data) == PER_REQUEST else f"{len(data)} results"

    bodies = bk.push_bodies(0, accounts)
    t0 = time.perf_counter()
    load = bk.run_load(
        group,
        [bk.Request("POST", PATH, b) for b in bodies],
        4,
        items_per_request=PER_REQUEST,
        validate=collect,
        settle_first=False,
    )
    if load.errors or len(aids) != accounts:
        raise SystemExit(f"seeding failed: {len(aids)} accounts created; {load.errors[:3]}")
    bk.say(f"seeded {accounts:,} accounts in {time.perf_counter() - t0:.1f} s")
    cursors: list[str] = []
    client = group.connect()
    path = f"{PATH}?limit=100"
    while True:
        status, body = client.get(path)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {body[:300]!r}")
        cursor = results.decode(body)["data"]["nextCursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        path = f"{PATH}?limit=100&cursor={cursor}"
    client.close()
    return aids, cursors


def scaled_mix(write_share: float) -> list[tuple[str, float, int]]:
    """MIX with the pushes' shares scaled to add up to `write_share` (the rest in proportion)."""
    writes = sum(share for name, share, _ in MIX if name.startswith("push"))
    out = []
    for name, share, per in MIX:
        scale = (
            write_share / writes if name.startswith("push") else (1 - write_share) / (1 - writes)
        )
        out.append((name, share * scale, per))
    return out


def mixed_jobs(
    rng: random.Random,
    mix: list[tuple[str, float, int]],
    total: int,
    aids: list[str],
    seeded: int,
    cursors: list[str],
    last_sync: str,
) -> list[Job]:
    """`total` requests in the mix's shares, shuffled; every pushed item is new or renamed."""
    names = [name for name, _, _ in mix]
    weights = [share for _, share, _ in mix]
    items = {name: per for name, _, per in mix}
    numbers = Numbers(10_000_000)
    deal_no = itertools.count()
    activity_no = itertools.count()
    event_no = itertools.count()
    stamp = iso(time.time())
    jobs: list[Job] = []
    for n in range(total):
        kind = rng.choices(names, weights)[0]
        per = items[kind]
        if kind == "push accounts (new)":
            body = bk.push_bodies(numbers.take(per), per)[0]
            jobs.append(Job(kind, "POST", PATH, body))
        elif kind == "push accounts (upsert)":
            first = rng.randrange(0, seeded - per)
            accounts = [
                {"domain": f"bench-{i}.example.com", "name": f"Company {i} v{n}"}
                for i in range(first, first + per)
            ]
            body = _encoder.encode({"accounts": accounts, "upsert": True})
            jobs.append(Job(kind, "POST", PATH, body))
        elif kind == "push deals":
            deals = []
            for _ in range(per):
                d, a = next(deal_no), rng.randrange(seeded)
                deals.append(
                    {
                        "externalDealId": f"DEAL-{d}",
                        "name": f"Deal {d}",
                        "amount": 1000 + d % 9000,
                        "stageLabel": "Discovery",
                        "pipelineLabel": "Sales",
                        "dealCurrencyCode": "USD",
                        "associatedAccounts": [{"domain": f"bench-{a}.example.com"}],
                    }
                )
            jobs.append(Job(kind, "POST", "/api/v1/deals", _encoder.encode({"deals": deals})))
        elif kind == "push activities":
            acts = []
            for _ in range(per):
                k, a = next(activity_no), rng.randrange(seeded)
                acts.append(
                    {
                        "externalActivityId": f"ACT-{k}",
                        "activityType": "call" if k % 2 else "email",
                        "occurredAt": stamp,
                        "domain": f"bench-{a}.example.com",
                        "ownerEmail": "rep@example.com",
                        "contacts": [{"email": f"person-{k % 5000}@bench-{a}.example.com"}],
                        "subject": f"Touch {k}",
                    }
                )
            body = _encoder.encode({"activities": acts})
            jobs.append(Job(kind, "POST", "/api/v1/sales-activities", body))
        elif kind == "list page":
            i = rng.randrange(len(cursors) + 1)
            path = f"{PATH}?limit=100" + (f"&cursor={cursors[i - 1]}" if i else "")
            jobs.append(Job(kind, "GET", path))
        elif kind == "delta page (lastSync)":
            jobs.append(Job(kind, "GET", f"{PATH}?limit=100&lastSync={last_sync}"))
        elif kind == "get account":
            jobs.append(Job(kind, "GET", f"{PATH}/{rng.choice(aids)}"))
        else:
            batch = []
            for _ in range(per):
                e = next(event_no)
                batch.append(
                    {
                        "type": "page",
                        "messageId": f"scale-{e}",
                        "anonymousId": f"anon-{e % 20000:05d}",
                        "timestamp": stamp,
                        "context": {
                            "ip": f"12.{e % 200}.{e // 200 % 250}.{1 + e % 250}",
                            "page": {"path": "/pricing", "url": "https://www.site.example/pricing"},
                            "userAgent": "Mozilla/5.0 bench",
                        },
                    }
                )
            body = _encoder.encode({"sentAt": stamp, "batch": batch})
            jobs.append(Job(kind, "POST", "/v1/batch", body, collector=True))
    return jobs


@dataclass
class OpenLoop:
    outcomes: list[Outcome]
    errors: list[str] = field(default_factory=list)


def open_loop(
    ports: Sequence[int],
    key: str,
    write_key: str,
    jobs: Sequence[Job],
    rate: float,
    start: float,
    threads: int,
) -> OpenLoop:
    """Send jobs[i] at start + i / rate (perf_counter time) to ports[i % len(ports)].

    A pool of threads takes the requests in schedule order; a request that finds every
    thread busy goes out late, and its latency still counts from when it was due.
    """
    api = {"X-Api-Key": key, "Content-Type": "application/json"}
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    collector = {"Authorization": basic, "Content-Type": "application/json"}
    get = {"X-Api-Key": key}
    index = itertools.count()
    per_thread: list[list[Outcome]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def connect(port: int) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def worker(t: int) -> None:
        conns = [connect(p) for p in ports]
        used = [0.0] * len(ports)
        out = per_thread[t]
        while True:
            i = next(index)
            if i >= len(jobs):
                break
            job = jobs[i]
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            which = i % len(ports)
            if time.perf_counter() - used[which] > IDLE_S:
                # The server closes a connection idle for 5 s (uvicorn's keep-alive); a
                # client's pool opens a new one instead of sending on it.
                conns[which].close()
                conns[which] = connect(ports[which])
            conn = conns[which]
            sent = time.perf_counter() - start
            headers = collector if job.collector else (api if job.method == "POST" else get)
            try:
                conn.request(job.method, job.path, body=job.body or None, headers=headers)
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{job.kind}: {exc!r}")
                conn.close()
                conns[which] = connect(ports[which])
                latency = time.perf_counter() - due
                out.append(Outcome(job.kind, due - start, sent, latency, False))
                continue
            used[which] = time.perf_counter()
            latency = used[which] - due
            if status != 200:
                ok = False
                errors.append(f"{job.kind}: HTTP {status}: {body[:200]!r}")
            elif job.collector:
                ok = body == OK_COLLECTOR
            elif job.method == "POST":
                ok = FAILED not in body
            else:
                ok = True
            if not ok and status == 200:
                errors.append(f"{job.kind}: {body[:200]!r}")
            out.append(Outcome(job.kind, due - start, sent, latency, ok))
        for c in conns:
            c.close()

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return OpenLoop(sorted(itertools.chain.from_iterable(per_thread), key=lambda o: o.due), errors)


def pct_ms(sorted_seconds: list[float], q: float) -> float:
    if not sorted_seconds:
        return math.nan
    return sorted_seconds[max(0, math.ceil(q * len(sorted_seconds)) - 1)] * 1000


def scoring_runs(db: bk.Database, since_us: int, until_us: int) -> str:
    rows = bk.psql(
        "SELECT kind, status, scored, changed, round((finished_at - started_at) / 1000.0) "
        f"FROM scoring_runs WHERE started_at BETWEEN {since_us} AND {until_us} "
        "ORDER BY started_at",
        database=MIXED_DB,
    )
    runs = [r.split("|") for r in rows.splitlines() if r]
    if not runs:
        return "no scoring run started in the window"
    return "; ".join(
        f"{kind} {status}: {scored} scored, {changed} changed in {ms} ms"
        for kind, status, scored, changed, ms in runs
    )


def wait_for_window(workers_started: float, warmup: float, seconds: float) -> None:
    """Sleep so that the measured window holds one of the workers' periodic checks.

    huey's consumer checks its periodic tasks when it starts and every 60 s after (not at
    the minute boundary); the incremental scoring it enqueues runs for a few seconds.
    """
    if seconds >= 60:
        return
    now = time.time()
    # The consumer starts ~1.5 s after its process; the scoring follows the check.
    centre = workers_started + 5.0
    while centre - seconds / 2 - warmup < now:
        centre += 60.0
    delay = centre - seconds / 2 - warmup - now
    bk.say(f"waiting {delay:.0f} s so that the measured window holds the workers' periodic check")
    time.sleep(delay)


def mixed(args: argparse.Namespace) -> tuple[list[bk.Check], dict[str, Any]]:
    db = bk.fresh_postgres(MIXED_DB)
    env = {"INTENTLY_RATE_LIMIT_PER_MINUTE": str(args.mixed_rate_limit)}
    if args.mixed_rate_limit:
        env["INTENTLY_RATE_LIMIT_BURST"] = str(max(1000, args.mixed_rate_limit // 60))
    limiter = f"{args.mixed_rate_limit:,}/min" if args.mixed_rate_limit else "off"
    bk.say(
        f"-- mixed load: 2 x serve --no-worker + 2 x worker; {args.rate:,.0f} requests/s, "
        f"{args.warmup:.0f} s warm-up + {args.seconds:.0f} s measured; rate limiting {limiter}"
    )
    mix = scaled_mix(args.write_share)
    for name, share, per in mix:
        bk.say(f"     {share:5.1%}  {name}" + (f", {per} a request" if per > 1 else ""))
    rng = random.Random(8)
    payload: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "mix": mix}
    with bk.running_servers(db, "scale-mixed", 2, args=["--no-worker"], env=env) as group:
        done = subprocess.run(
            [str(bk.INTENTLY), "website", "write-key", "--workspace", bk.WORKSPACE],
            env=group.servers[0].env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"write-key failed: {done.stderr.strip()}")
        write_key = done.stdout.split()[-1]
        aids, cursors = seed(group, args.mixed_accounts)
        if group.analyze is not None:
            group.analyze.check()
        last_sync = iso(time.time())
        total = int(args.rate * (args.warmup + args.seconds))
        jobs = mixed_jobs(rng, mix, total, aids, args.mixed_accounts, cursors, last_sync)
        workers_started = time.time()
        with running_workers(db, 2, env) as workers:
            meter = group.meter()
            bk.settle(meter)
            if not args.no_align:
                wait_for_window(workers_started, args.warmup, args.seconds)
            worker_pids = [w.proc.pid for w in workers]
            procs0 = process_cpu(group)
            workers0 = [bk.cpu_seconds([p]) for p in worker_pids]
            cpu0 = meter.sample()
            wall0 = time.time()
            start = time.perf_counter() + 0.2
            with PgActivity(MIXED_DB) as pg:
                run = open_loop(
                    [s.port for s in group.servers],
                    group.key,
                    write_key,
                    jobs,
                    args.rate,
                    start,
                    args.connections,
                )
            elapsed = time.perf_counter() - start
            cpu = bk.CpuMeter.delta(cpu0, meter.sample())
            split = per_process(procs0, process_cpu(group), elapsed)
            worker_cpu = [
                bk.cpu_seconds([p]) - c for p, c in zip(worker_pids, workers0, strict=True)
            ]
            window = (int((wall0 + 0.2 + args.warmup) * 1e6), int((wall0 + elapsed) * 1e6))
            scoring = scoring_runs(db, *window)
        peak = group.peak_rss_mb

    measured = [o for o in run.outcomes if o.due >= args.warmup]
    # Rates over the window itself: requests that went out in it, and answers that came back.
    end = args.warmup + args.seconds
    achieved = sum(args.warmup <= o.sent < end for o in run.outcomes) / args.seconds
    answered = sum(args.warmup <= o.due + o.latency < end for o in run.outcomes) / args.seconds
    late = sorted(o.sent - o.due for o in measured)
    by_kind: dict[str, list[float]] = {}
    for o in measured:
        by_kind.setdefault(o.kind, []).append(o.latency)
    failed = sum(not o.ok for o in measured)
    bk.say(
        f"   scheduled {args.rate:,.0f}/s; in the {args.seconds:.0f} s window sent "
        f"{achieved:,.1f}/s and answered {answered:,.1f}/s; {failed} of {len(measured):,} "
        f"failed; sends after their due time (every thread busy): p99 "
        f"{pct_ms(late, 0.99):.0f} ms, max {pct_ms(late, 1.0):.0f} ms"
    )
    other = max(0.0, cpu.machine - cpu.server - cpu.database - cpu.client - sum(worker_cpu))
    bk.say(
        f"   CPU over the whole run: servers {cpu.server / elapsed * 100:.0f}% ({split}), "
        f"workers {', '.join(f'{c / elapsed * 100:.0f}%' for c in worker_cpu)}, "
        f"postgres {cpu.database / elapsed * 100:.0f}%, "
        f"load generator {cpu.client / elapsed * 100:.0f}%, other {other / elapsed * 100:.0f}%"
    )
    bk.say(f"   scoring in the window: {scoring}")
    bk.say(f"   {pg.summary()}")
    kinds: dict[str, Any] = {}
    for name, _, _ in [*MIX, ("all", 1.0, 0)]:
        lat = (
            sorted(o.latency for o in measured) if name == "all" else sorted(by_kind.get(name, []))
        )
        row = {
            "requests": len(lat),
            "p50_ms": round(pct_ms(lat, 0.5), 1),
            "p95_ms": round(pct_ms(lat, 0.95), 1),
            "p99_ms": round(pct_ms(lat, 0.99), 1),
            "max_ms": round(pct_ms(lat, 1.0), 1),
        }
        kinds[name] = row
        bk.say(
            f"   {name:<24} {row['requests']:6,}  p50 {row['p50_ms']:7.1f} ms  "
            f"p95 {row['p95_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  max {row['max_ms']:7.1f} ms"
        )
    for e in run.errors[:5]:
        bk.say(f"     error: {e}")
    overall = kinds["all"]
    note = f"2 API + 2 workers, {args.rate:,.0f}/s offered, pushes {args.write_share:.0%}, "
    note += f"p50 {overall['p50_ms']} ms, p95 {overall['p95_ms']} ms"
    if failed:
        note += f"; {failed} FAILED requests"
    note += f"; sent {achieved:,.1f}/s, answered {answered:,.1f}/s"
    checks = [bk.Check("mixed load p99", overall["p99_ms"], "ms", MIXED_P99_MS, False, note, 1)]
    payload |= {
        "sent_per_s": round(achieved, 1),
        "answered_per_s": round(answered, 1),
        "failed": failed,
        "errors": run.errors[:20],
        "send_lag_p99_ms": round(pct_ms(late, 0.99), 1),
        "send_lag_max_ms": round(pct_ms(late, 1.0), 1),
        "kinds": kinds,
        "cpu": {
            "seconds": round(elapsed, 2),
            "servers_pct": round(cpu.server / elapsed * 100, 1),
            "per_server_process": split,
            "workers_pct": [round(c / elapsed * 100, 1) for c in worker_cpu],
            "postgres_pct": round(cpu.database / elapsed * 100, 1),
            "client_pct": round(cpu.client / elapsed * 100, 1),
        },
        "scoring": scoring,
        "postgres_activity": pg.as_dict(),
        "peak_rss_mb_servers": round(peak, 1),
    }
    return checks, payload


# ---- main --------------------------------------------------------------------------------


def cpu_budget(result: bk.LoadResult) -> tuple[str, float, float]:
    """CPU ms per 1,000 accounts by part, and what that cost allows on this machine.

    A model with no other load: the cores are shared by the server, PostgreSQL and the
    client; one server process uses at most about one core (the GIL). Returns the text,
    and the most accounts/s for one server process and for two.
    """
    per = 1000 / result.items if result.items else math.nan
    server, database, client = (
        x * 1000 * per for x in (result.cpu.server, result.cpu.database, result.cpu.client)
    )
    if not server:
        return "no CPU measured", math.nan, math.nan
    cores = os.cpu_count() or 1
    machine = cores * 1_000_000 / (server + database + client)
    one, two = min(machine, 1_000_000 / server), min(machine, 2_000_000 / server)
    text = (
        f"CPU per 1,000 accounts: server {server:.0f} ms, postgres {database:.0f} ms, "
        f"client {client:.0f} ms; at that cost {cores} cores give at most {machine:,.0f} "
        f"accounts/s, one server process (one core) {one:,.0f}, two {two:,.0f}"
    )
    return text, one, two


def ratio_note(one: bk.LoadResult, other: bk.LoadResult) -> str:
    return (
        f"one: {one.rate:,.0f} accounts/s at c={one.concurrency}; "
        f"this: {other.rate:,.0f} at c={other.concurrency}, p99 {other.pct_ms(0.99):.1f} ms"
    )


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency",
        default="1,2,4,8",
        help="client connections tried for each deployment (default 1,2,4,8)",
    )
    parser.add_argument(
        "--push-seconds", type=float, default=10.0, help="per push run (default 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="push runs per deployment and concurrency (1)"
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="measured mixed load (default 30)"
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="mixed warm-up (default 10)")
    parser.add_argument("--rate", type=float, default=MIXED_RATE, help="requests/s (200)")
    parser.add_argument(
        "--connections", type=int, default=256, help="mixed load's client threads (default 256)"
    )
    parser.add_argument(
        "--mixed-accounts", type=int, default=20_000, help="accounts seeded first (20,000)"
    )
    parser.add_argument(
        "--mixed-rate-limit",
        type=int,
        default=0,
        metavar="PER_MINUTE",
        help="INTENTLY_RATE_LIMIT_PER_MINUTE for the mixed load (default 0: off)",
    )
    parser.add_argument(
        "--no-align",
        action="store_true",
        help="do not wait for the workers' periodic check to fall in the window",
    )
    parser.add_argument(
        "--write-share",
        type=float,
        default=sum(share for name, share, _ in MIX if name.startswith("push")),
        help="share of pushes in the mixed load (default 0.2); the other kinds keep their "
        "proportions",
    )
    parser.add_argument("--no-push", action="store_true", help="skip the push scaling")
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed load")
    parser.add_argument("--no-workers2", action="store_true", help="skip `serve --workers 2`")
    parser.add_argument(
        "--profile",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="after each deployment's runs, sample its servers with py-spy this long",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=bk.OPTIONS.settle_seconds,
        metavar="SECONDS",
        help="wait up to this long for a quiet machine before each run (default 30)",
    )
    parser.add_argument("--no-autoanalyze", action="store_true", help="do not emulate autoanalyze")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)
    bk.OPTIONS.autoanalyze = not args.no_autoanalyze
    levels = bk.parse_levels(args.concurrency)
    if not 0 < args.write_share < 1:
        parser.error(f"--write-share must be between 0 and 1, not {args.write_share}")
    source = bk.source_state()
    bk.say(
        f"scale on postgres ({PG_DB}_*); code {source['commit'][:7]}"
        + (
            f" + uncommitted {', '.join(source['uncommitted_src'])}"
            if source["uncommitted_src"]
            else ""
        )
    )
    checks: list[bk.Check] = []
    info: list[str] = []
    payload: dict[str, Any] = {"db": "postgres", "push": {}}
    if not args.no_push:
        bk.say(
            f"push scaling: {PER_REQUEST} new accounts a request, {args.push_seconds:.0f} s "
            f"per run, c={levels}"
        )
        deps = deployments(not args.no_workers2)
        measured = push_scaling(deps, levels, args.push_seconds, args.rounds, args.profile)
        best: dict[str, bk.LoadResult] = {}
        for dep in deps:
            runs = measured[dep.name]
            best[dep.name] = bk.best([r.result for r in runs])
            payload["push"][dep.name] = {
                "title": dep.title,
                "env": dep.env,
                "runs": [
                    r.result.as_dict("accounts")
                    | {"per_server_process": r.processes, "postgres_activity": r.locks}
                    for r in runs
                ],
            }
        one, two = best["one"], best["two"]
        checks.append(
            bk.Check(
                "2 API processes / 1, POST /accounts 100/request",
                two.rate / one.rate,
                "x",
                RATIO_TARGET,
                note=ratio_note(one, two),
                decimals=2,
            )
        )
        for name, result in best.items():
            budget, _, ceiling = cpu_budget(result)
            other = result.cpu_pct(result.other_cpu)
            info.append(
                f"{name:<9} {result.rate:8,.0f} accounts/s (best at c={result.concurrency}, "
                f"p99 {result.pct_ms(0.99):.1f} ms, other processes {other:.0f}% CPU); {budget}"
            )
            payload["push"][name]["ceiling_accounts_per_s"] = round(ceiling)
        _, one_max, two_max = cpu_budget(one)
        info.append(
            f"ceiling: at the one-process run's CPU cost per account and with nothing else "
            f"running, two processes give at most {two_max / one_max:.2f} x one"
        )
        if "workers2" in best:
            info.append(f"serve --workers 2 / 1: {best['workers2'].rate / one.rate:.2f} x")
        limited = best["limited"]
        info.append(
            f"rate limiter on (high limit) / off, one process: {limited.rate / one.rate:.2f} x; "
            f"p50 {limited.pct_ms(0.5):.1f} ms vs {one.pct_ms(0.5):.1f} ms"
        )
    if not args.no_mixed:
        mixed_checks, payload["mixed"] = mixed(args)
        checks += mixed_checks
        with suppress(SystemExit):
            bk.psql(f"DROP DATABASE IF EXISTS {MIXED_DB} WITH (FORCE)")

    bk.report("scale (postgres)", checks)
    for line in info:
        bk.say("  " + line)
    payload |= {"info": info, "checks": bk.check_dicts(checks)}
    bk.say(f"results: {bk.save_results('scale-postgres', payload)}")
    if args.strict and not all(c.passed for c in checks):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
