"""The predictive model: trained on the workspace's own deals, backtested on a later
hold-out, stored as a model version, activated (or refused), applied in scoring runs and
explained line by line."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from intently.kit.db import write_tx
from intently.kit.timefmt import US_PER_DAY, now_us
from intently.scoring import features, training
from intently.scoring.model import surge_params
from intently.scoring.schemas import default_model
from intently.signals.store import SignalIn
from tests.support.api import Api, Workspace, new_workspace
from tests.support.cli import intently
from tests.support.predict import build_world, push_accounts, push_deals, put_signals


@pytest.fixture(scope="module")
def world(client: Any, engine: Any) -> tuple[Workspace, dict[str, Any]]:
    ws = new_workspace(client, engine, "predict")
    return ws, build_world(ws.api, engine, ws.id, accounts=2500)


def _train(api: Api, **body: Any) -> dict[str, Any]:
    r = api.post("/scoring/train", json=body)
    assert r.status_code == 200, r.text
    tid = r.json()["data"]["trainingId"]
    r = api.get(f"/scoring/trainings/{tid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _active(api: Api) -> int:
    return int(api.get("/scoring/model").json()["data"]["version"])


def _backtest_auc(api: Api, as_of: str) -> float:
    r = api.get("/scoring/backtest", params={"asOf": as_of, "horizonDays": 90})
    assert r.status_code == 200, r.text
    return float(r.json()["data"]["rocAuc"])


# ---- the headline: a world whose drivers the default model gets wrong ----------------------


def test_the_trained_model_beats_the_default_and_scores_and_explains(
    world: tuple[Workspace, dict[str, Any]], jobs: None, engine: Any
) -> None:
    ws, facts = world
    api = ws.api
    assert facts["deals"] >= 200
    t = _train(api, horizonDays=90)
    assert t["status"] == "done", t
    report = t["report"]
    trained, current = report["trained"], report["current"]
    # the training's own hold-out report, next to the active (default) model's
    assert current["modelVersion"] == 0
    assert trained["rocAuc"] >= current["rocAuc"] + 0.15, report
    assert trained["topDecileLift"] > current["topDecileLift"]
    assert trained["brier"] < current["brier"]
    assert sum(b["accounts"] for b in trained["reliability"]) == report["holdout"]["samples"]
    # what it learnt: the true drivers and the ICP, not the blog views
    coef = {c["feature"]: c["coefficient"] for c in report["topCoefficients"]}
    assert coef.get("industry:software", 0) > 0 and coef.get("employees:201-1000", 0) > 0
    assert "website.page_view.decayed" not in coef
    # stored as a new version, not active until activated
    version = t["modelVersion"]
    assert _active(api) == 0
    models = api.get("/scoring/models").json()["data"]
    mine = next(m for m in models if m["version"] == version)
    assert mine["trained"] and not mine["active"] and mine["metrics"]["rocAuc"] == trained["rocAuc"]
    # the product's own backtest on the hold-out date: default, then the trained model
    holdout = report["holdoutCutoff"]
    default_auc = _backtest_auc(api, holdout)
    assert api.post("/scoring/runs", json={"full": True}).status_code == 200
    before = {a["rtp_aid"]: a for a in _accounts(api)}
    r = api.post(f"/scoring/models/{version}/activate", json={})
    assert r.status_code == 200, r.text
    assert _active(api) == version
    trained_auc = _backtest_auc(api, holdout)
    assert trained_auc >= default_auc + 0.15, (trained_auc, default_auc)

    # a scoring run applies it: account scores from the trained model, sub-scores as before
    r = api.post("/scoring/runs", json={"full": True})
    assert r.status_code == 200 and r.json()["data"]["modelVersion"] == version
    after = {a["rtp_aid"]: a for a in _accounts(api)}
    sub = ("rtp_website_intent_score", "rtp_g2_intent_score", "rtp_advertising_activity_score")
    assert all(after[a][c] == before[a][c] for a in before for c in sub)
    assert (
        sum(after[a]["rtp_account_score"] != before[a]["rtp_account_score"] for a in before) > 1000
    )
    scores = [a["rtp_account_score"] for a in after.values()]
    assert min(scores) >= 0 and max(scores) <= 100 and len(set(scores)) > 50
    # every explanation adds up to the stored score, over accounts of every kind
    rnd = random.Random(3)
    for aid in rnd.sample(sorted(after), 25):
        r = api.get(f"/accounts/{aid}/score")
        assert r.status_code == 200, r.text
        e = r.json()["data"]
        pred = e["predictor"]
        assert pred is not None and 0 <= pred["probability"] < 1
        total = sum(line["points"] for line in pred["lines"])
        assert round(total, 2) == e["accountScore"] == after[aid]["rtp_account_score"]
        assert e["scores"]["rtp_account_score"] == after[aid]["rtp_account_score"]
        assert pred["lines"][0]["feature"] == "intercept"
        assert all(line["points"] != 0 or line["feature"] == "intercept" for line in pred["lines"])

    # rolling back to the default backtests worse: refused with both figures, then forced
    r = api.post("/scoring/models/0/activate", json={})
    assert r.status_code == 409, r.text
    assert "ROC AUC" in r.text and f"active version {version}" in r.text
    assert _active(api) == version
    r = api.post("/scoring/models/0/activate", json={"force": True})
    assert r.status_code == 200, r.text
    rolled = r.json()["data"]["version"]
    assert _active(api) == rolled and rolled != version
    assert "predictor" not in api.get("/scoring/model").json()["data"]["model"]
    # and forward again to the trained version (better than the active default: allowed)
    r = api.post(f"/scoring/models/{version}/activate", json={})
    assert r.status_code == 200, r.text
    assert _active(api) == version
    listed = {m["version"]: m["active"] for m in api.get("/scoring/models").json()["data"]}
    assert listed[version] and not listed[rolled] and not listed[0]


def _accounts(api: Api) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/accounts", params=params)
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        out += page["data"]
        cursor = page.get("nextCursor") or page.get("cursor")
        if not cursor or not page["data"]:
            return out


def test_the_cli_trains_reports_and_activates(
    world: tuple[Workspace, dict[str, Any]], database_url: str
) -> None:
    ws, _ = world
    r = intently(database_url, "scoring", "train", "--workspace", ws.name, "--horizon", "90",
                 timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "trained model: ROC AUC" in r.stdout and "active model (version" in r.stdout
    assert "cut-off" in r.stderr  # progress
    version = int(r.stdout.split("model version ")[1].split()[0])
    r = intently(database_url, "scoring", "activate", str(version), "--workspace", ws.name)
    assert r.returncode == 0, r.stderr
    assert f'"version": {version}' in r.stdout
    r = intently(database_url, "scoring", "models", "--workspace", ws.name)
    assert r.returncode == 0 and '"active": true' in r.stdout


# ---- leakage ---------------------------------------------------------------------------------


def test_features_and_labels_as_of_a_cutoff_never_see_later_data(
    workspace: Workspace, engine: Any
) -> None:
    api, ws = workspace.api, workspace.id
    today = now_us() // US_PER_DAY
    cut = today - 100  # its 90-day horizon ended before today: a deal opened now is later
    doms = [f"leak{i}.example.com" for i in range(12)]
    push_accounts(api, doms)
    with write_tx(engine) as conn:
        conn.execute(
            text("UPDATE accounts SET created_at = created_at - :d, industry = 'software', "
                 "employee_count = 300 WHERE workspace_id = :ws"),
            {"d": 200 * US_PER_DAY, "ws": ws},
        )  # fmt: skip
    rnd = random.Random(5)
    past = [
        SignalIn(d, s, t, (cut - rnd.randint(1, 100)) * US_PER_DAY + 3600 * 10**6, f"p{d}{k}", 2.0)
        for d in doms
        for k, (s, t) in enumerate([("g2", "comparison"), ("linkedin", "ad_click"),
                                    ("website", "page_view"), ("bombora", "surge")] * 3)
    ]  # fmt: skip
    put_signals(engine, ws, past)
    push_deals(api, [("d-early", doms[0], (cut - 30) * US_PER_DAY),
                     ("d-in", doms[1], (cut + 10) * US_PER_DAY)])  # fmt: skip
    spec = features.make_spec(surge_params(default_model()), ["software"], ["US"])

    def as_of_cut() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        links = training.repo.deal_links
        from intently.kit.db import read_tx
        from intently.rules import DEFAULT_DEAL_STAGES

        with read_tx(engine) as conn:
            deals = training._labels(links(conn, ws), DEFAULT_DEAL_STAGES)
        x, y, s, _ = training._collect(engine, ws, spec, [default_model()], [cut], 90, deals,
                                       lambda _m: None)  # fmt: skip
        return x, y, s

    x0, y0, s0 = as_of_cut()
    assert len(y0) == 11 and int(y0.sum()) == 1  # doms[0] has a deal open at the cut-off
    assert x0[:, :60].sum() > 0
    # the future: signals on the cut-off's day and after, deals opened after the horizon,
    # a deal pushed now with no startDate (opened now), and an account created now
    future = [
        SignalIn(d, s, t, (cut + k) * US_PER_DAY + 60 * 10**6, f"f{d}{s}{k}", 50.0)
        for d in doms
        for s, t in [("g2", "comparison"), ("linkedin", "ad_click"), ("website", "form_submit")]
        for k in (0, 1, 5, 30)
    ]
    put_signals(engine, ws, future)
    push_deals(api, [(f"late{i}", d, (cut + 95) * US_PER_DAY) for i, d in enumerate(doms)])
    r = api.post(
        "/deals",
        json={
            "deals": [
                {
                    "externalDealId": "now",
                    "name": "now",
                    "associatedAccounts": [{"domain": doms[2]}],
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    push_accounts(api, ["newcomer.example.com"])
    put_signals(engine, ws, [SignalIn("newcomer.example.com", "g2", "comparison",
                                      (cut - 5) * US_PER_DAY, "n1")])  # fmt: skip
    x1, y1, s1 = as_of_cut()
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1) and np.array_equal(s0, s1)


# ---- refusals, failures and tenancy -----------------------------------------------------------


def test_too_few_positives_is_refused_with_the_counts(
    workspace: Workspace, jobs: None, database_url: str
) -> None:
    api = workspace.api
    assert api.put("/scoring/model", json=default_model()).status_code == 200  # version 1
    today = now_us() // US_PER_DAY
    push_accounts(api, ["few1.example.com", "few2.example.com"])
    push_deals(api, [("f1", "few1.example.com", (today - 40) * US_PER_DAY)])
    t = _train(api, horizonDays=30)
    assert t["status"] == "failed" and t["modelVersion"] is None
    assert "too few positive examples" in t["error"]
    assert "at least 30 needed" in t["error"] and "at least 10 needed" in t["error"]
    # the failed training stored nothing and left the active model as it was
    assert _active(api) == 1
    assert [m["version"] for m in api.get("/scoring/models").json()["data"]] == [1, 0]
    r = intently(database_url, "scoring", "train", "--workspace", workspace.name)
    assert r.returncode == 2 and "too few positive examples" in r.stderr
    r = api.post("/scoring/train", json={"horizonDays": 3})
    assert r.status_code == 400 and "horizonDays" in r.text


def test_a_killed_training_is_marked_failed_and_leaves_the_active_model(
    workspace: Workspace, engine: Any
) -> None:
    api = workspace.api
    model = api.get("/scoring/model").json()["data"]["model"]
    assert api.put("/scoring/model", json=model).status_code == 200
    tid = training.start(engine, workspace.id, 90)
    # its process died: no heartbeat since long ago
    with write_tx(engine) as conn:
        conn.execute(
            text("UPDATE model_trainings SET heartbeat_at = 1, started_at = 1 "
                 "WHERE workspace_id = :ws AND id = :id"),
            {"ws": workspace.id, "id": tid},
        )  # fmt: skip
    t = api.get(f"/scoring/trainings/{tid}").json()["data"]
    assert t["status"] == "failed" and "stopped" in t["error"]
    assert _active(api) == 1
    assert api.get("/scoring/trainings").json()["data"][0]["trainingId"] == tid


def test_training_one_workspace_never_reads_another(client: Any, engine: Any, jobs: None) -> None:
    a = new_workspace(client, engine, "iso-a")
    b = new_workspace(client, engine, "iso-b")
    build_world(a.api, engine, a.id, accounts=700, seed=11, prefix="iso")
    first = _train(a.api, horizonDays=90)
    assert first["status"] == "done", first
    # the same domains in another workspace, with other signals and deals
    build_world(b.api, engine, b.id, accounts=700, seed=99, prefix="iso")
    again = _train(a.api, horizonDays=90)
    keep = ("training", "holdout", "trained", "current", "topCoefficients", "cutoffs")
    assert {k: again["report"][k] for k in keep} == {k: first["report"][k] for k in keep}
    # and b's training is its own
    other = _train(b.api, horizonDays=90)
    assert other["report"]["training"] != first["report"]["training"]


# ---- explanations add up, whatever the numbers ---------------------------------------------


def test_explanation_lines_add_up_to_the_score_in_cents() -> None:
    spec = features.make_spec(surge_params(default_model()), ["software", "retail"], ["US"])
    names = features.names(spec)
    rnd = np.random.default_rng(1)
    for trial in range(300):
        pred = {
            "features": spec,
            "coefficients": {n: float(rnd.normal(0, 2)) for n in names},
            "intercept": float(rnd.normal(0, 3)),
            "scaling": {"offset": float(rnd.uniform(-20, 80)), "factor": float(rnd.uniform(1, 30))},
        }
        x = np.where(rnd.random(len(names)) < 0.3, rnd.exponential(2, len(names)), 0.0)
        out = features.lines(pred, x)
        assert out["score"] == float(features.predict(pred, x[None, :])[0])
        cents = sum(round(line["points"] * 100) for line in out["lines"])
        assert cents == round(out["score"] * 100), trial
        raw = pred["scaling"]["offset"] + pred["scaling"]["factor"] * out["logit"]
        clamped = [line for line in out["lines"] if line["feature"] == "clamped"]
        assert bool(clamped) == (round(raw * 100) < 0 or round(raw * 100) > 10_000), trial


def test_profile_bands() -> None:
    assert features.employee_band(None) == len(features.EMPLOYEE_BANDS)
    assert [features.employee_band(n) for n in (1, 10, 11, 200, 201, 1000, 1001, 5001, 10**7)] == [
        0, 0, 1, 2, 3, 3, 4, 5, 5,
    ]  # fmt: skip
    assert [features.revenue_band(v) for v in (None, 0, 1e6, 5e7, 2e9)] == [5, 0, 1, 2, 4]


KILL_SCRIPT = """
import os, signal, sys
from intently.kit.db import make_engine
from intently.scoring import training

