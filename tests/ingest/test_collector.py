"""The website collector: the Segment-compatible endpoints, write keys, the buffer and its
flushes, account resolution, website signals, IP retention and tenancy.

Requests go through the app (TestClient); the app's lifespan is not entered here, so no
flusher thread runs and each test writes the buffer itself with `Collector.flush()`.
What landed is read from the tables and through the API.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from netaddr import IPSet
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from intently.app import create_app
from intently.ingest import collector as collector_module
from intently.ingest.collector import BufferFull, Collector, page_topic, purge_ips
from intently.ingest.endpoints import collector_of
from intently.ingest.resolvers import upload_ranges
from intently.ingest.writekeys import (
    KEY_CACHE_SECONDS,
    WriteKeyCache,
    get_write_key,
    rotate_write_key,
)
from intently.kit.timefmt import US_PER_DAY, now_us, parse_iso8601
from intently.settings import Settings
from intently.signals.store import day_of
from tests.support.api import Workspace, new_workspace
from tests.support.cli import intently


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def event(kind: str = "page", **fields: Any) -> dict[str, Any]:
    """A Segment event; a page on `path` from `ip` unless told otherwise."""
    path = fields.pop("path", "/blog/hello")
    ip = fields.pop("ip", "198.51.100.7")
    e: dict[str, Any] = {
        "type": kind,
        "messageId": fields.pop("messageId", uuid.uuid4().hex),
        "anonymousId": fields.pop("anonymousId", "anon-" + uuid.uuid4().hex[:12]),
        "timestamp": fields.pop("timestamp", now_iso()),
        "context": {
            "ip": ip,
            "page": {"path": path, "url": "https://www.customer.example" + path, "title": "T"},
            "userAgent": "pytest",
        },
    }
    if ip is None:
        del e["context"]["ip"]
    e.update(fields)
    return e


@dataclass
class Site:
    """A workspace's website: its write key, and requests to the collector with it."""

    ws: Workspace
    key: str
    client: TestClient
    collector: Collector

    def post(self, path: str, body: Any, *, auth: bool = True, **headers: str) -> Any:
        h = basic(self.key) if auth else {}
        h.update(headers)
        return self.client.post(path, json=body, headers=h)

    def batch(self, *events: dict[str, Any], **headers: str) -> Any:
        return self.post("/v1/batch", {"batch": list(events)}, **headers)

    def send(self, *events: dict[str, Any]) -> None:
        r = self.batch(*events)
        assert r.status_code == 200, r.text
        assert r.json() == {"success": True}

    def flush(self) -> collector_module.FlushResult:
        result = self.collector.flush()
        assert not result.failed, result.errors
        return result


@pytest.fixture
def collector(app: Any) -> Collector:
    return collector_of(app)


@pytest.fixture
def site(workspace: Workspace, engine: Any, client: TestClient, collector: Collector) -> Site:
    return Site(workspace, get_write_key(engine, workspace.id), client, collector)


@pytest.fixture
def make_site(
    make_workspace: Callable[[], Workspace], engine: Any, client: TestClient, collector: Collector
) -> Callable[[], Site]:
    def make() -> Site:
        ws = make_workspace()
        return Site(ws, get_write_key(engine, ws.id), client, collector)

    return make


def web_events(engine: Any, ws: int, **where: Any) -> list[dict[str, Any]]:
    sql = "SELECT * FROM web_events WHERE workspace_id = :ws"
    for name in where:
        sql += f" AND {name} = :{name}"
    with engine.connect() as conn:
        rows = conn.execute(text(sql + " ORDER BY occurred_at, id"), {"ws": ws, **where})
        return [dict(r._mapping) for r in rows]


def signals(engine: Any, ws: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT * FROM signals WHERE workspace_id = :ws AND source = 'website' "
                "ORDER BY occurred_at, id"
            ),
            {"ws": ws},
        )
        return [dict(r._mapping) for r in rows]


def signal_of(engine: Any, ws: int, message_id: str) -> dict[str, Any] | None:
    found = [s for s in signals(engine, ws) if s["natural_key"] == "msg:" + message_id]
    return found[0] if found else None


def set_website(site: Site, **settings: Any) -> None:
    r = site.ws.api.put("/sources/website/settings", json=settings)
    assert r.status_code == 200, r.text
    site.collector._configs.pop(site.ws.id, None)  # the request path caches them for 5 s


def collector_runs(site: Site) -> list[dict[str, Any]]:
    r = site.ws.api.get("/ingest/runs", params={"source": "website"})
    assert r.status_code == 200, r.text
    return [run for run in r.json()["data"]["data"] if run["kind"] == "collector"]


def rejects(site: Site) -> list[dict[str, Any]]:
    r = site.ws.api.get("/ingest/rejects", params={"source": "website"})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def ranges_csv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / f"ranges-{uuid.uuid4().hex[:6]}.csv"
    path.write_text("network,domain,company\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- endpoints and auth --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "extra"),
    [
        ("/v1/page", "page", {}),
        ("/v1/track", "track", {"event": "Clicked"}),
        ("/v1/identify", "identify", {"traits": {"name": "Jo"}}),
        ("/v1/group", "group", {"groupId": "g1", "traits": {"name": "Org"}}),
        ("/v1/p", "page", {}),
        ("/v1/t", "track", {"event": "Clicked"}),
        ("/v1/i", "identify", {}),
        ("/v1/g", "group", {"groupId": "g2"}),
    ],
)
def test_each_call_is_accepted_and_stored_with_its_type(
    site: Site, engine: Any, path: str, kind: str, extra: dict[str, Any]
) -> None:
    e = event("page", **extra)
    del e["type"]  # the path says what it is
    r = site.post(path, e)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    assert site.flush().written == 1
    (row,) = web_events(engine, site.ws.id)
    assert row["type"] == kind and row["message_id"] == e["messageId"]
    assert row["anonymous_id"] == e["anonymousId"]
    if kind == "track":
        assert row["event"] == "Clicked"
    if kind == "page":
        assert row["path"] == "/blog/hello" and row["title"] == "T"
        assert row["url"] == "https://www.customer.example/blog/hello"


def test_write_key_in_the_body_is_accepted(site: Site, engine: Any) -> None:
    e = event()
    r = site.post("/v1/batch", {"writeKey": site.key, "batch": [e]}, auth=False)
    assert r.status_code == 200, r.text
    single = event()
    r = site.post("/v1/page", {**single, "writeKey": site.key}, auth=False)
    assert r.status_code == 200, r.text
    site.flush()
    assert {r["message_id"] for r in web_events(engine, site.ws.id)} == {
        e["messageId"],
        single["messageId"],
    }


