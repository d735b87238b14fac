"""A trained model's features of accounts as of a day, and its score from them.

One module for training and scoring, so the two can never disagree: `training.py` builds
its samples with `batch_features`, and scoring runs, dry runs, backtests and the score
explanation compute a trained account score with `batch_features` and `predict`.

Features as of day X (UTC days since the epoch) read only the rollup days up to X; a
scoring run as of today uses X = today, a training sample or a backtest as of a cut-off
uses the day before the cut-off's day (its own day is already "after"). Per built-in
source and signal type, with the unit the default model counts (Bombora and LinkedIn by
value, the others by count):

- `src.type.7d`, `.30d`, `.90d`: log1p of the units in the last 7, 30, 90 days;
- `src.type.decayed`: log1p of the units decayed with a 14-day half-life over 90 days;
- `src.surge`: 1 when the source surges as of X (the rule language's first-party surge,
  counts in the model's recent window against its baseline);
- profile, as stored now (the profile is treated as static: a company's size and
  industry rarely move within the history a model learns from): one-hot employee-count
  bands and annual-revenue bands (firmographics act non-linearly: a size band can buy
  where smaller and bigger ones do not), the most frequent industries and countries of
  the training accounts, each with `other` and `unknown`.

Every feature is 0 for an account with nothing to say, so an explanation line is
nonzero only for what the account has.

A model's `predictor` section: `features` (the spec below), `coefficients` (one per
feature name, over the raw feature values), `intercept`, `scaling` ({offset, factor}:
score = clamp(offset + factor * logit, 0, 100)), `trainingId`, `metrics`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from intently.catalog import BUILTIN_SOURCES, SIGNAL_TYPES
from intently.kit.db import fetch_all, param_marker
from intently.rules import SurgeParams
from intently.scoring.repository import account_filter

WINDOWS = (7, 30, 90)
HALF_LIFE_DAYS = 14.0
VALUE_SOURCES = ("bombora", "linkedin")  # counted by value, as the default model does
EMPLOYEE_BANDS = ((1, 10), (11, 50), (51, 200), (201, 1000), (1001, 5000), (5001, None))
REVENUE_EDGES = (1e6, 1e7, 1e8, 1e9)  # USD: <1M, 1M-10M, 10M-100M, 100M-1B, 1B+
TOP_INDUSTRIES = 15
TOP_COUNTRIES = 10
DAYS = "predictor_days"


def _revenue_bands() -> list[str]:
    names = ["<1M"]
    labels = ["1M", "10M", "100M", "1B"]
    names += [f"{labels[i]}-{labels[i + 1]}" for i in range(len(labels) - 1)]
    return [*names, "1B+"]


def _employee_bands() -> list[str]:
    return [f"{lo}-{hi}" if hi is not None else f"{lo}+" for lo, hi in EMPLOYEE_BANDS]


def norm_industry(v: Any) -> str | None:
    text = str(v).strip().lower() if v is not None else ""
    return text or None


def make_spec(
    surge: SurgeParams, industries: Sequence[str], countries: Sequence[str]
) -> dict[str, Any]:
    """The features of a model: the built-in signal types, the surge windows, and the
    industries and countries that get a column of their own."""
    pairs = [
        [s, t, "value" if s in VALUE_SOURCES else "count"]
        for s in BUILTIN_SOURCES
        for t in SIGNAL_TYPES[s]
    ]
    return {
        "windows": list(WINDOWS),
        "halfLifeDays": HALF_LIFE_DAYS,
        "pairs": pairs,
        "surge": {"recent_days": surge.recent_days, "baseline_days": surge.baseline_days},
        "industries": list(industries),
        "countries": list(countries),
    }


def names(spec: dict[str, Any]) -> list[str]:
    """The feature names in column order."""
    out: list[str] = []
    for s, t, _ in spec["pairs"]:
        out += [f"{s}.{t}.{w}d" for w in spec["windows"]]
        out.append(f"{s}.{t}.decayed")
    out += [f"{s}.surge" for s in _sources(spec)]
    out += [f"employees:{b}" for b in [*_employee_bands(), "unknown"]]
    out += [f"revenue:{b}" for b in [*_revenue_bands(), "unknown"]]
    out += [f"industry:{i}" for i in [*spec["industries"], "other", "unknown"]]
    out += [f"country:{c}" for c in [*spec["countries"], "other", "unknown"]]
    return out


def _sources(spec: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s for s, _, _ in spec["pairs"]))


def _lookback(spec: dict[str, Any]) -> int:
    sg = spec["surge"]
    return max(max(spec["windows"]), int(sg["recent_days"]) + int(sg["baseline_days"]))


def load_days(conn: Connection, spec: dict[str, Any], as_of_day: int) -> None:
    """Per day the features look at, its weight in each window, into a temporary table of
    this connection (as the scoring factor table): the aggregate joins the rollups to it."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {DAYS}")
    wins = spec["windows"]
    cols = ", ".join(f"w{i} DOUBLE PRECISION NOT NULL" for i in range(len(wins)))
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {DAYS} (day INTEGER NOT NULL PRIMARY KEY, {cols}, "
        "wd DOUBLE PRECISION NOT NULL, wr DOUBLE PRECISION NOT NULL, "
        "wb DOUBLE PRECISION NOT NULL)"
    )
    sg = spec["surge"]
    recent, baseline = int(sg["recent_days"]), int(sg["baseline_days"])
    half = float(spec["halfLifeDays"])
    longest = max(wins)
    rows = []
    for age in range(_lookback(spec)):
        ws_ = [1.0 if age < w else 0.0 for w in wins]
        wd = 0.5 ** (age / half) if age < longest else 0.0
        wr = 1.0 if age < recent else 0.0
        wb = 1.0 if recent <= age < recent + baseline else 0.0
        rows.append((as_of_day - age, *ws_, wd, wr, wb))
    m = param_marker(conn)
    marks = ", ".join([m] * (len(wins) + 4))
    conn.exec_driver_sql(f"INSERT INTO {DAYS} VALUES ({marks})", rows)
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(f"ANALYZE {DAYS}")


