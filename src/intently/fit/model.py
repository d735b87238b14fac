"""The workspace's fit model as scoring runs, dry runs and explanations read it.

`FitScorer` evaluates a model's criteria with the rule language's in-memory evaluator,
memoised per distinct tuple of the values its rules read: a million accounts share few
distinct profiles (size, revenue, industry, country), so a run evaluates each profile once
and every other account costs a tuple and a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from intently.fit import repository as repo
from intently.fit.schemas import default_fit_model
from intently.kit.db import json_value
from intently.kit.errors import ValidationFailed
from intently.kit.timefmt import US_PER_DAY
from intently.rules import AccountFacts, Context, FieldLeaf, Rule, evaluate, leaves, parse_rule
from intently.rules.facts import custom_field_types
from intently.rules.terms import BUILTIN_FIELDS

# Distinct value tuples remembered per run; past it the memo starts again (a model whose
# rules read the name or domain has as many tuples as accounts).
MEMO_LIMIT = 200_000
CUSTOM = "custom_fields"


def active_fit_model(conn: Connection, ws: int) -> tuple[int, dict[str, Any]]:
    """(version, model): the newest stored one, or (0, the default) when none was set."""
    found = repo.latest_model(conn, ws)
    if found is None:
        return 0, default_fit_model()
    return found[0], found[1]


def grade_of(score: float, bands: Sequence[Mapping[str, Any]]) -> str:
    """The grade of the first band (highest min first) whose min the score reaches."""
    return _band(score, [(float(b["min"]), str(b["grade"])) for b in bands])


def _band(score: float, bands: Sequence[tuple[float, str]]) -> str:
    for low, grade in bands:
        if score >= low:
            return grade
    return bands[-1][1]  # a validated list ends at 0; scores are never below


@dataclass
class FitScorer:
    """A fit model made ready to score: its parsed criteria and the columns they read."""

    version: int
    model: dict[str, Any]
    rules: list[tuple[str, float, Rule]]
    columns: tuple[str, ...]  # accounts columns the rules read (custom_fields last if any)
    custom: tuple[str, ...]  # custom field keys the rules read
    ctx: Context
    evaluated: int = 0  # distinct value tuples evaluated (memo misses)
    # values -> (fit score, fit band's grade)
    _memo: dict[tuple[Any, ...], tuple[float, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # The values themselves are the memo key unless some need reading first.
        self._raw = not set(self.columns) & {CUSTOM, "created_at", "tags"}
        bands = self.model["bands"]
        self._fit_bands = [(float(b["min"]), str(b["grade"])) for b in bands["fit"]]
        self._intent_bands = [(float(b["min"]), str(b["grade"])) for b in bands["intent"]]

    @property
    def fit_bands(self) -> list[dict[str, Any]]:
        return list(self.model["bands"]["fit"])

    @property
    def intent_bands(self) -> list[dict[str, Any]]:
        return list(self.model["bands"]["intent"])

    def _facts(self, values: Sequence[Any]) -> tuple[tuple[Any, ...], AccountFacts]:
        """(memo key, facts) for values read in `columns` order."""
        row: dict[str, Any] = {}
        key: list[Any] = []
        for col, v in zip(self.columns, values, strict=True):
            if col == CUSTOM:
                stored = json_value(v) or {}
                picked = {k: stored.get(k) for k in self.custom}
                row[CUSTOM] = picked
                key.extend(_hashable(picked[k]) for k in self.custom)
                continue
            if col == "created_at" and v is not None:
                v = int(v) // US_PER_DAY * US_PER_DAY  # the rules read its day only
            elif col == "tags":
                v = json_value(v)  # read through the driver: text on SQLite
            row[col] = v
            key.append(_hashable(v))
        return tuple(key), AccountFacts(row)

    def _fit(self, values: Sequence[Any]) -> tuple[float, str]:
        """(fit score, fit grade) for values read in `columns` order, memoised."""
        key, facts = (tuple(values), None) if self._raw else self._facts(values)
        found = self._memo.get(key)
        if found is not None:
            return found
        if facts is None:
            facts = self._facts(values)[1]
        self.evaluated += 1
        total = sum(points for _, points, rule in self.rules if evaluate(rule, facts, self.ctx))
        fit = round(min(100.0, max(0.0, total)), 2)
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        found = self._memo[key] = (fit, _band(fit, self._fit_bands))
        return found

    def score(self, values: Sequence[Any]) -> float:
        """The fit score (0-100, 2 decimals) of an account whose `columns` hold `values`."""
        return self._fit(values)[0]

    def grade(self, fit: float, intent: float) -> str:
        """Fit letter and intent digit, e.g. "A1"."""
        return _band(fit, self._fit_bands) + _band(intent, self._intent_bands)

    def fit_and_grade(self, values: tuple[Any, ...], intent: float) -> tuple[float, str]:
        """(fit score, grade) of an account whose `columns` hold `values` and whose account
        score is `intent`: what a scoring run writes (its hot path: one memo lookup)."""
        found = self._memo.get(values) if self._raw else None
        fit, letter = found if found is not None else self._fit(values)
        for low, digit in self._intent_bands:
            if intent >= low:
                return fit, letter + digit
        return fit, letter + self._intent_bands[-1][1]

    def explain(self, values: Sequence[Any], intent: float) -> dict[str, Any]:
        """How the fit score and grade of an account whose `columns` hold `values` come
        about: every criterion, whether it holds and the points it gave; their total, the
        score (the total held to 0-100) and the grade with the bands used."""
        facts = self._facts(values)[1]
        criteria = []
        total = 0.0
        for (name, points, rule), doc in zip(self.rules, self.model["criteria"], strict=True):
            hit = evaluate(rule, facts, self.ctx)
            total += points if hit else 0.0
            criteria.append(
                {"name": name, "points": points, "rule": doc["rule"], "matched": hit,
                 "gave": points if hit else 0.0}
            )  # fmt: skip
        score = round(min(100.0, max(0.0, total)), 2)
        fit_band, intent_band = self.fit_bands, self.intent_bands
        return {
            "modelVersion": self.version,
            "criteria": criteria,
            "total": total,
            "score": score,
            "grade": {
                "grade": self.grade(score, intent),
                "fit": grade_of(score, fit_band),
                "intent": grade_of(intent, intent_band),
                "intentScore": intent,
                "bands": {"fit": fit_band, "intent": intent_band},
            },
        }


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return ("[]", *(_hashable(e) for e in v))
    if isinstance(v, dict):
        return ("{}", *sorted((k, _hashable(e)) for k, e in v.items()))
    return v


def scorer(
    version: int,
    model: dict[str, Any],
    as_of: int,
    custom_types: Mapping[str, str] | None,
) -> FitScorer:
    """The model made ready for one run as of `as_of` (micros): createdAt's within_days
    counts back from that day. A custom field archived since the model was saved is read
    with the type its condition implies (as a rule stored before the field existed)."""
    rules: list[tuple[str, float, Rule]] = []
    columns: list[str] = []
    custom: list[str] = []
    for i, c in enumerate(model["criteria"]):
        try:
            rule = parse_rule(c["rule"], path=f"criteria.{i}.rule", custom_fields=custom_types)
        except ValidationFailed:
            rule = parse_rule(c["rule"], path=f"criteria.{i}.rule", bounded=False)
        rules.append((str(c["name"]), float(c["points"]), rule))
        for leaf in leaves(rule):
            assert isinstance(leaf, FieldLeaf)  # validation keeps fit rules to fields
            key = leaf.custom_key
            if key is not None:
                if key not in custom:
                    custom.append(key)
            elif BUILTIN_FIELDS[leaf.field][0] not in columns:
                columns.append(BUILTIN_FIELDS[leaf.field][0])
    if custom:
        columns.append(CUSTOM)
    return FitScorer(version, model, rules, tuple(columns), tuple(custom), Context(as_of=as_of))


def active_scorer(conn: Connection, ws: int, as_of: int) -> FitScorer:
    """The workspace's active fit model, ready to score, read in the caller's transaction."""
    version, model = active_fit_model(conn, ws)
    return scorer(version, model, as_of, custom_field_types(conn, ws))
