"""Concurrency through a live server: delta sync never loses a change, concurrent pushes
neither lose an update nor duplicate an account, a batch the database refuses halfway
reports each item truthfully. Runs on SQLite and PostgreSQL like every test."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.server import LiveServer


def _client(live: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url + "/api/v1", headers={"X-Api-Key": key}, timeout=60)


def _walk(c: httpx.Client, last_sync: str | None) -> tuple[dict[str, dict[str, Any]], str]:
    """Walk every page; return the items seen and the walk's syncTimestamp."""
    seen: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"limit": 50}
    if last_sync is not None:
        params["lastSync"] = last_sync
    sync: str | None = None
    while True:
        r = c.get("/accounts", params=params)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        if sync is None:
            sync = page["syncTimestamp"]
        assert page["syncTimestamp"] == sync, "every page of one walk carries the same timestamp"
        for item in page["data"]:
            seen[item["rtp_aid"]] = item
        if not page["hasNextPage"]:
            assert page["nextCursor"] is None
            return seen, sync
        params = {"limit": 50, "cursor": page["nextCursor"]}


@pytest.mark.slow
def test_delta_sync_loses_no_change_under_concurrent_writes(live_server: LiveServer) -> None:
    key = live_server.key()
    stop = threading.Event()
    errors: list[str] = []
    tag = uuid.uuid4().hex[:8]

    def writer(wid: int) -> None:
        with _client(live_server, key) as c:
            n = 0
            while not stop.is_set():
                # New accounts, and renames of earlier ones, in batches of 20.
                batch = [
                    {
                        "domain": f"w{wid}-{(n + i) % 60}-{tag}.example.com",
                        "name": f"w{wid} v{n + i}",
                    }
                    for i in range(20)
                ]
                r = c.post("/accounts", json={"accounts": batch, "upsert": True})
                if r.status_code != 200:
                    errors.append(r.text)
                n += 20

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    with _client(live_server, key) as reader:
        view, sync = _walk(reader, None)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 4
        syncs = 0
        while time.monotonic() < deadline:
            changed, sync = _walk(reader, sync)
            view.update(changed)
            syncs += 1
        stop.set()
        for t in threads:
            t.join()
        changed, sync = _walk(reader, sync)
        view.update(changed)
        truth, _ = _walk(reader, None)
    assert not errors, errors[:3]
    assert syncs >= 1  # at least one delta walk ran while the writers wrote
    assert len(truth) == 3 * 60
    assert {k: v["name"] for k, v in view.items()} == {k: v["name"] for k, v in truth.items()}