def drop_days(conn: Connection) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {DAYS}")


def signal_sums(
    conn: Connection, ws: int, spec: dict[str, Any], ids: Sequence[str], *, ranged: bool
) -> list[tuple[Any, ...]]:
    """(account id, source, type, window sums..., decayed sum, recent count, baseline count)
    of the batch, over the days in the temporary day table (load_days first)."""
    if not ids:
        return []
    where, params = account_filter(conn, ids, ranged)
    m = param_marker(conn)
    srcs = _sources(spec)
    vals = [s for s in srcs if s in VALUE_SOURCES]
    src_in = ", ".join([m] * len(srcs))
    unit = (
        "(CASE WHEN d.source IN (" + ", ".join([m] * len(vals)) + ") "
        "THEN d.value_sum ELSE d.count END)"
        if vals
        else "d.count"
    )
    sums = ", ".join(f"SUM({unit} * p.w{i})" for i in range(len(spec["windows"])))
    sums += f", SUM({unit} * p.wd), SUM(d.count * p.wr), SUM(d.count * p.wb)"
    n_unit = len(spec["windows"]) + 1
    if conn.dialect.name == "sqlite":
        sql = (
            f"SELECT a.id, d.source, d.type, {sums} "
            f"FROM accounts a CROSS JOIN signal_daily d CROSS JOIN {DAYS} p "
            f"WHERE a.workspace_id = {m} AND {where} "
            "AND d.workspace_id = a.workspace_id AND d.domain = a.domain "
            f"AND d.source IN ({src_in}) AND p.day = d.day "
            "GROUP BY a.id, d.source, d.type"
        )
        args = (*vals * n_unit, ws, *params, *srcs)
    else:
        conn.exec_driver_sql("SET LOCAL jit = off")
        sql = (
            f"SELECT a.id, x.* FROM accounts a CROSS JOIN LATERAL ("
            f"SELECT d.source, d.type, {sums} FROM signal_daily d JOIN {DAYS} p ON p.day = d.day "
            f"WHERE d.workspace_id = a.workspace_id AND d.domain = a.domain "
            f"AND d.source IN ({src_in}) GROUP BY d.source, d.type) x "
            f"WHERE a.workspace_id = {m} AND {where}"
        )
        args = (*vals * n_unit, *srcs, ws, *params)
    return [tuple(r) for r in fetch_all(conn, sql, args)]


