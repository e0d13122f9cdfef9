"""From the command line: a request checked and turned into a search spec before anything is written."""

from __future__ import annotations

import time
from typing import Any, Optional

from pydantic import BaseModel

from advisor.act.search.objective import Runner, SearchSpec, _plain, budget_trials, stop_rules
from advisor.act.search.phases import split_trials
from advisor.act.search.run import _quiet_optuna, _spec_of, latest_study, load_spec, study_names
from advisor.act.search.space import (
    _check_space, demo_space, plan_space, space_difference, space_from_file,
)
from advisor.act.search.storage import _hide_password, is_journal, is_server, open_storage, storage_url
from advisor.errors import InputError


class Request(BaseModel):
    """What `advisor search` was asked (already parsed: durations in hours / seconds)."""

    task: Optional[str] = None
    demo: bool = False
    plan: Optional[str] = None
    budget_hours: Optional[float] = None
    trial_hours: Optional[float] = None
    params: Optional[list[str]] = None
    epochs: Optional[int] = None
    optimizer: Optional[str] = None
    current: dict[str, str] = {}
    trials: Optional[int] = None
    timeout_s: Optional[float] = None
    storage: Optional[str] = None
    study: Optional[str] = None
    resume: bool = False
    workers: int = 1
    device: str = "auto"
    seed: int = 0
    top_k: Optional[int] = None
    direction: Optional[str] = None
    sanity: bool = False
    stop_rule: bool = True       # --no-stop-rule: False


class Prepared(BaseModel):
    """Everything checked and decided before the study is written to."""

    model_config = {"arbitrary_types_allowed": True}

    spec: SearchSpec
    url: str
    study: str
    storage: Any = None
    runner: Any = None
    resume: bool
    timeout_s: Optional[float] = None   # --timeout, else the plan's wall-clock budget for the search
    notes: list[str] = []
    joined: bool = False                 # the same command on a server storage: this process joined
    spent: Optional[str] = None          # joined a study whose search budget is already spent: why


def _validate_request(req: Request) -> None:
    if req.demo and req.task:
        raise InputError("give either TASK or --demo, not both")
    if not req.demo and not req.task and not req.resume:
        raise InputError("TASK: missing; give path/to/file.py:build (or :objective), package.module:build, or --demo")
    for name, value, least in (("--trials", req.trials, 1), ("--epochs", req.epochs, 1), ("--workers", req.workers, 1),
                               ("--top-k", req.top_k, 0)):
        if value is not None and value < least:
            raise InputError(f"{name}: must be at least {least}, got {value}")
    if req.timeout_s is not None and req.timeout_s <= 0:
        raise InputError("--timeout: must be positive")
    if req.direction is not None and req.direction not in ("maximize", "minimize"):
        raise InputError(f"--direction: expected maximize or minimize, got '{req.direction}'")
    if req.resume and req.sanity:
        raise InputError("--sanity runs before a search; it cannot be combined with --resume")
    if req.plan and (req.budget_hours is not None or req.params):
        raise InputError("give either --plan FILE or --budget/--params (which make a plan), not both")
    if req.trial_hours is not None and req.budget_hours is None:
        raise InputError("--trial-time goes with --budget (they make the plan)")
    if req.demo and (req.plan or req.budget_hours is not None or req.params):
        raise InputError("--demo has its own plan; drop --plan, --budget and --params")


