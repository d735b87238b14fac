"""The segments pages: the list, creating static and dynamic segments (the rule builder,
raw JSON, the live preview), a segment's page (rename, status, rule, members keyset-paged)
and filling static segments by domain and CSV upload."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.dashboard import Dashboard

UNKNOWN_ID = "0123456789abcdef01234567"
_LOCATION = re.compile(r"^/app/segments/([0-9a-f]{24})\?done=created$")
_MEMBER = re.compile(r'<a href="/app/accounts/([0-9a-f]{24})">')
_NEXT = re.compile(r'href="(/app/segments/[0-9a-f]{24}\?cursor=[^"#]+)#members"')


def push(api: Api, *items: dict[str, Any]) -> list[str]:
    r = api.post("/accounts", json={"accounts": list(items), "upsert": True})
    assert r.status_code == 200, r.text
    return [x["rtp_aid"] for x in r.json()["data"]["results"]]


def acc(domain: str, *tags: str, **extra: Any) -> dict[str, Any]:
    return {"domain": domain, "name": extra.pop("name", domain), "tags": list(tags), **extra}


def create(board: Dashboard, **form: Any) -> str:
    """Create a segment through the form; its id."""
    data = {"type": "static", "status": "active", **form}
    r = board.post("/app/segments", data)
    assert r.status_code == 303, r.text
    found = _LOCATION.match(r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def builder(match: str, *rows: tuple[str, str, str]) -> dict[str, Any]:
    """The rule builder's form fields for these (field, op, value) rows."""
    return {
        "mode": "builder",
        "match": match,
        "field": [r[0] for r in rows],
        "op": [r[1] for r in rows],
        "value": [r[2] for r in rows],
    }


def members(board: Dashboard, sid: str) -> list[str]:
    r = board.get(f"/app/segments/{sid}")
    assert r.status_code == 200, r.text
    return _MEMBER.findall(r.text)


