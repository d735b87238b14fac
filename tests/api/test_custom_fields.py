"""E8 (POST /accounts/custom-field), E9 (GET /accounts/custom-fields), the DELETE extension,
and the `customFields` object of account items (spec sections 9 and 10)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.support.api import Api, Workspace
from tests.support.data import create_account, get_account
from tests.support.envelope import validation_data

LABEL_TYPES_TEXT = (
    "labelType must be one of the following values: "
    "singleLineText, multiLineText, singleSelection, multiSelection, number, date"
)


# ---- helpers ----------------------------------------------------------------------------


def create_field(api: Api, **body: Any) -> dict[str, Any]:
    r = api.post("/accounts/custom-field", json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert isinstance(data, list) and len(data) == 1
    return dict(data[0])


def list_fields(api: Api) -> list[dict[str, Any]]:
    r = api.get("/accounts/custom-fields")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert isinstance(data, list)
    return list(data)


def walk(api: Api, **params: Any) -> tuple[dict[str, dict[str, Any]], str]:
    """Every page of GET /accounts; the items by rtp_aid and the walk's syncTimestamp."""
    seen: dict[str, dict[str, Any]] = {}
    query = {"limit": 100, **params}
    sync: str | None = None
    while True:
        r = api.get("/accounts", params=query)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        sync = sync or page["syncTimestamp"]
        for item in page["data"]:
            seen[item["rtp_aid"]] = item
        if not page["hasNextPage"]:
            return seen, sync
        query = {"limit": 100, "cursor": page["nextCursor"]}


def field(key: str, label: str, label_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "labelType": label_type,
        "description": extra.get("description"),
        "options": extra.get("options", []),
        "objectType": "accounts",
        "status": "active",
    }


# ---- E8: creation -----------------------------------------------------------------------