def prepare(req: Request, settings=None) -> Prepared:
    """Check every input and decide the search's settings; nothing is written yet. Order: the
    options, the plan file, the storage (fails fast), the existing study, the task (imported,
    built once with the baseline and validated)."""
    from advisor.act.train import load_settings, metric_direction

    settings = settings or load_settings()
    _validate_request(req)
    notes: list[str] = []
    task = "demo" if req.demo else req.task  # None: --resume takes the study's
    file_space = space_from_file(req.plan) if req.plan else None
    url = storage_url(req.storage, req.workers)
    if req.workers > 1 and url.startswith("sqlite"):
        raise InputError(f"--workers {req.workers}: SQLite is for one process; use --storage runs.journal "
                         "(several workers on this machine) or a PostgreSQL URL (several machines)")
    if req.resume and url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url.split(":///", 1)[1].split("?", 1)[0])
        if not path.is_file():
            raise InputError(f"--resume: {path}: no such file (the storage of the study to resume; --storage)")
    if req.resume and is_journal(url):
        from pathlib import Path

        if not Path(url).is_file():
            raise InputError(f"--resume: {url}: no such file (the storage of the study to resume; --storage)")
    # A storage file that does not exist yet is created only once the task has been checked (a task
    # that fails to import leaves no empty database behind); its folder is checked now.
    new_file = not req.sanity and _new_local_file(url)
    storage = None if req.sanity or new_file else open_storage(url, settings.search.storage_timeout)

    if req.resume:
        name = req.study or latest_study(storage, url, task)
        spec = load_spec(storage, url, name)
        task = task or spec.task
        if spec.task != task:
            notes.append(f"the study was made for task {spec.task}; running {task}")
            spec = spec.model_copy(update={"task": task})
        if file_space is not None:
            diff = space_difference(spec.get_space(), file_space)
            if diff:
                raise InputError(f"--study {name}: was created with a different space ({diff}); nothing was "
                                 "changed; resume with the same plan, or start a new --study")
        ignored = [o for o, v in (("--budget", req.budget_hours), ("--params", req.params), ("--epochs", req.epochs),
                                  ("--optimizer", req.optimizer), ("--current", req.current or None)) if v]
        if ignored:
            notes.append(f"--resume continues the stored plan: {', '.join(ignored)} ignored")
        update: dict[str, Any] = {"workers": max(req.workers, 1)}
        if req.trials is not None and req.trials != spec.trials:
            notes.append(f"trial budget changed from {spec.trials} to {req.trials}")
            update["trials"] = req.trials
            counts = {ph["name"]: ph["trials"] for ph in spec.phases}
            if "explore" in counts:  # the same split between the phases, for the new budget
                update["phases"] = split_trials(req.trials, counts["explore"], counts.get("refine", 0))
            elif spec.phases:
                update["phases"] = [{**spec.phases[0], "trials": req.trials}]
        if req.top_k is not None:
            update["top_k"] = req.top_k
        if not req.stop_rule and spec.stop_stale:
            update.update(stop_stale=0, stop_min_gain=0.0)
            notes.append("--no-stop-rule: the stop rule is off for the rest of the search")
        spec = spec.model_copy(update=update)
        runner = Runner(task, settings=settings)
        check_workers(req.workers, req.device, runner.kind, settings)
        return Prepared(spec=spec, url=url, study=name, storage=storage, runner=runner, resume=True,
                        timeout_s=req.timeout_s, notes=notes)

    runner = Runner(task, settings=settings)
    if not req.sanity:
        check_workers(req.workers, req.device, runner.kind, settings)
    from advisor.advice.plan import parse_current, parse_params

    optimizer = req.optimizer.lower() if req.optimizer else None
    if optimizer is not None and optimizer not in ("sgd", "adam", "adamw", "rmsprop"):
        raise InputError(f"--optimizer: unknown optimizer '{req.optimizer}' (choose from sgd, adam, adamw, rmsprop)")
    current = parse_current(req.current, optimizer)
    names = parse_params(req.params)

    # the task, built once with the current configuration: protocol errors stop here, in one line
    probe_hp = {**({"optimizer": optimizer} if optimizer else {}), **current}
    built = runner.check(probe_hp, req.seed)
    direction = req.direction
    if runner.kind == "build":
        own = metric_direction(built.metric)
        if own is None and direction is None:
            raise InputError(f"{runner.label}: task.metric is a callable; say --direction maximize or minimize "
                             "(or give the callable a `direction` attribute)")
        if own is not None and direction is not None and own != direction:
            raise InputError(f"--direction {direction}: contradicts task.metric {built.metric!r} ({own})")
        direction = direction or own
        metric_name = built.metric if isinstance(built.metric, str) else getattr(built.metric, "__name__", "metric")
        metric_name = f"val_{metric_name}"
    else:
        direction = _objective_direction(runner, direction, file_space, notes)
        metric_name = file_space.metric if file_space is not None else "objective"

    timeout_s = req.timeout_s
    if file_space is not None:
        space = file_space
        budget = ((getattr(space, "model_extra", None) or {}).get("stop") or {}).get("budget")
        if timeout_s is None and isinstance(budget, (int, float)) and budget > 0 and not req.sanity:
            timeout_s = float(budget) * 3600
            notes.append(f"the plan's budget, {budget:g} h of wall time, caps the search (--timeout to change it)")
        if _plan_direction(space) not in (None, direction):
            notes.append(f"the plan says {space.direction}; the task's metric is to {direction}: {direction} it is")
    elif req.demo:
        space = demo_space(settings)
    else:
        if req.budget_hours is not None:
            budget, trial_hours = req.budget_hours, req.trial_hours
            if trial_hours is None:
                trial_hours = _measure_trial_hours(runner, built, probe_hp, req.epochs or settings.trainer.epochs,
                                                   req.device, req.seed, settings)
                notes.append(f"one trial measured at about {trial_hours * 3600:.3g} s "
                             f"({req.epochs or settings.trainer.epochs} epochs); the plan is made for that")
        else:
            n = req.trials or settings.search.default_trials
            trial_hours = settings.search.nominal_trial_hours
            budget = n * trial_hours
            notes.append(f"no --budget: planned as {n} trials of {trial_hours:g} GPU-hour each "
                         "(the trial count sets the budget band)")
        space, plan = plan_space(budget_hours=budget, trial_hours=trial_hours,
                                 epochs=req.epochs or settings.trainer.epochs,
                                 params=names, optimizer=optimizer, current=current, workers=req.workers,
                                 metric=metric_name, direction=direction, name=task)
        notes += [n for n in plan.notes if "no CUDA GPU" not in n]
        notes += [f"the plan leaves {d.param} out: {d.why}" for d in plan.deferred]
        if req.budget_hours is None and req.top_k is None:
            space.top_k = settings.final.top_k  # no budget: the final seeds are not the plan's to cut
        if req.budget_hours is not None and timeout_s is None:
            final_hours = plan.budget.final_gpu_hours / max(1, plan.budget.workers)
            timeout_s = max(trial_hours, req.budget_hours - final_hours) * 3600
            notes.append(f"the budget caps the search at {timeout_s / 3600:.3g} h, leaving "
                         f"{final_hours:.3g} h for the final seeds")
    _check_space(space, req.plan or "the plan")
    space.direction = direction

    # what the search runs with
    epochs = req.epochs or space.epochs or space.fixed.get("epochs") or settings.trainer.epochs
    baseline = dict(space.baseline or {})
    fixed = {k: v for k, v in space.fixed.items() if k != "epochs"}
    if optimizer and "optimizer" not in space.params:
        fixed["optimizer"] = optimizer
    for k, v in current.items():
        (baseline if k in space.params else fixed)[k] = v
    if baseline and "optimizer" not in baseline and "optimizer" in space.params and fixed.get("optimizer"):
        baseline["optimizer"] = fixed.pop("optimizer")
    trials = budget_trials(space, baseline or None, req.trials)
    if space.strategy in ("random", "bayesian"):
        planned = (getattr(space, "model_extra", None) or {}).get("phases") or {}
        phases = split_trials(trials, planned.get("explore"), planned.get("refine"))
    else:
        phases = [{"name": space.strategy, "trials": trials}]
    gain, stale = stop_rules(space) if req.stop_rule else (0.0, 0)
    if req.trials is not None and stale:
        notes.append(f"--trials {req.trials}: the stop rule may end the search earlier (when the best improves by "
                     f"less than {gain:.1%} per trial over {stale} trials of a phase); --no-stop-rule runs all "
                     f"{req.trials}")
    top_k = req.top_k if req.top_k is not None else space.top_k
    seeds_final = space.seeds_final if space.seeds_final > 1 else settings.final.seeds
    spec = SearchSpec(task=task, space=_plain(space.to_yaml_dict()), trials=trials, epochs=int(epochs), seed=req.seed,
                      top_k=top_k, seeds_final=seeds_final, direction=direction, metric=metric_name,
                      workers=req.workers, stop_min_gain=gain, stop_stale=stale, baseline=_plain(baseline) or None,
                      fixed=_plain(fixed), phases=phases)
    if space.seeds > 1:
        notes.append(f"the plan asks for {space.seeds} seeds per configuration while exploring; advisor search "
                     "runs one and re-runs only the finalists with seeds")
    name = req.study or _default_name(task)
    if new_file:
        storage = open_storage(url, settings.search.storage_timeout)
    if storage is not None:
        stored = _check_new_study(storage, url, name, spec)
        if stored is not None:  # the same command on another machine made it: join, follow its plan
            notes.append(f"joined study {name} in {_hide_password(url)}: it follows the plan stored there")
            return Prepared(spec=stored, url=url, study=name, storage=storage, runner=runner, resume=True,
                            timeout_s=timeout_s, notes=notes, joined=True, spent=_spent(storage, name, stored))
    return Prepared(spec=spec, url=url, study=name, storage=storage, runner=runner, resume=False,
                    timeout_s=timeout_s, notes=notes)


