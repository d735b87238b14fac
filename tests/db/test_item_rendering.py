"""The database renders account items (accounts.repository): values that only scoring
writes today (scores, stage, rtp_last_account_date) come out as the API promises."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from intently.kit.timefmt import format_ms, parse_iso8601
from tests.support.api import Api


def test_scores_stage_and_last_account_date_render_like_the_api_says(api: Api, engine: Any) -> None:
    r = api.post("/accounts", json={"accounts": [{"domain": "render.example.com", "name": "R"}]})
    aid = r.json()["data"]["results"][0]["rtp_aid"]
    when = parse_iso8601("2026-04-30T10:00:00.123999Z")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE accounts SET rtp_account_score = 33.33, rtp_g2_intent_score = 100, "
                "rtp_journey_stage = 'Engaged', rtp_last_account_date = :when WHERE id = :aid"
            ),
            {"when": when, "aid": aid},
        )
    for item in (
        api.get(f"/accounts/{aid}").json()["data"],
        api.get("/accounts", params={"domains": "render.example.com"}).json()["data"]["data"][0],
    ):
        assert item["rtp_account_score"] == 33.33
        assert item["rtp_g2_intent_score"] == 100
        assert item["rtp_website_intent_score"] == 0
        assert item["rtp_journey_stage"] == "Engaged"
        # Milliseconds, truncated, as the envelope's timestamps.
        assert item["rtp_last_account_date"] == "2026-04-30T10:00:00.123Z" == format_ms(when)


def test_custom_field_values_of_every_type_and_awkward_keys_render(api: Api) -> None:
    fields = [
        ("Tier", "singleSelection", ["1", "2"]),
        ("Regions", "multiSelection", ["EMEA", "APAC"]),
        ("Revenue (USD)", "number", None),
        ('Say "hi"', "singleLineText", None),
        ("Renewal", "date", None),
    ]
    keys = []
    for label, kind, options in fields:
        body: dict[str, Any] = {"label": label, "labelType": kind}
        if options:
            body["options"] = options
        r = api.post("/accounts/custom-field", json=body)
        assert r.status_code == 201, r.text
        keys.append(r.json()["data"][0]["key"])
    values = {
        keys[0]: "2",
        keys[1]: ["APAC", "EMEA"],
        keys[2]: 1250000.5,
        keys[3]: 'quote " and \\ backslash',
    }
    r = api.post(
        "/accounts",
        json={"accounts": [{"domain": "keys.example.com", "name": "K", "customFields": values}]},
    )
    assert r.json()["data"]["results"][0]["status"] == "created", r.text
    item = api.get("/accounts").json()["data"]["data"][0]
    assert list(item["customFields"]) == keys  # every active key, in creation order
    assert item["customFields"] == {**values, keys[4]: None}
