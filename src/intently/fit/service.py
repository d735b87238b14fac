"""The fit model's use cases: read it, replace it (a new version), and try a proposal.

Scoring runs apply the active fit model (scoring/service.py `_write_batch`); a new version
applies from the next run, as a new scoring model does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.engine import Engine

from intently.fit import repository as repo
from intently.fit.model import FitScorer, active_fit_model, scorer
from intently.fit.schemas import default_fit_model, validate_fit_model
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest
from intently.kit.timefmt import format_ms, now_us
from intently.rules.facts import custom_field_types
from intently.scoring.present import distribution

DRY_RUN_BATCH = 2000


def get_model(engine: Engine, ws: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        found = repo.latest_model(conn, ws)
    if found is None:
        return {"version": 0, "isDefault": True, "createdAt": None, "model": default_fit_model()}
    version, model, created = found
    return {"version": version, "isDefault": False, "createdAt": format_ms(created), "model": model}


def put_model(engine: Engine, ws: int, body: Any) -> dict[str, Any]:
    """Validate (with the workspace's custom field types) and store a new version."""
    with read_tx(engine) as conn:
        types = custom_field_types(conn, ws)
    model = validate_fit_model(body, types)
    now = now_us()
    with write_tx(engine) as conn:
        version = repo.insert_model(conn, ws, model, now)
    return {"version": version, "isDefault": False, "createdAt": format_ms(now), "model": model}


def dry_run(engine: Engine, ws: int, body: Any) -> dict[str, Any]:
    """What saving the proposed fit model `{"model": ...}` would change, nothing saved: the
    fit score distribution under the active model and under the proposal, and how many
    accounts would move from which grade to which (intent from the stored account score)."""
    if not isinstance(body, dict) or "model" not in body:
        raise BadRequest('Give the proposed fit model: {"model": {...}}')
    now = now_us()
    with read_tx(engine) as conn:
        types = custom_field_types(conn, ws)
        version, current = active_fit_model(conn, ws)
    proposed = validate_fit_model(body["model"], types)
    old = scorer(version, current, now, types)
    new = scorer(-1, proposed, now, types)
    before: list[float] = []
    after: list[float] = []
    moves: Counter[tuple[str, str]] = Counter()
    for intent, old_values, new_values in _accounts(engine, ws, old, new):
        f0, f1 = old.score(old_values), new.score(new_values)
        before.append(f0)
        after.append(f1)
        moves[(old.grade(f0, intent), new.grade(f1, intent))] += 1
    return {
        "modelVersion": version,
        "accounts": len(before),
        "fitChanged": sum(1 for a, b in zip(before, after, strict=True) if a != b),
        "gradeMoves": [
            {"from": a, "to": b, "accounts": n}
            for (a, b), n in sorted(moves.items(), key=lambda kv: (-kv[1], kv[0]))
            if a != b
        ],
        "unmoved": sum(n for (a, b), n in moves.items() if a == b),
        "fitBefore": distribution(before),
        "fitAfter": distribution(after),
    }


def _accounts(engine: Engine, ws: int, old: FitScorer, new: FitScorer) -> Any:
    """(stored account score, values for `old`, values for `new`) of every account."""
    columns = list(dict.fromkeys((*old.columns, *new.columns)))
    at_old = [columns.index(c) + 4 for c in old.columns]
    at_new = [columns.index(c) + 4 for c in new.columns]
    after = ""
    while True:
        with read_tx(engine) as conn:
            rows = repo.account_batch(conn, ws, after, DRY_RUN_BATCH, columns)
        if not rows:
            return
        for r in rows:
            intent = float(r[1]) if r[1] is not None else 0.0
            yield intent, tuple(r[i] for i in at_old), tuple(r[i] for i in at_new)
        after = str(rows[-1][0])