def check_workers(workers: int, device_name: str, kind: str, settings, cores: Optional[int] = None,
                  device=None) -> None:
    """--workers K on one machine: with a GPU, one process per GPU (any K: past the GPU count they
    share them round robin); on the CPU at most cores x rules/search.yaml's
    `cpu_workers_per_core` (for advisor's trainer, or for a custom objective, which may wait on
    I/O), else InputError in one line saying why and what to do instead."""
    if workers <= 1:
        return
    from advisor.act.device import cpu_cores, resolve_device

    device = device if device is not None else resolve_device(device_name)
    if device.type != "cpu":
        return
    cores = cores if cores is not None else cpu_cores()
    per_core = settings.search.cpu_workers_per_core
    trainer = kind == "build"
    share = per_core.trainer if trainer else per_core.objective
    limit = max(1, int(cores * share + 1e-9))
    if workers <= limit:
        return
    field = "trainer" if trainer else "objective"
    per = f"{share:g} per core" if share >= 1 else f"one per {1 / share:g} cores"
    why = ("advisor's trainer keeps a core busy per worker: more workers would share the cores, every trial "
           "slower and none finished sooner" if trainer else
           "past that even an objective that waits on I/O mostly waits on the others")
    raise InputError(f"--workers {workers}: this machine trains on the CPU with {cores} core{'s' * (cores != 1)}, "
                     f"room for {limit} worker{'s' * (limit != 1)} ({per}, rules/search.yaml "
                     f"search.cpu_workers_per_core.{field}); {why}; use --workers {limit}, or add machines: the "
                     "same command on each, with a PostgreSQL --storage")


