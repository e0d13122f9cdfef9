"""`advisor search` and `advisor worker`: the planned search on the user's model, with Optuna.

Thin: the options are parsed here; advisor/act/search.py checks them, runs the search and builds
the report; advisor/render/search.py draws it. Importing this module imports neither torch nor
Optuna.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.commands.common import console
from advisor.errors import InputError

EPILOG = """Examples:

  advisor search --demo

  advisor search mytask.py:build --plan plan.yaml          (advisor plan ... --emit yaml --out plan.yaml)

  advisor search mytask.py:build --budget 10h --params lr,weight_decay,dropout --epochs 30

  advisor search mytask.py:build --optimizer adamw --params learning_rate,weight_decay --epochs 15 --trials 40 --storage sqlite:///runs.db --study s1 --json > s1.json

  advisor search mytask.py:build --storage sqlite:///runs.db --study s1 --resume

  advisor search mytask.py:build --sanity                  (5 random configurations, 2 epochs: check before spending the budget)

  advisor search mytask.py:objective --plan plan.yaml      (your own loop: objective(hp, report) -> float)

  advisor search mytask.py:build --plan plan.yaml --workers 4 --storage runs.journal

TASK is path/to/file.py:build or package.module:build, a function build(hp) returning
advisor.Task(model, train_loader, val_loader, loss_fn, metric); advisor trains it (optimizer,
schedule, warmup, clipping, evaluation every epoch, pruning). A function with two parameters,
objective(hp, report) -> float, runs your own loop instead: call report(val_metric, epoch) after
every epoch. The study lives in a plain Optuna storage: optuna-dashboard sqlite:///advisor-search.db.
"""

WORKER_EPILOG = """Examples:

  advisor worker --storage postgresql://user:pass@dbhost/optuna --study s1

  advisor worker --storage postgresql://user:pass@dbhost/optuna --study s1 --device cuda:1

