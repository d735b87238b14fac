"""The webhooks API: the ladder (401, 400, 404), validation in the API's words, secrets,
pagination, both mounts, tenancy, the SSRF guard at registration, and the test ping."""

from __future__ import annotations

from typing import Any

import pytest

from intently.settings import Settings
from intently.webhooks.service import verify_signature
from tests.support.api import Api, Workspace
from tests.support.envelope import one_error
from tests.support.server import free_port
from tests.support.webhook_receiver import Receiver
from tests.support.webhooks import deliveries, drain, make_events, register

UNKNOWN = "0123456789abcdef01234567"


def test_without_a_key_every_route_is_401(ws: Workspace) -> None:
    anon = ws.api.with_key(None)
    hook = register(ws.api, "http://127.0.0.1:9/hook")["webhookId"]
    for method, path in [
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("GET", f"/webhooks/{hook}"),
        ("PATCH", f"/webhooks/{hook}"),
        ("DELETE", f"/webhooks/{hook}"),
        ("GET", f"/webhooks/{hook}/deliveries"),
        ("POST", f"/webhooks/{hook}/test"),
        ("POST", f"/webhooks/{hook}/rotate-secret"),
    ]:
        assert anon.request(method, path, json={}).status_code == 401, (method, path)


def test_create_answers_the_secret_once(ws: Workspace) -> None:
    hook = register(
        ws.api,
        "https://hooks.example.com/in?x=1",
        ["account.created", "stage.changed"],
        description="CRM sync",
    )
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 30
    assert hook["status"] == "active" and hook["description"] == "CRM sync"
    assert hook["eventTypes"] == ["account.created", "stage.changed"]
    got = ws.api.get(f"/webhooks/{hook['webhookId']}").json()["data"]
    assert "secret" not in got
    assert got["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0}
    listed = ws.api.get("/webhooks").json()["data"]["data"]
    assert [h["webhookId"] for h in listed] == [hook["webhookId"]]
    assert "secret" not in listed[0]
    own = register(ws.api, "https://hooks.example.com/2", secret="my-own-secret-123456")
    assert own["secret"] == "my-own-secret-123456"


@pytest.mark.parametrize(
    ("body", "prop", "words"),
    [
        ({"eventTypes": ["*"]}, "url", "url should not be empty"),
        ({"url": "ftp://x.example.com", "eventTypes": ["*"]}, "url", "got 'ftp://x.example.com'"),
        ({"url": "http://", "eventTypes": ["*"]}, "url", "url must name a host; got 'http://'"),
        ({"url": "not a url", "eventTypes": ["*"]}, "url", "got 'not a url'"),
        ({"url": 5, "eventTypes": ["*"]}, "url", "url must be a string"),
        ({"url": "https://a.example.com"}, "eventTypes", "eventTypes should not be empty"),
        ({"url": "https://a.example.com", "eventTypes": []}, "eventTypes", "at least 1"),
        (
            {"url": "https://a.example.com", "eventTypes": ["account.created", "deal.won"]},
            "eventTypes",
            "unknown event type 'deal.won'",
        ),
        (
            {"url": "https://a.example.com", "eventTypes": ["*"], "secret": "short"},
            "secret",
            "secret must be 16 to 256",
        ),
    ],
)
def test_bad_input_is_400_naming_the_field_and_value(
    ws: Workspace, body: dict[str, Any], prop: str, words: str
) -> None:
    err = one_error(ws.api.post("/webhooks", json=body))
    assert err["property"] == prop
    assert words in " ".join(err["constraints"].values())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/in",
        "http://localhost/in",
        "http://10.1.2.3/in",
        "http://192.168.0.10/in",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/in",
        "http://0.0.0.0/in",
        "http://224.0.0.1/in",
        "http://[::ffff:127.0.0.1]/in",
        "http://100.64.1.1/in",
    ],
)
def test_private_targets_are_refused_at_registration(api: Api, url: str) -> None:
    # `api` is the default app: private targets not allowed.
    err = one_error(api.post("/webhooks", json={"url": url, "eventTypes": ["*"]}))
    assert err["property"] == "url"
    text = err["constraints"]["isAllowedTarget"]
    assert text.startswith("url refused: host ") and "INTENTLY_WEBHOOK_ALLOW_PRIVATE" in text
    hook = ws_register_public(api)
    r = api.patch(f"/webhooks/{hook}", json={"url": url})
    assert one_error(r)["property"] == "url"