def _new_local_file(url: str) -> bool:
    """True for a SQLite or journal storage file that does not exist yet, in a folder that does
    (a missing folder: one line now, before the task is imported)."""
    from pathlib import Path

    if is_journal(url):
        path = Path(url)
    elif url.startswith("sqlite") and ":///" in url:
        rest = url.split(":///", 1)[1].split("?", 1)[0]
        if not rest or rest.startswith(":memory:"):
            return False  # open_storage says why not
        path = Path(rest)
    else:
        return False
    if path.exists() or path.is_symlink():
        return False
    if not path.parent.is_dir():
        raise InputError(f"--storage {url}: folder {path.parent} does not exist")
    return True


def _plan_direction(space) -> Optional[str]:
    """The direction a plan file states (W&B's goal included), or None where it says none."""
    return space.direction if "direction" in space.model_fields_set else None


def _objective_direction(runner: Runner, direction: Optional[str], file_space, notes: list[str]) -> str:
    """A custom objective's direction: --direction, else objective.direction, else the plan's; none
    of them: minimized, as Optuna does, and said so (an objective is most often a loss)."""
    own = getattr(runner.fn, "direction", None)
    if own is not None and own not in ("maximize", "minimize"):
        raise InputError(f"{runner.label}: objective.direction is {own!r}; expected 'maximize' or 'minimize'")
    if own is not None and direction is not None and own != direction:
        raise InputError(f"--direction {direction}: contradicts {runner.label}'s direction attribute ({own})")
    chosen = direction or own or (_plan_direction(file_space) if file_space is not None else None)
    if chosen is None:
        notes.append(f"{runner.label} states no direction (no --direction, no objective.direction"
                     f"{', no direction in the plan' if file_space is not None else ''}): its value is "
                     "minimized, as Optuna does; give --direction maximize if higher is better")
        chosen = "minimize"
    return chosen


def _default_name(task: str) -> str:
    import re

    stem = task.rsplit(":", 1)[0]
    stem = re.split(r"[\\/]", stem)[-1].removesuffix(".py").split(".")[-1] or "search"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_new_study(storage, url: str, name: str, spec: SearchSpec) -> Optional[SearchSpec]:
    """Refuse a study name already taken, in one line, nothing written; on a database server the
    same command joins a study made with the same plan: its stored spec is returned."""
    import optuna

    if name not in study_names(storage):
        return None
    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
    old = _spec_of(study)
    if old is None and is_server(url):  # the creator writes its plan just after the study
        old = await_spec(storage, name)
    n = len(study.get_trials(deepcopy=False))
    where = _hide_password(url)
    if old is None:
        raise InputError(f"--study {name}: already exists in {where} ({n} trials) and was not made by advisor "
                         "search; nothing was changed; choose another --study")
    diff = space_difference(old.get_space(), spec.get_space())
    if diff:
        raise InputError(f"--study {name}: exists in {where} with a different space ({diff}); nothing was "
                         "changed; choose another --study, or --resume with the original plan")
    if is_server(url):
        other = plan_difference(old, spec)
        if other:
            raise InputError(f"--study {name}: exists in {where} with a different plan ({other}); nothing was "
                             "changed; run the same command as the first process, or choose another --study")
        return old
    raise InputError(f"--study {name}: already exists in {where} ({n} trials); add --resume to continue it, "
                     "or choose another --study")


