"""The search's settings and what one trial runs (the trainer or the user's objective)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Optional

from pydantic import BaseModel

from advisor.act.search.space import grid_configs, grid_points, suggest
from advisor.act.search.trials import worker_id as _worker_id
from advisor.errors import AdvisorError, InputError
from advisor.space import Space


class SearchSpec(BaseModel):
    """Everything a worker needs, stored in the study (user attribute `advisor_search`)."""

    version: int = 1
    task: str
    space: dict[str, Any]
    trials: int
    epochs: int
    seed: int = 0
    top_k: int = 5
    seeds_final: int = 3
    direction: str = "maximize"
    metric: str = "val_metric"
    workers: int = 1
    stop_min_gain: float = 0.0       # the plan's stop rules (0: off)
    stop_stale: int = 0
    baseline: Optional[dict[str, Any]] = None
    fixed: dict[str, Any] = {}
    # the search phases in order ({name: explore | refine | grid | manual, trials}); empty: one
    # phase over every trial (a study made before phases)
    phases: list[dict[str, Any]] = []

    def get_space(self) -> Space:
        return Space.model_validate(self.space)


def stop_rules(space: Space) -> tuple[float, int]:
    """(min gain per trial, stale window) from the plan; only for random and Bayesian searches."""
    if space.strategy not in ("random", "bayesian"):
        return 0.0, 0
    extra = getattr(space, "model_extra", None) or {}
    stop = extra.get("stop") or {}
    from advisor.advice.plan import tables

    s = tables()["budget"]["stop"]
    gain = float(stop.get("min_gain_per_trial", s["min_gain_per_trial"]))
    stale = int(stop.get("stale_trials", s["stale_trials"]))
    return gain, stale


def budget_trials(space: Space, baseline: Optional[dict], trials: Optional[int]) -> int:
    """The search's trial budget: --trials, else the plan's (a grid: every point, plus the baseline)."""
    if trials is not None:
        return int(trials)
    if space.strategy in ("grid", "manual"):
        grid = grid_points(space)
        n = math.prod(len(v) for v in grid.values()) if grid is not None else len(grid_configs(space))
        return n + (1 if baseline else 0)
    return int(space.trials or 100)


class Runner:
    """Runs one configuration: the task's build(hp) trained by advisor, or the user's objective."""

    def __init__(self, task: str, device=None, settings=None):
        from advisor.act.train import load_settings

        self.task = task
        self.settings = settings or load_settings()
        self.device = device
        if task == "demo":
            from advisor.act import demo

            self.fn, self.label, self.source = demo.build, "demo", None
        else:
            from advisor.act.task import load_builder

            self.fn, self.label, self.source = load_builder(task)
        self.kind = "objective" if _positional(self.fn) >= 2 else "build"
        self.last = None  # the TrainResult of the last run (its curves), for the trial's record

    def check(self, hp: dict, seed: int):
        """Build the task once (the baseline's hyperparameters) and validate it; return it."""
        if self.kind != "build":
            return None
        from advisor.act.lr_find import seed_everything
        from advisor.act.task import _describe, _exit_call, _user_frame, validate_task

        seed_everything(seed)
        try:
            built = self.fn(dict(hp))
        except AdvisorError:
            raise
        except Exception as exc:
            raise InputError(f"{self.label}: build(hp) raised {_user_frame(exc, self.source)}{_describe(exc)}"
                             f"{f' (hp {_fmt_hp(hp)})' if hp else ''}") from None
        except SystemExit as exc:
            raise InputError(f"{self.label}: build(hp) called {_user_frame(exc, self.source)}{_exit_call(exc)}"
                             f"{f' (hp {_fmt_hp(hp)})' if hp else ''}; a task must return, not exit") from None
        task = validate_task(built, self.label)
        if task.val_loader is None:
            raise InputError(f"{self.label}: task.val_loader is None; advisor search evaluates every epoch "
                             "on validation data")
        return task

    def run(self, hp: dict, report: Callable[[float, int], None], seed: int, epochs: int,
            on_epoch: Callable[[int], None]) -> float:
        from advisor.act.lr_find import seed_everything
        from advisor.act.train import TrialError, config_from_hp, describe, train

        seed_everything(seed)
        self.last = None
        if self.kind == "objective":
            count = {"n": 0}

            def counted(value, epoch):
                count["n"] += 1
                on_epoch(count["n"])
                report(float(value), int(epoch))

            value = self.fn(dict(hp), counted)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise TrialError(f"objective returned {type(value).__name__}, not a number") from None
        from advisor.act.task import _user_frame, validate_task

        try:
            built = self.fn(dict(hp))
        except AdvisorError as exc:
            raise TrialError(str(exc)) from None
        except Exception as exc:
            raise TrialError(f"build(hp) raised {_user_frame(exc, self.source)}{describe(exc)}") from None
        try:
            task = validate_task(built, self.label)
        except AdvisorError as exc:
            raise TrialError(str(exc)) from None
        config = config_from_hp(hp, self.settings, epochs=epochs)
        result = train(task, config, device=self.device, report=report, hp=hp, settings=self.settings,
                       on_epoch=on_epoch)
        self.last = result
        return result.value


def _positional(fn) -> int:
    """Required positional parameters of fn: build(hp) has 1, objective(hp, report) 2."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in sig.parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


def _fmt_hp(hp: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, tuples to lists."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        with contextlib.suppress(Exception):
            value = value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class _TrialFailed(Exception):
    """Raised inside the objective so that Optuna marks the trial FAIL (its reason is recorded)."""


def _extra(trial, spec: SearchSpec, phase: Optional[str], final_loop: bool) -> Optional[str]:
    """Why this trial, just started, is one too many (None: it counts). Decided from the storage,
    so that N workers on one study run exactly the budget: the trials are ranked by number (the
    storage's order of creation); a search trial with `spec.trials` counted trials before it, or
    one of a phase the study has left, is an extra; in the final phase, a (configuration, seed)
    that another worker already runs, or a trial that is not one of the final re-runs."""
    from optuna.trial import TrialState as TS

    from advisor.act.search.phases import PHASE_ATTR
    from advisor.act.search.trials import is_extra, is_final, retried

    attrs = trial.user_attrs
    if final_loop and not attrs.get("final"):
        return "extra: the final re-runs were all taken by other workers"
    trials = trial.study.get_trials(deepcopy=False)
    before = [t for t in trials if t.number < trial.number and not is_extra(t) and t.state != TS.WAITING
              and not t.user_attrs.get("interrupted")]
    if attrs.get("final"):
        key = (attrs.get("config"), attrs.get("seed"))
        if any(is_final(t) and (t.user_attrs.get("config"), t.user_attrs.get("seed")) == key for t in before):
            return "extra: this final re-run is already run by another worker"
        return None
    again = retried(trials)
    counted = sum(1 for t in before if not is_final(t) and not (t.state == TS.FAIL and t.number in again))
    if counted >= spec.trials:
        return f"extra: the budget of {spec.trials} trials was taken by other workers"
    names = [str(ph.get("name")) for ph in spec.phases]
    now = str(trial.study.user_attrs.get(PHASE_ATTR) or "").partition(":")[0]
    if phase in names and now in names and names.index(now) > names.index(phase):
        return f"extra: the study moved on to the {now} phase"
    return None


def make_objective(runner: Runner, spec: SearchSpec, space: Space, phase: Optional[str] = None,
                   final_loop: bool = False, shared: bool = True, cut: Optional[Callable[[], bool]] = None):
    """The Optuna objective: hyperparameters from the trial, the run, and the bookkeeping
    (`phase`: the search phase the trial belongs to, kept in its user attributes; `cut()`: read
    after each reported epoch of a search trial, True prunes the trial there: the caller's
    deadline came while it trained)."""
    import optuna

    from advisor.act.task import _exit_call, _user_frame
    from advisor.act.train import Diverged, TrialError, describe

    worker = _worker_id()

    def objective(trial) -> float:
        # the owner first: a trial whose process is killed from here on is known to be this one's
        trial.set_user_attr("worker", worker)
        if phase is not None and not trial.user_attrs.get("final"):
            trial.set_user_attr("phase", phase)
        why = _extra(trial, spec, phase, final_loop) if shared else None
        if why:  # another worker spent the budget (or moved the phase on) meanwhile: not counted
            trial.set_user_attr("extra", True)
            trial.set_user_attr("extra_reason", why)
            raise optuna.TrialPruned(why)
        try:
            return run_trial(trial)
        except KeyboardInterrupt:  # Ctrl-C anywhere in the trial, its sampling included
            with contextlib.suppress(Exception):
                trial.set_user_attr("interrupted", True)
                trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise

    def run_trial(trial) -> float:
        attrs = trial.user_attrs
        final = bool(attrs.get("final"))
        seed = int(attrs.get("seed", spec.seed))
        searched = suggest(trial, space)
        hp = _plain({**spec.fixed, **searched, "epochs": spec.epochs, "seed": seed})
        trial.set_user_attr("hp", hp)  # with its seed and epochs
        trained = {"n": 0, "reports": 0, "bookkeeping_s": 0.0}

        def on_epoch(n: int) -> None:
            trained["n"] = n

        def report(value: float, epoch: int) -> None:
            first = trained["reports"] == 0
            trained["reports"] += 1
            if not math.isfinite(value):
                # an objective's first report stands for its first step: advisor sees no earlier one
                raise Diverged(f"validation metric {value} after epoch {epoch + 1}", epoch, value,
                               at_start=first and runner.kind == "objective")
            if final:
                return
            began = time.perf_counter()
            trial.report(value, epoch)
            prune = trial.should_prune()
            deadline = cut is not None and cut()
            trained["bookkeeping_s"] += time.perf_counter() - began
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
            if deadline:
                trial.set_user_attr("cut", True)
                raise optuna.TrialPruned(f"cut after epoch {epoch + 1}: the search's deadline came")

        try:
            began = time.perf_counter()
            value = runner.run(hp, report, seed, spec.epochs, on_epoch)
            # the training alone, without the storage's round trips at each epoch: what a re-run
            # of this configuration at another seed (a final one, which reports nothing) costs
            trial.set_user_attr("train_s", round(time.perf_counter() - began - trained["bookkeeping_s"], 3))
            _record_curve(trial, getattr(runner, "last", None))
            if not math.isfinite(value):
                raise Diverged(f"the objective returned {value}", max(0, trained["n"] - 1), value,
                               at_start=trained["reports"] == 0)
            return value
        except optuna.TrialPruned:
            trial.set_user_attr("pruned_at", trained["n"])
            raise
        except Diverged as exc:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("pruned_reason", exc.reason)
            if exc.at_start:
                trial.set_user_attr("nonfinite_at_start", True)
            if final:
                trial.set_user_attr("fail_reason", f"diverged: {exc.reason}")
                raise _TrialFailed(exc.reason) from None
            with contextlib.suppress(Exception):
                trial.report(float("nan"), exc.epoch)  # so that an audit sees the non-finite value
            raise optuna.TrialPruned(exc.reason) from None
        except TrialError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise _TrialFailed(str(exc)) from None
        except AdvisorError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise _TrialFailed(str(exc)) from None
        except Exception as exc:  # the user's objective raised
            reason = _oom_reason(exc, hp) or f"{describe(exc)}"
            trial.set_user_attr("fail_reason", reason)
            raise _TrialFailed(reason) from None
        except SystemExit as exc:  # the task called sys.exit() (or argparse did): nothing left to search
            reason = f"{runner.label}: {runner.kind}(hp{', report' if runner.kind == 'objective' else ''}) " \
                     f"called {_user_frame(exc, runner.source)}{_exit_call(exc)} in trial #{trial.number}; advisor search cannot go on " \
                     "(a task must return, not exit)"
            trial.set_user_attr("fail_reason", reason)
            raise InputError(reason) from None
        finally:
            trial.set_user_attr("epochs", trained["n"])

    return objective


def _record_curve(trial, result) -> None:
    """The trial's curves per epoch (training loss, validation metric): the report draws the
    finalists' curves and diagnoses them from here."""
    if result is None or not result.history:
        return
    with contextlib.suppress(Exception):
        trial.set_user_attr("curve", {"train_loss": [_finite(v) for v in result.train_loss],
                                      "val": [_finite(v) for v in result.history]})


def _finite(value: float) -> Optional[float]:
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _oom_reason(exc: BaseException, hp: dict) -> Optional[str]:
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        bs = hp.get("batch_size")
        at = f" at batch_size={bs}" if bs is not None else ""
        return (f"CUDA out of memory{at}: lower batch_size (cap the batch-size range of the search "
                "below this value)")
    return None
