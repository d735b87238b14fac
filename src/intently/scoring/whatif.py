"""Dry runs and backtests: scores and stages computed without writing anything.

Both compute scores with the engine's own aggregate (the factor table joined with the
daily rollups, per batch of accounts) and place accounts on the journey in memory with
the rule language's evaluator, which answers exactly as the SQL form does
(tests/rules/test_equivalence.py); in memory, so proposed scores can be put in place of
the stored ones without touching a row, and nothing locks the workspace.

Backtest leakage rule: scores and stages as of the cut-off use only rollup days before
the cut-off day, only deals and activities created before it, and only accounts that
existed then and had no deal yet; the outcome is a deal created in the horizon after it
(its `startDate` when given, otherwise the time it was first pushed).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.catalog import ACCOUNT_SCORE, ALL_SCORES
from intently.kit.db import read_tx
from intently.kit.errors import BadRequest
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.rules import (
    AccountFacts,
    All,
    Context,
    DealLeaf,
    NumCmp,
    Rule,
    custom_field_types,
    evaluate,
    load_facts,
)
from intently.scoring import repository as repo
from intently.scoring import service
from intently.scoring.present import distribution
from intently.scoring.schemas import validate_model
from intently.stages import definition as stages_definition
from intently.stages.schemas import check_definition

BATCH = 2000


def _scored_batches(
    engine: Engine, ws: int, model: dict[str, Any], as_of_day: int
) -> Iterator[tuple[Connection, list[str], dict[str, dict[str, float]]]]:
    """Every account in id batches, with its scores under `model` counting rollup days up
    to `as_of_day`, and the connection (for the caller's reads of the same batch)."""
    p = service.plan(model, as_of_day)
    with engine.connect() as conn:
        with conn.begin():
            service.load_plan(conn, p)
        try:
            after = ""
            while True:
                with conn.begin():
                    ids = repo.batch_ids(conn, ws, after, BATCH)
                    if not ids:
                        return
                    rows, trained = service.batch_points(conn, ws, p, ids, ranged=False)
                points: dict[str, dict[str, float]] = {}
                for aid, source, pts in rows:
                    points.setdefault(aid, {})[source] = pts
                out = {a: service.scores_of(points.get(a, {}), p)[0] for a in ids}
                if trained is not None:  # a trained model: its account score, as runs do
                    for a in ids:
                        out[a][ACCOUNT_SCORE] = trained[a]
                yield conn, ids, out
                after = ids[-1]
        finally:
            with conn.begin():
                service.drop_plan(conn)


def _stage_rules(definition: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(name, rule) for name, _, rule in stages_definition.stage_rules(definition)]


def _needs(definition: dict[str, Any], with_deals: bool) -> Any:
    """What the stage rules (and, with deals, the outcome) read: one tree of them all,
    built, not parsed, so it is not held to the limits on one rule's size."""
    rules: list[Rule] = [rule for _, rule in _stage_rules(definition)]
    if with_deals:
        rules.append(DealLeaf("any", None, None, NumCmp("gte", 1.0)))
    return All(tuple(rules)) if rules else None


def _place(facts: AccountFacts, compiled: list[tuple[str, Any]], fallback: str,
           ctx: Context) -> str:  # fmt: skip
    for name, rule in compiled:
        if evaluate(rule, facts, ctx):
            return name
    return fallback


# ---- dry run ----------------------------------------------------------------------------------


def dry_run(engine: Engine, ws: int, body: Any) -> dict[str, Any]:
    """What saving `{"model": ..., "stages": ...}` (either or both) would change."""
    if not isinstance(body, dict) or not ({"model", "stages"} & set(body)):
        raise BadRequest('Give a proposed model, a stage list, or both: {"model", "stages"}')
    with read_tx(engine) as conn:
        version, current_model = service.active_model(conn, ws)
        stage_version, current_stages = stages_definition.active_definition(conn, ws)
    model = validate_model(body["model"]) if "model" in body else current_model
    with read_tx(engine) as conn:
        fields = custom_field_types(conn, ws)
    definition = (
        check_definition(body["stages"], custom_fields=fields)
        if "stages" in body
        else current_stages
    )
    now = now_us()
    ctx = stages_definition.context(definition, now)
    compiled = _stage_rules(definition)
    fallback = definition["stages"][-1]["name"]
    moves: Counter[tuple[str | None, str]] = Counter()
    before: list[float] = []
    after: list[float] = []
    changed_scores = 0
    needs = _needs(definition, False)
    for conn, ids, new in _scored_batches(engine, ws, model, now // US_PER_DAY):
        with conn.begin():
            facts = load_facts(conn, ws, ids, ctx, needs=needs)
        for aid in ids:
            f = facts.get(aid)
            if f is None:
                continue
            before.append(float(f.row[ACCOUNT_SCORE]))
            after.append(new[aid][ACCOUNT_SCORE])
            if any(float(f.row[c]) != new[aid][c] for c in ALL_SCORES):
                changed_scores += 1
            old_stage = f.row.get("rtp_journey_stage")
            f.row.update(new[aid])  # the proposed scores, for the stage rules
            moves[(old_stage, _place(f, compiled, fallback, ctx))] += 1
    moved = [
        {"from": a, "to": b, "accounts": n}
        for (a, b), n in sorted(moves.items(), key=lambda kv: (-kv[1], str(kv[0])))
        if a != b
    ]
    return {
        "modelVersion": version,
        "stageSetVersion": stage_version,
        "proposed": sorted({"model", "stages"} & set(body)),
        "accounts": len(before),
        "scoresChanged": changed_scores,
        "stageMoves": moved,
        "unmoved": sum(n for (a, b), n in moves.items() if a == b),
        "scoreBefore": distribution(before),
        "scoreAfter": distribution(after),
    }


# ---- backtest -----------------------------------------------------------------------------------

LEAKAGE_RULE = (
    "Scores and stages as of the cut-off count only rollup days before the cut-off day, "
    "only deals and activities created before it, and only accounts that existed then and "
    "had no deal yet; the outcome is a deal created within the horizon after the cut-off "
    "(its startDate when given, otherwise when it was first pushed)."
)


def auc(scores: list[float], outcomes: list[bool]) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos = sum(outcomes)
    neg = len(outcomes) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        i = j + 1
    rank_sum = sum(r for r, o in zip(ranks, outcomes, strict=True) if o)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def top_decile_lift(scores: list[float], outcomes: list[bool]) -> float | None:
    """Conversion in the top 10% by score over the overall conversion (ties broken by order)."""
    n = len(scores)
    total = sum(outcomes)
    if n == 0 or total == 0:
        return None
    k = max(1, n // 10)
    top = sorted(range(n), key=lambda i: scores[i], reverse=True)[:k]
    return (sum(outcomes[i] for i in top) / k) / (total / n)


def backtest(engine: Engine, ws: int, *, as_of: date, horizon_days: int = 90) -> dict[str, Any]:
    if horizon_days < 1 or horizon_days > 3650:
        raise BadRequest(f"horizon '{horizon_days}' must be between 1 and 3650 days")
    cutoff = int(datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp()) * 10**6
    end = cutoff + horizon_days * US_PER_DAY
    now = now_us()
    if cutoff >= now:
        raise BadRequest(f"as-of date '{as_of.isoformat()}' must be in the past")
    with read_tx(engine) as conn:
        _, model = service.active_model(conn, ws)
        stage_version, definition = stages_definition.active_definition(conn, ws)
    # Windows end just before the cut-off: its own day is already "after".
    ctx = stages_definition.context(definition, cutoff - 1)
    compiled = _stage_rules(definition)
    fallback = definition["stages"][-1]["name"]
    scores: list[float] = []
    outcomes: list[bool] = []
    stage_of: list[str] = []
    excluded_existing_deal = 0
    needs = _needs(definition, True)
    for conn, ids, new in _scored_batches(engine, ws, model, cutoff // US_PER_DAY - 1):
        with conn.begin():
            facts = load_facts(conn, ws, ids, ctx, needs=needs)
        alive = [a for a in ids if a in facts and facts[a].row["created_at"] < cutoff]
        for aid in alive:
            f = facts[aid]
            if any(d.created < cutoff for d in f.deals):
                excluded_existing_deal += 1
                continue
            bought = any(cutoff <= d.created < end for d in f.deals)
            f = dataclasses.replace(
                f,
                row={**f.row, **new[aid], "rtp_journey_stage": None},
                deals=[],
                activities=[x for x in f.activities if x.occurred_at < cutoff],
            )
            scores.append(new[aid][ACCOUNT_SCORE])
            outcomes.append(bought)
            stage_of.append(_place(f, compiled, fallback, ctx))
    per_stage: dict[str, list[int]] = {st["name"]: [0, 0] for st in definition["stages"]}
    for st, o in zip(stage_of, outcomes, strict=True):
        per_stage[st][0] += 1
        per_stage[st][1] += int(o)
    n, converted = len(outcomes), sum(outcomes)
    a = auc(scores, outcomes)
    lift = top_decile_lift(scores, outcomes)
    return {
        "asOf": as_of.isoformat(),
        "horizonDays": horizon_days,
        "horizonComplete": end <= now,
        "stageSetVersion": stage_version,
        "accounts": n,
        "excludedWithEarlierDeal": excluded_existing_deal,
        "converted": converted,
        "baseRate": round(converted / n, 4) if n else None,
        "rocAuc": round(a, 4) if a is not None else None,
        "topDecileLift": round(lift, 3) if lift is not None else None,
        "stages": [
            {
                "stage": name,
                "accounts": cnt,
                "converted": conv,
                "conversion": round(conv / cnt, 4) if cnt else None,
            }
            for name, (cnt, conv) in per_stage.items()
        ],
        "leakageRule": LEAKAGE_RULE,
    }


# ---- history backfill -------------------------------------------------------------------------


def backfill_history(
    engine: Engine, ws: int, *, days: int = 90, every: int = 7, today: int | None = None
) -> int:
    """Score history for the past: each account's score and stage as of every `every`th
    day of the last `days` (the backtest's as-of rules: only signals, deals and
    activities before that day count), written to the daily history where a day has no
    row yet. Days already recorded by scoring runs are left as they are. Returns the
    rows written. For a new workspace whose signals arrived all at once (an import, the
    demo), so its score charts start with its data rather than with its first run."""
    if not 1 <= days <= 365:
        raise BadRequest(f"days should be from 1 to 365; got {days}")
    if not 1 <= every <= days:
        raise BadRequest(f"every should be from 1 to {days}; got {every}")
    today = today if today is not None else now_us() // US_PER_DAY
    with read_tx(engine) as conn:
        _, model = service.active_model(conn, ws)
        _, definition = stages_definition.active_definition(conn, ws)
    compiled = _stage_rules(definition)
    fallback = definition["stages"][-1]["name"]
    needs = _needs(definition, True)
    written = 0
    for day in range(today - days, today, every):
        cutoff = (day + 1) * US_PER_DAY  # the end of that day
        ctx = stages_definition.context(definition, cutoff - 1)
        for conn, ids, new in _scored_batches(engine, ws, model, day):
            with conn.begin():
                facts = load_facts(conn, ws, ids, ctx, needs=needs)
            rows = []
            for aid in ids:
                f = facts.get(aid)
                if f is None:
                    continue
                # Unlike the backtest, an account pushed after that day still counts:
                # its signals are what they were, whenever the CRM sent the account.
                f = dataclasses.replace(
                    f,
                    row={**f.row, **new[aid], "rtp_journey_stage": None},
                    deals=[d for d in f.deals if d.created < cutoff],
                    activities=[x for x in f.activities if x.occurred_at < cutoff],
                )
                stage = _place(f, compiled, fallback, ctx)
                rows.append((ws, aid, day, float(new[aid][ACCOUNT_SCORE]), stage))
            if rows:
                with conn.begin():
                    written += repo.insert_history_days(conn, rows)
    return written