def points_and_sums(
    conn: Connection,
    ws: int,
    spec: dict[str, Any],
    factors: str,
    ids: Sequence[str],
    *,
    ranged: bool,
    day: int,
) -> tuple[list[tuple[str, str, float]], SumCols | list[tuple[Any, ...]]]:
    """One pass over the batch's rollups for a trained model: (account id, source, points)
    as the scoring aggregate gives them (`factors`: its factor table, per type capped,
    summed per source), and the feature sums as `signal_sums` gives them. Both temporary
    tables must be loaded on this connection (the day table as of `day`)."""
    if not ids:
        return [], []
    where, params = account_filter(conn, ids, ranged)
    m = param_marker(conn)
    vals = [s for s in _sources(spec) if s in VALUE_SOURCES]
    unit = (
        "(CASE WHEN d.source IN (" + ", ".join([m] * len(vals)) + ") "
        "THEN d.value_sum ELSE d.count END)"
        if vals
        else "d.count"
    )
    nw = len(spec["windows"])
    # The 0/1 day weights as FILTERs on the day (the same sums: adding the zeros changed
    # nothing), cheaper than multiplying every rollup row by each; the decayed sum still
    # reads its weights from the day table. count as a float, as count x weight was.
    count = "CAST(d.count AS DOUBLE PRECISION)"
    unit = unit if vals else count
    in_days = f"FILTER (WHERE d.day > {m} AND d.day <= {m})"
    sg = spec["surge"]
    recent, baseline = int(sg["recent_days"]), int(sg["baseline_days"])
    sums = ", ".join(f"COALESCE(SUM({unit}) {in_days}, 0)" for _ in range(nw))
    sums += (
        f", COALESCE(SUM({unit} * p.wd), 0), COALESCE(SUM({count}) {in_days}, 0), "
        f"COALESCE(SUM({count}) {in_days}, 0)"
    )
    sum_args = [a for w in spec["windows"] for a in (*vals, day - int(w), day)]
    sum_args += [*vals, day - recent, day, day - recent - baseline, day - recent]
    units = "(CASE WHEN f.uv = 1 THEN d.value_sum ELSE d.count END) * f.w"
    least = "MIN" if conn.dialect.name == "sqlite" else "LEAST"
    pts = f"{least}(MAX(f.cap), SUM({units}))"
    joins = (
        f"LEFT JOIN {factors} f ON f.source = d.source AND f.type = d.type AND f.day = d.day "
        f"LEFT JOIN {DAYS} p ON p.day = d.day "
    )
    if conn.dialect.name == "sqlite":
        sql = (
            f"SELECT a.id, d.source, d.type, {pts}, {sums} "
            f"FROM accounts a CROSS JOIN signal_daily d {joins}"
            f"WHERE a.workspace_id = {m} AND {where} "
            "AND d.workspace_id = a.workspace_id AND d.domain = a.domain "
            "AND (f.day IS NOT NULL OR p.day IS NOT NULL) "
            "GROUP BY a.id, d.source, d.type"
        )
        args = (*sum_args, ws, *params)
    else:
        conn.exec_driver_sql("SET LOCAL jit = off")
        sql = (
            f"SELECT a.id, x.* FROM accounts a CROSS JOIN LATERAL ("
            f"SELECT d.source, d.type, {pts}, {sums} FROM signal_daily d {joins}"
            "WHERE d.workspace_id = a.workspace_id AND d.domain = a.domain "
            "AND (f.day IS NOT NULL OR p.day IS NOT NULL) GROUP BY d.source, d.type) x "
            f"WHERE a.workspace_id = {m} AND {where}"
        )
        args = (*sum_args, ws, *params)
    return split_rows(fetch_all(conn, sql, args))


