"""Annotated curves (--plot): losses, metric and LR with the findings marked where they happen."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from advisor.advice.diagnosis import RunDiagnosis
from advisor.errors import InputError
from advisor.facts.curves import epoch_spikes, spike_mask, spike_settings
from advisor.ingest import RunLog


def plot(runs: list[RunLog], results: list[RunDiagnosis], analysis: dict[str, float], out: BinaryIO) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'advisor[plot]'") from None
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 4 * len(runs)), squeeze=False)
    for (ax_loss, ax_metric), run, res in zip(axes, runs, results):
        _draw(ax_loss, ax_metric, run, res, analysis)
    fig.tight_layout()
    try:  # `out` is the open file of write_output, which names the path if writing fails
        fig.savefig(out, dpi=110, format="png")
    finally:
        plt.close(fig)


def _draw(ax, ax_metric, run: RunLog, res: RunDiagnosis, analysis: dict[str, float]) -> None:
    epochs = run.epochs.index.to_numpy(dtype=float)
    facts = res.facts
    if run.steps is not None and "train_loss" in run.steps:
        x = np.linspace(epochs[0] - 1 if len(epochs) else 0, epochs[-1] if len(epochs) else 1, run.n_steps)
        y = run.steps["train_loss"]
        ax.plot(x, y, color="tab:blue", alpha=0.25, lw=0.6, label="train loss (steps)")
        initial = facts.get("loss_initial") or float(np.nanmedian(y[:10]))
        spikes = spike_mask(y, **spike_settings(analysis, initial, per_step=True))
        if spikes.any():
            ax.scatter(x[spikes], y[spikes], color="red", s=12, zorder=3, label=f"spikes ({spikes.sum()})")
    for role, color in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        if role in run.epochs:
            ax.plot(epochs, run.epochs[role].to_numpy(dtype=float), color=color, lw=1.8,
                    label=role.replace("_", " "))
    if facts.get("nonfinite_epoch") is not None:
        ax.axvline(facts["nonfinite_epoch"], color="red", lw=1.5, ls="-", label="loss non-finite")
    if facts.get("best_val_epoch") is not None and "val_loss" in run.epochs:
        overfit = any(f.label == "overfitting" for f in res.diagnoses)
        ax.axvline(facts["best_val_epoch"], color="green", ls="--",
                   label="best epoch / overfitting onset" if overfit else "best val epoch")
    _shade(ax, epochs, run, res, analysis)
    finite = run.epochs[[c for c in ("train_loss", "val_loss") if c in run.epochs]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 50:
        ax.set_yscale("log")
    labels = ", ".join(dict.fromkeys(f.label for f in res.diagnoses if f.label)) or "no diagnosis"
    part = f" [{run.name.rsplit(' [', 1)[1]}" if run.part is not None else ""
    ax.set_title(f"{Path(run.path).parent.name}/{Path(run.path).name}{part}: {labels}", fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if "val_metric" in run.epochs:
        ax_metric.plot(epochs, run.epochs["val_metric"], color="tab:green", label=f"validation {run.metric}")
    if "train_metric" in run.epochs:
        ax_metric.plot(epochs, run.epochs["train_metric"], color="tab:olive", label="train metric")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("metric")
    if "lr" in run.epochs:
        ax_lr = ax_metric.twinx()
        ax_lr.plot(epochs, run.epochs["lr"], color="gray", ls=":", label="lr")
        ax_lr.set_ylabel("learning rate")
        ax_lr.legend(loc="lower right", fontsize=8)
    if ax_metric.lines:
        ax_metric.legend(loc="upper left", fontsize=8)
    else:
        ax_metric.text(0.5, 0.5, "no metric or learning rate logged", ha="center", va="center",
                       transform=ax_metric.transAxes, color="gray")
    ax_metric.set_title("metric and learning rate", fontsize=10)


_COLORS = {"diverged": "red", "unstable": "orange", "overfitting": "purple", "underfitting": "brown",
           "not_learning": "gray", "slow_convergence": "tab:cyan", "plateau": "khaki"}


def _regions(epochs: np.ndarray, run: RunLog, res: RunDiagnosis,
             analysis: dict[str, float]) -> list[tuple[float, float, str]]:
    """Where each diagnosis shows on the curve: the epochs behind it, from the run's facts."""
    if not len(epochs):
        return []
    facts, first, last = res.facts, float(epochs[0]), float(epochs[-1])
    tail = float(epochs[max(0, len(epochs) - 1 - int(np.ceil(analysis["end_fraction"] * len(epochs))))])
    regions: list[tuple[float, float, str]] = []
    for label in dict.fromkeys(f.label for f in res.diagnoses if f.label):
        if label == "diverged":
            start = facts.get("nonfinite_epoch")
            if start is None and "train_loss" in run.epochs:
                start = float(epochs[int(np.nanargmax(run.epochs["train_loss"].to_numpy(dtype=float)))])
            regions.append((float(start if start is not None else first), last, label))
        elif label == "overfitting":
            regions.append((float(facts.get("best_val_epoch", tail)), last, label))
        elif label in ("plateau", "slow_convergence"):
            regions.append((tail, last, label))
        elif label in ("underfitting", "not_learning"):
            regions.append((first, last, label))
        elif label == "unstable":
            for role in ("train_loss", "val_loss"):
                if role in run.epochs:
                    y = run.epochs[role].to_numpy(dtype=float)
                    ok = np.isfinite(y)
                    spikes = epoch_spikes(y[ok], analysis["epoch_spike_ratio"], analysis["min_jump_of_range"])
                    for e in epochs[ok][1:-1][spikes]:
                        regions.append((float(e) - 0.5, float(e) + 0.5, label))
            if any(f.code == "D204" for f in res.diagnoses) and "train_loss" in run.epochs:
                low = np.nanargmin(run.epochs["train_loss"].to_numpy(dtype=float))
                regions.append((float(epochs[low]), last, label))  # the climb from the best
            if not any(r[2] == label for r in regions):  # swings or a blow-up: the whole run
                regions.append((first, last, label))
    return regions


def _shade(ax, epochs: np.ndarray, run: RunLog, res: RunDiagnosis, analysis: dict[str, float]) -> None:
    """Shade the region behind each finding, its label written once at the top of the first."""
    named: set[str] = set()
    for x0, x1, label in _regions(epochs, run, res, analysis):
        ax.axvspan(x0, x1, color=_COLORS.get(label, "gray"), alpha=0.12, lw=0)
        if label not in named:
            named.add(label)
            ax.text(x0, 0.98, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                    color=_COLORS.get(label, "gray"))
