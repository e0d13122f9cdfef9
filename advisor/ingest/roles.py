"""Which column plays which role, found by name (the names real training loggers use)."""

from __future__ import annotations

import re

from advisor.errors import InputError

ROLES = ("epoch", "step", "train_loss", "val_loss", "train_metric", "val_metric", "lr", "grad_norm")

_VAL = r"(?:val|valid|validation|eval|dev|test)"
_TRAIN = r"(?:train|training|tr)"

# Patterns over normalized names (lower case, separators turned into '_'), best first.
_PATTERNS: dict[str, list[str]] = {
    "epoch": [r"epoch", r"epochs", r"ep", r"trainer_epoch"],
    "step": [r"step", r"global_step", r"trainer_global_step", r"iteration", r"iter", r"_step",
             r"steps", r"it"],
    "train_loss": [rf"{_TRAIN}_loss_epoch", r"loss", rf"{_TRAIN}_loss", rf"{_TRAIN}_total_loss",
                   r"total_loss", rf"{_TRAIN}_loss_total", rf"{_TRAIN}_loss_step", r"loss_step",
                   rf"{_TRAIN}_[a-z0-9_]*loss"],
    "val_loss": [rf"{_VAL}_loss", rf"{_VAL}_loss_epoch", rf"{_VAL}_total_loss",
                 rf"{_VAL}_loss_total", rf"{_VAL}_[a-z0-9_]*loss"],
    "train_metric": [rf"{_TRAIN}_acc(?:uracy)?(?:_epoch)?", r"acc(?:uracy)?", r"train_acc_step"],
    "val_metric": [rf"{_VAL}_acc(?:uracy)?(?:_epoch)?", rf"{_VAL}_accuracy_top_?1",
                   r"metrics_map50_95(?:_b)?", rf"{_VAL}_(?:bbox_)?map", r"metrics_accuracy_top1",
                   rf"{_VAL}_(?:f1|auc|auroc|map|iou|miou|r2|score|top1|precision|recall)[a-z0-9_]*",
                   rf"{_VAL}_(?!loss|runtime|samples|steps|time)[a-z0-9_]+",
                   r"metrics_(?!.*loss)[a-z0-9_]+"],
    "lr": [r"lr", r"learning_rate", r"lr_pg0", r"lr_[a-z0-9_]+", r"learning_rate_[a-z0-9_]+"],
    "grad_norm": [r"grad_norm", r"gradient_norm", r"grad_norm_total", r"grad_norm_[a-z0-9_.]*total",
                  rf"{_TRAIN}_grad_norm", r"[a-z0-9_]*grad_norm[a-z0-9_]*"],
}
_COMPILED = {role: [re.compile(f"^{p}$") for p in pats] for role, pats in _PATTERNS.items()}

# Metric names where lower is better; everything else logged as a metric is taken as higher-better.
_LOWER_BETTER = re.compile(r"(err|error|mae|mse|rmse|ppl|perplexity|wer|cer|loss|distance)")
# Metrics that loggers write in percent (detectron2, mmdetection, mmpretrain) on a 0-1 scale here.
_FRACTION_LIKE = re.compile(r"(acc|accuracy|map|ap|precision|recall|f1|iou|top)")


def normalize(name: str) -> str:
    name = re.sub(r"\(([a-z])\)$", r"_\1", name.strip().lower())  # 'mAP50-95(B)' -> 'map50_95_b'
    return re.sub(r"[^a-z0-9_.]+", "_", name).strip("_") if name != "_step" else name


def find_roles(columns: list[str], overrides: dict[str, str], path: str) -> dict[str, str]:
    """role -> column. Overrides win; each column plays at most one role."""
    for role, col in overrides.items():
        if role not in ROLES:
            raise InputError(f"--map {role}={col}: unknown role '{role}' (roles: {', '.join(ROLES)})")
        if col not in columns:
            raise InputError(f"{path}: --map {role}={col}: no column '{col}' "
                             f"(columns: {', '.join(columns[:20])})")
    roles = dict(overrides)
    taken = set(overrides.values())
    normalized = {c: normalize(c) for c in columns}
    for role in ROLES:
        if role in roles:
            continue
        for pattern in _COMPILED[role]:
            match = next((c for c in columns if c not in taken and pattern.match(normalized[c])), None)
            if match is not None:
                roles[role] = match
                taken.add(match)
                break
    return roles


def step_column_for(train_col: str, columns: list[str]) -> str | None:
    """Lightning logs 'x_step' beside 'x_epoch': the per-step twin of an epoch-level column."""
    if train_col.endswith("_epoch"):
        twin = train_col[: -len("_epoch")] + "_step"
        if twin in columns:
            return twin
    return None


def higher_is_better(metric: str) -> bool:
    return not _LOWER_BETTER.search(normalize(metric))


def is_fraction_like(metric: str) -> bool:
    return bool(_FRACTION_LIKE.search(normalize(metric)))
