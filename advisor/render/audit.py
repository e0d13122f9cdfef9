"""The audit report: terminal (rich) and Markdown. Findings ranked by severity, then tier."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from advisor.advice.audit import AuditReport, ParamSummary, StudySummary, TrialRef
from advisor.render.common import fmt_value
from advisor.render.terminal import print_finding


def _states(s: StudySummary) -> str:
    parts = [f"{n} {state}" for state, n in s.states.items() if n]
    return f"{s.trials} trials: " + ", ".join(parts)


def _trial(t: TrialRef | None) -> str:
    if t is None:
        return "-"
    params = ", ".join(f"{k}={fmt_value(v)}" for k, v in t.params.items())
    value = fmt_value(t.value) if t.value is not None else "no value"
    return f"#{t.number}: {value} ({params})"


def _range(p: ParamSummary) -> str:
    if p.low is not None and p.high is not None:
        return f"{fmt_value(p.low)} .. {fmt_value(p.high)}" + (" (observed)" if p.bounds_from == "observed" else "")
    if p.choices:
        return ", ".join(fmt_value(c) for c in p.choices)
    return "-"


def render(report: AuditReport, console: Console) -> None:
    s = report.study
    console.rule(f"[bold]{escape(s.name)}[/] [dim]({escape(s.source)})[/]")
    console.print(f"[dim]{s.format}; {s.direction} {escape(s.metric)} ({s.direction_from}); {_states(s)}[/]")
    console.print(f"Best tuned trial {escape(_trial(s.best))}")
    if s.baseline is not None:
        console.print(f"Baseline trial   {escape(_trial(s.baseline))}")
    for note in s.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if s.params:
        table = Table(show_edge=False)
        for col in ("parameter", "scale", "range", "best", "importance", "tier"):
            table.add_column(col)
        for p in s.params:
            table.add_row(escape(p.name), p.scale, escape(_range(p)),
                          escape(fmt_value(p.best)) if p.best is not None else "-",
                          f"{p.importance:.0%}" if p.importance is not None else "-",
                          str(p.tier) if p.tier else "-")
        console.print(table)
        if s.importance_evaluator:
            console.print(f"[dim]importance: {escape(s.importance_evaluator)}[/]")
    for f in report.findings:
        print_finding(console, f)
    if not report.findings:
        console.print("[green]No findings.[/]")
    if report.verdict:
        console.print(f"[bold]Next:[/] {escape(report.verdict)}")


def markdown(report: AuditReport) -> str:
    s = report.study
    out = [f"# advisor audit: `{s.name}`", "", f"`{s.source}` ({s.format}); {s.direction} {s.metric}; {_states(s)}.", "",
           f"- Best tuned trial {_trial(s.best)}"]
    if s.baseline is not None:
        out.append(f"- Baseline trial {_trial(s.baseline)}")
    out += [f"- Note: {n}" for n in s.notes]
    out.append("")
    if s.params:
        out += ["| parameter | scale | range | best | importance | tier |", "|---|---|---|---|---|---|"]
        out += [f"| {p.name} | {p.scale} | {_range(p)} | {fmt_value(p.best) if p.best is not None else '-'} | "
                f"{f'{p.importance:.0%}' if p.importance is not None else '-'} | {p.tier or '-'} |" for p in s.params]
        out.append("")
    for f in report.findings:
        label = f" — {f.label}" + (f" ({f.param})" if f.param else "")
        out += [f"## {f.severity.upper()} {f.code} `{f.name}`{label}", "", f.message, ""]
        if f.evidence:
            out += ["| fact | value | unit |", "|---|---|---|"]
            out += [f"| {e.fact} | {fmt_value(e.value)} | {e.unit} |" for e in f.evidence]
            out.append("")
        out += [f"**Advice.** {f.advice}", "", f"*Source: {f.source}*", ""]
    if report.verdict:
        out += [f"**Next.** {report.verdict}", ""]
    return "\n".join(out)