def split_rows(
    got: Sequence[Sequence[Any]],
) -> tuple[list[tuple[str, str, float]], SumCols | list[tuple[Any, ...]]]:
    """points_and_sums' rows (id, source, type, points or None, sums...) as its result."""
    if not got:
        return [], []
    # Column-wise (a batch has tens of thousands of rows): the points summed per (account,
    # source) in row order, as a Python loop would, with np.add.at.
    cols = list(zip(*got, strict=True))
    sources = cols[1]
    src_ix = {x: i for i, x in enumerate(dict.fromkeys(sources))}
    si = np.fromiter(map(src_ix.__getitem__, sources), np.int64, len(got))
    acc_ix = {x: i for i, x in enumerate(dict.fromkeys(cols[0]))}
    ai = np.fromiter(map(acc_ix.__getitem__, cols[0]), np.int64, len(got))
    pts = np.array(cols[3], dtype=np.float64)  # None (no factor row): NaN
    has = ~np.isnan(pts)
    totals = np.zeros((len(acc_ix), len(src_ix)), dtype=np.float64)
    np.add.at(totals, (ai[has], si[has]), pts[has])
    seen = np.zeros((len(acc_ix), len(src_ix)), dtype=bool)
    seen[ai[has], si[has]] = True
    ka, ks = np.nonzero(seen)
    aids, srcs = [str(a) for a in acc_ix], [str(s) for s in src_ix]
    points = [
        (aids[a], srcs[b], v)
        for a, b, v in zip(ka.tolist(), ks.tolist(), totals[ka, ks].tolist(), strict=True)
    ]
    return points, SumCols(cols[0], sources, cols[2], np.array(cols[4:], dtype=np.float64).T)


@dataclass(frozen=True, slots=True)
class SumCols:
    """The feature sums as columns: account ids, sources, types, and the values (window
    sums..., decayed sum, recent count, baseline count) one row each."""

    aids: Sequence[Any]
    sources: Sequence[Any]
    types: Sequence[Any]
    vals: np.ndarray


def _columns(sums: Sequence[tuple[Any, ...]] | SumCols, nw: int) -> SumCols:
    if isinstance(sums, SumCols):
        return sums
    if not sums:
        return SumCols((), (), (), np.zeros((0, nw + 3)))
    cols = list(zip(*sums, strict=True))
    return SumCols(cols[0], cols[1], cols[2], np.array(cols[3:], dtype=np.float64).T)


def profiles(
    conn: Connection, ws: int, ids: Sequence[str], *, ranged: bool
) -> dict[str, tuple[Any, ...]]:
    """{id: (employee_count, annual_revenue, industry, country, created_at)}."""
    if not ids:
        return {}
    where, params = account_filter(conn, ids, ranged)
    m = param_marker(conn)
    sql = (
        "SELECT a.id, a.employee_count, a.annual_revenue, a.industry, a.country, a.created_at "
        f"FROM accounts a WHERE a.workspace_id = {m} AND {where}"
    )
    return {str(r[0]): tuple(r[1:]) for r in fetch_all(conn, sql, (ws, *params))}


def batch_features(
    conn: Connection,
    ws: int,
    spec: dict[str, Any],
    ids: Sequence[str],
    *,
    ranged: bool,
    sums: Sequence[tuple[Any, ...]] | SumCols | None = None,
) -> tuple[np.ndarray, dict[str, tuple[Any, ...]]]:
    """The feature matrix of `ids` (rows in their order; load_days first) and their
    profile rows (accounts deleted meanwhile have an all-zero signal part and no profile);
    `sums`: the feature sums when already read (points_and_sums)."""
    if sums is None:
        sums = signal_sums(conn, ws, spec, ids, ranged=ranged)
    prof = profiles(conn, ws, ids, ranged=ranged)
    return matrix(spec, ids, sums, prof), prof


