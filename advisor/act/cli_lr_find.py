"""`advisor lr-find`: the learning-rate range test on the user's own model, on the detected device.

Registered in advisor/cli.py as

    app.command(name="lr-find", epilog=cli_lr_find.EPILOG)(cli_lr_find.lr_find)

torch (and the task's own imports) load only inside `lr_find()`, never when this module is
imported. The JSON document's keys are documented in advisor/act/lr_find.py.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer

from advisor.commands.common import check_output_path, write_output
from advisor.errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw")
MAX_ITERS = 100_000  # steps of one sweep: far beyond any useful test, far below what memory allows

EPILOG = """Examples:

\b
  advisor lr-find --demo
  advisor lr-find mytask.py:build --optimizer adamw --plot lr.png
  advisor lr-find mypkg.tasks:build --device cuda --repeats 3 --json > lrfind.json
  advisor lr-find mytask.py:build --optimizer sgd --batch-size 128 --end 100
  advisor lr-find mytask.py:build --epochs 30          # lowered for a 30-epoch run
  advisor lr-find mytask.py:build --epochs 30 --method sweep   # successive halving, ~5 runs
  advisor plan --budget 20h --trial-time 20m --lr-from lrfind.json

A task is a function build(hp) returning advisor.Task(model, train_loader, val_loader, loss_fn,
metric); hp carries batch_size when --batch-size is given. By default three range tests are
read off their mean curve (rules/lr_find.yaml sweep.repeats); the planned length (--epochs, or
the task's own `epochs`) lowers the answer for runs longer than the test. The model, the optimizer, the RNG
states and batch-norm statistics are restored after the test.
"""


def lr_find(
    task: Optional[str] = typer.Argument(None, metavar="TASK",
                                         help="path/to/file.py:build or package.module:build "
                                         "(a function build(hp) returning an advisor.Task)."),
    demo: bool = typer.Option(False, "--demo",
                              help="Use the built-in task: an MLP on scikit-learn's digits (offline)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd, adam or adamw."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum (default 0.9)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay",
                                                 help="Weight decay (default 0.01 for adamw, 0 otherwise)."),
    start: Optional[float] = typer.Option(None, "--start", help="First LR of the sweep (default 1e-7)."),
    end: Optional[float] = typer.Option(None, "--end", help="Last LR of the sweep (default 10)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Steps of the sweep, one LR each (default 100)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first run; repeats use seed+1, seed+2 ..."),
    repeats: Optional[int] = typer.Option(None, "--repeats",
                                          help="Range tests with seeds seed, seed+1 ...; the suggestion is read off "
                                          "their mean curve (default: rules/lr_find.yaml, 3)."),
    epochs: Optional[int] = typer.Option(None, "--epochs",
                                         help="Planned training length: the suggestion is lowered for a run longer "
                                         "than the test (default: the task's own `epochs`, if it has one)."),
    method: str = typer.Option("range", "--method",
                               help="range (the range test) or sweep (successive halving of a few LRs around its "
                               "answer; needs --epochs or the task's epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Passed to build(hp) as hp['batch_size']."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the curve and the suggestion to this PNG."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --plot file."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else)."),
) -> None:
    """Find a good learning rate: an LR range test on your model, read by several estimators."""
    from advisor.act.lr_find import load_settings

    settings = load_settings()
    sw = settings.sweep
    start = sw.start if start is None else start
    end = sw.end if end is None else end
    iters = sw.iters if iters is None else iters
    repeats = sw.repeats if repeats is None else repeats
    optimizer = optimizer.lower()
    _validate(task, demo, optimizer, momentum, weight_decay, start, end, iters, repeats, batch_size)
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs: must be at least 1, got {epochs}")
    if method not in ("range", "sweep"):
        raise InputError(f"--method: unknown method '{method}' (choose from range, sweep)")
    if plot is not None:
        check_output_path(plot, _task_files(task, demo), force)

    _need("torch", "advisor lr-find needs PyTorch: pip install 'advisor[train]' "
                  "(with a GPU, install the CUDA build of torch first)")
    if demo:
        _need("sklearn", "--demo needs scikit-learn: pip install 'advisor[train]'")
    if plot is not None:
        _need("matplotlib", "--plot needs matplotlib: pip install 'advisor[plot]'")

    from advisor.act.device import resolve_device

    dev = resolve_device(device)
    spec = "demo" if demo else task
    hp = {} if batch_size is None else {"batch_size": batch_size}
    err = _console(stderr=True)
    report, built = run_range_tests(spec, hp, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                                    start=start, end=end, iters=iters, repeats=repeats, seed=seed, epochs=epochs,
                                    device=dev, settings=settings, err=err)
    report = report.model_copy(update={"method": method})
    run_epochs = epochs or _task_epochs(built)
    if method == "sweep" and not run_epochs:
        raise InputError("--method sweep: needs the planned length: give --epochs (or an `epochs` "
                         "attribute on the task)")
    if method == "sweep":
        report = _halving(report, spec, hp, run_epochs, optimizer, momentum, weight_decay, dev, seed, settings, err)
    if plot is not None:
        write_output(plot, None, _task_files(task, demo), writer=lambda fh: draw_plot(report, fh), force=force)
    if json_:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        _render(report, _console())


# --------------------------------------------------------------------------- helpers

def run_range_tests(spec: str, hp: dict, *, optimizer: str, momentum: Optional[float],
                    weight_decay: Optional[float], start: float, end: float, iters: int, repeats: int, seed: int,
                    epochs: Optional[int], device, settings, err):
    """The range tests of `advisor lr-find` (`repeats` of them, seeds seed, seed+1 ...) read off their
    mean curve, corrected for the planned length: (LRFindReport, the task as first built). Shared
    by `advisor lr-find` and `advisor tune`; progress on `err` (a console on stderr)."""
    import torch

    from advisor.act.device import describe_device
    from advisor.act.lr_find import apply_horizon, combine_curves, horizon_correction, range_test, seed_everything

    threads = torch.get_num_threads()
    if spec == "demo" and device.type == "cpu":
        torch.set_num_threads(1)  # the demo MLP is too small to gain from threads
    curves, first = [], None
    planned, source = None, ""
    try:
        for r in range(repeats):
            run_seed = seed + r
            seed_everything(run_seed)
            built = _build(spec, hp)
            label = f"lr-find {spec}" + (f" (seed {run_seed}, {r + 1}/{repeats})" if repeats > 1 else "")
            with _progress(err, label, iters) as callback:
                curve = range_test(built.model, built.train_loader, built.loss_fn, optimizer_name=optimizer,
                                   momentum=momentum, weight_decay=weight_decay, start=start, end=end,
                                   iters=iters, device=device, callback=callback, settings=settings)
            curves.append(curve)
            if r == 0:
                first = built
                planned, source = _planned_steps(built, epochs)
    except SystemExit as exc:  # the task's own code called sys.exit() during the test
        from advisor.act.task import _exit_call

        raise InputError(f"{spec}: the task called {_exit_call(exc)} during the range test; "
                         "a task must return, not exit") from None
    finally:
        torch.set_num_threads(threads)
    seconds = sum(c.seconds for c in curves)
    combined = combine_curves(curves, settings)
    correction = horizon_correction(planned, curves[0].iters, settings, source)
    uncorrected = combined.suggestion.suggested_lr
    combined.suggestion = apply_horizon(combined.suggestion, correction)
    report = _report(spec, curves, combined, [seed + r for r in range(repeats)], optimizer, momentum,
                     weight_decay, hp.get("batch_size"), describe_device(device), seconds)
    return report.model_copy(update={"uncorrected_lr": _round(uncorrected), "horizon": correction}), first



def _validate(task, demo, optimizer, momentum, weight_decay, start, end, iters, repeats, batch_size) -> None:
    if demo and task:
        raise InputError("give either TASK or --demo, not both")
    if not demo and not task:
        raise InputError("TASK: missing; give path/to/file.py:build or package.module:build, or --demo")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer: unknown optimizer '{optimizer}' (choose from {', '.join(OPTIMIZERS)})")
    if momentum is not None and optimizer != "sgd":
        raise InputError(f"--momentum: only for --optimizer sgd (got {optimizer})")
    if momentum is not None and not 0 <= momentum < 1:
        raise InputError(f"--momentum: must be in [0, 1), got {momentum:g}")
    if weight_decay is not None and not 0 <= weight_decay < math.inf:
        raise InputError(f"--weight-decay: must be a finite number >= 0, got {weight_decay:g}")
    if not 0 < start < math.inf:
        raise InputError(f"--start: must be a positive finite learning rate, got {start:g}")
    if not end > start:
        raise InputError(f"--end: must be above --start ({start:g}), got {end:g}")
    if not end < math.inf:
        raise InputError(f"--end: must be a finite learning rate, got {end:g}")
    if iters < 10:
        raise InputError(f"--iters: need at least 10 steps, got {iters}")
    if iters > MAX_ITERS:
        raise InputError(f"--iters: at most {MAX_ITERS:,} steps (one training step each; 100 is the "
                         f"default), got {iters:,}")
    if repeats < 1:
        raise InputError(f"--repeats: must be at least 1, got {repeats}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size: must be positive, got {batch_size}")


def _task_epochs(built) -> Optional[int]:
    n = getattr(built, "epochs", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _halving(report, spec, hp, epochs, optimizer, momentum, weight_decay, dev, seed, settings, err):
    """--method sweep: successive halving around the range test's (corrected) answer."""
    from advisor.act.lr_find import halving_plan, halving_sweep

    if report.suggested_lr is None:
        raise InputError(f"--method sweep: the range test gave no LR to sweep around ({report.verdict}: "
                         f"{report.message})")
    plan = halving_plan(report.suggested_lr, epochs, settings)
    lrs = ", ".join(f"{v:.2e}" for v in plan["candidates"])
    err.print(f"--method sweep: {len(plan['candidates'])} LRs ({lrs}) for {plan['first_epochs']} epochs, the best "
              f"{plan['keep']} for {epochs}: costs {plan['cost_full_runs']:g} full training runs")
    result = halving_sweep(lambda: _build(spec, hp), plan, optimizer=optimizer, momentum=momentum,
                           weight_decay=weight_decay, device=dev, seed=seed, log=err.print)
    best = result["best_lr"]
    message = (f"LR {best:.2e} trained best of {len(plan['candidates'])} around the range test's "
               f"{report.suggested_lr:.2e} (successive halving, {plan['cost_full_runs']:g} full runs)")
    return report.model_copy(update={"suggested_lr": best, "halving": result, "message": message,
                                     "seconds": round(report.seconds + result["seconds"], 3)})


def _planned_steps(built, epochs: Optional[int]) -> tuple[Optional[int], str]:
    """(steps of the planned run, where its length came from): epochs x batches per epoch."""
    n = epochs or _task_epochs(built)
    if not n:
        return None, ""
    try:
        per_epoch = len(built.train_loader)
    except TypeError:
        return None, "train_loader has no len(): steps per epoch unknown"
    return n * per_epoch, f"{'--epochs' if epochs else 'the task'}: {n} epochs x {per_epoch} batches"


def _need(module: str, message: str):
    """Import an optional dependency, or say what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(message) from None


def _task_files(task: Optional[str], demo: bool) -> list[Path]:
    """The task's file and every module file imported so far (the task's own imports among them):
    --plot must never land on the user's code."""
    files = [Path(f) for f in (getattr(m, "__file__", None) for m in list(sys.modules.values()))
             if isinstance(f, str)]
    if task and not demo:
        from advisor.act.task import split_spec

        files.append(Path(split_spec(task)[0]).expanduser())
    return files


