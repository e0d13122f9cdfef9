"""`advisor audit`: a finished search (Optuna storage or trials CSV) in, its red flags out.

Optuna is imported only when a study is read (never when this module is imported), so that
the other commands start fast.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Optional

import typer

from advisor.commands.common import check_fail_on, check_output_path, console, exit_for, write_output
from advisor.errors import InputError


EPILOG = """Examples:

  advisor audit studies.db --study resnet-lr

  advisor audit sqlite:///studies.db --study resnet-lr --json > audit.json

  advisor audit postgresql://user@dbhost/optuna --study resnet-lr --timeout 5

  advisor audit trials.csv                  (Optuna trials_dataframe() export)

  advisor audit sweep.csv --metric val_acc  (W&B sweep runs export)

  advisor audit ray.csv --baseline-trial 0 --report audit.md   (Ray Tune results export)
"""


def audit(
    study: str = typer.Argument(...,
                                help="An Optuna storage (SQLite file or storage URL) or a trials CSV "
                                     "(Optuna trials_dataframe, W&B sweep or Ray Tune export)."),
    study_name: Optional[str] = typer.Option(None, "--study", help="The study in the storage (default: its only study)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="CSV only: the column holding the objective "
                                         "(default: 'value', else the one val_/eval_ column)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="minimize or maximize (default: the "
                                            "storage's; for a CSV, from the metric's name)."),
    baseline_trial: Optional[int] = typer.Option(None, "--baseline-trial", help="Number of the trial that ran the "
                                                 "baseline (default: the first trial, when it was enqueued)."),
    json_: bool = typer.Option(False, "--json", help="Print the audit as JSON on stdout (nothing else)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a Markdown report to this file."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --report file."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 on findings at or above: error, warning, info, never."),
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for a storage server before giving up."),
) -> None:
    """Audit a finished search: best at the boundary, over-pruning, flat results, crashes, when to stop."""
    check_fail_on(fail_on)
    if not math.isfinite(timeout) or timeout <= 0 or timeout > 3600:
        raise InputError(f"--timeout: seconds between 0 and 3600, got {timeout}")
    from advisor.advice.audit import audit as run_audit

    if report is not None:
        check_output_path(report, _input_files(study), force)
    result = run_audit(study, study=study_name, metric=metric, direction=direction,
                       baseline_trial=baseline_trial, timeout=timeout)
    if report is not None:
        from advisor.render.audit import markdown

        write_output(report, markdown(result), _input_files(study), force=force)
    if json_:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        from advisor.render.audit import render

        render(result, console())
    exit_for(fail_on, result.worst_severity())


def _input_files(study: str) -> list[Path]:
    """The file the audit reads: a path, or the SQLite file behind a sqlite:/// URL."""
    if "://" not in study:
        return [Path(study)]
    m = re.match(r"sqlite(?:\+\w+)?:///([^?]+)", study)
    return [Path(m.group(1))] if m else []  # a database server holds no file of ours
