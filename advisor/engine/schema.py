"""The schema every rule file is validated against (unknown keys are errors)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["info", "warning", "error"]


class Example(BaseModel):
    """A case the rule must fire on (or stay quiet on): a fixture file, or facts given inline."""

    model_config = ConfigDict(extra="forbid")

    fixture: str | None = None          # path under fixtures/
    facts: dict[str, Any] | None = None  # inline facts; unnamed facts are unknown
    context: dict[str, Any] = {}         # context facts added to a fixture's run facts
    note: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> "Example":
        if (self.fixture is None) == (self.facts is None):
            raise ValueError("an example needs exactly one of 'fixture' or 'facts'")
        return self


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fires: list[Example] = Field(min_length=1)
    quiet: list[Example] = Field(min_length=1)


class Explanation(BaseModel):
    """Fixed sections, in the order `advisor explain` prints them."""

    model_config = ConfigDict(extra="forbid")

    what: str = Field(min_length=1)   # what the rule detects
    why: str = Field(min_length=1)    # why it matters
    example: str = Field(min_length=1)  # what such a run looks like


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Z]{1,3}\d{3}$")
    name: str = Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    # diagnosis/lint/audit findings carry a label from their family's vocabulary; decision rules
    # conclude what a plan does; context rules and notes stand beside the labelled findings.
    kind: Literal["diagnosis", "lint", "audit", "decision", "context", "note"]
    label: str | None = None
    severity: Severity
    # run: evaluated once on the whole run/space/study; param: once per parameter, with that
    # parameter's facts added (its findings name the parameter)
    scope: Literal["run", "param"] = "run"
    when: str = Field(min_length=1)
    concludes: dict[str, Any] = {}
    message: str = Field(min_length=1)
    advice: str = Field(min_length=1)
    tune: list[str] = []
    # What `--fix` changes, for lint rules: keys to set on the parameter or on the space; a value
    # "=fact" takes that fact's value.
    fix: dict[Literal["param", "space"], dict[str, Any]] = {}
    evidence: list[str] = []  # extra facts to quote besides those in `when` and `message`
    explain: Explanation
    source: str = Field(min_length=1)
    examples: Examples

    # filled by the loader
    file: str = ""
    tier: int | None = None
