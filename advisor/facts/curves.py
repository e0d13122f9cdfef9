"""Curve analysis: robust statistics over a RunLog, one value per catalogued run fact.

Every threshold that judges a run lives in rules/; what is here are the window sizes and
z-scores of the analysis itself, read from the catalogue's `analysis` section.
"""

from __future__ import annotations

import math
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


def _finite_prefix(x: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(x)
    return x[: int(np.argmax(bad))] if bad.any() else x


def _rel(a: float, b: float) -> float:
    """(a - b) / |a|, the relative drop from a to b."""
    return float((a - b) / abs(a)) if a not in (0.0,) and math.isfinite(a) else 0.0


def _r(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _noise(x: np.ndarray, window: int) -> float | None:
    x = x[np.isfinite(x)]
    if len(x) < 5:
        return None
    s = _smooth(x, window)
    level = np.median(np.abs(s))
    return float(np.median(np.abs(x - s)) / level) if level > 0 else None


def _block_median(x: np.ndarray, window: int) -> np.ndarray:
    """The median of each block of `window` points, repeated over the block (vectorized)."""
    full = len(x) // window * window
    parts = [np.repeat(np.median(x[:full].reshape(-1, window), axis=1), window)]
    if full < len(x):
        parts.append(np.full(len(x) - full, np.median(x[full:])))
    return np.concatenate(parts)


def spike_mask(x: np.ndarray, window: int, z: float, min_jump: float) -> np.ndarray:
    """Points far above the local level: log-loss residual over a block median, in block MADs."""
    mask = np.zeros(len(x), dtype=bool)
    ok = np.isfinite(x) & (x > 0)
    if ok.sum() < 2 * window:
        return mask
    logx = np.log(x[ok])
    med = _block_median(logx, window)
    dev = np.abs(logx - med)
    mad = _block_median(dev, window) * _MAD
    # a block's MAD can be ~0 on a converged curve: floor it at the run's typical noise
    floor = np.median(mad[mad > 0]) if np.any(mad > 0) else 0.0
    scale = np.maximum(mad, floor)
    resid = logx - med
    mask[ok] = (resid > z * scale) & (resid > math.log1p(min_jump))
    return mask


def _reversals(x: np.ndarray, threshold: float) -> float | None:
    """Share of epochs where the curve jumps by >= threshold and then jumps back."""
    x = x[np.isfinite(x)]
    if len(x) < 4:
        return None
    d = np.diff(x)
    big = np.abs(d) >= threshold
    flips = big[:-1] & big[1:] & (np.sign(d[:-1]) != np.sign(d[1:]))
    return float(flips.sum() / len(x))


def run_facts(run: RunLog, a: dict[str, float]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    n = len(run.epochs)
    win = int(a.get("smooth_window", 5))
    tail_frac, head_frac = a.get("tail_fraction", 0.25), a.get("head_fraction", 0.25)
    f["n_epochs"] = n
    f["n_steps"] = run.n_steps

    train = run.series("train_loss")
    val = run.series("val_loss")
    metric = run.series("val_metric")
    train_metric = run.series("train_metric")
    f["has_train_loss"] = train is not None and bool(np.isfinite(train).any() or run.epochs["nonfinite"].any())
    f["has_val_loss"] = val is not None and bool(np.isfinite(val).any())
    f["has_val_metric"] = metric is not None and bool(np.isfinite(metric).any())
    f["has_validation"] = f["has_val_loss"] or f["has_val_metric"]
    f["metric_higher_is_better"] = run.higher_is_better if f["has_val_metric"] else None
    if n == 0:
        return f
    epoch_labels = run.epochs.index.to_numpy()

    # --- non-finite values and explosions --------------------------------------------------
    bad = run.epochs["nonfinite"].to_numpy(dtype=bool)
    f["nonfinite"] = bool(bad.any())
    f["nonfinite_epoch"] = int(epoch_labels[int(np.argmax(bad))]) if bad.any() else None
    f["nonfinite_fraction"] = _r(float(bad.mean()))
    curve = train if f["has_train_loss"] else val
    finite = curve[np.isfinite(curve)] if curve is not None else np.array([])
    if bad.any():  # analyse the run as it was before it went non-finite
        cut = int(np.argmax(bad))
        prefix = lambda x: None if x is None else x[:cut]  # noqa: E731
        train_p, val_p, metric_p, curve_p = prefix(train), prefix(val), prefix(metric), prefix(curve)
    else:
        train_p, val_p, metric_p, curve_p = train, val, metric, curve
    if len(finite):
        k = max(1, min(3, len(finite) // 10))
        start = float(np.median(finite[:k]))
        f["loss_initial"] = _r(start)
        f["loss_max"] = _r(float(finite.max()))
        f["loss_peak_ratio"] = _r(float(finite[k:].max() / start)) if len(finite) > k and start > 0 else None

    # --- trend of the loss before anything went wrong -----------------------------------------
    c = _finite_prefix(curve_p) if curve_p is not None else np.array([])
    m = len(c)
    f["n_finite_epochs"] = m
    if m >= 3:
        s = _smooth(c, win)
        k = max(1, min(3, m // 10))
        l0 = float(np.median(c[:k]))
        t0 = max(0, m - 1 - max(1, math.ceil(tail_frac * m)))
        h = min(m - 1, max(1, math.ceil(head_frac * m)))
        f["loss_final"] = _r(float(s[-1]))
        f["loss_final_ratio"] = _r(float(s[-1] / l0)) if l0 > 0 else None
        f["train_total_improvement"] = _r(_rel(l0, float(s[-1])))
        f["train_tail_improvement"] = _r(_rel(float(s[t0]), float(s[-1])))
        head_drop = l0 - float(s[h])
        tail_drop = float(s[t0] - s[-1])
        f["tail_to_head"] = _r(tail_drop / head_drop) if head_drop > 1e-12 else None
        suffix_min = np.minimum.accumulate(s[::-1])[::-1]
        remaining = (s - suffix_min) / np.maximum(np.abs(s), 1e-12)
        still = np.flatnonzero(remaining >= a.get("plateau_tolerance", 0.01))
        onset = int(still[-1]) + 1 if len(still) else 0
        f["plateau_onset_fraction"] = _r(onset / (m - 1))
        f["train_noise"] = _r(_noise(c, win))

    # --- spikes against the local noise level ----------------------------------------------
    steps = _finite_prefix(run.step_series("train_loss")) if run.steps is not None else None
    if steps is not None and len(steps) >= a.get("spike_min_points", 50):
        pts, window = steps, int(a.get("spike_window_steps", 50))
    elif len(c) >= 2 * int(a.get("spike_window_epochs", 5)):
        pts, window = c, int(a.get("spike_window_epochs", 5))
    else:
        pts = None
    if pts is not None:
        count = int(spike_mask(pts, window, a.get("spike_z", 6.0), a.get("spike_min_jump", 0.3)).sum())
        f["spike_count"] = count
        f["spike_fraction"] = _r(count / len(pts))

    # --- validation: best epoch, rise since, gap, noise, oscillation -----------------------
    if f["has_val_loss"]:
        v = _finite_prefix(val_p) if val_p is not None else np.array([])
        v_lab = epoch_labels[: len(v)]
        ok = np.isfinite(v)
        if ok.sum() >= 2:
            vv, vl = v[ok], v_lab[ok]
            sv = _smooth(vv, min(win, 3))
            best = int(np.argmin(vv))
            f["best_val_epoch"] = int(vl[best])
            f["best_val_fraction"] = _r(best / (len(vv) - 1))
            f["val_loss_best"] = _r(float(vv[best]))
            f["val_rise"] = _r(float((sv[-1] - sv.min()) / abs(sv.min()))) if sv.min() != 0 else None
            t0 = max(0, len(sv) - 1 - max(1, math.ceil(tail_frac * len(sv))))
            f["val_tail_improvement"] = _r(_rel(float(sv[t0]), float(sv[-1])))
            f["val_noise"] = _r(_noise(vv, win))
            if f["has_train_loss"] and train_p is not None:
                tr = train_p[: len(v)][ok]
                both = np.isfinite(tr)
                if both.sum() >= 2:
                    st, svb = _smooth(tr[both], win), _smooth(vv[both], win)
                    scale = abs(svb[-1]) or 1.0
                    gap = (svb - st) / scale
                    g0 = max(0, len(gap) - 1 - max(1, math.ceil(tail_frac * len(gap))))
                    f["gap_end"] = _r(float(gap[-1]))
                    f["gap_trend"] = _r(float(gap[-1] - gap[g0]))
                    margin = a.get("val_below_train_margin", 0.02)
                    f["val_below_train_fraction"] = _r(float(np.mean(svb < st * (1 - margin))))
            f["val_oscillation"] = _r(_reversals(vv / abs(np.median(vv)), a.get("loss_swing", 0.05))) \
                if np.median(vv) != 0 else None
    if f["has_val_metric"]:
        mm = metric_p[np.isfinite(metric_p)] if metric_p is not None else np.array([])
        if len(mm):
            sign = 1.0 if run.higher_is_better else -1.0
            best = int(np.argmax(sign * mm))
            f["best_val_metric"] = _r(float(mm[best]))
            f["final_val_metric"] = _r(float(mm[-1]))
            f["metric_oscillation"] = _r(_reversals(mm, a.get("metric_swing", 0.03)))
            if "best_val_epoch" not in f:
                labels = epoch_labels[: len(metric_p)][np.isfinite(metric_p)]
                f["best_val_epoch"] = int(labels[best])
                f["best_val_fraction"] = _r(best / max(1, len(mm) - 1))
    if train_metric is not None and np.isfinite(train_metric).any():
        f["best_train_metric"] = _r(float(np.nanmax(train_metric[np.isfinite(train_metric)])))

    # --- learning-rate schedule ----------------------------------------------------------
    lr = run.step_series("lr")
    if lr is None or not np.isfinite(lr).any():
        lr = run.series("lr")
    f["lr_logged"] = lr is not None and bool(np.isfinite(lr).any())
    if f["lr_logged"]:
        lr = lr[np.isfinite(lr)]
        peak = int(np.argmax(lr))
        lr_max = float(lr[peak])
        f["lr_initial"], f["lr_max"], f["lr_final"] = _r(float(lr[0])), _r(lr_max), _r(float(lr[-1]))
        warm = lr[0] < a.get("warmup_ratio", 0.5) * lr_max and 0 < peak <= a.get("warmup_max_fraction", 0.5) * len(lr)
        decay = lr[-1] < a.get("decay_ratio", 0.5) * lr_max
        f["has_warmup"], f["has_decay"] = bool(warm), bool(decay)
        f["warmup_fraction"] = _r(peak / max(1, len(lr) - 1)) if warm else 0.0
        f["lr_schedule"] = {(False, False): "constant", (True, False): "warmup",
                            (False, True): "decay", (True, True): "warmup_decay"}[(bool(warm), bool(decay))]

    # --- gradient norm -------------------------------------------------------------------
    g = run.step_series("grad_norm")
    if g is None or not np.isfinite(g).any():
        g = run.series("grad_norm")
    f["grad_norm_logged"] = g is not None and bool(np.isfinite(g).any())
    if f["grad_norm_logged"]:
        gg = g[np.isfinite(g)]
        med = float(np.median(gg))
        f["grad_norm_peak_ratio"] = _r(float(gg.max() / med)) if med > 0 else None
        k = max(1, len(gg) // 10)
        early = float(np.median(gg[:k]))
        f["grad_norm_final_ratio"] = _r(float(np.median(gg[-k:]) / early)) if early > 0 else None
    return f
