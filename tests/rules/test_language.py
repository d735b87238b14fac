"""Rule documents: valid ones round-trip; every problem is named with its path."""

from __future__ import annotations

from typing import Any

import pytest

from intently.kit.errors import ValidationFailed
from intently.rules import (
    MAX_CONDITIONS,
    MAX_RELATED_CONDITIONS,
    MAX_VALUES,
    All,
    AnyOf,
    DealLeaf,
    FieldLeaf,
    Not,
    NumCmp,
    Size,
    SurgeLeaf,
    parse_rule,
    rule_doc,
    size_of,
)

TYPES = {
    "TIER_C": "singleSelection",
    "EMPLOYEES_C": "number",
    "RENEWAL_C": "date",
    "PRODUCTS_C": "multiSelection",
    "NOTE_C": "multiLineText",
}

SPEC_EXAMPLE = {
    "all": [
        {"field": "rtp_account_score", "op": "gte", "value": 60},
        {
            "any": [
                {
                    "signal": {"source": "g2", "type": "pricing"},
                    "window_days": 30,
                    "op": "gte",
                    "value": 1,
                },
                {"field": "customFields.TIER_C", "op": "in", "value": ["1", "2"]},
            ]
        },
        {"not": {"field": "tags", "op": "contains", "value": "competitor"}},
    ]
}

VALID: list[dict[str, Any]] = [
    SPEC_EXAMPLE,
    {"all": []},
    {"any": []},
    {"field": "domain", "op": "starts_with", "value": "acme"},
    {"field": "name", "op": "not_in", "value": ["A", "B"]},
    {"field": "externalId", "op": "exists"},
    {"field": "shortName", "op": "missing"},
    {"field": "linkedinUrl", "op": "contains", "value": "linkedin.com/company/"},
    {"field": "tags", "op": "not_contains", "value": "x"},
    {"field": "tags", "op": "in", "value": ["x", "y"]},
    {"field": "rtp_bombora_intent_score", "op": "between", "value": [10, 20.5]},
    {"field": "rtp_journey_stage", "op": "ne", "value": "Customer"},
    {"field": "createdAt", "op": "within_days", "value": 30},
    {"field": "createdAt", "op": "gt", "value": "2026-01-01"},
    {"field": "customFields.EMPLOYEES_C", "op": "not_in", "value": [1, 2.5]},
    {"field": "customFields.RENEWAL_C", "op": "between", "value": ["2026-01-01", "2026-12-31"]},
    {"field": "customFields.PRODUCTS_C", "op": "contains", "value": "crm"},
    {"field": "customFields.NOTE_C", "op": "starts_with", "value": "VIP"},
    {
        "signal": {"source": "bombora", "topic": "CRM"},
        "window_days": 7,
        "measure": "value",
        "op": "gt",
        "value": 60,
    },
    {"signal": {"source": "website"}, "window_days": 1, "op": "between", "value": [1, 3]},
    {"surge": {"source": "website"}, "op": "eq", "value": False},
    {"surge": {"source": "g2", "type": "pricing"}, "op": "eq", "value": True},
    {
        "deal": {"status": "won", "amount": {"op": "gte", "value": 1000}, "within_days": 90},
        "op": "gte",
        "value": 2,
    },
    {"deal": {"status": "any"}, "op": "eq", "value": 0},
    {"activity": {"type": "email"}, "window_days": 14, "op": "lte", "value": 3},
    {"not": {"not": {"any": [{"all": [{"field": "name", "op": "eq", "value": "x"}]}]}}},
]


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_valid_rules_round_trip(doc: dict[str, Any]) -> None:
    rule = parse_rule(doc, custom_fields=TYPES)
    out = rule_doc(rule)
    assert out == doc
    assert parse_rule(out, custom_fields=TYPES) == rule


def test_the_tree_it_builds() -> None:
    rule = parse_rule(SPEC_EXAMPLE, custom_fields=TYPES)
    assert isinstance(rule, All) and len(rule.items) == 3
    assert rule.items[0] == FieldLeaf("rtp_account_score", "gte", 60.0, "number")
    assert isinstance(rule.items[1], AnyOf)
    assert rule.items[1].items[1] == FieldLeaf("customFields.TIER_C", "in", ("1", "2"), "text")
    assert isinstance(rule.items[2], Not)


