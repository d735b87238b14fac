"""The ICP fit model: its shape, its validation, and the default a new workspace starts with.

A fit model is plain JSON:

    {"criteria": [{"name": "Employees 200-4,999", "points": 35,
                   "rule": {"field": "employeeCount", "op": "between", "value": [200, 4999]}}],
     "bands": {"fit": [{"grade": "A", "min": 75}, ..., {"grade": "D", "min": 0}],
               "intent": [{"grade": "1", "min": 75}, ..., {"grade": "4", "min": 0}]}}

`rtp_fit_score` = min(100, max(0, the sum of the points of the criteria whose rule holds)).
`rtp_grade` = the fit band of the fit score (the first band, in the order given, whose
`min` it reaches) followed by the intent band of `rtp_account_score`, e.g. "A1".

A criterion's rule is a rule-language tree over the account's own fields only: the profile
(industry, employeeCount, annualRevenue, country, city, shortName, logoUrl), name, domain,
externalId, linkedinUrl, tags, custom fields and createdAt. Fit says who the company is;
how it behaves (scores, stage, signals, surge, deals, activities) is intent, and a fit
that read the grade or the fit score would read itself.

Why the default numbers are what they are (a B2B software seller's ICP, as a start to edit):

- **Company size** counts most (35 points for 200-4,999 employees; 20 for 50-199 or for
  5,000 and more; 5 for 10-49): mid-market and lower enterprise buy ABM-sold software
  with a committee and a budget; small companies rarely, large ones slowly and through
  procurement.
- **Revenue** (25 points at USD 10M a year and more, 10 from 1M to 10M): the budget to buy.
- **Industry**: 10 points when it is known at all, 10 more when it names software, SaaS,
  IT or the internet (the buyers a B2B software seller knows best). **Country** known: 5.
  A known profile is itself a sign of a real company, but a small one.
- **Bands**: A from 75 (size and revenue in the sweet spot, plus what is known), B from 50,
  C from 25, D below. Intent 1 from an account score of 75, 2 from 50, 3 from 25, 4 below.

An account with no profile matches no criterion: fit 0, grade D (then its intent digit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError

from intently.catalog import ALL_SCORES, FIT_SCORE, GRADE
from intently.kit.errors import ValidationFailed
from intently.kit.validation import Strict, translate
from intently.rules import parse_rule

MAX_CRITERIA = 50
MAX_BANDS = 10
MAX_POINTS = 100.0
_GRADE = re.compile(r"^[A-Za-z0-9+-]{1,4}$")
# Account fields a fit rule may not read: they are intent, or the fit itself.
NOT_FIT_FIELDS = frozenset((*ALL_SCORES, FIT_SCORE, GRADE, "rtp_journey_stage"))
_RELATED_LEAVES = ("signal", "surge", "deal", "activity")


class CriterionIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    points: Annotated[float, Field(ge=-MAX_POINTS, le=MAX_POINTS)]
    rule: dict[str, Any]


class BandIn(Strict):
    grade: Annotated[str, Field(min_length=1, max_length=4)]
    min: Annotated[float, Field(ge=0, le=100)]


class BandsIn(Strict):
    fit: Annotated[list[BandIn], Field(min_length=1, max_length=MAX_BANDS)]
    intent: Annotated[list[BandIn], Field(min_length=1, max_length=MAX_BANDS)]


class FitModelIn(Strict):
    criteria: Annotated[list[CriterionIn], Field(max_length=MAX_CRITERIA)]
    bands: BandsIn | None = None  # omitted: the default bands


class FitDryRunIn(Strict):
    """A proposed fit model, as PUT /fit/model takes it."""

    model: dict[str, Any]


def _c(name: str, points: float, rule: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "points": points, "rule": rule}


def _between(field: str, low: float, high: float) -> dict[str, Any]:
    return {"field": field, "op": "between", "value": [low, high]}


def default_bands() -> dict[str, list[dict[str, Any]]]:
    return {
        "fit": [
            {"grade": "A", "min": 75},
            {"grade": "B", "min": 50},
            {"grade": "C", "min": 25},
            {"grade": "D", "min": 0},
        ],
        "intent": [
            {"grade": "1", "min": 75},
            {"grade": "2", "min": 50},
            {"grade": "3", "min": 25},
            {"grade": "4", "min": 0},
        ],
    }


def default_fit_model() -> dict[str, Any]:
    """The fit model of a workspace that never set one (reasoning in the module docstring)."""
    software = ["Software", "software", "SaaS", "Information Technology", "Internet"]
    return {
        "criteria": [
            _c("Employees 200-4,999", 35, _between("employeeCount", 200, 4999)),
            _c(
                "Employees 50-199 or 5,000+",
                20,
                {
                    "any": [
                        _between("employeeCount", 50, 199),
                        {"field": "employeeCount", "op": "gte", "value": 5000},
                    ]
                },
            ),
            _c("Employees 10-49", 5, _between("employeeCount", 10, 49)),
            _c("Revenue USD 10M+", 25, {"field": "annualRevenue", "op": "gte", "value": 10e6}),
            _c(
                "Revenue USD 1M-10M",
                10,
                {
                    "all": [
                        {"field": "annualRevenue", "op": "gte", "value": 1e6},
                        {"field": "annualRevenue", "op": "lt", "value": 10e6},
                    ]
                },
            ),
            _c("Industry known", 10, {"field": "industry", "op": "exists"}),
            _c(
                "Software, SaaS, IT or internet industry",
                10,
                {"any": [{"field": "industry", "op": "contains", "value": w} for w in software]},
            ),
            _c("Country known", 5, {"field": "country", "op": "exists"}),
        ],
        "bands": default_bands(),
    }


def _problem(errors: list[dict[str, Any]], path: str, rule: str, text: str) -> None:
    prop = [p for p in path.split(".") if not p.isdigit()][-1]
    for e in errors:
        if e["path"] == path:
            e["constraints"].setdefault(rule, text)
            return
    errors.append({"property": prop, "path": path, "constraints": {rule: text}})


def _intent_leaves(doc: Any, path: str, out: list[tuple[str, str]]) -> None:
    """(path, what) of every leaf in a rule document that reads more than the account's own
    fields; walks what it can of a malformed document (parse_rule names the rest)."""
    if not isinstance(doc, dict):
        return
    for key in ("all", "any"):
        items = doc.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                _intent_leaves(item, f"{path}.{key}.{i}", out)
    if "not" in doc:
        _intent_leaves(doc["not"], f"{path}.not", out)
    for key in _RELATED_LEAVES:
        if key in doc:
            out.append((path, f"a {key} condition"))
    field = doc.get("field")
    if isinstance(field, str) and field in NOT_FIT_FIELDS:
        out.append((f"{path}.field", f"the field {field}"))


def _bands_problems(bands: Mapping[str, Any], errors: list[dict[str, Any]]) -> None:
    for kind in ("fit", "intent"):
        items = bands.get(kind)
        if not isinstance(items, list) or not items:
            continue
        seen: dict[str, int] = {}
        for i, band in enumerate(items):
            if not isinstance(band, dict):
                continue
            grade, low = band.get("grade"), band.get("min")
            path = f"bands.{kind}.{i}"
            if isinstance(grade, str):
                if not _GRADE.match(grade):
                    _problem(
                        errors,
                        f"{path}.grade",
                        "isGrade",
                        f"grade {grade!r} must be 1 to 4 letters, digits, + or -",
                    )
                elif grade in seen:
                    _problem(
                        errors,
                        f"{path}.grade",
                        "isUnique",
                        f"grade {grade!r} is already band {seen[grade]} of bands.{kind}",
                    )
                seen.setdefault(grade, i)
            if i > 0:
                prev = items[i - 1].get("min") if isinstance(items[i - 1], dict) else None
                if (
                    isinstance(low, int | float)
                    and isinstance(prev, int | float)
                    and not low < prev
                ):
                    _problem(
                        errors,
                        f"{path}.min",
                        "isDescending",
                        f"min {low:g} must be below the band before it ({prev:g}): bands go "
                        "from the highest min down",
                    )
        last = items[-1]
        if isinstance(last, dict) and _num(last.get("min")) and last["min"] != 0:
            _problem(
                errors,
                f"bands.{kind}.{len(items) - 1}.min",
                "isZero",
                "the last band's min must be 0, so that every score has a grade",
            )


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate_fit_model(data: Any, custom_fields: Mapping[str, str] | None) -> dict[str, Any]:
    """The model as stored (default bands filled in), or ValidationFailed naming every
    problem with its path. `custom_fields` (key -> labelType) types the custom field leaves
    and refuses unknown keys."""
    errors: list[dict[str, Any]] = []
    parsed: FitModelIn | None = None
    try:
        parsed = FitModelIn.model_validate(data)
    except ValidationError as exc:
        errors.extend(translate(exc).errors)
    if isinstance(data, dict):
        criteria = data.get("criteria")
        if isinstance(criteria, list):
            names: dict[str, int] = {}
            for i, item in enumerate(criteria[: MAX_CRITERIA + 1]):
                if not isinstance(item, dict):
                    continue
                name = item.get("name")
                if isinstance(name, str):
                    if name in names:
                        _problem(
                            errors,
                            f"criteria.{i}.name",
                            "isUnique",
                            f"name {name!r} is already criterion {names[name]}",
                        )
                    names.setdefault(name, i)
                if "rule" not in item:
                    continue
                path = f"criteria.{i}.rule"
                bad: list[tuple[str, str]] = []
                _intent_leaves(item["rule"], path, bad)
                for where, what in bad:
                    _problem(
                        errors,
                        where,
                        "isFitCondition",
                        f"{where} reads {what}: a fit rule reads only the account's own fields "
                        "(profile, name, domain, tags, custom fields, createdAt), not scores, "
                        "stage, fit, grade, signals, surge, deals or activities",
                    )
                try:
                    parse_rule(item["rule"], path=path, custom_fields=custom_fields)
                except ValidationFailed as exc:
                    for e in exc.errors:
                        for rule, text in e["constraints"].items():
                            _problem(errors, e["path"], rule, text)
        bands = data.get("bands")
        if isinstance(bands, dict):
            _bands_problems(bands, errors)
    if errors or parsed is None:
        raise ValidationFailed(errors)
    out = parsed.model_dump()
    if out["bands"] is None:
        out["bands"] = default_bands()
    for c in out["criteria"]:
        c["points"] = _plain(c["points"])
    for items in out["bands"].values():
        for band in items:
            band["min"] = _plain(band["min"])
    return out


def _plain(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v