def progress(message):
    if message.startswith("fitting"):  # samples read, nothing stored yet
        os.kill(os.getpid(), signal.SIGKILL)

training.train(make_engine(sys.argv[1]), int(sys.argv[2]), horizon_days=90, activate=True,
               force=True, progress=progress)
"""


def test_a_training_killed_mid_way_changes_no_model(
    client: Any, engine: Any, database_url: str
) -> None:
    import subprocess
    import sys

    from intently.kit.heartbeat import reap
    from intently.scoring.tables import model_trainings

    ws = new_workspace(client, engine, "kill")
    build_world(ws.api, engine, ws.id, accounts=700, seed=13, prefix="kill")
    assert ws.api.put("/scoring/model", json=default_model()).status_code == 200
    done = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, database_url, str(ws.id)],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr
    [t] = ws.api.get("/scoring/trainings").json()["data"]
    assert t["status"] == "running" and t["modelVersion"] is None  # its lease has not lapsed
    assert reap(engine, model_trainings, 0.001, ws=ws.id) == 1
    [t] = ws.api.get("/scoring/trainings").json()["data"]
    assert t["status"] == "failed" and "stopped" in t["error"]
    assert _active(ws.api) == 1
    assert [m["version"] for m in ws.api.get("/scoring/models").json()["data"]] == [1, 0]


def test_the_feature_matrix_by_hand() -> None:
    spec = features.make_spec(surge_params(default_model()), ["software"], ["US"])
    names = features.names(spec)
    col = {n: i for i, n in enumerate(names)}
    # (id, source, type, 7d, 30d, 90d, decayed, recent count, baseline count)
    sums = [
        ("a", "g2", "comparison", 3.0, 4.0, 5.0, 2.5, 3, 1),
        ("a", "g2", "pricing", 0.0, 1.0, 1.0, 0.5, 0, 1),
        ("b", "website", "page_view", 1.0, 9.0, 40.0, 7.0, 1, 8),
        ("b", "custom", "thing", 9.0, 9.0, 9.0, 9.0, 9, 0),  # not a built-in source
    ]
    prof = {"a": (450, 2e7, " Software ", "us", 0), "b": (None, None, "Mining", None, 0)}
    x = features.matrix(spec, ["a", "b", "c"], sums, prof)
    a, b, c = x
    assert a[col["g2.comparison.7d"]] == pytest.approx(np.log1p(3.0))
    assert a[col["g2.comparison.decayed"]] == pytest.approx(np.log1p(2.5))
    assert a[col["g2.surge"]] == 1.0  # 4 recent (3 + 0) against 2 in the baseline: a surge
    assert b[col["website.surge"]] == 0.0
    assert a[col["employees:201-1000"]] == a[col["revenue:10M-100M"]] == 1.0
    assert a[col["industry:software"]] == a[col["country:US"]] == 1.0
    assert b[col["employees:unknown"]] == b[col["revenue:unknown"]] == 1.0
    assert b[col["industry:other"]] == b[col["country:unknown"]] == 1.0
    assert not c.any()  # no profile row (deleted) and no signals: all zero
    assert a.sum() == pytest.approx(sum(np.log1p([3, 4, 5, 2.5, 0, 1, 1, 0.5])) + 1 + 4)


def test_a_queued_training_marked_stopped_runs_when_a_worker_takes_it(
    workspace: Workspace, engine: Any, jobs: None
) -> None:
    from intently import worker

    tid = training.start(engine, workspace.id, 30)
    with write_tx(engine) as conn:  # it waited for a worker longer than the lease
        conn.execute(
            text("UPDATE model_trainings SET heartbeat_at = 1, started_at = 1 "
                 "WHERE workspace_id = :ws AND id = :id"),
            {"ws": workspace.id, "id": tid},
        )  # fmt: skip
    assert "stopped" in workspace.api.get(f"/scoring/trainings/{tid}").json()["data"]["error"]
    worker.train_model(workspace.id, tid, 30, False, False)
    t = workspace.api.get(f"/scoring/trainings/{tid}").json()["data"]
    assert t["status"] == "failed" and "too few positive examples" in t["error"]  # it ran


@pytest.mark.parametrize("recent_days,baseline_days", [(7, 28), (3, 10)])
def test_the_surge_feature_is_the_rule_languages_surge(
    recent_days: int, baseline_days: int
) -> None:
    from intently.rules import SurgeParams, is_surging

    sp = SurgeParams(recent_days=recent_days, baseline_days=baseline_days)
    spec = features.make_spec(sp, [], [])
    grid = [(rc, bc) for rc in range(12) for bc in range(40)]
    rows = [(f"a{n}", "g2", "pricing", 1, 1, 1, 1, rc, bc) for n, (rc, bc) in enumerate(grid)]
    x = features.matrix(spec, [r[0] for r in rows], rows, {})
    got = (x[:, features.names(spec).index("g2.surge")] == 1).tolist()
    assert got == [is_surging(rc, bc, sp) for rc, bc in grid]
    assert 0 < sum(got) < len(grid)


def _plain_points_and_matrix(
    spec: dict[str, Any], ids: list[str], got: list[tuple[Any, ...]], prof: dict[str, Any]
) -> tuple[dict[tuple[str, str], float], np.ndarray]:
    """What the column-wise fast path computes, one row and one account at a time."""
    from intently.rules import SurgeParams, is_surging

    points: dict[tuple[str, str], float] = {}
    for r in got:
        if r[3] is not None:
            points[(r[0], r[1])] = points.get((r[0], r[1]), 0.0) + float(r[3])
    nw = len(spec["windows"])
    names = features.names(spec)
    col = {n: i for i, n in enumerate(names)}
    srcs = list(dict.fromkeys(s for s, _, _ in spec["pairs"]))
    sg = spec["surge"]
    sp = SurgeParams(recent_days=sg["recent_days"], baseline_days=sg["baseline_days"])
    x = np.zeros((len(ids), len(names)))
    for k, aid in enumerate(ids):
        counts = {s: [0, 0] for s in srcs}
        for r in got:
            if r[0] != aid:
                continue
            vals = [0.0 if v is None else float(v) for v in r[4:]]
            if f"{r[1]}.{r[2]}.decayed" in col:
                cols = [*[f"{w}d" for w in spec["windows"]], "decayed"]
                for w, v in zip(cols, vals, strict=False):
                    x[k, col[f"{r[1]}.{r[2]}.{w}"]] = round(float(np.log1p(max(v, 0.0))), 9)
            if r[1] in counts:
                counts[r[1]][0] += round(vals[nw + 1])
                counts[r[1]][1] += round(vals[nw + 2])
        for s, (rc, bc) in counts.items():
            x[k, col[f"{s}.surge"]] = float(is_surging(rc, bc, sp))
        if aid not in prof:
            continue
        emp, rev, ind, cty = prof[aid][:4]
        eb = "unknown" if emp is None else features._employee_bands()[features.employee_band(emp)]
        rb = "unknown" if rev is None else features._revenue_bands()[features.revenue_band(rev)]
        i = features.norm_industry(ind)
        i = "unknown" if i is None else i if i in spec["industries"] else "other"
        c = str(cty).upper() if cty else None
        c = "unknown" if c is None else c if c in spec["countries"] else "other"
        for name in (f"employees:{eb}", f"revenue:{rb}", f"industry:{i}", f"country:{c}"):
            x[k, col[name]] = 1.0
    return points, x


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_column_wise_features_are_the_plain_computation(seed: int) -> None:
    rnd = random.Random(seed)
    spec = features.make_spec(surge_params(default_model()), ["software", "mining"], ["US", "DE"])
    ids = [f"acc{n:04d}" for n in range(300)]
    types = [(s, t) for s, t, _ in spec["pairs"]] + [("custom", "thing"), ("g2", "unknown")]
    got: list[tuple[Any, ...]] = []
    for aid in [*ids, "gone1"]:  # an id outside the batch (created meanwhile) is ignored
        for s, t in rnd.sample(types, rnd.randint(0, 6)):
            pts = None if rnd.random() < 0.2 else rnd.uniform(0, 40)
            sums = [rnd.choice([0, rnd.uniform(0, 500)]) for _ in range(4)]
            sums.sort()  # nested windows grow; decayed is below the 90-day sum
            sums[3] = rnd.uniform(0, sums[2])
            got.append((aid, s, t, pts, *sums, rnd.randint(0, 12), rnd.randint(0, 40)))
    prof = {
        aid: (
            rnd.choice([None, 0, 5, 10, 11, 50, 51, 200, 999, 5000, 5001, 10**6]),
            rnd.choice([None, 0.0, 999_999.0, 1e6, 5e7, 1e8, 2e9]),
            rnd.choice([None, "", " Software ", "MINING", "retail"]),
            rnd.choice([None, "", "us", "DE", "FR"]),
            0,
        )
        for aid in ids
        if rnd.random() < 0.9  # the others were deleted: no profile row
    }
    points, sums = features.split_rows(got)
    plain_points, plain_x = _plain_points_and_matrix(spec, ids, got, prof)
    assert {(a, s): v for a, s, v in points} == plain_points  # the same floats, not approx
    assert len(points) == len(plain_points)
    x = features.matrix(spec, ids, sums, prof)
    assert np.array_equal(x, plain_x)
    assert np.array_equal(features.matrix(spec, ids, [r[:3] + r[4:] for r in got], prof), x)
    assert 0 < x[:, : len(spec["pairs"]) * 4].astype(bool).sum() < x.size
