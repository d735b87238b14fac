"""The scoring model's arithmetic (hand-computed) and its validation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from intently.kit.errors import ValidationFailed
from intently.scoring import decay
from intently.scoring.schemas import default_model, validate_model

LIN90 = {"kind": "linear", "days": 90}


@pytest.mark.parametrize(
    ("spec", "age", "expected"),
    [
        # linear over 10 days: 1 - age/10, nothing from age 10 on
        ({"kind": "linear", "days": 10}, 0, 1.0),
        ({"kind": "linear", "days": 10}, 3, 0.7),
        ({"kind": "linear", "days": 10}, 9, 0.1),
        ({"kind": "linear", "days": 10}, 10, 0.0),
        ({"kind": "linear", "days": 10}, 25, 0.0),
        ({"kind": "linear", "days": 1000}, 1, 0.999),  # the spec's 0.1% a day
        # half-life of 7 days: 0.5 ** (age/7)
        ({"kind": "half_life", "days": 7}, 0, 1.0),
        ({"kind": "half_life", "days": 7}, 7, 0.5),
        ({"kind": "half_life", "days": 7}, 14, 0.25),
        ({"kind": "half_life", "days": 2}, 3, 0.35355339059327373),  # 2 ** -1.5
        # window of 30 days: full weight at ages 0..29, none at 30
        ({"kind": "window", "days": 30}, 0, 1.0),
        ({"kind": "window", "days": 30}, 29, 1.0),
        ({"kind": "window", "days": 30}, 30, 0.0),
        ({"kind": "window", "days": 30}, 400, 0.0),
        # step: lose 20% every 7 days -> 0.8 ** floor(age/7)
        ({"kind": "step", "days": 7, "percent": 20}, 0, 1.0),
        ({"kind": "step", "days": 7, "percent": 20}, 6, 1.0),
        ({"kind": "step", "days": 7, "percent": 20}, 7, 0.8),
        ({"kind": "step", "days": 7, "percent": 20}, 20, 0.64),
        ({"kind": "step", "days": 7, "percent": 100}, 7, 0.0),
        # not happened yet (a backtest's as-of before the day): nothing
        ({"kind": "window", "days": 30}, -1, 0.0),
    ],
)
def test_decay_factor(spec: dict[str, Any], age: int, expected: float) -> None:
    assert decay.factor(spec, age) == pytest.approx(expected, abs=1e-12)


def test_horizons() -> None:
    assert decay.horizon({"kind": "linear", "days": 90}) == 90
    assert decay.horizon({"kind": "window", "days": 30}) == 30
    # half-life 7: 0.5 ** (age/7) < 0.001 from age 70 (7 x log2(1000) = 69.76)
    h = decay.horizon({"kind": "half_life", "days": 7})
    assert decay.factor({"kind": "half_life", "days": 7}, h) < 0.001
    assert decay.factor({"kind": "half_life", "days": 7}, 69) >= 0.001
    assert h == 71
    # step 50% every 10 days: 0.5 ** 10 < 0.001 first, so 100 days
    assert decay.horizon({"kind": "step", "days": 10, "percent": 50}) == 100
    assert decay.factor({"kind": "step", "days": 10, "percent": 50}, 99) > 0.001
    assert decay.horizon({"kind": "step", "days": 10, "percent": 0}) == decay.MAX_HORIZON_DAYS
    assert decay.horizon({"kind": "step", "days": 10, "percent": 100}) == 10
    assert len(decay.factors({"kind": "linear", "days": 5})) == 5


def test_type_points_hand_computed() -> None:
    # 2 views today (1.0), 3 at 45 days (0.5), 4 at 90 days (0: outside): 10 x (2 + 1.5) = 35
    assert decay.type_points(10, 100, LIN90, {0: 2, 45: 3, 90: 4}) == pytest.approx(35.0)
    # cap exactly reached: 35 against a cap of 35
    assert decay.type_points(10, 35, LIN90, {0: 2, 45: 3}) == pytest.approx(35.0)
    # cap exceeded: min(20, 35)
    assert decay.type_points(10, 20, LIN90, {0: 2, 45: 3}) == 20
    # beyond the window: nothing
    assert decay.type_points(10, 20, {"kind": "window", "days": 7}, {7: 5, 30: 1}) == 0
    # half-life 10, 8 units at age 10 and 4 at age 20: 2 x (4 + 1) = 10
    assert decay.type_points(2, 50, {"kind": "half_life", "days": 10}, {10: 8, 20: 4}) == 10


def test_source_and_account_scores() -> None:
    assert decay.source_score(35, 100) == 35
    assert decay.source_score(50, 50) == 100  # cap exactly reached
    assert decay.source_score(80, 50) == 100  # exceeded
    assert decay.source_score(20, 40) == 50
    # weights 3, 2, 1: (60*3 + 30*2 + 90*1) / 6 = 55
    subs = {"website": 60.0, "bombora": 30.0, "linkedin": 90.0}
    assert decay.account_score(subs, {"website": 3, "bombora": 2, "linkedin": 1}) == 55
    # a weight of 0 leaves the source out of the mean
    assert decay.account_score(subs, {"website": 1, "linkedin": 0}) == 60
    # a source with a weight and no signals counts as 0
    assert decay.account_score({"website": 60.0}, {"website": 1, "g2": 1}) == 30
    assert decay.account_score(subs, {}) == 0


def test_default_model_is_valid_and_says_what_the_spec_wants() -> None:
    m = validate_model(default_model())
    web, g2 = m["sources"]["website"]["types"], m["sources"]["g2"]["types"]
    assert web["high_value_page_view"]["increment"] >= 10 * web["page_view"]["increment"]
    assert g2["pricing"]["increment"] > 3 * g2["category"]["increment"]
    li = m["sources"]["linkedin"]["types"]
    assert li["ad_click"]["increment"] > 10 * li["ad_impression"]["increment"]
    surge = m["sources"]["bombora"]["types"]["surge"]
    assert surge["unit"] == "value"
    assert decay.type_points(surge["increment"], surge["cap"], surge["decay"], {0: 80}) > (
        decay.type_points(surge["increment"], surge["cap"], surge["decay"], {0: 60})
    )
    assert all(
        t["decay"] == {"kind": "linear", "days": 90}
        for s in ("website", "g2", "linkedin")
        for t in m["sources"][s]["types"].values()
    )
    assert m["surge"] == {"recent_days": 7, "baseline_days": 28}


def _errors(doc: Any) -> dict[str, dict[str, str]]:
    with pytest.raises(ValidationFailed) as info:
        validate_model(doc)
    return {e["path"]: e["constraints"] for e in info.value.errors}


def test_every_problem_is_named() -> None:
    doc = {
        "sources": {
            "website": {
                "weight": -1,
                "types": {
                    "blog_read": {"increment": 1, "cap": 5, "decay": LIN90},
                    "page_view": {"increment": -2, "cap": 0, "decay": {"kind": "fast"}},
                    "form_submit": {"increment": 1, "cap": 5, "decay": {"kind": "step", "days": 3}},
                },
            },
            "g2": {"weight": 1, "types": {"pricing": {"increment": 1, "cap": 5}}},
            "Bad Name": {"weight": 1, "types": {}},
        }
    }
    errs = _errors(doc)
    assert errs["sources.website.weight"] == {"min": "weight must not be less than 0"}
    assert (
        "blog_read is not a signal type of website"
        in errs["sources.website.types.blog_read"]["isSignalType"]
    )
    assert errs["sources.website.types.page_view.increment"] == {
        "min": "increment must not be less than 0"
    }
    assert errs["sources.website.types.page_view.cap"] == {"min": "cap must be greater than 0"}
    assert "isIn" in errs["sources.website.types.page_view.decay.kind"]
    assert errs["sources.website.types.page_view.decay.days"] == {
        "isNotEmpty": "days should not be empty"
    }
    assert "isNotEmpty" in errs["sources.website.types.form_submit.decay.percent"]
    assert errs["sources.g2.types.pricing.decay"] == {"isNotEmpty": "decay should not be empty"}
    assert "isSourceName" in errs["sources.Bad Name"]


def test_weights_all_zero_and_odd_shapes() -> None:
    t = {"increment": 1, "cap": 5, "decay": LIN90}
    errs = _errors({"sources": {"website": {"weight": 0, "types": {"page_view": t}}}})
    assert "hasWeight" in errs["sources"]
    # a weighted source whose types are all disabled does not count as weighted
    off = dict(t, enabled=False)
    errs = _errors(
        {
            "sources": {
                "website": {"weight": 2, "types": {"page_view": off}},
                "g2": {"weight": 0, "types": {"pricing": t}},
            }
        }
    )
    assert "hasWeight" in errs["sources"]
    assert "isNotEmpty" in _errors({"sources": {}})["sources"]
    assert "isObject" in _errors([])["body"]
    assert _errors({"sources": {"g2": {"weight": "1", "types": {}}}})["sources.g2.weight"] == {
        "isNumber": "weight must be a number conforming to the specified constraints"
    }
    assert (
        "isIn"
        in _errors({"sources": {"g2": {"weight": 1, "types": {"pricing": dict(t, unit="euros")}}}})[
            "sources.g2.types.pricing.unit"
        ]
    )


def test_custom_sources_take_any_type_and_defaults_fill_in() -> None:
    m = validate_model(
        {
            "sources": {
                "webinar": {
                    "weight": 1,
                    "types": {"attended": {"increment": 5, "cap": 20, "decay": LIN90}},
                },
                "g2": {
                    "weight": 1,
                    "types": {
                        "pricing": {
                            "increment": 5,
                            "cap": 20,
                            "decay": {"kind": "step", "days": 7, "percent": 10},
                        }
                    },
                },
            }
        }
    )
    attended = m["sources"]["webinar"]["types"]["attended"]
    assert attended["enabled"] is True and attended["unit"] == "count"
    assert attended["decay"] == {"kind": "linear", "days": 90}
    assert m["sources"]["webinar"]["cap"] == 100
    assert m["sources"]["g2"]["types"]["pricing"]["decay"]["percent"] == 10
    assert m["surge"] == {"recent_days": 7, "baseline_days": 28}
    assert math.isclose(m["sources"]["webinar"]["weight"], 1.0)