def test_defaults_are_made_explicit() -> None:
    # An open deal alone means at least one; surge without op/value means surging.
    assert parse_rule({"deal": {"status": "open"}}) == DealLeaf(
        "open", None, None, NumCmp("gte", 1.0)
    )
    assert rule_doc(parse_rule({"deal": {"status": "open"}})) == {
        "deal": {"status": "open"},
        "op": "gte",
        "value": 1,
    }
    assert parse_rule({"surge": {"source": "g2"}}) == SurgeLeaf("g2", None, True)
    assert parse_rule({"surge": {"source": "g2"}, "op": "ne", "value": True}) == SurgeLeaf(
        "g2", None, False
    )
    # Integral floats are integers in JSON; dates keep their day as written.
    assert rule_doc(
        parse_rule({"field": "createdAt", "op": "gt", "value": "2026-01-05T23:00:00-05:00"})
    ) == {
        "field": "createdAt",
        "op": "gt",
        "value": "2026-01-05",
    }


def test_custom_field_types_are_inferred_without_definitions() -> None:
    def kind(doc: dict[str, Any]) -> str:
        leaf = parse_rule(doc)
        assert isinstance(leaf, FieldLeaf)
        return leaf.kind

    assert kind({"field": "customFields.A_C", "op": "gt", "value": 3}) == "number"
    assert kind({"field": "customFields.A_C", "op": "in", "value": [1, 2]}) == "number"
    assert kind({"field": "customFields.A_C", "op": "gt", "value": "2026-01-01"}) == "date"
    assert kind({"field": "customFields.A_C", "op": "within_days", "value": 3}) == "date"
    assert kind({"field": "customFields.A_C", "op": "eq", "value": "x"}) == "text"
    assert kind({"field": "customFields.A_C", "op": "contains", "value": "x"}) == "auto"
    assert kind({"field": "customFields.A_C", "op": "exists"}) == "auto"


def problems(doc: Any, **kw: Any) -> dict[str, dict[str, str]]:
    with pytest.raises(ValidationFailed) as info:
        parse_rule(doc, **kw)
    out: dict[str, dict[str, str]] = {}
    for e in info.value.errors:
        assert set(e) == {"property", "path", "constraints"}
        assert e["property"] == [p for p in e["path"].split(".") if not p.isdigit()][-1]
        out[e["path"]] = e["constraints"]
    return out


