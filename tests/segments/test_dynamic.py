"""Dynamic segments through HTTP: rules checked before anything is saved, membership
computed on create, status moves and rule changes as entered/exited events, the
`segments` field of accounts, E10's default, refresh and preview (spec scoring.md
"Segments", api-v1.md E10 and 10)."""

from __future__ import annotations

from typing import Any

import pytest

from intently import pipeline
from intently.kit.timefmt import US_PER_DAY, now_us
from tests.support.api import Api, Workspace
from tests.support.scoring import signals
from tests.support.segments import (
    HOT,
    UNKNOWN_ID,
    account,
    business,
    create,
    events,
    get_segment,
    item_segments,
    member_ids,
    moves,
    patch,
    push,
    unauthorised,
    validation,
)


def everything(api: Api) -> list[dict[str, Any]]:
    r = api.get("/segments", params={"type": "all", "status": "active,draft,archived"})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


# ---- create ------------------------------------------------------------------------------


def test_create_computes_membership_before_it_answers(api: Api) -> None:
    hot, warm = push(api, account("a.com", "hot"), account("b.com", "hot", "x"))
    push(api, account("c.com", "cold"), account("d.com"))
    data = create(api, "Hot", HOT)
    assert data == {
        "segmentId": data["segmentId"],
        "name": "Hot",
        "type": "dynamic",
        "status": "active",
        "rules": HOT,
        "memberCount": 2,
    }
    sid = data["segmentId"]
    assert get_segment(api, sid) == data
    assert member_ids(api, sid) == [hot, warm]
    assert moves(api, sid) == [("segment.entered", hot), ("segment.entered", warm)]
    assert item_segments(api, hot) == [{"segmentId": sid, "name": "Hot"}]


def test_entered_event_shape(api: Api) -> None:
    (aid,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT)["segmentId"]
    (e,) = events(api, type="segment.entered")
    assert e == {
        "eventId": e["eventId"],
        "type": "segment.entered",
        "occurredAt": e["occurredAt"],
        "rtp_aid": aid,
        "before": {"member": False},
        "after": {"member": True},
        "segment": {"segmentId": sid, "name": "Hot", "type": "dynamic"},
    }
    r = api.get(f"/events/{e['eventId']}")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == e


def test_draft_keeps_membership_silently(api: Api) -> None:
    (aid,) = push(api, account("a.com", "hot"))
    data = create(api, "Quiet", HOT, status="draft")
    assert data["memberCount"] == 1
    assert member_ids(api, data["segmentId"]) == [aid]
    assert item_segments(api, aid) == []
    assert events(api, type="segment.entered,segment.exited") == []


def test_created_archived_keeps_no_members(api: Api) -> None:
    push(api, account("a.com", "hot"))
    data = create(api, "Shelved", HOT, status="archived")
    assert data["memberCount"] == 0
    assert events(api, type="segment.entered") == []


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            {"field": "colour", "op": "eq", "value": "red"},
            {"rules.field": "isKnownField"},
        ),
        (
            {"field": "rtp_account_score", "op": "contains", "value": "x"},
            {"rules.op": "isValidOp"},
        ),
        (
            {"field": "rtp_account_score", "op": "gte", "value": "high"},
            {"rules.value": "isNumber"},
        ),
        (
            {"field": "tags", "op": "sounds_like", "value": "x"},
            {"rules.op": "isIn"},
        ),
        ({"every": []}, {"rules": "isRule"}),
    ],
    ids=["unknown-field", "op-for-type", "bad-value", "unknown-op", "no-combinator"],
)
def test_each_rule_problem_is_named(
    api: Api, rules: dict[str, Any], expected: dict[str, str]
) -> None:
    r = api.post("/segments", json={"name": "D", "type": "dynamic", "rules": rules})
    errors = validation(r)
    assert {p: next(iter(c)) for p, c in errors.items()} == expected
    assert everything(api) == []


BAD_TREE: dict[str, Any] = {
    "all": [
        {"field": "colour", "op": "eq", "value": "red"},
        {"field": "rtp_account_score", "op": "contains", "value": "x"},
        {"any": [{"field": "rtp_g2_intent_score", "op": "gte", "value": "high"}, HOT]},
        {"not": {"field": "customFields.NOPE", "op": "eq", "value": "1"}},
        {"signal": {"source": "g2", "type": "pricing"}, "window_days": 0, "op": "gte",
         "value": 1},
    ]
}  # fmt: skip
BAD_PATHS = {
    "rules.all.0.field",
    "rules.all.1.op",
    "rules.all.2.any.0.value",
    "rules.all.3.not.field",
    "rules.all.4.window_days",
}