def api_members(api: Api, sid: str) -> list[str]:
    r = api.get(f"/segments/{sid}/accounts", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [x["rtp_aid"] for x in r.json()["data"]["data"]]


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# ---- the list ---------------------------------------------------------------------------------


def test_an_empty_workspace_shows_an_empty_state(admin: Dashboard) -> None:
    r = admin.get("/app/segments")
    assert r.status_code == 200
    assert "No segments yet" in r.text
    assert 'href="/app/segments/new"' in r.text
    for show in ("archived", "all"):
        r = admin.get(f"/app/segments?show={show}")
        assert r.status_code == 200 and "No segments yet" in r.text
    create(admin, name="Live one")
    assert "No archived segments" in admin.get("/app/segments?show=archived").text


def test_the_list_shows_name_type_status_members_and_updated(admin: Dashboard) -> None:
    api = admin.ws.api
    push(api, acc("one.io", "hot"), acc("two.io", "hot"), acc("three.io"))
    create(
        admin, name="Hot accounts", type="dynamic", **builder("all", ("tags", "contains", "hot"))
    )
    create(admin, name="Board list", status="draft")
    r = admin.get("/app/segments")
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Board list static draft 0 just now" in page
    assert "Hot accounts dynamic active 2 just now" in page
    assert page.index("Board list") < page.index("Hot accounts")  # by name


def test_archived_segments_have_their_own_tab(admin: Dashboard) -> None:
    sid = create(admin, name="Old list")
    assert admin.post(f"/app/segments/{sid}/status", {"status": "archived"}).status_code == 303
    live = admin.get("/app/segments")
    assert "No active or draft segments" in live.text and "Old list" not in live.text
    assert "Archived (1)" in live.text
    assert "Old list" in admin.get("/app/segments?show=archived").text
    assert "Old list" in admin.get("/app/segments?show=all").text


def test_a_bad_list_filter_is_named(admin: Dashboard) -> None:
    r = admin.get("/app/segments?show=deleted")
    assert r.status_code == 400
    assert "show must be live, archived or all, got &#39;deleted&#39;" in r.text


# ---- creating ---------------------------------------------------------------------------------


def test_the_new_segment_form_offers_built_in_and_custom_fields(admin: Dashboard) -> None:
    r = admin.ws.api.post(
        "/accounts/custom-field", json={"label": "Tier <b>", "labelType": "number"}
    )
    assert r.status_code == 201, r.text
    page = admin.get("/app/segments/new?type=dynamic")
    assert page.status_code == 200
    assert '<option value="rtp_account_score">Account score</option>' in page.text
    assert '<option value="customFields.TIER_&lt;B&gt;_C">Tier &lt;b&gt;</option>' in page.text
    assert '<option value="dynamic" selected>' in page.text
    assert 'hx-post="/app/segments/preview"' in page.text


def test_creating_a_static_segment(admin: Dashboard) -> None:
    sid = create(admin, name="  Key accounts ")
    page = admin.get(f"/app/segments/{sid}?done=created")
    assert page.status_code == 200
    assert "Segment created." in page.text
    assert "<h1>Key accounts</h1>" in page.text
    assert "No members yet" in page.text
    assert "Add accounts" in page.text and 'enctype="multipart/form-data"' in page.text
    data = admin.ws.api.get(f"/segments/{sid}").json()["data"]
    assert (data["name"], data["type"], data["status"], data["rules"]) == (
        "Key accounts", "static", "active", None,
    )  # fmt: skip


def test_creating_a_dynamic_segment_with_the_builder(admin: Dashboard) -> None:
    api = admin.ws.api
    hot, warm, _ = push(api, acc("hot.io", "hot"), acc("warm.io", "warm"), acc("cold.io"))
    form = builder(
        "any",
        ("tags", "contains", "hot"),
        ("", "eq", ""),  # an unused row is left out
        ("domain", "in", "warm.io, nowhere.io"),
    )
    sid = create(admin, name="Hot or warm", type="dynamic", **form)
    data = api.get(f"/segments/{sid}").json()["data"]
    assert data["rules"] == {
        "any": [
            {"field": "tags", "op": "contains", "value": "hot"},
            {"field": "domain", "op": "in", "value": ["warm.io", "nowhere.io"]},
        ]
    }
    assert sorted(members(admin, sid)) == sorted([hot, warm])
    page = admin.get(f"/app/segments/{sid}").text
    # The stored rule comes back in the builder, and as JSON.
    assert '<option value="any" selected>' in page
    assert 'value="warm.io, nowhere.io"' in page
    assert "&#34;nowhere.io&#34;" in page or "&quot;nowhere.io&quot;" in page


def test_numbers_in_the_builder_are_numbers(admin: Dashboard) -> None:
    api = admin.ws.api
    push(api, acc("n.io"))
    form = builder(
        "all", ("rtp_account_score", "between", "0, 50.5"), ("createdAt", "within_days", "30")
    )
    sid = create(admin, name="Low scores", type="dynamic", status="draft", **form)
    rules = api.get(f"/segments/{sid}").json()["data"]["rules"]
    assert rules == {
        "all": [
            {"field": "rtp_account_score", "op": "between", "value": [0, 50.5]},
            {"field": "createdAt", "op": "within_days", "value": 30},
        ]
    }
    assert len(members(admin, sid)) == 1


def test_a_custom_field_condition(admin: Dashboard) -> None:
    api = admin.ws.api
    r = api.post("/accounts/custom-field", json={"label": "Employees", "labelType": "number"})
    assert r.status_code == 201, r.text
    big, _ = push(
        api,
        acc("big.io", customFields={"EMPLOYEES_C": 5000}),
        acc("small.io", customFields={"EMPLOYEES_C": 12}),
    )
    form = builder("all", ("customFields.EMPLOYEES_C", "gte", "1000"))
    sid = create(admin, name="Big companies", type="dynamic", **form)
    assert members(admin, sid) == [big]
    page = admin.get(f"/app/segments/{sid}").text
    assert '<option value="customFields.EMPLOYEES_C" selected>Employees</option>' in page
    wrong = admin.post(
        f"/app/segments/{sid}/rules", builder("all", ("customFields.EMPLOYEES_C", "contains", "x"))
    )
    assert wrong.status_code == 400
    assert (
        "Condition 1 (Employees), op: op contains does not apply to number field "
        "customFields.EMPLOYEES_C" in text_of(wrong.text)
    )


def test_creating_a_dynamic_segment_from_json(admin: Dashboard) -> None:
    api = admin.ws.api
    [aid, _] = push(api, acc("json.io", "a", "b"), acc("other.io", "a"))
    doc = (
        '{"all": [{"field": "tags", "op": "contains", "value": "a"}, '
        '{"not": {"field": "tags", "op": "not_contains", "value": "b"}}]}'
    )
    sid = create(admin, name="Nested", type="dynamic", mode="json", rules_json=doc)
    assert members(admin, sid) == [aid]
    page = admin.get(f"/app/segments/{sid}").text
    # A nested rule is edited as JSON: the JSON editor is the chosen one.
    assert 'name="mode" value="json" checked' in page


def test_every_problem_of_a_rule_is_named_with_its_condition_and_value(admin: Dashboard) -> None:
    form = builder(
        "all",
        ("domain", "gt", "x"),
        ("rtp_account_score", "gte", "lots"),
        ("tags", "in", ""),
    )
    r = admin.post("/app/segments", {"name": "Broken", "type": "dynamic", **form})
    assert r.status_code == 400
    page = text_of(r.text)
    assert "The rule was not saved" in page
    assert "Condition 1 (Domain), op: op gt does not apply to text field domain" in page
    assert "Condition 2 (Account score), value: value must be a number" in page
    assert "(got 'lots')" in page
    assert "Condition 3 (Tags), value: value must be a non-empty array" in page
    # What was typed stays in the form.
    assert 'value="lots"' in r.text and 'value="Broken"' in r.text
    assert admin.ws.api.get("/segments", params={"type": "all"}).json()["data"]["data"] == []


def test_json_rules_name_every_problem_by_path(admin: Dashboard) -> None:
    doc = (
        '{"all": [{"field": "nope", "op": "eq", "value": 1}, '
        '{"signal": {"source": "g2"}, "op": "gte", "value": 1}]}'
    )
    r = admin.post(
        "/app/segments", {"name": "J", "type": "dynamic", "mode": "json", "rules_json": doc}
    )
    assert r.status_code == 400
    page = text_of(r.text)
    assert "rules.all.0.field: field must be one of" in page and "got 'nope'" in page
    assert "rules.all.1.window_days: window_days should not be empty" in page
    bad = admin.post(
        "/app/segments", {"name": "J", "type": "dynamic", "mode": "json", "rules_json": "{oops"}
    )
    assert bad.status_code == 400
    assert "rules_json is not valid JSON: Expecting property name" in text_of(bad.text)
    empty = admin.post("/app/segments", {"name": "J", "type": "dynamic", **builder("all")})
    assert "add at least one condition" in empty.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "  "}, "name: name should not be empty"),
        ({"name": "x", "type": "smart"}, "type must be static or dynamic, got 'smart'"),
        ({"name": "x", "status": "live"}, "status must be active, draft or archived, got 'live'"),
        (
            {"name": "x", "mode": "yaml", "type": "dynamic"},
            "mode must be builder or json, got 'yaml'",
        ),
        (
            {"name": "x", "type": "dynamic", "mode": "builder", "match": "some"},
            "match must be all or any, got 'some'",
        ),
    ],
)
def test_bad_form_values_are_named(admin: Dashboard, form: dict[str, str], message: str) -> None:
    r = admin.post("/app/segments", form)
    assert r.status_code == 400
    assert message in text_of(r.text)