@pytest.mark.parametrize(
    ("doc", "path", "rule"),
    [
        ("x", "rule", "isObject"),
        ({}, "rule", "isRule"),
        ({"foo": []}, "rule", "isRule"),
        ({"all": [], "any": []}, "rule", "isRule"),
        ({"all": {}}, "rule.all", "isArray"),
        ({"all": [], "extra": 1}, "rule.extra", "whitelistValidation"),
        ({"field": "revenue", "op": "eq", "value": 1}, "rule.field", "isKnownField"),
        ({"field": "customFields.", "op": "eq", "value": 1}, "rule.field", "isKnownField"),
        ({"field": 3, "op": "eq", "value": 1}, "rule.field", "isString"),
        ({"field": "name", "value": "x"}, "rule.op", "isNotEmpty"),
        ({"field": "name", "op": "like", "value": "x"}, "rule.op", "isIn"),
        ({"field": "name", "op": "gt", "value": "x"}, "rule.op", "isValidOp"),
        ({"field": "rtp_account_score", "op": "contains", "value": 1}, "rule.op", "isValidOp"),
        ({"field": "tags", "op": "eq", "value": "x"}, "rule.op", "isValidOp"),
        ({"field": "createdAt", "op": "starts_with", "value": "2026"}, "rule.op", "isValidOp"),
        ({"field": "rtp_account_score", "op": "gte", "value": "60"}, "rule.value", "isNumber"),
        ({"field": "rtp_account_score", "op": "gte", "value": True}, "rule.value", "isNumber"),
        ({"field": "rtp_account_score", "op": "gte"}, "rule.value", "isNotEmpty"),
        ({"field": "rtp_account_score", "op": "between", "value": [3]}, "rule.value", "isPair"),
        (
            {"field": "rtp_account_score", "op": "between", "value": [5, 3]},
            "rule.value",
            "isOrdered",
        ),
        ({"field": "rtp_account_score", "op": "in", "value": []}, "rule.value", "isArray"),
        ({"field": "name", "op": "in", "value": ["a", 1]}, "rule.value", "isString"),
        ({"field": "name", "op": "exists", "value": "x"}, "rule.value", "isEmpty"),
        ({"field": "createdAt", "op": "gt", "value": "yesterday"}, "rule.value", "isISO8601"),
        ({"field": "createdAt", "op": "within_days", "value": 0}, "rule.value", "isInRange"),
        ({"field": "createdAt", "op": "within_days", "value": 1.5}, "rule.value", "isInt"),
        ({"signal": {"source": "g2"}, "op": "gte", "value": 1}, "rule.window_days", "isNotEmpty"),
        (
            {"signal": {"source": "g2"}, "window_days": 0, "op": "gte", "value": 1},
            "rule.window_days",
            "min",
        ),
        (
            {"signal": {"source": "g2"}, "window_days": 99999, "op": "gte", "value": 1},
            "rule.window_days",
            "max",
        ),
        (
            {"signal": {"type": "pricing"}, "window_days": 7, "op": "gte", "value": 1},
            "rule.signal.source",
            "isNotEmpty",
        ),
        (
            {"signal": {"source": "g2", "kind": "x"}, "window_days": 7, "op": "gte", "value": 1},
            "rule.signal.kind",
            "whitelistValidation",
        ),
        ({"signal": "g2", "window_days": 7, "op": "gte", "value": 1}, "rule.signal", "isObject"),
        (
            {"signal": {"source": "g2"}, "window_days": 7, "op": "contains", "value": 1},
            "rule.op",
            "isIn",
        ),
        (
            {
                "signal": {"source": "g2"},
                "window_days": 7,
                "measure": "sum",
                "op": "gte",
                "value": 1,
            },
            "rule.measure",
            "isIn",
        ),
        ({"surge": {"source": "g2"}, "op": "eq", "value": "yes"}, "rule.value", "isBoolean"),
        ({"surge": {"source": "g2"}, "op": "gt", "value": True}, "rule.op", "isIn"),
        ({"deal": {"status": "closed"}}, "rule.deal.status", "isIn"),
        (
            {"deal": {"status": "open", "amount": {"op": "gte"}}},
            "rule.deal.amount.value",
            "isNotEmpty",
        ),
        ({"deal": {"status": "open", "amount": 5}}, "rule.deal.amount", "isObject"),
        ({"deal": {"status": "open", "within_days": -1}}, "rule.deal.within_days", "min"),
        ({"deal": {"status": "open"}, "op": "gte"}, "rule.value", "isNotEmpty"),
        (
            {"activity": {"type": "meeting"}, "window_days": 7, "op": "gte", "value": 1},
            "rule.activity.type",
            "isIn",
        ),
        ({"activity": {"type": "call"}, "op": "gte", "value": 1}, "rule.window_days", "isNotEmpty"),
    ],
)
def test_each_problem_is_named_with_its_path(doc: Any, path: str, rule: str) -> None:
    found = problems(doc)
    assert path in found, found
    assert rule in found[path], found


def test_custom_fields_checked_against_the_workspace_definitions() -> None:
    found = problems(
        {
            "all": [
                {"field": "customFields.NOPE_C", "op": "eq", "value": "x"},
                {"field": "customFields.EMPLOYEES_C", "op": "contains", "value": "x"},
                {"field": "customFields.PRODUCTS_C", "op": "eq", "value": "crm"},
                {"field": "customFields.RENEWAL_C", "op": "gt", "value": 5},
                {"field": "customFields.TIER_C", "op": "gt", "value": "1"},
            ]
        },
        custom_fields=TYPES,
    )
    assert found == {
        "rule.all.0.field": {
            "isKnownField": "custom field 'NOPE_C' does not exist or is not active"
        },
        "rule.all.1.op": found["rule.all.1.op"],
        "rule.all.2.op": found["rule.all.2.op"],
        "rule.all.3.value": {"isISO8601": "value must be a valid ISO 8601 date string"},
        "rule.all.4.op": found["rule.all.4.op"],
    }
    for p in ("rule.all.1.op", "rule.all.2.op", "rule.all.4.op"):
        assert list(found[p]) == ["isValidOp"]


