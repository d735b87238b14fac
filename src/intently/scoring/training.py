"""Training a predictive model on the workspace's own deals, and activating model versions.

Samples: accounts as of past cut-offs (every `STEP_DAYS` days back from the latest one
whose horizon is complete), each as of its UTC day. Features come from
`scoring/features.py` as of the day before the cut-off (rollup days before the cut-off's
day only); the profile is read as stored (treated as static). The label is a deal opened
within the horizon after the cut-off (opened: its startDate, else when it was first
pushed). Left out: accounts created after the cut-off, and accounts with a deal open at
the cut-off (opened before it and not closed, won or lost by the workspace's deal stage
map, before it); customers (won deals) stay in.

The latest cut-off is the hold-out: never used for fitting, it is where the trained model
and the active one are compared (ROC AUC, top-decile lift, Brier score, a reliability
table). The active model's score becomes a probability through a Platt fit on the
training samples, so its calibration is comparable.

The model: an L2 logistic regression (scikit-learn) over those features, without class
weights, so its probabilities stay calibrated to the base rate. Its log-odds become the
0-100 account score by a scorecard scaling (offset + factor x logit, clamped), so each
feature's contribution is a number of points and an explanation adds up.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from intently.catalog import ACCOUNT_SCORE
from intently.kit.db import read_tx, write_tx
from intently.kit.errors import BadRequest, Conflict, NotFound
from intently.kit.heartbeat import Heartbeat, reap
from intently.kit.ids import new_id
from intently.kit.timefmt import US_PER_DAY, format_ms, now_us
from intently.rules import DealStageMap, deal_status
from intently.scoring import features, service, whatif
from intently.scoring import repository as repo
from intently.scoring.model import active_model, surge_params
from intently.scoring.schemas import default_model
from intently.scoring.tables import model_trainings
from intently.settings import get_settings
from intently.stages import definition as stages_definition

STEP_DAYS = 14  # between cut-offs
MAX_CUTOFFS = 12  # training cut-offs at most (the newest ones)
MIN_HISTORY_DAYS = 14  # a cut-off needs this much signal history before it
MIN_TRAIN_POSITIVES = 30
MIN_HOLDOUT_POSITIVES = 10
# Beyond this many training samples, negatives are sampled (and weighted back): the fit's
# time grows with the samples, and 200,000 with every positive kept pin down ~100 weights.
MAX_TRAIN_SAMPLES = 200_000
BATCH = 10_000
L2_C = 1.0
RELIABILITY_BINS = 10

Progress = Callable[[str], None]


class TrainingRefused(BadRequest):
    """Training cannot give a model worth having (too few examples)."""


# ---- samples ------------------------------------------------------------------------------


def _cutoffs(first_day: int | None, today: int, horizon: int) -> list[int]:
    """Cut-off days, oldest first; the last is the hold-out."""
    last = today - horizon
    if first_day is None:
        return [last]
    days: list[int] = []
    d = last
    while d >= first_day + MIN_HISTORY_DAYS and len(days) < MAX_CUTOFFS + 1:
        days.append(d)
        d -= STEP_DAYS
    return sorted(days) or [last]


def _labels(
    links: list[tuple[str, str, int, str | None, int]], stages: DealStageMap
) -> dict[str, list[tuple[int, str, int]]]:
    """Per account: (opened, status, closed-or-updated) of its deals."""
    out: dict[str, list[tuple[int, str, int]]] = {}
    for aid, _, opened, label, closed in links:
        out.setdefault(aid, []).append((opened, deal_status(label, stages), closed))
    return out


def _eligible_label(deals: list[tuple[int, str, int]], cutoff: int, end: int) -> tuple[bool, bool]:
    """(in the sample, label) of an account existing at the cut-off."""
    for opened, status, closed in deals:
        if opened < cutoff and (status == "open" or closed >= cutoff):
            return False, False  # a deal open at the cut-off
    return True, any(cutoff <= opened < end for opened, _, _ in deals)


class Samples:
    def __init__(self) -> None:
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.current: list[np.ndarray] = []
        self.group: list[np.ndarray] = []


def _collect(
    engine: Engine,
    ws: int,
    spec: dict[str, Any],
    models: list[dict[str, Any]],
    cutoff_days: list[int],
    horizon: int,
    deals: dict[str, list[tuple[int, str, int]]],
    progress: Progress,
    scored_from: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, per model its account scores, cut-off index) of every sample;
    the models score the cut-offs from index `scored_from` on (before it: 0)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    gs: list[np.ndarray] = []
    for gi, cday in enumerate(cutoff_days):
        cutoff = cday * US_PER_DAY
        end = cutoff + horizon * US_PER_DAY
        as_of_day = cday - 1  # the cut-off's own day is already "after"
        by_model = [
            _model_scores(engine, ws, m, as_of_day) if gi >= scored_from else {} for m in models
        ]
        with engine.connect() as conn:
            with conn.begin():
                features.load_days(conn, spec, as_of_day)
            try:
                after = ""
                while True:
                    with conn.begin():
                        ids = repo.batch_ids(conn, ws, after, BATCH)
                        if not ids:
                            break
                        x, prof = features.batch_features(conn, ws, spec, ids, ranged=True)
                    after = ids[-1]
                    keep = np.zeros(len(ids), dtype=bool)
                    lab = np.zeros(len(ids), dtype=bool)
                    for k, aid in enumerate(ids):
                        p = prof.get(aid)
                        if p is None or int(p[4]) >= cutoff:
                            continue  # created after the cut-off
                        keep[k], lab[k] = _eligible_label(deals.get(aid, []), cutoff, end)
                    xs.append(x[keep].astype(np.float32))
                    ys.append(lab[keep])
                    kept = [a for a, k in zip(ids, keep.tolist(), strict=True) if k]
                    rows = [[s.get(a, 0.0) for s in by_model] for a in kept]
                    ss.append(np.array(rows, dtype=np.float64).reshape(len(kept), len(models)))
                    gs.append(np.full(len(kept), gi, dtype=np.int16))
            finally:
                with conn.begin():
                    features.drop_days(conn)
        progress(f"cut-off {_date(cday)}: {sum(len(g) for g in gs)} samples so far")
    width = len(features.names(spec))
    if not xs:
        z = np.zeros(0)
        return np.zeros((0, width), np.float32), z.astype(bool), np.zeros((0, len(models))), z
    return np.vstack(xs), np.concatenate(ys), np.vstack(ss), np.concatenate(gs)


def _model_scores(
    engine: Engine, ws: int, model: dict[str, Any], as_of_day: int
) -> dict[str, float]:
    """Every account's score under `model` as of the day, by the scoring runs' own steps
    (plan, the aggregate, sub-scores, a trained model's score) in keyset batches."""
    p = service.plan(model, as_of_day)
    out: dict[str, float] = {}
    with engine.connect() as conn:
        with conn.begin():
            service.load_plan(conn, p)
        try:
            after = ""
            while True:
                with conn.begin():
                    ids = repo.batch_ids(conn, ws, after, BATCH)
                    if not ids:
                        break
                    rows, trained = service.batch_points(conn, ws, p, ids, ranged=True)
                after = ids[-1]
                if trained is not None:
                    out.update(trained)
                    continue
                points: dict[str, dict[str, float]] = {}
                for aid, source, pts in rows:
                    points.setdefault(aid, {})[source] = round(pts, 9)
                out.update(
                    (a, service.scores_of(points.get(a, {}), p)[0][ACCOUNT_SCORE]) for a in ids
                )
        finally:
            with conn.begin():
                service.drop_plan(conn)
    return out


def _date(day: int) -> str:
    return format_ms(day * US_PER_DAY)[:10]


# ---- metrics ------------------------------------------------------------------------------


def _metrics(prob: np.ndarray, score: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    outcomes = y.tolist()
    a = whatif.auc(score.tolist(), outcomes)
    lift = whatif.top_decile_lift(score.tolist(), outcomes)
    brier = float(np.mean((prob - y.astype(float)) ** 2)) if len(y) else None
    table = []
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    # Bins by predicted probability; the last bin includes 1.0.
    idx = np.minimum(np.searchsorted(edges, prob, side="right") - 1, RELIABILITY_BINS - 1)
    for b in range(RELIABILITY_BINS):
        mask = idx == b
        n = int(mask.sum())
        if n == 0:
            continue
        table.append({
            "from": round(float(edges[b]), 2), "to": round(float(edges[b + 1]), 2),
            "accounts": n, "predicted": round(float(prob[mask].mean()), 4),
            "observed": round(float(y[mask].mean()), 4),
        })  # fmt: skip
    return {
        "rocAuc": round(a, 4) if a is not None else None,
        "topDecileLift": round(lift, 3) if lift is not None else None,
        "brier": round(brier, 5) if brier is not None else None,
        "reliability": table,
    }


def _platt(score: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """score -> probability, fitted on (score, outcome) pairs."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        rate = float(y.mean()) if len(y) else 0.0
        return lambda s: np.full(len(s), rate)
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(score.reshape(-1, 1), y)
    return lambda s: lr.predict_proba(np.asarray(s).reshape(-1, 1))[:, 1]


# ---- training -------------------------------------------------------------------------------


def _top(counter: Counter[str], k: int, min_count: int) -> list[str]:
    return [v for v, n in counter.most_common() if n >= min_count][:k]


def fit(
    engine: Engine,
    ws: int,
    *,
    horizon_days: int,
    progress: Progress,
    now: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(the trained predictor, the report, the active model's version) or TrainingRefused."""
    t0 = time.perf_counter()
    now = now_us() if now is None else now
    today = now // US_PER_DAY
    with read_tx(engine) as conn:
        version, current = active_model(conn, ws)
        _, definition = stages_definition.active_definition(conn, ws)
        links = repo.deal_links(conn, ws)
        first_day = repo.first_signal_day(conn, ws)
        counts = repo.profile_counts(conn, ws)
    stage_map = stages_definition.context(definition, now).deal_stages
    deals = _labels(links, stage_map)
    industries: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    for ind, cty, n in counts:
        i = features.norm_industry(ind)
        if i is not None:
            industries[i] += n
        if cty:
            countries[str(cty).upper()] += n
    spec = features.make_spec(
        surge_params(current),
        _top(industries, features.TOP_INDUSTRIES, 20),
        _top(countries, features.TOP_COUNTRIES, 20),
    )
    cutoff_days = _cutoffs(first_day, today, horizon_days)
    progress(f"cut-offs: {', '.join(_date(d) for d in cutoff_days)} (the last is the hold-out)")
    # The active model scores the hold-out, and the latest training cut-off for its Platt
    # fit (score -> probability): one cut-off is plenty for two parameters.
    x, y, cur, group = _collect(
        engine, ws, spec, [current], cutoff_days, horizon_days, deals, progress,
        scored_from=max(len(cutoff_days) - 2, 0),
    )  # fmt: skip
    hold = group == len(cutoff_days) - 1
    train = ~hold
    n_pos_train, n_pos_hold = int(y[train].sum()), int(y[hold].sum())
    if (
        len(cutoff_days) < 2
        or n_pos_train < MIN_TRAIN_POSITIVES
        or n_pos_hold < MIN_HOLDOUT_POSITIVES
    ):
        raise TrainingRefused(
            f"too few positive examples to train: {n_pos_train} accounts opened a deal within "
            f"{horizon_days} days of a training cut-off (at least {MIN_TRAIN_POSITIVES} needed) "
            f"and {n_pos_hold} in the hold-out (at least {MIN_HOLDOUT_POSITIVES} needed), "
            f"over {len(cutoff_days) - 1} training cut-off(s) every {STEP_DAYS} days with a "
            "complete horizon"
        )
    from sklearn.linear_model import LogisticRegression

    xt, yt = x[train], y[train]
    weight = np.ones(len(yt))
    if len(yt) > MAX_TRAIN_SAMPLES:
        # Keep every positive; sample negatives and weight them back, so the fitted
        # probabilities still match the base rate.
        rng = np.random.default_rng(0)
        neg = np.flatnonzero(~yt)
        room = max(MAX_TRAIN_SAMPLES - int(yt.sum()), 1)
        rate = min(1.0, room / max(len(neg), 1))
        keep = np.concatenate([np.flatnonzero(yt), neg[rng.random(len(neg)) < rate]])
        xt, yt, weight = xt[keep], yt[keep], np.where(yt[keep], 1.0, 1.0 / rate)
    sd = xt.std(axis=0).astype(np.float64)
    sd[sd == 0] = 1.0
    progress(f"fitting on {len(yt)} samples, {n_pos_train} positive, {x.shape[1]} features")
    lr = LogisticRegression(C=L2_C, max_iter=2000)
    lr.fit(xt / sd, yt, sample_weight=weight)
    coef = lr.coef_[0] / sd
    intercept = float(lr.intercept_[0])
    train_logit = x[train].astype(np.float64) @ coef + intercept
    # Scorecard scaling: the training samples' 1st to 99.5th percentile of log-odds over
    # 5-95 points, so scores use the range and a higher score is always likelier.
    lo, hi = np.quantile(train_logit, [0.01, 0.995])
    factor = 90.0 / max(float(hi - lo), 1e-6)
    offset = 5.0 - factor * float(lo)
    names = features.names(spec)
    predictor: dict[str, Any] = {
        "kind": "logistic_regression",
        "features": spec,
        "coefficients": {n: round(float(c), 10) for n, c in zip(names, coef, strict=True)},
        "intercept": round(intercept, 10),
        "scaling": {"offset": round(offset, 8), "factor": round(factor, 8)},
        "horizonDays": horizon_days,
    }
    # the hold-out
    xh, yh = x[hold].astype(np.float64), y[hold]
    logit_h = xh @ np.array([predictor["coefficients"][n] for n in names]) + predictor["intercept"]
    trained_score = features.to_score(predictor, logit_h)
    trained_prob = 1.0 / (1.0 + np.exp(-logit_h))
    cur_h = cur[hold, 0]
    platt_set = group == len(cutoff_days) - 2
    cur_prob = _platt(cur[platt_set, 0], y[platt_set])(cur_h)
    trained_m = _metrics(trained_prob, trained_score, yh)
    current_m = _metrics(cur_prob, cur_h, yh)
    top_terms = sorted(
        ((n, float(c)) for n, c in zip(names, coef, strict=True) if c != 0),
        key=lambda t: -abs(t[1]),
    )[:15]
    report = {
        "horizonDays": horizon_days,
        "cutoffs": [_date(d) for d in cutoff_days[:-1]],
        "holdoutCutoff": _date(cutoff_days[-1]),
        "training": {
            "samples": int(train.sum()),
            "positives": n_pos_train,
            "fitted": len(yt),
        },
        "holdout": {"samples": int(hold.sum()), "positives": n_pos_hold},
        "trained": trained_m,
        "current": {"modelVersion": version, **current_m},
        "features": len(names),
        "topCoefficients": [{"feature": n, "coefficient": round(c, 4)} for n, c in top_terms],
        "leakageRule": LEAKAGE_RULE,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    predictor["metrics"] = {
        "holdoutCutoff": report["holdoutCutoff"],
        "rocAuc": trained_m["rocAuc"],
        "topDecileLift": trained_m["topDecileLift"],
        "brier": trained_m["brier"],
        "currentRocAuc": current_m["rocAuc"],
        "currentModelVersion": version,
    }
    return (
        {**{k: v for k, v in current.items() if k != "predictor"}, "predictor": predictor},
        report,
        version,
    )


LEAKAGE_RULE = (
    "Features as of a cut-off count only rollup days before the cut-off's day; the label is "
    "a deal opened (its startDate, else when it was first pushed) within the horizon after "
    "the cut-off; accounts created after the cut-off, or with a deal open at it, are left "
    "out; the profile is read as stored (treated as static). The last cut-off is held out."
)


def train(
    engine: Engine,
    ws: int,
    *,
    horizon_days: int = 90,
    activate: bool = False,
    force: bool = False,
    training_id: str | None = None,
    progress: Progress | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Train, store the model as a new version (activated when asked and not worse than the
    active one, or forced) and record it all in model_trainings; returns the training."""
    check_horizon(horizon_days)
    say = progress or (lambda _m: None)
    tid = training_id or start(engine, ws, horizon_days)
    if training_id is not None:
        # Queued by the API: it may have waited for a worker longer than the lease, and
        # been marked stopped meanwhile. It runs now, in this process.
        with write_tx(engine) as conn:
            repo.update_training(conn, ws, tid, {"status": "running", "heartbeat_at": now_us(),
                                                 "error": None, "finished_at": None})  # fmt: skip
    beat = Heartbeat(engine, model_trainings, ws, tid, get_settings().run_lease_s)
    try:
        model, report, _cur_version = fit(
            engine, ws, horizon_days=horizon_days, progress=say, now=now
        )
        report["trainingId"] = tid
        model["predictor"]["trainingId"] = tid
        with write_tx(engine) as conn:
            version = repo.insert_model(conn, ws, model, now_us(), activate=False)
        report["modelVersion"] = version
        activated = None
        if activate:
            try:
                activate_version(engine, ws, version, force=force)
                activated = True
            except Conflict as exc:
                activated = False
                report["activationRefused"] = str(exc)
        report["activated"] = activated
        say(_summary(report))
    except BaseException as exc:
        with write_tx(engine) as conn:
            repo.update_training(conn, ws, tid, {
                "status": "failed", "finished_at": now_us(),
                "error": f"{type(exc).__name__}: {exc}"[:2000] if not isinstance(exc, BadRequest)
                else str(exc)[:2000],
            })  # fmt: skip
        raise
    finally:
        beat.stop()
    with write_tx(engine) as conn:
        done = {"status": "done", "finished_at": now_us(), "report": report,
                "model_version": version}  # fmt: skip
        repo.update_training(conn, ws, tid, done)
    return get_training(engine, ws, tid)


def check_horizon(horizon_days: int) -> None:
    if not 7 <= horizon_days <= 365:
        raise BadRequest(f"horizonDays '{horizon_days}' must be from 7 to 365")


def start(engine: Engine, ws: int, horizon_days: int) -> str:
    """Record a training as running (the API records it before the worker takes it)."""
    check_horizon(horizon_days)
    tid = new_id()
    now = now_us()
    with write_tx(engine) as conn:
        repo.insert_training(conn, {
            "workspace_id": ws, "id": tid, "status": "running", "horizon_days": horizon_days,
            "started_at": now, "heartbeat_at": now,
        })  # fmt: skip
    return tid


def _summary(report: dict[str, Any]) -> str:
    t, c = report["trained"], report["current"]
    return (
        f"hold-out {report['holdoutCutoff']}: {report['holdout']['samples']} accounts, "
        f"{report['holdout']['positives']} opened a deal; trained model AUC {t['rocAuc']}, "
        f"lift {t['topDecileLift']}, Brier {t['brier']}; current model (version "
        f"{c['modelVersion']}) AUC {c['rocAuc']}, lift {c['topDecileLift']}, Brier {c['brier']}"
    )


def reap_stopped(engine: Engine, ws: int | None = None) -> int:
    return reap(engine, model_trainings, get_settings().run_lease_s, ws=ws)


def _present(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "trainingId": r["id"],
        "status": r["status"],
        "horizonDays": r["horizon_days"],
        "startedAt": format_ms(r["started_at"]),
        "finishedAt": format_ms(r["finished_at"]) if r["finished_at"] else None,
        "modelVersion": r["model_version"],
        "error": r["error"],
        "report": r["report"],
    }


def list_trainings(engine: Engine, ws: int, limit: int = 20) -> list[dict[str, Any]]:
    reap_stopped(engine, ws)
    with read_tx(engine) as conn:
        return [_present(r) for r in repo.trainings(conn, ws, limit)]


def get_training(engine: Engine, ws: int, tid: str) -> dict[str, Any]:
    reap_stopped(engine, ws)
    with read_tx(engine) as conn:
        rows = repo.trainings(conn, ws, 1, tid)
    if not rows:
        raise NotFound(f"Training '{tid}' not found")
    return _present(rows[0])


# ---- versions and activation ----------------------------------------------------------------


def list_models(engine: Engine, ws: int) -> list[dict[str, Any]]:
    with read_tx(engine) as conn:
        rows = repo.list_models(conn, ws)
        active = repo.latest_model(conn, ws)
    active_version = active[0] if active is not None else 0
    out = [
        {
            "version": r["version"],
            "active": r["version"] == active_version,
            "trained": "predictor" in r["model"],
            "createdAt": format_ms(r["created_at"]),
            "activatedAt": format_ms(r["activated_at"]) if r["activated_at"] else None,
            "trainingId": (r["model"].get("predictor") or {}).get("trainingId"),
            "metrics": (r["model"].get("predictor") or {}).get("metrics"),
        }
        for r in rows
    ]
    out.append({"version": 0, "active": active_version == 0, "trained": False, "createdAt": None,
                "activatedAt": None, "trainingId": None, "metrics": None})  # fmt: skip
    return out


def holdout_auc(
    engine: Engine, ws: int, models: list[dict[str, Any]], cutoff_day: int, horizon: int
) -> list[float | None]:
    """Each model's ROC AUC on the hold-out samples of that cut-off (training's rules)."""
    with read_tx(engine) as conn:
        _, definition = stages_definition.active_definition(conn, ws)
        links = repo.deal_links(conn, ws)
    deals = _labels(links, stages_definition.context(definition).deal_stages)
    spec = features.make_spec(surge_params(models[0]), [], [])
    _, y, scores, _ = _collect(
        engine, ws, spec, models, [cutoff_day], horizon, deals, lambda _m: None
    )
    return [whatif.auc(scores[:, i].tolist(), y.tolist()) for i in range(len(models))]


def activate_version(
    engine: Engine, ws: int, version: int, *, force: bool = False
) -> dict[str, Any]:
    """Make `version` (0: the default) the active model. Unless forced, refused when the
    product's backtest on a trained model's hold-out (the target's, else the active one's)
    ranks the target worse (ROC AUC) than the active model."""
    with read_tx(engine) as conn:
        cur_version, current = active_model(conn, ws)
        target = default_model() if version == 0 else repo.model_of_version(conn, ws, version)
    if target is None:
        raise NotFound(f"Model version '{version}' not found")
    if version == cur_version:
        return {"version": version, "active": True, "changed": False}
    judge = target.get("predictor") or current.get("predictor")
    figures: dict[str, Any] = {}
    if judge is not None and not force:
        metrics = judge.get("metrics") or {}
        day = _day_of(metrics["holdoutCutoff"])
        aucs = holdout_auc(engine, ws, [target, current], day, int(judge.get("horizonDays", 90)))
        figures = {"targetRocAuc": aucs[0], "activeRocAuc": aucs[1],
                   "holdoutCutoff": metrics["holdoutCutoff"]}  # fmt: skip
        if aucs[0] is not None and aucs[1] is not None and aucs[0] < aucs[1]:
            raise Conflict(
                f"model version {version} backtests worse than the active version "
                f"{cur_version} on the hold-out of {metrics['holdoutCutoff']}: ROC AUC "
                f"{aucs[0]:.4f} against {aucs[1]:.4f}; activate with force to do it anyway"
            )
    with write_tx(engine) as conn:
        if version == 0:
            # The default has no row: store it again as a version of its own, active.
            version = repo.insert_model(conn, ws, target, now_us(), activate=True)
        else:
            repo.activate_model(conn, ws, version, now_us())
    return {"version": version, "active": True, "changed": True, **figures}


def _day_of(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days