def matrix(
    spec: dict[str, Any],
    ids: Sequence[str],
    sums: Sequence[tuple[Any, ...]] | SumCols,
    prof: dict[str, tuple[Any, ...]],
) -> np.ndarray:
    nw = len(spec["windows"])
    pairs = {(s, t): i for i, (s, t, _) in enumerate(spec["pairs"])}
    srcs = _sources(spec)
    src_ix = {s: i for i, s in enumerate(srcs)}
    n_sig = len(pairs) * (nw + 1)
    emp, rev = len(EMPLOYEE_BANDS) + 1, len(REVENUE_EDGES) + 2
    ind, cty = len(spec["industries"]) + 2, len(spec["countries"]) + 2
    width = n_sig + len(srcs) + emp + rev + ind + cty
    row_of = {aid: k for k, aid in enumerate(ids)}
    x = np.zeros((len(ids), width), dtype=np.float64)
    counts = np.zeros((len(ids), len(srcs), 2), dtype=np.int64)
    sc = _columns(sums, nw)
    n = len(sc.aids)
    if n:
        # Column-wise: one row per (account, source, type) of the aggregate.
        ks = np.fromiter(map(row_of.get, map(str, sc.aids), itertools.repeat(-1)), np.int64, n)
        js = np.fromiter(
            map(pairs.get, zip(map(str, sc.sources), map(str, sc.types), strict=True),
                itertools.repeat(-1)),
            np.int64, n,
        )  # fmt: skip
        sis = np.fromiter(map(src_ix.get, map(str, sc.sources), itertools.repeat(-1)), np.int64, n)
        vals = np.nan_to_num(sc.vals)
        ok = (ks >= 0) & (js >= 0)
        cols = js[ok, None] * (nw + 1) + np.arange(nw + 1)[None, :]
        x[ks[ok, None], cols] = vals[ok, : nw + 1]
        ok = (ks >= 0) & (sis >= 0)
        np.add.at(counts[:, :, 0], (ks[ok], sis[ok]), np.rint(vals[ok, nw + 1]).astype(np.int64))
        np.add.at(counts[:, :, 1], (ks[ok], sis[ok]), np.rint(vals[ok, nw + 2]).astype(np.int64))
    # PostgreSQL may sum in any order: the last bits vary, and must not move a score.
    x[:, :n_sig] = np.round(np.log1p(np.maximum(x[:, :n_sig], 0.0)), 9)
    sg = spec["surge"]
    sp = SurgeParams(recent_days=int(sg["recent_days"]), baseline_days=int(sg["baseline_days"]))
    # is_surging (the rule language's), in exact integer arithmetic over the whole batch
    r = sp.ratio_fraction()
    recent, baseline = counts[:, :, 0], counts[:, :, 1]
    surging = (recent >= sp.min_recent) & (
        recent * sp.baseline_days * r.denominator
        >= r.numerator * sp.recent_days * np.maximum(baseline, 1)
    )
    x[:, n_sig : n_sig + len(srcs)] = surging
    base = n_sig + len(srcs)
    industries = {v: i for i, v in enumerate(spec["industries"])}
    countries = {v: i for i, v in enumerate(spec["countries"])}
    # Few distinct values per field: each column offset computed once per value.
    memo: tuple[dict[Any, int], ...] = ({}, {}, {}, {})

    def offsets(p: tuple[Any, ...]) -> tuple[int, int, int, int]:
        e, r, i, c = p[0], p[1], p[2], p[3]
        oe = memo[0].get(e)
        if oe is None:
            oe = memo[0][e] = base + employee_band(e)
        orv = memo[1].get(r)
        if orv is None:
            orv = memo[1][r] = base + emp + revenue_band(r)
        oi = memo[2].get(i)
        if oi is None:
            ni = norm_industry(i)
            j = ind - 1 if ni is None else industries.get(ni, ind - 2)
            oi = memo[2][i] = base + emp + rev + j
        oc = memo[3].get(c)
        if oc is None:
            nc = str(c).upper() if c else None
            j = cty - 1 if nc is None else countries.get(nc, cty - 2)
            oc = memo[3][c] = base + emp + rev + ind + j
        return oe, orv, oi, oc

    found = [(k, prof[aid]) for aid, k in row_of.items() if aid in prof]
    if found:
        rows = np.repeat(np.fromiter((k for k, _ in found), np.int64, len(found)), 4)
        cols_p = np.fromiter((o for _, p in found for o in offsets(p)), np.int64, 4 * len(found))
        x[rows, cols_p] = 1.0
    return x