def test_sendbeacon_text_plain_and_gzip_bodies(site: Site, client: TestClient, engine: Any) -> None:
    a, b = event(), event()
    r = client.post(
        "/v1/batch",
        content=json.dumps({"writeKey": site.key, "batch": [a]}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/batch",
        content=gzip.compress(json.dumps({"batch": [b]}).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **basic(site.key)},
    )
    assert r.status_code == 200, r.text
    site.flush()
    assert len(web_events(engine, site.ws.id)) == 2


def test_missing_wrong_and_malformed_keys_are_401(site: Site, client: TestClient) -> None:
    r = site.post("/v1/batch", {"batch": [event()]}, auth=False)
    assert r.status_code == 401
    assert r.json()["success"] is False
    assert "Missing write key" in r.json()["message"]
    r = client.post("/v1/batch", json={"batch": [event()]}, headers=basic("itlyw_nope"))
    assert r.status_code == 401 and "Invalid write key" in r.json()["message"]
    r = client.post(
        "/v1/track", json=event("track", event="x"), headers={"Authorization": "Bearer abc"}
    )
    assert r.status_code == 401 and "HTTP Basic" in r.json()["message"]
    r = client.post("/v1/page", json={**event(), "writeKey": "itlyw_wrong"})
    assert r.status_code == 401
    # An API key is not a write key.
    r = client.post("/v1/batch", json={"batch": [event()]}, headers=basic(site.ws.key))
    assert r.status_code == 401


def test_a_rotated_key_stops_working_and_the_new_one_works(
    site: Site, engine: Any, client: TestClient
) -> None:
    assert site.post("/v1/page", event()).status_code == 200
    old = site.key
    new = rotate_write_key(engine, site.ws.id)
    assert new != old and get_write_key(engine, site.ws.id) == new
    site.collector.keys.forget()  # instead of waiting out KEY_CACHE_SECONDS
    assert client.post("/v1/page", json=event(), headers=basic(old)).status_code == 401
    assert client.post("/v1/page", json=event(), headers=basic(new)).status_code == 200


def test_the_key_cache_forgets_a_rotated_key_after_its_ttl(site: Site, engine: Any) -> None:
    clock = [1000.0]
    cache = WriteKeyCache(engine, clock=lambda: clock[0])
    assert cache.lookup(site.key) == site.ws.id
    rotate_write_key(engine, site.ws.id)
    assert cache.lookup(site.key) == site.ws.id  # still cached
    clock[0] += KEY_CACHE_SECONDS + 0.01
    assert cache.lookup(site.key) is None
    assert cache.cached(site.key) == (True, None)  # bad keys are cached too


def test_one_active_key_per_workspace(site: Site, engine: Any) -> None:
    assert get_write_key(engine, site.ws.id) == site.key
    with engine.connect() as conn:
        active = conn.execute(
            text("SELECT count(*) FROM write_keys WHERE workspace_id = :ws AND revoked_at IS NULL"),
            {"ws": site.ws.id},
        ).scalar()
    assert active == 1


def test_cors_preflight_and_origin_echo(site: Site, client: TestClient) -> None:
    r = client.options(
        "/v1/batch",
        headers={
            "Origin": "https://www.customer.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://www.customer.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "authorization,content-type"
    r = site.batch(event(), Origin="https://shop.customer.example")
    assert r.headers["access-control-allow-origin"] == "https://shop.customer.example"
    r = site.post("/v1/page", event(), auth=False, Origin="https://x.example")
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == "https://x.example"


def test_website_endpoint_gives_the_key_and_snippet(site: Site, client: TestClient) -> None:
    r = site.ws.api.get("/website")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["writeKey"] == site.key
    assert data["snippet"] == f'<script async src="http://testserver/t.js?k={site.key}"></script>'
    assert client.get("/api/v1/website").status_code == 401


def test_a_new_workspace_gets_its_key_on_first_use(
    make_workspace: Callable[[], Workspace], engine: Any
) -> None:
    ws = make_workspace()
    key = ws.api.get("/website").json()["data"]["writeKey"]
    assert key.startswith("itlyw_") and get_write_key(engine, ws.id) == key


# ---- dedup, limits, malformed events ---------------------------------------------------------


def test_the_same_message_twice_is_one_event_and_one_signal(
    site: Site, engine: Any, tmp_path: Path
) -> None:
    upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "91.198.174.0/24,dedup-corp.com,Dedup"))
    e = event(ip="91.198.174.10")
    site.send(e, e)  # twice in one batch
    site.send(e)  # and again later, before the flush
    result = site.flush()
    assert result.written == 1 and result.duplicate == 2
    site.send(e)  # and after it
    assert site.flush().duplicate == 1
    assert len(web_events(engine, site.ws.id)) == 1
    (s,) = signals(engine, site.ws.id)
    assert s["natural_key"] == "msg:" + e["messageId"] and s["domain"] == "dedup-corp.com"
    (run,) = collector_runs(site)
    assert run["kind"] == "collector" and run["read"] == 4
    assert run["accepted"] == 1 and run["duplicate"] == 3


def test_a_message_without_id_gets_one(site: Site, engine: Any) -> None:
    e = event()
    del e["messageId"]
    site.send(e)
    site.flush()
    (row,) = web_events(engine, site.ws.id)
    assert row["message_id"].startswith("itly-")


def test_an_oversize_event_is_413_and_the_rest_of_the_batch_is_kept(
    site: Site, engine: Any
) -> None:
    big = event(properties={"blob": "x" * (33 * 1024)})
    ok1, ok2 = event(), event()
    r = site.batch(ok1, big, ok2)
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["success"] is False and body["accepted"] == 2
    (err,) = body["errors"]
    assert err["index"] == 1 and err["status"] == 413 and "32 KB" in err["message"]
    r = site.post("/v1/track", event("track", event="Big", properties={"b": "y" * 40_000}))
    assert r.status_code == 413
    site.flush()
    assert {r["message_id"] for r in web_events(engine, site.ws.id)} == {
        ok1["messageId"],
        ok2["messageId"],
    }
    # The batch's event is kept as a reject; a whole request over the limit is only refused.
    assert [r["reason"] for r in rejects(site)] == ["event_too_large"]


def test_an_oversize_batch_is_413_and_nothing_is_kept(site: Site, engine: Any) -> None:
    events = [event(properties={"pad": "z" * 20_000}) for _ in range(30)]  # ~600 KB
    r = site.batch(*events)
    assert r.status_code == 413
    assert "500 KB" in r.json()["message"]
    site.flush()
    assert web_events(engine, site.ws.id) == []


def test_malformed_events_are_400_naming_the_field_and_the_rest_is_kept(
    site: Site, engine: Any
) -> None:
    good = event()
    no_ids = event()
    del no_ids["anonymousId"]
    bad_ip = event(ip="999.1.1.1")
    r = site.batch(
        good,
        "not an event",
        event("checkout"),  # no Segment call type (screen and alias are: issue 16)
        event(timestamp="yesterday at noon"),
        no_ids,
        event(context={"ip": 42}),
        event("track"),  # no event name
        bad_ip,
        event(anonymousId="a" * 300),
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["accepted"] == 1
    errors = {e["index"]: e for e in body["errors"]}
    assert set(errors) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert all(e["status"] == 400 for e in errors.values())
    assert errors[1]["field"] == "event" and '"not an event"' in errors[1]["message"]
    assert errors[2]["field"] == "type" and '"checkout"' in errors[2]["message"]
    assert errors[3]["field"] == "timestamp" and "yesterday at noon" in errors[3]["message"]
    assert errors[4]["field"] == "userId" and "anonymousId" in errors[4]["message"]
    assert errors[5]["field"] == "context.ip" and "got 42" in errors[5]["message"]
    assert errors[6]["field"] == "event"
    assert errors[7]["field"] == "context.ip" and "999.1.1.1" in errors[7]["message"]
    assert errors[8]["field"] == "anonymousId"
    site.flush()
    assert [r["message_id"] for r in web_events(engine, site.ws.id)] == [good["messageId"]]
    found = rejects(site)
    assert len(found) == 8
    assert {r["reason"] for r in found} == {"invalid_event"}
    assert any("yesterday at noon" in r["detail"] for r in found)


def test_a_malformed_single_call_or_body(site: Site, client: TestClient) -> None:
    r = site.post("/v1/page", event(timestamp="2024-13-45T00:00:00Z"))
    assert r.status_code == 400
    assert r.json()["field"] == "timestamp" and "2024-13-45" in r.json()["message"]
    r = client.post(
        "/v1/batch", content=b"{not json", headers={**basic(site.key), "Content-Type": "text/plain"}
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = site.post("/v1/batch", {"events": []})
    assert r.status_code == 400 and "batch" in r.json()["message"]
    r = site.post("/v1/batch", {"batch": [event()], "sentAt": "soon"})
    assert r.status_code == 400 and "sentAt" in r.json()["message"]


def test_buffer_full_answers_503(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site.collector, "max_buffered", site.collector.pending)
    r = site.batch(event())
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    with pytest.raises(BufferFull):
        site.collector.accept(site.ws.id, [], [collector_module.Problem(0, 400, "x", "y", {})])


# ---- Do-Not-Track ----------------------------------------------------------------------------


def test_do_not_track_requests_are_answered_and_dropped(site: Site, engine: Any) -> None:
    assert site.batch(event(), DNT="1").json() == {"success": True}
    assert site.post("/v1/page", event(), **{"Sec-GPC": "1"}).status_code == 200
    site.flush()
    assert web_events(engine, site.ws.id) == []
    (run,) = collector_runs(site)
    assert run["skippedByReason"] == {"do_not_track": 2}

    set_website(site, respectDoNotTrack=False)
    assert site.batch(event(), DNT="1").status_code == 200
    site.flush()
    assert len(web_events(engine, site.ws.id)) == 1


# ---- resolution ------------------------------------------------------------------------------


def test_group_traits_resolve_the_visitor_now_and_later(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    grp = event(
        "group",
        anonymousId=anon,
        groupId="acct-1",
        traits={"website": "https://www.Acme-Rockets.com/"},
    )
    p1 = event(anonymousId=anon, path="/features")
    site.send(grp, p1)
    site.flush()
    s = signal_of(engine, site.ws.id, p1["messageId"])
    assert s is not None and s["domain"] == "acme-rockets.com" and s["match_method"] == "group"
    assert s["type"] == "page_view" and s["topic"] == "features"
    (g,) = web_events(engine, site.ws.id, type="group")
    assert g["domain"] == "acme-rockets.com" and g["match_method"] == "group"
    # A later visit of the same visitor, and of another visitor in the same group.
    p2 = event(anonymousId=anon)
    p3 = event(context={"groupId": "acct-1", "page": {"path": "/x"}})
    site.send(p2, p3)
    site.flush()
    for e in (p2, p3):
        s = signal_of(engine, site.ws.id, e["messageId"])
        assert s is not None and s["domain"] == "acme-rockets.com", e
        assert s["match_method"] == "group"


def test_identify_with_a_business_email_resolves(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    ident = event("identify", anonymousId=anon, userId="u-77", traits={"email": "Jo@Initech.com"})
    site.send(ident)
    site.flush()
    (row,) = web_events(engine, site.ws.id)
    assert row["domain"] == "initech.com" and row["match_method"] == "email"
    # Later events of the visitor, and of the user on another device.
    p1 = event(anonymousId=anon)
    p2 = event(anonymousId="other-device", userId="u-77")
    site.send(p1, p2)
    site.flush()
    for e in (p1, p2):
        s = signal_of(engine, site.ws.id, e["messageId"])
        assert s is not None and s["domain"] == "initech.com" and s["match_method"] == "email"


def test_free_mail_never_resolves(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    site.send(
        event("identify", anonymousId=anon, traits={"email": "someone@gmail.com"}),
        event(anonymousId=anon, ip="198.51.100.200"),
    )
    site.flush()
    assert signals(engine, site.ws.id) == []
    assert all(r["domain"] is None for r in web_events(engine, site.ws.id))


def test_ip_ranges_resolve_and_the_visitor_keeps_it(
    site: Site, engine: Any, tmp_path: Path
) -> None:
    upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "84.17.32.0/24,globex.com,Globex Corp"))
    anon = "anon-" + uuid.uuid4().hex
    office = event(anonymousId=anon, ip="84.17.32.45", path="/pricing")
    site.send(office)
    site.flush()
    s = signal_of(engine, site.ws.id, office["messageId"])
    assert s is not None and s["domain"] == "globex.com" and s["match_method"] == "ip"
    assert s["type"] == "high_value_page_view" and s["topic"] == "pricing"
    # The same visitor from home: the earlier IP resolution, a little less sure.
    home = event(anonymousId=anon, ip="198.51.100.99")
    stranger = event(ip="198.51.100.98")
    site.send(home, stranger)
    site.flush()
    h = signal_of(engine, site.ws.id, home["messageId"])
    assert h is not None and h["domain"] == "globex.com" and h["match_method"] == "anonymous_id"
    assert h["confidence"] == pytest.approx(s["confidence"] * 0.9)
    assert h["provider"] == s["provider"]
    assert signal_of(engine, site.ws.id, stranger["messageId"]) is None


def test_group_and_email_beat_an_ip_identity(site: Site, engine: Any, tmp_path: Path) -> None:
    upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "91.199.0.0/24,hooli.com,Hooli"))
    anon = "anon-" + uuid.uuid4().hex
    site.send(event(anonymousId=anon, ip="91.199.0.1"))
    site.flush()
    site.send(event("identify", anonymousId=anon, traits={"email": "a@piedpiper.com"}))
    site.flush()
    # From the ranged IP again: the email identity (method 1) comes before the IP (2).
    p = event(anonymousId=anon, ip="91.199.0.1")
    site.send(p)
    site.flush()
    s = signal_of(engine, site.ws.id, p["messageId"])
    assert s is not None and s["domain"] == "piedpiper.com" and s["match_method"] == "email"
    with engine.connect() as conn:
        ident = conn.execute(
            text(
                "SELECT domain, match_method FROM web_identities "
                "WHERE workspace_id = :ws AND anonymous_id = :a"
            ),
            {"ws": site.ws.id, "a": anon},
        ).one()
    assert tuple(ident) == ("piedpiper.com", "email")


def test_mmdb_database_resolves(database_url: str, tmp_path: Path) -> None:
    from mmdb_writer import MMDBWriter

    path = tmp_path / "domain.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Domain")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"domain": "umbrella-corp.com"})
    writer.to_db_file(str(path))
    app = create_app(Settings(database_url=database_url, ip_databases=str(path)))
    client = TestClient(app)
    engine = app.state.intently.engine
    ws = new_workspace(client, engine).id
    key = get_write_key(engine, ws)
    e = event(ip="81.2.69.20")
    r = client.post("/v1/batch", json={"batch": [e]}, headers=basic(key))
    assert r.status_code == 200, r.text
    c = collector_of(app)
    assert c.flush().written == 1
    s = signal_of(engine, ws, e["messageId"])
    assert s is not None and s["domain"] == "umbrella-corp.com" and s["match_method"] == "ip"
    c.stop()
    engine.dispose()