def test_every_rule_problem_is_named_at_once_on_create(api: Api) -> None:
    push(api, account("a.com", "hot"))
    r = api.post("/segments", json={"name": "D", "type": "dynamic", "rules": BAD_TREE})
    errors = validation(r)
    assert set(errors) == BAD_PATHS
    assert "custom field 'NOPE' does not exist" in errors["rules.all.3.not.field"]["isKnownField"]
    assert (
        "op contains does not apply to number field rtp_account_score"
        in (errors["rules.all.1.op"]["isValidOp"])
    )
    assert everything(api) == []
    assert events(api, type="segment.entered") == []


def test_every_rule_problem_is_named_at_once_on_patch(api: Api) -> None:
    (aid,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT)["segmentId"]
    before = get_segment(api, sid)
    r = api.patch(f"/segments/{sid}", json={"rules": BAD_TREE, "name": "Renamed"})
    assert set(validation(r)) == BAD_PATHS
    assert get_segment(api, sid) == before
    assert moves(api, sid) == [("segment.entered", aid)]
    assert set(validation(api.patch(f"/segments/{sid}", json={"rules": None}))) == {"rules"}
    assert set(validation(api.patch(f"/segments/{sid}", json={"rules": []}))) == {"rules"}
    assert get_segment(api, sid) == before


def test_custom_field_rules_use_the_field_type(api: Api) -> None:
    r = api.post("/accounts/custom-field", json={"label": "Employees", "labelType": "number"})
    assert r.status_code in (200, 201), r.text
    key = r.json()["data"][0]["key"]
    big, _small = push(
        api,
        account("a.com", customFields={key: 500}),
        account("b.com", customFields={key: 5}),
    )
    bad = api.post(
        "/segments",
        json={"name": "D", "type": "dynamic",
              "rules": {"field": f"customFields.{key}", "op": "gte", "value": "many"}},
    )  # fmt: skip
    assert set(validation(bad)) == {"rules.value"}
    rule = {"field": f"customFields.{key}", "op": "gte", "value": 100}
    assert member_ids(api, create(api, "Big", rule)["segmentId"]) == [big]


# ---- status moves ------------------------------------------------------------------------


def test_status_moves_record_entries_and_exits(api: Api) -> None:
    a, b = push(api, account("a.com", "hot"), account("b.com", "hot"))
    sid = create(api, "Hot", HOT, status="draft")["segmentId"]
    assert moves(api, sid) == []

    assert patch(api, sid, status="active")["memberCount"] == 2
    assert moves(api, sid) == [("segment.entered", a), ("segment.entered", b)]
    assert item_segments(api, a) == [{"segmentId": sid, "name": "Hot"}]

    assert patch(api, sid, status="draft")["memberCount"] == 2  # drafts keep membership
    assert moves(api, sid)[2:] == [("segment.exited", a), ("segment.exited", b)]
    assert item_segments(api, a) == []

    patch(api, sid, status="active")
    assert patch(api, sid, status="archived")["memberCount"] == 0
    assert moves(api, sid)[4:] == [
        ("segment.entered", a),
        ("segment.entered", b),
        ("segment.exited", a),
        ("segment.exited", b),
    ]
    assert member_ids(api, sid) == []
    assert item_segments(api, b) == []


def test_coming_back_from_the_archive_recomputes(api: Api) -> None:
    (a,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT, status="archived")["segmentId"]
    (b,) = push(api, account("b.com", "hot"))
    assert patch(api, sid, status="active")["memberCount"] == 2
    assert moves(api, sid) == [("segment.entered", a), ("segment.entered", b)]
    assert item_segments(api, b) == [{"segmentId": sid, "name": "Hot"}]
    patch(api, sid, status="archived")
    patch(api, sid, status="draft")
    assert member_ids(api, sid) == [a, b]
    assert moves(api, sid)[2:] == [("segment.exited", a), ("segment.exited", b)]


def test_archived_to_draft_is_silent(api: Api) -> None:
    (a,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT, status="archived")["segmentId"]
    assert patch(api, sid, status="draft")["memberCount"] == 1
    assert moves(api, sid) == []
    assert item_segments(api, a) == []


