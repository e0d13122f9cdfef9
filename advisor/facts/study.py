"""Study facts: measurements of a finished search, for the audit rules (rules/audit/).

`study_facts` gives the facts of the whole study and, per parameter, the facts the per-parameter
rules read (positions measured in the parameter's own scale: log10 for log distributions).
`param_importances` asks Optuna's fANOVA evaluator (explicit, seeded) how much of the variation
of the objective each parameter explains; it is the only function here that imports Optuna.
Nothing here judges: the thresholds are in the rules.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advisor.facts.params import canonical
from advisor.ingest.study import Distribution, StudyTable

FINISHED = ("complete", "pruned", "failed")


# --------------------------------------------------------------------------- helpers

def _hierarchy() -> dict[str, dict[str, Any]]:
    from advisor.engine import load_knowledge

    return load_knowledge("audit").importance


def _position(value: float, low: float, high: float, log: bool) -> float | None:
    """Where value lies between low (0) and high (1), in the parameter's own scale."""
    if value is None or not math.isfinite(value) or high <= low:
        return None
    if log:
        if low <= 0 or value <= 0:
            return None
        return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return (value - low) / (high - low)


def _key(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.9g}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _config_keys(table: StudyTable) -> list[tuple]:
    cols = [f"params_{p}" for p in table.params]
    return [tuple(_key(v) for v in row) for row in table.trials[cols].itertuples(index=False, name=None)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- the facts

def study_facts(table: StudyTable, analysis: dict[str, float],
                importances: dict[str, float] | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(study facts, {parameter: its facts}) for the audit rules."""
    t = table.trials
    sign = 1.0 if table.direction == "maximize" else -1.0
    state = t["state"]
    finished = state.isin(FINISHED)
    value = t["value"]
    ok = (state == "complete") & np.isfinite(value) & ~t["nonfinite"]
    baseline = t["baseline"]
    epochs = t["epochs"]
    epochs_known = bool(epochs[finished].notna().any())
    max_epochs = float(epochs[finished].max()) if epochs_known else None
    one_epoch = (state == "complete") & (epochs <= 1) if (max_epochs or 0) > 1 else pd.Series(False, index=t.index)
    bad = (state == "failed") | t["nonfinite"]          # failed or non-finite: what a region rule looks for
    crashed = bad | one_epoch                           # ... or finished after a single epoch

    n_finished = int(finished.sum())
    f: dict[str, Any] = {
        "n_trials": int(len(t)),
        "n_finished": n_finished,
        "n_complete": int((state == "complete").sum()),
        "n_pruned": int((state == "pruned").sum()),
        "n_failed": int((state == "failed").sum()),
        "n_running": int((state == "running").sum()),
        "n_nonfinite": int(t["nonfinite"].sum()),
        "n_one_epoch": int(one_epoch.sum()),
        "n_crashed": int(crashed.sum()),
        "n_params": len(table.params),
        "epochs_known": epochs_known,
        "max_epochs": int(max_epochs) if max_epochs is not None else None,
        "direction": table.direction,
        "metric": table.metric,
    }
    if n_finished:
        f["pruned_fraction"] = f["n_pruned"] / n_finished
        f["failed_fraction"] = f["n_failed"] / n_finished
        f["crashed_fraction"] = f["n_crashed"] / n_finished
    if f["n_crashed"]:
        f["crashed_trials"] = ", ".join(f"#{n}" for n in t.loc[crashed, "number"].head(8)) + \
            (" ..." if f["n_crashed"] > 8 else "")

    # complete values: spread, best, baseline
    vals = value[ok]
    f["n_valued"] = int(ok.sum())
    tuned = ok & ~baseline
    if tuned.any():
        i_best = (sign * value[tuned]).idxmax()
        f["best_value"] = float(value[i_best])
        f["best_number"] = int(t.at[i_best, "number"])
    if len(vals) >= 2:
        scale = max(abs(float((sign * vals).max())), 1e-12)
        f["value_spread"] = float(vals.max()) / scale - float(vals.min()) / scale  # no overflow near 1e308
        f["value_worst"] = float(value[(sign * vals).idxmin()])
    if baseline.any():
        i_base = t.index[baseline][0]
        f["has_baseline"] = True
        f["baseline_number"] = int(t.at[i_base, "number"])
        f["baseline_finished"] = bool(ok[i_base])
        if ok[i_base]:
            f["baseline_value"] = float(value[i_base])
            if "best_value" in f:
                denom = max(abs(f["baseline_value"]), 1e-12)
                f["baseline_margin"] = sign * (f["best_value"] / denom - f["baseline_value"] / denom)
    else:
        f["has_baseline"] = False

    # the progress of the search: finished trials, not the baseline, not a re-run of an earlier config
    keys = _config_keys(table)
    seen: set = set()
    search_idx = []
    for i, k in zip(t.index, keys):
        if not finished[i] or baseline[i]:
            continue
        if k in seen:
            continue
        seen.add(k)
        search_idx.append(i)
    running, best = [], None
    best_at = None
    for pos, i in enumerate(search_idx):
        if ok[i] and (best is None or sign * value[i] > best):
            best, best_at = sign * value[i], pos
        running.append(best)
    f["n_search"] = len(search_idx)
    window = int(analysis.get("returns_window", 20))
    f["returns_window"] = window
    if best_at is not None:
        f["trials_since_best"] = len(search_idx) - 1 - best_at
        f["best_found_at"] = int(t.at[search_idx[best_at], "number"])
    if len(search_idx) > window and running[-1] is not None:
        before = running[-1 - window]
        if before is not None:
            gain = (running[-1] - before) / max(abs(running[-1]), 1e-12)
            f["recent_gain"] = gain
            f["recent_gain_per_trial"] = gain / window

    # seeds: distinct configurations by their best run, how often the top ones ran
    top_k = int(analysis.get("top_k", 5))
    runs: dict[tuple, list[int]] = {}
    for i, k in zip(t.index, keys):
        if ok[i] and not baseline[i]:
            runs.setdefault(k, []).append(i)
    ranked = sorted(runs.values(), key=lambda idx: -max(sign * value[j] for j in idx))[:top_k]
    if ranked:
        f["n_configs"] = len(runs)
        f["n_top"] = len(ranked)
        f["top_min_runs"] = min(len(idx) for idx in ranked)
        f["n_top_single"] = sum(1 for idx in ranked if len(idx) == 1)
        f["top_runs"] = ", ".join(
            f"#{int(t.at[min(idx, key=lambda j: t.at[j, 'number']), 'number'])} ({len(idx)} run{'s' if len(idx) > 1 else ''})"
            for idx in ranked)

    # importances against the hierarchy
    hierarchy = _hierarchy()
    canon = {p: canonical(p) for p in table.params}
    if importances:
        f["importance_known"] = True
        top = max(importances, key=importances.get)
        f["top_param"], f["top_param_importance"] = top, importances[top]
        lr = [importances[p] for p in table.params if canon[p] == "learning_rate" and p in importances]
        if lr:
            f["lr_importance"] = max(lr)
    else:
        f["importance_known"] = False
    f["lr_searched"] = any(canon[p] == "learning_rate" for p in table.params)

    # per parameter
    best_row = t.index[t["number"] == f["best_number"]][0] if "best_number" in f else None
    top_rows = [max(idx, key=lambda j: sign * value[j]) for idx in ranked]
    band = float(analysis.get("edge_band", 0.2))
    widen_decades = float(analysis.get("widen_decades", 1.0))
    widen_fraction = float(analysis.get("widen_fraction", 0.5))
    per_param: dict[str, dict[str, Any]] = {}
    order = sorted(importances, key=importances.get, reverse=True) if importances else []
    for p in table.params:
        d = table.distributions.get(p) or Distribution("categorical")
        c = canon[p]
        pf: dict[str, Any] = {
            "param_name": p, "param_canonical": c or p,
            "param_tier": int(hierarchy[c]["tier"]) if c in hierarchy else 5,
            "param_in_hierarchy": c in hierarchy,
            "param_kind": d.kind, "param_numeric": d.numeric,
            "param_scale": "categorical" if not d.numeric else ("log" if d.log else "linear"),
            "param_bounds_from": d.source,
        }
        if importances and p in importances:
            pf["param_importance"] = importances[p]
            pf["param_importance_rank"] = order.index(p) + 1
        col = pd.to_numeric(t[f"params_{p}"], errors="coerce") if d.numeric else None
        if d.numeric:
            lo, hi, log = float(d.low), float(d.high), bool(d.log)
            # "0 or a log range" (Distribution.zero): a trial that ran with 0 has no position on the
            # log scale, so a best at 0 is the zero choice, never "best at the lower bound"
            pf.update(param_low=lo, param_high=hi, param_log=log)
            if best_row is not None and _finite(col[best_row]):
                pf["param_best"] = float(col[best_row])
                pos = _position(pf["param_best"], lo, hi, log)
                if pos is not None:
                    pf["param_best_position"] = pos
            positions = [_position(float(col[j]), lo, hi, log) for j in top_rows if _finite(col[j])]
            positions = [x for x in positions if x is not None]
            if positions:
                pf["param_top_low_share"] = sum(x <= band for x in positions) / len(positions)
                pf["param_top_high_share"] = sum(x >= 1 - band for x in positions) / len(positions)
            pf["param_low_is_floor"] = (not log) and lo == 0
            pf.update(_widened(lo, hi, log, d.kind, widen_decades, widen_fraction))
            pf.update(_bad_region(col, bad, finished, lo, hi, log))
        per_param[p] = pf
    return f, per_param


def _widened(lo: float, hi: float, log: bool, kind: str, decades: float,
             fraction: float) -> dict[str, float]:
    if log and lo > 0:
        new_lo, new_hi = lo / 10 ** decades, hi * 10 ** decades
    else:
        width = hi - lo
        new_lo, new_hi = lo - fraction * width, hi + fraction * width
        if lo >= 0:
            new_lo = max(new_lo, 0.0)
    if kind == "int":
        new_lo, new_hi = float(math.floor(new_lo)), float(math.ceil(new_hi))
    return {"param_widen_low": new_lo, "param_widen_high": new_hi}


def _bad_region(col: pd.Series, bad: pd.Series, finished: pd.Series, lo: float, hi: float,
                log: bool) -> dict[str, Any]:
    """Failed or non-finite trials against this parameter: is there a value beyond which (or
    below which) the trials fail? Counted among finished trials with the parameter set."""
    known = finished & col.notna()
    x, b = col[known].astype(float), bad[known]
    out: dict[str, Any] = {"param_n_bad": int(b.sum())}
    if not b.any():
        return out
    top = max(hi, float(x.max()))
    bottom = min(lo, float(x.min()))
    start = float(x[b].min())           # every bad trial is at or above this value
    above = x >= start
    out["param_bad_from"] = start
    out["param_n_above"] = int(above.sum())
    out["param_bad_share_above"] = float(b[above].mean())
    good_below = x[~above & ~b]
    if len(good_below):
        out["param_safe_high"] = float(good_below.max())
    pos = _position(start, bottom, top, log)
    if pos is not None:
        out["param_bad_region_above"] = 1.0 - pos
    end = float(x[b].max())             # every bad trial is at or below this value
    below = x <= end
    out["param_bad_to"] = end
    out["param_n_below"] = int(below.sum())
    out["param_bad_share_below"] = float(b[below].mean())
    good_above = x[~below & ~b]
    if len(good_above):
        out["param_safe_low"] = float(good_above.min())
    pos = _position(end, bottom, top, log)
    if pos is not None:
        out["param_bad_region_below"] = pos
    return out


# --------------------------------------------------------------------------- importances

def param_importances(table: StudyTable, analysis: dict[str, float]) -> tuple[dict[str, float], str | None]:
    """Parameter importances from Optuna's fANOVA evaluator (seeded), over the complete trials
    with a finite value; ({}, None) when there are too few trials or parameters to tell."""
    t = table.trials
    ok = (t["state"] == "complete") & np.isfinite(t["value"]) & ~t["nonfinite"]
    if int(ok.sum()) < int(analysis.get("importance_min_trials", 10)) or len(table.params) < 2:
        return {}, None
    import warnings

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = {}
    for p in table.params:
        d = table.distributions.get(p)
        col = t.loc[ok, f"params_{p}"].dropna()
        if d is None or col.empty:
            continue
        if d.numeric:
            x = pd.to_numeric(col, errors="coerce").dropna()
            if getattr(d, "zero", False) and d.log:  # "0 or a log range": 0 sits one decade below the floor
                x = x.where(x > 0, float(d.low) / 10)
            lo, hi = min(float(d.low), float(x.min())), max(float(d.high), float(x.max()))
            if hi <= lo:
                continue
            if d.kind == "int" and all(float(v).is_integer() for v in x):
                dists[p] = IntDistribution(int(lo), int(hi), log=d.log and lo >= 1)
            else:
                dists[p] = FloatDistribution(lo, hi, log=d.log and lo > 0)
        else:
            choices = tuple(dict.fromkeys([*(d.choices or []), *col.tolist()]))
            if len(choices) < 2:
                continue
            dists[p] = CategoricalDistribution(choices)
    if len(dists) < 2:
        return {}, None
    seed = int(analysis.get("importance_seed", 0))
    trees = int(analysis.get("importance_trees", 64))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(direction=table.direction)
            trials = []
            for i in t.index[ok]:
                params = {p: _native(_encoded(t.at[i, f"params_{p}"], dists[p]), dists[p]) for p in dists
                          if t.at[i, f"params_{p}"] is not None and not pd.isna(t.at[i, f"params_{p}"])}
                trials.append(optuna.trial.create_trial(
                    params=params, distributions={p: dists[p] for p in params}, value=float(t.at[i, "value"])))
            study.add_trials(trials)
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=trees, seed=seed)
            result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception:  # too few distinct values, a degenerate forest: importances unknown
        return {}, None
    result = {p: float(v) for p, v in result.items() if math.isfinite(v)}
    return result, f"fANOVA (optuna.importance.FanovaImportanceEvaluator, {trees} trees, seed {seed})"


def _encoded(value: Any, dist) -> Any:
    """0 of a "0 or a log range" parameter -> the bottom of its log distribution (fANOVA's view)."""
    if type(dist).__name__ == "FloatDistribution" and dist.log and value == 0:
        return dist.low
    return value


def _native(value: Any, dist) -> Any:
    kind = type(dist).__name__
    if kind == "IntDistribution":
        return int(float(value))
    if kind == "FloatDistribution":
        return float(value)
    return value.item() if hasattr(value, "item") else value
