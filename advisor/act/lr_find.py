"""The learning-rate range test and the reading of its curve.

Two halves, as in fastai's `lr_find`:

* :func:`range_test` trains the model for `iters` steps while the LR grows exponentially from
  `start` to `end`, records the raw loss and its bias-corrected EMA, stops once the smoothed loss
  passes `stop_factor` x its best (or turns NaN/Inf), and restores everything it touched in a
  ``finally`` (parameters, buffers such as batch-norm statistics, gradients, train/eval flags,
  the optimizer's state if one was passed in, the python/numpy/torch/cuda RNG states, the device).
* :func:`suggest` and the estimators (:func:`valley`, :func:`steepest`, :func:`minimum`,
  :func:`largest_converging`) are pure functions of ``(lrs, losses)``: no torch, testable on
  recorded curves. Their thresholds live in ``rules/lr_find.yaml``.

The JSON document of `advisor lr-find --json` (schema ``advisor.lr-find/1``; these keys are
stable, and `advisor plan --lr-from FILE` reads ``suggested_lr``, ``range`` and ``verdict``)::

    schema_version  "advisor.lr-find/1"
    suggested_lr    float or null (null only when no LR can be read off the curve)
    range           [low, high]: where to search around the suggestion, or null
    confidence      0..1: agreement of the estimators, noise of the curve, spread of repeats
    confidence_label  "high" | "medium" | "low"
    verdict         "ok" | "never-diverged" | "flat" | "too-few-points" | "too-noisy"
    message         one line: what the verdict means for this curve
    advice          one line: what to do (empty when the verdict is ok)
    notes           other verdict codes that also apply, weaker than `verdict`; "seed-sensitive"
                    when the repeats disagree so much that other seeds may move the answer 2x
    estimators      {"valley", "steepest", "minimum", "converging"}: each estimator's LR or null
                    (minimum is already divided by 10, converging by 3.5)
    peers           the published rules on the same curve: {"fastai_valley", "fastai_minimum",
                    "torch_lr_finder_steepest"} (LR or null)
    curve           {"lr": [...], "loss": [...], "smoothed": [...], "centred": [...]}: every step
                    of the first run; loss is the raw loss (null where not finite), smoothed its
                    bias-corrected EMA, centred the zero-lag smoothing the estimators read
    repeats         {"n", "seeds", "suggested_lrs", "spread" (max/min ratio), "std_log10"}
    sweep           {"start", "end", "iters", "steps", "diverged", "stop_reason"}
    optimizer       {"name", "momentum", "weight_decay"}
    batch_size      int or null (as passed to build(hp); null: the task's own)
    task            the TASK argument, or "demo"
    device          "cpu (2 threads)", "cuda:0 (NVIDIA H100 ...)", "mps"
    mixed_precision "bf16" | "fp16" | null
    seed            int
    seconds         wall time of the range test(s), seconds
    uncorrected_lr  the range test's own answer, before the horizon correction
    horizon         {"applied", "factor", "planned_steps", "test_steps", "slope", "source", "why"}:
                    the training-length correction (rules/lr_find.yaml `horizon`)
    method          "range" (the range test) | "sweep" (successive halving around its answer)
    halving         --method sweep only: {"candidates", "rungs": [{"epochs", "lrs", "metrics"}],
                    "best_lr", "cost_full_runs", "seconds"}
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from advisor.errors import InputError

SCHEMA_VERSION = "advisor.lr-find/1"
VERDICTS = ("ok", "never-diverged", "flat", "too-few-points", "too-noisy")
ESTIMATORS = ("valley", "steepest", "minimum", "converging")


# --------------------------------------------------------------------------- settings (knowledge)

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SweepSettings(_Strict):
    start: float = Field(gt=0)
    end: float = Field(gt=0)
    iters: int = Field(ge=5)
    beta: float = Field(ge=0, lt=1)
    stop_factor: float = Field(gt=1)
    skip_start: float = Field(ge=0, lt=0.5)
    skip_end: int = Field(ge=0)
    repeats: int = Field(ge=1)


class EstimatorWeights(_Strict):
    valley: float = Field(ge=0)
    steepest: float = Field(ge=0)
    minimum: float = Field(ge=0)
    converging: float = Field(ge=0)


class SuggestSettings(_Strict):
    smooth_fraction: float = Field(gt=0, lt=0.5)
    smooth_min_points: float = Field(gt=0)
    log_loss: bool
    minimum_divisor: float = Field(gt=0)
    converging_divisor: float = Field(gt=0)
    converging_tolerance: float = Field(ge=0, lt=1)
    weights: EstimatorWeights
    outlier_decades: float = Field(gt=0)
    range_decades: tuple[float, float]
    range_widen_decades: float = Field(ge=0)
    offset_decades: float


class VerdictSettings(_Strict):
    min_points: int = Field(ge=3)
    flat_drop: float = Field(ge=0, lt=1)
    rise_factor: float = Field(ge=1)
    noise_ratio: float = Field(gt=0)


class ConfidenceLabels(_Strict):
    high: float
    medium: float


class ConfidenceSettings(_Strict):
    noise_scale: float = Field(gt=0)
    spread_free: float = Field(ge=0)
    spread_decades: float = Field(gt=0)
    repeats_decades: float = Field(gt=0)
    seed_sensitive_decades: float = Field(gt=0)
    labels: ConfidenceLabels


class HorizonSettings(_Strict):
    slope: float = Field(ge=0)
    max_decades: float = Field(ge=0)


class HalvingSettings(_Strict):
    offsets_decades: list[float] = Field(min_length=2)
    first_fraction: float = Field(gt=0, le=1)
    keep: float = Field(gt=0, lt=1)


class LRFindSettings(_Strict):
    sweep: SweepSettings
    suggest: SuggestSettings
    horizon: HorizonSettings
    halving: HalvingSettings
    verdicts: VerdictSettings
    confidence: ConfidenceSettings


@lru_cache(maxsize=None)
def load_settings(path: Optional[str] = None) -> LRFindSettings:
    """rules/lr_find.yaml, validated (unknown keys are an error naming the field)."""
    from advisor.engine.loader import load_settings_file

    return load_settings_file("lr_find", LRFindSettings, path)


# --------------------------------------------------------------------------- pure functions

def lr_schedule(start: float, end: float, iters: int) -> np.ndarray:
    """The exponential sweep: iters LRs from start to end, equally spaced in log(lr)."""
    if iters < 2:
        return np.array([float(start)])
    return float(start) * (float(end) / float(start)) ** (np.arange(iters) / (iters - 1))


def ema(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average (fastai's SmoothenValue); NaN propagates."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(value)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def finite_prefix(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to (not including) its first non-finite loss."""
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(losses))
    stop = int(bad[0]) if bad.size else len(losses)
    return lrs[:stop], losses[:stop]


