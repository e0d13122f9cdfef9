"""Diagnosis: a run through ingest, facts and rules, then ranked findings and what to tune first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from advisor.engine import Finding, KnowledgeBase, evaluate, load_knowledge, severity_rank
from advisor.errors import InputError
from advisor.facts.curves import run_facts
from advisor.ingest import RunLog, load_runs

SCHEMA = "advisor.diagnose/1"


class TuneItem(BaseModel):
    param: str
    tier: int
    share: float      # share of tuning effort the importance hierarchy gives it
    because: list[str]  # codes of the findings that ask for it


class RunDiagnosis(BaseModel):
    run: str
    format: str
    epochs: int
    steps: int
    columns: dict[str, str]
    metric: str | None
    metric_higher_is_better: bool | None
    diagnoses: list[Finding]
    notes: list[Finding]
    tune_first: list[TuneItem]
    verdict: str
    facts: dict[str, Any]


class ComparisonRow(BaseModel):
    run: str
    labels: list[str]
    best_val_epoch: int | None
    val_loss_best: float | None
    best_val_metric: float | None
    final_loss: float | None


class DiagnoseReport(BaseModel):
    schema_version: str = SCHEMA
    diagnoses: list[Finding]   # all runs, most severe first; each names its run
    notes: list[Finding]
    runs: list[RunDiagnosis]
    comparison: list[ComparisonRow] | None = None
    best_run: str | None = None

    def worst_severity(self) -> int:
        """The level --fail-on compares with. A healthy run's diagnoses (healthy itself, and the
        plateau or slow convergence that say where it ended) are no problem; its notes count."""
        levels = [severity_rank(f.severity) for r in self.runs
                  for f in ([] if any(d.label == "healthy" for d in r.diagnoses) else r.diagnoses) + r.notes]
        return max(levels, default=-1)


def rank_findings(findings: list[Finding], labels: list[str] = ()) -> list[Finding]:
    """Most severe first; among equals, by the order of the label vocabulary in rules/ (the
    order a practitioner names problems in), then by importance tier."""
    order = {label: i for i, label in enumerate(labels)}
    return sorted(findings, key=lambda f: (-severity_rank(f.severity), order.get(f.label, len(order)),
                                           f.tier or 9, f.code))


def _tune_first(kb: KnowledgeBase, findings: list[Finding]) -> list[TuneItem]:
    asked: dict[str, list[str]] = {}
    for finding in findings:
        for param in finding.tune:
            asked.setdefault(param, []).append(finding.code)
    items = [TuneItem(param=p, tier=kb.importance[p]["tier"], share=kb.importance[p]["share"],
                      because=codes) for p, codes in asked.items()]
    return sorted(items, key=lambda i: (i.tier, -i.share))


def diagnose_run(run: RunLog, context: dict[str, Any], kb: KnowledgeBase | None = None) -> RunDiagnosis:
    kb = kb or load_knowledge("diagnose")
    facts = run_facts(run, kb.catalogue.analysis)
    facts.update({k: v for k, v in context.items() if v is not None})
    findings, facts = evaluate(kb, facts)
    for finding in findings:
        finding.run = run.name
    diagnoses = rank_findings([f for f in findings if f.kind == "diagnosis"], kb.labels)
    notes = rank_findings([f for f in findings if f.kind != "diagnosis"])
    # Tuning follows the diagnosis; context findings add to it only when the run is not healthy.
    healthy = any(f.label == "healthy" for f in diagnoses)
    tune = _tune_first(kb, diagnoses + ([] if healthy else notes))
    verdict = diagnoses[0].advice if diagnoses else (notes[0].advice if notes else "")
    return RunDiagnosis(
        run=run.name, format=run.format, epochs=len(run.epochs),
        steps=run.n_steps, columns=run.columns, metric=run.metric,
        metric_higher_is_better=run.higher_is_better, diagnoses=diagnoses, notes=notes,
        tune_first=tune, verdict=verdict,
        facts={k: v for k, v in facts.items() if v is not None and kb.catalogue.facts[k].source in ("run", "context")},
    )


def diagnose(paths: list[str | Path], context: dict[str, Any], fmt: str | None = None,
             overrides: dict[str, str] | None = None, pick: int | None = None) -> tuple[DiagnoseReport, list[RunLog]]:
    """Every run of every source diagnosed (a file can hold several: appended, side by side, a
    notebook's several fits); `pick` (1-based) keeps only that run of each source."""
    kb = load_knowledge("diagnose")
    analysis = kb.catalogue.analysis
    runs = []
    for p in paths:
        found = load_runs(p, fmt, overrides, int(analysis["step_bins"]), int(analysis["rows_per_epoch_max"]))
        if pick is not None:
            if not 1 <= pick <= len(found):
                raise InputError(f"{p}: --run {pick}: it holds {len(found)} run{'s' * (len(found) != 1)}")
            found = [found[pick - 1]]
        runs += found
    results = [diagnose_run(run, context, kb) for run in runs]
    report = DiagnoseReport(
        diagnoses=rank_findings([f for r in results for f in r.diagnoses], kb.labels),
        notes=rank_findings([f for r in results for f in r.notes]),
        runs=results,
    )
    if len(results) > 1:
        report.comparison, report.best_run = _compare(results)
    return report, runs


def _compare(results: list[RunDiagnosis]) -> tuple[list[ComparisonRow], str | None]:
    rows = [ComparisonRow(run=r.run, labels=list(dict.fromkeys(f.label for f in r.diagnoses if f.label)),
                          best_val_epoch=r.facts.get("best_val_epoch"),
                          val_loss_best=r.facts.get("val_loss_best"),
                          best_val_metric=r.facts.get("best_val_metric"),
                          final_loss=r.facts.get("loss_final")) for r in results]
    directions = {r.metric_higher_is_better for r in results}
    candidates = [(row, r) for row, r in zip(rows, results) if "diverged" not in row.labels]
    if all(row.best_val_metric is not None for row, _ in candidates) and len(directions) == 1 and candidates:
        sign = -1.0 if directions == {True} else 1.0
        best = min(candidates, key=lambda c: (sign * c[0].best_val_metric, c[0].val_loss_best or 0.0))
    elif candidates and all(row.val_loss_best is not None for row, _ in candidates):
        best = min(candidates, key=lambda c: c[0].val_loss_best)
    else:
        return rows, None
    return rows, best[0].run