def test_a_name_is_shown_escaped(admin: Dashboard) -> None:
    evil = "<script>alert(1)</script>"
    sid = create(admin, name=evil)
    for path in ("/app/segments", f"/app/segments/{sid}"):
        r = admin.get(path)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        assert evil not in r.text
    push(admin.ws.api, acc("evil.io", name=evil))
    r = admin.post(f"/app/segments/{sid}/members/add", {"domains": "evil.io"})
    assert r.status_code == 200 and evil not in r.text


# ---- the live preview ---------------------------------------------------------------------------


def test_the_preview_shows_the_count_and_sample_accounts(admin: Dashboard) -> None:
    api = admin.ws.api
    aids = push(api, *[acc(f"p{i}.io", "hot") for i in range(7)], acc("cold.io"))
    r = admin.htmx(
        "POST", "/app/segments/preview", data=builder("all", ("tags", "contains", "hot"))
    )
    assert r.status_code == 200, r.text
    assert '<span class="big">7</span> accounts match now' in r.text
    shown = _MEMBER.findall(r.text)
    assert shown == sorted(aids[:7])[:5]
    assert "and 2 more." in r.text
    # The JSON editor is kept in step with the builder, out of band.
    assert 'id="rules-json"' in r.text and 'hx-swap-oob="true"' in r.text
    none = admin.htmx(
        "POST", "/app/segments/preview", data=builder("all", ("tags", "contains", "nobody"))
    )
    assert '<span class="big">0</span> accounts match now' in none.text


