"""Idempotency-Key on POST, PATCH and PUT (spec section 10): once within 24 h, then replayed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from intently.app import create_app
from intently.gate import idempotency
from intently.kit.timefmt import now_us
from intently.settings import Settings
from tests.support.api import Api, Workspace

HOUR_US = 3600 * 1_000_000


def push(api: Api, key: str | None, *domains: str, **extra: str) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    headers.update(extra)
    body = {"accounts": [{"domain": d, "name": d.split(".")[0].title()} for d in domains]}
    return api.post("/accounts", json=body, headers=headers)


def domain() -> str:
    return f"idem-{uuid.uuid4().hex[:10]}.example"


def stored_keys(engine: Any, ws: int) -> list[tuple[str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT key, status FROM idempotency_keys WHERE workspace_id = :ws ORDER BY key"),
            {"ws": ws},
        )
        return [(r[0], r[1]) for r in rows]


class TestReplay:
    def test_the_same_request_again_gets_the_first_answer(self, api: Api) -> None:
        key, d = str(uuid.uuid4()), domain()
        first = push(api, key, d)
        assert first.status_code == 200
        assert first.json()["data"]["results"][0]["status"] == "created"
        again = push(api, key, d)
        # Not "already exists": the push did not run again.
        assert again.status_code == 200 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"] == "application/json"
        assert "ratelimit-remaining" in again.headers
        assert "idempotent-replayed" not in first.headers
        # Without a key the same push does run, and finds the account.
        plain = push(api, None, d)
        assert plain.json()["data"]["results"][0]["status"] == "failed"

    def test_patch_and_put(self, api: Api, workspace: Workspace) -> None:
        d = domain()
        aid = push(api, None, d).json()["data"]["results"][0]["rtp_aid"]
        key = str(uuid.uuid4())
        body = {"mappings": [{"domain": d, "externalId": "crm-1"}]}
        first = api.patch("/accounts/external-ids", json=body, headers={"Idempotency-Key": key})
        again = api.patch("/accounts/external-ids", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 200 and again.content == first.content
        put_key = str(uuid.uuid4())
        put = {"customFields": {}}
        one = api.put(f"/accounts/{aid}", json=put, headers={"Idempotency-Key": put_key})
        two = api.put(f"/accounts/{aid}", json=put, headers={"Idempotency-Key": put_key})
        assert one.status_code == 200, one.text
        assert two.content == one.content and two.headers["idempotent-replayed"] == "true"

    def test_a_client_error_is_an_answer_too(self, api: Api) -> None:
        """A 400 is the outcome of that request: replayed, and a fixed body needs a new key."""
        key = str(uuid.uuid4())
        bad = api.post("/accounts", json={"accounts": []}, headers={"Idempotency-Key": key})
        assert bad.status_code == 400
        again = api.post("/accounts", json={"accounts": []}, headers={"Idempotency-Key": key})
        assert again.status_code == 400 and again.content == bad.content
        assert again.headers["idempotent-replayed"] == "true"
        fixed = push(api, key, domain())
        assert fixed.status_code == 422

    def test_keys_belong_to_a_workspace(self, api: Api, other: Workspace) -> None:
        key = str(uuid.uuid4())
        assert push(api, key, domain()).status_code == 200
        theirs = push(other.api, key, domain())
        assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
        assert theirs.json()["data"]["results"][0]["status"] == "created"


class TestRefusals:
    def test_the_same_key_with_another_body_is_422(self, api: Api) -> None:
        key = str(uuid.uuid4())
        assert push(api, key, domain()).status_code == 200
        r = push(api, key, domain())
        assert r.status_code == 422
        body = r.json()
        assert body["message"] == "Unprocessable Entity" and body["data"] is None
        assert body["customMessage"] == (
            f"Idempotency-Key '{key}' was already used with a different request; "
            "send a new key with a new request"
        )

    def test_the_same_key_on_another_path_is_422(self, api: Api) -> None:
        key, d = str(uuid.uuid4()), domain()
        assert push(api, key, d).status_code == 200
        body = {"accounts": [{"domain": d, "name": d.split(".")[0].title()}]}
        r = api.under("/api/v1/crm").post("/accounts", json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 422

    @pytest.mark.parametrize("bad", [b"", b"x" * 256, "caf\u00e9".encode(), b"a\tb"])
    def test_a_malformed_key_is_400(self, api: Api, bad: bytes) -> None:
        r = api.post(
            "/accounts",
            content=f'{{"accounts": [{{"domain": "{domain()}", "name": "A"}}]}}'.encode(),
            headers=[(b"Idempotency-Key", bad), (b"Content-Type", b"application/json")],
        )
        assert r.status_code == 400
        assert r.json()["customMessage"].startswith(
            "Idempotency-Key must be 1 to 255 printable ASCII characters"
        )

    def test_no_valid_api_key_stores_nothing(self, api: Api, workspace: Workspace, engine: Any):
        key, d = str(uuid.uuid4()), domain()
        r = push(api.with_key("wrong-" + uuid.uuid4().hex), key, d)
        assert r.status_code == 401 and r.json()["customMessage"] == "Invalid API key"
        assert push(api, key, d).json()["data"]["results"][0]["status"] == "created"

    def test_an_oversized_body_is_413(self, api: Api, app: Any) -> None:
        limit = app.state.intently.settings.max_body_bytes
        r = api.post(
            "/accounts",
            content=b'{"accounts": "' + b"x" * limit + b'"}',
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["message"] == "Payload Too Large"


class TestClaims:
    def test_a_request_still_running_makes_the_second_wait(
        self, api: Api, workspace: Workspace, engine: Any
    ) -> None:
        key, d = str(uuid.uuid4()), domain()
        body = {"accounts": [{"domain": d, "name": d.split(".")[0].title()}]}
        fp = idempotency.fingerprint("POST", "/api/v1/accounts", b"", _json_bytes(body))
        # Another process holds the key: it has claimed it and not answered yet.
        got = idempotency.claim(
            engine, workspace.id, key, fp, now=now_us(), ttl_us=24 * HOUR_US, stale_us=HOUR_US
        )
        assert got.verdict == "run"
        r = api.post(
            "/accounts",
            content=_json_bytes(body),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert r.status_code == 409 and r.headers["retry-after"] == "1"
        assert "still being processed" in r.json()["customMessage"]

    def test_a_new_key_inserted_meanwhile_by_another_process_decides(
        self, workspace: Workspace, engine: Any
    ) -> None:
        key, fp = str(uuid.uuid4()), "f" * 64
        kw: dict[str, Any] = {"ttl_us": 24 * HOUR_US, "stale_us": HOUR_US}
        got: list[idempotency.Claim] = []
        # Another process's claim of the same new key, not committed yet: this claim's read
        # does not see it, and its insert waits on it (PostgreSQL), or its transaction
        # waits to begin (SQLite); either way the other row decides once committed.
        with engine.connect() as conn, conn.begin():
            conn.execute(
                text(
                    "INSERT INTO idempotency_keys (workspace_id, key, fingerprint, created_at, "
                    "claimed_until) VALUES (:ws, :key, :fp, :now, :until)"
                ),
                {
                    "ws": workspace.id,
                    "key": key,
                    "fp": fp,
                    "now": now_us(),
                    "until": now_us() + HOUR_US,
                },
            )
            racer = threading.Thread(
                target=lambda: got.append(
                    idempotency.claim(engine, workspace.id, key, fp, now=now_us(), **kw)
                )
            )
            racer.start()
            time.sleep(0.3)
        racer.join(10)
        assert [c.verdict for c in got] == ["busy"]
        assert stored_keys(engine, workspace.id) == [(key, None)]

    def test_a_dead_processs_claim_lapses(
        self, api: Api, workspace: Workspace, engine: Any, app: Any
    ) -> None:
        key, d = str(uuid.uuid4()), domain()
        body = {"accounts": [{"domain": d, "name": d.split(".")[0].title()}]}
        fp = idempotency.fingerprint("POST", "/api/v1/accounts", b"", _json_bytes(body))
        stale_us = app.state.intently.settings.idempotency_stale_s * 1_000_000
        claimed = now_us() - stale_us - 1_000_000  # long enough ago
        idempotency.claim(
            engine, workspace.id, key, fp, now=claimed, ttl_us=24 * HOUR_US, stale_us=stale_us
        )
        r = api.post(
            "/accounts",
            content=_json_bytes(body),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert r.status_code == 200
        assert r.json()["data"]["results"][0]["status"] == "created"
        assert stored_keys(engine, workspace.id) == [(key, 200)]

    def test_after_the_time_kept_a_key_is_new_again(
        self, api: Api, workspace: Workspace, engine: Any
    ) -> None:
        key = str(uuid.uuid4())
        assert push(api, key, domain()).status_code == 200
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE idempotency_keys SET created_at = created_at - :age "
                    "WHERE workspace_id = :ws AND key = :key"
                ),
                {"age": 25 * HOUR_US, "ws": workspace.id, "key": key},
            )
        fresh = push(api, key, domain())  # another body, but the old use has expired
        assert fresh.status_code == 200 and "idempotent-replayed" not in fresh.headers
        assert idempotency.sweep(engine, now=now_us() + 25 * HOUR_US, ttl_us=24 * HOUR_US) >= 1
        assert stored_keys(engine, workspace.id) == []

    def test_a_server_error_is_not_kept(
        self, api: Api, workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 5xx says nothing of the work: the claim is dropped and a retry runs."""
        from intently.accounts import service

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        key, d = str(uuid.uuid4()), domain()
        monkeypatch.setattr(service, "push_accounts", broken)
        assert push(api, key, d).status_code == 500
        monkeypatch.undo()
        assert stored_keys(engine, workspace.id) == []
        r = push(api, key, d)
        assert r.status_code == 200 and r.json()["data"]["results"][0]["status"] == "created"


