"""The typed fact catalogue: every name a rule condition may use, with unit and definition."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

FactType = Literal["int", "float", "bool", "str"]


class FactSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FactType
    unit: str = ""
    definition: str
    # run: measured on the curves; context: given by the user; derived: concluded by rules;
    # threshold: a number of the knowledge itself (rules compare facts with it)
    source: Literal["run", "context", "derived", "threshold"] = "run"
    values: list[str] | None = None  # allowed values of a str fact


class Threshold(BaseModel):
    """A judgement's number, named so that rules share it and calibration can fit it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float             # as shipped: fitted on the corpus when there is a grid
    prior: float | None = None  # the rubric's or the guide's value, where every fit starts
    grid: list[float] = []   # the values calibration may choose from (bench/bench_corpus.py)
    unit: str = ""
    definition: str


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Parameters of the curve analysis (window sizes, robust z-scores), not judgements.
    analysis: dict[str, float] = {}
    facts: dict[str, FactSpec]
    # Named numbers the rules compare facts with; each is also a fact of source "threshold".
    thresholds: dict[str, Threshold] = {}
    # The fixed vocabulary of diagnosis labels this family may conclude.
    labels: list[str] = []

    def model_post_init(self, _context: Any) -> None:
        for name, t in self.thresholds.items():
            if name in self.facts:
                raise ValueError(f"threshold '{name}' is also a fact")
            self.facts[name] = FactSpec(type="float", unit=t.unit, definition=t.definition,
                                        source="threshold")

    def threshold_values(self, prior: bool = False) -> dict[str, float]:
        """The shipped values, or the priors a fit starts from (the value where none is given)."""
        return {name: (t.prior if prior and t.prior is not None else t.value)
                for name, t in self.thresholds.items()}

    def initial_facts(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every catalogued name bound: given values, the thresholds' values, False for derived
        flags, None (unknown) else. A given threshold overrides the file's (calibration)."""
        facts: dict[str, Any] = {}
        for name, spec in self.facts.items():
            if name in given:
                facts[name] = given[name]
            elif spec.source == "threshold":
                facts[name] = self.thresholds[name].value
            else:
                facts[name] = False if spec.source == "derived" and spec.type == "bool" else None
        return facts
