"""Training tasks: what `build(hp)` returns, and how a `TASK` argument becomes one.

A task is given as `path/to/file.py:build` or `package.module:build` (`:build` may be left
out). advisor calls `build(hp)` with the hyperparameters it controls (for example
`{"batch_size": 64}`); the builder uses the ones it knows and returns an :class:`advisor.Task`
or any object with the same attributes:

    model         a torch.nn.Module
    train_loader  an iterable of (inputs, targets) batches; inputs a tensor, a tuple of tensors
                  (passed as model(*inputs)) or a dict (model(**inputs))
    val_loader    the same, for evaluation (may be None where a command does not evaluate)
    loss_fn       callable(outputs, targets) -> scalar tensor
    metric        "accuracy", "loss", or a callable(outputs, targets) -> float

advisor owns the optimizer, the schedule, the device placement and the evaluation.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from advisor.errors import InputError

REQUIRED = ("model", "train_loader", "val_loader", "loss_fn", "metric")
METRICS = ("accuracy", "loss")


@dataclass
class Task:
    """What a task builder returns: the model, its data, its loss and how to score it."""

    model: Any
    train_loader: Iterable
    val_loader: Union[Iterable, None]
    loss_fn: Callable
    metric: Union[str, Callable] = "loss"


def split_spec(spec: str) -> tuple[str, str]:
    """'a/b.py:build' -> ('a/b.py', 'build'); 'pkg.mod' -> ('pkg.mod', 'build')."""
    spec = spec.strip()
    if not spec:
        raise InputError("TASK: empty; give path/to/file.py:build or package.module:build")
    head, sep, tail = spec.rpartition(":")
    # 'C:\\x\\task.py' has a colon that is part of the path, not a function name
    if sep and tail and not any(ch in tail for ch in "/\\.") and head:
        return head, tail
    return spec, "build"


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target or Path(target).is_file()


def _user_frame(exc: BaseException, filename: str | None) -> str:
    """'file.py:12: ' for the innermost traceback frame inside the user's file, if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    if filename:
        target = str(Path(filename).resolve())
        inside = [f for f in frames if f.filename and str(Path(f.filename).resolve()) == target]
        if inside:
            return f"{Path(filename).name}:{inside[-1].lineno}: "
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_EXIT_HINT = (" (a script's command-line code runs when it is imported: put it under "
              "`if __name__ == '__main__':`)")


def _exit_call(exc: SystemExit) -> str:
    return "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"


def load_builder(spec: str) -> tuple[Callable, str, str | None]:
    """Import the module or file named by `spec`; return (build function, label, source file)."""
    target, func = split_spec(spec)
    source: str | None = None
    if _is_path(target):
        path = Path(target).expanduser()
        if not path.exists():
            raise InputError(f"{target}: task file not found")
        if not path.is_file():
            raise InputError(f"{target}: is not a file; give path/to/file.py:build")
        source = str(path)
        name = f"advisor_task_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise InputError(f"{target}: cannot be imported as Python (expected a .py file)")
        module = importlib.util.module_from_spec(module_spec)
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)  # so the task file can import its neighbours
        sys.modules[name] = module
        argv = sys.argv
        # imported as `python task.py` would run it: a parser at import time sees no advisor options
        sys.argv = [str(path)]
        try:
            module_spec.loader.exec_module(module)
        except SyntaxError as exc:
            sys.modules.pop(name, None)
            raise InputError(f"{target}:{exc.lineno}: syntax error: {exc.msg}") from None
        except Exception as exc:  # the user's code failed while importing
            sys.modules.pop(name, None)
            raise InputError(f"{target}: importing the task failed: {_user_frame(exc, source)}"
                             f"{_describe(exc)}") from None
        except SystemExit as exc:  # sys.exit() or argparse at import time
            sys.modules.pop(name, None)
            raise InputError(f"{target}: importing the task called {_user_frame(exc, source)}{_exit_call(exc)}"
                             f"{_EXIT_HINT}") from None
        finally:
            sys.argv = argv
            if sys.path and sys.path[0] == folder:
                sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name and target.startswith(exc.name):
                raise InputError(f"{target}: no such module or task file (give path/to/file.py:build "
                                 "or package.module:build)") from None
            raise InputError(f"{target}: importing the task failed: {_describe(exc)}") from None
        except Exception as exc:
            raise InputError(f"{target}: importing the task failed: {_describe(exc)}") from None
        except SystemExit as exc:
            raise InputError(f"{target}: importing the task called {_exit_call(exc)}{_EXIT_HINT}") from None
        source = getattr(module, "__file__", None)
    build = getattr(module, func, None)
    if build is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        hint = f" (functions there: {', '.join(found[:6])})" if found else ""
        raise InputError(f"{target}: has no function '{func}'{hint}")
    if not callable(build):
        raise InputError(f"{target}: '{func}' is not a function")
    return build, f"{target}:{func}", source


def validate_task(task: Any, label: str) -> Any:
    """Check the object a builder returned has what the training commands need."""
    missing = [a for a in REQUIRED if not hasattr(task, a)]
    if task is None or missing:
        got = "None" if task is None else type(task).__name__
        raise InputError(f"{label}: build(hp) returned {got}, which lacks {', '.join(missing or REQUIRED)} "
                         "(return advisor.Task(model=..., train_loader=..., val_loader=..., "
                         "loss_fn=..., metric=...))")
    import torch  # only here: a task is about to be trained

    if not isinstance(task.model, torch.nn.Module):
        raise InputError(f"{label}: task.model is a {type(task.model).__name__}, not a torch.nn.Module")
    if not any(p.requires_grad for p in task.model.parameters()):
        raise InputError(f"{label}: task.model has no trainable parameters")
    if not callable(task.loss_fn):
        raise InputError(f"{label}: task.loss_fn is not callable")
    if task.train_loader is None or not hasattr(task.train_loader, "__iter__"):
        raise InputError(f"{label}: task.train_loader is not iterable (give a DataLoader or any iterable of batches)")
    if task.val_loader is not None and not hasattr(task.val_loader, "__iter__"):
        raise InputError(f"{label}: task.val_loader is not iterable")
    metric = task.metric
    if not callable(metric) and metric not in METRICS:
        raise InputError(f"{label}: task.metric is {metric!r}; expected 'accuracy', 'loss' or a callable")
    return task


def load_task(spec: str, hp: dict | None = None) -> Any:
    """Import the builder named by `spec`, call build(hp), validate what it returns."""
    build, label, source = load_builder(spec)
    try:
        task = build(dict(hp or {}))
    except InputError:
        raise
    except Exception as exc:  # the user's builder failed: name where, and what
        raise InputError(f"{label}: build(hp) raised {_user_frame(exc, source)}{_describe(exc)}") from None
    except SystemExit as exc:
        raise InputError(f"{label}: build(hp) called {_user_frame(exc, source)}{_exit_call(exc)}; "
                         "a task must return, not exit") from None
    return validate_task(task, label)
