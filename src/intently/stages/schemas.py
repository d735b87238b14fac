"""The stage list a workspace edits, its validation, and the documented default.

A stage list is ordered from the stage nearest to purchase down to the fallback:
evaluation tries each stage's rule in that order and the first that holds is the
account's stage; the last stage takes no rule and holds every account left.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from intently.kit.errors import ValidationFailed
from intently.rules import parse_rule, rule_doc

MAX_STAGES = 20
MAX_NAME = 64


def _signal(
    source: str, days: int, at_least: int, type_: str | None = None, topic: str | None = None
) -> dict[str, Any]:
    what: dict[str, Any] = {"source": source}
    if type_ is not None:
        what["type"] = type_
    if topic is not None:
        what["topic"] = topic
    return {"signal": what, "window_days": days, "op": "gte", "value": at_least}


def _score(op: str, value: float) -> dict[str, Any]:
    return {"field": "rtp_account_score", "op": op, "value": value}


# Why these rules (README "Journey stages" repeats this):
# - Customer and Opportunity come from the CRM: a won deal, an open deal. Nothing the
#   account does on the web outranks what sales recorded.
# - Decision: bottom-of-funnel evidence in the last 30 days: G2 pricing, comparison or
#   alternatives research (G2's own advice rates these highest), a form submitted on the
#   website, or repeated pricing-page visits backed by a real score.
# - Consideration: a score of 50 or more, any high-value page (pricing, demo, contact,
#   docs) or any G2 research in 30 days, or a website surge on top of a score of 25.
# - Engaged: a score of 25, three page views in 30 days, a LinkedIn ad click or lead form,
#   two Bombora surges in three weeks (Bombora's own 3-week horizon), or a sales activity.
# - Aware: any score at all, or any signal from any source in 90 days.
# - Unaware: everyone else.
DEFAULT_STAGES: dict[str, Any] = {
    "stages": [
        {"name": "Customer", "rule": {"deal": {"status": "won"}}},
        {"name": "Opportunity", "rule": {"deal": {"status": "open"}}},
        {
            "name": "Decision",
            "rule": {
                "any": [
                    _signal("g2", 30, 1, "pricing"),
                    _signal("g2", 30, 1, "comparison"),
                    _signal("g2", 30, 1, "alternatives"),
                    _signal("website", 30, 1, "form_submit"),
                    {
                        "all": [
                            _signal("website", 14, 2, "high_value_page_view", "pricing"),
                            _score("gte", 40),
                        ]
                    },
                ]
            },
        },
        {
            "name": "Consideration",
            "rule": {
                "any": [
                    _score("gte", 50),
                    _signal("website", 30, 1, "high_value_page_view"),
                    _signal("g2", 30, 1),
                    {
                        "all": [
                            {"surge": {"source": "website"}, "op": "eq", "value": True},
                            _score("gte", 25),
                        ]
                    },
                ]
            },
        },
        {
            "name": "Engaged",
            "rule": {
                "any": [
                    _score("gte", 25),
                    _signal("website", 30, 3, "page_view"),
                    _signal("linkedin", 30, 1, "ad_click"),
                    _signal("linkedin", 30, 1, "lead_form"),
                    _signal("bombora", 21, 2, "surge"),
                    {"activity": {"type": "any"}, "window_days": 30, "op": "gte", "value": 1},
                ]
            },
        },
        {
            "name": "Aware",
            "rule": {
                "any": [
                    _score("gt", 0),
                    _signal("website", 90, 1),
                    _signal("bombora", 90, 1),
                    _signal("g2", 90, 1),
                    _signal("linkedin", 90, 1),
                ]
            },
        },
        {"name": "Unaware"},
    ],
    # Deal stage labels, matched case-insensitively as parts of the label; won is tried
    # first, and a label matching neither is open (spec/scoring.md defaults).
    "dealStages": {"won": ["closed won", "won"], "lost": ["closed lost", "lost"]},
}


def default_definition() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_STAGES)


def _problem(path: str, prop: str, rule: str, text: str) -> dict[str, Any]:
    return {"property": prop, "path": path, "constraints": {rule: text}}


def check_definition(doc: Any, custom_fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stage list in canonical form, or ValidationFailed naming every problem.

    `custom_fields` (key -> labelType) types customFields leaves and refuses unknown keys.
    """
    problems: list[dict[str, Any]] = []

    def bad(path: str, prop: str, rule: str, text: str) -> None:
        problems.append(_problem(path, prop, rule, text))

    if not isinstance(doc, dict):
        raise ValidationFailed([_problem("body", "body", "isObject", "body must be an object")])
    for key in doc:
        if key not in ("stages", "dealStages"):
            bad(key, key, "whitelistValidation", f"property {key} should not exist")
    stages = doc.get("stages")
    out_stages: list[dict[str, Any]] = []
    if not isinstance(stages, list) or not stages:
        bad("stages", "stages", "arrayMinSize", "stages must be a non-empty array")
        stages = []
    elif len(stages) > MAX_STAGES:
        bad(
            "stages",
            "stages",
            "arrayMaxSize",
            f"stages must contain no more than {MAX_STAGES} elements",
        )
    seen: set[str] = set()
    for i, st in enumerate(stages):
        base = f"stages.{i}"
        if not isinstance(st, dict):
            bad(base, "stages", "isObject", f"{base} must be an object")
            continue
        for key in st:
            if key not in ("name", "rule"):
                bad(f"{base}.{key}", key, "whitelistValidation", f"property {key} should not exist")
        name = st.get("name")
        if not isinstance(name, str) or not name.strip():
            bad(f"{base}.name", "name", "isNotEmpty", "name should not be empty")
            name = None
        elif len(name.strip()) > MAX_NAME:
            bad(f"{base}.name", "name", "maxLength", f"name must be at most {MAX_NAME} characters")
        elif name.strip().casefold() in seen:
            bad(
                f"{base}.name",
                "name",
                "isUnique",
                f"name '{name.strip()}' is used by an earlier stage",
            )
        else:
            seen.add(name.strip().casefold())
        last = i == len(stages) - 1
        rule = st.get("rule")
        entry: dict[str, Any] = {"name": name.strip() if isinstance(name, str) else ""}
        if last:
            if rule is not None:
                bad(
                    f"{base}.rule",
                    "rule",
                    "isEmpty",
                    "the last stage is the fallback and takes no rule",
                )
        elif rule is None:
            bad(
                f"{base}.rule",
                "rule",
                "isNotEmpty",
                "rule should not be empty (only the last stage has none)",
            )
        else:
            try:
                entry["rule"] = rule_doc(
                    parse_rule(rule, path=f"{base}.rule", custom_fields=custom_fields)
                )
            except ValidationFailed as exc:
                problems.extend(exc.errors)
        out_stages.append(entry)
    deal_stages = _check_deal_stages(doc.get("dealStages"), problems)
    if problems:
        raise ValidationFailed(problems)
    return {"stages": out_stages, "dealStages": deal_stages}


def _check_deal_stages(value: Any, problems: list[dict[str, Any]]) -> dict[str, list[str]]:
    default: dict[str, list[str]] = DEFAULT_STAGES["dealStages"]

    def bad(path: str, prop: str, rule: str, text: str) -> None:
        problems.append(_problem(path, prop, rule, text))

    if value is None:
        return {k: list(v) for k, v in default.items()}
    if not isinstance(value, dict):
        bad("dealStages", "dealStages", "isObject", "dealStages must be an object")
        return {}
    out: dict[str, list[str]] = {}
    for key, labels in value.items():
        path = f"dealStages.{key}"
        if key not in ("won", "lost"):
            bad(path, key, "whitelistValidation", f"property {key} should not exist (won or lost)")
            continue
        if not isinstance(labels, list) or not all(
            isinstance(x, str) and x.strip() for x in labels
        ):
            bad(path, key, "isArray", f"{key} must be an array of non-empty strings")
            continue
        out[key] = [x.strip().casefold() for x in labels]
    for key in ("won", "lost"):
        out.setdefault(key, list(default[key]))
    return out
