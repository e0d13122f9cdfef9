"""TensorBoard event files: a run folder (one or more event files, in sub-folders too) or one file.

Read with TensorBoard's own event-file loader (the optional extra `advisor[tensorboard]`),
imported here only, when a TensorBoard log is read. Scalars only: graphs, histograms, images,
text and hyperparameter records are left out, and so is Lightning's `hp_metric` placeholder.

- Several event files of one run are merged by step, in file-name order (the time stamp in the
  names), as TensorBoard does: a step logged again after a restart replaces what the earlier
  run logged from that step on (a tag whose step goes back drops its points from there).
- The folder names the split: Keras writes `train/` and `validation/`, CatBoost `learn/` and
  `test/`, each with the same tags (`epoch_loss`, `RMSE`): a tag is named with its folder
  ('validation/epoch_loss'). Other sub-folders (`version_0/`, `run_2/`) are runs of their own,
  side by side.
- The step axis is the writer's: an optimizer step (Lightning, Hugging Face), an epoch (Keras),
  an iteration (CatBoost), an environment step (Stable-Baselines3); Lightning's `epoch` tag is
  a column like any other, and maps steps to epochs.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import numpy as np

from advisor.errors import InputError

SPLIT_FOLDERS = {"train": "train", "training": "train", "learn": "train",
                 "validation": "val", "val": "val", "valid": "val", "eval": "val", "evaluation": "val",
                 "test": "test"}
_SKIPPED_TAGS = {"hp_metric"}  # Lightning's hparams placeholder (-1), no curve
_EXTRA = "pip install 'advisor[tensorboard]'"


def is_event_file(path: Path) -> bool:
    return "tfevents" in path.name


def event_files(path: Path) -> list[Path]:
    """The event files of a run folder (in its sub-folders too), or the file itself."""
    if path.is_dir():
        return sorted((p for p in path.rglob("*tfevents*") if p.is_file()), key=lambda p: (p.parent, p.name))
    return [path]


def _loader():
    try:
        # the loader without the migration of old values to tensors: 4x faster, and both kinds
        # (simple_value from torch and tensorboardX, tensors from TF2/Keras) are read below
        from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        return None
    return LegacyEventFileLoader, tensor_util


def _scalar(value, tensor_util) -> float | None:
    """A summary value as a float, or None when it is not a scalar (an image, a histogram)."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor":
        return None
    t = value.tensor
    if t.float_val and len(t.float_val) == 1:
        return float(t.float_val[0])
    if t.double_val and len(t.double_val) == 1:
        return float(t.double_val[0])
    if t.dtype in (0, 7) or t.string_val:  # DT_INVALID, DT_STRING
        return None
    try:
        array = tensor_util.make_ndarray(t)
    except Exception:  # noqa: BLE001 - a tensor the loader cannot decode is not a scalar
        return None
    if array.size != 1 or array.dtype.kind not in "fiub":
        return None
    return float(array.reshape(-1)[0])


class _Series:
    """One tag's points in write order; a step that goes back drops the points from it on."""

    __slots__ = ("steps", "values", "last")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []
        self.last = -math.inf

    def add(self, step: int, value: float) -> None:
        if step <= self.last:
            if step == self.last:  # the same step written again: the later value
                self.values[-1] = value
                return
            keep = bisect.bisect_left(self.steps, step)  # a restart: what it logs again replaces
            del self.steps[keep:], self.values[keep:]
        self.steps.append(step)
        self.values.append(value)
        self.last = step


def _place(path: Path, root: Path) -> tuple[str, str | None]:
    """(run, split folder) of an event file: 'exp1/validation/events...' is run 'exp1', 'validation'."""
    parts = path.parent.relative_to(root).parts if path.parent != root and root.is_dir() else ()
    if parts and parts[-1].lower() in SPLIT_FOLDERS:
        return "/".join(parts[:-1]), parts[-1]
    return "/".join(parts), None


def read_events(path: Path):
    """The scalars of a TensorBoard run as a raw table: a `step` column, one column per tag."""
    from advisor.ingest.readers import RawLog

    files = event_files(path)
    if not files:
        raise InputError(f"{path}: no TensorBoard event files (events.out.tfevents.*) in the folder")
    loaded = _loader()
    if loaded is None:
        raise InputError(f"{path}: reading TensorBoard event files needs the tensorboard package: {_EXTRA}")
    Loader, tensor_util = loaded
    series: dict[tuple[str, str], _Series] = {}  # (run, column) -> points
    plugins: dict[str, str] = {}  # tag -> plugin, from the first value that names it
    root = path if path.is_dir() else path.parent
    for file in files:
        run, split = _place(file, root)
        try:
            for event in Loader(str(file)).Load():
                if not event.HasField("summary"):
                    continue
                for value in event.summary.value:
                    tag = value.tag
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin:
                        plugins[tag] = plugin
                    if plugins.get(tag, "scalars") != "scalars" or tag in _SKIPPED_TAGS:
                        continue
                    number = _scalar(value, tensor_util)
                    if number is None:
                        continue
                    column = f"{split}/{tag}" if split else tag
                    series.setdefault((run, column), _Series()).add(int(event.step), number)
        except Exception as exc:  # noqa: BLE001 - a damaged file is named in one line
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{file}: not a readable TensorBoard event file ({type(exc).__name__}: {exc})") from None
    if not series:
        raise InputError(f"{path}: no scalars in the TensorBoard event files")
    steps = np.unique(np.concatenate([np.asarray(s.steps, dtype=np.int64) for s in series.values()]))
    runs = list(dict.fromkeys(run for run, _ in series))
    several = len(runs) > 1
    columns: dict[str, np.ndarray] = {"step": steps.astype(float)}
    explicit: dict[str, np.ndarray] = {}
    groups = [] if several else None
    for run in runs:
        names = {"step": "step"}
        for (r, column), s in series.items():
            if r != run:
                continue
            name = f"{run}/{column}" if several else column
            values = np.full(len(steps), np.nan)
            logged = np.asarray(s.values, dtype=float)
            values[np.searchsorted(steps, np.asarray(s.steps, dtype=np.int64))] = logged
            columns[name] = values
            if np.isnan(logged).any():
                mask = np.zeros(len(steps), dtype=bool)
                mask[np.searchsorted(steps, np.asarray(s.steps, dtype=np.int64))] = np.isnan(logged)
                explicit[name] = mask
            names[name] = column
        if several:
            groups.append((run or ".", names))
    return RawLog("tensorboard", columns, len(steps), explicit, records=True, groups=groups, first_row=0)