def test_identify_backfills_the_visitors_earlier_pages(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    day = datetime.now(UTC) - timedelta(days=3)
    old = event(anonymousId=anon, timestamp=iso(day), path="/docs/setup")
    too_old = event(anonymousId=anon, timestamp=now_iso(days=-40))
    form = event("track", anonymousId=anon, event="Demo Requested")
    site.send(old, too_old, form)
    site.flush()
    assert signals(engine, site.ws.id) == []  # nobody knows who this is yet
    site.send(event("identify", anonymousId=anon, traits={"email": "cto@hooli-xyz.com"}))
    assert site.flush().backfilled == 2
    s_old = signal_of(engine, site.ws.id, old["messageId"])
    assert s_old is not None and s_old["domain"] == "hooli-xyz.com"
    # The email is the browser's word alone: its events count as page views (issue 16).
    assert s_old["match_method"] == "email" and s_old["type"] == "page_view"
    assert s_old["topic"] == "docs" and s_old["confidence"] <= 0.5
    assert day_of(s_old["occurred_at"]) == day_of(parse_iso8601(iso(day)))
    s_form = signal_of(engine, site.ws.id, form["messageId"])
    assert s_form is not None and s_form["type"] == "page_view"
    assert s_form["topic"] == "blog"  # the page the form was sent from
    assert signal_of(engine, site.ws.id, too_old["messageId"]) is None
    (row,) = web_events(engine, site.ws.id, message_id=old["messageId"])
    assert row["domain"] == "hooli-xyz.com" and row["match_method"] == "email"
    # Identifying again finds nothing left to back-fill.
    site.send(event("identify", anonymousId=anon, traits={"email": "cto@hooli-xyz.com"}))
    assert site.flush().backfilled == 0


# ---- signals ---------------------------------------------------------------------------------


OFFICE = "93.184.60.9"  # an address a workspace's ranges can name (no reserved network)


def test_page_topics_high_value_pages_and_form_events(
    site: Site, engine: Any, tmp_path: Path
) -> None:
    # The group claim is corroborated by the visitor's address (else pages only: issue 16).
    upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "93.184.60.0/24,vandelay.com,V"))
    set_website(
        site,
        highValuePages=[
            {"name": "pricing", "pattern": "*/pricing*"},
            {"name": "app-signup", "pattern": "https://app.customer.example/signup*"},
        ],
        formEvents=["Form Submitted"],
    )
    anon = "anon-" + uuid.uuid4().hex
    grp = event(
        "group", anonymousId=anon, groupId="g", traits={"domain": "vandelay.com"}, ip=OFFICE
    )
    pages = {
        "/": ("page_view", "home"),
        "/Blog/Post-1?x=1": ("page_view", "blog"),
        "/en/pricing/": ("high_value_page_view", "pricing"),
        "/signup": ("page_view", "signup"),
    }
    evs = {p: event(anonymousId=anon, path=p, ip=OFFICE) for p in pages}
    signup = event(anonymousId=anon, path="/signup", ip=OFFICE)
    signup["context"]["page"]["url"] = "https://app.customer.example/signup?plan=pro"
    form = event("track", anonymousId=anon, event="form submitted", ip=OFFICE)
    other = event("track", anonymousId=anon, event="Video Played", ip=OFFICE)
    site.send(grp, *evs.values(), signup, form, other)
    site.flush()
    for path, (kind, topic) in pages.items():
        s = signal_of(engine, site.ws.id, evs[path]["messageId"])
        assert s is not None and (s["type"], s["topic"]) == (kind, topic), path
    s = signal_of(engine, site.ws.id, signup["messageId"])
    assert s is not None and (s["type"], s["topic"]) == ("high_value_page_view", "app-signup")
    s = signal_of(engine, site.ws.id, form["messageId"])
    assert s is not None and (s["type"], s["topic"]) == ("form_submit", "form submitted")
    assert signal_of(engine, site.ws.id, other["messageId"]) is None
    assert signal_of(engine, site.ws.id, grp["messageId"]) is None
    assert page_topic(None) == "" and page_topic("/") == "home"


