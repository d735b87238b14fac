"""The Python client against the real app (in-process) and against a flaky local server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.client import (
    AsyncClient,
    AuthError,
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    RateLimited,
    SyncState,
    ValidationError,
)
from tests.support.api import Workspace


def _client(app_client: TestClient, key: str, **kw: Any) -> Client:
    # The app in-process: the TestClient's own transport, no sockets.
    return Client("http://testserver/api/v1", key, transport=app_client._transport, **kw)


@pytest.fixture
def api(client: TestClient, workspace: Workspace) -> Iterator[Client]:
    with _client(client, workspace.key, backoff_s=0.01) as c:
        yield c


def _run(scenario: Any) -> Any:
    """asyncio.run in a thread of its own: the session's Playwright browser (tests/browser)
    keeps an event loop running in the test thread once started. The scenario's result."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def _accounts(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    return [{"domain": f"{prefix}{i}.example.com", "name": f"Co {i}"} for i in range(n)]


def test_bulk_push_splits_into_batches_and_keeps_every_result_in_order(api: Client) -> None:
    records = _accounts(250)
    records[7] = {"domain": "c3.example.com", "name": "dup"}  # same domain as record 3
    records[120] = {"domain": "not a domain", "name": "x"}  # a shape error: batch 2 refused
    results = api.push_accounts(records)
    assert [r.index for r in results] == list(range(250))
    assert results[7].status == "failed" and "already exists" in (results[7].reason or "")
    batch_two = results[100:200]
    assert all(r.status == "error" and isinstance(r.error, ValidationError) for r in batch_two)
    assert batch_two[0].error is not None and batch_two[0].error.errors  # per-field list
    assert all(r.ok for i, r in enumerate(results) if i != 7 and not 100 <= i < 200)
    assert results[0].data is not None and len(results[0].data["rtp_aid"]) == 24
    assert sum(1 for _ in api.iter_accounts()) == 250 - 1 - 100


def test_iter_accounts_walks_every_page_lazily(api: Client) -> None:
    api.push_accounts(_accounts(2500))
    seen = api.iter_accounts()
    first = next(seen)
    assert first["domain"].endswith(".example.com")
    rest = list(seen)
    ids = [first["rtp_aid"], *(a["rtp_aid"] for a in rest)]
    assert len(ids) == 2500 == len(set(ids))
    assert ids == sorted(ids)  # keyset order
    some = list(api.iter_accounts(domains=["c1.example.com", "https://www.C2.example.com/x"]))
    assert {a["domain"] for a in some} == {"c1.example.com", "c2.example.com"}


def test_delta_sync_returns_what_changed_and_the_timestamp_to_keep(api: Client) -> None:
    api.push_accounts(_accounts(30))
    state = SyncState()
    items, stamp = api.sync_accounts(state)
    assert len(items) == 30 and stamp
    state.sync_timestamp = stamp
    api.push_accounts([{"domain": "c5.example.com", "name": "Renamed"}], upsert=True)
    api.push_accounts([{"domain": "new.example.com", "name": "New"}])
    items, later = api.sync_accounts(state)
    assert {a["domain"] for a in items} == {"c5.example.com", "new.example.com"}
    assert later > stamp


def test_the_company_profile_passes_through_push_and_read(api: Client) -> None:
    profile = {
        "industry": "Retail",
        "employeeCount": 1200,
        "annualRevenue": 3.5e8,
        "country": "NL",
        "city": "Utrecht",
        "logoUrl": "https://shop.nl/logo.svg",
    }
    [created] = api.push_accounts([{"domain": "shop.nl", "name": "Shop", **profile}])
    assert created.status == "created"
    got = api.get_account((created.data or {})["rtp_aid"])
    assert {k: got[k] for k in profile} == profile
    # graded when created under the default fit model; no intent yet: digit 4
    assert got["rtp_fit_score"] > 0 and got["rtp_grade"].endswith("4")
    [moved] = api.push_accounts([{"domain": "shop.nl", "name": "Shop", "city": "Delft"}],
                                upsert=True)  # fmt: skip
    assert moved.status == "updated"
    [listed] = list(api.iter_accounts())
    assert {k: listed[k] for k in profile} == profile | {"city": "Delft"}
    # A wrong value comes back as the API's validation error, naming field and value.
    [refused] = api.push_accounts([{"domain": "x.nl", "name": "X", "country": "XX"}])
    assert refused.status == "error" and isinstance(refused.error, ValidationError)
    [error] = refused.error.errors
    assert error["property"] == "country"
    assert error["constraints"] == {
        "isISO31661Alpha2": 'country must be an ISO 3166-1 alpha-2 country code, not "XX"'
    }