def plan_difference(old: SearchSpec, new: SearchSpec) -> str:
    """What differs between a stored plan and this command's (the space aside), or ''; the
    number of processes on one machine (--workers) may differ between machines."""
    a, b = old.model_dump(exclude={"workers", "space"}), new.model_dump(exclude={"workers", "space"})
    diff = [f"{k} {b[k]!r} here, {a[k]!r} stored" for k in a if a[k] != b.get(k)]
    return "; ".join(diff[:3])


def await_spec(storage, name: str, seconds: float = 10.0) -> Optional[SearchSpec]:
    """The plan another process is storing in the study it has just created (None after `seconds`)."""
    import optuna

    until = time.monotonic() + seconds
    while True:
        with _quiet_optuna():
            spec = _spec_of(optuna.load_study(study_name=name, storage=storage))
        if spec is not None or time.monotonic() > until:
            return spec
        time.sleep(0.2)


def _spent(storage, name: str, spec: SearchSpec) -> Optional[str]:
    """Why a joined study's search needs no more workers (its budget is spent), or None."""
    import optuna

    from advisor.act.search.constants import STOP_ATTR
    from advisor.act.search.trials import done_search

    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
    done = done_search(study.get_trials(deepcopy=False))
    stopped = study.user_attrs.get(STOP_ATTR)
    why = {"grid": "every grid point ran", "stale": "the stop rule ended it", "epochs": "its epochs are spent"}
    if done >= spec.trials:
        reason = f"the search budget is spent ({done} of {spec.trials} trials finished"
    elif stopped in why:
        reason = f"the search has ended ({why[stopped]}"
    else:
        return None
    if not _finals_done(study, spec):  # the search is spent, its final re-runs are not: join them
        return None
    return reason + (", the final re-runs too)" if spec.top_k > 0 else ")")


def _finals_done(study, spec: SearchSpec) -> bool:
    """Every final re-run (finalist x seed) of the study has finished (or none is planned)."""
    from advisor.act.search.constants import FINALISTS_ATTR
    from advisor.act.search.trials import is_extra, is_final

    if spec.top_k <= 0:
        return True
    chosen = (study.user_attrs.get(FINALISTS_ATTR) or {}).get("chosen")
    if not isinstance(chosen, list):
        return False
    ended = {(t.user_attrs.get("config"), t.user_attrs.get("seed")) for t in study.get_trials(deepcopy=False)
             if is_final(t) and not is_extra(t) and t.state.is_finished() and not t.user_attrs.get("interrupted")}
    seeds = [spec.seed + 1 + s for s in range(spec.seeds_final)]
    return all((c.get("key"), s) in ended for c in chosen for s in seeds)


def _measure_trial_hours(runner: Runner, built, hp: dict, epochs: int, device_name: str, seed: int,
                         settings) -> float:
    """Time one epoch of the current configuration (the task as built) -> hours per trial."""
    if runner.kind != "build":
        raise InputError("--budget with a custom objective: say what one trial costs with --trial-time "
                         "(advisor cannot time an objective's epoch)")
    from advisor.act.device import resolve_device
    from advisor.act.train import Diverged, TrialError, config_from_hp, train

    device = resolve_device(device_name)
    config = config_from_hp(hp, settings, epochs=2)
    stamps: list[float] = []
    try:  # two epochs, the second timed: the first pays for one-off start-up costs
        train(built, config, device=device, hp=hp, settings=settings,
              on_epoch=lambda n: stamps.append(time.perf_counter()))
    except (TrialError, Diverged) as exc:
        raise InputError(f"{runner.label}: two epochs of the current configuration failed, so a trial's time "
                         f"cannot be measured ({exc}); give --trial-time") from None
    except SystemExit as exc:
        from advisor.act.task import _exit_call

        raise InputError(f"{runner.label}: the task called {_exit_call(exc)} while one trial was timed; "
                         "a task must return, not exit") from None
    return (stamps[1] - stamps[0]) * epochs / 3600