def test_late_and_future_timestamps(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    late_day = datetime.now(UTC) - timedelta(days=9)
    late = event(anonymousId=anon, timestamp=iso(late_day))
    future = event(anonymousId=anon, timestamp=now_iso(days=3))
    near_future = event(anonymousId=anon, timestamp=now_iso(hours=2))
    # No timestamp: originalTimestamp corrected by the sender's clock skew (sentAt).
    skewed = event(anonymousId=anon, originalTimestamp=now_iso(hours=-5, seconds=-30))
    del skewed["timestamp"]
    skewed["sentAt"] = now_iso(hours=-5)
    before = now_us()
    site.send(event("group", anonymousId=anon, groupId="g", traits={"website": "kramerica.com"}))
    site.send(late, future, near_future, skewed)
    site.flush()
    after = now_us()
    s = signal_of(engine, site.ws.id, late["messageId"])
    assert s is not None and day_of(s["occurred_at"]) == day_of(parse_iso8601(iso(late_day)))
    s = signal_of(engine, site.ws.id, future["messageId"])
    assert s is not None and before <= s["occurred_at"] <= after  # clamped to its receipt
    s = signal_of(engine, site.ws.id, near_future["messageId"])
    assert s is not None and s["occurred_at"] > after + 3600 * 10**6
    s = signal_of(engine, site.ws.id, skewed["messageId"])
    assert s is not None and before - 31 * 10**6 <= s["occurred_at"] <= after - 29 * 10**6
    with engine.connect() as conn:
        days = conn.execute(
            text(
                "SELECT day, count FROM signal_daily WHERE workspace_id = :ws "
                "AND domain = 'kramerica.com' ORDER BY day"
            ),
            {"ws": site.ws.id},
        ).all()
    assert days[0] == (day_of(parse_iso8601(iso(late_day))), 1)


def test_collector_signals_show_on_the_account(site: Site, engine: Any, tmp_path: Path) -> None:
    # The visitor's address is in the claimed company's range: the claim is corroborated,
    # so the pricing page counts in full (issue 16).
    upload_ranges(
        engine, site.ws.id, ranges_csv(tmp_path, "93.184.60.0/24,wayne-enterprises.com,W")
    )
    r = site.ws.api.post(
        "/accounts", json={"accounts": [{"domain": "wayne-enterprises.com", "name": "Wayne"}]}
    )
    assert r.status_code == 200, r.text
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    anon = "anon-" + uuid.uuid4().hex
    p = event(anonymousId=anon, path="/pricing", ip=OFFICE)
    site.send(
        event("group", anonymousId=anon, groupId="w", traits={"website": "wayne-enterprises.com"}),
        p,
    )
    site.flush()
    r = site.ws.api.get(f"/accounts/{aid}/signals", params={"source": "website"})
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]["data"]
    assert item["source"] == "website" and item["type"] == "high_value_page_view"
    assert item["topic"] == "pricing" and item["matchMethod"] == "group"
    assert item["occurredAt"] == p["timestamp"]