def ws_register_public(api: Api) -> str:
    r = api.post("/webhooks", json={"url": "http://8.8.8.8/in", "eventTypes": ["*"]})
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["webhookId"])


def test_unknown_and_malformed_ids(ws: Workspace) -> None:
    hook = register(ws.api, "http://127.0.0.1:9/hook")["webhookId"]
    for method, path in [
        ("GET", f"/webhooks/{UNKNOWN}"),
        ("PATCH", f"/webhooks/{UNKNOWN}"),
        ("DELETE", f"/webhooks/{UNKNOWN}"),
        ("GET", f"/webhooks/{UNKNOWN}/deliveries"),
        ("POST", f"/webhooks/{UNKNOWN}/test"),
        ("POST", f"/webhooks/{UNKNOWN}/rotate-secret"),
        ("GET", f"/webhooks/{hook}/deliveries/{UNKNOWN}"),
        ("POST", f"/webhooks/{hook}/deliveries/{UNKNOWN}/retry"),
    ]:
        r = ws.api.request(method, path, json={})
        assert r.status_code == 404, (method, path, r.text)
        assert "not found" in r.json()["customMessage"]
    r = ws.api.get("/webhooks/nope")
    assert r.status_code == 400 and r.json()["customMessage"] == "Invalid webhookId format"
    r = ws.api.get(f"/webhooks/{hook}/deliveries/nope")
    assert r.status_code == 400 and r.json()["customMessage"] == "Invalid deliveryId format"


def test_another_workspace_can_neither_see_nor_touch_a_webhook(
    ws: Workspace, make_hook_ws: Any, engine: Any
) -> None:
    hook = register(ws.api, "http://127.0.0.1:9/hook")["webhookId"]
    make_events(engine, ws.id)
    [d] = deliveries(ws.api, hook)
    other = make_hook_ws()
    assert other.api.get("/webhooks").json()["data"]["data"] == []
    for method, path in [
        ("GET", f"/webhooks/{hook}"),
        ("PATCH", f"/webhooks/{hook}"),
        ("DELETE", f"/webhooks/{hook}"),
        ("GET", f"/webhooks/{hook}/deliveries"),
        ("GET", f"/webhooks/{hook}/deliveries/{d['deliveryId']}"),
        ("POST", f"/webhooks/{hook}/deliveries/{d['deliveryId']}/retry"),
        ("POST", f"/webhooks/{hook}/test"),
        ("POST", f"/webhooks/{hook}/rotate-secret"),
    ]:
        r = other.api.request(method, path, json={"status": "disabled"})
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["customMessage"] == f"Webhook '{hook}' not found"
    # Events of the other workspace are not queued to this webhook.
    make_events(engine, other.id)
    assert len(deliveries(ws.api, hook)) == 1
    got = ws.api.get(f"/webhooks/{hook}").json()["data"]
    assert got["status"] == "active"


def test_patch_delete_and_both_mounts(ws: Workspace) -> None:
    hook = register(ws.api, "http://127.0.0.1:9/hook")["webhookId"]
    r = ws.crm.patch(
        f"/webhooks/{hook}",
        json={"url": "http://127.0.0.1:10/other", "eventTypes": ["segment.entered"]},
    )
    assert r.status_code == 200, r.text
    got = r.json()["data"]
    assert got["url"] == "http://127.0.0.1:10/other" and got["eventTypes"] == ["segment.entered"]
    err = one_error(ws.api.patch(f"/webhooks/{hook}", json={"status": "paused"}))
    assert err["property"] == "status"
    r = ws.crm.delete(f"/webhooks/{hook}")
    assert r.status_code == 200 and r.json()["data"] == {"webhookId": hook, "deleted": True}
    assert ws.api.get(f"/webhooks/{hook}").status_code == 404


