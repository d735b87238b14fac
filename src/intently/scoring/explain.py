"""How an account's score comes about under the active model, type by type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from intently.catalog import ACCOUNT_SCORE, ALL_SCORES, COMPUTED_FIT, SCORE_COLUMNS
from intently.fit import repository as fit_repo
from intently.fit.model import active_scorer
from intently.kit.db import read_tx
from intently.kit.errors import NotFound
from intently.kit.ids import check_aid
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.rules import SurgeParams, is_surging
from intently.scoring import decay, features
from intently.scoring import repository as repo
from intently.scoring.model import active_model
from intently.scoring.service import plan, scores_of
from intently.stages.repository import last_change


def explain(engine: Engine, ws: int, aid: str, *, as_of: int | None = None) -> dict[str, Any]:
    """How the account's score comes about under the active model, type by type."""
    check_aid(aid)
    day = (as_of if as_of is not None else now_us()) // US_PER_DAY
    with read_tx(engine) as conn:
        account = repo.account_row(conn, ws, aid)
        if account is None:
            raise NotFound(f"Account '{aid}' not found")
        version, model = active_model(conn, ws)
        p = plan(model, day)
        rows = repo.daily_rows(conn, ws, account["domain"], day - p.longest + 1, day)
        sp = p.surge
        window = repo.daily_rows(
            conn, ws, account["domain"], day - sp.recent_days - sp.baseline_days + 1, day
        )
        fired = last_change(conn, ws, aid)
        fit = active_scorer(conn, ws, day * US_PER_DAY if as_of is not None else now_us())
        fit_values = fit_repo.account_values(conn, ws, aid, fit.columns)
        trained = _trained(conn, ws, aid, model.get("predictor"), day)
    by_type: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    for source, typ, d, count, value_sum in rows:
        by_type.setdefault((source, typ), []).append((day - d, count, value_sum))
    sources_out: list[dict[str, Any]] = []
    points_by_source: dict[str, float] = {}
    for source, src in model["sources"].items():
        types_out: list[dict[str, Any]] = []
        total = 0.0
        for typ_name, typ in src["types"].items():
            spec = typ["decay"]
            h = decay.horizon(spec)
            inside = [r for r in by_type.get((source, typ_name), []) if r[0] < h]
            by_value = typ.get("unit") == "value"
            units = {age: (vs if by_value else float(c)) for age, c, vs in inside}
            inc, cap = float(typ["increment"]), float(typ["cap"])
            raw = inc * sum(units.values())
            decayed = inc * sum(u * decay.factor(spec, age) for age, u in units.items())
            on = bool(typ.get("enabled", True))
            points = min(cap, decayed) if on else 0.0
            total += points
            types_out.append(
                {
                    "type": typ_name,
                    "enabled": on,
                    "unit": typ.get("unit", "count"),
                    "increment": inc,
                    "decay": spec,
                    "count": sum(c for _, c, _ in inside),
                    "newestAgeDays": min((a for a, _, _ in inside), default=None),
                    "oldestAgeDays": max((a for a, _, _ in inside), default=None),
                    "rawPoints": raw,
                    "decayApplied": raw - decayed,
                    "decayedPoints": decayed,
                    "cap": cap,
                    "capHit": on and decayed >= cap,
                    "points": points,
                }
            )
        points_by_source[source] = total
        sources_out.append(
            {
                "source": source,
                "column": SCORE_COLUMNS.get(source),
                "weight": float(src["weight"]),
                "countsInAccountScore": source in p.weights,
                "cap": p.source_caps[source],
                "points": total,
                "capHit": total >= p.source_caps[source],
                "types": types_out,
            }
        )
    computed, subs = scores_of(points_by_source, p)
    for s in sources_out:
        s["subScore"] = subs[s["source"]]
    weight_total = sum(p.weights.values())
    account_score = decay.account_score(subs, p.weights)
    if trained is not None:
        # A trained model gives the account score; the sources still give the sub-scores.
        computed[ACCOUNT_SCORE] = account_score = trained["score"]
    # The fit, as the next run computes it (the grade reads the account score above).
    fit_out = fit.explain(fit_values[2:] if fit_values else (), computed[ACCOUNT_SCORE])
    fit_out["stored"] = {
        c: fit_values[i] if fit_values else None for i, c in enumerate(COMPUTED_FIT)
    }
    return {
        "rtp_aid": aid,
        "domain": account["domain"],
        "modelVersion": version,
        "asOfDay": day,
        "sources": sources_out,
        "weightTotal": weight_total,
        "accountScore": account_score,
        "scores": computed,
        "predictor": trained,
        "surge": _surge(window, day, p.surge),
        "fit": fit_out,
        "stage": {
            "name": account["rtp_journey_stage"],
            "rule": fired["rule"]
            if fired and fired["to"] == account["rtp_journey_stage"]
            else None,
            "since": fired["changedAt"] if fired else None,
        },
        "stored": {
            **{c: account[c] for c in ALL_SCORES},
            "modelVersion": account["score_model_version"],
            "rtp_journey_stage": account["rtp_journey_stage"],
        },
    }


def _trained(
    conn: Connection, ws: int, aid: str, predictor: dict[str, Any] | None, day: int
) -> dict[str, Any] | None:
    """A trained model's account score as lines that add up to it (features.lines), with
    the calibrated probability of a deal within its horizon; None for a weighted model."""
    if predictor is None:
        return None
    features.load_days(conn, predictor["features"], day)
    try:
        x, _ = features.batch_features(conn, ws, predictor["features"], [aid], ranged=False)
    finally:
        features.drop_days(conn)
    out = features.lines(predictor, x[0])
    return {
        "kind": predictor.get("kind", "logistic_regression"),
        "trainingId": predictor.get("trainingId"),
        "horizonDays": predictor.get("horizonDays"),
        "score": out["score"],
        "probability": out["probability"],
        "lines": out["lines"],
    }


def _surge(rows: Sequence[tuple[Any, ...]], day: int, sp: SurgeParams) -> list[dict[str, Any]]:
    """Per source: signals in the recent window, in the baseline before it, and whether
    that is a surge (the rule language's definition, so stage rules agree)."""
    counts: dict[str, list[int]] = {}
    for source, _typ, d, count, _value in rows:
        c = counts.setdefault(source, [0, 0])
        c[0 if d > day - sp.recent_days else 1] += int(count)
    return [
        {
            "source": source,
            "recentDays": sp.recent_days,
            "recent": recent,
            "baselineDays": sp.baseline_days,
            "baseline": baseline,
            "surging": is_surging(recent, baseline, sp),
        }
        for source, (recent, baseline) in sorted(counts.items())
    ]