def test_deals_activities_and_mappings_are_chunked(api: Client) -> None:
    api.push_accounts(_accounts(3))
    deals = [
        {"externalDealId": f"D{i}", "name": f"Deal {i}",
         "associatedAccounts": [{"domain": f"c{i % 3}.example.com"}]}
        for i in range(130)
    ]  # fmt: skip
    results = api.push_deals(deals)
    assert len(results) == 130 and all(r.status == "created" for r in results)
    activities = [
        {"externalActivityId": f"A{i}", "activityType": "email",
         "occurredAt": "2026-11-01T10:00:00.000Z", "domain": "c1.example.com",
         "ownerEmail": "rep@example.com", "contacts": [{"email": "cto@c1.example.com"}]}
        for i in range(120)
    ]  # fmt: skip
    results = api.push_activities(activities)
    assert [r.index for r in results] == list(range(120))
    assert all(r.status == "created" for r in results)
    mappings = [{"domain": f"c{i}.example.com", "externalId": f"X{i}"} for i in range(3)]
    mappings.append({"domain": "nobody.example.com", "externalId": "X9"})
    results = api.map_external_ids(mappings)
    assert [r.status for r in results] == ["matched"] * 3 + ["failed"]
    assert results[3].reason == "No account with domain 'nobody.example.com'"
    assert api.missing_external_ids() == []


def test_errors_carry_status_messages_and_path(client: TestClient, api: Client) -> None:
    with _client(client, "itly_wrong") as bad, pytest.raises(AuthError) as caught:
        bad.list_accounts()
    err = caught.value
    assert (err.status, err.message, err.path) == (401, "Unauthorized", "/api/v1/accounts")
    assert err.custom_message == "Invalid API key"
    with pytest.raises(NotFound) as missing:
        api.get_account("0" * 24)
    assert missing.value.custom_message == "Account '000000000000000000000000' not found"
    with pytest.raises(ValidationError) as shape:
        api.list_accounts(limit=5000)
    assert shape.value.errors[0]["property"] == "limit"


# ---- retries against a flaky server --------------------------------------------------------


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers from a script: "drop" closes the connection, a number is that status."""

    script: list[Any] = []
    seen: list[tuple[str, str | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.headers.get("Idempotency-Key")))
        step = type(self).script.pop(0) if type(self).script else 200
        if step == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = {"statusCode": step, "timestamp": "t", "path": "/api/v1/accounts"}
        if step == 200:
            body["data"] = {"data": [], "nextCursor": None, "hasNextPage": False,
                            "syncTimestamp": "s", "results": []}  # fmt: skip
        else:
            body |= {"message": "Too Many Requests" if step == 429 else "Error", "data": None}
        raw = json.dumps(body).encode()
        self.send_response(step)
        if step in (429, 409):  # 409 with Retry-After: an earlier try still runs
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()
    server.server_close()


def test_reads_are_retried_through_drops_429_and_503(flaky: str) -> None:
    _Flaky.script = ["drop", 429, 503, 200]
    with Client(flaky, "k", backoff_s=0.01) as c:
        assert c.list_accounts().items == []
    assert len(_Flaky.seen) == 4


def test_writes_are_retried_with_one_idempotency_key(flaky: str) -> None:
    _Flaky.script = [503, "drop", 200]
    with Client(flaky, "k", backoff_s=0.01) as c:
        assert c.push_accounts([{"domain": "a.com", "name": "A"}])[0].status == "error"
    keys = {key for _, key in _Flaky.seen}
    assert len(_Flaky.seen) == 3 and len(keys) == 1 and None not in keys


def test_a_write_still_running_on_the_server_is_waited_out(flaky: str) -> None:
    """An earlier try of a long write (a scoring run) still runs: its 409s with
    Retry-After are waited out by time, not counted against max_retries."""
    _Flaky.script = [503, *[409] * 8, 200]
    with Client(flaky, "k", backoff_s=0.01, max_retries=2) as c:
        assert c.request("POST", "accounts", json={"accounts": []})["results"] == []
    assert len(_Flaky.seen) == 10 and len({key for _, key in _Flaky.seen}) == 1
    _Flaky.script = [409] * 50
    with Client(flaky, "k", busy_timeout_s=0.2) as c, pytest.raises(Conflict):
        c.request("POST", "accounts", json={"accounts": []})


class _LosesFirstAnswer(httpx.BaseTransport):
    """Lets the first write reach the app and do its work, then loses the answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.lost = 0
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key"))
            if not self.lost:
                self.lost += 1
                response.read()
                raise httpx.ReadError("connection reset after the server answered")
        return response