def test_lists_are_keyset_paginated(ws: Workspace, engine: Any) -> None:
    hooks = [register(ws.api, f"http://127.0.0.1:9/{i}")["webhookId"] for i in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = ws.api.get("/webhooks", params=params).json()["data"]
        seen += [h["webhookId"] for h in page["data"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == hooks

    ids = make_events(engine, ws.id, 5)
    page1 = ws.api.get(f"/webhooks/{hooks[0]}/deliveries", params={"limit": 3}).json()["data"]
    assert page1["hasNextPage"]
    page2 = ws.api.get(
        f"/webhooks/{hooks[0]}/deliveries", params={"cursor": page1["nextCursor"]}
    ).json()["data"]
    got = [d["eventId"] for d in page1["data"] + page2["data"]]
    assert got == list(reversed(ids))  # newest first
    r = ws.api.get(f"/webhooks/{hooks[1]}/deliveries", params={"cursor": page1["nextCursor"]})
    assert r.status_code == 400 and r.json()["customMessage"] == "Invalid cursor"
    err = one_error(ws.api.get(f"/webhooks/{hooks[0]}/deliveries", params={"status": "lost"}))
    assert err["property"] == "status" and "got 'lost'" in err["constraints"]["isIn"]
    assert deliveries(ws.api, hooks[0], status="delivered") == []
    assert len(deliveries(ws.api, hooks[0], status="pending,failed")) == 5


def test_retry_refuses_a_delivery_that_has_not_failed(ws: Workspace, engine: Any) -> None:
    hook = register(ws.api, "http://127.0.0.1:9/hook")["webhookId"]
    make_events(engine, ws.id)
    [d] = deliveries(ws.api, hook)
    r = ws.api.post(f"/webhooks/{hook}/deliveries/{d['deliveryId']}/retry")
    assert r.status_code == 409
    assert "only a failed delivery can be retried" in r.json()["customMessage"]
    got = ws.api.get(f"/webhooks/{hook}/deliveries/{d['deliveryId']}").json()["data"]
    assert got["status"] == "pending" and got["attempts"] == []


def test_the_test_ping_is_signed_and_reports_failure(ws: Workspace, receiver: Receiver) -> None:
    hook = register(ws.api, receiver.url)
    r = ws.api.post(f"/webhooks/{hook['webhookId']}/test")
    assert r.status_code == 200, r.text
    result = r.json()["data"]
    assert result["success"] is True and result["statusCode"] == 200 and result["error"] is None
    [got] = receiver.received
    body = got.json()
    assert body["type"] == "webhook.test" and body["eventId"] == result["eventId"]
    assert body["webhookId"] == hook["webhookId"]
    assert verify_signature(hook["secret"], got.headers["intently-signature"], got.body)

    down = register(ws.api, f"http://127.0.0.1:{free_port()}/hook")
    result = ws.api.post(f"/webhooks/{down['webhookId']}/test").json()["data"]
    assert result["success"] is False and "could not connect" in result["error"]


def test_a_rotated_secret_signs_the_next_deliveries(
    ws: Workspace, receiver: Receiver, engine: Any, wh_settings: Settings
) -> None:
    hook = register(ws.api, receiver.url)
    r = ws.api.post(f"/webhooks/{hook['webhookId']}/rotate-secret")
    assert r.status_code == 200, r.text
    new = r.json()["data"]["secret"]
    assert new != hook["secret"] and new.startswith("whsec_")
    make_events(engine, ws.id)
    drain(engine, wh_settings, ws.id, lambda: len(receiver.received) >= 1)
    got = receiver.received[0]
    assert verify_signature(new, got.headers["intently-signature"], got.body)
    assert not verify_signature(hook["secret"], got.headers["intently-signature"], got.body)


def test_the_openapi_document_lists_the_routes(wh_client: Any) -> None:
    paths = wh_client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/webhooks", "/api/v1/crm/webhooks/{webhook_id}/deliveries/{delivery_id}"):
        assert p in paths


@pytest.mark.parametrize(
    "header",
    ["", "v1=abc", "t=1", "t=abc,v1=00", "garbage", "t=1700000000,v1=" + "0" * 64],
)
def test_malformed_or_wrong_signatures_do_not_verify(header: str) -> None:
    assert not verify_signature("whsec_x", header, b"{}", now=1700000000)


def test_a_signature_verifies_within_its_tolerance() -> None:
    from intently.webhooks.service import sign

    header = sign("whsec_x", 1700000000, b'{"a":1}')
    assert verify_signature("whsec_x", header, b'{"a":1}', now=1700000299)
    assert not verify_signature("whsec_x", header, b'{"a":1}', now=1700000301)
    # During a rotation a receiver may list both signatures; either may match.
    assert verify_signature("whsec_x", "v1=" + "0" * 64 + "," + header, b'{"a":1}', now=1700000000)