def test_static_archive_keeps_rows_but_leaves_and_returns(api: Api) -> None:
    a, b = push(api, account("a.com"), account("b.com"))
    sid = create(api, "Static", type="static")["segmentId"]
    r = api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [a, b]})
    assert r.status_code == 200, r.text
    assert patch(api, sid, status="archived")["memberCount"] == 2
    assert item_segments(api, a) == []
    assert patch(api, sid, status="active")["memberCount"] == 2
    assert item_segments(api, a) == [{"segmentId": sid, "name": "Static"}]
    assert moves(api, sid) == [
        ("segment.entered", a),
        ("segment.entered", b),
        ("segment.exited", a),
        ("segment.exited", b),
        ("segment.entered", a),
        ("segment.entered", b),
    ]
    static_event = events(api, type="segment.exited")[0]
    assert static_event["segment"] == {"segmentId": sid, "name": "Static", "type": "static"}


def test_rename_shows_in_items_and_later_events(api: Api) -> None:
    (a,) = push(api, account("a.com", "hot"))
    sid = create(api, "Old", HOT)["segmentId"]
    patch(api, sid, name="New")
    assert item_segments(api, a) == [{"segmentId": sid, "name": "New"}]
    patch(api, sid, status="draft")
    last = events(api, type="segment.exited")[-1]
    assert last["segment"]["name"] == "New"


# ---- rule changes ------------------------------------------------------------------------


def test_patch_rules_records_exactly_the_difference(api: Api) -> None:
    a, b, c, d = push(
        api,
        account("a.com", "hot"),
        account("b.com", "hot", "big"),
        account("c.com", "big"),
        account("d.com"),
    )
    sid = create(api, "S", HOT)["segmentId"]
    big = {"field": "tags", "op": "contains", "value": "big"}
    data = patch(api, sid, rules=big)
    assert data["rules"] == big and data["memberCount"] == 2
    assert member_ids(api, sid) == [b, c]
    assert moves(api, sid)[2:] == [("segment.entered", c), ("segment.exited", a)]
    assert item_segments(api, a) == []
    assert item_segments(api, c) == [{"segmentId": sid, "name": "S"}]
    assert item_segments(api, d) == []
    # the same rule again changes nothing and records nothing
    patch(api, sid, rules=big)
    assert len(moves(api, sid)) == 4


def test_patch_rules_of_a_draft_recomputes_silently(api: Api) -> None:
    a, b = push(api, account("a.com", "hot"), account("b.com", "big"))
    sid = create(api, "S", HOT, status="draft")["segmentId"]
    patch(api, sid, rules={"field": "tags", "op": "contains", "value": "big"})
    assert member_ids(api, sid) == [b]
    assert moves(api, sid) == []
    assert a != b


def test_activating_with_a_new_rule_enters_only_the_new_members(api: Api) -> None:
    a, b = push(api, account("a.com", "hot"), account("b.com", "big"))
    sid = create(api, "S", HOT, status="draft")["segmentId"]
    patch(api, sid, status="active", rules={"field": "tags", "op": "contains", "value": "big"})
    assert member_ids(api, sid) == [b]
    assert moves(api, sid) == [("segment.entered", b)]
    assert a != b


def test_static_segment_takes_no_rules_on_patch(api: Api) -> None:
    sid = create(api, "S", type="static")["segmentId"]
    assert set(validation(api.patch(f"/segments/{sid}", json={"rules": HOT}))) == {"rules"}
    assert get_segment(api, sid)["rules"] is None


# ---- membership follows the data -----------------------------------------------------------


def test_account_changes_are_picked_up_by_scoring_runs(workspace: Workspace, engine: Any) -> None:
    api = workspace.api
    (a,) = push(api, account("a.com", "hot"))
    sid = create(api, "Hot", HOT)["segmentId"]
    (b,) = push(api, account("b.com", "hot"))
    push(api, account("a.com", "cold"))
    assert member_ids(api, sid) == [a]  # until membership is recomputed
    pipeline.run_scoring(engine, workspace.id, full=False)
    assert member_ids(api, sid) == [b]
    assert moves(api, sid) == [
        ("segment.entered", a),
        ("segment.entered", b),
        ("segment.exited", a),
    ]
    assert item_segments(api, a) == []
    assert item_segments(api, b) == [{"segmentId": sid, "name": "Hot"}]