def trim(lrs: Sequence[float], losses: Sequence[float], iters: Optional[int] = None,
         skip_start: float = 0.1, skip_end: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """fastai's trimming: drop the first `skip_start` x iters points and the last `skip_end`
    points, then cut at the first non-finite loss."""
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    first = int((iters or len(lrs)) * skip_start)
    last = len(lrs) - skip_end if skip_end else len(lrs)
    return finite_prefix(lrs[first:last], losses[first:last])


def valley_index(losses: Sequence[float]) -> Optional[int]:
    """fastai's valley: the longest strictly decreasing sequence of points; the point about
    half-way down it (start + 1/3 + 1/6 of its length)."""
    values = [float(v) for v in losses]
    n = len(values)
    if n < 2:
        return None
    lds = [1] * n
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if values[i] < values[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return min(n - 1, max(0, max_start + int(sections) + int(sections / 2)))


def valley(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """fastai's `valley` suggestion on a (smoothed, trimmed) curve."""
    idx = valley_index(losses)
    return None if idx is None else float(lrs[idx])


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> Optional[float]:
    """The LR where the loss falls fastest against log(lr) (torch-lr-finder, fastai `steep`)."""
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if len(losses) < 3:
        return None
    grad = np.gradient(losses, np.log10(lrs))
    return float(lrs[int(np.argmin(grad))])


def minimum(lrs: Sequence[float], losses: Sequence[float], divisor: float = 10.0) -> Optional[float]:
    """The LR of the lowest loss, divided by `divisor` (fastai's `minimum`)."""
    if len(losses) == 0:
        return None
    return float(np.asarray(lrs, dtype=float)[int(np.argmin(losses))]) / divisor


def converging_index(losses: Sequence[float], tolerance: float = 0.1) -> Optional[int]:
    """The last point after the minimum whose loss is still within `tolerance` x (depth of the
    descent) of the minimum: the largest LR at which training still converges."""
    z = np.asarray(losses, dtype=float)
    if len(z) == 0:
        return None
    low = int(np.argmin(z))
    top = start_level(z)
    limit = z[low] + tolerance * max(0.0, top - z[low])
    idx = low
    while idx + 1 < len(z) and z[idx + 1] <= limit:
        idx += 1
    return idx


def start_level(values: Sequence[float]) -> float:
    """Where the curve starts: the median of its first tenth (at least 3 points)."""
    z = np.asarray(values, dtype=float)
    return float(np.median(z[: max(3, len(z) // 10)]))


def largest_converging(lrs: Sequence[float], losses: Sequence[float], divisor: float = 3.5,
                       tolerance: float = 0.1) -> Optional[float]:
    """Smith (2017): the largest LR that still converges, divided by `divisor` (3 .. 4)."""
    idx = converging_index(losses, tolerance)
    return None if idx is None else float(np.asarray(lrs, dtype=float)[idx]) / divisor


def local_linear(values: Sequence[float], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-lag smoothing: at each point a Gaussian-weighted straight-line fit (width `sigma`
    points). Returns (level, slope per point). Unlike an EMA, it does not shift the curve to
    the right, so the LR read off it is the LR at which the loss behaved that way."""
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n == 0:
        return y.copy(), y.copy()
    idx = np.arange(n, dtype=float)
    d = idx[None, :] - idx[:, None]
    w = np.exp(-0.5 * (d / max(sigma, 1e-9)) ** 2)
    s0 = w.sum(1)
    s1 = (w * d).sum(1)
    s2 = (w * d * d).sum(1)
    t0 = w @ y
    t1 = (w * d) @ y
    det = s0 * s2 - s1 * s1
    safe = np.abs(det) > 1e-12
    level = np.where(safe, (s2 * t0 - s1 * t1) / np.where(safe, det, 1), t0 / s0)
    slope = np.where(safe, (s0 * t1 - s1 * t0) / np.where(safe, det, 1), 0.0)
    return level, slope


def robust_noise(values: Sequence[float], smooth: Sequence[float]) -> float:
    """1.4826 x median absolute residual of the raw curve around its smooth version."""
    r = np.asarray(values, dtype=float) - np.asarray(smooth, dtype=float)
    if r.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def centred_curve(losses: Sequence[float], iters: Optional[int] = None,
                  settings: Optional[LRFindSettings] = None) -> list[Optional[float]]:
    """The zero-lag smoothed loss advisor reads its estimators from (None past the first
    non-finite loss), in the loss's own units."""
    cfg = (settings or load_settings()).suggest
    raw = np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(raw))
    n = int(bad[0]) if bad.size else len(raw)
    if n == 0:
        return [None] * len(raw)
    use_log = cfg.log_loss and bool(np.all(raw[:n] > 0))
    y = np.log(raw[:n]) if use_log else raw[:n]
    level, _ = local_linear(y, max(cfg.smooth_min_points, cfg.smooth_fraction * (iters or len(raw))))
    values = np.exp(level) if use_log else level
    return [float(v) for v in values] + [None] * (len(raw) - n)


class Suggestion(BaseModel):
    """What one curve says: the LR, where to search, how sure, and the verdict."""

    suggested_lr: Optional[float]
    range: Optional[tuple[float, float]]
    confidence: float
    confidence_label: str
    verdict: str
    message: str
    advice: str
    notes: list[str] = []
    estimators: dict[str, Optional[float]]
    peers: dict[str, Optional[float]]
    points: int
    drop: float
    noise: float
    spread_decades: float


def peer_suggestions(lrs: Sequence[float], losses: Sequence[float],
                     iters: Optional[int] = None) -> dict[str, Optional[float]]:
    """The published rules as their tools apply them to this curve. fastai: its bias-corrected
    EMA (beta 0.98), trimmed to [iters//10 : -5], NaN cut; valley and minimum/10.
    torch-lr-finder: its own smoothing (smooth_f 0.05, seeded with the first loss), trimmed to
    [10 : -5]; the steepest gradient per step."""
    raw = np.asarray(losses, dtype=float)
    x, y = trim(lrs, ema(raw, 0.98), iters, 0.1, 5)
    out = {"fastai_valley": valley(x, y), "fastai_minimum": minimum(x, y, 10.0)}
    smooth = raw.copy()
    for i in range(1, len(smooth)):
        smooth[i] = 0.05 * raw[i] + 0.95 * smooth[i - 1]
    lrs_arr = np.asarray(lrs, dtype=float)
    x, y = finite_prefix(lrs_arr[10:len(lrs_arr) - 5], smooth[10:len(smooth) - 5])
    out["torch_lr_finder_steepest"] = float(x[int(np.argmin(np.gradient(y)))]) if len(y) >= 2 else None
    return out


def mean_curve(curves: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Several range tests of the same sweep folded into one curve: the geometric mean of their
    raw losses (the arithmetic mean where a loss is not positive), step by step, up to the end
    of the shortest finite one. Averaging the curves before reading them cuts the seed noise
    that reading each one and averaging the answers keeps."""
    parts = [finite_prefix(lrs, losses) for lrs, losses in curves]
    n = min(len(x) for x, _ in parts)
    x = parts[0][0][:n]
    ys = np.stack([y[:n] for _, y in parts])
    if n and np.all(ys > 0):
        return x, np.exp(np.log(ys).mean(0))
    return x, ys.mean(0)


def _kept_estimators(est: dict, weights: dict, outlier_decades: float) -> dict[str, float]:
    """log10 of the weighted estimators, less those further than `outlier_decades` from their median."""
    logs = {k: math.log10(v) for k, v in est.items() if v and v > 0 and weights.get(k, 0) > 0}
    if not logs:
        return {}
    median = float(np.median(list(logs.values())))
    return {k: v for k, v in logs.items() if abs(v - median) <= outlier_decades} or logs


def combine_estimators(est: dict, weights: dict, outlier_decades: float = 1.5) -> float:
    """log10 of the weighted geometric mean of the estimators' LRs (outliers left out); NaN if none."""
    kept = _kept_estimators(est, weights, outlier_decades)
    total = sum(weights[k] for k in kept)
    return sum(weights[k] * v for k, v in kept.items()) / total if total else float("nan")


def _label(confidence: float, cfg: ConfidenceSettings) -> str:
    if confidence >= cfg.labels.high:
        return "high"
    return "medium" if confidence >= cfg.labels.medium else "low"


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _fmt(lr: float) -> str:
    return f"{lr:.2e}"


def suggest(lrs: Sequence[float], losses: Sequence[float], iters: Optional[int] = None,
            diverged: Optional[bool] = None, settings: Optional[LRFindSettings] = None) -> Suggestion:
    """Read a range-test curve: combine the estimators into one LR, a range, a confidence and
    a verdict. `losses` are the raw per-step losses (NaN/Inf where the run blew up); `iters` is
    the planned number of steps (default: the number of points); `diverged` whether the test
    stopped on divergence (default: inferred from the curve)."""
    cfg = settings or load_settings()
    sw, sg, vd = cfg.sweep, cfg.suggest, cfg.verdicts
    lrs_all = np.asarray(lrs, dtype=float)
    raw_all = np.asarray(losses, dtype=float)
    if lrs_all.shape != raw_all.shape:
        raise ValueError(f"lrs and losses differ in length ({lrs_all.size} vs {raw_all.size})")
    planned = iters or len(lrs_all)
    peers = peer_suggestions(lrs_all, raw_all, planned)
    x_all, y_all = finite_prefix(lrs_all, raw_all)
    nonfinite = len(x_all) < len(lrs_all)
    if diverged is None:
        sm = ema(y_all, sw.beta) if len(y_all) else y_all
        diverged = nonfinite or (len(sm) > 0 and sm[-1] > sw.stop_factor * float(np.min(sm)))
    empty = dict.fromkeys(ESTIMATORS)

    def result(verdict, message, advice, lr=None, rng=None, conf=0.0, est=empty, points=0,
               drop=0.0, noise=0.0, spread=0.0, notes=()):
        return Suggestion(suggested_lr=lr, range=rng, confidence=round(conf, 3),
                          confidence_label=_label(conf, cfg.confidence), verdict=verdict,
                          message=message, advice=advice, notes=list(notes), estimators=est,
                          peers=peers, points=points, drop=drop, noise=noise, spread_decades=spread)

    # the analysed part: skip the EMA warm-up at the start and the blow-up at the end
    first = int(planned * sw.skip_start)
    last = len(x_all) - sw.skip_end
    if last - first < vd.min_points:
        low_end = len(x_all) < planned * 0.5
        return result("too-few-points",
                      f"only {max(0, last - first)} usable points after trimming (of {len(lrs_all)} steps"
                      f"{', the loss blew up early' if low_end else ''})",
                      "lower --start (the loss already rises at the first LRs) or raise --iters"
                      if low_end else "raise --iters", points=max(0, last - first))
    use_log = sg.log_loss and bool(np.all(y_all > 0))  # a loss that can go negative is read as is
    y_log = np.log(y_all) if use_log else y_all
    sigma = max(sg.smooth_min_points, sg.smooth_fraction * planned)
    level_all, _ = local_linear(y_log, sigma)
    x, z, r = x_all[first:last], level_all[first:last], y_log[first:last]
    logx = np.log10(x)

    # how much the curve fell, and how noisy it is around its smooth version
    i_min = int(np.argmin(z))
    top = start_level(z)
    depth = top - float(z[i_min])
    drop = (1 - math.exp(-max(0.0, depth))) if use_log else max(0.0, depth / max(abs(top), 1e-12))
    noise = robust_noise(r, z)
    noise_ratio = noise / depth if depth > 0 else float("inf")
    end_level = float(z[-1])
    rise = (math.exp(end_level - float(z[i_min])) if use_log
            else 1 + (end_level - float(z[i_min])) / max(abs(top - float(z[i_min])), 1e-12))
    turned = diverged or rise > vd.rise_factor

    # the four estimators, read off the zero-lag curve
    est = {
        "valley": valley(x, z),
        "steepest": float(x[int(np.argmin(np.gradient(z, logx)))]),
        "minimum": minimum(x, z, sg.minimum_divisor),
        "converging": largest_converging(x, z, sg.converging_divisor, sg.converging_tolerance),
    }
    weights = sg.weights.model_dump()
    kept = _kept_estimators(est, weights, sg.outlier_decades)
    total = sum(weights[k] for k in kept)
    centre = combine_estimators(est, weights, sg.outlier_decades)
    spread = float(np.sqrt(sum(weights[k] * (v - centre) ** 2 for k, v in kept.items()) / total))
    centre += sg.offset_decades  # fitted on the held-out suite (rules/lr_find.yaml says how)
    lr = 10 ** centre
    cc = cfg.confidence
    conf = max(0.0, 1 - noise_ratio / cc.noise_scale) * \
        min(1.0, max(0.0, 1 - (spread - cc.spread_free) / cc.spread_decades))
    below, above = sg.range_decades
    widen = sg.range_widen_decades * (1 - conf)
    high = 10 ** (centre + above + widen)
    if est["converging"]:  # never search above the largest LR that still converged
        high = min(high, est["converging"] * sg.converging_divisor)
    rng = (_sig(10 ** (centre - below - widen)), _sig(max(high, 10 ** (centre + 0.1))))
    lr = _sig(lr)

    flags = []
    if drop < vd.flat_drop:
        flags.append("flat")
    if not turned:
        flags.append("never-diverged")
    if noise_ratio > vd.noise_ratio:
        flags.append("too-noisy")
    points = len(z)
    est_round = {k: (float(f"{v:.4g}") if v else None) for k, v in est.items()}
    if "flat" in flags:
        return result("flat",
                      f"the loss hardly moved: it fell {drop:.1%} from {_fmt(x[0])} to {_fmt(x[-1])}",
                      "the model may already be trained, or the range misses it: check the loss "
                      "and the data, then widen --start/--end", lr=None, rng=None, conf=0.0, est=est_round,
                      points=points, drop=drop, noise=noise_ratio, spread=spread,
                      notes=[f for f in flags if f != "flat"])
    if "never-diverged" in flags:
        conf = min(conf, 0.3)
        return result("never-diverged",
                      f"the loss was still falling at --end {_fmt(x_all[-1])}: the LR that diverges "
                      f"lies above the range; {_fmt(lr)} is only a lower bound",
                      f"raise --end (to {_fmt(x_all[-1] * 100)} or more) and run again", lr=lr,
                      rng=(rng[0], max(rng[1], float(x_all[-1]))), conf=conf, est=est_round, points=points,
                      drop=drop, noise=noise_ratio, spread=spread,
                      notes=[f for f in flags if f != "never-diverged"])
    if "too-noisy" in flags:
        conf = min(conf, 0.3)
        return result("too-noisy",
                      f"the loss is noisy: its scatter is {noise_ratio:.0%} of the depth of the descent",
                      "use a larger --batch-size, more --iters, or --repeats 3 to average the noise",
                      lr=lr, rng=rng, conf=conf, est=est_round, points=points, drop=drop,
                      noise=noise_ratio, spread=spread)
    return result("ok", f"suggested LR {_fmt(lr)} (search {_fmt(rng[0])} .. {_fmt(rng[1])})", "",
                  lr=lr, rng=rng, conf=conf, est=est_round, points=points, drop=drop,
                  noise=noise_ratio, spread=spread)


def horizon_correction(planned_steps: Optional[int], test_steps: int,
                       settings: Optional[LRFindSettings] = None, source: str = "") -> dict[str, Any]:
    """How much lower than the range test's answer a run of `planned_steps` wants its LR.

    The range test reads the LR at which the loss falls fastest over a few steps: a short-horizon
    answer. Across the held-out suite the best constant LR falls with the length of the run
    (rules/lr_find.yaml `horizon`); the correction is `slope` decades per decade of planned steps
    beyond the test's own, at most `max_decades`."""
    hz = (settings or load_settings()).horizon
    base = {"planned_steps": planned_steps, "test_steps": test_steps, "slope": hz.slope, "source": source}
    if not planned_steps:
        return {**base, "applied": False, "factor": 1.0,
                "why": "no planned length (give --epochs, or an `epochs` attribute on the task): "
                       "the suggestion is the range test's short-horizon answer"}
    ratio = planned_steps / max(1, test_steps)
    decades = min(hz.max_decades, hz.slope * math.log10(ratio)) if ratio > 1 else 0.0
    if ratio <= 1:
        return {**base, "applied": False, "factor": 1.0,
                "why": f"the planned {planned_steps} steps are no longer than the test's {test_steps}"}
    if decades <= 0:
        return {**base, "applied": False, "factor": 1.0, "why": "rules/lr_find.yaml: horizon.slope is 0"}
    capped = " (capped)" if decades >= hz.max_decades else ""
    return {**base, "applied": True, "factor": float(f"{10 ** -decades:.4g}"),
            "why": f"{planned_steps} planned steps are {ratio:.3g}x the test's {test_steps}: the best LR of a "
                   f"longer run is lower, by {hz.slope:g} decades per decade of steps{capped} on the held-out "
                   f"suite; LR divided by {10 ** decades:.3g}"}


def apply_horizon(s: "Suggestion", correction: dict[str, Any]) -> "Suggestion":
    """The suggestion and its range scaled by the correction's factor (nothing when not applied)."""
    if not correction.get("applied") or s.suggested_lr is None:
        return s
    f = correction["factor"]
    lr = _sig(s.suggested_lr * f)
    rng = (_sig(s.range[0] * f), _sig(s.range[1] * f)) if s.range else None
    message = s.message
    if s.verdict == "ok" and rng:
        message = f"suggested LR {_fmt(lr)} (search {_fmt(rng[0])} .. {_fmt(rng[1])}) for the planned " \
                  f"{correction['planned_steps']} steps"
    return s.model_copy(update={"suggested_lr": lr, "range": rng, "message": message})


def halving_plan(centre: float, epochs: int, settings: Optional[LRFindSettings] = None) -> dict[str, Any]:
    """--method sweep: the candidate LRs around `centre`, the epochs of the first rung, how many
    go on to the full length, and the cost in full training runs (each survivor trained again from
    its seed for the whole length)."""
    hv = (settings or load_settings()).halving
    lrs = [_sig(centre * 10 ** d) for d in hv.offsets_decades]
    first = max(1, min(epochs, round(epochs * hv.first_fraction)))
    keep = max(1, math.ceil(len(lrs) * hv.keep))
    if first >= epochs:  # too short to halve: every candidate trained once, for the whole length
        first, keep = epochs, 1
    cost = (len(lrs) * first + (keep * epochs if first < epochs else 0)) / epochs
    return {"candidates": lrs, "first_epochs": first, "keep": keep, "epochs": epochs,
            "cost_full_runs": round(cost, 2)}


def halving_pick(metrics: dict[float, float], keep: int, maximize: bool) -> list[float]:
    """The `keep` best LRs of a rung (a non-finite metric is the worst); ties to the lower LR."""
    def rank(lr):
        v = metrics[lr]
        bad = not math.isfinite(v)
        return (bad, -v if maximize and not bad else (v if not bad else 0.0), lr)
    return sorted(metrics, key=rank)[:keep]


def halving_sweep(build: Callable[[], Any], plan: dict[str, Any], *, optimizer: str,
                  momentum: Optional[float] = None, weight_decay: Optional[float] = None, device=None,
                  seed: int = 0, log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Successive halving: every candidate trained (constant LR, advisor's trainer) for the first
    rung's epochs from `seed`; the best `keep` trained from the same seed for the whole length;
    the LR that ended best. `build()` returns a fresh task each time."""
    from advisor.act.train import Diverged, TrainConfig, metric_direction, train

    began = time.perf_counter()
    rungs = []
    maximize = None
    lrs = list(plan["candidates"])
    stages = [(plan["first_epochs"], plan["keep"]), (plan["epochs"], 1)]
    for epochs, keep in (stages if plan["first_epochs"] < plan["epochs"] else stages[1:]):
        metrics: dict[float, float] = {}
        for lr in lrs:
            seed_everything(seed)
            task = build()
            direction = metric_direction(task.metric)
            if direction is None:
                raise InputError("--method sweep: the task's metric has no direction (give 'accuracy', "
                                 "'loss', or a callable with direction = 'maximize' | 'minimize')")
            maximize = direction == "maximize"
            config = TrainConfig(optimizer=optimizer, learning_rate=lr, lr_schedule="constant", epochs=epochs,
                                 momentum=(0.9 if momentum is None else momentum) if optimizer == "sgd" else None,
                                 weight_decay=(weight_decay if weight_decay is not None
                                               else (0.01 if optimizer == "adamw" else 0.0)))
            try:
                metrics[lr] = float(train(task, config, device=device).value)
            except Diverged:
                metrics[lr] = math.nan
            if log:
                log(f"  lr {lr:.2e}, {epochs} epochs: {metrics[lr]:.4g}")
        rungs.append({"epochs": epochs, "lrs": lrs, "metrics": [metrics[lr] if math.isfinite(metrics[lr]) else None
                                                                for lr in lrs]})
        lrs = halving_pick(metrics, keep, maximize)
    best = lrs[0]
    final = rungs[-1]["metrics"][rungs[-1]["lrs"].index(best)]
    return {**plan, "rungs": rungs, "best_lr": best, "best_metric": final,
            "seconds": round(time.perf_counter() - began, 3)}


@dataclass
class Combined:
    """Several range tests (repeats with other seeds) folded into one suggestion."""

    suggestion: Suggestion
    suggested_lrs: list[Optional[float]]
    spread: Optional[float]  # max / min of the repeats' suggestions
    std_log10: Optional[float]


def combine(suggestions: Sequence[Suggestion], settings: Optional[LRFindSettings] = None) -> Combined:
    """Repeats: the geometric median of their LRs, the range widened to cover them, the
    confidence lowered by their spread; a verdict that most repeats share wins."""
    cfg = settings or load_settings()
    lrs = [s.suggested_lr for s in suggestions]
    if len(suggestions) == 1:
        return Combined(suggestions[0], lrs, None, None)
    verdicts = [s.verdict for s in suggestions]
    verdict = max(set(verdicts), key=lambda v: (verdicts.count(v), v == "ok"))
    base = next(s for s in suggestions if s.verdict == verdict)
    good = [math.log10(v) for s, v in zip(suggestions, lrs) if v and s.verdict == verdict]
    if not good:
        return Combined(base, lrs, None, None)
    centre = float(np.median(good))
    std = float(np.std(good))
    spread = 10 ** (max(good) - min(good))
    lows = [math.log10(s.range[0]) for s in suggestions if s.range and s.verdict == verdict]
    highs = [math.log10(s.range[1]) for s in suggestions if s.range and s.verdict == verdict]
    rng = (_sig(10 ** min(float(np.median(lows)), min(good))), _sig(10 ** max(float(np.median(highs)), max(good)))) \
        if lows else None
    conf = float(np.median([s.confidence for s in suggestions if s.verdict == verdict]))
    conf *= max(0.0, 1 - std / cfg.confidence.repeats_decades)
    est = {k: _geo_median([s.estimators.get(k) for s in suggestions if s.verdict == verdict])
           for k in ESTIMATORS}
    peers = {k: _geo_median([s.peers.get(k) for s in suggestions]) for k in base.peers}
    lr = _sig(10 ** centre)
    message = base.message
    if verdict == "ok":
        message = (f"suggested LR {_fmt(lr)} (search {_fmt(rng[0])} .. {_fmt(rng[1])}); "
                   f"{len(suggestions)} repeats agree within {spread:.2g}x")
    notes = sorted({v for v in verdicts if v not in (verdict, "ok")} | set(base.notes))
    merged = base.model_copy(update={
        "suggested_lr": lr, "range": rng, "confidence": round(conf, 3),
        "confidence_label": _label(conf, cfg.confidence), "message": message, "notes": notes,
        "estimators": est, "peers": peers})
    return Combined(merged, lrs, spread, std)


def combine_curves(curves: Sequence["Curve"], settings: Optional[LRFindSettings] = None) -> Combined:
    """Repeats read as one: the suggestion read off their mean curve (see :func:`mean_curve`),
    which on the held-out suite varies less from seed to seed than the median of the repeats'
    own answers; each repeat's own answer is kept for the spread. The confidence falls with the
    spread of the mean (the repeats' std over sqrt(n))."""
    cfg = settings or load_settings()
    own = [c.suggest(cfg) for c in curves]
    if len(curves) == 1:
        return Combined(own[0], [own[0].suggested_lr], None, None)
    x, y = mean_curve([(c.lrs, c.losses) for c in curves])
    merged = suggest(x, y, curves[0].iters, any(c.diverged for c in curves), cfg)
    lrs = [s.suggested_lr for s in own]
    good = [math.log10(v) for v in lrs if v]
    if merged.suggested_lr is None and len(good) >= 2:
        # the mean curve is cut at the first repeat that blew up: too short to read; the
        # repeats' own answers still are
        return combine(own, cfg)
    if len(good) < 2 or merged.suggested_lr is None:
        return Combined(merged, lrs, None, None)
    std = float(np.std(good))
    spread = 10 ** (max(good) - min(good))
    sem = std / math.sqrt(len(good))  # how far the mean curve's answer may move with other seeds
    cc = cfg.confidence
    conf = merged.confidence * max(0.0, 1 - sem / cc.repeats_decades)
    message, notes = merged.message, list(merged.notes)
    if sem > cc.seed_sensitive_decades:
        conf = min(conf, cc.labels.medium - 0.01)
        notes.append("seed-sensitive")
        message += (f"; seed-sensitive: the {len(curves)} repeats' own answers spread {spread:.2g}x, so other seeds "
                    f"may move the suggestion by 2x or more (more --repeats, or --method sweep)")
    elif merged.verdict == "ok":
        message += f"; read off the mean of {len(curves)} curves (their own answers spread {spread:.2g}x)"
    merged = merged.model_copy(update={"confidence": round(conf, 3), "confidence_label": _label(conf, cc),
                                       "message": message, "notes": notes})
    return Combined(merged, lrs, spread, std)


def _geo_median(values: Iterable[Optional[float]]) -> Optional[float]:
    logs = [math.log10(v) for v in values if v and v > 0]
    return float(f"{10 ** float(np.median(logs)):.4g}") if logs else None


class LRFindReport(BaseModel):
    """The document `advisor lr-find --json` prints (keys in the module docstring)."""

    schema_version: str = SCHEMA_VERSION
    suggested_lr: Optional[float]
    range: Optional[tuple[float, float]]
    confidence: float
    confidence_label: str
    verdict: str
    message: str
    advice: str
    notes: list[str] = []
    estimators: dict[str, Optional[float]]
    peers: dict[str, Optional[float]]
    curve: dict[str, list[Optional[float]]]
    repeats: dict[str, Any]
    sweep: dict[str, Any]
    optimizer: dict[str, Any]
    batch_size: Optional[int]
    task: str
    device: str
    mixed_precision: Optional[str]
    seed: int
    seconds: float
    uncorrected_lr: Optional[float] = None
    horizon: Optional[dict[str, Any]] = None
    method: str = "range"
    halving: Optional[dict[str, Any]] = None


def read_report(path) -> LRFindReport:
    """Read an `advisor lr-find --json` file back (for `advisor plan --lr-from FILE`)."""
    import json
    from pathlib import Path

    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{file}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{file}: not an advisor lr-find result (expected schema_version {SCHEMA_VERSION})")
    try:
        return LRFindReport.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{file}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None


# --------------------------------------------------------------------------- the range test (torch)

@dataclass
class Curve:
    """What one range test recorded."""

    lrs: list[float]
    losses: list[float]        # raw loss per step (NaN/Inf kept)
    smoothed: list[float]      # bias-corrected EMA
    iters: int                 # planned steps
    start: float
    end: float
    diverged: bool
    stop_reason: str           # "end" | "diverged" | "non-finite"
    seconds: float
    device: str = "cpu"
    mixed_precision: Optional[str] = None

    @property
    def steps(self) -> int:
        return len(self.losses)

    def suggest(self, settings: Optional[LRFindSettings] = None) -> Suggestion:
        return suggest(self.lrs, self.losses, self.iters, self.diverged, settings)


def _rng_state(torch, device=None) -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    # CUDA's generators: saved when CUDA is up or about to be used (reading them starts CUDA)
    if torch.cuda.is_available() and (torch.cuda.is_initialized() or getattr(device, "type", None) == "cuda"):
        state["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        try:
            state["mps"] = mps.get_rng_state()
        except Exception:  # pragma: no cover - platform specific
            pass
    return state


def _set_rng_state(torch, state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device). Torch only once something has
    imported it: a task that trains with torch imports it when it is loaded, before its first
    trial, and a custom objective that never uses torch does not pay its import (a second or more
    per worker process)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)  # also seeds every CUDA device


class _Snapshot:
    """Everything the range test may change, saved before and put back after."""

    def __init__(self, torch, model, optimizer, device=None):
        self.torch = torch
        self.device = next((p.device for p in model.parameters()), None)
        self.tensors = {("p", n): t.detach().clone() for n, t in model.named_parameters()}
        self.tensors.update({("b", n): t.detach().clone() for n, t in model.named_buffers()})
        self.grads = {n: (None if p.grad is None else p.grad.detach().clone())
                      for n, p in model.named_parameters()}
        self.modes = [(m, m.training) for m in model.modules()]
        self.optimizer = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        self.rng = _rng_state(torch, device)

    def restore(self, model, optimizer) -> None:
        torch = self.torch
        current = next((p.device for p in model.parameters()), None)
        if self.device is not None and current != self.device:
            model.to(self.device)
        with torch.no_grad():
            for n, t in model.named_parameters():
                t.copy_(self.tensors[("p", n)])
            for n, t in model.named_buffers():
                saved = self.tensors.get(("b", n))
                if saved is not None:
                    t.copy_(saved)
        for n, p in model.named_parameters():
            p.grad = self.grads[n]
        for module, mode in self.modes:
            module.training = mode
        if optimizer is not None and self.optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
        _set_rng_state(torch, self.rng)


def _move(obj, device, non_blocking: bool):
    if hasattr(obj, "to") and callable(obj.to) and type(obj).__module__.startswith("torch"):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_move(o, device, non_blocking) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(o, device, non_blocking) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device, non_blocking) for k, v in obj.items()}
    return obj


def split_batch(batch, where: str = "train_loader"):
    """(inputs, targets) from a batch, or InputError naming what the loader gave instead."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    kind = type(batch).__name__
    size = f" of length {len(batch)}" if isinstance(batch, (list, tuple, dict)) else ""
    raise InputError(f"{where}: a batch is a {kind}{size}; expected (inputs, targets) pairs")


def forward(model, inputs):
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def cycle(loader, where: str = "train_loader"):
    """Batches of `loader`, starting it again whenever it runs out."""
    passes = 0
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            if passes:  # it gave batches once, then none: a generator or an iterator runs only once
                raise InputError(f"{where}: yielded no batches on its second pass, after a full first one "
                                 f"({type(loader).__name__} can be iterated only once); give a DataLoader, a "
                                 "list, or an object whose __iter__ starts again")
            raise InputError(f"{where}: yielded no batches")
        passes += 1


def make_optimizer(name: str, params, lr: float, momentum: Optional[float] = None,
                   weight_decay: Optional[float] = None):
    """sgd (momentum 0.9), adam, adamw (weight decay 0.01) - defaults as `advisor lr-find`."""
    import torch

    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9 if momentum is None else momentum,
                               weight_decay=weight_decay or 0.0)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01 if weight_decay is None else weight_decay)
    raise InputError(f"--optimizer: unknown optimizer '{name}' (choose from sgd, adam, adamw)")


def _amp_for(torch, device, amp: Optional[bool]):
    """(autocast dtype or None, GradScaler or None): bf16 where the GPU has it, else fp16 + scaler."""
    if device is None or device.type != "cuda" or amp is False:
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def range_test(model, train_loader, loss_fn, *, optimizer=None, optimizer_name: str = "sgd",
               momentum: Optional[float] = None, weight_decay: Optional[float] = None,
               start: Optional[float] = None, end: Optional[float] = None, iters: Optional[int] = None,
               device=None, amp: Optional[bool] = None, seed: Optional[int] = None,
               callback: Optional[Callable[[int, int, float, float], None]] = None,
               settings: Optional[LRFindSettings] = None, read_every: Optional[int] = None) -> Curve:
    """Run the LR range test on `model` and put everything back as it was.

    optimizer: an optimizer over the model's parameters (its state is restored afterwards); if
        None, one is made from optimizer_name / momentum / weight_decay (and thrown away).
    device: where to run (a torch.device or None: where the model is). The model is moved
        there and back. With a user optimizer the model must already be on `device`.
    amp: mixed precision on CUDA (default on: bf16 where supported, else fp16 with loss scaling).
    callback(step, iters, lr, smoothed_loss): called after each step (for a progress bar).
    read_every: read the losses back every N steps (default 1; 8 on CUDA, where each read is a
        device sync). The test may then run up to N-1 steps past its stop; they are not recorded.
    """
    import torch

    cfg = settings or load_settings()
    sw = cfg.sweep
    start = sw.start if start is None else float(start)
    end = sw.end if end is None else float(end)
    iters = sw.iters if iters is None else int(iters)
    if not (start > 0 and end > start):
        raise InputError(f"--start/--end: need 0 < start < end, got {start:g} and {end:g}")
    if iters < 5:
        raise InputError(f"--iters: need at least 5 steps, got {iters}")
    model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = model_device if device is None else torch.device(device)
    if optimizer is not None and device != model_device:
        raise InputError(f"range_test: the optimizer's parameters are on {model_device}, not {device}; "
                         "move the model first or pass no optimizer")
    schedule = lr_schedule(start, end, iters)
    snapshot = _Snapshot(torch, model, optimizer, device)
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    stop_reason = "end"
    began = time.perf_counter()
    amp_dtype = None
    try:
        if seed is not None:
            seed_everything(seed)
        if device != model_device:
            model.to(device)
        model.train()
        opt = optimizer if optimizer is not None else make_optimizer(
            optimizer_name, model.parameters(), start, momentum, weight_decay)
        amp_dtype, scaler = _amp_for(torch, device, amp)
        non_blocking = device.type == "cuda"
        # reading the loss forces a GPU sync: on CUDA read it in blocks of steps, on CPU at once
        check_every = read_every or (8 if device.type == "cuda" else 1)
        batches = cycle(train_loader)
        pending: list[tuple[float, Any]] = []
        state = {"avg": 0.0, "best": math.inf}
        beta, stop_factor = sw.beta, sw.stop_factor
        tensor_type = torch.Tensor

        on_cpu = device.type == "cpu"

        def move(obj):
            if isinstance(obj, tensor_type):
                if on_cpu and not obj.is_cuda:  # the common case, without building device objects
                    return obj
                return obj if obj.device == device else obj.to(device, non_blocking=non_blocking)
            return _move(obj, device, non_blocking)

        def record(lr_i: float, value: float) -> Optional[str]:
            """Append one point; the reason to stop, if any."""
            if not lrs and not math.isfinite(value):
                raise InputError(f"task: the loss is {value} at the first step (lr {lr_i:.1e}), "
                                 "before any real training: check the data and loss_fn")
            lrs.append(lr_i)
            raw.append(value)
            state["avg"] = avg = beta * state["avg"] + (1 - beta) * value
            smooth = avg / (1 - beta ** len(raw))
            smoothed.append(smooth)
            if callback is not None:
                callback(len(raw), iters, lr_i, smooth)
            if not math.isfinite(smooth):
                return "non-finite"
            if smooth > stop_factor * state["best"]:
                return "diverged"
            if smooth < state["best"]:
                state["best"] = smooth
            return None

        lrs_planned = schedule.tolist()
        for step in range(iters):
            lr = lrs_planned[step]
            for group in opt.param_groups:
                group["lr"] = lr
            try:
                batch = next(batches)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"train_loader: fetching batch {step + 1} failed: "
                                 f"{type(exc).__name__}: {exc}") from None
            inputs, targets = split_batch(batch)
            inputs, targets = move(inputs), move(targets)
            try:
                if step == 0:
                    with _recording() as caught:
                        loss = _loss(torch, model, loss_fn, inputs, targets, opt, amp_dtype, device)
                        _check_first_loss(loss, caught)
                else:
                    loss = _loss(torch, model, loss_fn, inputs, targets, opt, amp_dtype, device)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
            except InputError:
                raise
            except torch.cuda.OutOfMemoryError:
                raise InputError(f"{device}: out of memory at step {step + 1}; lower --batch-size") from None
            except Exception as exc:
                what = "the first training step" if step == 0 else f"training step {step + 1}"
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise InputError(f"task: {what} failed (check the loader's shapes and loss_fn): "
                                 f"{type(exc).__name__}: {msg}") from None
            if check_every == 1:
                reason = record(lr, loss.item())
            else:
                pending.append((lr, loss.detach()))
                reason = None
                if len(pending) >= check_every or step == 0 or step == iters - 1:
                    values = torch.stack([t.float() for _, t in pending]).cpu().tolist()
                    for (lr_i, _), value in zip(pending, values):
                        reason = record(lr_i, value)
                        if reason:
                            break
                    pending.clear()
            if reason:
                stop_reason = reason
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        snapshot.restore(model, optimizer)
    seconds = time.perf_counter() - began
    return Curve(lrs=lrs, losses=raw, smoothed=smoothed, iters=iters, start=start, end=end,
                 diverged=stop_reason != "end", stop_reason=stop_reason, seconds=seconds,
                 device=str(device), mixed_precision={None: None, "torch.bfloat16": "bf16",
                                                      "torch.float16": "fp16"}[str(amp_dtype) if amp_dtype else None])


def _loss(torch, model, loss_fn, inputs, targets, opt, amp_dtype, device):
    opt.zero_grad(set_to_none=True)
    if amp_dtype is not None:
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            return loss_fn(forward(model, inputs), targets)
    return loss_fn(forward(model, inputs), targets)


@contextlib.contextmanager
def _recording():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _check_first_loss(loss, caught) -> None:
    """The first step's loss must be a scalar, and the loss must not have broadcast the targets."""
    import torch

    for w in caught or ():
        text = str(w.message)
        if "target size" in text.lower() or "broadcast" in text.lower():
            raise InputError(f"task: loss_fn broadcast the targets against the outputs ({text.strip()}); "
                             "make the loader's targets the model's output shape")
    if not isinstance(loss, torch.Tensor):
        raise InputError(f"task: loss_fn returned a {type(loss).__name__}, not a tensor")
    if loss.numel() != 1:
        raise InputError(f"task: loss_fn returned a tensor of shape {tuple(loss.shape)}, not a scalar "
                         "(reduce it, e.g. with reduction='mean')")
    if not loss.requires_grad:
        raise InputError("task: the loss does not depend on the model's parameters (no gradient)")
