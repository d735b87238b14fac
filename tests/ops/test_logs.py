"""Structured logs: one JSON object a line with the request id, the X-Request-Id header on
every answer, one access line per request, and never a key or a write key in a log line."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.kit.logs import (
    ACCESS_LOGGER,
    QueueingHandler,
    clean_request_id,
    request_id_var,
)
from tests.ops.conftest import Server, new_workspace
from tests.support.api import Workspace


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the access logger writes during the test (read after the requests)."""
    stream = io.StringIO()
    handler = QueueingHandler("json", stream)
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def read() -> list[dict[str, Any]]:
        handler.close()  # writes what is queued
        return lines_of(stream)

    try:
        yield read
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def test_json_lines_carry_the_request_id_extras_and_errors() -> None:
    stream = io.StringIO()
    handler = QueueingHandler("json", stream)
    log = logging.getLogger(f"intently.test.{uuid.uuid4().hex[:6]}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    token = request_id_var.set("req-1")
    try:
        log.info("pushed %d accounts", 3, extra={"workspace": 7})
    finally:
        request_id_var.reset(token)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    handler.close()
    first, second = lines_of(stream)
    assert first["message"] == "pushed 3 accounts" and first["level"] == "INFO"
    assert first["request_id"] == "req-1" and first["workspace"] == 7
    assert first["logger"] == log.name and first["ts"].endswith("+00:00")
    assert "request_id" not in second and "ValueError: boom" in second["exc_info"]


def test_text_format_is_one_plain_line() -> None:
    stream = io.StringIO()
    handler = QueueingHandler("text", stream)
    log = logging.getLogger(f"intently.test.{uuid.uuid4().hex[:6]}")
    log.propagate = False
    log.addHandler(handler)
    token = request_id_var.set("abc")
    try:
        log.warning("slow", extra={"ms": 12})
    finally:
        request_id_var.reset(token)
    handler.close()
    [line] = stream.getvalue().splitlines()
    assert line.endswith(f"WARNING {log.name} [abc] slow ms=12")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"abc-123_X.y", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"has space", False),
        (b"semi;colon", False),
        (b"", False),
        (None, False),
    ],
)
def test_request_ids_are_kept_only_when_sane(sent: bytes | None, kept: bool) -> None:
    rid = clean_request_id(sent)
    if kept:
        assert sent is not None and rid == sent.decode()
    else:
        assert len(rid) == 32 and rid != (sent or b"").decode()


def test_every_answer_carries_the_request_id(client: TestClient, api: Any) -> None:
    r = api.get("/accounts", headers={"X-Request-Id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    generated = {
        api.with_key("wrong").get("/accounts").headers["x-request-id"],  # 401
        client.get("/no/such/path").headers["x-request-id"],  # 404
        client.post("/v1/batch", json={"batch": []}).headers["x-request-id"],  # collector 401
        client.get("/healthz", headers={"X-Request-Id": "x" * 129}).headers["x-request-id"],
    }
    assert len(generated) == 4 and all(len(g) == 32 for g in generated)


def test_access_line_per_request_without_query_or_keys(
    api: Any, workspace: Workspace, captured: Callable[[], list[dict[str, Any]]]
) -> None:
    r = api.get("/accounts?limit=5&search=secret-in-query", headers={"X-Request-Id": "acc-1"})
    assert r.status_code == 200
    r = api.with_key("not-a-key-zzz").get("/accounts")
    assert r.status_code == 401
    lines = captured()
    ours = [line for line in lines if line.get("request_id") == "acc-1"]
    [line] = ours
    assert line["logger"] == ACCESS_LOGGER and line["method"] == "GET"
    assert line["path"] == "/api/v1/accounts" and line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    text = json.dumps(lines)
    assert "secret-in-query" not in text
    assert workspace.key not in text and "not-a-key-zzz" not in text


def test_served_logs_are_json_and_hold_no_key(
    new_database: Callable[[], str], servers: Callable[..., Server]
) -> None:
    url = new_database()
    key, _, write_key = new_workspace(url)
    server = servers(url)
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    with httpx.Client(base_url=server.url) as c:
        r = c.post(
            "/api/v1/accounts",
            json={"accounts": [{"domain": "logged.example.com", "name": "L"}]},
            headers={"X-Api-Key": key, "X-Request-Id": "served-1"},
        )
        assert r.status_code == 200, r.text
        event = {"type": "page", "anonymousId": "a1", "writeKey": write_key}
        assert c.post("/v1/page", json=event).status_code == 200
        assert c.post("/v1/batch", json={"batch": [event]}, headers={"Authorization": auth})
        assert c.get(f"/t.js?k={write_key}").status_code == 200
        assert c.get("/api/v1/accounts", headers={"X-Api-Key": key + "x"}).status_code == 401
    assert server.terminate() == 0
    logs = server.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's, as JSON
    assert not any("color_message" in line for line in lines)  # no terminal codes
    [access] = [line for line in lines if line.get("request_id") == "served-1"]
    assert access["path"] == "/api/v1/accounts" and access["status"] == 200
    paths = [
        line["path"]
        for line in lines
        if line["logger"] == ACCESS_LOGGER and line["path"] != "/healthz"
    ]
    assert sorted(paths) == [
        "/api/v1/accounts",
        "/api/v1/accounts",
        "/t.js",
        "/v1/batch",
        "/v1/page",
    ]
    assert key not in logs and write_key not in logs and auth not in logs


def test_records_from_endpoint_threads_carry_the_request_id() -> None:
    """Sync endpoints run in a thread pool: the id must follow them there."""
    import anyio
    from starlette.concurrency import run_in_threadpool

    stream = io.StringIO()
    handler = QueueingHandler("json", stream)
    log = logging.getLogger(f"intently.test.{uuid.uuid4().hex[:6]}")
    log.propagate = False
    log.addHandler(handler)

    async def request() -> None:
        request_id_var.set("in-thread")
        await run_in_threadpool(log.warning, "from a worker thread")

    # In a thread of its own: the session's Playwright browser (tests/browser) keeps an
    # event loop running in the test thread once it has started.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, request).result()
    handler.close()
    [line] = lines_of(stream)
    assert line["request_id"] == "in-thread" and line["message"] == "from a worker thread"


def test_a_key_pasted_into_a_path_is_masked_in_the_access_line() -> None:
    from intently.kit.logs import masked

    assert masked("/api/v1/accounts/itly_Ab3-x_Yz9") == "/api/v1/accounts/itly_***"
    assert masked("/t.js/itlyw_k3y-9") == "/t.js/itly_***"
    assert masked("/api/v1/accounts/0123456789abcdef01234567") == (
        "/api/v1/accounts/0123456789abcdef01234567"
    )
