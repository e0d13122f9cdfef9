"""`advisor tune`: the whole chain in one command (advisor/act/tune.py runs it,
advisor/render/tune.py writes what it found). Thin: options parsed and checked here, nothing
written before they are. Importing this module imports neither torch nor Optuna."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.commands.common import console
from advisor.errors import InputError

EPILOG = """Examples:

  advisor tune --demo --budget 3m                      (offline, on a built-in task: an MLP on digits)

  advisor tune mytask.py:build --budget 2h

  advisor tune mytask.py:build --budget 30m --params lr,weight_decay --out runs/tune-1 --json

  advisor tune mytask.py:build --budget 8h --current lr=3e-4,batch_size=64 --optimizer adamw --epochs 20

  advisor tune --resume runs/tune-1                    (after Ctrl-C, SIGTERM or a crash: the budget that is left)

The chain: the device; a baseline run at your current configuration (--current, else the trainer's
defaults), timed and diagnosed (a run that diverges or does not learn stops here, with what to
fix); the LR range test; the plan for the budget that is left, with the measured trial time and the
range test's answer; the plan's check; the search through its phases, with pruning; the best
configurations and the baseline re-run with new seeds; the audit; the report. Everything lands in
--out: report.html (one file, plots inside), report.md, best.yaml, tune.json, the study (SQLite:
optuna-dashboard sqlite:///OUT/study.db), lr_find.json, plan.yaml, search.json, audit.json.
"""


def tune(
    task: Optional[str] = typer.Argument(None, metavar="[TASK]",
                                         help="path/to/file.py:build or package.module:build (build(hp) -> "
                                         "advisor.Task)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Wall-clock budget for the whole chain: 3m, 2h, "
                                         "1d (held within 5%)."),
    demo: bool = typer.Option(False, "--demo", help="Tune the built-in task: an MLP on scikit-learn's digits."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR", help="Continue a run in DIR at the "
                                          "step where it stopped, with the budget that is left."),
    out: Optional[Path] = typer.Option(None, "--out", help="The run's folder (default advisor-runs/TASK-TIME/); "
                                       "a new or empty one."),
    params: Optional[List[str]] = typer.Option(None, "--params", help="Parameters to search, e.g. lr,weight_decay "
                                               "(default: chosen by the plan)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per run (default: the task's `epochs`, "
                                         "else 10)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd, adam, adamw or rmsprop (default adamw)."),
    current: Optional[List[str]] = typer.Option(None, "--current", help="Your current configuration, the baseline: "
                                                "lr=1e-3,bs=64."),
    seed: int = typer.Option(0, "--seed", help="Seeds the baseline, the range tests, the sampler and the training."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps."),
    storage: Optional[str] = typer.Option(None, "--storage", help="The study's storage (default: sqlite in --out)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: TASK-tune)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize or minimize (default: from "
                                            "task.metric)."),
    json_: bool = typer.Option(False, "--json", help="Print the summary document on stdout (progress stays on "
                               "stderr)."),
) -> None:
    """Tune a model end to end within a budget: baseline, lr-find, plan, check, search, seeds, audit, report."""
    from advisor.units import parse_assignments, parse_hours

    if resume is not None:
        given = [o for o, v in (("TASK", task), ("--demo", demo), ("--out", out), ("--params", params),
                                ("--epochs", epochs), ("--optimizer", optimizer), ("--current", current),
                                ("--storage", storage), ("--study", study), ("--direction", direction)) if v]
        if given:
            raise InputError(f"--resume continues the run as it was asked: drop {', '.join(given)} "
                             "(--budget sets a new total budget)")
    else:
        if demo and task:
            raise InputError("give either TASK or --demo, not both")
        if not demo and not task:
            raise InputError("TASK: missing; give path/to/file.py:build, package.module:build, --demo, or "
                             "--resume DIR")
        if budget is None:
            raise InputError("--budget: missing; say how long the whole run may take, e.g. --budget 2h")
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs: must be at least 1, got {epochs}")
    if direction is not None and direction.lower() not in ("maximize", "minimize"):
        raise InputError(f"--direction: expected maximize or minimize, got '{direction}'")
    opt = optimizer.lower() if optimizer else None
    if opt is not None and opt not in ("sgd", "adam", "adamw", "rmsprop"):
        raise InputError(f"--optimizer: unknown optimizer '{optimizer}' (choose from sgd, adam, adamw, rmsprop)")
    budget_s = parse_hours(budget, "--budget") * 3600 if budget is not None else None
    assignments = parse_assignments(current, "--current")
    if resume is None:
        from advisor.advice.plan import parse_current, parse_params

        parse_current(assignments, opt)  # refused now, before a folder is made
        parse_params(params)
    _need("torch")
    _need("optuna")
    if demo:
        _need("sklearn")

    from advisor.act.tune import State, Tune, TuneRequest, default_out, load_state, new_folder, save_state

    if resume is not None:
        state = load_state(resume)
        if budget_s is not None:
            state.request = state.request.model_copy(update={"budget_s": budget_s})
        state.stopped = None
        for step in state.steps.values():
            if step.status == "stopped":
                step.status = "pending"
    else:
        spec = "demo" if demo else str(task)
        req = TuneRequest(task=spec, budget_s=budget_s, params=list(params) if params else None, epochs=epochs,
                          optimizer=opt, current=assignments, seed=seed, device=device, storage=storage,
                          study=study, direction=direction.lower() if direction else None)
        folder = out or default_out(spec)
        new_folder(folder)
        import time

        state = State(request=req, out=str(folder), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        save_state(state)

    err = console(stderr=True)
    from advisor.render.search import SearchProgress

    def say(line: str) -> None:
        left = state.request.budget_s - runner.elapsed() if runner is not None else state.request.budget_s
        err.print(f"[dim]\\[{_clock(left)} left][/] {line}", highlight=False, soft_wrap=True)

    runner = None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends the run as Ctrl-C does: state saved
    try:
        # the live bars one at a time: lr-find draws its own, the search's opens with the search
        runner = Tune(state, say=say, display=lambda: SearchProgress(err, "tune"), err=err)
        state = runner.run()
    except KeyboardInterrupt:
        if runner is not None:
            runner._close_session()
        save_state(state)
        err.print(f"advisor tune: interrupted; what finished is saved in {state.out}. Continue with: "
                  f"advisor tune --resume {state.out}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = runner.summary
    if json_:
        import json

        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        from advisor.render.tune import render

        render(summary, console())
    if state.stopped:
        raise typer.Exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _need(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"advisor tune needs {module}: pip install 'advisor[tune]'")
