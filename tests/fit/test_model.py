"""The fit scorer's core: memoised per distinct profile yet equal to evaluating each account,
the same answer for JSON columns as SQLite and PostgreSQL return them, clamping and bands."""

from __future__ import annotations

import json
import random

import pytest

from intently.fit.model import FitScorer, grade_of, scorer
from intently.fit.schemas import default_bands, default_fit_model, validate_fit_model
from intently.kit.timefmt import US_PER_DAY
from tests.support.fit import MODEL

NOW = 20_000 * US_PER_DAY + 5


def fresh(model: dict, types: dict[str, str] | None = None) -> FitScorer:
    return scorer(1, model, NOW, types)


def test_memoised_scores_equal_one_evaluation_per_account() -> None:
    model = default_fit_model()
    s = fresh(model)
    assert s.columns == ("employee_count", "annual_revenue", "industry", "country")
    rnd = random.Random(3)
    rows = [
        (
            rnd.choice([None, 5, 60, 200, 4999, 5000, 12000]),
            rnd.choice([None, 999_999.0, 1e6, 9.99e6, 1e7]),
            rnd.choice([None, "Software", "Computer Software", "Retail"]),
            rnd.choice([None, "US", "DE"]),
        )
        for _ in range(5000)
    ]
    memoised = [s.score(r) for r in rows]
    assert memoised == [fresh(model).score(r) for r in rows]
    assert s.evaluated == len(set(rows)) < 5000 / 4
    # the boundaries of the default's bands, by hand
    assert s.score((200, 1e7, "Software", "US")) == 35 + 25 + 10 + 10 + 5
    assert s.score((199, 9.99e6, "Retail", None)) == 20 + 10 + 10
    assert s.score((5000, None, None, None)) == 20
    assert s.score((None, None, None, None)) == 0


def test_points_are_held_to_0_and_100() -> None:
    always = {"field": "domain", "op": "exists"}
    model = validate_fit_model(
        {"criteria": [{"name": f"c{i}", "points": 40, "rule": always} for i in range(3)]}, {}
    )
    assert fresh(model).score(("a.com",)) == 100
    model["criteria"] = [{"name": "minus", "points": -30, "rule": always}]
    assert fresh(model).score(("a.com",)) == 0


def test_json_columns_read_the_same_as_text_or_decoded() -> None:
    """SQLite returns tags and custom fields as JSON text, PostgreSQL decoded."""
    model = validate_fit_model(
        {
            "criteria": [
                {"name": "tier", "points": 30,
                 "rule": {"field": "customFields.TIER_C", "op": "in", "value": ["Gold"]}},
                {"name": "partner", "points": 20,
                 "rule": {"field": "tags", "op": "contains", "value": "partner"}},
                {"name": "regions", "points": 10,
                 "rule": {"field": "customFields.REGIONS_C", "op": "contains", "value": "EU"}},
            ]
        },
        {"TIER_C": "singleSelection", "REGIONS_C": "multiSelection"},
    )  # fmt: skip
    s = fresh(model, {"TIER_C": "singleSelection", "REGIONS_C": "multiSelection"})
    assert s.columns == ("tags", "custom_fields")
    custom = {"TIER_C": "Gold", "REGIONS_C": ["EU", "US"], "OTHER_C": "x"}
    tags = ["partner", "vip"]
    assert s.score((tags, custom)) == 60
    assert s.score((json.dumps(tags), json.dumps(custom))) == 60
    assert s.score(("[]", json.dumps({"TIER_C": "Silver", "OTHER_C": "y"}))) == 0
    assert s.score(("[]", None)) == 0
    # other custom fields do not split the memo
    assert s.score(([], {"TIER_C": "Silver", "OTHER_C": "z"})) == 0
    assert s.evaluated == 3  # the two profiles, and no custom fields at all


def test_created_at_reads_its_day_as_of_the_run() -> None:
    model = validate_fit_model(
        {"criteria": [{"name": "new", "points": 50,
                       "rule": {"field": "createdAt", "op": "within_days", "value": 30}}]},
        {},
    )  # fmt: skip
    s = fresh(model)
    day = NOW // US_PER_DAY
    assert s.score(((day - 5) * US_PER_DAY + 123,)) == 50
    assert s.score(((day - 5) * US_PER_DAY + 999,)) == 50
    assert s.evaluated == 1  # the same day: one evaluation
    assert s.score(((day - 40) * US_PER_DAY,)) == 0


@pytest.mark.parametrize(
    ("score", "grade"), [(100, "A"), (75, "A"), (74.99, "B"), (50, "B"), (25, "C"), (0, "D")]
)
def test_a_band_starts_at_its_min(score: float, grade: str) -> None:
    assert grade_of(score, default_bands()["fit"]) == grade


def test_the_grade_is_the_fit_letter_and_the_intent_digit() -> None:
    s = fresh(MODEL)
    assert s.grade(90, 50) == "A1" and s.grade(40, 49.99) == "B2" and s.grade(0, 0) == "C3"
    x = s.explain((800, 2e7, "Software", '["competitor"]'), 12.5)
    assert [c["gave"] for c in x["criteria"]] == [40, 30, 20, -50]
    assert x["total"] == 40 and x["score"] == 40
    assert x["grade"] == {
        "grade": "B2", "fit": "B", "intent": "2", "intentScore": 12.5, "bands": MODEL["bands"],
    }  # fmt: skip
