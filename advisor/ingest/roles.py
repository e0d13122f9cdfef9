"""Which column plays which role, found by name (the names real training loggers use)."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from advisor.errors import InputError

ROLES = ("epoch", "step", "train_loss", "val_loss", "train_metric", "val_metric", "lr", "grad_norm")

_VAL = r"(?:val|valid|validation|eval|dev)"
_HELD_OUT = r"(?:val|valid|validation|eval|dev|test)"  # a test split only when no validation one
_TRAIN = r"(?:train|training|trn|tr)"

# Patterns over normalized names (lower case, separators turned into '_'), best first.
_PATTERNS: dict[str, list[str]] = {
    "epoch": [r"epoch", r"epochs", r"ep", r"trainer_epoch"],
    "step": [r"step", r"global_step", r"trainer_global_step", r"iteration", r"iter", r"_step",
             r"steps", r"it"],
    "train_loss": [rf"{_TRAIN}_loss_epoch", r"loss", rf"{_TRAIN}_loss", rf"{_TRAIN}_total_loss",
                   r"total_loss", rf"{_TRAIN}_loss_total", rf"{_TRAIN}_loss_step", r"loss_step",
                   rf"{_TRAIN}_[a-z0-9_]*loss", r"objective", r"cost", rf"{_TRAIN}_(?:objective|cost)",
                   # any other loss that is not a held-out one: data_loss, mean_loss, loss_kpt
                   rf"(?!{_HELD_OUT}_)[a-z0-9_.]*_loss(?:_epoch)?", rf"loss_(?!{_HELD_OUT}$)[a-z0-9_.]+"],
    "val_loss": [rf"{_VAL}_loss", rf"{_VAL}_loss_epoch", rf"{_VAL}_total_loss",
                 rf"{_VAL}_loss_total", rf"loss_{_VAL}", rf"{_VAL}_[a-z0-9_]*loss",
                 rf"{_VAL}_(?:objective|cost)", rf"{_HELD_OUT}_loss(?:_epoch)?", rf"{_HELD_OUT}_[a-z0-9_]*loss"],
    "train_metric": [rf"{_TRAIN}_acc(?:uracy)?(?:_epoch)?", r"acc(?:uracy)?", r"train_acc_step",
                     rf"acc(?:uracy)?_{_TRAIN}",  # TensorBoard tags 'Accuracy/train'
                     # reinforcement learning and GRPO/PPO fine-tuning: the reward is the signal
                     r"reward", r"rewards?_mean", r"mean_reward", r"(?:rollout_)?ep_rew_mean"],
    "val_metric": [rf"{_VAL}_acc(?:uracy)?(?:_epoch)?", rf"{_VAL}_accuracy_top_?1",
                   r"metrics_map(?:50_95|_0.5_0.95)(?:_b)?", rf"{_VAL}_(?:bbox_)?map", r"metrics_accuracy_top1",
                   # detection and pose evaluations: detectron2 'bbox/AP', mmengine 'coco/AP'
                   r"(?:bbox|segm|keypoints)_ap", rf"{_VAL}_(?:[a-z]+_)*m?ap",
                   rf"{_VAL}_(?:f1|auc|auroc|map|iou|miou|r2|score|top1|precision|recall)[a-z0-9_]*",
                   rf"{_VAL}_(?!.*loss|runtime|samples|steps|time)[a-z0-9_.]+",
                   rf"{_HELD_OUT}_acc(?:uracy)?(?:_epoch)?",
                   rf"{_HELD_OUT}_(?!.*loss|runtime|samples|steps|time)[a-z0-9_.]+",
                   r"metrics_(?!.*loss)[a-z0-9_.]+",
                   # the split after the name: 'Accuracy/val' (TensorBoard tags), 'MAE_val'
                   rf"(?!.*loss)[a-z0-9_.]+_{_VAL}", rf"(?!.*loss)[a-z0-9_.]+_{_HELD_OUT}"],
    "lr": [r"lr", r"learning_rate", r"lr_pg0", r"lr_[a-z0-9_]+", r"learning_rate_[a-z0-9_]+"],
    "grad_norm": [r"grad_norm", r"gradient_norm", r"grad_norm_total", r"grad_norm_[a-z0-9_.]*total",
                  rf"{_TRAIN}_grad_norm", r"[a-z0-9_]*grad_norm[a-z0-9_]*"],
}
_COMPILED = {role: [re.compile(f"^{p}$") for p in pats] for role, pats in _PATTERNS.items()}

# Columns that are a row's position or a time stamp, never a curve (pandas' unnamed index, W&B's Step).
_NOT_A_SERIES = re.compile(r"^(?:|unnamed_\d+|index|time|timestamp|_timestamp|wall_time|wall_sec|"
                           r"created_at|date|datetime|runtime|_runtime|relative_time)$")
# Metrics that loggers write in percent (detectron2, mmdetection, mmpretrain) on a 0-1 scale here.
_FRACTION_LIKE = re.compile(r"(acc|accuracy|map|ap|precision|recall|f1|iou|top)")


def normalize(name: str) -> str:
    name = re.sub(r"(?<=[a-z]{2})(?=[A-Z][a-z])", "_", name.strip())  # 'ValLoss' -> 'Val_Loss'
    name = re.sub(r"\(([a-z])\)$", r"_\1", name.lower())  # 'mAP50-95(B)' -> 'map50_95_b'
    name = re.sub(r"^epoch/(?=.)", "", name)  # W&B's Keras callback: 'epoch/val_loss'
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
    # No loss by name, but a lower-is-better metric logged on the training split and on a held-out
    # one (CatBoost writes its objective as learn/RMSE and test/RMSE): that pair is the loss.
    if not {"train_loss", "val_loss"} & set(roles):
        pair = _objective_pair(columns, normalized, set(overrides.values()))
        if pair:
            roles = {r: c for r, c in roles.items() if c not in pair}
            roles["train_loss"], roles["val_loss"] = pair
    # A log of one unnamed series (pd.Series.to_csv writes the header '0') is a loss curve.
    if not {"train_loss", "val_loss", "train_metric", "val_metric"} & set(roles):
        rest = [c for c in columns if c not in taken and not _NOT_A_SERIES.match(normalized[c])]
        if len(rest) == 1:
            roles["train_loss"] = rest[0]
    return roles


_SPLIT_OF = re.compile(rf"^(?P<split>{_TRAIN}|learn|{_HELD_OUT})_(?P<metric>[a-z][a-z0-9_.]*)$")


def _objective_pair(columns: list[str], normalized: dict[str, str], taken: set[str]) -> tuple[str, str] | None:
    """(training column, held-out column) of one lower-is-better metric, e.g. learn/RMSE, test/RMSE."""
    train: dict[str, str] = {}
    held: dict[str, str] = {}
    for c in columns:
        m = _SPLIT_OF.match(normalized[c])
        if m is None or c in taken:
            continue
        side = held if re.fullmatch(_HELD_OUT, m["split"]) else train
        side.setdefault(m["metric"], c)
    for metric, col in train.items():
        if metric in held and not higher_is_better(metric):
            return col, held[metric]
    return None


def is_series(name: str) -> bool:
    """Not an index, a time stamp, an epoch or a step: a column that can be a curve."""
    norm = normalize(name)
    return not (_NOT_A_SERIES.match(norm) or any(p.match(norm) for r in ("epoch", "step")
                                                 for p in _COMPILED[r]))


_HELD_OUT_NAME = re.compile(rf"^{_HELD_OUT}(?:_|$)")


@lru_cache(maxsize=4096)  # called per printed line: the names repeat
def is_loss(name: str) -> bool:
    """A loss by its name (any split): what makes a printed line a point on a training curve."""
    norm = normalize(name)
    return "loss" in norm or any(p.match(norm) for r in ("train_loss", "val_loss") for p in _COMPILED[r])


@lru_cache(maxsize=4096)  # called per printed line: the names repeat
def is_held_out(name: str) -> bool:
    """A value of a held-out split: 'val_loss', 'Val Acc', 'eval_f1', 'test_loss'."""
    return bool(_HELD_OUT_NAME.match(normalize(name)))


@lru_cache(maxsize=4096)  # called per printed line: the names repeat
def is_counter(name: str) -> bool:
    """A step or iteration counter ('step', 'global_step', 'iter')."""
    norm = normalize(name)
    return any(p.match(norm) for p in _COMPILED["step"])


def step_column_for(train_col: str, columns: list[str]) -> str | None:
    """Lightning logs 'x_step' beside 'x_epoch': the per-step twin of an epoch-level column."""
    if train_col.endswith("_epoch"):
        twin = train_col[: -len("_epoch")] + "_step"
        if twin in columns:
            return twin
    return None


def higher_is_better(metric: str) -> bool:
    words = re.split(r"[^a-z]+", normalize(metric))
    return not any(_lower_is_better().match(w) for w in words if w)


def is_fraction_like(metric: str) -> bool:
    return bool(_FRACTION_LIKE.search(normalize(metric)))


@lru_cache(maxsize=None)
def _lower_is_better() -> re.Pattern:
    """rules/tables/metric_direction.yaml as one pattern. Importing PyYAML costs ~45 ms, a fifth
    of what diagnose may spend beyond pandas, so the table is kept as JSON in ~/.cache/advisor
    between runs, keyed by the file's size and time."""
    from advisor.engine.loader import read_yaml, rules_dir

    table = rules_dir() / "tables" / "metric_direction.yaml"
    stat = table.stat()
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    cache = Path(root) / "advisor" / f"metric_direction-{stat.st_size}-{stat.st_mtime_ns}.json"
    try:
        words = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        words = [str(w) for w in read_yaml(table)["lower_is_better"]]
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob("metric_direction-*.json"):
                old.unlink(missing_ok=True)
            cache.write_text(json.dumps(words), encoding="utf-8")
        except OSError:  # a read-only home: just no cache
            pass
    return re.compile("^(?:" + "|".join(words) + ")$")
