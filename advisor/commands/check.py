"""`advisor check`: lint a search space before it burns compute."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from advisor.commands.common import check_choice, check_fail_on, console, exit_for, write_output
from advisor.errors import InputError


EPILOG = """Examples:

  advisor check space.yaml

  advisor check sweep.yaml --budget 50h --trial-time 30m

  advisor check space.yaml --model-family transformer --optimizer adamw

  advisor check space.yaml --fix                # writes space.fixed.yaml beside it

  advisor check sweep.yaml --fix --in-place     # rewrites sweep.yaml itself

  advisor check space.yaml --json --fail-on warning
"""


def check(
    space: Path = typer.Argument(..., help="advisor space YAML (as `advisor plan --emit yaml` writes) or a W&B sweep YAML."),
    budget: Optional[str] = typer.Option(None, help="Budget, e.g. 50h or 2d: costs the grid."),
    trial_time: Optional[str] = typer.Option(None, help="Time per trial, e.g. 30m."),
    epoch_time: Optional[str] = typer.Option(None, help="Time per epoch, e.g. 90s (with the space's epochs or --epochs)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs per trial, when the space does not say."),
    optimizer: Optional[str] = typer.Option(None, help="The optimizer, when the space does not fix it: sgd, adam, adamw, rmsprop."),
    model_family: Optional[str] = typer.Option(None, help="Model family: cnn, transformer, mlp, rnn."),
    fix: bool = typer.Option(False, "--fix", help="Write the space with the findings' fixes applied (to SPACE.fixed.yaml, or --out)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where --fix writes (never over an existing file)."),
    in_place: bool = typer.Option(False, "--in-place", help="With --fix: rewrite SPACE itself (through a "
                                  "symlink, keeping its mode; never a read-only file)."),
    json_: bool = typer.Option(False, "--json", help="Print the findings as JSON on stdout (nothing else)."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 on findings at or above: error, warning, info, never."),
) -> None:
    """Lint a search space: scales, ranges, grid cost, coupled parameters, trials, pruning, seeds."""
    from advisor.advice.check import check as run_check
    from advisor.units import parse_hours

    check_fail_on(fail_on)
    check_choice("--optimizer", optimizer, ("sgd", "adam", "adamw", "rmsprop", "other"))
    check_choice("--model-family", model_family, ("cnn", "transformer", "mlp", "rnn", "other"))
    if epochs is not None and epochs <= 0:
        raise InputError(f"--epochs: must be positive, got {epochs}")
    if (out or in_place) and not fix:
        raise InputError("--out and --in-place go with --fix")
    if out and in_place:
        raise InputError("--out and --in-place: choose one")
    context = {
        "budget_hours": parse_hours(budget) if budget else None,
        "trial_hours": parse_hours(trial_time, "--trial-time") if trial_time else None,
        "epoch_hours": parse_hours(epoch_time, "--epoch-time") if epoch_time else None,
        "epochs": epochs, "optimizer": optimizer.lower() if optimizer else None,
        "model_family": model_family.lower() if model_family else None,
    }
    report, sf, fixes = run_check(space, context)
    if fix:
        _write_fixed(space, sf, fixes, out, in_place, report)
    if json_:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        from advisor.render.terminal import print_finding

        con = console()
        con.rule(f"[bold]{sf.path}[/]")
        con.print(f"[dim]{sf.format} space, {report.space.strategy}, {len(report.space.params)} parameters"
                  + (f", {report.space.trials} trials" if report.space.trials else "") + "[/]")
        if report.inferred:  # what the file said that the user did not: say it, so it can be corrected
            told = "; ".join(f"{k.replace('_', ' ')} {_shown(v.value)} (from {v.source})"
                             for k, v in report.inferred.items())
            con.print(f"[dim]inferred: {told} — give --model-family, --optimizer or --epochs to override[/]",
                      highlight=False)
        for finding in report.findings:
            print_finding(con, finding)
        if not report.findings:
            con.print("[green]No problems found.[/]")
    exit_for(fail_on, report.worst_severity())


def _shown(value) -> str:
    return "on" if value is True else str(value)


def _write_fixed(space: Path, sf, fixes, out: Optional[Path], in_place: bool, report) -> None:
    import io

    from advisor.advice.check import fixed_document

    target = space if in_place else (out or space.with_name(f"{space.stem}.fixed{space.suffix or '.yaml'}"))
    if not in_place and target.is_file():  # a device or pipe (--out /dev/stdout) is written to
        raise InputError(f"{target}: exists already; choose another file with --out (nothing was written)")
    yaml, doc, notes = fixed_document(sf, fixes)
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    # --in-place is the user's leave to replace SPACE; any other file that exists is refused above
    write_output(target, buffer.getvalue(), [] if in_place else [space], force=in_place)
    msg = console(stderr=True)
    msg.print(f"advisor: wrote {target} ({len(fixes)} fixes)")
    for note in notes:
        msg.print(f"advisor: note: {note}")