def test_create_derives_key_and_answers_a_one_element_array(api: Api) -> None:
    r = api.post("/accounts/custom-field", json={"label": "Revenue (USD)", "labelType": "number"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["statusCode"] == 201
    assert body["path"] == "/api/v1/accounts/custom-field"
    assert body["data"] == [field("REVENUE_(USD)_C", "Revenue (USD)", "number")]


@pytest.mark.parametrize(
    ("label", "key", "stored_label"),
    [
        ("  Revenue (USD)  ", "REVENUE_(USD)_C", "Revenue (USD)"),
        ("Annual  recurring revenue", "ANNUAL__RECURRING_REVENUE_C", "Annual  recurring revenue"),
        ("net-new % q1.x/y", "NET-NEW_%_Q1.X/Y_C", "net-new % q1.x/y"),
        ("tier", "TIER_C", "tier"),
        ("Already_Upper", "ALREADY_UPPER_C", "Already_Upper"),
    ],
)
def test_key_is_trimmed_label_spaces_to_underscores_upper_cased(
    api: Api, label: str, key: str, stored_label: str
) -> None:
    created = create_field(api, label=label, labelType="singleLineText")
    assert created == field(key, stored_label, "singleLineText")
    assert list_fields(api) == [created]


def test_description_is_kept_when_given_and_null_when_absent(api: Api) -> None:
    with_desc = create_field(api, label="Owner", labelType="multiLineText", description="Who")
    without = create_field(api, label="Notes", labelType="multiLineText")
    explicit_null = create_field(api, label="Memo", labelType="date", description=None)
    assert with_desc["description"] == "Who"
    assert without["description"] is None
    assert explicit_null["description"] is None
    by_key = {f["key"]: f for f in list_fields(api)}
    assert by_key["OWNER_C"]["description"] == "Who"
    assert by_key["NOTES_C"]["description"] is None
    assert by_key["MEMO_C"]["description"] is None


@pytest.mark.parametrize("label_type", ["singleSelection", "multiSelection"])
def test_selection_types_keep_their_options(api: Api, label_type: str) -> None:
    created = create_field(api, label="Tier", labelType=label_type, options=["Gold", "Silver"])
    assert created == field("TIER_C", "Tier", label_type, options=["Gold", "Silver"])
    assert list_fields(api) == [created]


@pytest.mark.parametrize("label_type", ["singleSelection", "multiSelection"])
@pytest.mark.parametrize("options", [None, []], ids=["absent", "empty"])
def test_selection_types_require_at_least_one_option(
    api: Api, label_type: str, options: list[str] | None
) -> None:
    body: dict[str, Any] = {"label": "Tier", "labelType": label_type}
    if options is not None:
        body["options"] = options
    data = validation_data(api.post("/accounts/custom-field", json=body))
    assert data == [
        {
            "property": "options",
            "path": "options",
            "constraints": {"arrayMinSize": "options must contain at least 1 elements"},
        }
    ]
    assert list_fields(api) == []


@pytest.mark.parametrize("label_type", ["singleLineText", "multiLineText", "number", "date"])
def test_other_types_store_options_as_empty_list(api: Api, label_type: str) -> None:
    created = create_field(api, label="Thing", labelType=label_type, options=["a", "b"])
    assert created["options"] == []
    bare = create_field(api, label="Other", labelType=label_type)
    assert bare["options"] == []
    assert [f["options"] for f in list_fields(api)] == [[], []]


@pytest.mark.parametrize("label_type", ["text", "", "SingleLineText", "boolean", 3, None])
def test_label_type_must_be_one_of_six(api: Api, label_type: Any) -> None:
    r = api.post("/accounts/custom-field", json={"label": "X", "labelType": label_type})
    data = validation_data(r)
    assert [d["property"] for d in data] == ["labelType"]
    assert data[0]["path"] == "labelType"
    if label_type is not None:
        assert data[0]["constraints"] == {"isIn": LABEL_TYPES_TEXT}
    assert list_fields(api) == []


def test_label_type_missing_is_a_validation_error(api: Api) -> None:
    data = validation_data(api.post("/accounts/custom-field", json={"label": "X"}))
    assert [(d["property"], d["path"]) for d in data] == [("labelType", "labelType")]


@pytest.mark.parametrize("label", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_label_is_required_and_non_blank(api: Api, label: str | None) -> None:
    body: dict[str, Any] = {"labelType": "number"}
    if label is not None:
        body["label"] = label
    data = validation_data(api.post("/accounts/custom-field", json=body))
    assert data == [
        {
            "property": "label",
            "path": "label",
            "constraints": {"isNotEmpty": "label should not be empty"},
        }
    ]
    assert list_fields(api) == []


def test_wrong_types_of_optional_properties(api: Api) -> None:
    data = validation_data(
        api.post(
            "/accounts/custom-field",
            json={"label": "X", "labelType": "singleSelection", "options": [1], "description": 5},
        )
    )
    by_path = {d["path"]: d["constraints"] for d in data}
    assert by_path == {
        "options": {"isString": "each value in options must be a string"},
        "description": {"isString": "description must be a string"},
    }
    data = validation_data(
        api.post(
            "/accounts/custom-field",
            json={"label": "X", "labelType": "singleSelection", "options": "a"},
        )
    )
    assert data == [
        {
            "property": "options",
            "path": "options",
            "constraints": {"isArray": "options must be an array"},
        }
    ]
    assert list_fields(api) == []


def test_unknown_properties_are_ignored(api: Api) -> None:
    created = create_field(api, label="Region", labelType="singleLineText", color="red")
    assert created == field("REGION_C", "Region", "singleLineText")


def test_active_key_conflicts_with_409(api: Api) -> None:
    original = create_field(api, label="Revenue (USD)", labelType="number", description="v1")
    for label in ("Revenue (USD)", "  revenue (usd) ", "REVENUE (USD)"):
        r = api.post(
            "/accounts/custom-field",
            json={"label": label, "labelType": "singleSelection", "options": ["x"]},
        )
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["message"] == "Conflict"
        assert body["customMessage"] == "Custom field with key 'REVENUE_(USD)_C' already exists"
        assert body["data"] is None
    assert list_fields(api) == [original]


def test_crm_mount_serves_the_same_endpoints(workspace: Workspace) -> None:
    r = workspace.crm.post("/accounts/custom-field", json={"label": "Size", "labelType": "number"})
    assert r.status_code == 201, r.text
    assert r.json()["path"] == "/api/v1/crm/accounts/custom-field"
    assert r.json()["data"] == [field("SIZE_C", "Size", "number")]
    assert list_fields(workspace.crm) == list_fields(workspace.api) == r.json()["data"]


# ---- E9: listing ------------------------------------------------------------------------


def test_list_is_a_bare_array_of_active_fields(api: Api) -> None:
    assert list_fields(api) == []
    a = create_field(api, label="Alpha", labelType="number")
    b = create_field(api, label="Beta", labelType="multiSelection", options=["x", "y"])
    c = create_field(api, label="Gamma", labelType="date", description="when")
    r = api.get("/accounts/custom-fields")
    body = r.json()
    assert body["statusCode"] == 200 and body["path"] == "/api/v1/accounts/custom-fields"
    assert sorted(body["data"], key=lambda f: f["key"]) == [a, b, c]
    assert api.delete("/accounts/custom-fields/BETA_C").status_code == 200
    assert sorted(list_fields(api), key=lambda f: f["key"]) == [a, c]


def test_fields_are_per_workspace(workspace: Workspace, other: Workspace) -> None:
    mine = create_field(workspace.api, label="Tier", labelType="number")
    assert list_fields(other.api) == []
    # Another workspace cannot deactivate mine: to it the key is unknown.
    assert other.api.delete("/accounts/custom-fields/TIER_C").status_code == 404
    assert list_fields(workspace.api) == [mine]
    # The same key in another workspace is no conflict.
    theirs = create_field(other.api, label="Tier", labelType="singleSelection", options=["a"])
    assert list_fields(workspace.api) == [mine]
    assert list_fields(other.api) == [theirs]
    assert other.api.delete("/accounts/custom-fields/TIER_C").status_code == 200
    assert list_fields(workspace.api) == [mine]


# ---- DELETE /accounts/custom-fields/{key} -----------------------------------------------


def test_delete_deactivates_the_field(api: Api) -> None:
    create_field(api, label="Revenue (USD)", labelType="number")
    r = api.delete("/accounts/custom-fields/REVENUE_(USD)_C")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["statusCode"] == 200
    # Implementation's choice (the spec names no response body): the deactivated field.
    assert body["data"]["key"] == "REVENUE_(USD)_C"
    assert body["data"]["status"] == "inactive"
    assert list_fields(api) == []


@pytest.mark.parametrize(
    ("label", "key"),
    [("Cost/Revenue", "COST/REVENUE_C"), ("a/../b", "A/../B_C"), ("50% off? #1", "50%_OFF?_#1_C")],
)
def test_a_key_with_slashes_or_reserved_characters_can_be_deleted(
    api: Api, label: str, key: str
) -> None:
    # Keys keep the label's characters (spec E8); a key with `/` must still be removable.
    assert create_field(api, label=label, labelType="number")["key"] == key
    r = api.delete("/accounts/custom-fields/" + quote(key, safe=""))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["key"] == key and r.json()["data"]["status"] == "inactive"
    assert list_fields(api) == []


def test_a_key_with_a_slash_can_be_deleted_unencoded(api: Api) -> None:
    create_field(api, label="In/Out", labelType="number")
    assert api.delete("/accounts/custom-fields/IN/OUT_C").status_code == 200
    again = api.delete("/accounts/custom-fields/IN/OUT_C")
    assert again.json()["customMessage"] == "Custom field 'IN/OUT_C' not found"


def test_delete_unknown_or_inactive_key_is_404(api: Api) -> None:
    r = api.delete("/accounts/custom-fields/NOPE_C")
    assert r.status_code == 404, r.text
    assert r.json()["message"] == "Not Found"
    assert r.json()["data"] is None
    assert r.json()["customMessage"] == "Custom field 'NOPE_C' not found"
    create_field(api, label="Nope", labelType="number")
    assert api.delete("/accounts/custom-fields/NOPE_C").status_code == 200
    again = api.delete("/accounts/custom-fields/NOPE_C")
    assert again.status_code == 404, again.text


def test_deactivated_key_cannot_take_values(api: Api) -> None:
    create_field(api, label="Tier", labelType="singleLineText")
    aid = create_account(api, "acme.com")
    api.delete("/accounts/custom-fields/TIER_C")
    r = api.put(f"/accounts/{aid}", json={"customFields": {"TIER_C": "gold"}})
    assert r.status_code == 400, r.text
    assert "TIER_C" in r.json()["customMessage"]
    r = api.post(
        "/accounts",
        json={"accounts": [{"domain": "globex.com", "name": "G", "customFields": {"TIER_C": "x"}}]},
    )
    result = r.json()["data"]["results"][0]
    assert result["status"] == "failed" and "TIER_C" in result["reason"]


# ---- customFields on account items ------------------------------------------------------


def test_account_items_list_every_active_key_with_null_where_unset(api: Api) -> None:
    create_field(api, label="Tier", labelType="singleSelection", options=["Gold", "Silver"])
    create_field(api, label="Employees", labelType="number")
    create_field(api, label="Notes", labelType="multiLineText")
    with_values = create_account(
        api, "acme.com", customFields={"TIER_C": "Gold", "EMPLOYEES_C": 120}
    )
    bare = create_account(api, "globex.com")
    expected_full = {"TIER_C": "Gold", "EMPLOYEES_C": 120, "NOTES_C": None}
    expected_bare = {"TIER_C": None, "EMPLOYEES_C": None, "NOTES_C": None}
    assert get_account(api, with_values)["customFields"] == expected_full
    assert get_account(api, bare)["customFields"] == expected_bare
    items, _ = walk(api)
    assert items[with_values]["customFields"] == expected_full
    assert items[bare]["customFields"] == expected_bare
    # A field created later shows at once, null everywhere.
    create_field(api, label="Since", labelType="date")
    assert get_account(api, bare)["customFields"] == expected_bare | {"SINCE_C": None}


def test_account_items_have_empty_custom_fields_without_fields(api: Api) -> None:
    aid = create_account(api, "acme.com")
    assert get_account(api, aid)["customFields"] == {}


def test_deactivated_field_is_hidden_and_its_values_come_back_on_recreation(api: Api) -> None:
    create_field(api, label="Tier", labelType="singleSelection", options=["Gold", "Silver"])
    create_field(api, label="Employees", labelType="number")
    aid = create_account(api, "acme.com", customFields={"TIER_C": "Gold", "EMPLOYEES_C": 7})
    assert api.delete("/accounts/custom-fields/TIER_C").status_code == 200
    assert get_account(api, aid)["customFields"] == {"EMPLOYEES_C": 7}
    items, _ = walk(api)
    assert items[aid]["customFields"] == {"EMPLOYEES_C": 7}

    recreated = create_field(
        api,
        label="Tier",
        labelType="singleSelection",
        options=["Gold", "Silver", "Bronze"],
        description="new definition",
    )
    assert recreated == field(
        "TIER_C",
        "Tier",
        "singleSelection",
        options=["Gold", "Silver", "Bronze"],
        description="new definition",
    )
    assert sorted(list_fields(api), key=lambda f: f["key"])[1] == recreated
    assert get_account(api, aid)["customFields"] == {"TIER_C": "Gold", "EMPLOYEES_C": 7}
    # The new definition governs new values.
    r = api.put(f"/accounts/{aid}", json={"customFields": {"TIER_C": "Bronze"}})
    assert r.status_code == 200, r.text
    assert get_account(api, aid)["customFields"]["TIER_C"] == "Bronze"


def test_recreation_may_change_the_type(api: Api) -> None:
    create_field(api, label="Score", labelType="singleLineText", description="old")
    api.delete("/accounts/custom-fields/SCORE_C")
    recreated = create_field(api, label=" score ", labelType="number")
    assert recreated == field("SCORE_C", "score", "number")
    assert list_fields(api) == [recreated]
    aid = create_account(api, "acme.com")
    bad = api.put(f"/accounts/{aid}", json={"customFields": {"SCORE_C": "high"}})
    assert bad.status_code == 400, bad.text
    good = api.put(f"/accounts/{aid}", json={"customFields": {"SCORE_C": 9.5}})
    assert good.status_code == 200, good.text


def test_deactivation_and_reactivation_show_in_delta_sync(api: Api) -> None:
    create_field(api, label="Tier", labelType="singleLineText")
    create_field(api, label="Region", labelType="singleLineText")
    holder = create_account(api, "acme.com", customFields={"TIER_C": "gold", "REGION_C": "eu"})
    region_only = create_account(api, "globex.com", customFields={"REGION_C": "us"})
    bare = create_account(api, "initech.com")
    first, sync = walk(api)
    assert set(first) == {holder, region_only, bare}
    quiet, sync = walk(api, lastSync=sync)
    assert quiet == {}

    # Only accounts holding a value are required here (the implementation touches exactly
    # those); accounts whose TIER_C was null may or may not be reported.
    assert api.delete("/accounts/custom-fields/TIER_C").status_code == 200
    changed, sync = walk(api, lastSync=sync)
    assert holder in changed
    assert changed[holder]["customFields"] == {"REGION_C": "eu"}

    create_field(api, label="Tier", labelType="singleLineText")
    changed, sync = walk(api, lastSync=sync)
    assert holder in changed
    assert changed[holder]["customFields"] == {"TIER_C": "gold", "REGION_C": "eu"}

    quiet, _ = walk(api, lastSync=sync)
    assert quiet == {}