def test_full_run_refreshes_through_the_set_wise_pass(
    workspace: Workspace, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("intently.pipeline.scoring.SEGMENTS_PER_BATCH_UP_TO", 0)
    api = workspace.api
    (a,) = push(api, account("a.com"))
    sid = create(api, "Hot", HOT)["segmentId"]
    push(api, account("a.com", "hot"))
    summary = pipeline.run_scoring(engine, workspace.id, full=True)
    assert summary.segment_moves == 1
    assert member_ids(api, sid) == [a]
    assert moves(api, sid) == [("segment.entered", a)]


# ---- refresh -----------------------------------------------------------------------------


def test_refresh_one_segment(api: Api) -> None:
    (a,) = push(api, account("a.com"))
    sid = create(api, "Hot", HOT)["segmentId"]
    other = create(api, "Also hot", HOT)["segmentId"]
    push(api, account("a.com", "hot"))
    r = api.post(f"/segments/{sid}/refresh")
    assert r.status_code == 200, r.text
    (done,) = r.json()["data"]["segments"]
    assert (done["segmentId"], done["entered"], done["exited"]) == (sid, 1, 0)
    assert isinstance(done["seconds"], float | int)
    assert member_ids(api, sid) == [a]
    assert member_ids(api, other) == []  # only the one asked for
    assert moves(api, sid) == [("segment.entered", a)]
    r = api.post(f"/segments/{sid}/refresh")
    assert r.json()["data"]["segments"][0]["entered"] == 0


def test_refresh_all_live_segments(api: Api) -> None:
    (a,) = push(api, account("a.com"))
    s1 = create(api, "One", HOT)["segmentId"]
    s2 = create(api, "Two", HOT, status="draft")["segmentId"]
    create(api, "Shelved", HOT, status="archived")
    create(api, "Static", type="static")
    push(api, account("a.com", "hot"))
    r = api.post("/segments/refresh")
    assert r.status_code == 200, r.text
    done = {s["segmentId"]: (s["entered"], s["exited"]) for s in r.json()["data"]["segments"]}
    assert done == {s1: (1, 0), s2: (1, 0)}
    assert member_ids(api, s1) == member_ids(api, s2) == [a]
    assert moves(api, s1) == [("segment.entered", a)]
    assert moves(api, s2) == []


def test_refresh_refusals(api: Api) -> None:
    static = create(api, "S", type="static")["segmentId"]
    shelved = create(api, "X", HOT, status="archived")["segmentId"]
    business(
        api.post(f"/segments/{static}/refresh"), 400, f"Segment '{static}' is not a dynamic segment"
    )
    business(
        api.post(f"/segments/{shelved}/refresh"),
        400,
        f"Segment '{shelved}' is archived and keeps no membership",
    )
    business(api.post(f"/segments/{UNKNOWN_ID}/refresh"), 404, f"Segment '{UNKNOWN_ID}' not found")
    business(api.post("/segments/nope/refresh"), 400, "Invalid segmentId format")
    unauthorised(api.with_key(None).post(f"/segments/{static}/refresh"))
    unauthorised(api.with_key(None).post("/segments/refresh"))


# ---- preview -----------------------------------------------------------------------------


def test_preview_counts_and_samples_the_matches(api: Api) -> None:
    hot = push(api, *[account(f"h{i}.com", "hot") for i in range(5)])
    push(api, account("cold.com", "cold"))
    r = api.post("/segments/preview", json={"rules": HOT, "sampleSize": 3})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["count"] == 5
    assert [x["rtp_aid"] for x in data["sample"]] == hot[:3]
    full = api.get(f"/accounts/{hot[0]}").json()["data"]
    assert data["sample"][0] == full  # the E1 item shape
    # the default sample is 10; 0 gives the count alone
    data = api.post("/segments/preview", json={"rules": HOT}).json()["data"]
    assert [x["rtp_aid"] for x in data["sample"]] == hot
    data = api.post("/segments/preview", json={"rules": HOT, "sampleSize": 0}).json()["data"]
    assert data == {"count": 5, "sample": []}
    # nothing saved
    assert everything(api) == []
    assert events(api, type="segment.entered") == []


def test_preview_matches_what_a_segment_holds(api: Api) -> None:
    push(api, *[account(f"d{i}.com", *(["hot"] if i % 3 else ["big"])) for i in range(12)])
    rule = {"any": [HOT, {"field": "domain", "op": "starts_with", "value": "d1"}]}
    data = api.post("/segments/preview", json={"rules": rule, "sampleSize": 100}).json()["data"]
    sid = create(api, "S", rule)["segmentId"]
    assert [x["rtp_aid"] for x in data["sample"]] == member_ids(api, sid)
    assert data["count"] == get_segment(api, sid)["memberCount"]


def test_preview_of_nothing(api: Api) -> None:
    r = api.post("/segments/preview", json={"rules": HOT})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"count": 0, "sample": []}


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, {"rules"}),
        ({"rules": HOT, "sampleSize": 101}, {"sampleSize"}),
        ({"rules": HOT, "sampleSize": -1}, {"sampleSize"}),
        ({"rules": HOT, "sampleSize": "5"}, {"sampleSize"}),
        ({"rules": HOT, "sampleSize": True}, {"sampleSize"}),
        ({"rules": HOT, "sampleSize": 2.5}, {"sampleSize"}),
        ({"rules": {"field": "colour", "op": "eq", "value": 1}}, {"rules.field"}),
        ({"rules": BAD_TREE}, BAD_PATHS),
    ],
)
def test_preview_validation(api: Api, body: dict[str, Any], paths: set[str]) -> None:
    assert set(validation(api.post("/segments/preview", json=body))) == paths