# ---- IP retention ----------------------------------------------------------------------------


def test_raw_ips_are_dropped_after_the_retention_window(site: Site, engine: Any) -> None:
    e = event(ip="198.51.100.33")
    site.send(e)
    site.flush()
    (row,) = web_events(engine, site.ws.id)
    assert row["ip"] == "198.51.100.33"
    received = row["received_at"]
    assert purge_ips(engine, site.ws.id, now=received + 6 * US_PER_DAY) == 0
    assert web_events(engine, site.ws.id)[0]["ip"] == "198.51.100.33"
    assert purge_ips(engine, site.ws.id, now=received + 7 * US_PER_DAY + 1) == 1
    (row,) = web_events(engine, site.ws.id)
    assert row["ip"] is None and row["message_id"] == e["messageId"]
    # A shorter window of the workspace's own, and 0: never stored at all.
    set_website(site, ipRetentionDays=1)
    site.send(event(ip="198.51.100.34"))
    site.flush()
    assert purge_ips(engine, site.ws.id, now=now_us() + US_PER_DAY + 10**6) == 1
    set_website(site, ipRetentionDays=0)
    site.send(event(ip="198.51.100.35"))
    site.flush()
    assert all(r["ip"] is None for r in web_events(engine, site.ws.id))


def test_purge_ips_command(site: Site, engine: Any, database_url: str) -> None:
    site.send(event(ip="198.51.100.40"), event(ip="198.51.100.41"))
    site.flush()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE web_events SET received_at = received_at - :age WHERE workspace_id = :ws"),
            {"age": 8 * US_PER_DAY, "ws": site.ws.id},
        )
    done = intently(database_url, "website", "purge-ips", "--workspace", site.ws.name)
    assert done.returncode == 0, done.stderr
    assert "2 IP addresses dropped" in done.stdout
    assert all(r["ip"] is None for r in web_events(engine, site.ws.id))


# ---- failures and the flusher ----------------------------------------------------------------


def store_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's next signal store fails as a lost connection would; later ones work."""
    real_store = collector_module.store
    calls = []

    def failing_store(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT INTO signals", {}, Exception("connection lost"))
        return real_store(*args, **kw)

    monkeypatch.setattr(collector_module, "store", failing_store)


def test_a_failed_flush_keeps_the_events_and_the_next_one_writes_them(
    site: Site, engine: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "77.88.0.0/24,oscorp.com,Oscorp"))
    anon, visitor = "anon-" + uuid.uuid4().hex, "anon-" + uuid.uuid4().hex
    grp = event("group", anonymousId=anon, groupId="g", traits={"website": "stark-industries.com"})
    p = event(anonymousId=anon)
    by_ip = event(anonymousId=visitor, ip="77.88.0.9")
    site.send(grp, p, by_ip)
    store_fails_once(monkeypatch)
    result = site.collector.flush()
    assert result.failed >= 3 and "connection lost" in result.errors[0]
    assert web_events(engine, site.ws.id) == []  # the transaction rolled back
    assert site.collector.pending >= 3
    result = site.flush()
    assert result.written == 3
    s = signal_of(engine, site.ws.id, p["messageId"])
    assert s is not None and s["domain"] == "stark-industries.com"
    s = signal_of(engine, site.ws.id, by_ip["messageId"])
    assert s is not None and s["domain"] == "oscorp.com" and s["match_method"] == "ip"
    # The retry also kept what the visitors are known as.
    with engine.connect() as conn:
        known = dict(
            conn.execute(
                text(
                    "SELECT anonymous_id, match_method FROM web_identities WHERE workspace_id = :ws"
                ),
                {"ws": site.ws.id},
            ).all()
        )
    assert known == {anon: "group", "group:g": "group", visitor: "ip"}
    (run,) = collector_runs(site)
    assert run["read"] == 3 and run["accepted"] == 3  # counted once, not lost nor doubled