def test_a_write_whose_answer_was_lost_runs_once(client: TestClient, workspace: Workspace) -> None:
    """The retry carries the same Idempotency-Key, so the server answers what it did the
    first time instead of pushing again (which would say the account already exists)."""
    lossy = _LosesFirstAnswer(client._transport)
    with Client("http://testserver/api/v1", workspace.key, transport=lossy, backoff_s=0.01) as c:
        results = c.push_accounts([{"domain": "lost-answer.example.com", "name": "L"}])
    assert lossy.lost == 1 and len(lossy.keys) == 2 and lossy.keys[0] == lossy.keys[1]
    assert results[0].status == "created", results[0].reason


def test_retries_end_and_the_last_error_is_raised(flaky: str) -> None:
    _Flaky.script = [429] * 10
    with Client(flaky, "k", backoff_s=0.01, max_retries=2) as c, pytest.raises(RateLimited) as e:
        c.list_accounts()
    assert e.value.retry_after == 0 and len(_Flaky.seen) == 3
    closed = Client("http://127.0.0.1:9/api/v1", "k", backoff_s=0.01, max_retries=1)
    with closed, pytest.raises(ConnectionFailed):
        closed.list_accounts()


def test_concurrent_batches_keep_the_input_order(live_server: Any) -> None:
    key = live_server.key()
    records = _accounts(450, prefix="k")
    records[260] = {"domain": "k250.example.com", "name": "dup"}  # same batch: fails alone
    records[310] = {"name": "no domain"}  # refuses batch 4 (300..399)
    with Client(f"{live_server.url}/api/v1", key, concurrency=3) as c:
        results = c.push_accounts(records)
        stored = {a["domain"]: a["rtp_aid"] for a in c.iter_accounts()}
    assert [r.index for r in results] == list(range(450))
    assert results[260].status == "failed"
    assert all(r.status == "error" for r in results[300:400])
    for i in (0, 99, 100, 299, 400, 449):
        assert results[i].status == "created"
        assert results[i].data is not None
        assert stored[records[i]["domain"]] == results[i].data["rtp_aid"]
    with pytest.raises(ValueError, match="concurrency should be 1 or more; got 0"):
        Client("http://x/api/v1", "k", concurrency=0)


# ---- AsyncClient -----------------------------------------------------------------------------


def test_async_client_through_asgi_transport(app: Any, workspace: Workspace) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(
            "http://testserver/api/v1", workspace.key, transport=transport, concurrency=2
        ) as api:
            records = _accounts(250, prefix="as")
            records[130] = {"domain": "as120.example.com", "name": "dup"}
            results = await api.push_accounts(records)
            assert [r.index for r in results] == list(range(250))
            assert results[130].status == "failed"
            assert sum(r.ok for r in results) == 249
            seen = [a["domain"] async for a in api.iter_accounts()]
            assert len(seen) == 249 == len(set(seen))
            items, stamp = await api.sync_accounts(SyncState())
            assert len(items) == 249 and stamp
            with pytest.raises(NotFound):
                await api.get_account("0" * 24)

    _run(scenario)


def test_async_client_retries_like_the_sync_one(flaky: str) -> None:
    _Flaky.script = ["drop", 429, 503, 200]

    async def scenario() -> None:
        async with AsyncClient(flaky, "k", backoff_s=0.01) as api:
            assert (await api.list_accounts()).items == []

    _run(scenario)
    assert len(_Flaky.seen) == 4


def test_extension_methods(api: Client) -> None:
    from datetime import UTC, datetime, timedelta

    (acme,) = [
        r.data["rtp_aid"]
        for r in api.push_accounts([{"domain": "acme.com", "name": "A"}])
        if r.data
    ]
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    signals = [
        {"domain": "acme.com", "source": "g2", "type": "pricing", "occurredAt": day, "id": f"s{i}"}
        for i in range(1200)
    ]
    results = api.push_signals(signals)
    assert len(results) == 1200 and all(r.ok for r in results)
    assert len(list(api.iter_account_signals(acme))) == 1200  # two pages of 1,000
    api.request("POST", "scoring/runs", json={"full": True})
    explained = api.account_score(acme)
    assert explained["rtp_aid"] == acme and explained["accountScore"] > 0
    assert api.account_history(acme)["days"]
    seg = api.create_segment("Hot", "static")
    sid = seg["segmentId"]
    api.add_segment_members(sid, domains=["acme.com"])
    assert [m["rtp_aid"] for m in api.iter_segment_members(sid)] == [acme]
    api.remove_segment_members(sid, rtp_aids=[acme])
    assert list(api.iter_segment_members(sid)) == []
    assert api.update_segment(sid, name="Hotter")["name"] == "Hotter"
    assert api.get_segment(sid)["name"] == "Hotter"
    assert {s["segmentId"] for s in api.list_segments()} >= {sid}
    kinds = {e["type"] for e in api.iter_events(rtp_aid=acme)}
    assert {"account.created", "segment.entered", "segment.exited"} <= kinds
    field = api.create_custom_field("Tier", "singleLineText")
    assert field["key"] == "TIER_C"
    assert [f["key"] for f in api.list_custom_fields()] == ["TIER_C"]
    api.delete_custom_field("TIER_C")
    assert api.list_custom_fields() == []
    # A key keeps the label's characters, `/`, `?` and `#` included.
    odd = api.create_custom_field("a/../b?c#d", "number")["key"]
    api.delete_custom_field(odd)
    assert api.list_custom_fields() == []


