"""`advisor plan` and `advisor hardware`: a search plan for the user's budget and machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.commands.common import check_choice, check_output_path, console, write_output
from advisor.errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
MODEL_FAMILIES = ("cnn", "transformer", "mlp", "rnn")
EMIT_TARGETS = ("optuna", "wandb", "ray", "yaml")
DIRECTIONS = ("maximize", "minimize")

EPILOG = """Examples:

  advisor plan --budget 50h                    (no trial time: one is assumed, and said so)

  advisor plan --budget 50h --trial-time 30m

  advisor plan --budget 50h --from trainer_state.json      (the trial time from the log's timings)

  advisor plan --budget 2d --epoch-time 90s --epochs 40 --params lr,batch_size,weight_decay --optimizer adamw

  advisor plan --budget 200h --trial-time 1h --model-family transformer --finetune --from run.csv --emit wandb --out sweep.yaml

  advisor plan --budget 300h --trial-time 1h --gpus 4 --current lr=1e-3,bs=64 --emit optuna --out search.py

  advisor plan --budget 10h --epoch-time 3m --epochs 20 --lr-from lrfind.json --json
"""

HARDWARE_EPILOG = """Examples:

  advisor hardware

  advisor hardware --json
"""


def plan(
    budget: str = typer.Option(..., "--budget", help="Wall-clock tuning budget: 90m, 50h, 2d."),
    trial_time: Optional[str] = typer.Option(None, "--trial-time", help="Time of one full trial: 30m, 2h."),
    epoch_time: Optional[str] = typer.Option(None, "--epoch-time", help="Time of one epoch (with --epochs): 90s, 3m."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per trial."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs to use (default: detected)."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Memory per GPU, e.g. 24GB (default: detected)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Trials in parallel (default: one per GPU)."),
    params: Optional[List[str]] = typer.Option(None, "--params", help="Parameters to search, e.g. lr,bs,wd "
                                               "(default: chosen by importance for the budget)."),
    optimizer: Optional[str] = typer.Option(None, help="Optimizer: sgd, adam, adamw, rmsprop."),
    model_family: Optional[str] = typer.Option(None, help="Model family: cnn, transformer, mlp, rnn."),
    finetune: bool = typer.Option(False, "--finetune/--from-scratch", help="Fine-tuning a pre-trained model?"),
    dataset_size: Optional[int] = typer.Option(None, help="Number of training examples."),
    current: Optional[List[str]] = typer.Option(None, help="Current config, the baseline trial: lr=1e-3,bs=64,wd=0."),
    from_: Optional[Path] = typer.Option(None, "--from", help="A training log: its diagnosis shapes the plan."),
    lr_from: Optional[Path] = typer.Option(None, "--lr-from", help="LR-finder result (JSON: suggested_lr, range)."),
    metric: str = typer.Option("val_metric", "--metric", help="Name of the metric the search optimizes."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize or minimize (default: "
                                            "minimize for a metric named *loss*, else maximize)."),
    emit: Optional[str] = typer.Option(None, "--emit", help="Write the plan as: optuna, wandb, ray, yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="File for --emit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    json_: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout (nothing else)."),
) -> None:
    """Plan a hyperparameter search: strategy, parameters and ranges, budget split, pruner, stop rules."""
    from advisor.advice.plan import PlanInput, build_plan, parse_current, parse_params, read_finder
    from advisor.facts.hardware import detect, parse_memory
    from advisor.units import check_hours, parse_assignments, parse_hours

    budget_hours = parse_hours(budget, "--budget")
    if trial_time is not None and epoch_time is not None:
        raise InputError("give either --trial-time, or --epoch-time with --epochs, not both")
    if epochs is not None and epochs <= 0:
        raise InputError(f"--epochs: must be positive, got {epochs}")
    if trial_time is not None:
        trial_hours = parse_hours(trial_time, "--trial-time")
    elif epoch_time is not None:
        if epochs is None:
            raise InputError("--epoch-time needs --epochs (the trial costs epoch time x epochs)")
        trial_hours = check_hours(parse_hours(epoch_time, "--epoch-time") * epochs, "--epoch-time x --epochs")
    else:
        trial_hours = None  # from the --from log's timings, else assumed (and said so)
    check_choice("--optimizer", optimizer, OPTIMIZERS)
    check_choice("--model-family", model_family, MODEL_FAMILIES)
    check_choice("--emit", emit, EMIT_TARGETS)
    check_choice("--direction", direction, DIRECTIONS)
    for name, value in (("--dataset-size", dataset_size), ("--workers", workers)):
        if value is not None and value <= 0:
            raise InputError(f"{name}: must be positive, got {value}")
    if not metric.strip() or any(not ch.isprintable() for ch in metric):
        raise InputError(f"--metric: {metric[:60]!r} is not a metric name (no line breaks or control characters)")
    if emit and out is None:
        raise InputError(f"--emit {emit} needs --out FILE")
    if out is not None and not emit:
        raise InputError("--out needs --emit optuna|wandb|ray|yaml")
    if from_ is not None and not from_.is_dir():
        from advisor.inputs import regular_file

        regular_file(from_, "training log")  # a FIFO or a device, refused before it can block
    inputs = [p for p in (from_, lr_from) if p is not None]
    if out is not None:
        check_output_path(out, inputs, force)
    optimizer = optimizer.lower() if optimizer else None
    names = parse_params(params)
    cur = parse_current(parse_assignments(current, "--current"), optimizer)
    finder = read_finder(lr_from) if lr_from is not None else None
    hw = detect(gpus, parse_memory(gpu_memory))
    _check_workers(workers, hw, gpus is not None)
    optimizer = optimizer or cur.get("optimizer") or (finder.optimizer if finder else None)

    diagnosis = None
    timing_source = "--trial-time" if trial_time is not None else ("--epoch-time x --epochs" if epoch_time else None)
    if from_ is not None:
        from advisor.advice.diagnosis import diagnose
        from advisor.advice.plan import summarize_diagnosis
        from advisor.facts.context import context_facts

        ctx = context_facts(optimizer=optimizer, model_family=model_family, finetune=finetune,
                            dataset_size=dataset_size, budget_hours=budget_hours,
                            current={k: str(v) for k, v in cur.items() if not isinstance(v, str)
                                     and k in ("learning_rate", "weight_decay", "batch_size", "warmup",
                                               "dropout", "momentum")})
        report, logs = diagnose([from_], ctx)
        inputs += [Path(log.path) for log in logs]  # the log found inside a --from folder
        diagnosis = summarize_diagnosis(report)
        if trial_hours is None and logs:
            from advisor.advice.plan_time import logged_time

            logged = logged_time(logs[0].path)
            if logged is not None:
                epochs = epochs or logged.epochs
                trial_hours = check_hours(logged.seconds_per_epoch * epochs / 3600, "--from timings")
                timing_source = f"{logged.source}; {epochs} epochs per trial"

    assumed: dict = {}
    if trial_hours is None:
        from advisor.advice.plan import assumed_trial

        trial_hours, assumed = assumed_trial(epochs, from_ is not None)

    direction = (direction or ("minimize" if "loss" in metric.lower() else "maximize")).lower()
    result = build_plan(PlanInput(
        budget_hours=budget_hours, trial_hours=trial_hours, epochs=epochs, hardware=hw,
        workers=workers, params=names, optimizer=optimizer,
        model_family=model_family.lower() if model_family else None, finetune=finetune,
        dataset_size=dataset_size, current=cur, diagnosis=diagnosis, finder=finder,
        metric=metric, direction=direction, assumed=assumed, trial_time_from=timing_source,
    ))

    if emit:
        from advisor.emit import emit as emit_plan

        text = emit_plan(result, emit, out.name)
        write_output(out, text, inputs, force=force)
    if json_:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        from advisor.render.plan import render

        render(result, console())
    if emit:
        con = console(stderr=json_)
        con.print(f"[green]Wrote[/] {out} ({emit}).")
        if emit == "wandb":  # what the sweep cannot do of the plan, said here as in the file
            from rich.markup import escape

            from advisor.emit.wandb import limits

            for line in limits(result):
                con.print("  " + escape(line.lstrip("# ")))


def _check_workers(workers: Optional[int], hw, gpus_given: bool) -> None:
    """--workers counts trials at once; more of them than GPUs would count GPU-hours the machine
    does not have (64 workers on one GPU planned 64x its budget: bad-input report F19)."""
    from advisor.facts.hardware import MAX_GPUS

    if workers is None:
        return
    if workers > MAX_GPUS:
        raise InputError(f"--workers: at most {MAX_GPUS:,} trials at once, got {str(workers)[:30]}")
    if hw.gpus and workers > hw.gpus:
        where = "given with --gpus" if gpus_given else "detected"
        raise InputError(f"--workers {workers}: more trials at once than the {hw.gpus} GPU"
                         f"{'s' if hw.gpus > 1 else ''} {where}; say --gpus {workers} if they run on "
                         f"{workers} GPUs (on several machines), or give fewer workers")


def hardware(
    gpus: Optional[int] = typer.Option(None, "--gpus", help="Override the number of GPUs."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Override the memory per GPU, e.g. 24GB."),
    json_: bool = typer.Option(False, "--json", help="Print the hardware as JSON on stdout (nothing else)."),
) -> None:
    """Show what this machine offers for training: CUDA GPUs and memory, Apple MPS, CPU cores."""
    from advisor.facts.hardware import detect, parse_memory

    hw = detect(gpus, parse_memory(gpu_memory))
    if json_:
        data = hw.model_dump()
        data["device"] = hw.device
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    from advisor.render.plan import render_hardware

    render_hardware(hw, console())