def test_the_preview_names_problems(admin: Dashboard) -> None:
    r = admin.htmx(
        "POST", "/app/segments/preview", data=builder("all", ("rtp_account_score", "gt", "abc"))
    )
    assert r.status_code == 200
    page = text_of(r.text)
    assert "The rule cannot be used yet" in page
    assert "Condition 1 (Account score), value: value must be a number" in page
    assert "(got 'abc')" in page
    static = admin.htmx("POST", "/app/segments/preview", data={"type": "static"})
    assert "Static segments take no rule" in static.text


def test_the_preview_names_a_rule_too_big_and_a_workspace_with_too_many_previews(
    admin: Dashboard,
) -> None:
    conditions = [{"field": "rtp_account_score", "op": "gte", "value": i} for i in range(1200)]
    doc = json.dumps({"any": conditions})
    r = admin.htmx("POST", "/app/segments/preview", data={"mode": "json", "rules_json": doc})
    assert r.status_code == 200
    assert "rules: rules holds 1200 conditions; a rule may hold at most 200" in text_of(r.text)
    slots = admin.client.app.state.intently.previews
    small = builder("all", ("tags", "contains", "x"))
    with slots.hold(admin.ws.id), slots.hold(admin.ws.id):  # two previews running
        r = admin.htmx("POST", "/app/segments/preview", data=small)
        assert r.status_code == 200
        assert "The rule cannot be used yet" in text_of(r.text)
        assert "Too many rule previews, dry runs and backtests running" in text_of(r.text)
    r = admin.htmx("POST", "/app/segments/preview", data=small)
    assert "accounts match now" in r.text


def test_the_preview_from_json_redraws_the_builder_rows(admin: Dashboard) -> None:
    doc = '{"any": [{"field": "name", "op": "starts_with", "value": "Ac"}]}'
    r = admin.htmx("POST", "/app/segments/preview", data={"mode": "json", "rules_json": doc})
    assert r.status_code == 200
    assert '<tbody id="rule-rows" hx-swap-oob="true">' in r.text
    assert '<option value="starts_with" selected>' in r.text
    assert '<select name="match" id="rule-match" hx-swap-oob="true">' in r.text


def test_the_preview_needs_the_csrf_token(admin: Dashboard) -> None:
    r = admin.htmx(
        "POST",
        "/app/segments/preview",
        data=builder("all", ("tags", "contains", "x")),
        headers={"X-CSRF-Token": "wrong"},
    )
    assert r.status_code == 403


def test_a_condition_row_follows_its_field(admin: Dashboard) -> None:
    r = admin.htmx("GET", "/app/segments/rule-row?field=rtp_account_score&op=contains&value=5")
    assert r.status_code == 200
    assert r.headers["HX-Trigger"] == "rule-changed"
    assert r.text.lstrip().startswith("<tr>")
    # contains does not apply to numbers: the row falls back to the first number operator.
    assert '<option value="eq" selected>' in r.text
    assert '<option value="between">' in r.text and 'value="contains"' not in r.text
    text = admin.htmx("GET", "/app/segments/rule-row?field=domain&op=starts_with")
    assert '<option value="starts_with" selected>' in text.text
    blank = admin.htmx("GET", "/app/segments/rule-row")
    assert '<option value="" selected>' not in blank.text and "choose a field" in blank.text


# ---- a segment's page ---------------------------------------------------------------------------


