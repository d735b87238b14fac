"""Concurrent saves of a workspace's configuration: every request gets a real answer
(success, or 409 where a name is taken), never a 500, and the saves are serialised (the
versions handed out are all different).

On SQLite writers are serialised by the database, so these pass trivially there; the
PostgreSQL run (INTENTLY_TEST_DATABASE_URL) is the one that exercises the locking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.api import Api

THREADS = 8

STAGES = {
    "stages": [
        {"name": "Buying", "rule": {"field": "rtp_account_score", "op": "gte", "value": 70}},
        {"name": "Browsing"},
    ]
}


def at_once(n: int, call: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`call(i)` for i in 0..n-1, in n threads released together."""
    start = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        start.wait()
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def statuses(answers: list[httpx.Response]) -> list[int]:
    for r in answers:
        assert r.status_code < 500, r.text
    return [r.status_code for r in answers]


def test_concurrent_stage_list_saves_each_get_a_version(api: Api) -> None:
    answers = at_once(THREADS, lambda i: api.put("/stages", json=STAGES))
    assert statuses(answers) == [200] * THREADS
    versions = sorted(r.json()["data"]["version"] for r in answers)
    assert versions == list(range(1, THREADS + 1))
    assert api.get("/stages").json()["data"]["version"] == THREADS


def test_concurrent_scoring_model_saves_each_get_a_version(api: Api) -> None:
    model = api.get("/scoring/model").json()["data"]["model"]
    before = api.get("/scoring/model").json()["data"]["version"]
    answers = at_once(THREADS, lambda i: api.put("/scoring/model", json=model))
    assert statuses(answers) == [200] * THREADS
    after = api.get("/scoring/model").json()["data"]["version"]
    assert after == before + THREADS


def test_concurrent_threshold_saves(api: Api) -> None:
    def save(i: int) -> httpx.Response:
        body = {"thresholds": [{"score": "rtp_account_score", "value": 50 + i}]}
        return api.put("/score-thresholds", json=body)

    assert statuses(at_once(THREADS, save)) == [200] * THREADS
    [saved] = api.get("/score-thresholds").json()["data"]["thresholds"]
    assert 50 <= saved["value"] < 50 + THREADS


def test_concurrent_source_settings_saves(api: Api) -> None:
    def save(i: int) -> httpx.Response:
        return api.put("/sources/website/settings", json={"ipRetentionDays": i + 1})

    assert statuses(at_once(THREADS, save)) == [200] * THREADS
    got = api.get("/sources/website/settings").json()["data"]
    assert 1 <= got["ipRetentionDays"] <= THREADS


def test_concurrent_registrations_of_one_custom_source(api: Api) -> None:
    answers = at_once(THREADS, lambda i: api.post("/sources", json={"name": "webinars"}))
    assert sorted(statuses(answers)) == [200] * (THREADS - 1) + [201]


def test_concurrent_creations_of_one_custom_field(api: Api) -> None:
    body = {"label": "Tier", "labelType": "number"}
    answers = at_once(THREADS, lambda i: api.post("/accounts/custom-field", json=body))
    assert sorted(statuses(answers)) == [201] + [409] * (THREADS - 1)


def test_concurrent_segment_creations(api: Api) -> None:
    def create(i: int) -> httpx.Response:
        return api.post("/segments", json={"name": "Hot", "type": "static"})

    answers = at_once(THREADS, create)
    assert statuses(answers) == [201] * THREADS  # segment names need not be unique
    assert len({r.json()["data"]["segmentId"] for r in answers}) == THREADS


def test_concurrent_segment_patches(api: Api) -> None:
    r = api.post("/segments", json={"name": "Warm", "type": "static"})
    sid = r.json()["data"]["segmentId"]

    def patch(i: int) -> httpx.Response:
        return api.patch(f"/segments/{sid}", json={"name": f"Warm {i}"})

    assert statuses(at_once(THREADS, patch)) == [200] * THREADS


def test_concurrent_webhook_creations(api: Api) -> None:
    def create(i: int) -> httpx.Response:
        body: dict[str, Any] = {"url": f"https://example.com/hook/{i}", "eventTypes": ["*"]}
        return api.post("/webhooks", json=body)

    # Whether the address is accepted is the webhooks' own tests' business: no 500 here.
    statuses(at_once(THREADS, create))


def test_concurrent_member_additions_to_one_segment(api: Api) -> None:
    domains = [f"m{i}.com" for i in range(5)]
    r = api.post("/accounts", json={"accounts": [{"domain": d, "name": d} for d in domains]})
    assert r.status_code == 200, r.text
    r = api.post("/segments", json={"name": "Static", "type": "static"})
    sid = r.json()["data"]["segmentId"]

    def add(i: int) -> httpx.Response:
        return api.post(f"/segments/{sid}/accounts", json={"domains": domains})

    assert statuses(at_once(THREADS, add)) == [200] * THREADS
    got = api.get(f"/segments/{sid}/accounts").json()["data"]["data"]
    assert len(got) == 5


def test_concurrent_deactivations_of_one_custom_field(api: Api) -> None:
    api.post("/accounts/custom-field", json={"label": "Tier", "labelType": "number"})
    answers = at_once(THREADS, lambda i: api.delete("/accounts/custom-fields/TIER_C"))
    assert sorted(statuses(answers)) == [200] + [404] * (THREADS - 1)