@pytest.fixture
def second_process(database_url: str) -> Iterator[Callable[[str], Api]]:
    """The same API served by an app with an engine of its own, as another process would."""
    c = TestClient(create_app(Settings(database_url=database_url)), raise_server_exceptions=False)
    yield lambda key: Api(c, key)
    c.close()


def test_another_process_replays_the_answer(
    workspace: Workspace, second_process: Callable[[str], Api]
) -> None:
    key, d = str(uuid.uuid4()), domain()
    first = push(workspace.api, key, d)
    again = push(second_process(workspace.key), key, d)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


def _claimed(engine: Any, key: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM idempotency_keys WHERE key = :key"), {"key": key}
        ).first()
    return found is not None


def _json_bytes(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


def test_a_long_request_keeps_its_claim(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that runs past the claim's hold renews it: a retry meanwhile waits (409)."""
    import threading

    from intently.accounts import service
    from intently.auth.service import generate_key

    real = service.push_accounts

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3.0)
        return real(*args, **kwargs)

    c = TestClient(
        create_app(Settings(database_url=database_url, idempotency_stale_s=2)),
        raise_server_exceptions=False,
    )
    engine = c.app.state.intently.engine  # type: ignore[attr-defined]
    api = Api(c, generate_key(engine, f"idem-{uuid.uuid4().hex[:10]}", "a@example.com"))
    key, d = str(uuid.uuid4()), domain()
    monkeypatch.setattr(service, "push_accounts", slow)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(push(api, key, d)))
    first.start()
    time.sleep(2.4)  # past the 2 s hold the claim started with
    monkeypatch.setattr(service, "push_accounts", real)
    meanwhile = push(api, key, d)
    first.join()
    c.close()
    assert meanwhile.status_code == 409, meanwhile.text
    assert answers[0].status_code == 200
    assert answers[0].json()["data"]["results"][0]["status"] == "created"