def test_rename_and_status_transitions(admin: Dashboard) -> None:
    api = admin.ws.api
    push(api, acc("m.io", "hot"))
    sid = create(admin, name="First", type="dynamic", **builder("all", ("tags", "contains", "hot")))
    r = admin.post(f"/app/segments/{sid}/name", {"name": "Second"})
    assert r.status_code == 303 and r.headers["location"] == f"/app/segments/{sid}?done=renamed"
    assert api.get(f"/segments/{sid}").json()["data"]["name"] == "Second"
    page = admin.get(f"/app/segments/{sid}").text
    assert ">Move to draft</button>" in page and ">Archive</button>" in page
    assert admin.post(f"/app/segments/{sid}/status", {"status": "draft"}).status_code == 303
    assert api.get(f"/segments/{sid}").json()["data"]["status"] == "draft"
    assert admin.post(f"/app/segments/{sid}/status", {"status": "archived"}).status_code == 303
    seg = api.get(f"/segments/{sid}").json()["data"]
    assert (seg["status"], seg["memberCount"]) == ("archived", 0)
    page = admin.get(f"/app/segments/{sid}").text
    assert "Archived segments keep no members" in page
    assert ">Restore as active</button>" in page and ">Restore as draft</button>" in page
    assert admin.post(f"/app/segments/{sid}/status", {"status": "active"}).status_code == 303
    assert api.get(f"/segments/{sid}").json()["data"]["memberCount"] == 1  # recomputed


def test_bad_rename_and_status_are_named(admin: Dashboard) -> None:
    sid = create(admin, name="Keep")
    r = admin.post(f"/app/segments/{sid}/name", {"name": " "})
    assert r.status_code == 400 and "name: name should not be empty" in r.text
    r = admin.post(f"/app/segments/{sid}/status", {"status": "gone"})
    assert r.status_code == 400
    assert "status must be active, draft or archived, got &#39;gone&#39;" in r.text


def test_editing_the_rule_recomputes_the_members(admin: Dashboard) -> None:
    api = admin.ws.api
    a, b = push(api, acc("a.io", "x"), acc("b.io", "y"))
    sid = create(admin, name="Rule", type="dynamic", **builder("all", ("tags", "contains", "x")))
    assert members(admin, sid) == [a]
    r = admin.post(f"/app/segments/{sid}/rules", builder("all", ("tags", "contains", "y")))
    assert r.status_code == 303 and r.headers["location"].endswith("?done=rules")
    assert members(admin, sid) == [b]
    assert "Rule saved; membership recomputed." in admin.get(r.headers["location"]).text
    bad = admin.post(f"/app/segments/{sid}/rules", builder("all", ("tags", "gte", "1")))
    assert bad.status_code == 400
    assert "Condition 1 (Tags), op: op gte does not apply to multi field tags" in text_of(bad.text)
    assert members(admin, sid) == [b]  # unchanged
    static = create(admin, name="Static")
    r = admin.post(f"/app/segments/{static}/rules", builder("all", ("tags", "contains", "y")))
    assert r.status_code == 400 and "is a static segment" in r.text


def test_recompute_now(admin: Dashboard) -> None:
    api = admin.ws.api
    push(api, acc("r.io", "z"))
    sid = create(admin, name="R", type="dynamic", **builder("all", ("tags", "contains", "z")))
    r = admin.post(f"/app/segments/{sid}/refresh")
    assert r.status_code == 200
    assert "Membership recomputed: 0 entered, 0 left." in r.text


def test_members_are_keyset_paginated(admin: Dashboard) -> None:
    api = admin.ws.api
    aids = push(api, *[acc(f"m{i:02d}.io", "many") for i in range(57)])
    sid = create(admin, name="Many", type="dynamic", **builder("all", ("tags", "contains", "many")))
    first = admin.get(f"/app/segments/{sid}")
    page1 = _MEMBER.findall(first.text)
    assert len(page1) == 50
    nxt = _NEXT.search(first.text)
    assert nxt, first.text[-2000:]
    second = admin.get(unescape(nxt.group(1)))
    assert second.status_code == 200
    page2 = _MEMBER.findall(second.text)
    assert page1 + page2 == sorted(aids)
    assert not _NEXT.search(second.text) and "← First page" in second.text
    bad = admin.get(f"/app/segments/{sid}?cursor=forged")
    assert bad.status_code == 400
    assert "cursor is not one this member list gave out: &#39;forged&#39;" in bad.text
    # A cursor of another segment's list is refused too.
    other = create(
        admin, name="Other", type="dynamic", **builder("all", ("tags", "contains", "many"))
    )
    stolen = unescape(nxt.group(1)).split("?", 1)[1]
    assert admin.get(f"/app/segments/{other}?{stolen}").status_code == 400