def test_the_flusher_thread_writes_on_its_own_and_on_stop(
    database_url: str, make_workspace: Callable[[], Workspace]
) -> None:
    app = create_app(Settings(database_url=database_url, collector_flush_ms=50))
    engine = app.state.intently.engine
    ws = make_workspace()
    key = get_write_key(engine, ws.id)
    with TestClient(app) as client:  # runs the lifespan: the flusher starts
        e = event()
        assert client.post("/v1/batch", json={"batch": [e]}, headers=basic(key)).status_code == 200
        deadline = time.monotonic() + 5
        while not web_events(engine, ws.id) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(web_events(engine, ws.id)) == 1
        collector_of(app)._flush_lock.acquire()  # hold the next flush back...
        last = event()
        assert client.post("/v1/page", json=last, headers=basic(key)).status_code == 200
        collector_of(app)._flush_lock.release()
    # ...leaving the app's shutdown to write it.
    assert {r["message_id"] for r in web_events(engine, ws.id)} == {
        e["messageId"],
        last["messageId"],
    }
    engine.dispose()


# ---- tenancy ---------------------------------------------------------------------------------


def test_a_write_key_lands_data_only_in_its_workspace(
    make_site: Callable[[], Site], engine: Any
) -> None:
    a, b = make_site(), make_site()
    shared = event(anonymousId="same-visitor")
    grp = event("group", anonymousId="same-visitor", groupId="g", traits={"website": "a-corp.com"})
    a.send(grp, shared)
    # B's key in the header wins over A's in the body; B's events are B's.
    r = b.post("/v1/batch", {"writeKey": a.key, "batch": [dict(shared)]})
    assert r.status_code == 200
    a.flush()
    assert {r["message_id"] for r in web_events(engine, a.ws.id)} == {
        grp["messageId"],
        shared["messageId"],
    }
    (bev,) = web_events(engine, b.ws.id)
    assert bev["message_id"] == shared["messageId"]  # dedup is per workspace
    assert bev["domain"] is None  # A's identities do not resolve B's visitors
    assert signals(engine, b.ws.id) == []
    assert len(signals(engine, a.ws.id)) == 1
    assert rejects(b) == []


# ---- the command line ------------------------------------------------------------------------


def test_write_key_and_snippet_commands(site: Site, database_url: str, engine: Any) -> None:
    done = intently(database_url, "website", "write-key", "--workspace", site.ws.name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == site.key
    done = intently(database_url, "website", "snippet", "--workspace", site.ws.name, "--url",
               "https://intently.example.com/")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f'<script async src="https://intently.example.com/t.js?k={site.key}"></script>'
    )
    done = intently(database_url, "website", "write-key", "--rotate", "--workspace", site.ws.name)
    assert done.returncode == 0, done.stderr
    new = done.stdout.splitlines()[-1]
    assert new != site.key and new == get_write_key(engine, site.ws.id)
    assert "stops working within 5 seconds" in done.stderr


@pytest.fixture(autouse=True)
def _no_leftovers(collector: Collector) -> Iterator[None]:
    """Each test flushes what it sent; nothing of one test waits into the next."""
    yield
    collector.flush()


# ---- issue 16: error shapes, nesting, every Segment call type --------------------------------


def nested() -> dict[str, Any]:
    """An event whose properties hold `depth` arrays inside each other."""
    e = event()
    e["properties"] = {"x": "@"}
    return e


def nested_body(depth: int, batch: bool) -> bytes:
    text = json.dumps({"batch": [nested()]} if batch else nested())
    return text.replace('"@"', "[" * depth + "]" * depth).encode()


def test_errors_carry_the_code_and_message_sdks_read(site: Site, client: TestClient) -> None:
    answers = {
        "missing key": site.post("/v1/batch", {"batch": [event()]}, auth=False),
        "bad key": client.post("/v1/batch", json={"batch": [event()]}, headers=basic("itlyw_x")),
        "not json": client.post(
            "/v1/batch", content=b"{nope", headers={**basic(site.key), "Content-Type": "text/plain"}
        ),
        "bad event": site.batch(event(timestamp="never")),
        "bad call": site.post("/v1/page", event(timestamp="never")),
        "too large": site.post("/v1/page", event(properties={"x": "y" * 40_000})),
    }
    codes = {}
    for what, r in answers.items():
        assert 400 <= r.status_code < 500, (what, r.status_code)
        body = r.json()
        assert body["success"] is False, what
        assert isinstance(body["message"], str) and body["message"], what
        codes[what] = body["code"]
    assert codes == {
        "missing key": "unauthorized",
        "bad key": "unauthorized",
        "not json": "invalid_request",
        "bad event": "invalid_event",
        "bad call": "invalid_event",
        "too large": "payload_too_large",
    }


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/page"])
@pytest.mark.parametrize("keyed", [True, False])
def test_deeply_nested_json_is_400_not_500(
    site: Site, client: TestClient, engine: Any, path: str, keyed: bool
) -> None:
    body = nested_body(10_000, batch=path == "/v1/batch")
    headers = {"Content-Type": "application/json", **(basic(site.key) if keyed else {})}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert "nested too deeply" in r.json()["message"]
    # A reasonably nested event is still taken.
    r = client.post(path, content=nested_body(20, batch=path == "/v1/batch"), headers=headers)
    assert r.status_code == (200 if keyed else 401), r.text
    site.flush()


@pytest.mark.parametrize(
    ("path", "kind", "extra"),
    [
        ("/v1/screen", "screen", {"name": "Settings"}),
        ("/v1/s", "screen", {"name": "Home"}),
        ("/v1/alias", "alias", {"previousId": "anon-old", "userId": "u-1"}),
        ("/v1/a", "alias", {"previousId": "anon-old", "userId": "u-2"}),
    ],
)
def test_screen_and_alias_calls_are_accepted(
    site: Site, engine: Any, path: str, kind: str, extra: dict[str, Any]
) -> None:
    e = event(kind, **extra)
    del e["type"]
    r = site.post(path, e)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    site.flush()
    (row,) = web_events(engine, site.ws.id)
    assert row["type"] == kind and row["message_id"] == e["messageId"]


