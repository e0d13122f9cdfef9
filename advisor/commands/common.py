"""What every command shares: the one output console and safe writing of output files."""

from __future__ import annotations

import os
from pathlib import Path

from advisor.errors import InputError


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)


def check_output_path(path: Path) -> None:
    """Fail before the work, not after it, when an output file cannot be written there."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a file name")
    if not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist")


def write_output(path: Path, text: str | None, inputs: list[Path], writer=None) -> None:
    """Write an output file without ever clobbering an input; atomically, via a temporary file."""
    resolved = path.resolve()
    if any(resolved == p.resolve() for p in inputs if p.exists()):
        raise InputError(f"{path}: is one of the input logs; choose another output file")
    check_output_path(path)
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


def check_choice(option: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value.lower() not in choices:
        raise InputError(f"{option}: unknown value '{value}' (choose from {', '.join(choices)})")


FAIL_ON = ("error", "warning", "info", "never")
_FAIL_LEVEL = {"info": 0, "warning": 1, "error": 2}


def check_fail_on(fail_on: str) -> None:
    if fail_on not in FAIL_ON:
        raise InputError(f"--fail-on: expected one of {', '.join(FAIL_ON)}, got '{fail_on}'")


def exit_for(fail_on: str, worst_severity: int) -> None:
    """Exit 1 when a finding is at or above --fail-on (worst_severity: -1 none, 0 info ... 2 error)."""
    import typer

    if fail_on != "never" and worst_severity >= _FAIL_LEVEL[fail_on]:
        raise typer.Exit(1)
