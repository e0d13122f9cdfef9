"""`advisor search` on the terminal: the result, the sanity run, and the progress bar (stderr).

Renderers only format what advisor/act/search.py computed; the progress bar is told what
happened after each trial and draws it.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from advisor.engine.findings import Finding
from advisor.render.common import fmt_value
from advisor.render.terminal import print_finding
from advisor.units import format_seconds


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def _value(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"


def _args(spec: dict[str, Any]) -> str:
    args = spec.get("args") or {}
    shown = []
    for k, v in args.items():
        if k == "search_space":
            shown.append(f"{k}={{{', '.join(f'{n}: {len(vals)} points' for n, vals in v.items())}}}")
        elif isinstance(v, dict):
            inner = ", ".join(f"{a}={b}" for a, b in v.items() if a != "type")
            shown.append(f"{k}={v.get('type', '')}({inner})")
        else:
            shown.append(f"{k}={v}")
    return f"{spec.get('type')}({', '.join(shown)})"


def _stopped(reason: str, budget: dict[str, Any]) -> str:
    rule = budget.get("stop_rule") or {}
    return {
        "budget": "every trial of the budget ran",
        "stale": (f"the stop rule: the best improved by less than {rule.get('min_gain_per_trial', 0):.1%} per trial "
                  f"over the last {rule.get('stale_trials')} trials; --no-stop-rule runs the whole budget"),
        "grid": "every grid point ran",
        "timeout": "the time limit (--timeout, or the plan's budget); --resume goes on",
        "epochs": "the epoch budget",
        "none": "interrupted before the budget was spent; --resume goes on",
    }.get(reason, reason)


def _range(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_range(x)}" for k, x in v.items())
    if isinstance(v, list) and len(v) >= 2 and all(isinstance(x, (int, float)) for x in v[:2]) \
            and not all(isinstance(x, int) for x in v):
        return f"{v[0]:.3g}..{v[1]:.3g}" + (" or 0" if "or 0" in v else "")
    return "[" + ", ".join(str(x) for x in v) + "]" if isinstance(v, list) else str(v)


def render(report, console: Console) -> None:
    """The finished search: best, baseline, trial counts, epochs, the finalists, audit, notes."""
    r = report
    console.rule(f"[bold]advisor search[/] {escape(r.task)} [dim](study {escape(r.study)})[/]")
    console.print(f"[dim]{escape(r.storage)}; {escape(r.device)}; {r.direction} {escape(r.metric)}"
                  f"{'; resumed' if r.resumed else ''}[/]")
    console.print(f"[dim]{r.strategy} search: sampler {escape(_args(r.sampler))}[/]")
    console.print(f"[dim]pruner {escape(_args(r.pruner))}[/]")
    b = r.budget
    timeout = f", timeout {b['timeout_s']:.0f} s" if b.get("timeout_s") else ""
    console.print(f"Budget {b['trials']} trials x {b['epochs']} epochs{timeout}; stopped by: "
                  f"[bold]{r.stopped_by}[/] ({escape(_stopped(r.stopped_by, b))})")
    if r.phases:
        console.print("Phases: " + " -> ".join(f"{ph['name']} {ph['trials']} trial(s), {ph['epochs']} epochs"
                                               for ph in r.phases))
    if r.refined:
        ranges = "; ".join(f"{k} {_range(v)}" for k, v in r.refined["params"].items())
        console.print(f"[dim]refine: around the best {r.refined.get('around')} explore configuration(s): "
                      f"{escape(ranges)}[/]")
    c = r.trials
    parts = [f"{c['complete']} complete", f"{c['pruned']} pruned", f"{c['failed']} failed"]
    if c.get("interrupted"):
        parts.append(f"{c['interrupted']} of them interrupted")
    if c.get("running"):
        parts.append(f"{c['running']} running")
    console.print(f"Trials {c['total']}: " + ", ".join(parts))
    if r.best is not None:
        tag = " [yellow](the baseline)[/]" if r.best.baseline else ""
        console.print(f"[bold]Best[/]     #{r.best.number}: [bold]{_value(r.best.value)}[/]{tag}  "
                      f"{escape(_params(r.best.params))}")
    else:
        console.print("[red]No trial completed.[/]")
    if r.baseline is not None:
        gain = ""
        if r.best is not None and r.best.value is not None and r.baseline.value is not None:
            sign = 1 if r.direction == "maximize" else -1
            delta = sign * (r.best.value - r.baseline.value)
            gain = f"  [dim](best {'+' if delta >= 0 else ''}{delta:.4g} over it)[/]"
        console.print(f"Baseline #{r.baseline.number}: {_value(r.baseline.value)}{gain}  "
                      f"{escape(_params(r.baseline.params))}")
    unpruned = r.epochs_search + r.epochs_saved_by_pruning
    share = f" ({r.epochs_saved_by_pruning / unpruned:.0%} of the search)" if unpruned else ""
    console.print(f"Epochs {r.epochs_used} used (search {r.epochs_search}, final {r.epochs_final}); "
                  f"{r.epochs_saved_by_pruning} saved by pruning{share}")
    if r.final:
        table = Table(title=f"Final: top {len(r.final)} re-run with {b.get('seeds_final')} new seeds, full length",
                      show_edge=False, title_justify="left")
        for col in ("#", "mean ± std", "seeds", "search", "params"):
            table.add_column(col)
        for i, f in enumerate(r.final, 1):
            mean = "-" if f.mean is None else f"{f.mean:.4g} ± {f.std:.2g}"
            seeds = f"{len(f.values)}" + (f" ({f.failed} failed)" if f.failed else "")
            search = f"#{f.search_number} {_value(f.search_value)}"
            table.add_row(str(i), mean, seeds, search, escape(_params(f.params)))
        console.print(table)
    if r.failures:
        console.print("[bold]Failed or diverged trials[/] (first ones):")
        for f in r.failures[:5]:
            console.print(f"  #{f['number']} {f['state']}: {escape(str(f['reason']))}")
    if r.audit:
        console.print("[bold]Audit of the study[/] (advisor audit):")
        for raw in r.audit:
            print_finding(console, Finding.model_validate(raw))
    for note in r.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"[dim]{r.seconds:.1f} s. Browse: {escape(r.dashboard)}[/]")


def render_sanity(report, console: Console) -> None:
    """The sanity run: each configuration, the findings, the verdict."""
    r = report
    console.rule(f"[bold]advisor search --sanity[/] {escape(r.task)}")
    console.print(f"[dim]{len(r.configs)} random configurations x {r.epochs} epoch(s) on {escape(r.device)}; "
                  "nothing stored[/]")
    table = Table(show_edge=False)
    for col in ("#", "state", "metric per epoch", "params"):
        table.add_column(col)
    for c in r.configs:
        style = {"ok": "green", "diverged": "yellow"}.get(c.state, "red")
        hist = " → ".join(_value(v) for v in c.history) or "-"
        table.add_row(str(c.number), f"[{style}]{c.state}[/]", hist, escape(_params(c.params)))
    console.print(table)
    for c in r.configs:
        if c.reason and c.state != "ok":
            console.print(f"  [dim]#{c.number}: {escape(c.reason)}[/]")
    for raw in r.findings:
        print_finding(console, Finding.model_validate(raw))
    for note in r.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if r.verdict == "ok":
        console.print("[bold green]Ready:[/] run the same command without --sanity.")
    else:
        console.print("[bold red]Fix the errors above before searching.[/]")


class SearchProgress:
    """A rich progress bar on stderr, only when stderr is a terminal: trials done of the budget,
    best so far, time left. Yields the callback act/search.py calls after each trial."""

    def __init__(self, console: Console, label: str):
        self.console, self.label = console, label
        self.bar = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("best {task.fields[best]}"), TextColumn("left {task.fields[left]}"),
                            TimeElapsedColumn(), console=self.console, transient=True)
        self.bar.start()
        return self.update

    def update(self, event) -> None:
        if self.bar is None:
            return
        names = {"search": f"{self.label} search", "final": "final seeds", "sanity": f"{self.label} sanity"}
        name = names.get(event.phase, event.phase)
        left = "-" if event.left is None else format_seconds(event.left)
        best = "-" if event.best is None else f"{event.best:.4g}"
        if event.phase not in self.tasks:
            self.tasks[event.phase] = self.bar.add_task(name, total=max(1, event.total), best=best, left=left)
        self.bar.update(self.tasks[event.phase], completed=event.done, total=max(1, event.total), best=best, left=left)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


__all__ = ["SearchProgress", "render", "render_sanity"]
