"""/t.js: how it is served, and what it does in a page.

Chromium is not installed here, so the behaviour is checked with Node (when present):
the script runs in a `vm` context with a small stand-in for the browser (document,
cookie jar, location, history, navigator.sendBeacon), and the batches it sends are
posted to the real collector, exactly as the browser would send them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from intently.ingest.collector import Collector
from intently.ingest.endpoints import TRACKER, collector_of
from intently.ingest.writekeys import get_write_key
from tests.support.api import Workspace

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

# The browser, as much of it as t.js touches. argv[2]: the page and what to do in it.
HARNESS = r"""
const vm = require("vm");
const src = require("fs").readFileSync(0, "utf8");
const opts = JSON.parse(process.argv[2]);
const beacons = [], pending = [], cookieWrites = [], listeners = {}, docListeners = {};
const timers = [];
let jar = opts.cookie || "";
const location = new URL(opts.url);
const history = {
  pushState(state, title, url) { location.href = new URL(url, location.href).href; },
};
const document = {
  currentScript: {
    src: opts.src,
    getAttribute: (n) => (opts.attrs && n in opts.attrs ? opts.attrs[n] : null),
  },
  baseURI: opts.url, referrer: opts.referrer || "", title: "Welcome", visibilityState: "visible",
  get cookie() { return jar; },
  set cookie(v) { cookieWrites.push(v); jar = v.split(";")[0]; },
  querySelector: () => null,
  addEventListener: (t, f) => { docListeners[t] = f; },
};
const navigator = {
  userAgent: "node-harness", doNotTrack: opts.dnt || null, globalPrivacyControl: opts.gpc,
  sendBeacon(url, blob) {
    const type = blob.type;
    pending.push(blob.text().then((t) => beacons.push({ url, type, body: JSON.parse(t) })));
    return true;
  },
};
const window = {
  navigator, location, history, crypto: globalThis.crypto,
  addEventListener: (t, f) => { listeners[t] = f; }, intently: opts.pre,
};
const intervals = [];
const ctx = vm.createContext({
  window, document, URL, Blob, Array,
  setTimeout: (f) => timers.push(f), setInterval: (f, ms) => intervals.push(ms),
});
vm.runInContext(src, ctx);
const runTimers = () => { while (timers.length) timers.shift()(); };
for (const [what, ...args] of opts.steps || []) {
  if (what === "call") window.intently[args[0]](...args.slice(1));
  if (what === "navigate") { window.history.pushState({}, "", args[0]); runTimers(); }
  if (what === "title") document.title = args[0];
  if (what === "pagehide") listeners.pagehide && listeners.pagehide();
  if (what === "hidden") { document.visibilityState = "hidden"; docListeners.visibilitychange(); }
}
Promise.all(pending).then(() => {
  const api = Object.keys(window.intently);
  console.log(JSON.stringify({ beacons, cookieWrites, intervals, api }));
});
"""


def run_tracker(
    script: bytes, *, key: str | None, attrs: dict[str, str] | None = None, **opts: Any
) -> dict[str, Any]:
    """Run t.js in the Node harness on https://www.customer.example/; returns what it did."""
    assert NODE is not None
    src = "https://intently.example.com/t.js" + (f"?k={key}" if key else "")
    doc = {"url": "https://www.customer.example/", "src": src, "attrs": attrs or {}, **opts}
    done = subprocess.run(
        [NODE, "-e", HARNESS, "harness", json.dumps(doc)],
        input=script,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def served(client: TestClient, key: str | None = None) -> bytes:
    r = client.get("/t.js", params={"k": key} if key else None)
    assert r.status_code == 200
    return r.content


# ---- how it is served ------------------------------------------------------------------------


def test_served_small_cached_and_javascript(client: TestClient) -> None:
    r = client.get("/t.js")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=3600"
    assert len(r.content) < 4096
    assert r.content == TRACKER
    text = r.text
    for feature in (
        "itly_aid",  # the first-party anonymous id cookie
        "max-age=31536000",  # kept a year
        "SameSite=Lax",
        "data-key",  # the key from the tag...
        'searchParams.get("k")',  # ...or from ?k=
        "/v1/batch",
        "sendBeacon",
        "pushState",
        "popstate",
        "pagehide",
        "setInterval(flush, 2000)",
        "doNotTrack",
        "globalPrivacyControl",
        "messageId",
    ):
        assert feature in text, feature
    # No third-party code: the only URL it talks to is its own origin's.
    assert "http://" not in text and "https://" not in text


def test_keyed_script_carries_the_workspace_dnt_choice(
    client: TestClient, make_workspace: Any, engine: Any
) -> None:
    respects: Workspace = make_workspace()
    ignores: Workspace = make_workspace()
    r = ignores.api.put("/sources/website/settings", json={"respectDoNotTrack": False})
    assert r.status_code == 200
    r = client.get("/t.js", params={"k": get_write_key(engine, respects.id)})
    assert r.headers["cache-control"] == "public, max-age=300"
    assert b'var CFG = {"dnt":true};' in r.content
    assert b'var CFG = {"dnt":false};' in served(client, get_write_key(engine, ignores.id))
    # An unknown key gets the generic script (which respects DNT).
    assert served(client, "itlyw_unknown") == TRACKER


# ---- what it does in a page ------------------------------------------------------------------


@pytest.fixture
def collector(app: Any) -> Collector:
    return collector_of(app)


@needs_node
def test_page_on_load_cookie_and_batch_to_its_own_origin(client: TestClient) -> None:
    out = run_tracker(served(client), key="itlyw_k1", referrer="https://search.example/")
    assert out["intervals"] == [2000]
    (cookie,) = out["cookieWrites"]
    assert cookie.startswith("itly_aid=")
    assert "max-age=31536000" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert out["beacons"] == []  # batched: nothing sent until the flush
    out = run_tracker(served(client), key="itlyw_k1", steps=[["pagehide"]])
    (beacon,) = out["beacons"]
    assert beacon["url"] == "https://intently.example.com/v1/batch"
    assert beacon["type"] == "text/plain"
    body = beacon["body"]
    assert body["writeKey"] == "itlyw_k1" and "sentAt" in body
    (page,) = body["batch"]
    aid = out["cookieWrites"][0].split(";")[0].split("=", 1)[1]
    assert page["type"] == "page" and page["anonymousId"] == aid
    assert page["context"]["page"]["path"] == "/"
    assert page["context"]["page"]["url"] == "https://www.customer.example/"
    assert page["context"]["page"]["title"] == "Welcome"
    assert len(page["messageId"]) >= 32 and "originalTimestamp" in page


@needs_node
def test_key_from_data_attribute_and_cookie_reused(client: TestClient) -> None:
    out = run_tracker(
        served(client),
        key=None,
        attrs={"data-key": "itlyw_attr"},
        cookie="other=1; itly_aid=visitor-42",
        steps=[["pagehide"]],
    )
    (beacon,) = out["beacons"]
    assert beacon["body"]["writeKey"] == "itlyw_attr"
    assert beacon["body"]["batch"][0]["anonymousId"] == "visitor-42"
    assert out["cookieWrites"][0].startswith("itly_aid=visitor-42;")
    # No key anywhere: nothing is sent, and the API is there but does nothing.
    out = run_tracker(served(client), key=None, steps=[["call", "track", "x"], ["pagehide"]])
    assert out["beacons"] == [] and "track" in out["api"]


@needs_node
def test_history_navigation_track_identify_group(client: TestClient) -> None:
    out = run_tracker(
        served(client),
        key="itlyw_k2",
        steps=[
            ["call", "identify", "user-9", {"email": "jo@initech.com"}],
            ["call", "group", "acct-7", {"website": "initech.com"}],
            ["navigate", "/pricing?plan=pro"],
            ["navigate", "/pricing?plan=pro"],  # the same URL again is not a new page
            ["call", "track", "Demo Requested", {"plan": "pro"}],
            ["hidden"],
        ],
    )
    (beacon,) = out["beacons"]
    batch = beacon["body"]["batch"]
    assert [e["type"] for e in batch] == ["page", "identify", "group", "page", "track"]
    assert len({e["messageId"] for e in batch}) == 5
    assert batch[1]["userId"] == "user-9" and batch[1]["traits"]["email"] == "jo@initech.com"
    assert batch[2]["groupId"] == "acct-7"
    second = batch[3]["context"]["page"]
    assert second["path"] == "/pricing" and second["search"] == "?plan=pro"
    assert second["referrer"] == "https://www.customer.example/"
    assert batch[4]["event"] == "Demo Requested" and batch[4]["properties"] == {"plan": "pro"}
    assert batch[4]["userId"] == "user-9" and batch[4]["context"]["groupId"] == "acct-7"


@needs_node
def test_queued_calls_before_load_and_batches_of_twenty(client: TestClient) -> None:
    steps: list[list[Any]] = [["call", "track", f"e{i}"] for i in range(25)]
    out = run_tracker(
        served(client), key="itlyw_k3", pre=[["track", "Early"]], steps=[*steps, ["pagehide"]]
    )
    sizes = [len(b["body"]["batch"]) for b in out["beacons"]]
    assert sizes == [20, 7]  # page + Early + 25 tracks
    names = [e.get("event") for b in out["beacons"] for e in b["body"]["batch"]]
    assert names[:3] == [None, "Early", "e0"]


@needs_node
def test_do_not_track_and_gpc(client: TestClient, make_workspace: Any, engine: Any) -> None:
    respects: Workspace = make_workspace()
    ignores: Workspace = make_workspace()
    ignores.api.put("/sources/website/settings", json={"respectDoNotTrack": False})
    k1, k2 = get_write_key(engine, respects.id), get_write_key(engine, ignores.id)
    for opts in ({"dnt": "1"}, {"gpc": True}):
        out = run_tracker(served(client, k1), key=k1, steps=[["pagehide"]], **opts)
        assert out["beacons"] == [] and out["cookieWrites"] == [], opts
        out = run_tracker(served(client, k2), key=k2, steps=[["pagehide"]], **opts)
        assert len(out["beacons"]) == 1, opts
    # The generic script (key in data-key; settings unknown) respects it.
    out = run_tracker(served(client), key=None, attrs={"data-key": k2}, dnt="1",
                      steps=[["pagehide"]])  # fmt: skip
    assert out["beacons"] == []


@needs_node
def test_what_the_tracker_sends_lands_as_signals(
    client: TestClient, workspace: Workspace, engine: Any, collector: Collector
) -> None:
    key = get_write_key(engine, workspace.id)
    out = run_tracker(
        served(client, key),
        key=key,
        steps=[
            ["call", "group", "acct-1", {"website": "https://www.tyrell-corp.com"}],
            ["navigate", "/pricing"],
            ["call", "track", "Form Submitted", {}],
            ["pagehide"],
        ],
    )
    (beacon,) = out["beacons"]
    r = client.post(
        "/v1/batch",
        content=json.dumps(beacon["body"]),
        headers={"Content-Type": beacon["type"], "Origin": "https://www.customer.example"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "https://www.customer.example"
    assert collector.flush().written == 4
    r = workspace.api.post(
        "/accounts", json={"accounts": [{"domain": "tyrell-corp.com", "name": "Tyrell"}]}
    )
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    items = workspace.api.get(f"/accounts/{aid}/signals").json()["data"]["data"]
    # The group call is the browser's word (the write key is public): its events count as
    # page views of their pages, the form's included (docs/deploy.md, the trust model).
    assert sorted((i["type"], i["topic"]) for i in items) == [
        ("page_view", "home"),
        ("page_view", "pricing"),
        ("page_view", "pricing"),
    ]
    assert {i["matchMethod"] for i in items} == {"group"}


def test_static_file_is_packaged() -> None:
    root = Path(__file__).resolve().parents[2]
    pyproject = (root / "pyproject.toml").read_text()
    assert '"ingest/static/*"' in pyproject
    assert (root / "src/intently/ingest/static/t.js").read_bytes() == TRACKER
