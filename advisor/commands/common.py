"""What every command shares: the one output console and safe writing of output files."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from advisor.errors import InputError


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)


# --------------------------------------------------------------------------- output files
# Every file a command writes (--report, --plot, --out, --fix) goes through write_output. Its rules:
# never onto an input of the run; an existing file only with --force, never a read-only one, and
# keeping its mode; through a symlink to its target; a device or FIFO (or our own stdout) written
# to directly and never replaced; a regular file replaced at once, so nothing half-written is left.

def _stat(path: Path) -> Optional[os.stat_result]:
    """The file `path` names, following symlinks the way the kernel does (/dev/stdout too)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


def _is_input(path: Path, st: os.stat_result, inputs: Iterable[Path]) -> Optional[Path]:
    """The input that `path` is, by inode (hard links, symlinks) or by resolved path."""
    resolved = path.resolve()
    for p in inputs:
        try:
            other = os.stat(p)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) or Path(p).resolve() == resolved:
            return Path(p)
    return None


def check_output_path(path: Path, inputs: Iterable[Path] = (), force: bool = False) -> Optional[os.stat_result]:
    """Fail before the work, not after it, when `path` may not or cannot be written.

    Returns the stat of what exists there now (through symlinks), or None for a new file."""
    st = _stat(path)
    if st is None:
        folder = Path(os.path.realpath(path)).parent  # a dangling symlink: its target's folder
        if not folder.is_dir():
            raise InputError(f"{path}: folder {folder} does not exist")
        return None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory; give a file name")
    found = _is_input(path, st, inputs)
    if found is not None:
        shown = "" if str(found) == str(path) else f" ({found})"
        raise InputError(f"{path}: is an input of this run{shown}; choose another output file")
    if not stat.S_ISREG(st.st_mode) or _is_stdio(st):
        return st  # a device, FIFO or our own stdout: written to, never replaced, no --force needed
    # root may write anything: a file without write bits is read-only by its owner's choice
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise InputError(f"{path}: is read-only; not replacing it")
    if not force:
        raise InputError(f"{path}: already exists; use --force to replace it")
    return st


def write_output(path: Path, text: Optional[str], inputs: Iterable[Path], writer: Optional[Callable] = None,
                 force: bool = False) -> None:
    """Write `text` (UTF-8), or what writer(binary file) writes, to `path` by the rules above."""
    inputs = list(inputs)
    st = check_output_path(path, inputs, force)
    write = writer or (lambda fh: fh.write((text or "").encode("utf-8")))
    try:
        fd = _is_stdio(st) if st is not None else None
        if fd is not None:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()  # what was printed before comes first
            with os.fdopen(os.dup(fd), "wb") as fh:
                write(fh)
        elif st is not None and not stat.S_ISREG(st.st_mode):
            with open(path, "wb") as fh:
                write(fh)
        else:
            _replace(Path(os.path.realpath(path)), st, write)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


def _is_stdio(st: os.stat_result) -> Optional[int]:
    """1 or 2 when `st` is this process's stdout or stderr (--report /dev/stdout, even redirected
    to a file): written through that descriptor, so its offset is shared and nothing is truncated."""
    for fd in (1, 2):
        try:
            own = os.fstat(fd)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
            return fd
    return None


def _replace(target: Path, st: Optional[os.stat_result], write: Callable) -> None:
    """Write a temporary file beside `target`, then rename it over: `target` is whole or untouched."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.advisor-tmp")
    try:
        # 0o666 less the umask, as any new file; O_EXCL: never through a link planted at tmp
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))  # a replaced file keeps its mode
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


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