@pytest.mark.slow
def test_concurrent_upserts_of_the_same_domains_lose_nothing(live_server: LiveServer) -> None:
    key = live_server.key()
    writers = 4
    domains = [f"same-{i}-{uuid.uuid4().hex[:6]}.example.com" for i in range(40)]
    with _client(live_server, key) as c:
        for w in range(writers):
            r = c.post("/accounts/custom-field", json={"label": f"W{w}", "labelType": "number"})
            assert r.status_code == 201, r.text
    results: list[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with _client(live_server, key) as c:
            for rnd in range(5):
                body = {
                    "upsert": True,
                    "accounts": [
                        {"domain": d, "name": f"n{w}", "customFields": {f"W{w}_C": rnd}}
                        for d in domains
                    ],
                }
                r = c.post("/accounts", json=body)
                assert r.status_code == 200, r.text
                with lock:
                    results.append(r.json()["data"]["results"])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [item["status"] for res in results for item in res]
    assert len(statuses) == writers * 5 * len(domains)
    assert statuses.count("created") == len(domains)
    assert statuses.count("failed") == 0
    with _client(live_server, key) as c:
        view, _ = _walk(c, None)
    assert sorted(v["domain"] for v in view.values()) == sorted(domains)
    for item in view.values():
        # Each writer's last value survives: no read-modify-write lost another's key.
        assert item["customFields"] == {f"W{w}_C": 4 for w in range(writers)}


@pytest.mark.slow
def test_concurrent_creates_of_one_domain_make_one_account(live_server: LiveServer) -> None:
    key = live_server.key()
    domain = f"race-{uuid.uuid4().hex[:8]}.example.com"
    statuses: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        with _client(live_server, key) as c:
            r = c.post("/accounts", json={"accounts": [{"domain": domain, "name": "Race"}]})
            assert r.status_code == 200, r.text
            with lock:
                statuses.append(r.json()["data"]["results"][0]["status"])

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["created"] + ["failed"] * 5


def _install_refusal(engine: Any, domain: str) -> str:
    """A trigger that makes the database refuse inserting one domain, as a constraint would."""
    name = "refuse_" + uuid.uuid4().hex[:8]
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON accounts "
                    f"WHEN NEW.domain = '{domain}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.domain = '{domain}' THEN RAISE EXCEPTION 'refused' "
                    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON accounts "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            )
    return name


def _drop_refusal(engine: Any, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(f"DROP TRIGGER {name}" + ("" if conn.dialect.name == "sqlite" else " ON accounts"))
        )
        if conn.dialect.name != "sqlite":
            conn.execute(text(f"DROP FUNCTION {name}()"))


def test_batch_refused_halfway_reports_each_item_truthfully(api: Any, engine: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    bad = f"refused-{tag}.example.com"
    name = _install_refusal(engine, bad)
    try:
        body = {
            "accounts": [
                {"domain": f"first-{tag}.example.com", "name": "First"},
                {"domain": bad, "name": "Refused"},
                {"domain": f"third-{tag}.example.com", "name": "Third"},
            ]
        }
        r = api.post("/accounts", json=body)
    finally:
        _drop_refusal(engine, name)
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [x["status"] for x in results] == ["created", "failed", "created"]
    assert results[1]["rtp_aid"] is None and bad in results[1]["reason"]
    listed = api.get("/accounts").json()["data"]["data"]
    assert sorted(a["domain"] for a in listed) == sorted(
        [f"first-{tag}.example.com", f"third-{tag}.example.com"]
    )
    assert {a["rtp_aid"] for a in listed} == {results[0]["rtp_aid"], results[2]["rtp_aid"]}


@pytest.mark.slow
def test_concurrent_pushes_of_the_same_deals_activities_and_values(live_server: LiveServer) -> None:
    """Same natural keys from several clients at once: no 500, no duplicate, no lost value."""
    key = live_server.key()
    tag = uuid.uuid4().hex[:6]
    with _client(live_server, key) as c:
        for w in range(4):
            c.post("/accounts/custom-field", json={"label": f"P{w}", "labelType": "number"})
        aid = c.post(
            "/accounts", json={"accounts": [{"domain": f"deal-{tag}.example.com", "name": "D"}]}
        ).json()["data"]["results"][0]["rtp_aid"]
    deal_statuses: list[str] = []
    activity_statuses: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with _client(live_server, key) as c:
            deals = {
                "deals": [
                    {
                        "externalDealId": f"D{i}-{tag}",
                        "name": f"Deal {i} by {w}",
                        "associatedAccounts": [{"domain": f"deal-{tag}.example.com"}],
                    }
                    for i in range(20)
                ]
            }
            activities = {
                "activities": [
                    {
                        "externalActivityId": f"A{i}-{tag}",
                        "activityType": "email",
                        "occurredAt": "2026-11-01T10:00:00Z",
                        "domain": f"deal-{tag}.example.com",
                        "ownerEmail": "rep@example.com",
                        "contacts": [{"email": f"c{i % 3}@deal-{tag}.example.com"}],
                    }
                    for i in range(20)
                ]
            }
            for path, body, sink, field in (
                ("/deals", deals, deal_statuses, "results"),
                ("/sales-activities", activities, activity_statuses, "results"),
            ):
                r = c.post(path, json=body)
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                with lock:
                    sink.extend(x["status"] for x in r.json()["data"][field])
            r = c.put(f"/accounts/{aid}", json={"customFields": {f"P{w}_C": w}})
            if r.status_code != 200:
                failures.append(r.text)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:2]
    assert sorted(deal_statuses) == sorted(["created"] * 20 + ["updated"] * 60)
    assert sorted(activity_statuses) == sorted(["created"] * 20 + ["failed"] * 60)
    with _client(live_server, key) as c:
        deals = c.get(f"/accounts/{aid}/deals").json()["data"]
        assert len(deals) == 20
        activities = c.get(f"/accounts/{aid}/activities").json()["data"]
        assert len(activities) == 20
        fields = c.get(f"/accounts/{aid}").json()["data"]["customFields"]
    assert {k: v for k, v in fields.items() if k.startswith("P")} == {
        f"P{w}_C": w for w in range(4)
    }