# ---- static members -----------------------------------------------------------------------------


def test_adding_and_removing_accounts_by_domain(admin: Dashboard) -> None:
    api = admin.ws.api
    a, b, _ = push(api, acc("add-a.io"), acc("add-b.io"), acc("add-c.io"))
    sid = create(admin, name="Hand picked")
    r = admin.post(
        f"/app/segments/{sid}/members/add",
        {"domains": "add-a.io\nhttps://www.ADD-B.io/path, missing.io\nnot a domain!"},
    )
    assert r.status_code == 200, r.text
    page = text_of(r.text)
    assert "Added by domain Added 2 Already members 0 Not found missing.io" in page
    assert "line 3: not" in page and "line 3: a" in page and "line 3: domain!" in page
    assert sorted(api_members(api, sid)) == sorted([a, b])
    again = admin.post(f"/app/segments/{sid}/members/add", {"domains": "add-a.io"})
    assert "Added 0 Already members 1" in text_of(again.text)
    removed = admin.post(f"/app/segments/{sid}/members/remove", {"domains": "add-a.io\nadd-c.io"})
    assert "Removed 1 Not members 1" in text_of(removed.text)
    by_id = admin.post(f"/app/segments/{sid}/members/remove", {"rtp_aid": b})
    assert by_id.status_code == 200 and "Removed 1" in text_of(by_id.text)
    assert api_members(api, sid) == []
    assert "No members yet" in by_id.text


def test_bad_domain_boxes_are_named(admin: Dashboard) -> None:
    sid = create(admin, name="S")
    r = admin.post(f"/app/segments/{sid}/members/add", {"domains": "  \n "})
    assert r.status_code == 400 and "domains should not be empty" in r.text
    many = "\n".join(f"d{i}.io" for i in range(1001))
    r = admin.post(f"/app/segments/{sid}/members/add", {"domains": many})
    assert r.status_code == 400 and "at most 1000 domains at a time (got 1001)" in r.text
    r = admin.post(f"/app/segments/{sid}/members/remove", {"rtp_aid": "nope"})
    assert r.status_code == 400
    assert (
        "rtp_aids.0: each value in rtp_aids must be a 24-character hex id (got &#39;nope&#39;)"
        in r.text
    )


def test_a_dynamic_or_archived_segment_takes_no_hand_added_accounts(admin: Dashboard) -> None:
    push(admin.ws.api, acc("x.io", "t"))
    dyn = create(admin, name="D", type="dynamic", **builder("all", ("tags", "contains", "t")))
    r = admin.post(f"/app/segments/{dyn}/members/add", {"domains": "x.io"})
    assert r.status_code == 400 and f"Segment &#39;{dyn}&#39; is not a static segment" in r.text
    assert "Add accounts" not in admin.get(f"/app/segments/{dyn}").text
    arch = create(admin, name="A", status="archived")
    r = admin.post(f"/app/segments/{arch}/members/add", {"domains": "x.io"})
    assert r.status_code == 400 and "cannot accept new members" in r.text
    assert "restore it to add accounts" in admin.get(f"/app/segments/{arch}").text


def upload(board: Dashboard, sid: str, content: bytes, name: str = "list.csv") -> Any:
    return board.client.post(
        f"/app/segments/{sid}/upload",
        data={"csrf_token": board.csrf},
        files={"file": (name, content, "text/csv")},
        follow_redirects=False,
    )