def employee_band(v: Any) -> int:
    if v is None:
        return len(EMPLOYEE_BANDS)
    n = int(v)
    for i, (_, hi) in enumerate(EMPLOYEE_BANDS):
        if hi is None or n <= hi:
            return i
    return len(EMPLOYEE_BANDS) - 1


def revenue_band(v: Any) -> int:
    if v is None:
        return len(REVENUE_EDGES) + 1
    r = float(v)
    return sum(1 for e in REVENUE_EDGES if r >= e)


# ---- the score of a trained model ---------------------------------------------------------


def logits(predictor: dict[str, Any], x: np.ndarray) -> np.ndarray:
    coef = np.array([predictor["coefficients"][n] for n in names(predictor["features"])])
    return np.asarray(x @ coef + float(predictor["intercept"]))


def to_score(predictor: dict[str, Any], logit: np.ndarray) -> np.ndarray:
    sc = predictor["scaling"]
    raw = float(sc["offset"]) + float(sc["factor"]) * logit
    return np.round(np.clip(raw, 0.0, 100.0), 2)


def predict(predictor: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The account scores (0-100, rounded as stored) of the feature rows."""
    return to_score(predictor, logits(predictor, x))


def probability(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0


def lines(predictor: dict[str, Any], xrow: np.ndarray) -> dict[str, Any]:
    """The score of one feature row as lines that add up to it exactly in cents: the
    intercept (offset + factor x intercept), one line per nonzero feature term (factor x
    coefficient x value), and a clamp line when the sum fell outside 0-100. Each line is
    rounded to the cent; what rounding loses goes to the intercept line, so the sum is the
    stored score."""
    sc = predictor["scaling"]
    factor, offset = float(sc["factor"]), float(sc["offset"])
    feats = names(predictor["features"])
    coefs = predictor["coefficients"]
    logit = float(predictor["intercept"])
    terms: list[dict[str, Any]] = []
    for j, name in enumerate(feats):
        v = float(xrow[j])
        c = float(coefs[name])
        if v == 0.0 or c == 0.0:
            continue
        logit += c * v
        terms.append({"feature": name, "value": round(v, 6), "coefficient": c,
                      "points": factor * c * v})  # fmt: skip
    raw = offset + factor * logit
    score = float(np.round(np.clip(raw, 0.0, 100.0), 2))
    for t in terms:
        t["cents"] = round(t["points"] * 100)
    clamp = 0
    if raw < 0 or raw > 100:
        clamp = round(score * 100) - round(raw * 100)
    head_cents = round(score * 100) - sum(t["cents"] for t in terms) - clamp
    terms.sort(key=lambda t: (-abs(t["points"]), t["feature"]))
    for t in terms:
        t["points"] = t.pop("cents") / 100
    out_lines = [{"feature": "intercept", "value": None, "coefficient": None,
                  "points": head_cents / 100}, *terms]  # fmt: skip
    if clamp:
        out_lines.append({"feature": "clamped", "value": None, "coefficient": None,
                          "points": clamp / 100})  # fmt: skip
    return {
        "score": score,
        "logit": logit,
        "probability": round(probability(logit), 6),
        "lines": out_lines,
    }