def test_several_problems_in_one_rule_are_all_reported_with_nested_paths() -> None:
    doc = {
        "all": [
            {"field": "rtp_account_score", "op": "gte", "value": 60},
            {
                "any": [
                    {"signal": {"source": "g2"}, "op": "gte", "value": "one"},
                    {"field": "customFields.TIER_C", "op": "like", "value": ["1"]},
                ]
            },
            {"not": {"deal": {"status": "won", "amount": {"op": "between", "value": [9, 1]}}}},
            {"bogus": 1},
        ]
    }
    found = problems(doc, path="rules")
    assert set(found) == {
        "rules.all.1.any.0.window_days",
        "rules.all.1.any.0.value",
        "rules.all.1.any.1.op",
        "rules.all.2.not.deal.amount.value",
        "rules.all.3",
    }
    assert found["rules.all.1.any.1.op"] == {
        "isIn": "op must be one of the following values: eq, ne, gt, gte, lt, lte, between, in, "
        "not_in, contains, not_contains, starts_with, exists, missing, within_days; got 'like'"
    }


def test_nesting_is_limited_to_ten_levels() -> None:
    leaf: dict[str, Any] = {"field": "name", "op": "eq", "value": "x"}
    ok: dict[str, Any] = leaf
    for _ in range(9):
        ok = {"not": ok}
    parse_rule(ok)  # ten levels: nine `not` and the leaf
    deep = {"all": [ok]}
    found = problems(deep)
    assert list(found) == ["rule.all.0" + ".not" * 9]
    assert "maxDepth" in found["rule.all.0" + ".not" * 9]


def test_size_counts_conditions_related_ones_and_list_values_through_nesting() -> None:
    doc = {
        "all": [
            {"field": "domain", "op": "in", "value": ["a.com", "b.com", "c.com"]},
            {"not": {"field": "tags", "op": "not_in", "value": ["x", "y"]}},
            {"any": [
                {"signal": {"source": "g2"}, "window_days": 30, "op": "gte", "value": 1},
                {"surge": {"source": "website"}},
                {"not": {"deal": {"status": "won"}}},
                {"activity": {"type": "call"}, "window_days": 7, "op": "gte", "value": 2},
                {"field": "name", "op": "eq", "value": "Acme"},
            ]},
        ]
    }  # fmt: skip
    assert size_of(parse_rule(doc)) == Size(conditions=7, related=4, values=5, depth=4)


def _limit_rule(conditions: int, related: int, values: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"signal": {"source": "web"}, "window_days": 1 + i, "op": "gte", "value": 1}
        for i in range(related)
    ]
    for i in range(0, values, 1000):
        vals = [f"v{i + j}" for j in range(min(1000, values - i))]
        items.append({"field": "name", "op": "in", "value": vals})
    items += [{"field": "rtp_account_score", "op": "gte", "value": i}
              for i in range(conditions - len(items))]  # fmt: skip
    return {"any": items}


def test_rules_at_the_limits_parse_and_one_more_is_refused_naming_figure_and_limit() -> None:
    at_limit = _limit_rule(MAX_CONDITIONS, MAX_RELATED_CONDITIONS, MAX_VALUES)
    assert size_of(parse_rule(at_limit)) == Size(
        MAX_CONDITIONS, MAX_RELATED_CONDITIONS, MAX_VALUES, 2
    )
    over = _limit_rule(MAX_CONDITIONS + 1, MAX_RELATED_CONDITIONS + 1, MAX_VALUES + 1)
    assert problems(over, path="rules") == {
        "rules": {
            "maxConditions": f"rules holds {MAX_CONDITIONS + 1} conditions; a rule may hold "
            f"at most {MAX_CONDITIONS}",
            "maxRelatedConditions": f"rules holds {MAX_RELATED_CONDITIONS + 1} signal, surge, "
            f"deal and activity conditions; a rule may hold at most {MAX_RELATED_CONDITIONS}",
            "maxValues": f"rules lists {MAX_VALUES + 1} values in its in and not_in conditions; "
            f"a rule may list at most {MAX_VALUES}",
        }
    }
    # A rule stored before the limits is still read (scoring then skips it, with a reason).
    assert size_of(parse_rule(over, bounded=False)).conditions == MAX_CONDITIONS + 1