def test_csv_upload_reports_every_count(admin: Dashboard) -> None:
    api = admin.ws.api
    a, b = push(api, acc("up-a.io"), acc("up-b.io"))
    sid = create(admin, name="Uploaded")
    admin.post(f"/app/segments/{sid}/members/add", {"domains": "up-b.io"})
    csv = (
        b"Company,Website\nA,up-a.io\nB,https://up-b.io\nC,unknown.io\nD,bad domain\n"
        b"A again,UP-A.IO\n,\n"
    )
    r = upload(admin, sid, csv)
    assert r.status_code == 200, r.text
    page = text_of(r.text)
    assert "Upload of list.csv" in page
    assert (
        "Rows read 5 Added 1 Already members 1 Unknown domains 1 Invalid values 1 Duplicate rows 1"
        in page
    )
    assert "unknown.io" in page
    assert "5 bad domain domain must be a valid domain name" in page  # line 5
    assert sorted(api_members(api, sid)) == sorted([a, b])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file: choose a CSV file of domains to upload"),
        (b"   \n", "is empty: expected a CSV of domains"),
        (b"\xff\xfe\x00d", "is not UTF-8 text"),
        (b"domain\n", "The CSV holds no domains"),
    ],
)
def test_bad_uploads_are_named(admin: Dashboard, content: bytes, message: str) -> None:
    sid = create(admin, name="U")
    r = upload(admin, sid, content, name="" if not content else "f.csv")
    assert r.status_code == 400
    assert message in unescape(r.text)


def test_an_upload_too_large_is_refused(admin: Dashboard, app: Any) -> None:
    sid = create(admin, name="Big")
    limit = app.state.intently.settings.max_body_bytes
    r = upload(admin, sid, b"domain\n" + b"a.io\n" * (limit // 5 + 1), name="big.csv")
    assert r.status_code == 400
    assert f"file: &#39;big.csv&#39; is larger than the limit of {limit:,} bytes" in r.text


# ---- who may do what ----------------------------------------------------------------------------


def test_members_may_view_and_change_segments(member: Dashboard) -> None:
    assert member.get("/app/segments").status_code == 200
    assert member.get("/app/segments/new").status_code == 200
    sid = create(member, name="By a member")
    assert member.get(f"/app/segments/{sid}").status_code == 200
    assert member.post(f"/app/segments/{sid}/name", {"name": "Renamed"}).status_code == 303


def routes(sid: str) -> list[str]:
    return [
        "/app/segments",
        "/app/segments/preview",
        f"/app/segments/{sid}/name",
        f"/app/segments/{sid}/status",
        f"/app/segments/{sid}/rules",
        f"/app/segments/{sid}/refresh",
        f"/app/segments/{sid}/members/add",
        f"/app/segments/{sid}/members/remove",
        f"/app/segments/{sid}/upload",
    ]


def test_every_change_needs_the_csrf_token(admin: Dashboard) -> None:
    sid = create(admin, name="Guarded")
    for path in routes(sid):
        r = admin.client.post(
            path, data={"name": "x", "csrf_token": "forged"}, follow_redirects=False
        )
        assert r.status_code == 403, path
        r = admin.client.post(path, data={"name": "x"}, follow_redirects=False)
        assert r.status_code == 403, path
    assert admin.ws.api.get(f"/segments/{sid}").json()["data"]["name"] == "Guarded"


def test_anonymous_users_are_sent_to_sign_in(admin: Dashboard, client: Any) -> None:
    sid = create(admin, name="Private")
    for path in (
        "/app/segments",
        "/app/segments/new",
        f"/app/segments/{sid}",
        "/app/segments/rule-row",
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/app/login?next=/app/segments")
    r = client.post(f"/app/segments/{sid}/name", data={"name": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/app/login?next=/app/"


def test_another_workspaces_segments_are_not_found(admin: Dashboard, make_dashboard: Any) -> None:
    theirs = make_dashboard("admin")
    sid = create(theirs, name="Theirs")
    assert admin.get(f"/app/segments/{sid}").status_code == 404
    for path in routes(sid)[2:]:
        r = admin.post(path, {"name": "mine", "status": "archived", "domains": "a.io"})
        assert r.status_code == 404, path
    assert theirs.ws.api.get(f"/segments/{sid}").json()["data"]["name"] == "Theirs"
    assert "Theirs" not in admin.get("/app/segments?show=all").text
    r = admin.get(f"/app/segments/{UNKNOWN_ID}")
    assert r.status_code == 404 and f"Segment &#39;{UNKNOWN_ID}&#39; not found" in r.text
    r = admin.get("/app/segments/not-an-id")
    assert r.status_code == 400 and "Invalid segmentId format" in r.text
