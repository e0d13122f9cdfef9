"""`advisor watch`: the diagnosis while a run is still training, from a growing log or a pipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from advisor.commands.common import check_choice, check_fail_on
from advisor.errors import InputError

FORMAT_CHOICES = ("auto", "csv", "tsv", "keras", "wandb", "lightning", "hf", "jsonl", "detectron2",
                  "mmdet", "mmengine", "ultralytics", "text", "notebook", "tensorboard", "mlflow")

EPILOG = """Examples:

  advisor watch train.log                   (a growing log, any format diagnose reads)

  advisor watch lightning_logs/version_3/ --fail-on warning

  advisor watch runs/exp3/ --idle-timeout 600

  python train.py 2>&1 | advisor watch -    (passed through; findings on stderr)

  python train.py 2>&1 | advisor watch - --json > events.jsonl

  advisor watch trainer_state.json --fail-on error || kill $TRAIN_PID

Each finding is printed once, with its epoch, when it appears (new), when another rule of its
label replaces it (changed) and when it goes away (cleared): the findings `diagnose` gives on
the log up to that epoch, announced as rules/watch.yaml says (divergence at once; overfitting
once it has held for some epochs). When the input ends (a pipe's end, --idle-timeout), the
diagnosis of the finished log is announced as it stands.
"""

_FAIL_LEVEL = {"info": 0, "warning": 1, "error": 2}


class _Passthrough:
    """The input copied to stdout unchanged; a closed stdout (`| head`) ends the copy, not the watch."""

    def __init__(self) -> None:
        self.stream = sys.stdout.buffer

    def write(self, data: bytes) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(data)
        except BrokenPipeError:
            self._closed()

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._closed()

    def _closed(self) -> None:
        self.stream = None
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more (not even Python's exit flush) goes there
        os.close(devnull)


def watch(
    path: str = typer.Argument(..., help="A growing training log (any format diagnose reads: CSV, Lightning "
                               "version folder, trainer_state.json, TensorBoard run folder, console text ...), "
                               "or - for standard input, passed through to stdout."),
    format: str = typer.Option("auto", "--format", "-f", help=f"Force the log format: {', '.join(FORMAT_CHOICES)}."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help="role=column: override a column role "
                                             "(epoch, step, train_loss, val_loss, train_metric, val_metric, lr, grad_norm)."),
    json_: bool = typer.Option(False, "--json", help="One JSON object per event on stdout, nothing else "
                               "(standard input is then not passed through)."),
    fail_on: str = typer.Option("never", "--fail-on", help="Stop and exit 1 at the first finding at or above: "
                                "error, warning, info, never."),
    idle_timeout: Optional[float] = typer.Option(None, "--idle-timeout", help="Seconds without new data after "
                                                 "which the log is taken as finished (default: never for a "
                                                 "file; a pipe ends when its input does)."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between looks at a file (and between "
                                   "judgements of a pipe)."),
    optimizer: Optional[str] = typer.Option(None, help="Optimizer used: sgd, adam, adamw, rmsprop."),
    model_family: Optional[str] = typer.Option(None, help="Model family: cnn, transformer, mlp, rnn."),
    num_classes: Optional[int] = typer.Option(None, help="Number of classes (enables the chance-level check)."),
    current: Optional[List[str]] = typer.Option(None, help="The run's hyperparameters, e.g. lr=1e-3,wd=1e-4,bs=64."),
) -> None:
    """Follow a run while it trains: its findings as they appear, change and go away."""
    from advisor.render.watch import event_line
    from advisor.units import parse_assignments
    from advisor.watch.follow import (
        STDIN, Follower, PathSource, SpoolSource, follow_path, follow_stdin, wait_for_log,
    )
    from advisor.watch.monitor import Monitor

    if format not in FORMAT_CHOICES:
        raise InputError(f"--format: unknown format '{format}' (choose from {', '.join(FORMAT_CHOICES)})")
    check_fail_on(fail_on)
    check_choice("--optimizer", optimizer, ("sgd", "adam", "adamw", "rmsprop", "other"))
    check_choice("--model-family", model_family, ("cnn", "transformer", "mlp", "rnn", "other"))
    if num_classes is not None and num_classes <= 0:
        raise InputError(f"--num-classes: must be positive, got {num_classes}")
    if idle_timeout is not None and not idle_timeout > 0:
        raise InputError(f"--idle-timeout: must be a positive number of seconds, got {idle_timeout}")
    if not interval > 0:
        raise InputError(f"--interval: must be a positive number of seconds, got {interval}")
    overrides = parse_assignments(map_, "--map")
    fmt = None if format == "auto" else format
    stdin = path == STDIN
    mon = Monitor(optimizer=optimizer, model_family=model_family, num_classes=num_classes,
                  current=parse_assignments(current, "--current"), stop_on=(), map=overrides,
                  name=STDIN if stdin else path)
    analysis = mon.kb.catalogue.analysis
    out = sys.stdout if json_ or not stdin else sys.stderr
    prefix = "advisor: " if stdin and not json_ else ""
    level = _FAIL_LEVEL.get(fail_on)
    failed = False

    def emit(events) -> bool:
        nonlocal failed
        import json

        for e in events:
            if json_:
                out.write(json.dumps(e.line()) + "\n")
            else:
                out.write(prefix + event_line(e) + "\n")
                if e.advice:
                    out.write(prefix + "  -> " + e.advice + "\n")
        out.flush()
        failed = level is not None and mon.worst_announced() >= level
        return failed

    def waiting(reason: str) -> None:
        if not json_:
            sys.stderr.write(f"advisor: waiting for {path}: {reason}\n")
            sys.stderr.flush()

    try:
        if stdin:
            source = SpoolSource(fmt, overrides, analysis)
            try:
                follow_stdin(Follower(source, mon, interval), source, None if json_ else _Passthrough(), emit,
                             idle_timeout)
            finally:
                source.close()
        else:
            wait_for_log(Path(path), idle_timeout, interval, waiting)
            follow_path(Follower(PathSource(Path(path), fmt, overrides, analysis), mon, interval), emit,
                        idle_timeout, waiting)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if failed:
        raise typer.Exit(1)