Several machines: create the study once on a PostgreSQL (or MySQL) storage, e.g.
advisor search mytask.py:build --plan plan.yaml --storage postgresql://... --study s1 --top-k 0,
then start `advisor worker` with the same --storage and --study on every machine (the task file
must be at the same path there, or give --task). Each worker runs trials until the study's
global trial budget is spent; trials of a worker that dies are failed by the storage's heartbeat.
Re-run the first command with --resume for the final seeds and the audit.
"""

DIRECTIONS = ("maximize", "minimize")


def search(
    task: Optional[str] = typer.Argument(None, metavar="[TASK]",
                                         help="path/to/file.py:build or package.module:build (build(hp) -> "
                                         "advisor.Task), or a function objective(hp, report) -> float."),
    demo: bool = typer.Option(False, "--demo", help="Search the built-in task: an MLP on scikit-learn's digits."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="The plan: advisor's space YAML (advisor plan "
                                        "--emit yaml) or a W&B sweep YAML."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Make the plan for this wall-clock budget: 90m, "
                                         "10h, 2d (one trial is timed unless --trial-time)."),
    trial_time: Optional[str] = typer.Option(None, "--trial-time", help="With --budget: what one full trial costs."),
    params: Optional[List[str]] = typer.Option(None, "--params", help="Parameters to search, e.g. lr,wd,dropout "
                                               "(default: chosen by importance)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial (default: the plan's, else 10)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd, adam, adamw or rmsprop (default adamw)."),
    current: Optional[List[str]] = typer.Option(None, "--current", help="Your current configuration, run first as "
                                                "the baseline: lr=1e-3,bs=64."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trial budget, baseline included; holds across "
                                         "--resume (default: the plan's). The stop rule may end the search "
                                         "earlier (--no-stop-rule)."),
    no_stop_rule: bool = typer.Option(False, "--no-stop-rule", help="Run every trial of the budget: no stop rule "
                                      "(the best not improving for N trials of a phase)."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Stop starting trials after this long: 30m, 2h "
                                          "(this run; --resume goes on)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="sqlite:///file.db (default sqlite:///advisor-"
                                          "search.db), a .journal file, or postgresql://..."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: TASK-date-time)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study (default: the latest for TASK) after "
                                "Ctrl-C or a crash."),
    # bounded: each worker is a process on this machine, and thousands of them only exhaust it
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Processes on this machine (one per GPU); "
                                "needs a .journal or server storage."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampler and the training: the same search in one process."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Re-run the best K configurations with new seeds "
                                        "(default 5, or the plan's; 0 skips)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize or minimize (default: from "
                                            "task.metric: accuracy up, loss down)."),
    sanity: bool = typer.Option(False, "--sanity", help="Only the sanity run: 5 random configurations, 2 epochs "
                                "each, checked before the real budget is spent."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else)."),
) -> None:
    """Run the planned hyperparameter search on your model: pruning, baseline, resume, final seeds, audit."""
    from advisor.units import parse_assignments, parse_hours

    if direction is not None and direction.lower() not in DIRECTIONS:
        raise InputError(f"--direction: expected maximize or minimize, got '{direction}'")
    if trial_time is not None and budget is None:
        raise InputError("--trial-time goes with --budget (they make the plan)")
    from advisor.act.search import Request

    req = Request(
        task=task, demo=demo, plan=str(plan) if plan is not None else None,
        budget_hours=parse_hours(budget, "--budget") if budget is not None else None,
        trial_hours=parse_hours(trial_time, "--trial-time") if trial_time is not None else None,
        params=list(params) if params else None, epochs=epochs, optimizer=optimizer,
        current=parse_assignments(current, "--current"), trials=trials,
        timeout_s=parse_hours(timeout, "--timeout") * 3600 if timeout is not None else None,
        storage=storage, study=study, resume=resume, workers=workers, device=device, seed=seed,
        top_k=top_k, direction=direction.lower() if direction else None, sanity=sanity,
        stop_rule=not no_stop_rule)
    execute(req, json_)


def execute(req, json_: bool = False) -> None:
    """Prepare, run with a progress bar on stderr, and print the result (terminal or JSON)."""
    _need("optuna")
    _need("torch")
    from advisor.act import search as engine
    from advisor.render.search import SearchProgress, render, render_sanity

    try:
        prepared = engine.prepare(req)
    except KeyboardInterrupt:
        console(stderr=True).print("advisor: interrupted before the search started")
        raise typer.Exit(130) from None
    label = prepared.spec.task
    err = console(stderr=True)
    if prepared.spent:  # joined a study on a server that needs no more workers
        from advisor.act.search.storage import _hide_password

        err.print(f"advisor search: study {prepared.study}: {prepared.spent}; nothing to do on this machine "
                  f"(advisor audit {_hide_password(prepared.url)} --study {prepared.study} reads it)",
                  highlight=False, soft_wrap=True)
        return
    if req.sanity:
        with SearchProgress(err, label) as progress:
            report = engine.sanity(prepared.spec, device_name=req.device, budget_hours=req.budget_hours,
                                   runner=prepared.runner, progress=progress, notes=prepared.notes)
        _emit(report, json_, render_sanity)
        if report.verdict != "ok":
            raise typer.Exit(1)
        return
    try:
        with SearchProgress(err, label) as progress:
            report = engine.run(prepared.spec, prepared.url, prepared.study, resume=prepared.resume,
                                device_name=req.device, timeout=prepared.timeout_s, workers=req.workers,
                                progress=progress, notes=prepared.notes, storage=prepared.storage,
                                runner=prepared.runner)
    except KeyboardInterrupt:
        err.print(f"advisor: interrupted; every finished trial is saved in {prepared.url} (study "
                  f"{prepared.study}). Continue with: advisor search {_task_arg(req)} --storage {prepared.url} "
                  f"--study {prepared.study} --resume", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    _emit(report, json_, render)


def _need(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"advisor search needs {module}: pip install 'advisor[train]'")


def _task_arg(req) -> str:
    return "--demo" if req.demo else str(req.task)


def _emit(report, json_: bool, renderer) -> None:
    if json_:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        renderer(report, console())


def worker(
    storage: str = typer.Option(..., "--storage", help="The study's storage: postgresql://... or mysql://... "
                                "(several machines), a .journal file (one machine)."),
    study: str = typer.Option(..., "--study", help="The study, created by advisor search."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N, mps."),
    task: Optional[str] = typer.Option(None, "--task", help="The task on this machine, if its path differs "
                                       "from the one the study was made with."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Stop starting trials after this long: 30m, 2h."),
    index: Optional[int] = typer.Option(None, "--index", help="This worker's number: offsets the random samplers' "
                                        "seed (default: from the host name and process id)."),
) -> None:
    """Run trials of an advisor search study until its trial budget is spent (one worker of many)."""
    from advisor.units import parse_hours

    seconds = parse_hours(timeout, "--timeout") * 3600 if timeout is not None else None
    from advisor.act.search import run_worker, storage_url

    n = run_worker(storage_url(storage), study, index=index, device_name=device, task=task, timeout=seconds)
    console(stderr=True).print(f"advisor worker: {n} trial(s) finished in study {study}")
