"""The one tidy shape every log becomes, whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class RunLog:
    path: str
    format: str
    # One row per epoch (index: epoch number as logged), columns among train_loss, val_loss,
    # train_metric, val_metric, lr, grad_norm. A logged NaN/inf stays non-finite here.
    epochs: pd.DataFrame
    # Per-step values when the log has them (arrays among step, train_loss, lr, grad_norm).
    steps: dict[str, np.ndarray] | None
    columns: dict[str, str] = field(default_factory=dict)  # role -> column in the source
    metric: str | None = None
    higher_is_better: bool | None = None
    metric_scale: float = 1.0  # 0.01 when a percent metric was brought to 0-1
    # A file can hold several runs (appended: the epoch counter restarts; or side by side): this
    # is run `part` (0-based) of `parts`; part is None when the file holds one run. `path` stays
    # the file; `part_name` is the run's name where the file gives one (a W&B run, a key prefix).
    part: int | None = None
    parts: int = 1
    part_name: str | None = None

    @property
    def name(self) -> str:
        """What reports call the run: its file, and which run in it where the file holds several."""
        if self.part is None:
            return self.path
        return f"{self.path} [{self.part_name or f'run {self.part + 1} of {self.parts}'}]"

    def series(self, role: str) -> np.ndarray | None:
        if role not in self.epochs.columns:
            return None
        return self.epochs[role].to_numpy(dtype=float)

    @property
    def n_steps(self) -> int:
        return 0 if self.steps is None else len(self.steps["train_loss"])

    def step_series(self, role: str) -> np.ndarray | None:
        if self.steps is None or role not in self.steps:
            return None
        return self.steps[role]
