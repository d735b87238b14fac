"""Access control on every dashboard route, found by walking the app's routes (a new route
is covered without editing this file): anonymous visitors, members on admin pages,
forms without the CSRF token, and ids of another workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from intently.web import session
from intently.web.router import PREFIX, ROUTERS
from tests.support.api import new_workspace
from tests.support.dashboard import Dashboard, new_dashboard, run_id_of, upload
from tests.support.vendor_files import SURGE_HEADER, SURGE_ROWS, bombora_csv

ADMIN_AREAS = ("/app/scoring", "/app/sources", "/app/settings")
OPEN = {("GET", "/app/login"), ("POST", "/app/login")}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
FAKE_ID = "0" * 24


def _routes() -> list[tuple[str, str, APIRoute]]:
    out = []
    for area in ROUTERS:
        for route in area.routes:
            assert isinstance(route, APIRoute)
            path = PREFIX + route.path
            for method in sorted(route.methods or ()):
                if method != "HEAD" and (method, path) not in OPEN:
                    out.append((method, path, route))
    return out


ROUTES = _routes()
IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def _calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def _fill(path: str, value: str = FAKE_ID) -> str:
    return PARAM.sub(value, path)


def test_the_route_walk_finds_every_area() -> None:
    paths = {p for _, p, _ in ROUTES}
    for area in ("/app/accounts", "/app/journey", "/app/segments", *ADMIN_AREAS):
        assert any(p.startswith(area) for p in paths), area


@pytest.mark.parametrize(("method", "path", "route"), ROUTES, ids=IDS)
def test_every_route_requires_the_right_session(method: str, path: str, route: APIRoute) -> None:
    calls = set(_calls(route.dependant))
    admin_only = path.startswith(ADMIN_AREAS)
    if method in UNSAFE:
        wanted = {session.admin_writer} if admin_only else {session.writer, session.admin_writer}
    else:
        wanted = {session.admin} if admin_only else {session.viewer, session.admin}
    assert calls & wanted, f"{method} {path} must depend on one of {wanted}"


@pytest.mark.parametrize(("method", "path", "route"), ROUTES, ids=IDS)
def test_anonymous_visitors_are_sent_to_sign_in(
    client: Any, method: str, path: str, route: APIRoute
) -> None:
    r = client.request(method, _fill(path), follow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:200])
    assert r.headers["location"].startswith("/app/login")
    r = client.request(method, _fill(path), headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/app/login")


ADMIN_ROUTES = [(m, p, r) for m, p, r in ROUTES if p.startswith(ADMIN_AREAS)]


@pytest.mark.parametrize(
    ("method", "path", "route"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES]
)
def test_members_cannot_reach_admin_pages(
    team: tuple[Dashboard, Dashboard], method: str, path: str, route: APIRoute
) -> None:
    member = team[1]
    r = member.client.request(
        method,
        _fill(path),
        data={"csrf_token": member.csrf} if method in UNSAFE else None,
        follow_redirects=False,
    )
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert "for workspace admins" in r.text


@pytest.fixture(scope="module")
def team(app: Any, engine: Any, client: Any) -> tuple[Dashboard, Dashboard]:
    """One admin and one member of one workspace for the whole module (signing in costs
    two argon2 hashes; the routes here are many)."""
    ws = new_workspace(client, engine)
    return new_dashboard(app, engine, ws, "admin"), new_dashboard(app, engine, ws, "member")


def test_members_do_not_see_admin_links(member: Dashboard, admin: Dashboard) -> None:
    page = member.get("/app/accounts").text
    for area in ADMIN_AREAS:
        assert f'href="{area}"' not in page
        assert f'href="{area}"' in admin.get("/app/accounts").text


UNSAFE_ROUTES = [(m, p, r) for m, p, r in ROUTES if m in UNSAFE]


@pytest.mark.parametrize(
    ("method", "path", "route"), UNSAFE_ROUTES, ids=[f"{m} {p}" for m, p, _ in UNSAFE_ROUTES]
)
def test_changes_without_the_csrf_token_are_refused(
    team: tuple[Dashboard, Dashboard], method: str, path: str, route: APIRoute
) -> None:
    admin = team[0]
    for kw in (
        {"data": {"csrf_token": "forged"}},
        {"data": {}},
        {"headers": {"X-CSRF-Token": "forged"}},
    ):
        r = admin.client.request(method, _fill(path), follow_redirects=False, **kw)
        assert r.status_code == 403, (kw, r.status_code, r.text[:200])
        assert "security token" in r.text


# ---- ids of another workspace --------------------------------------------------------------

# Path parameters that name a thing, not an id (every value is tried as given).
NAMES = {"source": "bombora"}
# What a route needs besides its ids to get as far as looking them up.
EXTRA: dict[str, dict[str, str]] = {
    "/app/accounts/{rtp_aid}/signals": {"cursor": "x"},
    "/app/settings/users/{user_id}/role": {"role": "member"},
    "/app/settings/webhooks/{webhook_id}/status": {"status": "disabled"},
}


@pytest.fixture(scope="module")
def theirs(app: Any, engine: Any, client: Any) -> dict[str, str]:
    """A workspace with one of everything a dashboard path can name, by parameter name."""
    from intently.auth.service import generate_key, list_keys
    from intently.auth.users import list_users
    from intently.webhooks import service as webhooks

    ws = new_workspace(client, engine)
    owner = new_dashboard(app, engine, ws, "admin")
    generate_key(engine, ws.name, "integration@example.com")
    r = owner.post("/app/settings/webhooks", {"url": "http://8.8.8.8/in", "eventTypes": ["*"]})
    assert r.status_code == 200, r.text[:300]
    codec = app.state.intently.codec
    [hook] = webhooks.list_webhooks(engine, codec, ws.id, limit=10, cursor=None)["data"]
    r = ws.api.post(
        "/accounts", json={"accounts": [{"domain": "theirs.example.com", "name": "Theirs"}]}
    )
    aid = r.json()["data"]["results"][0]["rtp_aid"]  # its account.created is a delivery
    sid = ws.api.post("/segments", json={"name": "Theirs", "type": "static"}).json()["data"]
    deliveries = webhooks.list_deliveries(
        engine, codec, ws.id, hook["webhookId"], limit=10, cursor=None, status=None
    )["data"]
    run = upload(
        owner, "/app/sources/bombora/import", "s.csv", bombora_csv(SURGE_ROWS, SURGE_HEADER)
    )
    keys, _ = list_keys(engine, ws.id)
    return {
        "rtp_aid": aid,
        "sid": sid["segmentId"],
        "webhook_id": hook["webhookId"],
        "delivery_id": deliveries[0]["deliveryId"],
        "run_id": run_id_of(run.text),
        "user_id": next(u.user_id for u in list_users(engine, ws.id) if u.email == owner.email),
        "key_id": keys[0].key_id,
        "_key": ws.key,
        "_owner": owner.email,
    }


ID_ROUTES = [(m, p, r) for m, p, r in ROUTES if set(PARAM.findall(p)) - set(NAMES)]


@pytest.mark.parametrize(
    ("method", "path", "route"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES]
)
def test_another_workspaces_ids_are_not_found(
    team: tuple[Dashboard, Dashboard],
    theirs: dict[str, str],
    method: str,
    path: str,
    route: APIRoute,
) -> None:
    admin = team[0]
    params = PARAM.findall(path)
    missing = set(params) - set(theirs) - set(NAMES)
    assert not missing, f"make the `theirs` fixture hold a {missing} for {path}"
    url = PARAM.sub(lambda m: NAMES.get(m.group(1)) or theirs[m.group(1)], path)
    extra = EXTRA.get(path, {})
    if method in UNSAFE:
        r = admin.client.request(
            method, url, data={"csrf_token": admin.csrf, **extra}, follow_redirects=False
        )
    else:
        r = admin.client.request(method, url, params=extra, follow_redirects=False)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert "theirs.example.com" not in r.text and theirs["_owner"] not in r.text


def test_their_things_are_untouched(theirs: dict[str, str], client: Any) -> None:
    """After every route above was tried on them (the module runs in order)."""
    r = client.get("/api/v1/accounts", headers={"X-Api-Key": theirs["_key"]})
    assert r.status_code == 200 and len(r.json()["data"]["data"]) == 1
    r = client.get(
        f"/api/v1/webhooks/{theirs['webhook_id']}", headers={"X-Api-Key": theirs["_key"]}
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "active"
    r = client.get(f"/api/v1/segments/{theirs['sid']}", headers={"X-Api-Key": theirs["_key"]})
    assert r.status_code == 200


# ---- bodies --------------------------------------------------------------------------------


class _Spy:
    """A request body that records how much of it the server read."""

    def __init__(self, size: int):
        self.size, self.read = size, 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"x" * 65536
        while self.read < self.size:
            self.read += len(chunk)
            yield chunk


def test_an_anonymous_upload_is_refused_before_its_body_is_read(client: Any) -> None:
    spy = _Spy(8 * 1024 * 1024)
    r = client.post(
        "/app/sources/bombora/import",
        content=spy,
        headers={
            "content-type": "multipart/form-data; boundary=x",
            "content-length": str(spy.size),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/app/login")
    assert spy.read < spy.size


def test_bodies_over_the_limit_are_413(team: tuple[Dashboard, Dashboard], app: Any) -> None:
    import dataclasses

    admin = team[0]
    st = app.state.intently
    small = st.settings.model_copy(update={"web_max_body_bytes": 100_000})
    app.state.intently = dataclasses.replace(st, settings=small)
    try:
        r = admin.client.post(
            "/app/segments/" + FAKE_ID + "/upload",
            data={"csrf_token": admin.csrf},
            files={"file": ("big.csv", b"a.com\n" * 30_000, "text/csv")},
            follow_redirects=False,
        )
        assert r.status_code == 413 and "larger than the limit of 100,000 bytes" in r.text
        r = admin.client.post("/app/login", content=b"x" * 70_000, follow_redirects=False)
        assert r.status_code == 413
    finally:
        app.state.intently = st
