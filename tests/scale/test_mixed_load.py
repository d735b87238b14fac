"""Two API processes and two workers on one PostgreSQL database under a mixed load for a
bounded minute (issue 8): bulk pushes of accounts, deals and activities (with upserts),
list walks and delta syncs, collector events and scoring, spread over both API processes.

Afterwards: no account, deal, activity or web event is lost or duplicated, every
delta-syncing client's replica equals the database, no scheduled job ran twice (one
jobs_ticks row per slot, and no two scheduled scoring runs of a workspace overlap), and
no answer was a 5xx other than 503.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.scale.conftest import (
    Cluster,
    Http,
    Record,
    Replica,
    envelope_data,
    running,
    wait_until,
    walk_accounts,
)

# How long the load runs; a minute always holds one firing of the per-minute rescoring.
LOAD_S = float(os.environ.get("INTENTLY_SCALE_LOAD_S", "60"))
WORKSPACES = 2
SYNCERS_PER_WORKSPACE = 2
# Paces (seconds between requests of one thread): enough to keep four server processes
# and the database busy on two cores without growing the data past what a minute's
# checks can read back.
ACCOUNTS_EVERY_S = 0.25
CRM_EVERY_S = 0.35
EVENTS_EVERY_S = 0.2
SYNC_EVERY_S = 1.0
SCORE_EVERY_S = 15.0
DRAIN_S = 120.0
# What a worker logs when it wins a periodic task's slot (intently.kit.jobs).
PERIODIC_LINE = re.compile(r"periodic (\S+) slot (\d+) runs here")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Tenant:
    """One workspace of the load and everything its clients were told succeeded."""

    name: str
    key: str
    ws_id: int
    write_key: str = ""
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # domain -> values
    aids: dict[str, str] = field(default_factory=dict)  # domain -> rtp_aid
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)  # externalDealId -> values
    activities: set[str] = field(default_factory=set)  # externalActivityId
    events_sent: set[str] = field(default_factory=set)  # messageId
    events_acked: set[str] = field(default_factory=set)
    pages_sent: set[str] = field(default_factory=set)  # messageIds of page events
    replicas: list[Replica] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def domain(self, n: int) -> str:
        return f"acct{n}-{self.tag}.example.com"

    def known_domains(self) -> list[str]:
        with self.lock:
            return list(self.accounts)


class Load:
    """The load's threads: each runs until `stop`, paced, and keeps what it was told."""

    def __init__(self, urls: list[str], record: Record):
        self.urls = urls
        self.record = record
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.api_runs: set[str] = set()  # scoring runs started through the API
        self.lock = threading.Lock()

    def thread(self, name: str, body: Callable[[], None], every: float) -> threading.Thread:
        def loop() -> None:
            tick = time.monotonic()
            try:
                while not self.stop.is_set():
                    body()
                    tick += every
                    self.stop.wait(max(0.0, tick - time.monotonic()))
            except BaseException as exc:
                with self.lock:
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                self.stop.set()  # a broken client spoils the bookkeeping: stop early

        return threading.Thread(target=loop, name=name, daemon=True)

    def accounts(self, t: Tenant) -> Callable[[], None]:
        http = Http(t.key, self.urls, self.record)
        counter = iter(range(10**9))
        cycle = iter(range(10**9))

        def push() -> None:
            if next(cycle) % 3 == 2 and t.accounts:
                # Upserts of this thread's own accounts (no other thread writes them, so
                # the last value acknowledged is the value the database must hold).
                domains = random.sample(t.known_domains(), min(50, len(t.accounts)))
                v = uuid.uuid4().hex[:6]
                items: list[dict[str, Any]] = [{"domain": d, "name": f"{d} v{v}"} for d in domains]
                expect = "updated"
                body: dict[str, Any] = {"accounts": items, "upsert": True}
            else:
                ns = [next(counter) for _ in range(50)]
                items = [
                    {
                        "domain": t.domain(n),
                        "name": f"Company {n}",
                        "externalId": f"EXT-{t.tag}-{n}",
                        "tags": ["load"],
                    }
                    for n in ns
                ]
                expect = "created"
                body = {"accounts": items}
            results = envelope_data(http.call("POST", "/api/v1/accounts", json=body))["results"]
            assert len(results) == len(items), results
            with t.lock:
                for item, res in zip(items, results, strict=True):
                    assert res["status"] == expect, f"account {item['domain']}: {res}"
                    d = item["domain"]
                    known = t.aids.setdefault(d, res["rtp_aid"])
                    assert known == res["rtp_aid"], f"{d} changed rtp_aid: {known} -> {res}"
                    values = t.accounts.setdefault(d, {})
                    values.update({k: v for k, v in item.items() if k != "tags"})

        return push

    def crm(self, t: Tenant) -> Callable[[], None]:
        http = Http(t.key, self.urls, self.record)
        counter = iter(range(10**9))
        cycle = iter(range(10**9))

        def push() -> None:
            domains = t.known_domains() or [t.domain(0)]
            if next(cycle) % 4 == 3 and t.deals:
                ids = random.sample(sorted(t.deals), min(20, len(t.deals)))
                deals: list[dict[str, Any]] = [
                    {"externalDealId": i, "name": f"Deal {i} r", "amount": random.randint(1, 10**6)}
                    for i in ids
                ]
                expect = "updated"
            else:
                ns = [next(counter) for _ in range(20)]
                deals = [
                    {
                        "externalDealId": f"D-{t.tag}-{n}",
                        "name": f"Deal {n}",
                        "amount": float(n),
                        "stageLabel": "Discovery",
                        "associatedAccounts": [{"domain": random.choice(domains)}],
                    }
                    for n in ns
                ]
                expect = "created"
            results = envelope_data(http.call("POST", "/api/v1/deals", json={"deals": deals}))
            with t.lock:
                for item, res in zip(deals, results["results"], strict=True):
                    assert res["status"] == expect, f"deal {item['externalDealId']}: {res}"
                    t.deals[item["externalDealId"]] = {
                        "name": item["name"],
                        "amount": float(item["amount"]),
                    }
            acts: list[dict[str, Any]] = []
            for _ in range(10):
                n = next(counter)
                d = random.choice(domains)
                acts.append(
                    {
                        "externalActivityId": f"A-{t.tag}-{n}",
                        "activityType": random.choice(["call", "email"]),
                        "occurredAt": now_iso(),
                        "domain": d,
                        "ownerEmail": "rep@vendor.example.com",
                        "contacts": [{"email": f"person{n}@{d}"}],
                    }
                )
            results = envelope_data(
                http.call("POST", "/api/v1/sales-activities", json={"activities": acts})
            )
            with t.lock:
                for item, res in zip(acts, results["results"], strict=True):
                    ext = item["externalActivityId"]
                    assert res["status"] == "created", f"activity {ext}: {res}"
                    t.activities.add(ext)

        return push

    def events(self, t: Tenant) -> Callable[[], None]:
        # The collector takes the public write key as the HTTP Basic user, not X-Api-Key.
        http = Http(None, self.urls, self.record)
        auth = "Basic " + base64.b64encode(f"{t.write_key}:".encode()).decode()

        def send() -> None:
            domains = t.known_domains() or [t.domain(0)]
            anon = "anon-" + uuid.uuid4().hex[:12]
            group: dict[str, Any] = {
                "type": "group",
                "messageId": uuid.uuid4().hex,
                "anonymousId": anon,
                "groupId": "g-" + anon,
                "traits": {"website": random.choice(domains), "name": "Visitor Co"},
                "timestamp": now_iso(),
            }
            pages: list[dict[str, Any]] = [
                {
                    "type": "page",
                    "messageId": uuid.uuid4().hex,
                    "anonymousId": anon,
                    "timestamp": now_iso(),
                    "context": {
                        "page": {"path": f"/p{i}", "url": f"https://vendor.example.com/p{i}"},
                        "userAgent": "load-test",
                    },
                }
                for i in range(9)
            ]
            batch = [group, *pages]
            ids: set[str] = {e["messageId"] for e in batch}
            with t.lock:
                t.events_sent |= ids
                t.pages_sent |= {str(e["messageId"]) for e in pages}
            r = http.call("POST", "/v1/batch", json={"batch": batch})
            assert r.status_code == 200 and r.json() == {"success": True}, (
                f"collector batch: {r.status_code} {r.text[:300]}"
            )
            with t.lock:
                t.events_acked |= ids

        http.client.headers["Authorization"] = auth
        return send

    def syncer(self, t: Tenant) -> Callable[[], None]:
        http = Http(t.key, self.urls, self.record)
        replica = Replica()
        t.replicas.append(replica)

        def sync() -> None:
            replica.sync(http)

        return sync

    def scorer(self, tenants: list[Tenant]) -> Callable[[], None]:
        https = [Http(t.key, self.urls, self.record, timeout=120) for t in tenants]
        turn = iter(range(10**9))

        def score() -> None:
            http = https[next(turn) % len(https)]
            data = envelope_data(http.call("POST", "/api/v1/scoring/runs", json={"full": False}))
            with self.lock:
                self.api_runs.add(data["runId"])

        return score