def test_async_extension_methods(app: Any, workspace: Workspace) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(
            "http://testserver/api/v1", workspace.key, transport=transport
        ) as api:
            (pushed,) = await api.push_accounts([{"domain": "acme.com", "name": "A"}])
            assert pushed.data is not None
            acme = pushed.data["rtp_aid"]
            day = "2026-11-20T10:00:00Z"
            sig = [{"domain": "acme.com", "source": "g2", "type": "pricing", "occurredAt": day,
                    "id": f"s{i}"} for i in range(5)]  # fmt: skip
            assert all(r.ok for r in await api.push_signals(sig))
            got = [s async for s in api.iter_pages(f"accounts/{acme}/signals")]
            assert len(got) == 5
            seg = await api.create_segment("Hot")
            await api.add_segment_members(seg["segmentId"], domains=["acme.com"])
            members = [m async for m in api.iter_pages(f"segments/{seg['segmentId']}/accounts")]
            assert [m["rtp_aid"] for m in members] == [acme]
            assert (await api.account_score(acme))["rtp_aid"] == acme
            assert (await api.create_custom_field("Tier", "number"))["key"] == "TIER_C"
            await api.delete_custom_field("TIER_C")
            assert await api.list_custom_fields() == []
            odd = (await api.create_custom_field("a/../b?c#d", "number"))["key"]
            await api.delete_custom_field(odd)
            assert await api.list_custom_fields() == []

    _run(scenario)


def test_both_clients_walk_the_same_lists(
    client: TestClient, app: Any, workspace: Workspace
) -> None:
    """An account's signals, a segment's members, the event log and any list by its path
    come out the same, page after page, from the sync client and the async one."""
    with _client(client, workspace.key) as api:
        (pushed,) = api.push_accounts([{"domain": "acme.com", "name": "A"}])
        assert pushed.data is not None
        acme = pushed.data["rtp_aid"]
        api.request("POST", "sources", json={"name": "events"})
        day = "2026-11-20T10:00:00Z"
        signals = [
            {"domain": "acme.com", "source": "g2", "type": "pricing", "occurredAt": day,
             "id": f"s{i}"}
            for i in range(1100)
        ]  # fmt: skip
        signals.append(
            {"domain": "acme.com", "source": "events", "type": "booth", "occurredAt": day}
        )
        assert all(r.ok for r in api.push_signals(signals))
        sid = api.create_segment("Hot")["segmentId"]
        api.add_segment_members(sid, domains=["acme.com"])
        walked = {
            "signals": list(api.iter_account_signals(acme)),
            "booth": list(api.iter_account_signals(acme, source="events")),
            "members": list(api.iter_segment_members(sid)),
            "entered": list(api.iter_events(types=["segment.entered"], rtp_aid=acme)),
            "g2": list(api.iter_pages(f"accounts/{acme}/signals", {"source": "g2"})),
        }
    assert len(walked["signals"]) == 1101  # two pages of 1,000
    assert [s["source"] for s in walked["booth"]] == ["events"]
    assert [m["rtp_aid"] for m in walked["members"]] == [acme]
    assert [e["type"] for e in walked["entered"]] == ["segment.entered"]
    assert len(walked["g2"]) == 1100 and {s["source"] for s in walked["g2"]} == {"g2"}

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(
            "http://testserver/api/v1", workspace.key, transport=transport
        ) as api:
            return {
                "signals": [s async for s in api.iter_account_signals(acme)],
                "booth": [s async for s in api.iter_account_signals(acme, source="events")],
                "members": [m async for m in api.iter_segment_members(sid)],
                "entered": [
                    e async for e in api.iter_events(types=["segment.entered"], rtp_aid=acme)
                ],
                "g2": [
                    s async for s in api.iter_pages(f"accounts/{acme}/signals", {"source": "g2"})
                ],
            }

    assert _run(scenario) == walked