def test_preview_needs_a_key_and_json(api: Api) -> None:
    unauthorised(api.with_key(None).post("/segments/preview", json={"rules": HOT}))
    r = api.post("/segments/preview", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text


# ---- E10 and the accounts' segments field -----------------------------------------------------


def test_e10_default_lists_static_only_and_type_all_shows_dynamic(api: Api) -> None:
    static = create(api, "Static", type="static")["segmentId"]
    dyn = create(api, "Dyn", HOT)["segmentId"]
    draft = create(api, "Draft dyn", HOT, status="draft")["segmentId"]
    r = api.get("/segments")
    assert r.json()["data"]["data"] == [{"segmentId": static, "name": "Static", "status": "active"}]
    r = api.get("/segments", params={"type": "all"})
    assert r.json()["data"]["data"] == [
        {"segmentId": static, "name": "Static", "status": "active", "type": "static"},
        {"segmentId": dyn, "name": "Dyn", "status": "active", "type": "dynamic"},
        {"segmentId": draft, "name": "Draft dyn", "status": "draft", "type": "dynamic"},
    ]
    r = api.get("/segments", params={"type": "dynamic", "status": "draft"})
    assert [s["segmentId"] for s in r.json()["data"]["data"]] == [draft]


def test_items_list_active_static_and_dynamic_memberships(api: Api) -> None:
    (aid,) = push(api, account("a.com", "hot"))
    static = create(api, "Static", type="static")["segmentId"]
    assert api.post(f"/segments/{static}/accounts", json={"rtp_aids": [aid]}).status_code == 200
    dyn = create(api, "Dyn", HOT)["segmentId"]
    create(api, "Draft", HOT, status="draft")
    expected = [{"segmentId": static, "name": "Static"}, {"segmentId": dyn, "name": "Dyn"}]
    assert item_segments(api, aid) == expected
    r = api.get("/accounts", params={"limit": 10})
    assert r.json()["data"]["data"][0]["segments"] == expected


def test_membership_changes_show_in_delta_sync(api: Api) -> None:
    a, b = push(api, account("a.com", "hot"), account("b.com"))
    r = api.get("/accounts")
    sync = r.json()["data"]["syncTimestamp"]
    sid = create(api, "Hot", HOT)["segmentId"]
    r = api.get("/accounts", params={"lastSync": sync})
    changed = r.json()["data"]["data"]
    assert [x["rtp_aid"] for x in changed] == [a]
    assert changed[0]["segments"] == [{"segmentId": sid, "name": "Hot"}]
    assert b not in [x["rtp_aid"] for x in changed]


def test_dynamic_segments_refuse_manual_members(api: Api) -> None:
    (aid,) = push(api, account("a.com"))
    sid = create(api, "Hot", HOT)["segmentId"]
    msg = f"Segment '{sid}' is not a static segment"
    business(api.post(f"/segments/{sid}/accounts", json={"rtp_aids": [aid]}), 400, msg)
    business(api.delete(f"/segments/{sid}/accounts", json={"rtp_aids": [aid]}), 400, msg)
    r = api.post(
        "/accounts", json={"segmentId": sid, "accounts": [{"domain": "b.com", "name": "B"}]}
    )
    business(r, 400, msg)


# ---- tenancy ---------------------------------------------------------------------------------


def test_another_workspace_cannot_reach_a_dynamic_segment(
    workspace: Workspace, other: Workspace
) -> None:
    api = workspace.api
    (aid,) = push(api, account("a.com", "hot"))
    push(other.api, account("a.com", "hot"), account("b.com", "hot"))
    sid = create(api, "Hot", HOT)["segmentId"]
    missing = f"Segment '{sid}' not found"
    business(other.api.get(f"/segments/{sid}"), 404, missing)
    business(other.api.patch(f"/segments/{sid}", json={"status": "archived"}), 404, missing)
    business(other.api.patch(f"/segments/{sid}", json={"rules": HOT}), 404, missing)
    business(other.api.post(f"/segments/{sid}/refresh"), 404, missing)
    business(other.api.get(f"/segments/{sid}/accounts"), 404, missing)
    r = other.api.post("/segments/refresh")
    assert r.status_code == 200 and r.json()["data"]["segments"] == []
    assert other.api.get("/segments", params={"type": "all"}).json()["data"]["data"] == []
    assert events(other.api, type="segment.entered") == []
    # the other workspace's matching accounts stay out of this one's segment and preview
    assert member_ids(api, sid) == [aid]
    assert api.post("/segments/preview", json={"rules": HOT}).json()["data"]["count"] == 1
    assert other.api.post("/segments/preview", json={"rules": HOT}).json()["data"]["count"] == 2
    assert get_segment(api, sid)["status"] == "active"


# ---- static membership events and rules over retired custom fields ----------------------------


def test_static_joins_and_removals_are_events(api: Api) -> None:
    sid = create(api, "Imported", type="static")["segmentId"]
    r = api.post(
        "/accounts", json={"segmentId": sid, "accounts": [account("a.com"), account("b.com")]}
    )
    assert r.status_code == 200, r.text
    a, b = (x["rtp_aid"] for x in r.json()["data"]["results"])
    assert moves(api, sid) == [("segment.entered", a), ("segment.entered", b)]
    r = api.delete(f"/segments/{sid}/accounts", json={"domains": ["a.com"]})
    assert r.status_code == 200 and r.json()["data"]["removed"] == 1
    assert moves(api, sid)[2:] == [("segment.exited", a)]
    r = api.delete(f"/segments/{sid}/accounts", json={"domains": ["a.com"]})
    assert r.json()["data"]["removed"] == 0
    assert len(moves(api, sid)) == 3  # removing a non-member records nothing


def test_a_retired_custom_field_fails_new_rules_but_not_refreshes(api: Api) -> None:
    r = api.post("/accounts/custom-field", json={"label": "Tier", "labelType": "singleLineText"})
    assert r.status_code in (200, 201), r.text
    key = r.json()["data"][0]["key"]
    (a,) = push(api, account("a.com", customFields={key: "1"}))
    rule = {"field": f"customFields.{key}", "op": "eq", "value": "1"}
    sid = create(api, "Tier 1", rule)["segmentId"]
    assert member_ids(api, sid) == [a]
    assert api.delete(f"/accounts/custom-fields/{key}").status_code == 200
    r = api.post(f"/segments/{sid}/refresh")
    assert r.status_code == 200, r.text
    r = api.post("/segments", json={"name": "Again", "type": "dynamic", "rules": rule})
    assert list(validation(r)) == ["rules.field"]
    assert list(validation(api.post("/segments/preview", json={"rules": rule}))) == ["rules.field"]


def test_time_windows_move_on_with_full_runs(workspace: Workspace, engine: Any) -> None:
    api, ws = workspace.api, workspace.id
    (a,) = push(api, account("a.com"))
    signals(engine, ws, "a.com", "g2", "pricing", 2)
    rule = {
        "signal": {"source": "g2", "type": "pricing"},
        "window_days": 7,
        "op": "gte",
        "value": 1,
    }
    sid = create(api, "Recent pricing", rule)["segmentId"]
    assert member_ids(api, sid) == [a]
    pipeline.run_scoring(engine, ws, full=True, as_of=now_us() + 3 * US_PER_DAY)
    assert member_ids(api, sid) == [a]  # 5 days old: still inside
    pipeline.run_scoring(engine, ws, full=True, as_of=now_us() + 6 * US_PER_DAY)
    assert member_ids(api, sid) == []  # 8 days old: out
    assert moves(api, sid) == [("segment.entered", a), ("segment.exited", a)]


def test_rule_errors_name_the_value_sent(api: Api) -> None:
    rules = {"all": [{"field": "colour", "op": "eq", "value": "red"},
                     {"field": "tags", "op": "sounds_like", "value": "x"}]}  # fmt: skip
    errors = validation(
        api.post("/segments", json={"name": "D", "type": "dynamic", "rules": rules})
    )
    assert "colour" in errors["rules.all.0.field"]["isKnownField"]
    assert "sounds_like" in errors["rules.all.1.op"]["isIn"]
