"""What the engine concludes: a finding per fired rule, with the evidence that made it fire."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class Evidence(BaseModel):
    fact: str
    value: Any
    unit: str = ""
    definition: str = ""


class Finding(BaseModel):
    code: str
    name: str
    kind: str
    label: str | None
    severity: str
    tier: int | None
    message: str
    advice: str
    tune: list[str]
    evidence: list[Evidence]
    source: str
    param: str | None = None  # the parameter a per-parameter finding is about
    run: str | None = None
