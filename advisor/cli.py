"""The command line: parse arguments, call the pipeline, hand the result to one output sink.

Domain errors become one line on stderr and exit code 2 here, and only here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.errors import AdvisorError, InputError

app = typer.Typer(
    name="advisor",
    help="An expert system for hyperparameter tuning: what is wrong with this run, what to tune first.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

FAIL_ON = ("error", "warning", "info", "never")
FORMAT_CHOICES = ("auto", "csv", "tsv", "keras", "wandb", "lightning", "hf", "jsonl", "detectron2",
                  "mmdet", "ultralytics")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _write_output(path: Path, text: str | None, inputs: list[Path], writer=None) -> None:
    """Write an output file without ever clobbering an input; atomically, via a temporary file."""
    resolved = path.resolve()
    if any(resolved == p.resolve() for p in inputs if p.exists()):
        raise InputError(f"{path}: is one of the input logs; choose another output file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file name")
    if not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.advisor-tmp{path.suffix}")
    try:
        if writer is not None:
            writer(tmp)
        else:
            tmp.write_text(text or "", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


@app.command(epilog="""Examples:

  advisor diagnose run.csv

  advisor diagnose lightning_logs/version_3/metrics.csv --plot run.png --report run.md

  advisor diagnose trainer_state.json --json > diagnosis.json

  advisor diagnose a.csv b.csv c.csv

  advisor diagnose run.csv --optimizer adam --current lr=1e-3,wd=1e-4 --model-family transformer

  advisor diagnose log.csv --map train_loss=loss_total --map val_metric=top1
""")
def diagnose(
    runs: List[Path] = typer.Argument(..., help="Training logs: CSV/TSV (Keras, W&B export), Lightning "
                                      "metrics.csv, HF trainer_state.json, JSON lines (detectron2, "
                                      "mmdetection), Ultralytics results.csv."),
    format: str = typer.Option("auto", "--format", "-f", help=f"Force the log format: {', '.join(FORMAT_CHOICES)}."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help="role=column: override a column role "
                                             "(epoch, step, train_loss, val_loss, train_metric, val_metric, lr, grad_norm)."),
    json_: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (nothing else)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a Markdown report to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the annotated curves to this PNG."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 on findings at or above: error, warning, info, never."),
    optimizer: Optional[str] = typer.Option(None, help="Optimizer used: sgd, adam, adamw, rmsprop."),
    model_family: Optional[str] = typer.Option(None, help="Model family: cnn, transformer, mlp, rnn."),
    finetune: Optional[bool] = typer.Option(None, "--finetune/--from-scratch", help="Fine-tuning a pre-trained model?"),
    dataset_size: Optional[int] = typer.Option(None, help="Number of training examples."),
    budget: Optional[str] = typer.Option(None, help="Tuning budget, e.g. 45m, 50h, 2d."),
    num_classes: Optional[int] = typer.Option(None, help="Number of classes (enables the chance-level check)."),
    current: Optional[List[str]] = typer.Option(None, help="The run's hyperparameters, e.g. lr=1e-3,wd=1e-4,bs=64,warmup=0."),
) -> None:
    """Diagnose training runs: findings with evidence, advice, and what to tune first."""
    from advisor.advice.diagnosis import diagnose as run_diagnosis
    from advisor.facts.context import context_facts
    from advisor.units import parse_assignments, parse_hours

    if format not in FORMAT_CHOICES:
        raise InputError(f"--format: unknown format '{format}' (choose from {', '.join(FORMAT_CHOICES)})")
    if fail_on not in FAIL_ON:
        raise InputError(f"--fail-on: expected one of {', '.join(FAIL_ON)}, got '{fail_on}'")
    _check_choice("--optimizer", optimizer, ("sgd", "adam", "adamw", "rmsprop", "other"))
    _check_choice("--model-family", model_family, ("cnn", "transformer", "mlp", "rnn", "other"))
    for name, value in (("--dataset-size", dataset_size), ("--num-classes", num_classes)):
        if value is not None and value <= 0:
            raise InputError(f"{name}: must be positive, got {value}")
    context = context_facts(
        optimizer=optimizer, model_family=model_family, finetune=finetune, dataset_size=dataset_size,
        budget_hours=parse_hours(budget) if budget else None, num_classes=num_classes,
        current=parse_assignments(current, "--current"),
    )
    result, logs = run_diagnosis(runs, context, format, parse_assignments(map_, "--map"))

    if report is not None:
        from advisor.render.markdown import render as render_md

        _write_output(report, render_md(result), runs)
    if plot is not None:
        from advisor.engine import load_knowledge
        from advisor.render.plot import plot as draw

        analysis = load_knowledge("diagnose").catalogue.analysis
        _write_output(plot, None, runs, writer=lambda p: draw(logs, result.runs, analysis, p))
    if json_:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        from advisor.render.terminal import render

        render(result, _console())
    if fail_on != "never" and result.worst_severity() >= {"info": 0, "warning": 1, "error": 2}[fail_on]:
        raise typer.Exit(1)


def _check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value.lower() not in choices:
        raise InputError(f"{option}: unknown value '{value}' (choose from {', '.join(choices)})")


@app.command(epilog="Examples:\n\n  advisor explain D301\n\n  advisor explain overfitting")
def explain(code: str = typer.Argument(..., help="A rule code (D301) or name (overfitting).")) -> None:
    """Explain a rule: what it detects, why it matters, an example, the advice and the source."""
    from advisor.render.rules import explain as render_explain, find_rule

    family, rule = find_rule(code)
    render_explain(family, rule, _console())


@app.command(name="rules", epilog="Examples:\n\n  advisor rules\n\n  advisor rules --json")
def list_rules(json_: bool = typer.Option(False, "--json", help="Print the rules as JSON.")) -> None:
    """List every rule of the knowledge base."""
    from advisor.render.rules import listing

    listing(_console(), json_)


def main() -> None:
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except AdvisorError as exc:
        print(f"advisor: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("advisor: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # usage errors and anything unforeseen: a short message, exit 2
        if isinstance(exc, typer.TyperException) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("ADVISOR_DEBUG"):
            raise
        print(f"advisor: internal error: {type(exc).__name__}: {exc} "
              "(set ADVISOR_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
