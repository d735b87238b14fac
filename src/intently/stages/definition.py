"""The workspace's stage list as scoring, segments and what-ifs read it: the active version,
the rule context it implies, and the evaluation of its rules over a batch of accounts
(read-only: placing accounts and recording their moves is stages/service.py)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Connection

from intently.kit.timefmt import now_us
from intently.rules import (
    All,
    Context,
    DealStageMap,
    Rule,
    load_facts,
    matching_ids,
    parse_rule,
    size_problems,
)
from intently.rules import evaluate as memory_evaluate
from intently.stages import repository as repo
from intently.stages.schemas import default_definition

log = logging.getLogger(__name__)


def active_definition(conn: Connection, ws: int) -> tuple[int, dict[str, Any]]:
    """(version, definition); version 0 is the built-in default, never saved."""
    found = repo.latest_stage_set(conn, ws)
    return found if found is not None else (0, default_definition())


def context(definition: dict[str, Any], as_of: int | None = None, **extra: Any) -> Context:
    """The rule context for this stage list: its deal-stage labels, evaluated at `as_of`."""
    deal_stages = definition["dealStages"]
    return Context(
        as_of=now_us() if as_of is None else as_of,
        deal_stages=DealStageMap(won=tuple(deal_stages["won"]), lost=tuple(deal_stages["lost"])),
        **extra,
    )


def evaluate(
    conn: Connection,
    ws: int,
    account_ids: Collection[str],
    definition: dict[str, Any],
    ctx: Context,
) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """account id -> (stage name, the rule that placed it; None for the fallback).

    SQLite answers best with one query per stage over the batch; PostgreSQL plans those
    correlated subqueries poorly (a 1,000,000-account run spent 380 s in them), so there
    the batch's facts are loaded in a few queries and the rules evaluated in memory. The
    two agree: tests/rules/test_equivalence.py.
    """
    stages = definition["stages"]
    rules = stage_rules(definition, ws)
    fallback = stages[-1]["name"]
    placed: dict[str, tuple[str, dict[str, Any] | None]] = {}
    if conn.dialect.name == "postgresql":
        needs = All(tuple(rule for _, _, rule in rules)) if rules else None
        facts = load_facts(conn, ws, list(account_ids), ctx, needs=needs)
        for aid in account_ids:
            f = facts.get(aid)
            hit = next(
                ((name, doc) for name, doc, rule in rules if f and memory_evaluate(rule, f, ctx)),
                None,
            )
            placed[aid] = hit if hit is not None else (fallback, None)
        return placed
    remaining = set(account_ids)
    for name, doc, rule in rules:
        if not remaining:
            break
        hits = matching_ids(conn, ws, rule, ctx, account_ids=remaining)
        for aid in hits & remaining:
            placed[aid] = (name, doc)
        remaining -= hits
    for aid in remaining:
        placed[aid] = (fallback, None)
    return placed


def _oversize(i: int, name: str, rule: Rule) -> dict[str, Any] | None:
    path = f"stages.{i}.rule"
    problems = size_problems(rule, path)
    if not problems:
        return None
    text = "; ".join(problems[0]["constraints"].values())
    message = f"{text}. Stage '{name}' places no account until its rule is narrowed"
    return {"stage": name, "path": path, "message": message}


def oversize_rules(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages whose rule is beyond the limits on a rule's size (saved before the
    limits existed): {"stage", "path", "message"} each. Such a stage places no account."""
    found = (
        _oversize(i, st["name"], parse_rule(st["rule"], bounded=False))
        for i, st in enumerate(definition["stages"][:-1])
    )
    return [p for p in found if p is not None]


def stage_rules(
    definition: dict[str, Any], ws: int | None = None
) -> list[tuple[str, dict[str, Any], Rule]]:
    """(name, rule document, rule) of each stage with a rule, nearest to purchase first.

    A rule saved before the limits on size existed and beyond them is left out, with a
    warning logged (once per workspace and stage) and its reason in GET /stages: one
    such rule must not fail every scoring run of its workspace."""
    out = []
    for i, st in enumerate(definition["stages"][:-1]):
        rule = parse_rule(st["rule"], bounded=False)
        problem = _oversize(i, st["name"], rule)
        if problem is not None:
            _warn_skipped(ws, problem["stage"], problem["message"])
            continue
        out.append((st["name"], st["rule"], rule))
    return out


@lru_cache(maxsize=1024)
def _warn_skipped(ws: int | None, stage: str, message: str) -> None:
    # Cached: a run evaluates its stage list once per batch, and a worker runs every minute.
    log.warning("workspace %s: stage rule skipped: %s", ws, message)
