"""`advisor lr-find`: the learning-rate range test on the user's own model, on the detected device.

Registered in advisor/cli.py as

    app.command(name="lr-find", epilog=cli_lr_find.EPILOG)(cli_lr_find.lr_find)

torch (and the task's own imports) load only inside `lr_find()`, never when this module is
imported. The JSON document's keys are documented in advisor/act/lr_find.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from advisor.errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw")

EPILOG = """Examples:

  advisor lr-find --demo

  advisor lr-find mytask.py:build --optimizer adamw --plot lr.png

  advisor lr-find mypkg.tasks:build --device cuda --repeats 3 --json > lrfind.json

  advisor lr-find mytask.py:build --optimizer sgd --momentum 0.9 --batch-size 128 --end 100

  advisor plan --budget 20h --trial-time 20m --lr-from lrfind.json

A task is a function build(hp) returning advisor.Task(model, train_loader, val_loader, loss_fn,
metric); hp carries batch_size when --batch-size is given. The model, the optimizer, the RNG
states and batch-norm statistics are restored after the test.
"""


def lr_find(
    task: Optional[str] = typer.Argument(None, metavar="[TASK]",
                                         help="path/to/file.py:build or package.module:build "
                                         "(a function build(hp) returning an advisor.Task)."),
    demo: bool = typer.Option(False, "--demo", help="Use the built-in task: an MLP on scikit-learn's digits (offline)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd, adam or adamw."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum (default 0.9)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay",
                                                 help="Weight decay (default 0.01 for adamw, 0 otherwise)."),
    start: Optional[float] = typer.Option(None, "--start", help="First LR of the sweep (default 1e-7)."),
    end: Optional[float] = typer.Option(None, "--end", help="Last LR of the sweep (default 10)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Steps of the sweep, one LR each (default 100)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first run; repeats use seed+1, seed+2 ..."),
    repeats: int = typer.Option(1, "--repeats", help="Run the test N times with other seeds; report the spread."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Passed to build(hp) as hp['batch_size']."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the curve and the suggestion to this PNG."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else)."),
) -> None:
    """Find a good learning rate: an LR range test on your model, read by several estimators."""
    from advisor.act.lr_find import load_settings

    settings = load_settings()
    sw = settings.sweep
    start = sw.start if start is None else start
    end = sw.end if end is None else end
    iters = sw.iters if iters is None else iters
    optimizer = optimizer.lower()
    _validate(task, demo, optimizer, momentum, weight_decay, start, end, iters, repeats, batch_size)
    if plot is not None:
        _check_output(plot)

    import torch  # noqa: F401  (only now: the command trains)

    from advisor.act.device import describe_device, resolve_device
    from advisor.act.lr_find import combine, range_test, seed_everything

    dev = resolve_device(device)
    spec = "demo" if demo else task
    hp = {} if batch_size is None else {"batch_size": batch_size}
    err = _console(stderr=True)
    if demo and dev.type == "cpu":
        torch.set_num_threads(1)  # the demo MLP is too small to gain from threads
    curves, suggestions = [], []
    began = time.perf_counter()
    for r in range(repeats):
        run_seed = seed + r
        seed_everything(run_seed)
        built = _build(spec, hp)
        label = f"lr-find {spec}" + (f" (seed {run_seed}, {r + 1}/{repeats})" if repeats > 1 else "")
        with _progress(err, label, iters) as callback:
            curve = range_test(built.model, built.train_loader, built.loss_fn, optimizer_name=optimizer,
                               momentum=momentum, weight_decay=weight_decay, start=start, end=end,
                               iters=iters, device=dev, callback=callback, settings=settings)
        curves.append(curve)
        suggestions.append(curve.suggest(settings))
    seconds = time.perf_counter() - began
    combined = combine(suggestions, settings)
    report = _report(spec, curves, combined, [seed + r for r in range(repeats)], optimizer, momentum,
                     weight_decay, batch_size, describe_device(dev), seconds)
    if plot is not None:
        _write_plot(plot, report)
    if json_:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        _render(report, _console())


# --------------------------------------------------------------------------- helpers

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
    if weight_decay is not None and weight_decay < 0:
        raise InputError(f"--weight-decay: must be >= 0, got {weight_decay:g}")
    if not start > 0:
        raise InputError(f"--start: must be positive, got {start:g}")
    if not end > start:
        raise InputError(f"--end: must be above --start ({start:g}), got {end:g}")
    if iters < 10:
        raise InputError(f"--iters: need at least 10 steps, got {iters}")
    if repeats < 1:
        raise InputError(f"--repeats: must be at least 1, got {repeats}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size: must be positive, got {batch_size}")


def _check_output(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file name")
    if not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist")


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
    """A rich progress bar on stderr (only when stderr is a terminal); yields the callback."""

    def __init__(self, console, label: str, total: int):
        self.console, self.label, self.total = console, label, total
        self.bar = None

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("lr {task.fields[lr]}  loss {task.fields[loss]}"), TimeElapsedColumn(),
                            console=self.console, transient=True)
        self.bar.start()
        task_id = self.bar.add_task(self.label, total=self.total, lr="-", loss="-")
        every = max(1, self.total // 50)
        bar = self.bar

        def callback(step: int, total: int, lr: float, loss: float) -> None:
            if step % every == 0 or step == total:
                bar.update(task_id, completed=step, lr=f"{lr:.1e}", loss=f"{loss:.4g}")

        return callback

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _finite(values, digits: int = 6):
    import math

    return [float(f"{v:.{digits}g}") if v is not None and math.isfinite(v) else None for v in values]


def _report(spec, curves, combined, seeds, optimizer, momentum, weight_decay, batch_size, device, seconds):
    from advisor.act.lr_find import LRFindReport

    s = combined.suggestion
    first = curves[0]
    return LRFindReport(
        suggested_lr=_round(s.suggested_lr), range=tuple(_round(v) for v in s.range) if s.range else None,
        confidence=s.confidence, confidence_label=s.confidence_label, verdict=s.verdict, message=s.message,
        advice=s.advice, notes=s.notes,
        estimators={k: _round(v) for k, v in s.estimators.items()},
        peers={k: _round(v) for k, v in s.peers.items()},
        curve={"lr": _finite(first.lrs), "loss": _finite(first.losses), "smoothed": _finite(first.smoothed)},
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
    rp = report.repeats
    if rp["n"] > 1:
        lrs = ", ".join(f"{v:.2e}" if v else "-" for v in rp["suggested_lrs"])
        spread = f"spread {rp['spread']:.2g}x" if rp["spread"] else "no spread"
        console.print(f"repeats: {rp['n']} (seeds {rp['seeds'][0]}..{rp['seeds'][-1]}): {lrs}; {spread}")
    sw = report.sweep
    console.print(f"sweep {sw['start']:.0e} .. {sw['end']:.0e}, {sw['steps']}/{sw['iters']} steps "
                  f"({sw['stop_reason']}), optimizer {report.optimizer['name']}, on {report.device}"
                  f"{', ' + report.mixed_precision if report.mixed_precision else ''}, {report.seconds:.1f}s")


def _write_plot(path: Path, report) -> None:
    import os

    tmp = path.with_name(f".{path.name}.advisor-tmp{path.suffix or '.png'}")
    try:
        draw_plot(report, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def draw_plot(report, path) -> None:
    """Loss against LR (log scale): raw, smoothed, the suggestion, its range and the estimators."""
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
                color="C0", lw=1.6, label="smoothed (EMA)")
        finite = [p[2] for p in pts if p[2] is not None]
        if finite:
            low = min(finite)
            first = finite[min(len(finite) - 1, max(0, len(finite) // 10))]
            ax.set_ylim(low - 0.1 * abs(first - low) - 1e-12, max(first, low) + 0.6 * abs(first - low) + 1e-12)
        if report.range:
            ax.axvspan(report.range[0], report.range[1], color="C2", alpha=0.12, label="search range")
        if report.suggested_lr:
            ax.axvline(report.suggested_lr, color="C2", lw=2, label=f"suggested {report.suggested_lr:.2e}")
        markers = {"valley": "v", "steepest": "s", "minimum": "o", "converging": "^"}
        for name, value in report.estimators.items():
            if value:
                ax.axvline(value, color="0.4", lw=0.8, ls=":")
                ax.plot([value], [ax.get_ylim()[1]], markers.get(name, "o"), color="0.3", ms=5,
                        clip_on=False, label=name)
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
