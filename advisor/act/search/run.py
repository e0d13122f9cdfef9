"""The search itself (search, final seeds, audit) and its entry points (run, workers)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Optional

from pydantic import BaseModel

from advisor.act.search.constants import FINALISTS_ATTR, SCHEMA, SPEC_ATTR, STOP_ATTR
from advisor.act.search.phases import (
    PHASE_ATTR, REFINE_ATTR, describe, narrow, refine_sampler, refine_top, stored_refine,
)
from advisor.act.search.objective import (
    Runner, SearchSpec, _TrialFailed, _plain, _worker_id, make_objective,
)
from advisor.act.search.space import (
    _effective, _gridded, _has_zero, grid_configs, grid_points, make_pruner, make_sampler,
    pruner_spec, sampler_spec, to_params,
)
from advisor.act.search.storage import (
    _first_line, _hide_password, dashboard_command, is_journal, open_storage,
)
from advisor.act.search.trials import (
    _states, counts, done_search, fail_stale, has_heartbeat, is_extra, is_final, trial_epochs, working,
)
from advisor.errors import InputError
from advisor.space import Space


class Event(BaseModel):
    """What the progress display is told after each trial."""

    phase: str                       # search | final
    done: int
    total: int
    best: Optional[float] = None
    elapsed: float = 0.0
    left: Optional[float] = None     # seconds, estimated
    last_state: Optional[str] = None


class TrialRef(BaseModel):
    number: int
    value: Optional[float]
    params: dict[str, Any]
    baseline: bool = False


class FinalResult(BaseModel):
    params: dict[str, Any]
    mean: Optional[float]
    std: Optional[float]
    seeds: list[int]
    values: list[Optional[float]]
    failed: int = 0
    search_number: Optional[int] = None
    search_value: Optional[float] = None


class SearchReport(BaseModel):
    schema_version: str = SCHEMA
    task: str
    study: str
    storage: str
    dashboard: str
    device: str
    resumed: bool
    direction: str
    metric: str
    strategy: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    budget: dict[str, Any]
    stopped_by: str
    best: Optional[TrialRef]
    baseline: Optional[TrialRef]
    trials: dict[str, int]
    final: list[FinalResult]
    audit: list[dict[str, Any]]
    epochs_used: int
    epochs_search: int
    epochs_final: int
    epochs_saved_by_pruning: int
    failures: list[dict[str, Any]]
    seconds: float
    notes: list[str]
    # the phases in the order they ran: [{name (explore|refine|grid|manual|final), trials, epochs}]
    phases: list[dict[str, Any]] = []
    refined: Optional[dict[str, Any]] = None  # the refine phase's narrowed ranges (and around how many)


def _spec_of(study) -> Optional[SearchSpec]:
    raw = study.user_attrs.get(SPEC_ATTR)
    if not raw:
        return None
    try:
        return SearchSpec.model_validate(raw)
    except Exception:
        return None


def study_names(storage) -> list[str]:
    try:
        return [s.study_name for s in storage.get_all_studies()]
    except Exception as exc:
        raise InputError(f"--storage: cannot read the studies ({_first_line(exc)})") from None


def load_spec(storage, url: str, name: str) -> SearchSpec:
    import optuna

    names = study_names(storage)
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise InputError(f"--study {name}: no such study in {_hide_password(url)} (studies: {listed})")
    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
    spec = _spec_of(study)
    if spec is None:
        raise InputError(f"--study {name}: was not created by advisor search (no {SPEC_ATTR} settings); "
                         "choose another --study, or audit it with `advisor audit`")
    return spec


def latest_study(storage, url: str, task: Optional[str]) -> str:
    """The most recently created advisor study (for the task, when given) in the storage."""
    found = []
    for s in storage.get_all_studies():
        spec = s.user_attrs.get(SPEC_ATTR)
        if spec and (task is None or spec.get("task") == task):
            found.append((s._study_id, s.study_name))
    if not found:
        raise InputError(f"--resume: no advisor study{f' for {task}' if task else ''} in {_hide_password(url)}; "
                         "give --study NAME")
    return max(found)[1]


class Search:
    """One invocation of the search on a storage: create or resume, run, finalize, report."""

    def __init__(self, spec: SearchSpec, url: str, study_name: str, storage, *, device=None,
                 device_label: str = "cpu", timeout: Optional[float] = None,
                 progress: Optional[Callable[[Event], None]] = None, notes: Optional[list[str]] = None,
                 index: int = 0, runner: Optional[Runner] = None, epoch_budget: Optional[int] = None):
        self.spec, self.url, self.name, self.storage = spec, url, study_name, storage
        self.space = spec.get_space()
        self.device, self.device_label = device, device_label
        self.timeout, self.progress = timeout, progress
        self.notes = list(notes or [])
        self.index = index
        self.runner = runner or Runner(spec.task, device)
        self.epoch_budget = epoch_budget
        self.stop_when: Optional[Callable[[list], bool]] = None  # run(stop_when=...): the caller's deadline
        self.cut_when: Optional[Callable[[], bool]] = None  # run(cut_when=...): the same, inside a trial
        self.stale_ends_search = True  # run(stale_ends_search=False): the stop rule only ends explore
        self.stopped_by = "none"
        self.refine = None  # (narrowed space, categorical values kept) once the refine phase starts
        self.began = time.monotonic()

    # ----------------------------------------------------------------- create / load

    def create(self):
        import optuna

        with _quiet_optuna():
            study = optuna.create_study(study_name=self.name, storage=self.storage, direction=self.spec.direction,
                                        sampler=self._sampler(), pruner=make_pruner(self.space, self.spec.epochs),
                                        load_if_exists=False)
        study.set_user_attr(SPEC_ATTR, self.spec.model_dump())
        with _quiet_optuna():
            if self.spec.baseline:
                params = to_params(self.spec.baseline, self.space)
                grid = grid_points(self.space) if _gridded(self.space) else None
                if params and grid is not None:  # Optuna's GridSampler runs an enqueued trial only whole
                    missing = [n for n in grid if n not in params]
                    for n in missing:
                        params[n] = grid[n][len(grid[n]) // 2]
                    if missing:
                        self.notes.append(f"the baseline does not set {', '.join(missing)}: it runs with the "
                                          "middle grid point")
                if params:
                    study.enqueue_trial(params, user_attrs={"baseline": True})
                    self._check_baseline(params)
            if _gridded(self.space) and grid_points(self.space) is None:
                for hp in grid_configs(self.space):
                    study.enqueue_trial(to_params(hp, self.space), skip_if_exists=True)
        return study

    def replay_baseline(self, study, runner) -> None:
        """The enqueued baseline trial, recorded from a run already trained (`runner` replays its
        curve) rather than trained again; it counts as the baseline trial does."""
        TS = _states()
        if not any(t.state == TS.WAITING and t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)):
            return
        objective = make_objective(runner, self.spec, self.space, phase=self.phases()[0]["name"])
        with _quiet_optuna():
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,), gc_after_trial=False,
                           show_progress_bar=False)

    def _check_baseline(self, params: dict) -> None:
        """A note for each baseline value outside the searched range (it still runs as given)."""
        for name, value in params.items():
            base = name if name in self.space.params else name.rsplit("_", 1)[0]
            p = self.space.params.get(base)
            if p is None or p.type == "categorical" or not isinstance(value, (int, float)):
                if p is not None and p.choices and value not in p.choices:
                    self.notes.append(f"the baseline's {base}={value} is not one of the searched choices")
                continue
            key = name[len(base) + 1:] if name != base else None
            q = _effective(p, key) if key else p
            low = min(q.choices) if q.choices else q.low
            high = max(q.choices) if q.choices else q.high
            outside = low is not None and high is not None and not low <= value <= high
            if outside and not (_has_zero(q) and value <= low):
                self.notes.append(f"the baseline's {base}={value:g} lies outside the searched range "
                                  f"{low:g}..{high:g}: it runs as given, the search stays inside")

    def load(self):
        import optuna

        with _quiet_optuna():
            return optuna.load_study(study_name=self.name, storage=self.storage, sampler=self._sampler(),
                                     pruner=make_pruner(self.space, self.spec.epochs))

    def _sampler(self):
        return make_sampler(self.space, self.spec.seed, self.spec.workers, self.index, self.spec.trials)

    # ----------------------------------------------------------------- the search phase

    def run_search(self, study) -> str:
        """Run the search phases (explore, refine; or the grid) until the budget, the stop rule,
        the grid or the timeout says stop; a resumed search continues in the phase it was in."""
        trials = study.get_trials(deepcopy=False)
        done = done_search(trials)
        stored = study.user_attrs.get(STOP_ATTR)
        if stored in ("grid", "stale", "epochs") or (stored == "budget" and done >= self.spec.trials):
            self.stopped_by = stored
            return stored
        phases = self.phases()
        names = [ph["name"] for ph in phases]
        # where to start: the first phase whose trials are not all done (a resume with a larger
        # budget goes back from the final phase), never before one the stop rule ended
        ends = [sum(int(ph["trials"]) for ph in phases[:i + 1]) for i in range(len(phases))]
        start = next((i for i, end in enumerate(ends) if done < end), len(phases))
        current = str(study.user_attrs.get(PHASE_ATTR) or "")
        name, _, ended = current.partition(":")  # "explore:stale": the stop rule ended that phase
        if name in names:
            start = max(start, names.index(name) + (1 if ended else 0))
        target, reason = 0, "none"
        for i, ph in enumerate(phases):
            target += int(ph["trials"])
            if i < start:
                continue
            last = i == len(phases) - 1
            space = self._enter(study, ph["name"])
            reason = self._run_phase(study, ph["name"], space, target, last)
            if reason in ("budget", "moved") or (reason == "stale" and not last):
                continue
            break
        self.stopped_by = reason
        return reason

    def phases(self) -> list[dict]:
        """The search phases of the spec ({name, trials}); a study made before phases: one."""
        if self.spec.phases:
            return [dict(ph) for ph in self.spec.phases]
        return [{"name": self.space.strategy if _gridded(self.space) else "explore", "trials": self.spec.trials}]

    def _enter(self, study, name: str):
        """Set the study's phase; the refine phase's narrowed space is decided once, by the first
        process to get there, and read back by every other. Returns the phase's space."""
        if study.user_attrs.get(PHASE_ATTR) != name:
            with contextlib.suppress(Exception):
                study.set_user_attr(PHASE_ATTR, name)
        if name != "refine":
            return self.space
        stored = stored_refine(study)
        if stored is None:
            # decided from the explore trials once none is running, so that every worker that
            # gets here computes the same narrowed space (whoever writes it first or last)
            self._settle(study, lambda t: t.user_attrs.get("phase", "explore") == "explore")
            stored = stored_refine(study)
        if stored is None:
            best = self._best_explore(study)
            narrowed, keep = narrow(self.space, best, float(_phase_table()["refine_widen"]))
            if not best:
                self.notes.append("no explore trial finished: the refine phase searches the full ranges")
            with contextlib.suppress(Exception):
                study.set_user_attr(REFINE_ATTR, {"space": _plain(narrowed.to_yaml_dict()), "keep": _plain(keep),
                                                  "around": len(best)})
            stored = stored_refine(study) or (narrowed, keep)
        self.refine = stored
        return stored[0]

    def _settle(self, study, pending: Callable[[Any], bool], limit_s: float = 6 * 3600) -> None:
        """Wait while another worker still runs a search trial that `pending` selects (a shared
        decision waits for its inputs). Only on a storage with a heartbeat: there a dead worker's
        trial is failed after the grace period, so the wait ends."""
        import optuna

        if not has_heartbeat(self.storage):
            return
        TS = _states()
        until = time.monotonic() + limit_s
        while time.monotonic() < until:
            running = [t for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))
                       if not is_final(t) and not is_extra(t) and pending(t)]
            if not running:
                return
            with contextlib.suppress(Exception), _quiet_optuna():
                optuna.storages.fail_stale_trials(study)
            time.sleep(0.5)

    def _best_explore(self, study) -> list[dict[str, Any]]:
        TS = _states()
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        done = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,))
                if not is_final(t) and t.user_attrs.get("phase", "explore") == "explore"
                and t.value is not None and math.isfinite(t.value)]
        explored = sum(1 for t in study.get_trials(deepcopy=False) if not is_final(t) and not is_extra(t)
                       and t.user_attrs.get("phase", "explore") == "explore")
        done.sort(key=lambda t: (-sign * t.value, t.number))
        return [_searched(t, self.space) for t in done[:refine_top(explored)]]

    def _phase_sampler(self, name: str):
        if name != "refine" or self.refine is None:
            return self._sampler()
        space, keep = self.refine
        offset = 1 + int(_phase_table().get("refine_seed_offset", 1000))
        base = make_sampler(space, self.spec.seed + offset, self.spec.workers, self.index, self.spec.trials)
        return refine_sampler(base, space, keep, self.spec.seed + offset + self.index)

    def _run_phase(self, study, name: str, space, target: int, last: bool) -> str:
        """Run one phase's trials until the search holds `target` trials (or a stop)."""
        import optuna

        trials = study.get_trials(deepcopy=False)
        done = done_search(trials)
        if done >= target:
            if last:
                self._mark_stopped(study, "budget")
            return "budget"
        state = {"stale": False, "aborted": None, "epochs": False}
        rules = [self._budget_rule(target), self._abort_rule(state),
                 self._progress_callback("search")]
        if self.stale_ends_search or not last:
            rules.append(self._stop_rule(state, name, last))
        if self.epoch_budget:
            rules.append(self._epoch_rule(state))
        if self.stop_when is not None:
            rules.append(self._caller_rule(state))
        callbacks = [_after_trial(rules)]
        timeout = None if self.timeout is None else max(0.0, self.timeout - (time.monotonic() - self.began))
        if timeout is not None and timeout <= 0:
            return "timeout"
        if name == "refine":
            with _quiet_optuna():
                study = optuna.load_study(study_name=self.name, storage=self.storage,
                                          sampler=self._phase_sampler(name),
                                          pruner=make_pruner(self.space, self.spec.epochs))
        self._emit("search", study)
        objective = make_objective(self.runner, self.spec, space, phase=name, cut=self.cut_when)
        with _quiet_optuna(), working(study, self.storage):
            study.optimize(objective, n_trials=target - done, timeout=timeout, callbacks=callbacks,
                           catch=(_TrialFailed,), gc_after_trial=False, show_progress_bar=False)
        if state["aborted"]:
            raise InputError(state["aborted"])
        trials = study.get_trials(deepcopy=False)
        elapsed = time.monotonic() - self.began
        if state.get("caller"):
            reason = "timeout"  # the caller's deadline: what is left is kept for what follows
        elif state["stale"]:
            reason = "stale"
        elif state["epochs"]:
            reason = "epochs"
        elif done_search(trials) >= target:
            reason = "budget"
        elif _gridded(self.space) and self._grid_exhausted(trials):
            reason = "grid"
        elif self.timeout is not None and elapsed >= self.timeout - 0.5:
            reason = "timeout"
        elif not last and study.user_attrs.get(PHASE_ATTR) != name:
            reason = "moved"  # another worker's stop rule ended this phase
        else:
            reason = "none"
        if reason in ("grid", "epochs") or (last and reason in ("budget", "stale")):
            self._mark_stopped(study, reason)
        return reason

    def _grid_exhausted(self, trials) -> bool:
        grid = grid_points(self.space)
        if grid is None:
            return not any(t.state == _states().WAITING and not is_final(t) for t in trials)
        size = math.prod(len(v) for v in grid.values())
        seen = {json.dumps(t.params, sort_keys=True, default=str) for t in trials
                if not t.user_attrs.get("baseline") and not is_final(t) and t.state != _states().RUNNING}
        return len(seen) >= size

    def _mark_stopped(self, study, reason: str) -> None:
        with contextlib.suppress(Exception):
            study.set_user_attr(STOP_ATTR, reason)

    def _stop_rule(self, state, phase: str = "explore", last: bool = True):
        """The plan's stop rules, within a phase: the best value improved by less than `min_gain`
        (relative) per trial over the last `window` complete trials of the phase (the same best for
        `window` trials is the case of no gain). It ends the phase: explore goes on to refine, the
        last phase ends the search."""
        TS = _states()
        window, min_gain = self.spec.stop_stale, self.spec.stop_min_gain
        sign = 1.0 if self.spec.direction == "maximize" else -1.0

        def callback(study, trial, trials) -> None:
            if not window:
                return
            attrs = study.user_attrs
            if last and attrs.get(STOP_ATTR) == "stale":  # another worker decided
                state["stale"] = True
                study.stop()
                return
            if attrs.get(PHASE_ATTR, phase) != phase:  # another worker moved on
                study.stop()
                return
            # pruned trials count too: each is a trial that did not improve on the best (under
            # heavy pruning, complete trials alone would leave the rule unable to fire)
            done = [t for t in trials if t.state in (TS.COMPLETE, TS.PRUNED) and not is_final(t)
                    and t.user_attrs.get("phase", "explore" if phase != "grid" else phase) == phase]
            if len(done) <= window:
                return
            values = [sign * t.value if t.state == TS.COMPLETE else -math.inf
                      for t in sorted(done, key=lambda t: t.number)]
            now, before = max(values), max(values[:-window])
            if not math.isfinite(before):
                return  # no complete trial before the window: nothing to compare with yet
            gain = (now - before) / max(abs(before), 1e-12) / window
            if gain < min_gain:
                state["stale"] = True
                if last:
                    self._mark_stopped(study, "stale")
                else:  # the other workers move on too
                    with contextlib.suppress(Exception):
                        study.set_user_attr(PHASE_ATTR, f"{phase}:stale")
                study.stop()

        return callback

    def _abort_rule(self, state):
        """Stop a search whose task is dead: the first trials all failed or all went non-finite
        (the plan's `abort_after_failures`, or the whole budget when it is smaller); two trials
        whose loss is non-finite from the first step, before any update, are enough."""
        TS = _states()
        limit = min(self.runner.settings.search.abort_after_failures, max(1, self.spec.trials))
        alive = {"seen": False}  # a trial that gave a value: the task works, the rule cannot fire again

        def callback(study, trial, trials) -> None:
            if alive["seen"]:
                return
            finished = sorted((t for t in trials if t.state in (TS.COMPLETE, TS.PRUNED, TS.FAIL)
                               and not is_final(t) and not is_extra(t) and not t.user_attrs.get("interrupted")),
                              key=lambda t: t.number)
            if not finished or not all(_dead(t) for t in finished):
                alive["seen"] = bool(finished)
                return
            at_start = all(t.user_attrs.get("nonfinite_at_start") for t in finished)
            if at_start and len(finished) >= min(2, limit):
                state["aborted"] = self._dead_message(finished, at_start=True)
            elif len(finished) >= limit:
                state["aborted"] = self._dead_message(finished, at_start=False)
            else:
                return
            study.stop()

        return callback

    def _dead_message(self, finished, at_start: bool) -> str:
        TS = _states()
        n, last = len(finished), finished[-1]
        which = f"the first {n} trials" if n > 1 else "the first trial"
        nums = ", ".join(f"#{t.number}" for t in finished[:5]) + (" ..." if n > 5 else "")
        reason = last.user_attrs.get("fail_reason") or last.user_attrs.get("pruned_reason") or "no reason recorded"
        if at_start:
            if self.runner.kind == "objective":
                return (f"{which} ({nums}) all reported a non-finite value first thing (the last: {reason}): "
                        "the objective is broken, not the configurations; the search stopped")
            return (f"{which} ({nums}) all had a non-finite training loss at the first step, before any update: "
                    "the data or the loss_fn is broken, not the configurations (`advisor lr-find` stops there "
                    "too); the search stopped")
        if all(t.state == TS.FAIL for t in finished):
            return (f"{which} all failed, the last with: {reason} "
                    "(fix the task; `advisor search TASK --sanity` tries a few configurations)")
        if all(t.state == TS.PRUNED for t in finished):
            return (f"{which} ({nums}) all went non-finite, the last with: {reason}; lower the learning-rate "
                    "range (`advisor lr-find` finds where the loss blows up) or check the data and the loss; "
                    "the search stopped")
        return (f"{which} ({nums}) all failed or went non-finite, the last with: {reason} "
                "(fix the task; `advisor search TASK --sanity` tries a few configurations)")

    def _caller_rule(self, state):
        """The caller's own deadline (advisor tune: the finalists' seeds as long as the search's
        best trials actually took must still fit in the budget): stop when it says so."""
        def callback(study, trial, trials) -> None:
            if self.stop_when(trials):
                state["caller"] = True
                study.stop()

        return callback

    def _epoch_rule(self, state):
        def callback(study, trial, trials) -> None:
            used = sum(trial_epochs(t) for t in trials if not is_final(t))
            if used >= self.epoch_budget:
                state["epochs"] = True
                study.stop()

        return callback

    @staticmethod
    def _budget_rule(target: int):
        """Stop once the search holds `target` counted trials (done_search: finished, every
        worker's, the interrupted, the extras and the final re-runs left out), counted anew after
        each trial: a trial the heartbeat fails meanwhile (its worker was killed) and retries
        stops counting at once, its retry counts instead. (A limit on Optuna's finished trials
        fixed when the phase began would count that failed trial too and end the phase, and with
        it the search, one trial short.) A trial of this worker found extra (the others took the
        budget or moved the phase on while it started) stops it too: the next would be one more,
        started while the others' last trials run."""
        def callback(study, trial, trials) -> None:
            if done_search(trials) >= target or (trial is not None and is_extra(trial)):
                study.stop()

        return callback

    def _progress_callback(self, phase: str):
        def callback(study, trial, trials=None) -> None:
            self._emit(phase, study, trial, trials)

        return callback

    def _emit(self, phase: str, study, trial=None, trials=None) -> None:
        if self.progress is None:
            return
        trials = study.get_trials(deepcopy=False) if trials is None else trials
        TS = _states()
        if phase == "search":
            done, total = done_search(trials), self.spec.trials
            pool = [t for t in trials if not is_final(t) and t.state == TS.COMPLETE]
        else:
            finals = [t for t in trials if is_final(t)]
            done = sum(1 for t in finals if t.state in (TS.COMPLETE, TS.FAIL, TS.PRUNED)
                       and not t.user_attrs.get("interrupted"))
            total = max(done, len({(t.user_attrs.get("config"), t.user_attrs.get("seed")) for t in finals}))
            pool = []
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        best = max((t.value for t in pool), key=lambda v: sign * v, default=None)
        elapsed = time.monotonic() - self.began
        left = None
        if done and total > done:
            durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                         if t.datetime_complete and t.datetime_start and (is_final(t) == (phase == "final"))]
            if durations:
                parallel = self.spec.workers if phase == "search" else 1
                left = statistics.fmean(durations) * (total - done) / max(1, parallel)
        if self.timeout is not None and phase == "search":
            rest = max(0.0, self.timeout - elapsed)
            left = rest if left is None else min(left, rest)
        self.progress(Event(phase=phase, done=done, total=total, best=best, elapsed=elapsed, left=left,
                            last_state=trial.state.name.lower() if trial is not None else None))

    # ----------------------------------------------------------------- the final phase

    def finalists(self, study) -> list[dict[str, Any]]:
        """The best `top_k` distinct configurations of the search; chosen once per state of the
        search (kept in the study, so a resumed final phase re-runs the same ones)."""
        TS = _states()
        trials = study.get_trials(deepcopy=False)
        n_done = done_search(trials)
        stored = study.user_attrs.get(FINALISTS_ATTR)
        if isinstance(stored, dict) and stored.get("done") == n_done and stored.get("top_k") == self.spec.top_k:
            return stored["chosen"]
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        done = [t for t in trials if t.state == TS.COMPLETE and not is_final(t)]
        done.sort(key=lambda t: (-sign * t.value, t.number))
        chosen, seen = [], set()
        for t in done:
            key = _config_key(t.params)
            if key in seen:
                continue
            seen.add(key)
            chosen.append({"params": _plain(t.params), "hp": _searched(t, self.space), "number": t.number,
                           "value": t.value, "key": key})
            if len(chosen) >= self.spec.top_k:
                break
        study.set_user_attr(FINALISTS_ATTR, {"done": n_done, "top_k": self.spec.top_k, "chosen": chosen})
        return chosen

    def run_final(self, study) -> list[FinalResult]:
        import optuna

        if self.spec.top_k <= 0:
            return []
        self._settle(study, lambda t: True)  # the finalists are chosen once every search trial ended
        chosen = self.finalists(study)
        if not chosen:
            return []
        with contextlib.suppress(Exception):
            if study.user_attrs.get(PHASE_ATTR) != "final":
                study.set_user_attr(PHASE_ATTR, "final")
        TS = _states()
        seeds = [self.spec.seed + 1 + s for s in range(self.spec.seeds_final)]
        have = set()
        for t in study.get_trials(deepcopy=False):
            if is_final(t) and not t.user_attrs.get("interrupted"):
                have.add((t.user_attrs.get("config"), t.user_attrs.get("seed")))
        for c in chosen:
            for s in seeds:
                if (c["key"], s) not in have:
                    study.enqueue_trial(c["params"], user_attrs={"final": True, "config": c["key"], "seed": s})
        waiting = [t for t in study.get_trials(deepcopy=False, states=(TS.WAITING,))]
        if waiting:
            with _quiet_optuna():
                final_study = optuna.load_study(study_name=self.name, storage=self.storage,
                                                sampler=optuna.samplers.RandomSampler(seed=self.spec.seed),
                                                pruner=optuna.pruners.NopPruner())
            objective = make_objective(self.runner, self.spec, self.space, final_loop=True)
            self._emit("final", final_study)
            with _quiet_optuna(), working(final_study, self.storage):
                final_study.optimize(objective, n_trials=len(waiting), catch=(_TrialFailed,),
                                     callbacks=[self._progress_callback("final"), _stop_when_no_final_waits],
                                     gc_after_trial=False,
                                     show_progress_bar=False)
        return final_results(study, chosen, seeds, self.spec.direction)

    # ----------------------------------------------------------------- the report

    def report(self, study, finals: list[FinalResult], resumed: bool, seconds: float,
               audit: list[dict[str, Any]]) -> SearchReport:
        TS = _states()
        trials = study.get_trials(deepcopy=False)
        search = [t for t in trials if not is_final(t)]
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        complete = [t for t in search if t.state == TS.COMPLETE]
        best_t = max(complete, key=lambda t: (sign * t.value, -t.number), default=None)
        base_t = next((t for t in search if t.user_attrs.get("baseline")), None)
        e_search = sum(trial_epochs(t) for t in search)
        e_final = sum(trial_epochs(t) for t in trials if is_final(t))
        # saved by the pruner only: a trial stopped for a non-finite value saved nothing, it died
        saved = sum(max(0, _planned(t, self.spec.epochs) - trial_epochs(t)) for t in search
                    if t.state == TS.PRUNED and not t.user_attrs.get("diverged"))
        failures = []
        for t in search:
            reason = t.user_attrs.get("fail_reason") if t.state == TS.FAIL else t.user_attrs.get("pruned_reason")
            if reason and not t.user_attrs.get("interrupted") and not is_extra(t):
                failures.append({"number": t.number, "state": t.state.name.lower(), "reason": reason,
                                 "params": _searched(t, self.space)})
        s_kind, s_args = sampler_spec(self.space, self.spec.seed, self.spec.workers, 0, self.spec.trials)
        p_kind, p_args = pruner_spec(self.space, self.spec.epochs)
        return SearchReport(
            task=self.spec.task, study=self.name, storage=_hide_password(self.url),
            dashboard=dashboard_command(self.url), device=self.device_label, resumed=resumed,
            direction=self.spec.direction, metric=self.spec.metric, strategy=self.space.strategy,
            sampler={"type": s_kind, "args": _plain(_nested_spec(s_args))},
            pruner={"type": p_kind, "args": _plain(_nested_spec(p_args))},
            budget={"trials": self.spec.trials, "timeout_s": self.timeout, "epochs": self.spec.epochs,
                    "top_k": self.spec.top_k, "seeds_final": self.spec.seeds_final,
                    "stop_rule": ({"min_gain_per_trial": self.spec.stop_min_gain,
                                   "stale_trials": self.spec.stop_stale} if self.spec.stop_stale else None)},
            stopped_by=self.stopped_by,
            best=_ref(best_t, self.space), baseline=_ref(base_t, self.space),
            trials=counts(trials), final=finals, audit=audit,
            epochs_used=e_search + e_final, epochs_search=e_search, epochs_final=e_final,
            epochs_saved_by_pruning=saved, failures=failures[:10], seconds=round(seconds, 2),
            notes=self.notes, phases=self._phase_report(trials), refined=self._refined(study))

    def _phase_report(self, trials) -> list[dict[str, Any]]:
        """{name, trials, epochs} per phase that ran, in order: the search phases, then final."""
        TS = _states()
        first = self.phases()[0]["name"]
        order = [ph["name"] for ph in self.phases()] + ["final"]
        rows = {name: {"name": name, "trials": 0, "epochs": 0} for name in order}
        for t in trials:
            if t.user_attrs.get("interrupted") or is_extra(t) or t.state in (TS.WAITING, TS.RUNNING):
                continue
            name = "final" if is_final(t) else t.user_attrs.get("phase", first)
            row = rows.setdefault(name, {"name": name, "trials": 0, "epochs": 0})
            row["trials"] += 1
            row["epochs"] += trial_epochs(t)
        return [rows[n] for n in rows if rows[n]["trials"]]

    def _refined(self, study) -> Optional[dict[str, Any]]:
        stored = stored_refine(study)
        if stored is None:
            return None
        raw = study.user_attrs.get(REFINE_ATTR) or {}
        return {"around": raw.get("around"), "params": describe(*stored)}


