"""The terminal report (rich): findings ranked by severity then importance tier, with evidence."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from advisor.advice.diagnosis import DiagnoseReport, RunDiagnosis
from advisor.engine import Finding
from advisor.render.common import SEVERITY_STYLE, fmt_value


def print_finding(console: Console, f: Finding) -> None:
    """One finding: severity, code and name, message, evidence, advice, source."""
    style = SEVERITY_STYLE[f.severity]
    label = f" [{f.label}]" if f.label else ""
    label += f" ({f.param})" if f.param else ""
    tier = f" tier {f.tier}" if f.tier else ""
    console.print(f"[{style}]{f.severity.upper():7}[/] [bold]{f.code} {f.name}[/]{escape(label)}[dim]{tier}[/]")
    console.print(f"  {escape(f.message)}")
    if f.evidence:
        ev = ", ".join(f"{e.fact}={fmt_value(e.value)}{(' ' + e.unit) if e.unit else ''}" for e in f.evidence)
        console.print(f"  [dim]evidence: {escape(ev)}[/]")
    console.print(f"  [green]→[/] {escape(f.advice)}")
    console.print(f"  [dim]source: {escape(f.source)}[/]")


def _run(console: Console, r: RunDiagnosis) -> None:
    cols = ", ".join(f"{role}={col}" for role, col in r.columns.items())
    steps = f", {r.steps} steps" if r.steps else ""
    console.rule(f"[bold]{escape(r.run)}[/]")
    console.print(f"[dim]{r.format} log, {r.epochs} epochs{steps}; columns: {escape(cols)}[/]")
    for f in r.diagnoses + r.notes:
        print_finding(console, f)
    if r.tune_first:
        console.print("[bold]What to tune first[/] (importance hierarchy):")
        for i, item in enumerate(r.tune_first, 1):
            console.print(f"  {i}. {item.param} [dim](tier {item.tier}, {item.share:.0%} of the effort; "
                          f"{', '.join(item.because)})[/]")
    elif r.diagnoses:
        console.print("[bold]What to tune first:[/] nothing — " + escape(r.verdict))


def render(report: DiagnoseReport, console: Console) -> None:
    for r in report.runs:
        _run(console, r)
    if report.comparison:
        console.rule("[bold]comparison[/]")
        from rich.table import Table  # only several runs are compared in a table

        table = Table(show_edge=False)
        table.add_column("run", overflow="fold")
        for col in ("diagnoses", "best epoch", "best val loss", "best val metric", "final loss"):
            table.add_column(col)
        for row in report.comparison:
            mark = " ★" if row.run == report.best_run else ""
            table.add_row(escape(row.run) + mark, ", ".join(row.labels),
                          *[fmt_value(v) if v is not None else "-" for v in
                            (row.best_val_epoch, row.val_loss_best, row.best_val_metric, row.final_loss)])
        console.print(table)
        if report.best_run:
            console.print(f"Best run: [bold]{escape(report.best_run)}[/]")
