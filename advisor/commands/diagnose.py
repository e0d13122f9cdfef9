"""`advisor diagnose`: training logs in, findings and what to tune first out."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.commands.common import check_choice, check_fail_on, console, exit_for, write_output
from advisor.errors import InputError

FORMAT_CHOICES = ("auto", "csv", "tsv", "keras", "wandb", "lightning", "hf", "jsonl", "detectron2",
                  "mmdet", "mmengine", "ultralytics", "text", "notebook", "tensorboard", "mlflow")

EPILOG = """Examples:

  advisor diagnose run.csv

  advisor diagnose lightning_logs/version_3/metrics.csv --plot run.png --report run.md

  advisor diagnose trainer_state.json --json > diagnosis.json

  advisor diagnose a.csv b.csv c.csv

  advisor diagnose run.csv --optimizer adam --current lr=1e-3,wd=1e-4 --model-family transformer

  advisor diagnose log.csv --map train_loss=loss_total --map val_metric=top1

  advisor diagnose runs/exp3/                 (a TensorBoard run folder; pip install 'advisor[tensorboard]')

  advisor diagnose mlruns/0/3f2c.../          (an MLflow file-store run)

  advisor diagnose --mlflow-run 3f2c... --tracking-uri sqlite:///mlflow.db   (pip install 'advisor[mlflow]')

  advisor diagnose --experiment resnet-lr --tracking-uri http://mlflow:5000  (all its runs, compared)

  advisor diagnose train.log                  (console output: Keras fit, HF dicts, print lines)

  advisor diagnose train.ipynb --run 2        (the second training run printed in a notebook)

  python train.py 2>&1 | advisor diagnose -
"""


def diagnose(
    runs: Optional[List[Path]] = typer.Argument(None, help="Training logs: CSV/TSV (Keras, W&B export), Lightning "
                                      "metrics.csv, HF trainer_state.json, JSON lines (detectron2, "
                                      "mmdetection, mmengine), Ultralytics results.csv, console text, "
                                      "notebooks, TensorBoard and MLflow run folders; - for standard input."),
    format: str = typer.Option("auto", "--format", "-f", help=f"Force the log format: {', '.join(FORMAT_CHOICES)}."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help="role=column: override a column role "
                                             "(epoch, step, train_loss, val_loss, train_metric, val_metric, lr, grad_norm)."),
    json_: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (nothing else)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a Markdown report to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the annotated curves to this PNG."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --report or --plot file."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 on findings at or above: error, warning, info, never."),
    optimizer: Optional[str] = typer.Option(None, help="Optimizer used: sgd, adam, adamw, rmsprop."),
    model_family: Optional[str] = typer.Option(None, help="Model family: cnn, transformer, mlp, rnn."),
    finetune: Optional[bool] = typer.Option(None, "--finetune/--from-scratch", help="Fine-tuning a pre-trained model?"),
    dataset_size: Optional[int] = typer.Option(None, help="Number of training examples."),
    budget: Optional[str] = typer.Option(None, help="Tuning budget, e.g. 45m, 50h, 2d."),
    num_classes: Optional[int] = typer.Option(None, help="Number of classes (enables the chance-level check)."),
    current: Optional[List[str]] = typer.Option(None, help="The run's hyperparameters, e.g. lr=1e-3,wd=1e-4,bs=64,warmup=0."),
    run: Optional[int] = typer.Option(None, "--run", help="Of a file holding several runs (a notebook's several "
                                      "fits, appended or side-by-side runs), diagnose only the N-th (from 1)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI for --mlflow-run "
                                               "or --experiment (default: $MLFLOW_TRACKING_URI)."),
    mlflow_run: Optional[List[str]] = typer.Option(None, "--mlflow-run", help="An MLflow run id to diagnose "
                                                   "(repeat for several, compared)."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Every run of this MLflow experiment, "
                                             "diagnosed and compared."),
) -> None:
    """Diagnose training runs: findings with evidence, advice, and what to tune first."""
    from advisor.advice.diagnosis import diagnose as run_diagnosis
    from advisor.facts.context import context_facts
    from advisor.units import parse_assignments, parse_hours

    if format not in FORMAT_CHOICES:
        raise InputError(f"--format: unknown format '{format}' (choose from {', '.join(FORMAT_CHOICES)})")
    check_fail_on(fail_on)
    check_choice("--optimizer", optimizer, ("sgd", "adam", "adamw", "rmsprop", "other"))
    check_choice("--model-family", model_family, ("cnn", "transformer", "mlp", "rnn", "other"))
    for name, value in (("--dataset-size", dataset_size), ("--num-classes", num_classes)):
        if value is not None and value <= 0:
            raise InputError(f"{name}: must be positive, got {value}")
    if report is not None and plot is not None and os.path.realpath(report) == os.path.realpath(plot):
        raise InputError(f"--plot {plot}: is the --report file too; give each its own file")
    sources: list = list(runs or [])
    if mlflow_run or experiment:
        from advisor.ingest.mlflow import tracked_runs

        sources.append(tracked_runs(tracking_uri, mlflow_run or [], experiment))
    elif tracking_uri:
        raise InputError("--tracking-uri: say which runs with --mlflow-run ID or --experiment NAME")
    if not sources:
        raise InputError("give a training log (a file, a folder, - for standard input) or --mlflow-run/--experiment")
    context = context_facts(
        optimizer=optimizer, model_family=model_family, finetune=finetune, dataset_size=dataset_size,
        budget_hours=parse_hours(budget) if budget else None, num_classes=num_classes,
        current=parse_assignments(current, "--current"),
    )
    result, logs = run_diagnosis(sources, context, format, parse_assignments(map_, "--map"), pick=run)

    # what was read must never be written over: the files named, a folder's log as read, and
    # the database file behind a sqlite tracking URI
    inputs = [Path(p) for p in runs or []] + [Path(log.path) for log in logs]
    inputs += [db for s in sources if (db := getattr(s, "local_file", lambda: None)()) is not None]
    if report is not None:
        from advisor.render.markdown import render as render_md

        write_output(report, render_md(result), inputs, force=force)
    if plot is not None:
        from advisor.engine import load_knowledge
        from advisor.render.plot import plot as draw

        analysis = load_knowledge("diagnose").catalogue.analysis
        write_output(plot, None, inputs, writer=lambda fh: draw(logs, result.runs, analysis, fh), force=force)
    if json_:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        from advisor.render.terminal import render

        render(result, console())
    exit_for(fail_on, result.worst_severity())
