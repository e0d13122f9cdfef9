"""The plan and the hardware on the terminal (rich). Renderers compute nothing."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from advisor.advice.plan import Plan, PlanParam
from advisor.facts.hardware import Hardware
from advisor.render.common import SEVERITY_STYLE

STRATEGY = {"manual": "tune by hand", "grid": "grid search", "random": "random search",
            "bayesian": "Bayesian optimization"}
DIST = {"loguniform": "log-uniform", "uniform": "uniform", "int": "integer", "intlog": "integer, log",
        "categorical": "choice"}


def _g(x: float) -> str:
    return f"{x:.3g}"


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.3g} s"
    if h < 1:
        return f"{h * 60:.0f} min"
    return f"{h:.3g} h" if h < 48 else f"{h:.4g} h ({h / 24:.1f} days)"


def _range(p: PlanParam, gridded: bool) -> str:
    if p.distribution == "categorical":
        return ", ".join(str(c) for c in p.choices or [])
    if gridded and p.by and p.grid:
        return "; ".join(f"{k}: {', '.join(_g(v) for v in vals)}" for k, vals in p.grid.items())
    if gridded and p.choices:
        return ", ".join(_g(v) for v in p.choices)
    if p.by and p.ranges:
        return "; ".join(f"{k}: {_g(lo)} .. {_g(hi)}" for k, (lo, hi) in p.ranges.items())
    text = f"{_g(p.low)} .. {_g(p.high)}"
    return text + ", or 0" if p.zero else text


def _timing(plan: Plan) -> str:
    """Where a trial time not typed on the command line came from (a log's timings)."""
    src = plan.trial_time_from
    if not src or plan.assumed.get("trial_hours") or src.startswith("--"):
        return ""
    return f" (from {escape(src)})"


def render(plan: Plan, console: Console) -> None:
    b = plan.budget
    console.rule("[bold]advisor plan[/]")
    console.print(f"Budget [bold]{_hours(b.budget_hours)}[/] × {b.workers} worker(s) = "
                  f"{b.compute_hours:.4g} GPU-hours; one trial {_hours(b.trial_hours)}"
                  f"{' [bold yellow](assumed)[/]' if plan.assumed.get('trial_hours') else ''}"
                  f"{_timing(plan)}"
                  f"{f', {b.epochs} epochs' if b.epochs else ''}. Band: {escape(b.band_label)}.")
    if not plan.tune:
        console.print("[bold]Do not run a search.[/]")
        _reasons(plan, console)
        _notes(plan, console)
        return
    pr = plan.pruner
    console.print(f"[bold]{STRATEGY[plan.strategy]}[/]{' (quasi-random)' if plan.quasi_random else ''}: "
                  f"[bold]{plan.n_configs}[/] configuration(s) over {len(plan.params)} parameter(s); "
                  f"expected [bold]{_hours(plan.expected_hours)}[/] wall time ({plan.gpu_hours:.4g} GPU-hours).")

    gridded = plan.strategy in ("grid", "manual")
    table = Table(title="Parameters, by importance", show_edge=False, title_justify="left")
    for col in ("parameter", "tier", "effort", "scale", "range" if not gridded else "values", "because"):
        table.add_column(col, overflow="fold")
    for p in plan.params:
        table.add_row(p.name, str(p.tier), f"{p.share:.0%}", DIST[p.distribution],
                      escape(_range(p, gridded)), escape(", ".join(p.because)))
    console.print(table)
    for p in plan.params:
        if p.note:
            console.print(f"  [dim]{p.name}: {escape(p.note)}[/]")
    for c in plan.coupled:
        scaling = {"linear": " (linear scaling, SGD)", "sqrt": " (square-root scaling, adaptive optimizer)",
                   "by_optimizer": " (linear for SGD, square root for adaptive optimizers)"}.get(c.scaling or "", "")
        console.print(f"[bold]Searched together:[/] {' + '.join(c.params)}{scaling} [dim]{c.code}[/]")
    for d in plan.deferred:
        console.print(f"[dim]Not searched: {d.param} (asked by {', '.join(d.asked_by) or '-'}): {escape(d.why)}[/]")

    console.print("[bold]Phases[/]")
    for i, ph in enumerate(plan.phases, 1):
        seeds = f" × {ph.seeds} seeds" if ph.seeds > 1 else ""
        console.print(f"  {i}. {ph.name:8} {ph.configs} configuration(s){seeds}, {escape(ph.sampler)}: "
                      f"{escape(ph.description)} [dim]({ph.gpu_hours:.3g} GPU-hours)[/]")
    if pr.type == "none":
        console.print("[bold]Pruner:[/] none")
    else:
        bits = [f"{k}={v}" for k, v in (("n_startup_trials", pr.n_startup_trials),
                                        ("n_warmup_steps", pr.n_warmup_steps),
                                        ("patience", pr.patience), ("min_resource", pr.min_resource),
                                        ("max_resource", pr.max_resource),
                                        ("reduction_factor", pr.reduction_factor)) if v is not None]
        assumed = " [dim](epochs not given: assumed)[/]" if pr.epochs_assumed else ""
        console.print(f"[bold]Pruner:[/] {pr.type} ({', '.join(bits)}); a configuration costs about "
                      f"{pr.cost_share:.0%} of a full trial{assumed}")
    console.print(f"[bold]Sampler:[/] {plan.sampler.type}"
                  + (f" ({', '.join(f'{k}={v}' for k, v in plan.sampler.args.items())})" if plan.sampler.args else "")
                  + (f"; storage: {plan.storage}" if plan.storage else ""))
    console.print("[bold]Stop when[/] " + "; or ".join(escape(r.text) for r in plan.stop_rules) + ".")
    if plan.baseline:
        console.print("[bold]Baseline[/] (trial 0): "
                      + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in plan.baseline.items()))
    if plan.fixed:
        console.print("[dim]Fixed: " + escape(", ".join(f"{k}={v}" for k, v in plan.fixed.items())) + "[/]")
    _reasons(plan, console)
    _notes(plan, console)


def _reasons(plan: Plan, console: Console) -> None:
    console.print("[bold]Why[/]")
    for r in plan.reasons:
        style = SEVERITY_STYLE[r.severity]
        console.print(f"  [{style}]{r.code}[/] [bold]{r.name}[/]: {escape(r.message)}")
        if r.severity != "info" or not plan.tune:
            console.print(f"      [green]→[/] {escape(r.advice)}")
    if plan.from_run:
        console.print(f"[dim]From {escape(plan.from_run.run)}: {', '.join(plan.from_run.labels) or 'no diagnosis'}[/]")


def _notes(plan: Plan, console: Console) -> None:
    for note in plan.notes:
        console.print(f"[dim]Note: {escape(note)}[/]")


def render_hardware(hw: Hardware, console: Console) -> None:
    if hw.cuda:
        table = Table(show_edge=False)
        for col in ("GPU", "name", "memory"):
            table.add_column(col)
        for g in hw.cuda:
            table.add_row(str(g.index), escape(g.name), f"{g.memory_gb:g} GB" if g.memory_gb else "?")
        console.print(table)
    else:
        console.print("CUDA GPUs: none")
    console.print(f"Apple MPS: {'yes' if hw.mps else 'no'}")
    console.print(f"CPU cores: {hw.cpu_cores}")
    console.print(f"Device for training: [bold]{hw.device}[/]")
    console.print(f"[dim]Source: {hw.source}{f', torch {hw.torch_version}' if hw.torch_version else ''}[/]")
    for note in hw.notes:
        console.print(f"[dim]Note: {escape(note)}[/]")
