"""advisor's search-space format: what `plan --emit yaml` writes and `check` / `search` read.

    advisor_space: 1
    name: resnet-lr                  # optional
    direction: maximize              # or minimize
    metric: val_accuracy             # what the objective returns
    strategy: random                 # manual | grid | random | bayesian
    trials: 100                      # configurations to try (the search budget)
    epochs: 30                       # epochs per trial, when known
    seeds_final: 3                   # seeds for the final top-k validation
    top_k: 5
    pruner: {type: median, n_startup_trials: 5, n_warmup_steps: 6}   # or {type: none}
    baseline: {learning_rate: 0.001, batch_size: 64}                # enqueued first
    fixed: {optimizer: adamw}                                       # not searched
    params:
      learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
      weight_decay:  {type: float, low: 1.0e-6, high: 1.0e-2, log: true, zero: true}
      dropout:       {type: float, low: 0.0, high: 0.5}
      batch_size:    {type: categorical, choices: [32, 64, 128, 256]}
      depth:         {type: int, low: 2, high: 8}

A range per value of another parameter (when the optimizer itself is searched):

      optimizer:     {type: categorical, choices: [sgd, adamw]}
      learning_rate: {type: float, log: true, by: optimizer,
                      ranges: {sgd: [0.001, 0.5], adamw: [1.0e-5, 1.0e-2]}}

`zero: true` on a log-scaled parameter adds exactly 0 as a separate choice (a log range cannot
reach 0). For `strategy: grid` every parameter lists its grid points as `choices`.
Unknown keys are kept in `extra` and written back, so a round trip loses nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STRATEGIES = ("manual", "grid", "random", "bayesian")


class Param(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    zero: bool = False
    choices: list[Any] | None = None
    by: str | None = None                        # conditional ranges, keyed by this parameter's value
    ranges: dict[str, list[float]] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Param":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        elif self.by is not None:
            if not self.ranges or any(len(r) != 2 for r in self.ranges.values()):
                raise ValueError("'by' needs 'ranges': {value: [low, high], ...}")
        elif self.choices is None and (self.low is None or self.high is None):
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high' (or 'choices')")
        return self

    def bounds(self) -> list[tuple[str | None, float, float]]:
        """(condition value, low, high) for each range this parameter has."""
        if self.by is not None and self.ranges:
            return [(key, float(lo), float(hi)) for key, (lo, hi) in self.ranges.items()]
        if self.low is not None and self.high is not None:
            return [(None, float(self.low), float(self.high))]
        return []


class Pruner(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["none", "median", "hyperband", "patient", "successive_halving"] = "median"
    n_startup_trials: int | None = None
    n_warmup_steps: int | None = None
    patience: int | None = None


class Space(BaseModel):
    model_config = ConfigDict(extra="allow")

    advisor_space: int = 1
    name: str | None = None
    direction: Literal["minimize", "maximize"] = "maximize"
    metric: str = "val_metric"
    strategy: Literal["manual", "grid", "random", "bayesian"] = "random"
    trials: int | None = Field(default=None, ge=1)
    epochs: int | None = Field(default=None, ge=1)
    seeds_final: int = Field(default=3, ge=1)
    seeds: int = Field(default=1, ge=1)          # seeds per configuration while exploring
    top_k: int = Field(default=5, ge=0)
    pruner: Pruner = Pruner(type="none")
    baseline: dict[str, Any] | None = None
    fixed: dict[str, Any] = {}
    params: dict[str, Param]

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=False)