def _after_trial(rules: list[Callable]):
    """One Optuna callback for the rules checked after each trial: the study's trials are read once
    and handed to each (on a database server every read is several queries), in order."""
    def callback(study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        for rule in rules:
            rule(study, trial, trials)

    return callback


def _stop_when_no_final_waits(study, trial) -> None:
    """The final re-runs are shared: a worker stops once no re-run waits (the others took them)."""
    TS = _states()
    if not any(is_final(t) for t in study.get_trials(deepcopy=False, states=(TS.WAITING,))):
        study.stop()


def _phase_table() -> dict[str, Any]:
    from advisor.advice.plan import tables

    return tables()["budget"]["phases"]


def _dead(t) -> bool:
    """A trial that gave nothing: it failed, or was stopped for a non-finite value (not by the pruner)."""
    TS = _states()
    return t.state == TS.FAIL or (t.state == TS.PRUNED and bool(t.user_attrs.get("diverged")))


def _planned(t, default: int) -> int:
    hp = t.user_attrs.get("hp")
    e = hp.get("epochs") if isinstance(hp, dict) else None
    return int(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else default


def _config_key(params: dict) -> str:
    return json.dumps(_plain(params), sort_keys=True, default=str)


def _nested_spec(args: dict) -> dict:
    out = {}
    for k, v in args.items():
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict):
            out[k] = {"type": v[0], **v[1]}
        elif k == "search_space":
            out[k] = {n: list(vals) for n, vals in v.items()}
        else:
            out[k] = v
    return out


def _searched(t, space: Space) -> dict[str, Any]:
    hp = t.user_attrs.get("hp")
    if isinstance(hp, dict):
        return {k: hp[k] for k in space.params if k in hp}
    return _plain(dict(t.params))


def _ref(t, space: Space) -> Optional[TrialRef]:
    if t is None:
        return None
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    return TrialRef(number=t.number, value=value, params=_searched(t, space),
                    baseline=bool(t.user_attrs.get("baseline")))


def final_results(study, chosen: list[dict], seeds: list[int], direction: str) -> list[FinalResult]:
    TS = _states()
    results = []
    trials = [t for t in study.get_trials(deepcopy=False) if is_final(t)]
    for i, c in enumerate(chosen):
        mine = [t for t in trials if t.user_attrs.get("config") == c["key"] and not t.user_attrs.get("interrupted")]
        values, used, failed = [], [], 0
        for s in seeds:
            runs = [t for t in mine if t.user_attrs.get("seed") == s]
            ok = [t for t in runs if t.state == TS.COMPLETE]
            if ok:
                values.append(ok[-1].value)
                used.append(s)
            elif any(t.state == TS.FAIL for t in runs):
                failed += 1
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        results.append(FinalResult(params=c["hp"], mean=mean, std=std, seeds=used, values=values, failed=failed,
                                   search_number=c.get("number"), search_value=c.get("value")))
    sign = 1.0 if direction == "maximize" else -1.0
    results.sort(key=lambda r: (r.mean is None, -sign * (r.mean or 0.0)))
    return results


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna logs every trial (and a traceback per failed trial): advisor reports them itself."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def audit_findings(url: str, study_name: str) -> tuple[list[dict[str, Any]], Optional[str]]:
    """`advisor audit`'s findings on the finished study (advisor.advice.audit), or ([], why not)."""
    try:
        from advisor.advice.audit import audit
    except Exception as exc:  # the audit is missing or broken: the search result stands
        return [], f"audit unavailable ({type(exc).__name__}: {exc})"
    source = url if not is_journal(url) else url
    try:
        report = audit(source, study=study_name)
    except Exception as exc:
        return [], f"audit could not run ({_first_line(exc)})"
    return [f.model_dump() for f in report.findings], None


def _threads_for(device, workers: int, task: str) -> None:
    import torch

    from advisor.act.device import cpu_cores

    if device is not None and device.type == "cpu":
        cores = cpu_cores()
        if task == "demo":
            torch.set_num_threads(1)  # the demo MLP is too small to gain from threads
        elif workers > 1:
            torch.set_num_threads(max(1, cores // workers))


def run(spec: SearchSpec, url: str, study_name: str, *, resume: bool, device_name: str = "auto",
        timeout: Optional[float] = None, workers: int = 1, progress: Optional[Callable[[Event], None]] = None,
        notes: Optional[list[str]] = None, storage=None, runner: Optional[Runner] = None,
        epoch_budget: Optional[int] = None, audit: bool = True, known_baseline=None,
        stop_when: Optional[Callable[[list], bool]] = None, cut_when: Optional[Callable[[], bool]] = None,
        stale_ends_search: bool = True) -> SearchReport:
    """Create (or resume) the study and run search, final seeds and audit; return the report.
    `spec` is the stored one when resuming. Checks that can fail on user input run before the
    study is written to. `known_baseline`: a runner that replays the baseline's run already
    trained (advisor tune's), so that the study's baseline trial is not trained twice.
    `stop_when(trials)`: checked after each search trial; True ends the search (as a timeout).
    `cut_when()`: checked after each epoch a search trial reports; True prunes the trial there (a
    caller's deadline that came while it trained; the trial keeps `cut` in its user attributes).
    `stale_ends_search=False`: the stop rule moves a stale explore phase on to refine but does not
    end the last phase (a caller with a deadline spends its time)."""
    from advisor.act.device import describe_device, resolve_device

    began = time.monotonic()
    notes = list(notes or [])
    device = resolve_device(device_name)
    storage = storage or open_storage(url)
    runner = runner or Runner(spec.task, device)
    runner.device = device
    _threads_for(device, workers, spec.task)
    search = Search(spec, url, study_name, storage, device=device, device_label=describe_device(device),
                    timeout=timeout, progress=progress, notes=notes, runner=runner, epoch_budget=epoch_budget)
    search.stop_when, search.cut_when, search.stale_ends_search = stop_when, cut_when, stale_ends_search
    if resume:
        study = search.load()
        if _spec_of(study) != spec:  # a new trial budget or top-k: the workers read it from here
            study.set_user_attr(SPEC_ATTR, spec.model_dump())
        stale = fail_stale(study, storage)
        if stale:
            search.notes.append(f"trials {', '.join(f'#{n}' for n in stale)} were left running by a stopped "
                                "process: marked failed (interrupted), not counted against the budget")
    else:
        study = _create_or_join(search)
        if known_baseline is not None:
            search.replay_baseline(study, known_baseline)
    procs = _spawn_workers(url, study_name, workers, device_name) if workers > 1 else []
    def searching() -> None:
        search.run_search(study)
        for _ in range(3):  # a dead worker's trial, failed by the heartbeat and re-queued: run it here
            search._settle(study, lambda t: True)
            trials = study.get_trials(deepcopy=False)
            requeued = any(t.state == _states().WAITING and not is_final(t) for t in trials)
            if not requeued or done_search(trials) >= spec.trials or search.stopped_by not in ("none", "moved"):
                break
            search.run_search(study)

    try:
        _reconnecting(search, study, searching)
    except BaseException:
        _stop_workers(procs)
        raise
    problems = _wait_workers(procs)
    search.notes += problems
    if procs:  # the other workers' trials count too: re-read what stopped the search
        trials = study.get_trials(deepcopy=False)
        if done_search(trials) >= spec.trials and search.stopped_by != "stale":
            search.stopped_by = "budget"
            search._mark_stopped(study, "budget")
    finals = _reconnecting(search, study, lambda: search.run_final(study))
    findings, why = audit_findings(url, study_name) if audit else ([], None)
    if why:
        search.notes.append(why)
    return search.report(study, finals, resume, time.monotonic() - began, findings)


def _reconnecting(search: Search, study, step: Callable[[], Any], attempts: int = 4) -> Any:
    """Run `step`; a storage connection lost meanwhile (a server restart, a network cut) is retried
    with a growing wait (1, 2, 4 s): the study holds the state, so the step picks up where it was.
    Still lost: one line naming the host, the password never shown."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    from advisor.act.search.storage import _where, is_server

    for attempt in range(attempts):
        try:
            return step()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, StorageInternalError) as exc:
            # Optuna wraps what the driver raised (a dropped connection surfaces as one of its
            # errors, or as the rollback SQLAlchemy then asks for): on a server, retried
            lost = (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InvalidRequestError)
            if isinstance(exc, StorageInternalError) and not (is_server(search.url) or isinstance(exc.__cause__, lost)):
                raise
            why = _first_line(exc.__cause__ if isinstance(exc, StorageInternalError) and exc.__cause__ else exc)
            if attempt + 1 >= attempts:
                where = f" at {_where(search.url)}" if is_server(search.url) else ""
                raise InputError(f"--storage {_hide_password(search.url)}: lost the connection to the storage"
                                 f"{where} ({attempts} attempts; {why}); every finished trial is saved: run the "
                                 "same command again to continue") from None
            search.notes.append(f"the connection to the storage was lost ({why}); reconnected")
            time.sleep(2 ** attempt)
            with contextlib.suppress(Exception):  # the trial it cut is this process's: interrupted, not counted
                fail_stale(study, search.storage, stopping=_worker_id())


def _create_or_join(search: Search):
    """Create the study; on a database server, a process that lost the race to create it (the
    same command started at the same moment elsewhere) joins it when the stored plan is its own."""
    import optuna

    from advisor.act.search.storage import is_server

    try:
        return search.create()
    except optuna.exceptions.DuplicatedStudyError:
        if not is_server(search.url):
            raise InputError(f"--study {search.name}: was created meanwhile by another process; nothing was "
                             "changed; add --resume to continue it") from None
    from advisor.act.search.request import await_spec, plan_difference
    from advisor.act.search.space import space_difference

    where = _hide_password(search.url)
    stored = await_spec(search.storage, search.name)
    if stored is None:
        raise InputError(f"--study {search.name}: was created meanwhile in {where}, not by advisor search; "
                         "nothing was changed; choose another --study")
    diff = space_difference(stored.get_space(), search.space)
    other = plan_difference(stored, search.spec)
    if diff or other:
        raise InputError(f"--study {search.name}: was created meanwhile in {where} with a different "
                         f"{'space (' + diff if diff else 'plan (' + other}); nothing was changed; run the same "
                         "command as the first process, or choose another --study")
    search.spec, search.space = stored, stored.get_space()
    search.notes.append(f"joined study {search.name} in {where}: it follows the plan stored there")
    return search.load()


def run_worker(url: str, study_name: str, *, index: Optional[int] = None, device_name: str = "auto",
               task: Optional[str] = None, timeout: Optional[float] = None) -> int:
    """`advisor worker`: run search trials of an existing advisor study until its budget is spent.
    `index` offsets the seed of the random samplers (default: from the host name and process id,
    so that workers on many machines do not draw the same points). Returns the number of trials
    this worker finished."""
    import zlib

    from advisor.act.device import resolve_device

    if index is None:
        index = 1 + zlib.crc32(_worker_id().encode()) % 100_000

    _existing_storage_file(url)
    storage = open_storage(url)
    spec = load_spec(storage, url, study_name)
    if task:
        spec = spec.model_copy(update={"task": task})
    runner = Runner(spec.task)
    # a custom objective chooses its own device: torch (a second or more to import, paid by every
    # worker process) is loaded only for advisor's trainer, a device asked by name, or a task
    # that imports torch itself (its threads are then shared out among the workers)
    if runner.kind == "build" or device_name not in ("auto", "cpu") or "torch" in sys.modules:
        runner.device = resolve_device(device_name)
        _threads_for(runner.device, spec.workers, spec.task)
    device = runner.device
    search = Search(spec, url, study_name, storage, device=device, timeout=timeout, index=index, runner=runner)
    study = search.load()
    before = {t.number for t in study.get_trials(deepcopy=False)}
    search.run_search(study)
    worker = _worker_id()
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number not in before and t.user_attrs.get("worker") == worker)


def _existing_storage_file(url: str) -> None:
    """A worker joins a study: a SQLite or journal file that is not there is a wrong path, and
    must not be created empty."""
    from pathlib import Path

    if is_journal(url):
        path = Path(url)
    elif url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1].split("?", 1)[0])
    else:
        return
    if str(path) and not path.exists():
        raise InputError(f"--storage {url}: {path}: no such file (the storage of a study that `advisor search` "
                         "created; nothing was created)")


def worker_devices(workers: int, device_name: str, gpus: int,
                   visible: Optional[str] = None) -> list[tuple[Optional[str], str]]:
    """Where workers 1..workers-1 run (this process is worker 0): (the CUDA_VISIBLE_DEVICES to give
    it, or None to leave it as it is; its --device). With several GPUs and --device auto or cuda,
    one GPU per process, round robin: worker i gets the (i mod gpus)-th GPU this process sees
    (worker 0 the first), named as `visible` (this process's CUDA_VISIBLE_DEVICES) names it, so
    that with "2,3" the workers get 2 and 3, not 0 and 1. Else every worker gets --device as given
    (one GPU, MPS, the CPU, or cuda:N asked by name)."""
    names = [v.strip() for v in (visible or "").split(",") if v.strip()]
    if len(names) < gpus:  # not set (or not readable): CUDA numbers the devices 0..gpus-1
        names = [str(g) for g in range(gpus)]
    out: list[tuple[Optional[str], str]] = []
    for i in range(1, workers):
        if gpus > 1 and device_name in ("auto", "cuda"):
            out.append((names[i % gpus], "cuda"))
        else:
            out.append((None, device_name))
    return out


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def _spawn_workers(url: str, study_name: str, workers: int, device_name: str) -> list:
    """Workers 1..N-1 as processes on this host (this process is worker 0); one GPU each when
    there are several (see worker_devices)."""
    import subprocess
    import tempfile
    from pathlib import Path

    gpus = _gpu_count() if device_name in ("auto", "cuda") else 0
    root = str(Path(__file__).resolve().parents[2])  # so that the child imports this advisor
    procs = []
    for i, (cuda, dev) in enumerate(worker_devices(workers, device_name, gpus, os.environ.get("CUDA_VISIBLE_DEVICES")),
                                    start=1):
        env = dict(os.environ)
        if cuda is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "advisor.act.search", "worker", url, study_name, str(i), dev]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env), log))
    return procs


def _wait_workers(procs) -> list[str]:
    problems = []
    for proc, log in procs:
        code = proc.wait()
        if code != 0:
            log.seek(0)
            lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
            problems.append(f"worker (pid {proc.pid}) exited with code {code}: {lines[-1] if lines else 'no output'}")
        log.close()
    return problems


def _stop_workers(procs) -> None:
    import signal

    for proc, _ in procs:
        with contextlib.suppress(Exception):
            proc.send_signal(signal.SIGINT)
    for proc, log in procs:
        try:
            proc.wait(timeout=30)
        except Exception:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait()
        log.close()