def test_a_batch_with_screen_and_alias_is_taken_whole(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    grp = event("group", anonymousId=anon, groupId="g", traits={"domain": "soylent-corp.com"})
    screen = event("screen", anonymousId=anon, name="Pricing", path="/pricing")
    del screen["context"]["page"]  # an app has screens, not pages
    alias = event("alias", anonymousId=anon, previousId=anon, userId="u-" + anon)
    r = site.batch(grp, screen, alias)
    assert r.status_code == 200, r.text
    site.flush()
    assert {r["type"] for r in web_events(engine, site.ws.id)} == {"group", "screen", "alias"}
    (row,) = web_events(engine, site.ws.id, type="screen")
    assert row["domain"] == "soylent-corp.com" and row["title"] == "Pricing"
    # A screen is an app's page: stored and resolved, but no website visit.
    assert signal_of(engine, site.ws.id, screen["messageId"]) is None
    # The alias carried the visitor's identity to its user id: a later event under the
    # user id alone, from another device, resolves.
    later = event(anonymousId="device-2", userId="u-" + anon, path="/docs")
    site.send(later)
    site.flush()
    s = signal_of(engine, site.ws.id, later["messageId"])
    assert s is not None and s["domain"] == "soylent-corp.com"


def test_alias_resolves_the_earlier_visits_of_the_old_id(site: Site, engine: Any) -> None:
    anon = "anon-" + uuid.uuid4().hex
    visit = event(anonymousId=anon, path="/features")
    site.send(visit)
    site.flush()
    assert signal_of(engine, site.ws.id, visit["messageId"]) is None
    user = "user-" + uuid.uuid4().hex[:8]
    site.send(event("identify", anonymousId=None, userId=user, traits={"email": "a@duff-beer.com"}))
    site.flush()
    alias = {"type": "alias", "previousId": anon, "userId": user, "messageId": uuid.uuid4().hex}
    site.send(alias)
    assert site.flush().backfilled == 1
    s = signal_of(engine, site.ws.id, visit["messageId"])
    assert s is not None and s["domain"] == "duff-beer.com"


def test_an_alias_needs_both_ids(site: Site) -> None:
    r = site.post("/v1/alias", {"userId": "u-1", "messageId": "m1"})
    assert r.status_code == 400 and r.json()["field"] == "previousId"
    r = site.post("/v1/alias", {"previousId": "p-1", "anonymousId": "a", "messageId": "m2"})
    assert r.status_code == 400 and r.json()["field"] == "userId"
    site.flush()


# ---- issue 16: rate limits count events; failures are limited per address ------------------


@pytest.fixture
def own_app(database_url: str) -> Iterator[Callable[..., Any]]:
    """An app of its own with the given settings (rate limits under test), stopped after."""
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        app = create_app(Settings(database_url=database_url, **settings))
        made.append(app)
        return app

    yield make
    for app in made:
        collector_of(app).stop()


def own_site(app: Any, address: str = "203.0.113.10") -> tuple[str, int, TestClient]:
    """A fresh workspace's write key on `app`, and a client calling from `address`."""
    engine = app.state.intently.engine
    client = client_from(app, address)
    ws = new_workspace(client, engine).id
    return get_write_key(engine, ws), ws, client


def client_from(app: Any, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


def test_the_write_key_limit_counts_events_not_requests(own_app: Callable[..., Any]) -> None:
    app = own_app(rate_limit_collector_per_minute=60, rate_limit_collector_burst=10)
    key, _, c = own_site(app)
    big = c.post("/v1/batch", json={"batch": [event() for _ in range(8)]}, headers=basic(key))
    assert big.status_code == 200, big.text
    assert big.headers["ratelimit-remaining"] == "2"
    again = c.post("/v1/batch", json={"batch": [event() for _ in range(8)]}, headers=basic(key))
    assert again.status_code == 429
    assert again.json()["code"] == "rate_limited"
    assert "write key" in again.json()["message"] and "events" in again.json()["message"]
    assert int(again.headers["retry-after"]) >= 6  # 8 events at one a second, 2 left
    # What is left still serves small calls; one batch larger than the burst passes a
    # full bucket, and then its events are owed.
    assert c.post("/v1/page", json=event(), headers=basic(key)).status_code == 200
    key2, _, c2 = own_site(app, "203.0.113.11")
    huge = c2.post("/v1/batch", json={"batch": [event() for _ in range(25)]}, headers=basic(key2))
    assert huge.status_code == 200, huge.text
    assert c2.post("/v1/page", json=event(), headers=basic(key2)).status_code == 429


def test_one_address_cannot_use_up_the_write_key(own_app: Callable[..., Any]) -> None:
    app = own_app(rate_limit_collector_address_per_minute=60, rate_limit_collector_address_burst=5)
    key, _, flood = own_site(app, "198.51.100.66")
    r = flood.post("/v1/batch", json={"batch": [event() for _ in range(5)]}, headers=basic(key))
    assert r.status_code == 200, r.text
    r = flood.post("/v1/batch", json={"batch": [event() for _ in range(5)]}, headers=basic(key))
    assert r.status_code == 429 and "this address" in r.json()["message"]
    visitor = client_from(app, "198.51.100.67")
    assert visitor.post("/v1/page", json=event(), headers=basic(key)).status_code == 200


def test_failed_requests_are_limited_per_address(own_app: Callable[..., Any]) -> None:
    app = own_app(rate_limit_anonymous_per_minute=60, rate_limit_anonymous_burst=2)
    key, _, c = own_site(app, "192.0.2.50")
    deep = nested_body(10_000, batch=True)
    plain = {"Content-Type": "application/json"}
    codes = [c.post("/v1/batch", content=deep, headers=plain).status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    r = c.post("/v1/batch", json={"batch": [event()]}, headers=basic("itlyw_guess"))
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    # The address is refused before its body is read, even with a good key, until its
    # bucket refills; another address is not.
    assert c.post("/v1/page", json=event(), headers=basic(key)).status_code == 429
    other = client_from(app, "192.0.2.51")
    assert other.post("/v1/page", json=event(), headers=basic(key)).status_code == 200


# ---- issue 16: the public write key cannot move an account -----------------------------------


def site_on(app: Any, address: str) -> Site:
    """A fresh workspace of `app` whose website calls the collector from `address`."""
    ws = new_workspace(client_from(app, "192.0.2.1"), app.state.intently.engine)
    key = get_write_key(app.state.intently.engine, ws.id)
    return Site(ws, key, client_from(app, address), collector_of(app))


def account_state(site: Site, domain: str) -> dict[str, Any]:
    r = site.ws.api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200, r.text
    r = site.ws.api.get("/accounts", params={"domain": domain})
    assert r.status_code == 200, r.text
    (acct,) = [a for a in r.json()["data"]["data"] if a["domain"] == domain]
    return dict(acct)


def test_claims_from_the_public_key_cannot_move_an_account_to_decision(
    own_app: Callable[..., Any],
) -> None:
    """The attack of issue 16 replayed: one address, fresh anonymous ids, each claiming the
    target's domain by a group call, then pricing pages and forms in a flood."""
    app = own_app()
    site = site_on(app, "203.0.113.66")
    engine, ws = app.state.intently.engine, site.ws.id
    r = site.ws.api.post(
        "/accounts", json={"accounts": [{"domain": "victim-corp.com", "name": "Victim"}]}
    )
    assert r.status_code == 200, r.text
    for _ in range(20):
        anon = "anon-" + uuid.uuid4().hex
        flood = [
            event("group", anonymousId=anon, groupId="v", traits={"website": "victim-corp.com"})
        ]
        flood += [event(anonymousId=anon, path="/pricing", ip=None) for _ in range(10)]
        flood += [
            event("track", anonymousId=anon, event=name, ip=None)
            for name in ("Form Submitted", "Demo Requested")
        ]
        site.send(*flood)
    site.flush()
    acct = account_state(site, "victim-corp.com")
    assert acct["rtp_website_intent_score"] <= 20, acct  # page views at most: their cap
    assert acct["rtp_journey_stage"] not in ("Decision", "Consideration"), acct
    kinds = {s["type"] for s in signals(engine, ws)}
    assert kinds == {"page_view"}
    assert all(s["confidence"] <= 0.5 for s in signals(engine, ws))


def claim(anon: str, domain: str) -> dict[str, Any]:
    return event("group", anonymousId=anon, groupId=domain, traits={"website": domain}, ip=None)


def claimed_domains(engine: Any, ws: int) -> list[str | None]:
    return [r["domain"] for r in web_events(engine, ws, type="group")]


def test_one_visitor_claims_few_companies(own_app: Callable[..., Any]) -> None:
    app = own_app(collector_claims_per_visitor=2)
    site = site_on(app, "203.0.113.70")
    engine = app.state.intently.engine
    anon = "anon-" + uuid.uuid4().hex
    first = [claim(anon, "alpha-co.com"), claim(anon, "beta-co.com"), claim(anon, "alpha-co.com")]
    site.send(*first)
    site.flush()
    # Later, in another flush: a third company is one too many; the first two still hold.
    third, again = claim(anon, "gamma-co.com"), claim(anon, "beta-co.com")
    site.send(third, again)
    site.flush()
    got = {r["message_id"]: r["domain"] for r in web_events(engine, site.ws.id, type="group")}
    assert [got[e["messageId"]] for e in first] == ["alpha-co.com", "beta-co.com", "alpha-co.com"]
    assert got[third["messageId"]] is None  # kept, with its traits, but resolving nothing
    assert got[again["messageId"]] == "beta-co.com"
    (run,) = collector_runs(site)
    assert run["skippedByReason"] == {"identity_limit": 1}


def test_a_claim_over_its_bound_is_counted_once_when_its_flush_is_retried(
    own_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = own_app(collector_claims_per_visitor=2)
    site = site_on(app, "203.0.113.72")
    anon = "anon-" + uuid.uuid4().hex
    claims = [claim(anon, d) for d in ("alpha-co.com", "beta-co.com", "gamma-co.com")]
    site.send(*claims, event(anonymousId=anon))
    store_fails_once(monkeypatch)
    assert "connection lost" in site.collector.flush().errors[0]
    assert site.flush().written == 4
    (run,) = collector_runs(site)
    assert run["skippedByReason"] == {"identity_limit": 1}  # not once per attempt


def test_one_address_claims_few_companies(own_app: Callable[..., Any]) -> None:
    app = own_app(collector_claims_per_address=3)
    site = site_on(app, "203.0.113.71")
    engine = app.state.intently.engine
    site.send(*(claim("anon-" + uuid.uuid4().hex, f"company-{i}.com") for i in range(5)))
    site.flush()
    assert sum(d is not None for d in claimed_domains(engine, site.ws.id)) == 3
    # Fresh anonymous ids do not help; another address may still claim.
    site.send(claim("anon-" + uuid.uuid4().hex, "company-9.com"))
    elsewhere = Site(site.ws, site.key, client_from(app, "203.0.113.72"), site.collector)
    elsewhere.send(claim("anon-" + uuid.uuid4().hex, "company-8.com"))
    site.flush()
    domains = set(claimed_domains(engine, site.ws.id))
    assert "company-9.com" not in domains and "company-8.com" in domains


def test_a_context_ip_is_believed_only_from_trusted_senders(
    own_app: Callable[..., Any], tmp_path: Path
) -> None:
    """The write key's holder could name the victim's office address in context.ip."""
    for trusted, kind in (("", "page_view"), ("203.0.113.0/28", "high_value_page_view")):
        app = own_app(collector_trusted_senders=trusted)
        site = site_on(app, "203.0.113.5")
        engine = app.state.intently.engine
        upload_ranges(engine, site.ws.id, ranges_csv(tmp_path, "93.184.61.0/24,initrode.com,I"))
        anon = "anon-" + uuid.uuid4().hex
        claimed = event(anonymousId=anon, path="/pricing", ip="93.184.61.5")
        site.send(claimed)
        site.flush()
        s = signal_of(engine, site.ws.id, claimed["messageId"])
        assert s is not None and s["domain"] == "initrode.com" and s["type"] == kind, trusted
        # Only believed addresses are learnt for the visitor's later visits.
        later = event(anonymousId=anon, path="/docs", ip=None)
        site.send(later)
        site.flush()
        learnt = signal_of(engine, site.ws.id, later["messageId"])
        assert (learnt is not None) == bool(trusted), trusted
    with pytest.raises(ValueError, match="INTENTLY_COLLECTOR_TRUSTED_SENDERS: 'office' is not"):
        Settings(collector_trusted_senders="10.0.0.0/8, office")


def test_a_trusted_sender_s_claims_count_in_full(own_app: Callable[..., Any]) -> None:
    app = own_app(collector_trusted_senders="10.20.0.0/16", collector_claims_per_address=1)
    relay = site_on(app, "10.20.3.4")
    engine, ws = app.state.intently.engine, relay.ws.id
    anons = ["anon-" + uuid.uuid4().hex for _ in range(3)]
    # The backend identifies three visitors of three companies from its one address.
    relay.send(
        *(
            event("identify", anonymousId=a, traits={"email": f"x@firm-{i}.com"}, ip=None)
            for i, a in enumerate(anons)
        )
    )
    relay.flush()
    # Their browsers then send pages and a form the usual way.
    browser = Site(relay.ws, relay.key, client_from(app, "198.18.0.1"), relay.collector)
    form = event("track", anonymousId=anons[2], event="Demo Requested", ip=None)
    browser.send(event(anonymousId=anons[0], path="/pricing", ip=None), form)
    browser.flush()
    by_type = {(s["domain"], s["type"]) for s in signals(engine, ws)}
    assert by_type == {("firm-0.com", "high_value_page_view"), ("firm-2.com", "form_submit")}
    assert {s["provider"] for s in signals(engine, ws)} == {"trusted-sender"}
