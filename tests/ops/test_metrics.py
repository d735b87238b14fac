"""GET /metrics in Prometheus text format: requests and latencies by route template, the
collector's accepted and written events, the job queue and the scoring runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from intently.app import create_app
from intently.ingest.endpoints import collector_of
from intently.ingest.writekeys import get_write_key
from intently.kit.jobs import make_huey
from intently.settings import Settings
from tests.ops.conftest import Server, new_workspace
from tests.support.api import Api, Workspace

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Any) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template(client: TestClient, api: Api) -> None:
    before = scrape(client)
    r = api.post("/accounts", json={"accounts": [{"domain": "metric.example.com", "name": "M"}]})
    assert r.status_code == 200, r.text
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    assert api.get(f"/accounts/{aid}").status_code == 200
    after = scrape(client)
    post = {"method": "POST", "route": "/api/v1/accounts", "status": "200"}
    assert value(after, "intently_http_requests_total", **post) == (
        value(before, "intently_http_requests_total", **post) + 1
    )
    one = {"route": "/api/v1/accounts/{rtp_aid}"}
    name = "intently_http_request_duration_seconds_count"
    assert value(after, name, **one) == value(before, name, **one) + 1
    # Label values are templates: no raw id, no query string reaches the output.
    text = client.get("/metrics").text
    assert aid not in text


def test_collector_events_accepted_and_written(
    client: TestClient, app: Any, engine: Any, workspace: Workspace
) -> None:
    collector = collector_of(app)
    collector.flush()  # others' events out of the way: the counts below are ours
    before = scrape(client)
    key = get_write_key(engine, workspace.id)
    events = [{"type": "page", "anonymousId": f"m-{i}", "writeKey": key} for i in range(7)]
    r = client.post("/v1/batch", json={"batch": events, "writeKey": key})
    assert r.status_code == 200, r.text
    middle = scrape(client)
    result = collector.flush()
    assert result.written == 7, result.errors
    after = scrape(client)
    accepted, written = (
        "intently_collector_events_accepted_total",
        "intently_collector_events_written_total",
    )
    assert value(middle, accepted) == value(before, accepted) + 7
    assert value(middle, written) == value(before, written)
    assert value(after, written) == value(before, written) + 7


def test_queue_depth_and_scoring_runs_are_read_from_the_database(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    key, _, _ = new_workspace(url)
    fresh = create_app(Settings(database_url=url))
    client = TestClient(fresh)
    first = scrape(client)
    assert value(first, "intently_database_up") == 1
    assert value(first, "intently_jobs_queued") == 0
    assert value(first, "intently_scoring_runs", kind="full", status="done") == 0

    huey = make_huey(url)

    @huey.task()
    def waiting() -> None:  # never run: no consumer here
        pass

    for _ in range(3):
        waiting()
    r = client.post("/api/v1/scoring/runs", json={"full": True}, headers={"X-Api-Key": key})
    assert r.status_code == 200, r.text
    then = scrape(client)
    assert value(then, "intently_jobs_queued") == 3
    assert value(then, "intently_scoring_runs", kind="full", status="done") == 1
    assert value(then, "intently_scoring_last_run_duration_seconds", kind="full") >= 0
    assert value(then, "intently_scoring_last_run_finished_timestamp_seconds", kind="full") > 1.7e9
    huey.storage.close()


def test_metrics_can_be_switched_off(database_url: str) -> None:
    off = TestClient(create_app(Settings(database_url=database_url, metrics=False)))
    r = off.get("/metrics")
    assert r.status_code == 404
    assert "x-request-id" in r.headers  # the rest of the operations layer stays


def test_server_processes_share_one_count(
    new_database: Callable[[], str], servers: Callable[..., Server], is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("--workers N is PostgreSQL's (SQLite refuses it: test_cli_guards.py)")
    url = new_database()
    server = servers(url, "--workers", "2", "--no-worker")
    for _ in range(20):  # a connection each, so both processes take some
        assert httpx.get(f"{server.url}/api/v1/accounts").status_code == 401
    labels = {"method": "GET", "route": "/api/v1/accounts", "status": "401"}
    for _ in range(8):
        with httpx.Client(base_url=server.url) as c:
            assert value(scrape(c), "intently_http_requests_total", **labels) == 20
    assert server.terminate() == 0
