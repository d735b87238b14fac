"""`kill -9` in the middle of work (issue 8): a worker during a scoring run, an API process
during a bulk push. After a restart the work completes and the data is consistent."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.scale.conftest import Cluster, Http, Record, envelope_data, wait_until

# (a) Enough accounts with signals that a full scoring run lasts a few seconds here.
SEED_ACCOUNTS = 6000
# The test's workers hold a scoring claim this long (production: minutes), so the claim
# of the killed worker lapses within the test.
CLAIM_HOLD_S = 8.0
RECOVERY_S = 90.0

# (b) Pushes of 100 accounts, this many in flight at once, and how many answers come
# back before the API process is killed.
PUSHES = 60
IN_FLIGHT = 8
KILL_AFTER_ANSWERS = 12
ANSWER_DROPPED = 3
# A request that claimed an Idempotency-Key in a process that died holds the key this
# long (the setting's minimum) before another process may run it.
IDEMPOTENCY_STALE_S = "5"

SCORES = (
    "rtp_account_score, rtp_website_intent_score, rtp_bombora_intent_score, "
    "rtp_g2_intent_score, rtp_advertising_activity_score, rtp_journey_stage"
)


def scores(cluster: Cluster, ws: int) -> dict[str, tuple[Any, ...]]:
    rows = cluster.sql(f"SELECT id, {SCORES} FROM accounts WHERE workspace_id = %s", (ws,))
    return {r[0]: tuple(r[1:]) for r in rows}


def runs(cluster: Cluster, ws: int) -> list[tuple[Any, ...]]:
    return cluster.sql(
        "SELECT id, kind, status, started_at, finished_at, scored FROM scoring_runs "
        "WHERE workspace_id = %s ORDER BY started_at",
        (ws,),
    )


def test_kill_worker_during_scoring_run(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    api = cluster.api(wait=False)
    name = f"kill-{uuid.uuid4().hex[:10]}"
    key = cluster.key(name)
    ws = cluster.workspace_id(name)
    api.wait_healthy()
    record = Record()
    http = Http(key, [api.url], record, timeout=120)
    tag = uuid.uuid4().hex[:6]
    domains = [f"k{n}-{tag}.example.com" for n in range(SEED_ACCOUNTS)]
    for i in range(0, SEED_ACCOUNTS, 100):
        body = {"accounts": [{"domain": d, "name": d} for d in domains[i : i + 100]]}
        results = envelope_data(http.call("POST", "/api/v1/accounts", json=body))["results"]
        assert all(r["status"] == "created" for r in results), results
    day = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
    for i in range(0, SEED_ACCOUNTS, 1000):
        signals = [
            {"domain": d, "source": "bombora", "type": "surge", "topic": "crm",
             "occurredAt": day, "value": 40 + n % 50, "id": f"s-{d}"}
            for n, d in enumerate(domains[i : i + 1000], start=i)
        ]  # fmt: skip
        results = envelope_data(http.call("POST", "/api/v1/signals", json={"signals": signals}))
        assert all(r["status"] == "created" for r in results["results"]), results

    worker = cluster.worker(claim_hold_s=CLAIM_HOLD_S)
    cluster.enqueue("rescore_touched_accounts")  # as the per-minute schedule does

    def started() -> list[tuple[Any, ...]]:
        assert worker.alive(), f"{worker.name} exited:\n{worker.tail()}"
        return [r for r in runs(cluster, ws) if r[2] == "running"]

    running = wait_until(
        f"a scoring run of workspace {ws} to start in {worker.name}", started, 60, interval=0.05
    )
    time.sleep(0.5)  # well inside the run: the first batch is being scored
    worker.kill9()
    killed = {r[0]: r for r in runs(cluster, ws)}[running[0][0]]
    assert killed[2] == "running", (
        f"the run finished before the kill ({killed}); seed more than {SEED_ACCOUNTS} accounts"
    )
    killed_at_us = time.time_ns() // 1000

    # A new worker takes the work over once the dead worker's claim lapses, as the next
    # firing of the schedule would ask it to.
    replacement = cluster.worker(claim_hold_s=CLAIM_HOLD_S)
    held = cluster.sql("SELECT kind, held_until FROM scoring_claims WHERE workspace_id = %s", (ws,))
    lapse_us = max((int(h[1]) for h in held), default=0)
    assert lapse_us <= killed_at_us + (CLAIM_HOLD_S + 5) * 10**6, (
        f"the killed worker's claims {held} outlast the configured hold of {CLAIM_HOLD_S} s"
    )
    time.sleep(max(0.0, (lapse_us - time.time_ns() // 1000) / 1e6) + 0.5)
    cluster.enqueue("rescore_touched_accounts")

    def recovered() -> list[tuple[Any, ...]]:
        assert replacement.alive(), f"{replacement.name} exited:\n{replacement.tail()}"
        return [r for r in runs(cluster, ws) if r[3] > killed_at_us and r[2] == "done" and r[5] > 0]

    done = wait_until(
        f"a scoring run after the kill to complete in {replacement.name} "
        f"(runs: {runs(cluster, ws)}; log:\n{replacement.tail()})",
        recovered,
        RECOVERY_S,
        interval=0.5,
    )
    assert replacement.alive(), replacement.tail()
    after = scores(cluster, ws)
    assert len(after) == SEED_ACCOUNTS
    unscored = [aid for aid, s in after.items() if not s[2]]
    assert not unscored, (
        f"{len(unscored)} accounts with bombora signals have no bombora score after the "
        f"recovered run {done[0]}, e.g. {unscored[:5]}"
    )

    # Consistent: a fresh full run finds nothing to change.
    full = envelope_data(http.call("POST", "/api/v1/scoring/runs", json={"full": True}))
    assert full["scored"] == SEED_ACCOUNTS, full
    assert full["changed"] == 0, (
        f"a fresh full run changed {full['changed']} accounts after the recovered run: the "
        "killed run left scores that a complete run would not"
    )
    assert scores(cluster, ws) == after
    assert not record.failures, record.failures[:5]
    stale = [r for r in runs(cluster, ws) if r[2] == "running"]
    print(f"killed run {killed[0]}; recovered by {done[0]}; still marked running: {stale}")


def send_unread(base: str, key: str, body: dict[str, Any], idempotency_key: str) -> socket.socket:
    """POST /api/v1/accounts on a raw connection whose answer is never read."""
    host, port = base.removeprefix("http://").split(":")
    # The bytes httpx sends for json=body: the re-send must be the same request.
    payload = httpx.Request("POST", base, json=body).content
    head = (
        f"POST /api/v1/accounts HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"X-Api-Key: {key}\r\nIdempotency-Key: {idempotency_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head.encode() + payload)
    return sock


def test_kill_api_during_bulk_push(make_cluster: Callable[..., Cluster]) -> None:
    t0 = time.monotonic()
    cluster = make_cluster(INTENTLY_IDEMPOTENCY_STALE_S=IDEMPOTENCY_STALE_S)
    victim = cluster.api(wait=False)
    survivor = cluster.api(wait=False)
    name = f"kill-{uuid.uuid4().hex[:10]}"
    key = cluster.key(name)
    ws = cluster.workspace_id(name)
    victim.wait_healthy()
    survivor.wait_healthy()
    record = Record()
    tag = uuid.uuid4().hex[:6]
    pushes = [
        {
            "accounts": [
                {
                    "domain": f"p{p}-{n}-{tag}.example.com",
                    "name": f"Company {p}-{n}",
                    "externalId": f"EXT-{tag}-{p}-{n}",
                    "tags": [f"push{p}"],
                }
                for n in range(100)
            ]
        }
        for p in range(PUSHES)
    ]
    keys = [uuid.uuid4().hex for _ in pushes]
    answers: dict[int, httpx.Response | None] = {}
    lock = threading.Lock()
    local = threading.local()

    def push(p: int) -> None:
        if not hasattr(local, "http"):
            local.http = Http(key, [victim.url], record, timeout=30)
        r = local.http.once(
            "POST", "/api/v1/accounts", json=pushes[p], headers={"Idempotency-Key": keys[p]}
        )
        with lock:
            answers[p] = r

    # A kill lands between a push's commit and its answer only by luck; so the first
    # pushes are sent on connections that never read their answer (as if the network
    # dropped it): the process does them, and dies with the answers unread.
    t_up = time.monotonic()
    unread = [send_unread(victim.url, key, pushes[p], keys[p]) for p in range(ANSWER_DROPPED)]
    for p in range(ANSWER_DROPPED):
        answers[p] = None
    wait_until(
        f"{victim.name} to do the {ANSWER_DROPPED} pushes whose answers go unread",
        lambda: (
            cluster.sql("SELECT count(*) FROM accounts WHERE workspace_id = %s", (ws,))[0][0]
            == ANSWER_DROPPED * 100
        ),
        60,
    )
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(push, p) for p in range(ANSWER_DROPPED, PUSHES)]
        wait_until(
            f"{KILL_AFTER_ANSWERS} answers from {victim.name}",
            lambda: sum(1 for r in answers.values() if r is not None) >= KILL_AFTER_ANSWERS,
            120,
            interval=0.01,
        )
        victim.kill9()
        for f in futures:
            f.result()
    for sock in unread:
        sock.close()

    t_killed = time.monotonic()
    lost = sorted(p for p, r in answers.items() if r is None)
    got = {p: r for p, r in answers.items() if r is not None}
    assert len(lost) > ANSWER_DROPPED, "every push was answered before the kill: too late"
    for p, r in got.items():
        results = envelope_data(r)["results"]
        assert [x["status"] for x in results] == ["created"] * 100, (p, results[:3])

    # Pushes the dead process had done (committed) though their answer was lost: the
    # re-send must replay them, not do them again.
    present = {
        r[0] for r in cluster.sql("SELECT domain FROM accounts WHERE workspace_id = %s", (ws,))
    }
    done_unanswered = [p for p in lost if pushes[p]["accounts"][0]["domain"] in present]
    assert len(done_unanswered) >= ANSWER_DROPPED, (done_unanswered, lost)

    # The client re-sends every push whose answer was lost, with the same key, to the
    # process that is still up: done once whether or not the dead process had done it.
    http = Http(key, [survivor.url], record, timeout=60)
    carried_out = []
    for p in lost:
        r = http.call(
            "POST", "/api/v1/accounts", json=pushes[p], idempotency_key=keys[p],
            bases=[survivor.url], deadline_s=60,
        )  # fmt: skip
        if r.status_code == 409 and "was carried out" in r.text:
            # Killed after its work committed, before its answer was stored: the server
            # says so rather than pushing again; the accounts are checked below.
            assert pushes[p]["accounts"][0]["domain"] in present, (p, r.text)
            carried_out.append(p)
            got[p] = r
            continue
        results = envelope_data(r)["results"]
        bad = [x for x in results if x["status"] != "created" or not x["rtp_aid"]]
        assert not bad, (
            f"push {p} re-sent with its Idempotency-Key after the kill: {len(bad)} items not "
            f"'created' (the first attempt's answer should be replayed), e.g. {bad[:2]}"
        )
        got[p] = r

    t_resent = time.monotonic()
    # The killed process comes back on its port and serves the same replayed answer.
    restarted = cluster.api(port=int(victim.url.rsplit(":", 1)[1]))
    again = Http(key, [restarted.url], record).call(
        "POST", "/api/v1/accounts", json=pushes[lost[0]], idempotency_key=keys[lost[0]],
        bases=[restarted.url],
    )  # fmt: skip
    first = got[lost[0]]
    assert again.status_code == first.status_code, (again.text, first.text)
    assert again.json()["data"] == first.json()["data"], (
        "the restarted process answered a replayed push differently"
    )

    rows = cluster.sql(
        "SELECT domain, id, name, external_id, tags FROM accounts WHERE workspace_id = %s",
        (ws,),
    )
    stored = {r[0]: r for r in rows}
    assert len(stored) == len(rows) == PUSHES * 100, (
        f"{len(rows)} account rows, {len(stored)} domains; {PUSHES * 100} were pushed"
    )
    for p, r in got.items():
        for item, res in zip(pushes[p]["accounts"], envelope_data(r)["results"], strict=True):
            row = stored.get(item["domain"])
            assert row is not None, f"push {p}: {item['domain']} was acknowledged but is missing"
            assert (row[1], row[2], row[3], row[4]) == (
                res["rtp_aid"], item["name"], item["externalId"], item["tags"]
            ), f"push {p}: stored {row} for {item} acknowledged as {res}"  # fmt: skip
    assert not record.failures, record.failures[:5]
    print(
        f"{len(lost)} of {PUSHES} pushes lost their answer and were re-sent "
        f"({len(done_unanswered)} of them done before the kill); "
        f"up {t_up - t0:.1f} s, push and kill {t_killed - t_up:.1f} s, "
        f"re-send {t_resent - t_killed:.1f} s, "
        f"restart and checks {time.monotonic() - t_resent:.1f} s"
    )