def _build(spec: str, hp: dict):
    from advisor.act.task import load_task, validate_task

    if spec == "demo":
        from advisor.act import demo

        return validate_task(demo.build(hp), "demo")
    return load_task(spec, hp)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


class _progress:
    """A rich progress bar on stderr (only when stderr is a terminal); yields the callback.

    The bar appears once the test has run for `delay` seconds (a test that ends sooner shows no
    bar) and is redrawn by the callback at most 10 times a second, with no refresh thread: the
    range test of a tiny model stays within a few percent of plain training steps."""

    def __init__(self, console, label: str, total: int, delay: float = 0.2):
        self.console, self.label, self.total, self.delay = console, label, total, delay
        self.bar = None

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        import time

        clock = time.perf_counter
        state = {"next": clock() + self.delay, "task": None}

        def callback(step: int, total: int, lr: float, loss: float) -> None:
            now = clock()
            if now < state["next"]:
                return
            state["next"] = now + 0.1
            if self.bar is None:
                self.bar = self._start()
                state["task"] = self.bar.add_task(self.label, total=self.total, lr="-", loss="-")
            self.bar.update(state["task"], completed=step, lr=f"{lr:.1e}", loss=f"{loss:.4g}")
            self.bar.refresh()

        return callback

    def _start(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("lr {task.fields[lr]}  loss {task.fields[loss]}"), TimeElapsedColumn(),
                       console=self.console, transient=True, auto_refresh=False)
        bar.start()
        return bar

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _finite(values, digits: int = 6):
    import math

    return [float(f"{v:.{digits}g}") if v is not None and math.isfinite(v) else None for v in values]


