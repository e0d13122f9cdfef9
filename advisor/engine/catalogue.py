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
    # run: measured on the curves; context: given by the user; derived: concluded by rules
    source: Literal["run", "context", "derived"] = "run"
    values: list[str] | None = None  # allowed values of a str fact


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Parameters of the curve analysis (window sizes, robust z-scores), not judgements.
    analysis: dict[str, float] = {}
    facts: dict[str, FactSpec]
    # The fixed vocabulary of diagnosis labels this family may conclude.
    labels: list[str] = []

    def initial_facts(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every catalogued name bound: given values, False for derived flags, None (unknown) else."""
        facts: dict[str, Any] = {}
        for name, spec in self.facts.items():
            if name in given:
                facts[name] = given[name]
            else:
                facts[name] = False if spec.source == "derived" and spec.type == "bool" else None
        return facts
