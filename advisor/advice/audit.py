"""Audit: a finished search through ingest, study facts and the audit rules, then ranked findings.

The study-wide rules run once; the per-parameter rules (scope: param) once for each searched
parameter, with that parameter's facts beside the study's. A per-parameter finding names its
parameter and is ranked by that parameter's tier in the importance hierarchy.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from advisor.engine import Finding, KnowledgeBase, evaluate, load_knowledge, severity_rank
from advisor.ingest.study import StudyTable, load_study

SCHEMA = "advisor.audit/1"
# Labels that report a good sign or where the search stands, not a fault: they never fail a run.
GOOD_SIGNS = ("stable_best",)


class ParamSummary(BaseModel):
    name: str
    canonical: str | None          # its name in the importance hierarchy, if listed
    tier: int | None
    kind: str                      # float | int | categorical
    scale: str                     # log | linear | categorical
    low: float | None = None
    high: float | None = None
    choices: list[Any] | None = None
    bounds_from: str               # space (declared in the storage) | observed (values tried)
    best: Any = None               # its value in the tuned best trial
    importance: float | None = None


class TrialRef(BaseModel):
    number: int
    value: float | None
    params: dict[str, Any]


class StudySummary(BaseModel):
    source: str
    name: str
    format: str
    direction: str
    direction_from: str
    metric: str
    trials: int
    states: dict[str, int]         # complete / pruned / failed / running
    epochs_known: bool
    best: TrialRef | None          # the tuned best (baseline left out)
    baseline: TrialRef | None
    params: list[ParamSummary]
    importance_evaluator: str | None
    notes: list[str]


class AuditReport(BaseModel):
    schema_version: str = SCHEMA
    study: StudySummary
    findings: list[Finding]        # most severe first, then by importance tier
    verdict: str
    facts: dict[str, Any]

    def worst_severity(self) -> int:
        levels = [severity_rank(f.severity) for f in self.findings if f.label not in GOOD_SIGNS]
        return max(levels, default=-1)


def _rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-severity_rank(f.severity), f.tier or 9, f.code, f.param or ""))


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _trial(table: StudyTable, number: int | None) -> TrialRef | None:
    if number is None:
        return None
    row = table.trials[table.trials["number"] == number].iloc[0]
    params = {p: _clean(row[f"params_{p}"]) for p in table.params
              if row[f"params_{p}"] is not None and not (isinstance(row[f"params_{p}"], float)
                                                         and math.isnan(row[f"params_{p}"]))}
    return TrialRef(number=int(number), value=_clean(float(row["value"])), params=params)


def audit_table(table: StudyTable, kb: KnowledgeBase | None = None) -> AuditReport:
    from advisor.facts.study import param_importances, study_facts

    kb = kb or load_knowledge("audit")
    analysis = kb.catalogue.analysis
    importances, evaluator = param_importances(table, analysis)
    facts, per_param = study_facts(table, analysis, importances)
    findings, facts = evaluate(kb, facts, scope="run")
    for name, pf in per_param.items():
        fired, _ = evaluate(kb, {**facts, **pf}, scope="param", param=name)
        canonical = pf["param_canonical"] if pf["param_in_hierarchy"] else None
        for finding in fired:
            finding.tier = pf["param_tier"] if canonical else None
            finding.tune = [canonical] if canonical else []
        findings += fired
    findings = _rank(findings)
    verdict = next((f.advice for f in findings if f.label not in GOOD_SIGNS + ("diminishing_returns",)
                    and f.severity != "info"), None) \
        or next((f.advice for f in findings if f.label in ("diminishing_returns",) + GOOD_SIGNS), "")

    best_number = facts.get("best_number")
    base = table.trials[table.trials["baseline"]]
    params = []
    for p in table.params:
        d, pf = table.distributions[p], per_param[p]
        params.append(ParamSummary(
            name=p, canonical=pf["param_canonical"] if pf["param_in_hierarchy"] else None,
            tier=pf["param_tier"] if pf["param_in_hierarchy"] else None, kind=d.kind,
            scale=pf["param_scale"], low=d.low if d.numeric else None, high=d.high if d.numeric else None,
            choices=[_clean(c) for c in d.choices] if d.choices else None, bounds_from=d.source,
            best=_trial(table, best_number).params.get(p) if best_number is not None else None,
            importance=importances.get(p)))
    states = {s: int((table.trials["state"] == s).sum()) for s in ("complete", "pruned", "failed", "running")}
    summary = StudySummary(
        source=table.source, name=table.name, format=table.format, direction=table.direction,
        direction_from=table.direction_from, metric=table.metric, trials=len(table.trials),
        states=states, epochs_known=bool(facts.get("epochs_known")),
        best=_trial(table, best_number),
        baseline=_trial(table, int(base["number"].iloc[0])) if len(base) else None,
        params=params, importance_evaluator=evaluator, notes=list(table.notes))
    shown = {k: _clean(v) for k, v in facts.items()
             if v is not None and k in kb.catalogue.facts and kb.catalogue.facts[k].source != "derived"}
    return AuditReport(study=summary, findings=findings, verdict=verdict, facts=shown)


def audit(source: str, study: str | None = None, metric: str | None = None,
          direction: str | None = None, baseline_trial: int | None = None,
          timeout: float = 5.0) -> AuditReport:
    """Audit a finished search: an Optuna storage (SQLite path or URL) or a trials CSV."""
    table = load_study(source, study=study, metric=metric, direction=direction,
                       baseline_trial=baseline_trial, timeout=timeout)
    return audit_table(table)


def fired_codes(path, context: dict[str, Any]) -> set[str]:
    """The codes of every finding on a fixture (for the rule-example tests); context holds the
    options: study, metric, direction, baseline_trial."""
    return {f.code for f in audit(str(path), **context).findings}