def _report(spec, curves, combined, seeds, optimizer, momentum, weight_decay, batch_size, device, seconds):
    from advisor.act.lr_find import LRFindReport, centred_curve

    s = combined.suggestion
    first = curves[0]
    return LRFindReport(
        suggested_lr=_round(s.suggested_lr), range=tuple(_round(v) for v in s.range) if s.range else None,
        confidence=s.confidence, confidence_label=s.confidence_label, verdict=s.verdict, message=s.message,
        advice=s.advice, notes=s.notes,
        estimators={k: _round(v) for k, v in s.estimators.items()},
        peers={k: _round(v) for k, v in s.peers.items()},
        curve={"lr": _finite(first.lrs), "loss": _finite(first.losses), "smoothed": _finite(first.smoothed),
               "centred": _finite(centred_curve(first.losses, first.iters))},
        repeats={"n": len(curves), "seeds": seeds, "suggested_lrs": [_round(v) for v in combined.suggested_lrs],
                 "spread": _round(combined.spread), "std_log10": _round(combined.std_log10)},
        sweep={"start": first.start, "end": first.end, "iters": first.iters, "steps": first.steps,
               "diverged": first.diverged, "stop_reason": first.stop_reason},
        optimizer={"name": optimizer,
                   "momentum": (0.9 if momentum is None else momentum) if optimizer == "sgd" else None,
                   "weight_decay": (weight_decay if weight_decay is not None
                                    else (0.01 if optimizer == "adamw" else 0.0))},
        batch_size=batch_size, task=spec, device=device, mixed_precision=first.mixed_precision,
        seed=seeds[0], seconds=round(seconds, 3))