def test_work_committed_but_answer_lost_is_not_done_again(
    api: Api, workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process 'dies' after the push committed, before the answer was stored: the
    claim was marked in the push's own transaction, so a retry is told, not run again."""
    from intently.gate import middleware

    key, d = str(uuid.uuid4()), domain()

    def died(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")  # what a kill between commit and store leaves behind

    monkeypatch.setattr(middleware.idempotency, "complete", died)
    # This client did get the answer (it was sent before the store failed); a killed
    # process's client would not have: it retries below.
    assert push(api, key, d).status_code == 200
    monkeypatch.undo()
    assert stored_keys(engine, workspace.id) == [(key, idempotency.COMMITTED)]
    # Its claim lapses like any dead process's; then the retry learns what happened.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE idempotency_keys SET claimed_until = 0 WHERE workspace_id = :ws"),
            {"ws": workspace.id},
        )
    r = push(api, key, d)
    assert r.status_code == 409 and "retry-after" not in r.headers
    assert "was carried out" in r.json()["customMessage"]
    # The account was created once, by the first try.
    listed = api.get("/accounts", params={"domains": d}).json()["data"]["data"]
    assert len(listed) == 1


def test_a_failure_after_the_work_committed_is_not_run_again(
    api: Api, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 after the push committed: the retry must not push again."""
    from intently.accounts import endpoints

    real_ok = endpoints.ok

    def fails_after_work(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the answer could not be built")

    key, d = str(uuid.uuid4()), domain()
    monkeypatch.setattr(endpoints, "ok", fails_after_work)
    assert push(api, key, d).status_code == 500
    monkeypatch.setattr(endpoints, "ok", real_ok)
    r = push(api, key, d)
    assert r.status_code == 409 and "retry-after" not in r.headers
    # Said as it happened: no server stopped, the request failed after saving changes.
    message = r.json()["customMessage"]
    assert "was carried out" in message and "then failed with a server error" in message
    assert "stopped" not in message
    again = push(api, key, d)
    assert again.status_code == 409 and again.json()["customMessage"] == message


def test_a_scoring_run_that_failed_midway_runs_again_on_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scoring run recomputes, so it may be done again: a retry after it failed (here a
    deadlock, 503, after its first commits) runs it again instead of being told it was
    carried out."""
    from sqlalchemy.exc import OperationalError

    from intently import pipeline

    real = pipeline.run_scoring

    def deadlocked(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(pipeline, "run_scoring", real)
        real(*args, **kwargs)  # its writes commit, then a later statement fails
        raise OperationalError("UPDATE account_scores ...", {}, Exception("deadlock detected"))

    monkeypatch.setattr(pipeline, "run_scoring", deadlocked)
    key = str(uuid.uuid4())
    first = api.post("/scoring/runs", json={"full": True}, headers={"Idempotency-Key": key})
    assert first.status_code == 503, first.text
    retry = api.post("/scoring/runs", json={"full": True}, headers={"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert retry.json()["data"]["kind"] == "full"
    again = api.post("/scoring/runs", json={"full": True}, headers={"Idempotency-Key": key})
    assert again.content == retry.content and again.headers["idempotent-replayed"] == "true"


def test_a_starved_server_keeps_its_claim(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first server's event loop is starved (blocked) past the claim's hold while its
    request still runs: the claim is renewed all the same, so a retry on another process
    is told to wait (409, Retry-After), not run a second time or told the server stopped."""
    import threading

    from intently.accounts import service
    from intently.auth.service import generate_key

    real = service.push_accounts

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(4.0)
        return real(*args, **kwargs)

    settings = Settings(database_url=database_url, idempotency_stale_s=2)
    first_server = TestClient(create_app(settings), raise_server_exceptions=False)
    other_server = TestClient(create_app(settings), raise_server_exceptions=False)
    with first_server:
        engine = first_server.app.state.intently.engine  # type: ignore[attr-defined]
        key_ = generate_key(engine, f"idem-{uuid.uuid4().hex[:10]}", "a@example.com")
        key, d = str(uuid.uuid4()), domain()
        monkeypatch.setattr(service, "push_accounts", slow)
        answers: list[Any] = []
        first = threading.Thread(
            target=lambda: answers.append(push(Api(first_server, key_), key, d))
        )
        first.start()
        deadline = time.monotonic() + 30
        while not _claimed(engine, key):  # the first has claimed the key and runs
            assert time.monotonic() < deadline, "the first request never claimed its key"
            time.sleep(0.05)
        assert first_server.portal is not None
        starve = threading.Thread(target=first_server.portal.call, args=(time.sleep, 3.0))
        starve.start()
        time.sleep(2.6)  # past the 2 s hold the claim started with
        monkeypatch.setattr(service, "push_accounts", real)
        meanwhile = push(Api(other_server, key_), key, d)
        starve.join()
        first.join()
    other_server.close()
    assert meanwhile.status_code == 409, meanwhile.text
    assert meanwhile.headers["retry-after"] == "1"
    assert "still being processed" in meanwhile.json()["customMessage"]
    assert answers[0].status_code == 200
    assert answers[0].json()["data"]["results"][0]["status"] == "created"


def test_a_request_whose_claim_was_taken_over_saves_nothing(
    api: Api,
    workspace: Workspace,
    engine: Any,
    monkeypatch: pytest.MonkeyPatch,
    second_process: Callable[[str], Api],
) -> None:
    """Should a claim lapse anyway (a frozen process), the retry that takes it over owns
    it: the first request's work is refused at its commit, so the push runs once."""
    import threading

    from intently.accounts import service

    real = service.push_accounts
    key, d = str(uuid.uuid4()), domain()
    retried: list[Any] = []

    def taken_over_meanwhile(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(service, "push_accounts", real)
        # The claim lapses and a retry on another process takes it over and answers, all
        # while this runs.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE idempotency_keys SET claimed_until = 0 WHERE workspace_id = :ws"),
                {"ws": workspace.id},
            )
        # From a thread of its own: a thread starts with none of this request's context.
        retry = threading.Thread(
            target=lambda: retried.append(push(second_process(workspace.key), key, d))
        )
        retry.start()
        retry.join()
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "push_accounts", taken_over_meanwhile)
    first = push(api, key, d)
    assert retried[0].status_code == 200, retried[0].text
    assert retried[0].json()["data"]["results"][0]["status"] == "created"
    assert first.status_code == 409, first.text
    assert "a retry with the key took it over" in first.json()["customMessage"]
    assert "not saved" in first.json()["customMessage"]
    # The key's answer is the retry's, and the account exists once.
    again = push(api, key, d)
    assert again.content == retried[0].content and again.headers["idempotent-replayed"] == "true"
    listed = api.get("/accounts", params={"domains": d}).json()["data"]["data"]
    assert len(listed) == 1
