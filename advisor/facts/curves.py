"""Curve analysis: robust statistics over a RunLog, one value per catalogued run fact.

Every threshold that judges a run lives in rules/; what is here are the window sizes and
z-scores of the analysis itself, read from the catalogue's `analysis` section.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from advisor.ingest.runlog import RunLog

_MAD = 1.4826  # MAD -> standard deviation for normal noise


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centred rolling median: robust to single bad epochs, keeps the curve's level."""
    if len(x) < 3 or window <= 1:
        return x.astype(float)
    return pd.Series(x).rolling(window, center=True, min_periods=1).median().to_numpy()


def _head(n: int) -> int:
    """How many first points make the 'initial' value: one, up to three on long curves (an
    epoch's loss is already an average; early losses fall fast, so few points)."""
    return max(1, min(3, n // 20))


def _rel(a: float, b: float) -> float:
    """(a - b) / |a|, the relative drop from a to b."""
    return float((a - b) / abs(a)) if a not in (0.0,) and math.isfinite(a) else 0.0


def _r(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _noise(x: np.ndarray, window: int) -> float | None:
    """Typical distance of a curve from its own trend, relative to where the curve started
    (relative to its current level, a loss near zero would look noisy however small the jitter)."""
    x = x[np.isfinite(x)]
    if len(x) < 5:
        return None
    start = abs(float(np.median(x[: _head(len(x))])))
    return float(np.median(np.abs(x - _smooth(x, window))) / start) if start > 0 else None


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """Median of each row; sorting short rows is several times faster than np.median's partition."""
    ordered = np.sort(rows, axis=1)
    w = rows.shape[1]
    return ordered[:, w // 2] if w % 2 else 0.5 * (ordered[:, w // 2 - 1] + ordered[:, w // 2])


def local_level(x: np.ndarray, window: int, follow_trend: bool = True) -> np.ndarray:
    """The curve's local level: the median of each block of `window` points, interpolated between
    block centres so that it follows the trend (or held over each block: cheaper, for a scale).
    Vectorized: fine for a million steps."""
    n = len(x)
    full = n // window * window
    medians = _row_medians(x[:full].reshape(-1, window)) if full else np.empty(0)
    sizes = np.full(len(medians), window)
    if full < n:
        medians = np.append(medians, np.median(x[full:]))
        sizes = np.append(sizes, n - full)
    if not follow_trend:
        return np.repeat(medians, sizes)
    centres = np.cumsum(sizes) - (sizes + 1) / 2
    return np.interp(np.arange(n), centres, medians)


def spike_mask(x: np.ndarray, window: int, z: float, min_ratio: float, min_height: float) -> np.ndarray:
    """Points far above the local level: more than z robust deviations (local MAD), more than
    min_ratio times the level, and higher than min_height in the loss's own units."""
    mask = np.zeros(len(x), dtype=bool)
    ok = np.isfinite(x)
    if ok.sum() < 2 * window:
        return mask
    y = x[ok]
    base = local_level(y, window)
    resid = y - base
    mad = local_level(np.abs(resid), window, follow_trend=False) * _MAD
    # a flat stretch has MAD ~0: floor the scale at the run's typical noise
    scale = np.maximum(mad, np.median(mad))
    mask[ok] = (resid > z * scale) & (y > min_ratio * base) & (resid > min_height)
    return mask


def epoch_spikes(x: np.ndarray, ratio: float, min_jump: float) -> np.ndarray:
    """Points that jump to `ratio` times the value before and come back (within the next two
    values the curve takes back half the jump or more), on epoch-level values. The rise is measured against the
    magnitude of the value before, so that a
    loss below zero (a negative log-likelihood) has spikes too."""
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return np.zeros(0, dtype=bool)
    before, mid = x[:-2], x[1:-1]
    after = np.minimum(x[2:], np.append(x[3:], np.inf))  # back within the next two epochs
    floor = 1e-3 * (np.max(np.abs(x)) or 1.0)  # a value at ~0 is not a scale
    jump = mid - before
    return ((jump >= (ratio - 1.0) * np.maximum(np.abs(before), floor))
            & (mid - after >= 0.5 * jump) & (jump >= min_jump * np.ptp(x)))


def recovered_bump(x: np.ndarray, recovery: float, min_jump: float) -> float | None:
    """The largest rise above the best value so far (as a ratio) that the curve later took
    back: after its peak it came down by at least `recovery` of the excess. The excess must be
    `min_jump` of the curve's range or more. A loss > 0 only."""
    x = x[np.isfinite(x)]
    if len(x) < 4 or np.any(x <= 0):
        return None
    best_so_far = np.minimum.accumulate(x)
    rise = x / best_so_far
    later_low = np.minimum.accumulate(x[::-1])[::-1]  # lowest value from each point on
    largest = 1.0
    for i in np.flatnonzero((rise > 1.0) & (x - best_so_far >= min_jump * np.ptp(x))):
        if i + 1 < len(x) and later_low[i + 1] <= x[i] - recovery * (x[i] - best_so_far[i]):
            largest = max(largest, float(rise[i]))
    return largest


def metric_swings(m: np.ndarray, relative: float, of_range: float = 0.0, floor: float = 0.0) -> int:
    """Reversals of the validation metric between neighbouring evaluations: a move of at least
    `relative` of the metric's typical level, `of_range` of its range over the run and `floor`
    (the sampling noise of a small validation set), straight back by as much."""
    m = m[np.isfinite(m)]
    if len(m) < 4:
        return 0
    level = float(np.median(np.abs(m))) or 1.0
    d = np.diff(m)
    big = (np.abs(d) >= relative * level) & (np.abs(d) >= of_range * np.ptp(m)) & (np.abs(d) >= floor)
    return int(np.sum(big[:-1] & big[1:] & (np.sign(d[:-1]) != np.sign(d[1:]))))


def tail_gain(x: np.ndarray, fraction: float) -> float | None:
    """Relative improvement of a lower-is-better curve over its last `fraction`, from the mean
    of the third before it to the mean of the last few points (means: robust to one bad epoch)."""
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 5:
        return None
    k = max(2, math.ceil(fraction * n))
    end = max(1, min(3, k // 3))
    before = float(np.mean(x[n - k - end: n - k + 1])) if n - k - end >= 0 else float(x[0])
    after = float(np.mean(x[-end:]))
    return _rel(before, after)


def spike_settings(a: dict[str, float], initial_loss: float, per_step: bool) -> dict[str, float]:
    return {"window": int(a["spike_window_steps" if per_step else "spike_window_epochs"]),
            "z": a["spike_z"], "min_ratio": a["spike_min_ratio"],
            "min_height": a["spike_min_height"] * abs(initial_loss)}


def _metric_resolution(m: np.ndarray) -> float | None:
    """Smallest step between distinct metric values: 1/N for an accuracy on N samples."""
    values = np.unique(np.round(m[np.isfinite(m)], 6))
    if len(values) < 5:
        return None
    return float(np.diff(values).min())


def _is_reward(name: str) -> bool:
    """A reinforcement-learning return: what the agent learns to raise (its losses are surrogates)."""
    from advisor.ingest.roles import normalize

    return bool(re.search(r"(^|_)(rew|reward|rewards|return|returns|ep_rew_mean)(_|$)", normalize(name)))


def _is_accuracy(metric: str) -> bool:
    from advisor.ingest.roles import normalize

    return bool(re.search(r"(^|_)(acc|accuracy|top_?1|categorical_accuracy)(_|$)", normalize(metric)))


def _distinct(x: np.ndarray) -> np.ndarray:
    """An evaluation logged again unchanged on the next epoch is one evaluation, not two."""
    if len(x) < 2:
        return x
    return x[np.concatenate([[True], x[1:] != x[:-1]])]


def _stability_facts(f: dict[str, Any], a: dict[str, float], train: np.ndarray, val: np.ndarray,
                     metric: np.ndarray, higher_is_better: bool | None) -> None:
    """Epoch-level instability: spikes that come back, blow-ups that recover, swinging metrics,
    a training loss that climbs away from its best (per-step noise inside an epoch is not it)."""
    ratio, jump = a["epoch_spike_ratio"], a["min_jump_of_range"]
    val, metric = _distinct(val), _distinct(metric)
    f["train_epoch_spikes"] = int(epoch_spikes(train, ratio, jump).sum()) if len(train) >= 3 else None
    f["val_spikes"] = int(epoch_spikes(val, ratio, jump).sum()) if len(val) >= 3 else None
    # a blow-up lasts: on a 3-epoch rolling median a lone spike vanishes (spikes are counted above)
    f["train_bump"] = _r(recovered_bump(_smooth(train, 3), a["bump_recovery"], jump))
    f["val_bump"] = _r(recovered_bump(_smooth(val, 3), a["bump_recovery"], jump))
    if len(metric) >= 4:
        # an accuracy on n examples moves by sqrt(p(1-p)/n) from sampling alone: a swing must
        # stand well above that to be the run's instability rather than the set's smallness
        n_val, p = f.get("val_set_size_estimate"), float(np.median(metric))
        floor = a["swing_sampling_z"] * math.sqrt(p * (1 - p) / n_val) if n_val and 0 < p < 1 else 0.0
        f["metric_swings"] = metric_swings(metric, a["metric_swing_relative"], a["metric_swing_of_range"], floor)
        sign = 1.0 if higher_is_better else -1.0
        sm = _smooth(sign * metric, 3)
        best = float(np.max(sm))
        if best != 0:
            f["metric_drop"] = _r((best - float(sm[-1])) / abs(best))
    if len(train) >= 4 and np.all(train > 0):
        s = _smooth(train, 5)  # at the end: the median of the last three (a last-row spike is not a climb)
        climbed = s[-1] - s.min() >= jump * np.ptp(train)
        f["train_end_over_best"] = _r(float(s[-1] / s.min())) if climbed else 1.0


def _end_facts(f: dict[str, Any], a: dict[str, float], train: np.ndarray, val: np.ndarray,
               metric: np.ndarray, higher_is_better: bool | None, l0: float | None,
               reward: np.ndarray) -> None:
    """How the run ends, judged on the curve a practitioner reads: the validation loss, else the
    validation metric, else the reward of a reinforcement-learning run, else the training loss."""
    if len(val) >= 5:
        curve, name = val, "val_loss"
    elif len(metric) >= 5:
        curve, name = (-metric if higher_is_better else metric), "val_metric"
    elif len(reward) >= 5:
        curve, name = -reward, "reward"
    else:
        curve, name = train, "train_loss"
    if len(curve) < 5:
        return
    f["judged_on"] = name
    f["end_gain"] = _r(tail_gain(curve, a["end_fraction"]))
    smooth = _smooth(curve, 3)
    f["end_best_fraction"] = _r(int(np.argmin(smooth)) / (len(curve) - 1))
    if smooth.min() != 0:
        f["end_off_best"] = _r(float((smooth[-1] - smooth.min()) / abs(smooth.min())))
    if l0 is not None and f.get("loss_final") is not None and f["loss_final"] < 0 and l0 != 0:
        f["loss_magnitude_growth"] = _r(abs(f["loss_final"]) / abs(l0))


def run_facts(run: RunLog, a: dict[str, float]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    n = len(run.epochs)
    win = int(a["smooth_window"])
    tail_frac = a["tail_fraction"]
    f["n_epochs"] = n
    f["n_steps"] = run.n_steps
    train, val = run.series("train_loss"), run.series("val_loss")
    metric, train_metric = run.series("val_metric"), run.series("train_metric")
    bad = run.epochs["nonfinite"].to_numpy(dtype=bool)
    f["has_train_loss"] = train is not None and bool(np.isfinite(train).any() or bad.any())
    f["has_val_loss"] = val is not None and bool(np.isfinite(val).any())
    f["has_val_metric"] = metric is not None and bool(np.isfinite(metric).any())
    f["has_validation"] = f["has_val_loss"] or f["has_val_metric"]
    f["metric_higher_is_better"] = run.higher_is_better if f["has_val_metric"] else None
    f["reward_logged"] = bool(run.columns.get("train_metric") and _is_reward(run.columns["train_metric"])
                              and train_metric is not None and np.isfinite(train_metric).any())
    # A reinforcement-learning run is judged on its reward: its policy and value losses are
    # surrogates that may rise while the agent improves (they are not read as a loss curve).
    loss_judged = f["has_train_loss"] and not f["reward_logged"]
    if n == 0:
        return f
    labels = run.epochs.index.to_numpy()

    # --- non-finite values: everything after the first one is analysed no further ----------
    f["nonfinite"] = bool(bad.any())
    # a run whose last epochs are all finite again came back from its non-finite ones: judge
    # all of it (the bad epochs drop out as gaps); otherwise nothing after the first one counts
    back = max(3, math.ceil(a["nonfinite_recovery_fraction"] * n))
    recovered = bool(bad.any()) and n > back and not bad[-back:].any() and bad.mean() < 0.5
    f["nonfinite_recovered"] = recovered if bad.any() else None
    cut = int(np.argmax(bad)) if bad.any() and not recovered else n
    f["nonfinite_epoch"] = int(labels[int(np.argmax(bad))]) if bad.any() else None
    f["nonfinite_fraction"] = _r(float(bad.mean()))
    f["n_finite_epochs"] = cut

    def before_cut(x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Values logged before the run went non-finite, gaps (epochs without a value) dropped."""
        if x is None:
            return np.array([]), np.array([])
        x = x[:cut]
        keep = np.isfinite(x)
        return x[keep], labels[:cut][keep]

    curve_all = train if loss_judged else val
    finite_all = curve_all[np.isfinite(curve_all)] if curve_all is not None else np.array([])
    c, _ = before_cut(curve_all)
    m = len(c)
    l0 = None
    if len(finite_all):
        k = _head(len(finite_all))
        l0 = float(np.median(finite_all[:k]))
        f["loss_initial"] = _r(l0)
        f["loss_max"] = _r(float(finite_all.max()))
        if len(finite_all) > k and l0 > 0:
            f["loss_peak_ratio"] = _r(float(finite_all[k:].max() / l0))

    # --- trend of the loss ----------------------------------------------------------------
    if m >= 3 and l0 is not None:
        s = _smooth(c, win)
        t0 = max(0, m - 1 - max(1, math.ceil(tail_frac * m)))
        f["loss_final"] = _r(float(s[-1]))
        f["loss_final_ratio"] = _r(float(s[-1] / l0)) if l0 > 0 else None
        f["train_total_improvement"] = _r(_rel(l0, float(s[-1])))
        f["train_tail_improvement"] = _r(_rel(float(s[t0]), float(s[-1])))
        progress = l0 - float(s.min())
        if progress > 0.05 * abs(l0):  # the share of the progress made that was lost again by the end
            f["train_rise"] = _r(float((s[-1] - s.min()) / progress))
        f["train_noise"] = _r(_noise(c, win))

    # --- spikes against the local noise level ---------------------------------------------
    steps = run.step_series("train_loss")
    if steps is not None and l0 is not None:
        steps = steps[: int(np.argmax(~np.isfinite(steps) & ~np.isnan(steps)))] if np.isinf(steps).any() else steps
    if steps is not None and np.isfinite(steps).sum() >= a["spike_min_points"]:
        pts, per_step = steps, True
    elif m >= 2 * a["spike_window_epochs"]:
        pts, per_step = c, False
    else:
        pts = None
    if pts is not None and l0 is not None:
        count = int(spike_mask(pts, **spike_settings(a, l0, per_step)).sum())
        f["spike_count"] = count
        f["spike_fraction"] = _r(count / max(1, np.isfinite(pts).sum()))

    # --- validation: best epoch, rise since, gap, noise, oscillation ----------------------
    vv, vl = before_cut(val)
    if len(vv) >= 2:
        sv = _smooth(vv, min(win, 3))
        best = int(np.argmin(vv))
        f["best_val_epoch"] = int(vl[best])
        f["best_val_fraction"] = _r(best / (len(vv) - 1))
        f["val_loss_best"] = _r(float(vv[best]))
        if sv.min() != 0:
            f["val_rise"] = _r(float((sv[-1] - sv.min()) / abs(sv.min())))
        t0 = max(0, len(sv) - 1 - max(1, math.ceil(tail_frac * len(sv))))
        f["val_tail_improvement"] = _r(_rel(float(sv[t0]), float(sv[-1])))
        f["val_noise"] = _r(_noise(vv, win))
        if f["has_train_loss"] and train is not None:
            tr = train[:cut][np.isfinite(val[:cut])]
            both = np.isfinite(tr)
            if both.sum() >= 2:
                st, svb = _smooth(tr[both], win), _smooth(vv[both], win)
                scale = abs(svb[-1]) or 1.0
                gap = (svb - st) / scale
                g0 = max(0, len(gap) - 1 - max(1, math.ceil(tail_frac * len(gap))))
                f["gap_end"] = _r(float(gap[-1]))
                f["gap_trend"] = _r(float(gap[-1] - gap[g0]))
                f["val_below_train_fraction"] = _r(float(np.mean(svb < st * (1 - a["val_below_train_margin"]))))
    mm, ml = before_cut(metric)
    if len(mm):
        sign = 1.0 if run.higher_is_better else -1.0
        best = int(np.argmax(sign * mm))
        f["best_val_metric"] = _r(float(mm[best]))
        f["final_val_metric"] = _r(float(mm[-1]))
        resolution = _metric_resolution(mm)
        if resolution and run.higher_is_better and float(np.nanmax(mm)) <= 1.0:
            f["val_set_size_estimate"] = int(round(1.0 / resolution))
        if "best_val_epoch" not in f:
            f["best_val_epoch"] = int(ml[best])
            f["best_val_fraction"] = _r(best / max(1, len(mm) - 1))
    if train_metric is not None and np.isfinite(train_metric).any():
        f["best_train_metric"] = _r(float(np.nanmax(train_metric[np.isfinite(train_metric)])))
    f["metric_is_accuracy"] = bool(run.metric and run.higher_is_better and _is_accuracy(run.metric))
    tr = before_cut(train)[0] if loss_judged else np.array([])
    rw = before_cut(train_metric)[0] if f["reward_logged"] else np.array([])
    # without a validation metric, a reward's swings are the metric swings (higher is better)
    swinging, higher = (mm, run.higher_is_better) if len(mm) or not len(rw) else (rw, True)
    if len(swinging) >= 4:
        f["swings_of"] = "validation metric" if swinging is mm else "reward"
    _stability_facts(f, a, tr, vv, swinging, higher)
    _end_facts(f, a, tr, vv, mm, run.higher_is_better, l0, rw)

    # --- learning-rate schedule -----------------------------------------------------------
    lr = run.step_series("lr")
    if lr is None or not np.isfinite(lr).any():
        lr = run.series("lr")
    f["lr_logged"] = lr is not None and bool(np.isfinite(lr).any())
    if f["lr_logged"]:
        lr = lr[np.isfinite(lr)]
        peak = int(np.argmax(lr))
        lr_max = float(lr[peak])
        f["lr_initial"], f["lr_max"], f["lr_final"] = _r(float(lr[0])), _r(lr_max), _r(float(lr[-1]))
        warm = bool(lr[0] < a["warmup_ratio"] * lr_max and 0 < peak <= a["warmup_max_fraction"] * len(lr))
        decay = bool(lr[-1] < a["decay_ratio"] * lr_max)
        f["has_warmup"], f["has_decay"] = warm, decay
        f["warmup_fraction"] = _r(peak / max(1, len(lr) - 1)) if warm else 0.0
        f["lr_schedule"] = {(False, False): "constant", (True, False): "warmup",
                            (False, True): "decay", (True, True): "warmup_decay"}[(warm, decay)]

    # --- gradient norm: blow-ups against the local level -----------------------------------
    g = run.step_series("grad_norm")
    if g is None or not np.isfinite(g).any():
        g = run.series("grad_norm")
    f["grad_norm_logged"] = g is not None and bool(np.isfinite(g).any())
    if f["grad_norm_logged"]:
        gg = g[np.isfinite(g) & (g > 0)]
        if len(gg) >= 2 * a["spike_window_epochs"]:
            window = int(a["spike_window_steps"]) if len(gg) >= a["spike_min_points"] else int(a["spike_window_epochs"])
            ratio = gg / local_level(gg, window, follow_trend=False)
            # the very first steps (a fresh head, the start of a fine-tune) have large gradients
            start = math.ceil(a["grad_norm_skip_fraction"] * len(ratio))
            f["grad_norm_peak_ratio"] = _r(float(np.max(ratio[start:])))
        k = max(1, len(gg) // 10)
        early = float(np.median(gg[:k])) if len(gg) else 0.0
        f["grad_norm_final_ratio"] = _r(float(np.median(gg[-k:]) / early)) if early > 0 else None
    return f