def _round(value, digits: int = 4):
    return None if value is None else float(f"{value:.{digits}g}")


def _render(report, console) -> None:
    from rich.markup import escape

    colour = {"ok": "green", "too-noisy": "yellow", "never-diverged": "yellow"}.get(report.verdict, "red")
    lr = f"{report.suggested_lr:.2e}" if report.suggested_lr else "none"
    console.print(f"[bold]suggested LR {lr}[/]" + (f"   search {report.range[0]:.2e} .. {report.range[1]:.2e}"
                                                  if report.range else ""))
    console.print(f"confidence {report.confidence:.2f} ({report.confidence_label})   "
                  f"verdict [{colour}]{report.verdict}[/]: {escape(report.message)}")
    if report.advice:
        console.print(f"  advice: {escape(report.advice)}")
    if report.notes:
        console.print(f"  also: {', '.join(report.notes)}")
    est = "  ".join(f"{k} {v:.2e}" if v else f"{k} -" for k, v in report.estimators.items())
    console.print(f"estimators: {est}")
    peers = "  ".join(f"{k} {v:.2e}" if v else f"{k} -" for k, v in report.peers.items())
    console.print(f"published rules on the same curve: {peers}")
    hz = report.horizon or {}
    if hz.get("applied"):
        console.print(f"horizon: {escape(hz['why'])} (range test alone: {report.uncorrected_lr:.2e})")
    elif hz:
        console.print(f"horizon: not corrected: {escape(hz['why'])}")
    rp = report.repeats
    if rp["n"] > 1:
        lrs = ", ".join(f"{v:.2e}" if v else "-" for v in rp["suggested_lrs"])
        spread = f"spread {rp['spread']:.2g}x" if rp["spread"] else "no spread"
        console.print(f"repeats: {rp['n']} (seeds {rp['seeds'][0]}..{rp['seeds'][-1]}, read off their mean curve; "
                      f"{rp['n']} x {report.sweep['iters']} training steps at most): {lrs}; {spread}")
    sw = report.sweep
    console.print(f"sweep {sw['start']:.0e} .. {sw['end']:.0e}, {sw['steps']}/{sw['iters']} steps "
                  f"({sw['stop_reason']}), optimizer {report.optimizer['name']}, on {report.device}"
                  f"{', ' + report.mixed_precision if report.mixed_precision else ''}, {report.seconds:.1f}s")