def test_mixed_load(make_cluster: Callable[..., Cluster]) -> None:
    phases = [("start", time.monotonic())]
    cluster = make_cluster()
    apis = [cluster.api(wait=False) for _ in range(2)]  # they start while keys are made
    names = [f"load-{uuid.uuid4().hex[:10]}" for _ in range(WORKSPACES)]
    tenants = [
        Tenant(name, key, cluster.workspace_id(name))
        for name, key in zip(names, cluster.keys(names), strict=True)
    ]
    for api in apis:
        api.wait_healthy()
    urls = [a.url for a in apis]
    record = Record()
    for t in tenants:
        t.write_key = envelope_data(Http(t.key, urls, record).call("GET", "/api/v1/website"))[
            "writeKey"
        ]

    load = Load(urls, record)
    for t in tenants:
        # A first run now, so the scheduled runs of the load are incremental ones (a
        # workspace's first run is a full one, whichever job asked for it).
        http = Http(t.key, urls, record)
        run = envelope_data(http.call("POST", "/api/v1/scoring/runs", json={"full": True}))
        load.api_runs.add(run["runId"])
    workers = [cluster.worker() for _ in range(2)]
    threads = []
    for t in tenants:
        threads.append(load.thread(f"accounts-{t.name}", load.accounts(t), ACCOUNTS_EVERY_S))
        threads.append(load.thread(f"crm-{t.name}", load.crm(t), CRM_EVERY_S))
        threads.append(load.thread(f"events-{t.name}", load.events(t), EVENTS_EVERY_S))
        for i in range(SYNCERS_PER_WORKSPACE):
            threads.append(load.thread(f"sync{i}-{t.name}", load.syncer(t), SYNC_EVERY_S))
    threads.append(load.thread("scoring", load.scorer(tenants), SCORE_EVERY_S))

    phases.append(("cluster up", time.monotonic()))
    load_started_us = time.time_ns() // 1000
    with running(threads):
        load.stop.wait(LOAD_S)
        load.stop.set()
    load_ended_us = time.time_ns() // 1000
    phases.append(("load", time.monotonic()))
    assert not load.errors, "clients failed during the load:\n" + "\n".join(load.errors[:20])
    for w in workers:
        assert w.alive(), f"{w.name} died during the load:\n{w.tail()}"
    for t in tenants:
        assert t.accounts and t.deals and t.activities and t.events_acked, (
            f"the load wrote too little to prove anything for {t.name}: "
            f"{len(t.accounts)} accounts, {len(t.deals)} deals, "
            f"{len(t.activities)} activities, {len(t.events_acked)} events"
        )

    # The workers drain: the per-minute rescoring that fell inside the load has run for
    # every workspace and nothing is running; then they stop gracefully (SIGINT lets a
    # running task finish), so the database holds still for the final comparisons.
    def scheduled_runs() -> list[tuple[Any, ...]]:
        rows = cluster.sql(
            "SELECT workspace_id, id, kind, status, started_at, finished_at, error "
            "FROM scoring_runs ORDER BY workspace_id, kind, started_at"
        )
        return [r for r in rows if r[1] not in load.api_runs]

    def drained() -> bool:
        rows = cluster.sql("SELECT status FROM scoring_runs")
        done_for = {r[0] for r in scheduled_runs() if r[3] == "done"}
        return all(r[0] != "running" for r in rows) and {t.ws_id for t in tenants} <= done_for

    wait_until(
        "a scheduled scoring run of every workspace, and none running "
        f"(runs: {cluster.sql('SELECT workspace_id, kind, status FROM scoring_runs')})",
        drained,
        DRAIN_S,
        interval=1.0,
    )
    phases.append(("drain", time.monotonic()))
    for w in workers:
        code = w.stop(signal.SIGINT, timeout=60)
        assert code is not None, f"{w.name} did not stop"
    phases.append(("workers stopped", time.monotonic()))

    # Nothing lost, nothing doubled: accounts, deals, activities.
    for t in tenants:
        rows = cluster.sql(
            "SELECT domain, id, name, external_id FROM accounts WHERE workspace_id = %s",
            (t.ws_id,),
        )
        by_domain = {r[0]: r for r in rows}
        assert len(by_domain) == len(rows), f"{t.name}: an account domain is stored twice"
        ext_ids = [r[3] for r in rows if r[3] is not None]
        assert len(set(ext_ids)) == len(ext_ids), f"{t.name}: an externalId is held twice"
        lost = sorted(set(t.accounts) - set(by_domain))
        extra = sorted(set(by_domain) - set(t.accounts))
        assert not lost, f"{t.name}: {len(lost)} acknowledged accounts missing, e.g. {lost[:5]}"
        assert not extra, f"{t.name}: {len(extra)} accounts nobody was told of, e.g. {extra[:5]}"
        wrong = [
            (d, v, by_domain[d][1:])
            for d, v in t.accounts.items()
            if (by_domain[d][1], by_domain[d][2], by_domain[d][3])
            != (t.aids[d], v["name"], v.get("externalId"))
        ]
        assert not wrong, (
            f"{t.name}: {len(wrong)} accounts differ from their last acknowledged push "
            f"(expected, stored id/name/externalId): {wrong[:3]}"
        )

        deals = cluster.sql(
            "SELECT external_deal_id, name, amount FROM deals WHERE workspace_id = %s",
            (t.ws_id,),
        )
        stored_deals = {r[0]: {"name": r[1], "amount": r[2]} for r in deals}
        assert len(stored_deals) == len(deals), f"{t.name}: a deal is stored twice"
        assert set(stored_deals) == set(t.deals), (
            f"{t.name}: deals lost {sorted(set(t.deals) - set(stored_deals))[:5]}, "
            f"unexpected {sorted(set(stored_deals) - set(t.deals))[:5]}"
        )
        wrong_deals = {k: (v, stored_deals[k]) for k, v in t.deals.items() if stored_deals[k] != v}
        assert not wrong_deals, (
            f"{t.name}: {len(wrong_deals)} deals differ from their last acknowledged push "
            f"(expected, stored): {list(wrong_deals.items())[:3]}"
        )

        acts = [
            r[0]
            for r in cluster.sql(
                "SELECT external_activity_id FROM activities WHERE workspace_id = %s",
                (t.ws_id,),
            )
        ]
        assert len(set(acts)) == len(acts), f"{t.name}: an activity is stored twice"
        assert set(acts) == t.activities, (
            f"{t.name}: activities lost {sorted(t.activities - set(acts))[:5]}, "
            f"unexpected {sorted(set(acts) - t.activities)[:5]}"
        )

    # Collector: every acknowledged event is stored once (the API processes flush their
    # buffers every collector_flush_ms), and every page event of a known visitor is one
    # website signal.
    for t in tenants:

        def stored_events(t: Tenant = t) -> list[str]:
            return [
                r[0]
                for r in cluster.sql(
                    "SELECT message_id FROM web_events WHERE workspace_id = %s", (t.ws_id,)
                )
            ]

        def all_stored(t: Tenant = t) -> bool:
            return t.events_acked <= set(stored_events(t))

        wait_until(
            f"the collector to store the {len(t.events_acked)} acknowledged events of {t.name}",
            all_stored,
            30,
        )
        events = stored_events(t)
        assert len(events) == len(set(events)), (
            f"{t.name}: {len(events) - len(set(events))} web events stored twice"
        )
        assert set(events) <= t.events_sent, (
            f"{t.name}: stored web events nobody sent: {sorted(set(events) - t.events_sent)[:5]}"
        )
        keys = [
            r[0]
            for r in cluster.sql(
                "SELECT natural_key FROM signals WHERE workspace_id = %s AND source = 'website'",
                (t.ws_id,),
            )
        ]
        assert len(keys) == len(set(keys)), f"{t.name}: a website signal is stored twice"
        want = {"msg:" + m for m in t.pages_sent & set(events)}
        assert set(keys) == want, (
            f"{t.name}: website signals lost {sorted(want - set(keys))[:5]}, "
            f"unexpected {sorted(set(keys) - want)[:5]} ({len(keys)} stored, {len(want)} pages)"
        )

    # Every delta-syncing client ends with the database's state after one more delta sync.
    for t in tenants:
        http = Http(t.key, urls, record)
        truth, _ = walk_accounts(http)
        db_ids = {
            r[0] for r in cluster.sql("SELECT id FROM accounts WHERE workspace_id = %s", (t.ws_id,))
        }
        assert set(truth) == db_ids, f"{t.name}: a full walk does not list the database's accounts"
        for i, replica in enumerate(t.replicas):
            assert replica.syncs >= 2, f"{t.name} syncer {i} synced only {replica.syncs} times"
            replica.sync(http)
            missing = sorted(set(truth) - set(replica.items))
            assert not missing, (
                f"{t.name} syncer {i}: {len(missing)} accounts never reached the replica "
                f"after {replica.syncs} delta syncs, e.g. {missing[:5]}"
            )
            stale = [a for a in truth if replica.items[a] != truth[a]]
            assert not stale, (
                f"{t.name} syncer {i}: {len(stale)} accounts differ from the database after "
                f"{replica.syncs} delta syncs; first (replica, database): "
                f"{replica.items[stale[0]]} != {truth[stale[0]]}"
            )
            assert set(replica.items) == set(truth), f"{t.name} syncer {i}: extra accounts"

    # No scheduled job ran twice: one jobs_ticks row per (task, slot), the per-minute
    # rescoring recorded for the minute inside the load, and no two scheduled scoring runs
    # of one workspace and kind overlapping in time.
    doubled = cluster.sql(
        "SELECT task, slot, count(*) FROM jobs_ticks GROUP BY task, slot HAVING count(*) > 1"
    )
    assert not doubled, f"periodic slots run more than once: {doubled}"
    ticks = cluster.sql(
        "SELECT task, slot FROM jobs_ticks WHERE task LIKE %s AND slot BETWEEN %s AND %s",
        ("%rescore_touched_accounts%", load_started_us // 10**6 - 60, load_ended_us // 10**6),
    )
    assert ticks, (
        "jobs_ticks holds no row for rescore_touched_accounts in the minute of the load: "
        "periodic tasks do not claim their slot (once per schedule is not in place); "
        f"jobs_ticks holds {cluster.sql('SELECT task, slot FROM jobs_ticks')[:10]}"
    )
    # ... and each claimed slot ran in exactly one worker (each logs the slots it runs).
    logged = Counter(
        (m[1], int(m[2])) for w in workers for m in PERIODIC_LINE.finditer(w.tail(10**7))
    )
    claimed = Counter((r[0], int(r[1])) for r in cluster.sql("SELECT task, slot FROM jobs_ticks"))
    assert logged == claimed, (
        "periodic slots claimed in jobs_ticks and slots the workers logged as run there "
        f"differ: claimed not logged {sorted(claimed - logged)[:5]}, logged not claimed or "
        f"twice {sorted(logged - claimed)[:5]}"
    )
    runs = scheduled_runs()
    assert all(r[3] == "done" for r in runs), f"scheduled scoring runs not done: {runs}"
    api_runs = cluster.sql(
        "SELECT id, status FROM scoring_runs WHERE id = ANY(%s)", (sorted(load.api_runs),)
    )
    assert load.api_runs and all(r[1] == "done" for r in api_runs), (
        f"scoring runs started through the API: {api_runs}"
    )
    for prev, nxt in itertools.pairwise(runs):
        if (prev[0], prev[2]) == (nxt[0], nxt[2]):
            assert prev[5] <= nxt[4], (
                f"two scheduled {prev[2]} scoring runs of workspace {prev[0]} overlap: "
                f"{prev[1]} ran {prev[4]}..{prev[5]}, {nxt[1]} started {nxt[4]}"
            )

    # The answers: none was a 5xx other than 503.
    assert not record.failures, (
        f"{len(record.failures)} answers were 5xx other than 503: {record.failures[:5]}"
    )
    assert record.statuses[200] > 0, record.statuses
    print(
        f"mixed load {LOAD_S:.0f} s: answers {dict(record.statuses)}; "
        + "; ".join(
            f"{t.name}: {len(t.accounts)} accounts, {len(t.deals)} deals, "
            f"{len(t.activities)} activities, {len(t.events_acked)} events, "
            f"syncs {[r.syncs for r in t.replicas]}"
            for t in tenants
        )
        + f"; scoring runs {len(runs)} scheduled, {len(load.api_runs)} via the API; "
        + ", ".join(f"{b[0]} {b[1] - a[1]:.1f} s" for a, b in itertools.pairwise(phases))
        + f", checks {time.monotonic() - phases[-1][1]:.1f} s; "
        + f"first 503s: {record.unavailable[:3]}"
    )
