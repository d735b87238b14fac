"""Rate limits: a token bucket per API key, per write key and per address without a key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.service import generate_key
from intently.gate.ratelimit import MemoryLimiter, Quota, decide
from intently.ingest.writekeys import get_write_key
from intently.settings import Settings
from tests.support.cli import intently

HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def limited(database_url: str) -> Iterator[Callable[..., TestClient]]:
    """An app of its own with the given settings; its clients are closed afterwards."""
    made: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        c = TestClient(
            create_app(Settings(database_url=database_url, **settings)),
            raise_server_exceptions=False,
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def new_key(client: TestClient, workspace: str | None = None) -> str:
    engine = client.app.state.intently.engine  # type: ignore[attr-defined]
    name = workspace or f"rl-{uuid.uuid4().hex[:12]}"
    return generate_key(engine, name, f"u-{uuid.uuid4().hex[:8]}@example.com")


def rate(r: Any) -> tuple[int, int, int]:
    return tuple(int(r.headers[h]) for h in HEADERS)  # type: ignore[return-value]


class TestHeaders:
    def test_on_every_kind_of_answer(self, limited: Callable[..., TestClient]) -> None:
        c = limited(rate_limit_per_minute=1, rate_limit_burst=50)  # no refill to speak of
        key = new_key(c)
        h = {"X-Api-Key": key}
        answers = [
            c.get("/api/v1/accounts", headers=h),  # 200
            c.get("/api/v1/accounts?limit=0", headers=h),  # 400 validation
            c.get("/api/v1/accounts/" + "a" * 24, headers=h),  # 404
            c.post("/api/v1/accounts", content=b"[", headers=h | {"Content-Type": "text/plain"}),
            c.get("/api/v1/crm/segments", headers=h),
        ]
        assert [r.status_code for r in answers] == [200, 400, 404, 415, 200]
        remaining = []
        for r in answers:
            limit, left, reset = rate(r)
            assert limit == 50
            assert 0 < reset <= 5 * 60  # a token a minute
            remaining.append(left)
        assert remaining == [49, 48, 47, 46, 45]

    def test_requests_without_a_valid_key_count_per_address(
        self, limited: Callable[..., TestClient]
    ) -> None:
        c = limited(rate_limit_anonymous_per_minute=60, rate_limit_anonymous_burst=2)
        wrong = {"X-Api-Key": "not-a-key-" + uuid.uuid4().hex}
        first = c.get("/api/v1/accounts", headers=wrong)
        assert first.status_code == 401 and rate(first)[:2] == (2, 1)
        assert c.get("/api/v1/accounts").status_code == 401  # no header at all: same address
        third = c.get("/api/v1/accounts", headers=wrong)
        assert third.status_code == 429
        assert third.json()["message"] == "Too Many Requests"
        assert "without a valid API key" in third.json()["customMessage"]
        assert int(third.headers["retry-after"]) >= 1
        # A valid key is not held back by the address's failures.
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": new_key(c)}).status_code == 200

    def test_off_means_no_headers(self, limited: Callable[..., TestClient]) -> None:
        c = limited(rate_limit_per_minute=0)
        r = c.get("/api/v1/accounts", headers={"X-Api-Key": new_key(c)})
        assert r.status_code == 200
        assert not any(h in r.headers for h in HEADERS)


class TestLimit:
    def test_429_in_the_envelope_with_retry_after(self, limited: Callable[..., TestClient]) -> None:
        c = limited(rate_limit_per_minute=60, rate_limit_burst=3)
        h = {"X-Api-Key": new_key(c)}
        statuses = [c.get("/api/v1/accounts", headers=h).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        r = c.get("/api/v1/accounts", headers=h)
        assert r.status_code == 429
        body = r.json()
        assert body["statusCode"] == 429 and body["path"] == "/api/v1/accounts"
        assert body["message"] == "Too Many Requests" and body["data"] is None
        assert body["customMessage"].startswith("Rate limit exceeded for this API key: 60")
        assert r.headers["retry-after"] == "1"  # one token a second
        assert rate(r) == (3, 0, 3)
        # Writes are refused before anything is read or written.
        pushed = c.post(
            "/api/v1/accounts",
            json={"accounts": [{"domain": "never-written.example", "name": "N"}]},
            headers=h,
        )
        assert pushed.status_code == 429
        other = {"X-Api-Key": new_key(c)}  # another workspace's key has its own bucket
        assert c.get("/api/v1/accounts", headers=other).status_code == 200

    def test_the_bucket_refills(self, limited: Callable[..., TestClient]) -> None:
        c = limited(rate_limit_per_minute=1200, rate_limit_burst=1)  # a token each 50 ms
        h = {"X-Api-Key": new_key(c)}
        assert c.get("/api/v1/accounts", headers=h).status_code == 200
        assert c.get("/api/v1/accounts", headers=h).status_code == 429
        time.sleep(0.12)
        assert c.get("/api/v1/accounts", headers=h).status_code == 200

    def test_each_key_of_a_workspace_has_its_bucket(
        self, limited: Callable[..., TestClient]
    ) -> None:
        c = limited(rate_limit_per_minute=60, rate_limit_burst=1)
        name = f"rl-{uuid.uuid4().hex[:12]}"
        a, b = new_key(c, name), new_key(c, name)
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": a}).status_code == 200
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": a}).status_code == 429
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": b}).status_code == 200

    def test_more_keys_do_not_multiply_the_workspaces_limit(
        self, limited: Callable[..., TestClient]
    ) -> None:
        """Keys of one workspace draw from its bucket too (rate_limit_workspace_keys keys'
        worth): minting keys, one per user, does not buy more requests."""
        c = limited(rate_limit_per_minute=1, rate_limit_burst=2, rate_limit_workspace_keys=2)
        name = f"rl-{uuid.uuid4().hex[:12]}"
        keys = [new_key(c, name) for _ in range(5)]
        answers = [c.get("/api/v1/accounts", headers={"X-Api-Key": k}) for k in keys * 2]
        assert sum(r.status_code == 200 for r in answers) == 4  # 2 keys' worth of 2, not 10
        refused = next(r for r in answers if r.status_code == 429)
        assert (
            "this workspace's API keys together: 2 requests a minute, bursts of 4"
            in (refused.json()["customMessage"])
        )
        assert rate(refused)[:2] == (4, 0)
        # Another workspace is not held back.
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": new_key(c)}).status_code == 200

    def test_a_workspace_sets_its_own(
        self, limited: Callable[..., TestClient], database_url: str
    ) -> None:
        c = limited(rate_limit_per_minute=60, rate_limit_burst=1)
        name = f"rl-{uuid.uuid4().hex[:12]}"
        h = {"X-Api-Key": new_key(c, name)}
        done = intently(
            database_url,
            "workspaces",
            "rate-limit",
            "--workspace",
            name,
            "--per-minute",
            "6",
            "--burst",
            "5",
        )
        assert done.returncode == 0, done.stderr
        assert "6 requests a minute per API key, bursts of 5" in done.stdout
        answers = [c.get("/api/v1/accounts", headers=h) for _ in range(6)]
        assert [r.status_code for r in answers] == [200] * 5 + [429]
        assert rate(answers[0])[0] == 5
        off = intently(
            database_url, "workspaces", "rate-limit", "--workspace", name, "--per-minute", "0"
        )
        assert off.returncode == 0 and "no API rate limit" in off.stdout
        assert all(c.get("/api/v1/accounts", headers=h).status_code == 200 for _ in range(5))
        back = intently(database_url, "workspaces", "rate-limit", "--workspace", name, "--default")
        assert back.returncode == 0 and "default" in back.stdout
        codes = [c.get("/api/v1/accounts", headers=h).status_code for _ in range(3)]
        assert 429 in codes

    def test_the_cli_names_what_is_wrong(self, database_url: str) -> None:
        missing = intently(
            database_url,
            "workspaces",
            "rate-limit",
            "--workspace",
            "no-such-" + uuid.uuid4().hex,
            "--per-minute",
            "5",
        )
        assert missing.returncode == 2 and "not found" in missing.stderr
        neither = intently(database_url, "workspaces", "rate-limit", "--workspace", "x")
        assert neither.returncode == 2 and "--per-minute" in neither.stderr


def test_processes_share_a_bucket_on_postgresql(
    limited: Callable[..., TestClient], is_postgres: bool
) -> None:
    """Two apps with engines of their own stand for two processes: one bucket between them."""
    if not is_postgres:
        pytest.skip("on SQLite one process serves, and its buckets live in memory")
    first = limited(rate_limit_per_minute=60, rate_limit_burst=2)
    second = limited(rate_limit_per_minute=60, rate_limit_burst=2)
    h = {"X-Api-Key": new_key(first)}
    assert first.get("/api/v1/accounts", headers=h).status_code == 200
    r = second.get("/api/v1/accounts", headers=h)
    assert r.status_code == 200 and rate(r)[1] == 0
    assert first.get("/api/v1/accounts", headers=h).status_code == 429
    assert second.get("/api/v1/accounts", headers=h).status_code == 429


def test_the_collector_limits_each_write_key(limited: Callable[..., TestClient]) -> None:
    c = limited(rate_limit_collector_per_minute=60, rate_limit_collector_burst=2)
    engine = c.app.state.intently.engine  # type: ignore[attr-defined]
    name = f"rl-{uuid.uuid4().hex[:12]}"
    new_key(c, name)
    with engine.connect() as conn:
        from intently.auth.repository import workspace_id_by_name

        ws = workspace_id_by_name(conn, name)
    assert ws is not None
    write_key = get_write_key(engine, ws)
    event = {"type": "track", "event": "Clicked", "anonymousId": "a1", "writeKey": write_key}
    answers = [c.post("/v1/track", json=event) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert rate(answers[0])[:2] == (2, 1)
    assert answers[2].json()["success"] is False
    assert "write key" in answers[2].json()["message"]
    assert int(answers[2].headers["retry-after"]) >= 1


class TestBucketArithmetic:
    def test_take_refill_and_cap(self) -> None:
        now = [100.0]
        limiter = MemoryLimiter(clock=lambda: now[0])
        q = Quota(per_minute=60, burst=3)  # a token a second
        got = [limiter.take(1, "k", q) for _ in range(4)]
        assert [d.allowed for d in got] == [True, True, True, False]
        assert [d.remaining for d in got] == [2, 1, 0, 0]
        assert got[3].retry_after_s == 1 and got[3].reset_s == 3
        now[0] += 1.5
        d = limiter.take(1, "k", q)
        assert d.allowed and d.remaining == 0  # 1.5 refilled, one taken
        now[0] += 3600
        d = limiter.take(1, "k", q)
        assert d.allowed and d.remaining == 2  # never above the burst
        assert limiter.take(2, "k", q).remaining == 2  # another workspace, another bucket

    def test_decision_texts(self) -> None:
        q = Quota(per_minute=6, burst=10)  # a token each 10 s
        d = decide(q, 0.25, False)
        assert (d.limit, d.remaining, d.retry_after_s, d.reset_s) == (10, 0, 8, 98)
        names = [n for n, _ in d.headers()]
        assert names == [
            b"ratelimit-limit",
            b"ratelimit-remaining",
            b"ratelimit-reset",
            b"retry-after",
        ]
        assert b"retry-after" not in [n for n, _ in decide(q, 5.0, True).headers()]


def test_idle_buckets_are_deleted_in_batches(engine: Any, is_postgres: bool) -> None:
    """rate_buckets holds a row per key, workspace and guessing address ever seen: the
    worker's hourly sweep deletes those idle an hour (full again, so nothing is lost)."""
    from sqlalchemy import text

    from intently.gate.ratelimit import DatabaseLimiter, sweep_buckets
    from intently.worker import huey, sweep_rate_buckets

    ws = 900_000 + uuid.uuid4().int % 100_000
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rate_buckets (workspace_id, bucket, tokens, updated_at) "
                "VALUES (:ws, :bucket, 1, :at)"
            ),
            [{"ws": ws, "bucket": f"addr:10.0.0.{n}", "at": now - 7200} for n in range(25)],
        )
    if is_postgres:  # a bucket in use, taken through the limiter itself
        DatabaseLimiter(engine).take(ws, "key:live", Quota(60, 5))
    else:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO rate_buckets (workspace_id, bucket, tokens, updated_at) "
                    "VALUES (:ws, 'key:live', 4, :at)"
                ),
                {"ws": ws, "at": now},
            )
    assert sweep_buckets(engine, now=now, idle_s=3600, batch=10) >= 25
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT bucket FROM rate_buckets WHERE workspace_id = :ws"), {"ws": ws}
        ).scalars()
        assert list(left) == ["key:live"]
    task = sweep_rate_buckets.task_class()
    assert task.name in {t.name for t in huey._registry.periodic_tasks}