def draw_plot(report, path) -> None:
    """Loss against LR (log scale): raw, both smoothings, the suggestion, its range, the estimators.

    `path` is a file name or an open binary file (as write_output gives it); always PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curve = report.curve
    pts = [(lr, lo, sm) for lr, lo, sm in zip(curve["lr"], curve["loss"], curve["smoothed"]) if lr]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        ax.plot([p[0] for p in pts if p[1] is not None], [p[1] for p in pts if p[1] is not None],
                color="0.7", lw=0.8, label="loss")
        ax.plot([p[0] for p in pts if p[2] is not None], [p[2] for p in pts if p[2] is not None],
                color="C0", lw=1.0, ls="--", label="smoothed (EMA, as fastai)")
        centred = [(lr, c) for lr, c in zip(curve["lr"], curve.get("centred") or []) if lr and c is not None]
        if centred:
            ax.plot([p[0] for p in centred], [p[1] for p in centred], color="C1", lw=1.8,
                    label="centred smoothing (advisor reads this)")
        level = [c for _, c in centred] or [p[2] for p in pts if p[2] is not None]
        if level:
            low = min(level)
            first = level[min(len(level) - 1, max(0, len(level) // 10))]
            span = max(abs(first - low), 1e-9)
            ax.set_ylim(low - 0.15 * span, first + 0.5 * span)
        if report.range:
            ax.axvspan(report.range[0], report.range[1], color="C2", alpha=0.12, label="search range")
        if report.suggested_lr:
            ax.axvline(report.suggested_lr, color="C2", lw=2, label=f"suggested {report.suggested_lr:.2e}")
        from advisor.act.lr_find import load_settings

        sg = load_settings().suggest
        markers = {"valley": ("v", "valley"), "steepest": ("s", "steepest"),
                   "minimum": ("o", f"minimum / {sg.minimum_divisor:g}"),
                   "converging": ("^", f"largest converging / {sg.converging_divisor:g}")}
        for name, value in report.estimators.items():
            if value:
                marker, label = markers.get(name, ("o", name))
                ax.axvline(value, color="0.4", lw=0.8, ls=":")
                ax.plot([value], [ax.get_ylim()[1]], marker, color="0.3", ms=5, clip_on=False, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"LR range test: {report.task} ({report.optimizer['name']}) - {report.verdict}, "
                     f"confidence {report.confidence:.2f}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
