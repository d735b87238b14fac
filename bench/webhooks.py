"""Webhook delivery throughput: the outbox drained by the dispatcher to a local receiver.

    .venv/bin/python bench/webhooks.py                     # SQLite, 5,000 deliveries
    .venv/bin/python bench/webhooks.py --db postgres
    .venv/bin/python bench/webhooks.py --deliveries 20000 --concurrency 32

A fresh database gets a workspace, one webhook subscribed to every event type, and
--deliveries events recorded as the application records them (`events.repository.record`,
which writes the outbox rows in the same transaction). The receiver is a threaded HTTP
server in its own process on 127.0.0.1 that answers 200 at once and counts distinct
event ids. The clock runs from starting the dispatcher thread (as `intently worker`
runs it) until the last delivery is marked delivered; the run then checks that the
receiver saw every event and that no delivery is left pending or failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import benchkit as bk

sys.path.insert(0, str(bk.ROOT / "src"))

RATE_TARGET = 200.0  # deliveries/s
PG_DB = "intently_bench_webhooks"
PG_URL = f"postgresql+psycopg://postgres@{bk.PG_HOST}:{bk.PG_PORT}/{PG_DB}"
EVENTS_PER_TX = 500


def serve_receiver(port_out: Any) -> None:
    """The receiver process: 200 to every POST, GET /count answers distinct event ids."""
    seen: set[str] = set()
    lock = threading.Lock()
    posts = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: with Nagle on, the body waits for a delayed ACK
        # (40 ms a request), which would measure the receiver, not the dispatcher.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            eid = self.headers.get("Intently-Event-Id", "")
            with lock:
                seen.add(eid)
                posts[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            with lock:
                out = f"{len(seen)} {posts[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the dispatcher closing its connections at the end

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def receiver_counts(port: int) -> tuple[int, int]:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/count")
        distinct, posts = c.getresponse().read().decode().split()
        return int(distinct), int(posts)
    finally:
        c.close()


def fresh_database(kind: str) -> bk.Database:
    if kind == "sqlite":
        return bk.fresh_sqlite("webhooks")
    bk.psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)", f"CREATE DATABASE {PG_DB}")
    return bk.Database("postgres", PG_URL)


def seed(engine: Any, settings: Any, url: str, n: int) -> int:
    """A workspace, a webhook to `url`, and n events (so n pending deliveries)."""
    from intently.auth.repository import workspace_id_by_name
    from intently.auth.service import generate_key
    from intently.events.repository import record
    from intently.events.schemas import Event
    from intently.kit.db import tick, write_tx
    from intently.webhooks.schemas import WebhookIn
    from intently.webhooks.service import create

    generate_key(engine, bk.WORKSPACE, bk.EMAIL)
    with engine.connect() as conn:
        ws = workspace_id_by_name(conn, bk.WORKSPACE)
    assert ws is not None
    create(engine, settings, ws, WebhookIn(url=url, eventTypes=["*"]))
    for first in range(0, n, EVENTS_PER_TX):
        items = [
            Event("account.created", uuid.uuid4().hex[:24], None, {"domain": f"b{i}.example.com"})
            for i in range(first, min(n, first + EVENTS_PER_TX))
        ]
        with write_tx(engine) as conn:
            record(conn, ws, items, seq=tick(conn, ws))
    return ws


def status_counts(engine: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from intently.webhooks.tables import webhook_deliveries as wd

    with engine.connect() as conn:
        rows = conn.execute(select(wd.c.status, func.count()).group_by(wd.c.status)).all()
    return {str(s): int(c) for s, c in rows}


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--deliveries", type=int, default=5_000, help="events to deliver (5,000)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="sends at once (INTENTLY_WEBHOOK_CONCURRENCY)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    from intently.kit.db import make_engine
    from intently.kit.migrate import migrate
    from intently.settings import Settings
    from intently.webhooks.dispatcher import Dispatcher

    ctx = multiprocessing.get_context("spawn")
    port_q = ctx.Queue()
    receiver = ctx.Process(target=serve_receiver, args=(port_q,), daemon=True)
    receiver.start()
    port = int(port_q.get(timeout=30))
    db = fresh_database(args.db)
    try:
        bk.say(f"webhooks on {args.db}: {args.deliveries:,} deliveries, c={args.concurrency}")
        migrate(db.url)
        settings = Settings(
            database_url=db.url,
            webhook_allow_private=True,
            webhook_concurrency=args.concurrency,
            # One webhook here: let it use every slot, as the figures always measured.
            webhook_concurrency_per_webhook=args.concurrency,
            webhook_timeout_s=10,
        )
        engine = make_engine(db.url, pool_size=max(10, args.concurrency))
        t0 = time.perf_counter()
        seed(engine, settings, f"http://127.0.0.1:{port}/hook", args.deliveries)
        took = time.perf_counter() - t0
        bk.say(f"  seeded {args.deliveries:,} events and deliveries in {took:.1f} s")

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        dispatcher = Dispatcher(engine, settings).start()
        deadline = t0 + max(120.0, args.deliveries / 20)
        counts: dict[str, int] = {}
        while time.perf_counter() < deadline:
            counts = status_counts(engine)
            if counts.get("delivered", 0) + counts.get("failed", 0) >= args.deliveries:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        dispatcher.stop(timeout=30)
        distinct, posts = receiver_counts(port)
        counts = status_counts(engine)
        engine.dispose()
    finally:
        receiver.terminate()
        db.cleanup()

    delivered = counts.get("delivered", 0)
    rate = delivered / seconds if seconds else 0.0
    problems = []
    if delivered != args.deliveries:
        problems.append(f"{delivered:,} of {args.deliveries:,} delivered ({counts})")
    if distinct != args.deliveries:
        problems.append(f"the receiver saw {distinct:,} distinct events")
    bk.say(
        f"  {delivered:,} delivered in {seconds:.2f} s; receiver: {distinct:,} distinct events "
        f"in {posts:,} requests; dispatcher process CPU {cpu / seconds * 100:.0f}%"
    )
    check = bk.Check(
        f"webhook deliveries ({args.db}, c={args.concurrency})",
        rate,
        "deliveries/s",
        RATE_TARGET,
        note="; ".join(problems),
    )
    bk.report("Webhooks", [check])
    ok = check.passed and not problems
    if problems:
        bk.say("  FAIL: " + "; ".join(problems))
    path = bk.save_results(
        f"webhooks-{args.db}",
        {
            "deliveries": args.deliveries,
            "concurrency": args.concurrency,
            "seconds": seconds,
            "rate": rate,
            "receiver_distinct": distinct,
            "receiver_posts": posts,
            "statuses": counts,
            "checks": bk.check_dicts([check]),
        },
    )
    bk.say(f"  details: {path}")
    if args.strict and not ok:
        raise SystemExit(1)
    return [check]


if __name__ == "__main__":
    os.environ.setdefault("INTENTLY_WEBHOOK_DISPATCH", "false")
    main()
