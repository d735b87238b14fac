"""The scoring model: its shape, its validation, and the default a new workspace starts with.

A model is plain JSON:

    {"sources": {SOURCE: {"weight": 3, "cap": 100,
                          "types": {TYPE: {"enabled": true, "increment": 10, "unit": "count",
                                           "cap": 60, "decay": {"kind": "linear", "days": 90}}}}},
     "surge": {"recent_days": 7, "baseline_days": 28}}

A type's points are min(cap, increment x the sum, over its daily rollups, of the count
(unit `count`) or the summed value (unit `value`) times the decay factor of the day's
age). A source's sub-score is min(source cap, its types' points) / source cap x 100; the
account score is the mean of the sub-scores weighted by the sources' weights (a source
with weight 0, or with every type disabled, is left out).

Why the default numbers are what they are:

- **Decay: linear over 90 days** for website, G2 and LinkedIn (a signal loses 1/90 of
  its points a day, and nothing older than a quarter counts): a B2B buying cycle runs
  for months, and a visit last week says more than one last quarter. **Bombora: linear
  over 42 days**: it publishes a weekly snapshot of who is researching a topic now, so a
  six-week-old surge is stale.
- **Website** (weight 3: first-party, the account is on our site). A plain page view is
  worth 1 point (cap 20: reading the blog is weak intent however much of it); a
  high-value page view (pricing, demo, the pages the workspace marks) 10 points (cap 60);
  a form submitted 25 points (cap 50). Six pricing-page views in a week fill most of
  the sub-score; twenty blog views do not.
- **G2** (weight 3: a buyer comparing products on a review site is close to a purchase).
  Pricing 30 points (cap 60), comparison and alternatives 20 (cap 50), profile 10 (cap
  40), category 6 (cap 30), sponsored and other 3 (cap 15): two pricing visits fill a
  pricing cap that ten category visits could not reach.
- **Bombora** (weight 2: third-party, topic-level, noisier). Scored by value: each
  surging topic-week gives 0.25 points per point of its composite score, so a surge at
  80 gives 20 points and one at 60 (the usual threshold) 15: higher surges count more,
  and five strong topic-weeks fill the source (cap 100).
- **LinkedIn advertising** (weight 1: paid reach; seeing an ad is not intent). Scored
  by value (LinkedIn reports counts per day): an impression 0.05 points (cap 10), an
  engagement 1 (cap 20), a click 3 (cap 40), a lead form 25 (cap 50): a click is worth
  sixty impressions.
- **Surge**: the last 7 days against the 28 before them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from intently.catalog import SIGNAL_TYPES
from intently.kit.errors import ValidationFailed
from intently.kit.validation import IntNumber, Strict, translate

BUILTIN_TYPES = SIGNAL_TYPES  # the built-in sources and the types a model may weigh

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class DecayIn(Strict):
    kind: Literal["linear", "half_life", "window", "step"]
    days: Annotated[IntNumber, Field(ge=1, le=3650)]
    percent: Annotated[float, Field(ge=0, le=100)] | None = None


class TypeIn(Strict):
    enabled: bool = True
    increment: NonNegative
    unit: Literal["count", "value"] = "count"
    cap: Positive
    decay: DecayIn


class SourceIn(Strict):
    weight: NonNegative
    cap: Positive = 100.0
    types: dict[str, TypeIn]


class SurgeIn(Strict):
    recent_days: Annotated[IntNumber, Field(ge=1, le=365)] = 7
    baseline_days: Annotated[IntNumber, Field(ge=1, le=365)] = 28


class ModelIn(Strict):
    sources: dict[str, SourceIn]
    surge: SurgeIn = SurgeIn()


def _linear(days: int) -> dict[str, Any]:
    return {"kind": "linear", "days": days}


def _t(increment: float, cap: float, unit: str = "count", days: int = 90) -> dict[str, Any]:
    return {
        "enabled": True,
        "increment": increment,
        "unit": unit,
        "cap": cap,
        "decay": _linear(days),
    }


def default_model() -> dict[str, Any]:
    """The model of a workspace that never set one (reasoning in the module docstring)."""
    return {
        "sources": {
            "website": {
                "weight": 3,
                "cap": 100,
                "types": {
                    "page_view": _t(1, 20),
                    "high_value_page_view": _t(10, 60),
                    "form_submit": _t(25, 50),
                },
            },
            "bombora": {
                "weight": 2,
                "cap": 100,
                "types": {"surge": _t(0.25, 100, "value", 42)},
            },
            "g2": {
                "weight": 3,
                "cap": 100,
                "types": {
                    "pricing": _t(30, 60),
                    "comparison": _t(20, 50),
                    "alternatives": _t(20, 50),
                    "profile": _t(10, 40),
                    "category": _t(6, 30),
                    "sponsored": _t(3, 15),
                    "other": _t(3, 15),
                },
            },
            "linkedin": {
                "weight": 1,
                "cap": 100,
                "types": {
                    "ad_impression": _t(0.05, 10, "value"),
                    "ad_engagement": _t(1, 20, "value"),
                    "ad_click": _t(3, 40, "value"),
                    "lead_form": _t(25, 50, "value"),
                },
            },
        },
        "surge": {"recent_days": 7, "baseline_days": 28},
    }


def _problem(errors: list[dict[str, Any]], path: str, rule: str, text: str) -> None:
    prop = path.rsplit(".", 1)[-1]
    for e in errors:
        if e["path"] == path:
            e["constraints"].setdefault(rule, text)
            return
    errors.append({"property": prop, "path": path, "constraints": {rule: text}})


def _semantic_problems(data: Any, errors: list[dict[str, Any]]) -> None:
    """What the shape cannot say: names, types of built-in sources, step percent, weights."""
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        return
    sources = data["sources"]
    if not sources:
        _problem(errors, "sources", "isNotEmpty", "sources should not be empty")
        return
    weights: list[float] = []
    for name, src in sources.items():
        base = f"sources.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            _problem(
                errors,
                base,
                "isSourceName",
                f"source {name!r} must be lower-case letters, digits and _ (at most 32)",
            )
        if not isinstance(src, dict):
            continue
        weight = src.get("weight")
        if isinstance(weight, int | float) and not isinstance(weight, bool):
            types = src.get("types")
            enabled = isinstance(types, dict) and any(
                isinstance(t, dict) and t.get("enabled", True) is not False for t in types.values()
            )
            weights.append(float(weight) if enabled else 0.0)
        types = src.get("types")
        if not isinstance(types, dict):
            continue
        known = BUILTIN_TYPES.get(name)
        for tname, typ in types.items():
            tpath = f"{base}.types.{tname}"
            if known is not None and tname not in known:
                _problem(
                    errors,
                    tpath,
                    "isSignalType",
                    f"{tname} is not a signal type of {name}; expected one of: {', '.join(known)}",
                )
            elif known is None and not _NAME.match(str(tname)):
                _problem(
                    errors,
                    tpath,
                    "isSignalType",
                    f"type {tname!r} must be lower-case letters, digits and _ (at most 32)",
                )
            decay = typ.get("decay") if isinstance(typ, dict) else None
            step = isinstance(decay, dict) and decay.get("kind") == "step"
            if step and decay.get("percent") is None:  # type: ignore[union-attr]
                _problem(
                    errors,
                    f"{tpath}.decay.percent",
                    "isNotEmpty",
                    "percent should not be empty (step decay loses percent every days)",
                )
    if weights and all(w == 0 for w in weights):
        _problem(
            errors,
            "sources",
            "hasWeight",
            "at least one source with an enabled signal type must have a weight above 0",
        )


def validate_model(data: Any) -> dict[str, Any]:
    """The model as stored (defaults filled in), or ValidationFailed naming every problem."""
    errors: list[dict[str, Any]] = []
    parsed: ModelIn | None = None
    try:
        parsed = ModelIn.model_validate(data)
    except ValidationError as exc:
        for e in translate(exc).errors:
            # Caps are "greater than 0": pydantic's gt reads as "not less than" in translation.
            if e["property"] == "cap" and "min" in e["constraints"]:
                e["constraints"]["min"] = "cap must be greater than 0"
            errors.append(e)
    _semantic_problems(data, errors)
    if errors or parsed is None:
        raise ValidationFailed(errors)
    out = parsed.model_dump()
    for src in out["sources"].values():
        for typ in src["types"].values():
            if typ["decay"]["kind"] != "step":
                typ["decay"].pop("percent", None)
    return out


class RunIn(Strict):
    full: bool = True


class DryRunIn(Strict):
    """A proposal to try: a scoring model, a stage list, or both (as PUT takes them)."""

    model: dict[str, Any] | None = None
    stages: dict[str, Any] | None = None


class TrainIn(Strict):
    """A training of the predictive model (POST /scoring/train)."""

    horizonDays: int = Field(default=90, ge=7, le=365)
    activate: bool = False
    force: bool = False


class ActivateIn(Strict):
    """Activating a stored model version (POST /scoring/models/{version}/activate)."""

    force: bool = False
