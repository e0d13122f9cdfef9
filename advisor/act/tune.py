"""`advisor tune`: the whole chain on the user's task, within one wall-clock budget.

Each step is the existing code, in order: the device (act/device.py) → a baseline run at the
current configuration, timed (act/search/objective.py's Runner, the search's trainer), its curve
written as a log and diagnosed (advice/diagnosis.py; a run that diverges or does not learn stops
here, rules/tune.yaml `stop`) → the LR range tests (act/cli_lr_find.py) → the plan for the budget
that is left, with the measured trial time and the range test's answer (advice/plan.py) → the
plan's check (advice/check.py; a finding at error level stops) → the search through its phases,
with pruning, and the finalists' seeds (act/search/) → more seeds of the baseline, to compare
like with like → the audit (advice/audit.py, run by the search) → the report (render/tune.py).

Everything lands in one folder: `state.json` (what is done, what it cost: `--resume DIR` reads
it), the study, `baseline.csv`, `lr_find.json`, `plan.yaml` and `plan.json`, `search.json`,
`audit.json`, `best.csv`, `best.yaml`, `tune.json` (the summary `--json` prints), `report.md`
and `report.html`. State is written after every step and every baseline seed, the search's
trials are in the study as they end: a killed process loses at most the run in flight.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pydantic import BaseModel, ConfigDict

from advisor.errors import InputError
from advisor.units import format_seconds as _dur

SCHEMA = "advisor.tune/1"
STATE = "state.json"
STEPS = ("baseline", "lr_find", "plan", "check", "search", "final", "report")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetRules(_Strict):
    report_s: float
    lr_find_share: float
    min_search_trials: int
    overrun: float


class StopRules(_Strict):
    labels: list[str]


class PlanRules(_Strict):
    ignore_labels: list[str]


class FinalRules(_Strict):
    min_top_k: int
    seeds: int


class SearchRules(_Strict):
    stale_ends_search: bool
    trials_follow_budget: bool


class TuneRules(_Strict):
    budget: BudgetRules
    search: SearchRules
    plan: PlanRules
    final: FinalRules
    stop: StopRules
    next: dict[str, str]


def load_rules(path: Optional[str] = None) -> TuneRules:
    file = Path(path) if path else Path(__file__).resolve().parents[2] / "rules" / "tune.yaml"
    return TuneRules.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))


class TuneRequest(BaseModel):
    """What `advisor tune` was asked (durations already in seconds)."""

    task: str                       # path/to/file.py:build, package.module:build, or "demo"
    budget_s: float
    params: Optional[list[str]] = None
    epochs: Optional[int] = None
    optimizer: Optional[str] = None
    current: dict[str, str] = {}
    seed: int = 0
    device: str = "auto"
    storage: Optional[str] = None
    study: Optional[str] = None
    direction: Optional[str] = None


class Stopped(Exception):
    """The chain stops before the budget is spent, for a reason the user can act on."""

    def __init__(self, step: str, message: str, advice: str = ""):
        super().__init__(message)
        self.step, self.message, self.advice = step, message, advice


class Step(BaseModel):
    name: str
    status: str = "pending"          # pending | done | skipped | stopped
    allotted_s: Optional[float] = None
    seconds: float = 0.0
    epochs: float = 0.0
    note: str = ""


class State(BaseModel):
    """state.json: the request, what each step cost and produced; rewritten after each step."""

    schema_version: str = SCHEMA
    request: TuneRequest
    out: str
    created: str
    spent_s: float = 0.0             # wall time of the sessions before this one (a resume adds up)
    steps: dict[str, Step] = {}
    device: Optional[str] = None
    metric: Optional[str] = None
    direction: Optional[str] = None
    epochs: Optional[int] = None
    trial_s: Optional[float] = None  # the baseline run's wall time: one full trial
    hp: dict[str, Any] = {}          # the baseline's hyperparameters as the task got them
    current: dict[str, str] = {}     # the baseline as --current says it (the demo: its own)
    optimizer: Optional[str] = None  # --optimizer, or the baseline's
    num_classes: Optional[int] = None  # an accuracy task's classes (its model's outputs)
    baseline: Optional[dict[str, Any]] = None
    baseline_runs: list[dict[str, Any]] = []   # the baseline at more seeds (final step)
    lr_find: Optional[dict[str, Any]] = None
    plan: Optional[dict[str, Any]] = None
    check: list[dict[str, Any]] = []
    storage: Optional[str] = None
    study: Optional[str] = None
    search_s: Optional[float] = None  # the search's share (it stops starting trials after it)
    search: Optional[dict[str, Any]] = None
    stopped: Optional[dict[str, str]] = None

    def step(self, name: str) -> Step:
        return self.steps.setdefault(name, Step(name=name))


# --------------------------------------------------------------------------- the folder

def default_out(task: str) -> Path:
    stem = task.rsplit(":", 1)[0].replace("\\", "/").split("/")[-1].removesuffix(".py").split(".")[-1] or "task"
    return Path("advisor-runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_folder(out: Path) -> None:
    """The run's folder: new, or an empty one; never one that holds anything (nothing is overwritten)."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"--out {out}: exists and is not a folder; nothing was written")
        if any(out.iterdir()):
            hint = " (a tune run: continue it with --resume)" if (out / STATE).is_file() else ""
            raise InputError(f"--out {out}: the folder exists and is not empty{hint}; nothing was written; "
                             "choose another --out")
        return
    if not out.parent.is_dir() and out.parent != Path("advisor-runs"):
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    out.mkdir(parents=True)


def load_state(folder: Path) -> State:
    file = folder / STATE
    if not folder.is_dir():
        raise InputError(f"--resume {folder}: no such folder")
    if not file.is_file():
        raise InputError(f"--resume {folder}: holds no {STATE}; not a folder `advisor tune` made")
    try:
        return State.model_validate_json(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:160]
        raise InputError(f"--resume {file}: cannot read it ({first})") from None


def save_state(state: State) -> None:
    """Written to a temporary file and moved over: a kill mid-write leaves the previous state."""
    file = Path(state.out) / STATE
    tmp = file.with_name(STATE + ".tmp")
    tmp.write_text(state.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, file)


def write_json(path: Path, data: Any) -> None:
    text = data.model_dump_json(indent=2) if isinstance(data, BaseModel) else json.dumps(data, indent=2, default=str)
    path.write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- the chain

class Tune:
    """Runs the steps not yet done, in order, holding the budget; `say` prints a line of progress
    (stderr), `display()` opens the search's live progress (a context that yields its callback,
    None where there is nothing to draw), `err` is the console the range tests draw on."""

    def __init__(self, state: State, *, say: Callable[[str], None], display=None, err=None):
        from advisor.act.train import load_settings

        self.state, self.say, self.display, self.err = state, say, display, err
        self.rules = load_rules()
        self.settings = load_settings()
        self.began = time.monotonic()
        self.out = Path(state.out)
        self.req = state.request
        self.device = None
        self.runner = None
        self.details: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ the clock

    def elapsed(self) -> float:
        return self.state.spent_s + (time.monotonic() - self.began)

    def left(self) -> float:
        return self.req.budget_s - self.elapsed()

    def _close_session(self) -> None:
        """Fold this session's time into the state (a resume starts its clock from there)."""
        now = time.monotonic()
        self.state.spent_s += now - self.began
        self.began = now

    # ------------------------------------------------------------------ running

    def run(self) -> State:
        from advisor.act.device import describe_device, resolve_device
        from advisor.act.search.objective import Runner

        self.device = resolve_device(self.req.device)
        self.state.device = describe_device(self.device)
        self.runner = Runner(self.req.task, self.device, self.settings)
        if self.runner.kind != "build":
            raise InputError(f"{self.runner.label}: advisor tune needs a task build(hp) -> advisor.Task (the range "
                             "test trains the model itself); a custom objective(hp, report) runs with advisor search")
        steps = {"baseline": self.baseline, "lr_find": self.lr_find, "plan": self.plan, "check": self.check,
                 "search": self.search, "final": self.final, "report": self.report}
        try:
            for name in STEPS:
                step = self.state.step(name)
                if step.status in ("done", "skipped") and name != "report":
                    continue
                started = time.monotonic()
                try:
                    steps[name]()
                finally:
                    step.seconds += time.monotonic() - started
                    self._close_session()
                    save_state(self.state)
                if step.status == "pending":
                    step.status = "done"
                save_state(self.state)
            self.summary = summarize(self.state, self.details)  # with the report's own time
            write_json(self.out / "tune.json", self.summary)
        except Stopped as stop:
            self.state.step(stop.step).status = "stopped"
            self.state.stopped = {"step": stop.step, "message": stop.message, "advice": stop.advice}
            self._close_session()
            save_state(self.state)
            self.report()
        return self.state

    def report(self) -> None:
        """best.csv (the best finalist's curve) diagnosed, best.yaml, tune.json, report.md and
        report.html; also when the chain stopped early (the report says why)."""
        from advisor.render.tune import write_reports

        self.state.step("report").status = "done"
        details = self.details = study_details(self.state) if self.state.study else {}
        curve = details.get("best_curve")
        if curve:
            rows = [{"epoch": i + 1, "loss": loss, self.state.metric: val}
                    for i, (loss, val) in enumerate(zip(curve["train_loss"], curve["val"]))]
            write_curve(self.out / "best.csv", rows, self.state.metric)
            details["best_diagnosis"] = diagnose_curve(self.out / "best.csv", self.state.optimizer,
                                                       self.state.num_classes)
        summary = summarize(self.state, details)
        if summary["final"]:
            (self.out / "best.yaml").write_text(best_yaml(self.state, summary["final"]), encoding="utf-8")
        write_reports(summary, self.out)
        write_json(self.out / "tune.json", summary)
        self.summary = summary

    # ------------------------------------------------------------------ 1. baseline

    def baseline_hp(self) -> dict[str, Any]:
        from advisor.advice.plan import parse_current

        optimizer = self.req.optimizer
        given = dict(self.req.current)
        if self.req.task == "demo":  # the demo's own current configuration, as `advisor search --demo`'s
            d = self.settings.demo
            given = {**{k: str(v) for k, v in d.current.items()}, **given}
            optimizer = optimizer or d.optimizer
        current = parse_current(given, optimizer)
        if "learning_rate" not in current:  # the trainer's default, said: the plan weighs the range test against it
            opt = optimizer or current.get("optimizer") or self.settings.trainer.optimizer
            current["learning_rate"] = float(self.settings.trainer.learning_rate.get(opt, 1e-3))
            given = {**given, "learning_rate": repr(current["learning_rate"])}
        self.state.current, self.state.optimizer = given, optimizer or current.get("optimizer")
        return {**({"optimizer": optimizer} if optimizer else {}), **current}

    def baseline(self) -> None:
        from advisor.act.cli_lr_find import _task_epochs
        from advisor.act.train import Diverged, TrialError, metric_direction

        hp = self.baseline_hp()
        built = self.runner.check(hp, self.req.seed)
        own = metric_direction(built.metric)
        if own is None and self.req.direction is None:
            raise InputError(f"{self.runner.label}: task.metric is a callable; say --direction maximize or minimize "
                             "(or give the callable a `direction` attribute)")
        if own is not None and self.req.direction is not None and own != self.req.direction:
            raise InputError(f"--direction {self.req.direction}: contradicts task.metric {built.metric!r} ({own})")
        name = built.metric if isinstance(built.metric, str) else getattr(built.metric, "__name__", "metric")
        self.state.metric, self.state.direction = f"val_{name}", self.req.direction or own
        epochs = self.req.epochs or _task_epochs(built) or (
            self.settings.demo.epochs if self.req.task == "demo" else self.settings.trainer.epochs)
        self.state.epochs = int(epochs)
        self.state.hp = _plain({**hp, "epochs": int(epochs), "seed": self.req.seed})
        self.state.num_classes = _num_classes(built)
        bs = getattr(built.train_loader, "batch_size", None)
        if "batch_size" not in hp and isinstance(bs, int) and bs > 0:
            # the batch the task builds by default, said as a --current bs would say it: the
            # plan's batch range is then centred on it (rules/tables/ranges.yaml around_current)
            self.state.current = {**self.state.current, "batch_size": str(bs)}
        del built
        self.say(f"baseline: {self.runner.label} at {_fmt_hp(hp) or 'the trainer defaults'}, {epochs} epochs, "
                 f"seed {self.req.seed}, on {self.state.device}")
        began = time.monotonic()
        ends: list[float] = []
        try:
            self.runner.run(dict(self.state.hp), _no_report, self.req.seed, int(epochs),
                            lambda n: ends.append(time.monotonic()))
            result, diverged = self.runner.last, None
        except Diverged as exc:
            result, diverged = exc.partial, exc
        except TrialError as exc:
            raise InputError(f"{self.runner.label}: the baseline run failed: {exc}") from None
        seconds = time.monotonic() - began
        self.state.trial_s = trial_seconds(began, ends, seconds)
        rows = _curve_rows(result, diverged, self.state.metric)
        log = self.out / "baseline.csv"
        write_curve(log, rows, self.state.metric)
        diagnosis = diagnose_curve(log, self.state.optimizer, self.state.num_classes)
        value = result.value if result is not None and not diverged else None
        self.state.baseline = {"params": self.state.hp, "value": _finite(value), "seconds": round(seconds, 3),
                               "epochs": len(rows), "log": log.name, "diagnosis": diagnosis,
                               "curve": {"train_loss": [r["loss"] for r in rows],
                                         "val": [r[self.state.metric] for r in rows]}}
        self.state.step("baseline").epochs = len(rows)
        shown = "diverged" if diverged else f"{self.state.metric} {value:.4g}"
        self.say(f"baseline: {shown} in {seconds:.1f}s; diagnosis: {', '.join(diagnosis['labels']) or 'none'}")
        stop = [lab for lab in diagnosis["labels"] if lab in self.rules.stop.labels]
        if diverged or stop:
            first = diagnosis["findings"][0] if diagnosis["findings"] else None
            what = "diverged" + (f" ({diverged.reason})" if diverged else "") if diverged or "diverged" in stop \
                else "does not learn"
            raise Stopped("baseline", f"the baseline run {what}: tuning around it would spend the budget on a run "
                          f"that does not train ({log} holds its curve; `advisor diagnose {log}` shows the evidence)",
                          first["advice"] if first else "")
        self._timed_again()
        self._check_room()

    def _timed_again(self) -> None:
        """The baseline's second seed, run now rather than in the final step: it is one of the
        seeds the comparison needs anyway, and, run warm, it is the honest time of one trial. The
        first run of a process pays once for what later ones do not (lazy imports inside the
        first optimizer, allocator and kernel caches): in bench_tune it read 1.4-6.7x the warm
        time, and a plan from it bought a third of the trials the budget held."""
        if self._final_seeds() < 2 or self.left() < 3 * self.state.trial_s:
            return  # a budget this small is refused by _check_room on the first run's time
        s = self.req.seed + 1
        ran = next((r for r in self.state.baseline_runs if r["seed"] == s), None)
        if ran is not None:  # resumed after it ran: its time stands
            if ran.get("value") is not None:
                self.state.trial_s = min(self.state.trial_s, ran["seconds"])
            return
        self.say(f"baseline: again at seed {s} (one of the comparison's seeds; warm, it times a trial)")
        began = time.monotonic()
        value = self._baseline_at(s)
        took = time.monotonic() - began
        self.state.baseline_runs.append({"seed": s, "value": _finite(value), "seconds": round(took, 3)})
        self.state.step("baseline").epochs += self.state.epochs
        if value is not None:  # a failed run times nothing
            self.state.trial_s = min(self.state.trial_s, took)

    def _baseline_at(self, seed: int) -> Optional[float]:
        from advisor.act.train import Diverged, TrialError

        try:
            return self.runner.run({**self.state.hp, "seed": seed}, _no_report, seed, self.state.epochs,
                                   lambda n: None)
        except (Diverged, TrialError) as exc:
            self.say(f"baseline: the run at seed {seed} failed: {exc}")
            return None

    def _check_room(self) -> None:
        """Stop when the budget cannot hold a search worth the name (rules/tune.yaml): what was
        spent, the range tests' share, the search's least trials (and one in flight), the best
        and the baseline at the final seeds, the report."""
        b = self.rules.budget
        seeds = self.rules.final.seeds
        t = self.state.trial_s
        needed = (self.elapsed() + b.lr_find_share * self.req.budget_s
                  + t * (1 + b.min_search_trials + self.rules.final.min_top_k * seeds + seeds - 1) + b.report_s)
        if self.req.budget_s < needed:
            raise Stopped("baseline", f"one run takes {_dur(self.state.trial_s)}: a budget of "
                          f"{_dur(self.req.budget_s)} leaves no room for a search ({b.min_search_trials} trials, "
                          f"then the best and the baseline at {seeds} seeds)",
                          f"give --budget {_dur(needed * 1.05, up=True)} or more, or fewer --epochs")

    # ------------------------------------------------------------------ 2. lr-find

    def lr_find(self) -> None:
        from advisor.act.cli_lr_find import draw_plot, run_range_tests
        from advisor.act.lr_find import load_settings as lr_settings
        from advisor.advice.plan import parse_params

        step = self.state.step("lr_find")
        names = parse_params(self.req.params)
        if names is not None and "learning_rate" not in names:
            step.status, step.note = "skipped", "--params leaves the learning rate out"
            self.say("lr-find: skipped (--params leaves the learning rate out)")
            return
        settings = lr_settings()
        sw = settings.sweep
        hp = self.state.hp
        optimizer = str(hp.get("optimizer") or self.settings.trainer.optimizer)
        if optimizer not in ("sgd", "adam", "adamw"):
            step.status, step.note = "skipped", f"the range test has no {optimizer}"
            self.say(f"lr-find: skipped (the range test runs sgd, adam or adamw, not {optimizer})")
            return
        # what one range test costs, from the baseline's time per training step
        steps_per_run = self._steps_per_epoch() * self.state.epochs
        per_step = self.state.trial_s / max(1, steps_per_run)
        allowed = self.rules.budget.lr_find_share * self.req.budget_s
        repeats = max(1, min(sw.repeats, int(allowed // max(1e-9, sw.iters * per_step))))
        step.allotted_s = round(repeats * sw.iters * per_step, 2)
        self.say(f"lr-find: {repeats} range test(s) of {sw.iters} steps ({optimizer}), about "
                 f"{_dur(step.allotted_s)}" + (f" (fewer than {sw.repeats}: the budget's "
                                               f"{self.rules.budget.lr_find_share:.0%} share)" if repeats < sw.repeats
                                               else ""))
        task_hp = {k: hp[k] for k in ("batch_size",) if k in hp}
        report, _ = run_range_tests(self.req.task, task_hp, optimizer=optimizer, momentum=hp.get("momentum"),
                                    weight_decay=hp.get("weight_decay"), start=sw.start, end=sw.end, iters=sw.iters,
                                    repeats=repeats, seed=self.req.seed, epochs=self.state.epochs,
                                    device=self.device, settings=settings, err=self.err)
        write_json(self.out / "lr_find.json", report)
        with contextlib.suppress(ImportError):
            import matplotlib  # noqa: F401  (the plot needs it; the JSON does not)

            draw_plot(report, self.out / "lr_find.png")
        step.epochs = round(report.sweep["steps"] * repeats / max(1, self._steps_per_epoch()), 2)
        self.state.lr_find = {"suggested_lr": report.suggested_lr, "range": report.range,
                              "verdict": report.verdict, "confidence": report.confidence,
                              "confidence_label": report.confidence_label, "message": report.message,
                              "optimizer": optimizer, "repeats": repeats, "seconds": report.seconds,
                              "file": "lr_find.json", "plot": "lr_find.png" if (self.out / "lr_find.png").exists()
                              else None}
        lr = f"{report.suggested_lr:.2e}" if report.suggested_lr else "none"
        self.say(f"lr-find: suggested {lr} ({report.verdict}, confidence {report.confidence:.2f})")

    def _steps_per_epoch(self) -> int:
        if not hasattr(self, "_spe"):
            from advisor.act.cli_lr_find import _build

            try:
                self._spe = max(1, len(_build(self.req.task, {k: v for k, v in self.state.hp.items()
                                                              if k == "batch_size"}).train_loader))
            except TypeError:
                self._spe = 100
        return self._spe

    # ------------------------------------------------------------------ 3. plan

    def reserve_after_search(self) -> float:
        """Seconds kept for what runs after the search: the baseline's seeds still to run and the report."""
        runs = [r["seconds"] for r in self.state.baseline_runs if r.get("seconds")]
        run = max([self.state.trial_s] + runs)  # as it ran warm
        return self._baseline_seeds_left() * run + self.rules.budget.report_s

    def _baseline_seeds_left(self) -> int:
        return max(0, self._final_seeds() - 1 - len(self.state.baseline_runs))

    def _final_seeds(self) -> int:
        plan = self.state.plan or {}
        return int(plan.get("seeds_final") or self.settings.final.seeds)

    def plan(self) -> None:
        from advisor.advice.plan import Finder, PlanInput, build_plan, parse_current, parse_params
        from advisor.emit import emit
        from advisor.facts.hardware import detect

        t = self.state.trial_s
        # the plan shares out what is left after this step, less the baseline's seeds, the report
        # and one trial's time (a margin: the search's deadline falls within a trial of it)
        room = self.left() - self._baseline_seeds_left() * t - self.rules.budget.report_s - t
        finder = None
        lf = self.state.lr_find
        if lf and lf.get("suggested_lr"):
            rng = lf.get("range") or [None, None]
            finder = Finder(path=str(self.out / "lr_find.json"), suggested_lr=lf["suggested_lr"], low=rng[0],
                            high=rng[1], verdict=lf.get("verdict"), optimizer=lf.get("optimizer"))
        summary = None
        if self.state.baseline and self.state.baseline.get("diagnosis", {}).get("summary"):
            from advisor.advice.plan import DiagnosisSummary

            summary = DiagnosisSummary.model_validate(self.state.baseline["diagnosis"]["summary"])
            ignored = [lab for lab in summary.labels if lab in self.rules.plan.ignore_labels]
            if ignored:
                summary.labels = [lab for lab in summary.labels if lab not in ignored]
                self.say(f"plan: the baseline is diagnosed {', '.join(ignored)}, so `advisor plan` would advise "
                         "against a search; searching as asked (the report compares at equal seeds)")
        optimizer = self.state.optimizer
        # planned in trials, not hours: the plan's bands assume a GPU-hour buys about one
        # training, while here one training takes what the baseline took; so each measured trial
        # is planned as one nominal trial (rules/search.yaml), as `advisor search` does without
        # --budget: the number of full trainings the budget buys sets the band
        unit = self.settings.search.nominal_trial_hours

        def make(seconds: float):
            return build_plan(PlanInput(
                budget_hours=max(seconds, t) / t * unit, trial_hours=unit, epochs=self.state.epochs,
                hardware=detect(None, None), workers=1, params=parse_params(self.req.params), optimizer=optimizer,
                current=parse_current(self.state.current, optimizer), diagnosis=summary, finder=finder,
                metric=self.state.metric, direction=self.state.direction, name=_stem(self.req.task),
                trial_time_from="measured: the baseline run"))

        plan = make(room)
        fr = self.rules.final
        if plan.tune and plan.top_k < fr.min_top_k:  # a small band re-runs no finalist: tune does
            plan = make(room - fr.min_top_k * fr.seeds * t)
            plan.top_k, plan.seeds_final = max(plan.top_k, fr.min_top_k), max(plan.seeds_final, fr.seeds)
            plan.notes.append(f"advisor tune: the best {plan.top_k} re-run with {plan.seeds_final} seeds although "
                              "this budget band plans none, so that tuned and baseline compare at equal seeds "
                              "(rules/tune.yaml final)")
        plan.notes.append(f"advisor tune: planned in trials: the {_dur(room)} left for the search and the final "
                          f"seeds buy {max(room, t) / t:.1f} runs of the measured {_dur(t)}; each is planned as a "
                          f"trial of {unit:g} h, so the hours of this plan count trials")
        write_json(self.out / "plan.json", plan)
        final_s = plan.top_k * plan.seeds_final * t
        self.state.plan = {"tune": plan.tune, "strategy": plan.strategy, "trials": plan.n_configs,
                           "params": [p.name for p in plan.params], "top_k": plan.top_k,
                           "seeds_final": plan.seeds_final, "pruner": plan.pruner.type,
                           "cost_share": plan.pruner.cost_share,
                           "phases": [ph.model_dump() for ph in plan.phases], "file": "plan.yaml",
                           "budget_s": round(room, 2), "final_s": round(final_s, 2)}
        if not plan.tune:
            why = next((r for r in plan.reasons if r.severity != "info"), plan.reasons[0] if plan.reasons else None)
            raise Stopped("plan", "the plan says not to search" + (f": {why.code} {why.message}" if why else ""),
                          why.advice if why else "")
        # the shares, decided here for the rest of the budget
        search_s = max(0.0, room - final_s)
        least = self.rules.budget.min_search_trials
        if search_s < least * t:  # what is left after the baseline and the range tests holds no search
            needed = self.elapsed() + (least + 1) * t + final_s + self.reserve_after_search()
            raise Stopped("plan", f"after the baseline and the range tests, {_dur(max(0.0, room))} is left: room for "
                          f"{max(0.0, search_s) / t:.1f} trials of {_dur(t)} besides the final seeds, fewer than "
                          f"{least}", f"give --budget {_dur(needed * 1.05, up=True)} or more, or fewer --epochs")
        (self.out / "plan.yaml").write_text(emit(plan, "yaml", "plan.yaml"), encoding="utf-8")
        self.state.search_s = search_s
        self.state.step("search").allotted_s = round(search_s + t, 2)
        self.state.step("final").allotted_s = round(final_s + (self._final_seeds() - 1) * t, 2)
        self.state.step("report").allotted_s = self.rules.budget.report_s
        params = ", ".join(p.name for p in plan.params)
        self.say(f"plan: {plan.strategy} over {params}; {plan.n_configs} trials, pruner {plan.pruner.type}, "
                 f"top {plan.top_k} x {plan.seeds_final} seeds; shares: search {_dur(search_s + t)}, final "
                 f"{_dur(self.state.step('final').allotted_s)}, report {_dur(self.rules.budget.report_s)} "
                 f"(of {_dur(self.left())} left)")

    # ------------------------------------------------------------------ 4. check

    def check(self) -> None:
        from advisor.advice.check import check

        t = self.state.trial_s
        unit = self.settings.search.nominal_trial_hours  # in trials, as the plan was made
        context = {"budget_hours": (self.state.plan or {}).get("budget_s", 0) / t * unit or None,
                   "trial_hours": unit, "epochs": self.state.epochs,
                   "optimizer": self.state.hp.get("optimizer")}
        report, _, _ = check(self.out / "plan.yaml", context)
        self.state.check = [{"code": f.code, "severity": f.severity, "message": f.message, "advice": f.advice,
                             "param": f.param} for f in report.findings]
        errors = [f for f in report.findings if f.severity == "error"]
        self.say(f"check: {len(report.findings)} finding(s), {len(errors)} at error level")
        if errors:
            f = errors[0]
            raise Stopped("check", f"the plan's check found {f.code}: {f.message}", f.advice)

    # ------------------------------------------------------------------ 5. search (and the finalists' seeds)

    def search(self) -> None:
        from advisor.act.search import Request, prepare
        from advisor.act.search.run import run as run_search

        resume = self.state.study is not None
        url = self.req.storage or f"sqlite:///{(self.out / 'study.db').as_posix()}"
        # the search ends (its trial in flight cut at an epoch) so that the finalists' seeds end
        # inside the budget; a resumed search gets what is left of its share
        final_s = (self.state.plan or {}).get("final_s", 0.0)
        # (the deadline to the epoch is _finals_must_fit's; this is its outer bound)
        timeout = max(0.0, self.left() - self.reserve_after_search() - final_s)
        if resume:
            req = Request(task=self.req.task, storage=url, study=self.state.study, resume=True, device=self.req.device,
                          seed=self.req.seed, timeout_s=max(timeout, 1e-3))
        else:
            req = Request(task=self.req.task, plan=str(self.out / "plan.yaml"), epochs=self.state.epochs,
                          optimizer=self.state.optimizer, current=self.state.current, storage=url,
                          study=self.req.study or f"{_stem(self.req.task)}-tune-{time.strftime('%Y%m%d-%H%M%S')}",
                          device=self.req.device, trials=self._trials_for(timeout),
                          seed=self.req.seed, direction=self.state.direction, timeout_s=max(timeout, 1e-3))
        prepared = prepare(req, self.settings)
        self.state.storage, self.state.study = prepared.url, prepared.study
        save_state(self.state)
        self.say(f"search: study {prepared.study} in {prepared.url}; {prepared.spec.trials} trials at most, "
                 f"{_dur(timeout)} to start them" + (" (resumed)" if resume else ""))
        known = None if resume else Replay(self.runner, self.state.baseline, self.state.epochs)
        marks = {"final": None}
        stop, cut = self._finals_must_fit(prepared.spec)
        with (self.display() if self.display else contextlib.nullcontext()) as shown:
            def progress(event) -> None:
                if event.phase == "final" and marks["final"] is None:
                    marks["final"] = time.monotonic()
                if shown is not None:
                    shown(event)

            report = run_search(prepared.spec, prepared.url, prepared.study, resume=prepared.resume,
                                device_name=self.req.device, timeout=max(timeout, 1e-3), progress=progress,
                                notes=prepared.notes, storage=prepared.storage, runner=prepared.runner,
                                known_baseline=known, stop_when=stop, cut_when=cut,
                                stale_ends_search=self.rules.search.stale_ends_search)
        ended = time.monotonic()
        final_began = marks["final"] or ended
        write_json(self.out / "search.json", report)
        write_json(self.out / "audit.json", {"study": report.study, "storage": report.storage,
                                             "findings": report.audit})
        search_step, final_step = self.state.step("search"), self.state.step("final")
        final_step.seconds += ended - final_began
        search_step.seconds -= ended - final_began  # run() adds the whole call to the search step
        by_phase = {ph["name"]: ph for ph in report.phases}
        final_step.epochs += by_phase.get("final", {}).get("epochs", 0)
        search_step.epochs = sum(ph["epochs"] for n, ph in by_phase.items() if n != "final")
        self.state.search = {"file": "search.json", "study": report.study, "storage": report.storage,
                             "trials": report.trials, "stopped_by": report.stopped_by,
                             "best": report.best.model_dump() if report.best else None,
                             "baseline": report.baseline.model_dump() if report.baseline else None,
                             "phases": report.phases, "epochs_saved_by_pruning": report.epochs_saved_by_pruning,
                             "epochs_search": report.epochs_search, "final": [f.model_dump() for f in report.final],
                             "audit": report.audit, "notes": report.notes, "seconds": report.seconds}
        search_step.note = f"stopped by {report.stopped_by}"
        best = report.final[0] if report.final else None
        self.say(f"search: {report.trials.get('complete', 0)} complete, {report.trials.get('pruned', 0)} pruned "
                 f"(stopped by {report.stopped_by}); finalists re-run: "
                 + (f"best {best.mean:.4g} ± {best.std or 0:.2g} over {len(best.values)} seeds" if best and
                    best.mean is not None else "none"))

    def _trials_for(self, seconds: float) -> Optional[int]:
        """The search's trials when its time share buys more than the plan's: the plan caps a
        budget band's configurations (rules/tables/budget.yaml) for a search a person watches;
        here the user's budget is the deadline, and trials the share would leave unbought are
        time the budget gave for nothing (rules/tune.yaml search.trials_follow_budget)."""
        plan = self.state.plan or {}
        if not self.rules.search.trials_follow_budget or plan.get("strategy") not in ("random", "bayesian"):
            return None
        bought = int(seconds / (self.state.trial_s * float(plan.get("cost_share") or 1.0)))
        if bought <= int(plan.get("trials") or 0):
            return None
        self.say(f"search: {bought} trials instead of the plan's {plan['trials']} (its budget band's cap): the "
                 f"search's {_dur(seconds)} buys them at {plan.get('cost_share', 1.0):.0%} of a full trial each "
                 f"under {plan.get('pruner')}")
        return bought

    def _finals_must_fit(self, spec):
        """The search's deadline, as (stop, cut): the finalists' seeds cost what the best
        configurations' trials actually took (a small batch trains slower than the baseline), so
        the search stops once what is left would not hold them, the baseline's seeds, the report
        and a next trial up to its pruner's first rung (`stop`, read after each trial); a trial
        still training when only that is left is pruned there (`cut`, read after each epoch):
        the final seeds never pay for an overrun, and the search's share is spent to the epoch."""
        from advisor.act.search.space import pruner_spec
        from advisor.act.search.trials import is_final

        sign = 1.0 if spec.direction == "maximize" else -1.0
        t = self.state.trial_s
        kind, args = pruner_spec(spec.get_space(), spec.epochs)
        if kind == "PatientPruner":
            args = args["wrapped_pruner"][1]
        # a trial cut before its first rung tells the pruner nothing; without a pruner, only a
        # whole trial does (a grid, or a plan with no pruning)
        rung = args.get("min_resource") or args.get("n_warmup_steps", spec.epochs - 1) + 1
        rung_share = min(1.0, rung / max(1, spec.epochs))
        need = {"finals": spec.seeds_final * spec.top_k * t, "longest": t}

        def cost(tr, took: float) -> float:
            """A final re-run's: the trial's training alone (a final re-run reports to no pruner);
            the baseline's trial is replayed from its run, which took the trial time."""
            if tr.user_attrs.get("baseline") or not tr.user_attrs.get("train_s"):
                return max(took, t)
            return float(tr.user_attrs["train_s"])

        def stop(trials) -> bool:
            took = {}
            for tr in trials:
                if is_final(tr) or tr.datetime_start is None or tr.datetime_complete is None:
                    continue
                took[tr.number] = (tr.datetime_complete - tr.datetime_start).total_seconds()
            done = sorted((tr for tr in trials if tr.state.name == "COMPLETE" and tr.number in took
                           and tr.value is not None and math.isfinite(tr.value)), key=lambda tr: -sign * tr.value)
            best, seen = [], set()
            for tr in done:
                key = json.dumps(tr.params, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    best.append(cost(tr, took[tr.number]))
            best = (best + [t] * spec.top_k)[:spec.top_k]
            need["finals"] = spec.seeds_final * sum(best)
            need["longest"] = max([t, *took.values()])
            return self.left() < need["finals"] + self.reserve_after_search() + need["longest"] * rung_share

        def cut() -> bool:  # one epoch of the slowest trial yet is what the cut can overrun by
            return self.left() < need["finals"] + self.reserve_after_search() + need["longest"] / max(1, spec.epochs)

        return stop, cut

    # ------------------------------------------------------------------ 6. the baseline at more seeds

    def final(self) -> None:
        """The baseline again, at seeds seed+1 .. seed+n-1 (its first run, at seed, is one of its
        n seeds; the finalists run at seed+1 .. seed+n): tuned and baseline compared at the same
        number of seeds."""
        seeds = [self.req.seed + 1 + s for s in range(self._final_seeds() - 1)]
        have = {r["seed"] for r in self.state.baseline_runs}
        for s in seeds:
            if s in have:
                continue
            self.say(f"final: the baseline at seed {s}")
            began = time.monotonic()
            value = self._baseline_at(s)
            self.state.baseline_runs.append({"seed": s, "value": _finite(value),
                                             "seconds": round(time.monotonic() - began, 3)})
            self.state.step("final").epochs += self.state.epochs
            save_state(self.state)


# --------------------------------------------------------------------------- 7. the report's data

def study_details(state: State) -> dict[str, Any]:
    """From the study: every search trial (for the history plot), the parameters' importance,
    and the best finalist's curve (its first seed)."""
    out: dict[str, Any] = {"history": [], "importance": {}, "best_curve": None}
    if not state.storage or not state.study:
        return out
    import optuna

    from advisor.act.search.constants import FINALISTS_ATTR
    from advisor.act.search.run import _quiet_optuna
    from advisor.act.search.trials import is_extra, is_final

    with _quiet_optuna():
        study = optuna.load_study(study_name=state.study, storage=state.storage)
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if is_final(t) or is_extra(t) or t.user_attrs.get("interrupted") or not t.state.is_finished():
                continue
            value = t.value if t.value is not None and math.isfinite(t.value) else None
            if value is None and t.intermediate_values:  # a pruned trial: its last reported value
                last = t.intermediate_values[max(t.intermediate_values)]
                value = last if math.isfinite(last) else None
            out["history"].append({"number": t.number, "value": value, "state": t.state.name.lower(),
                                   "phase": t.user_attrs.get("phase"), "baseline": bool(t.user_attrs.get("baseline")),
                                   "epochs": t.user_attrs.get("epochs")})
        with contextlib.suppress(Exception):  # too few trials, or no parameter varied
            complete = [t for t in trials if t.state.name == "COMPLETE" and not is_final(t)]
            if len(complete) >= 3:
                imp = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    target=lambda t: t.value, params=None)
                out["importance"] = {k: round(float(v), 4) for k, v in imp.items()}
        final = (state.search or {}).get("final") or []
        chosen = (study.user_attrs.get(FINALISTS_ATTR) or {}).get("chosen") or []
        key = next((c["key"] for c in chosen if final and c.get("number") == final[0].get("search_number")), None)
        runs = sorted((t for t in trials if is_final(t) and t.user_attrs.get("config") == key
                       and t.user_attrs.get("curve")), key=lambda t: t.user_attrs.get("seed", 0))
        if runs:
            out["best_curve"] = runs[0].user_attrs["curve"]
    return out


def summarize(state: State, details: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The document `advisor tune --json` prints and tune.json holds."""
    rules = load_rules()
    direction = state.direction or "maximize"
    sign = 1.0 if direction == "maximize" else -1.0
    base = state.baseline or {}
    values = [base.get("value")] + [r["value"] for r in state.baseline_runs]
    b_mean, b_std, b_n = mean_std(values)
    search = state.search or {}
    finals = search.get("final") or []
    best = finals[0] if finals else None
    final = None
    if best is not None:
        mean, std, n = mean_std(best["values"])
        final = {"mean": mean, "std": std, "n": n, "params": best["params"], "values": best["values"],
                 "search_value": best.get("search_value")}
    elif search.get("best"):
        final = {"mean": search["best"]["value"], "std": None, "n": 1, "params": search["best"]["params"],
                 "values": [search["best"]["value"]], "search_value": search["best"]["value"]}
    improvement = None
    if final and final["mean"] is not None and b_mean is not None:
        delta = sign * (final["mean"] - b_mean)
        improvement = {"metric": state.metric, "delta": delta,
                       "in_baseline_std": (delta / b_std) if b_std else None,
                       "better": delta > 0, "beyond_two_std": bool(b_std) and delta > 2 * b_std}
    details = details or {}
    best_diag = details.get("best_diagnosis")
    nexts = []
    if best_diag:
        labels = best_diag.get("labels") or []
        head = rules.next.get(labels[0]) if labels else None
        if head:
            nexts.append(head)
        wrong = [f for f in best_diag.get("findings", []) if f.get("advice") and f.get("label") != "healthy"]
        nexts += [f"{f['code']}: {f['advice']}" for f in wrong[:2]]
    for f in (search.get("audit") or [])[:3]:
        if f.get("severity") in ("warning", "error") and f.get("advice"):
            nexts.append(f"audit {f.get('code')}: {f['advice']}")
    if search.get("stopped_by") == "stale":  # the plan's stop rule: budget left is budget not needed
        unused = state.request.budget_s - state.spent_s
        nexts.append(f"the search ended by its stop rule (the best stopped improving), {_dur(unused)} of the budget "
                     "unused: more trials of these ranges were unlikely to help")
    if state.stopped:
        nexts.insert(0, state.stopped.get("advice") or state.stopped["message"])
    phases = []
    for name in STEPS:
        st = state.steps.get(name)
        if st is None:
            continue
        phases.append({"name": name, "status": st.status, "seconds": round(st.seconds, 2),
                       "allotted_s": st.allotted_s, "epochs": round(st.epochs, 2), "note": st.note or None})
    used = sum(p["seconds"] for p in phases)
    status = "stopped" if state.stopped else ("done" if state.steps.get("report", Step(name="r")).status == "done"
                                              or all(state.step(n).status in ("done", "skipped") for n in STEPS[:-1])
                                              else "interrupted")
    return {
        "schema_version": SCHEMA, "task": state.request.task, "out": state.out, "device": state.device,
        "status": status, "stopped": state.stopped,
        "budget": {"budget_s": state.request.budget_s, "used_s": round(max(used, state.spent_s), 2),
                   "within": max(used, state.spent_s) <= state.request.budget_s * (1 + rules.budget.overrun)},
        "metric": state.metric, "direction": direction,
        "baseline": {**{k: base.get(k) for k in ("params", "value", "seconds", "epochs", "log")},
                     "values": values, "mean": b_mean, "std": b_std, "n": b_n,
                     "diagnosis": {k: (base.get("diagnosis") or {}).get(k) for k in ("labels", "verdict", "findings")},
                     "curve": base.get("curve")},
        "lr_find": state.lr_find, "plan": state.plan, "check": state.check,
        "search": {k: search.get(k) for k in ("file", "study", "storage", "trials", "stopped_by", "best",
                                              "epochs_saved_by_pruning", "epochs_search", "phases", "notes")}
        if search else None,
        "final": final, "improvement": improvement, "phases": phases,
        "audit": search.get("audit") or [],
        "best": {"file": "best.yaml", "log": "best.csv", "diagnosis": best_diag} if final else None,
        "next": nexts,
        "history": details.get("history") or [], "importance": details.get("importance") or {},
        "best_curve": details.get("best_curve"),
        "report": {"md": "report.md", "html": "report.html"},
    }


def best_yaml(state: State, final: dict[str, Any]) -> str:
    """best.yaml: the chosen hyperparameters, ready to use (the trainer's fixed ones included)."""
    from advisor.act.search.objective import SearchSpec

    fixed: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        import optuna

        from advisor.act.search.constants import SPEC_ATTR
        from advisor.act.search.run import _quiet_optuna

        with _quiet_optuna():
            study = optuna.load_study(study_name=state.study, storage=state.storage)
        fixed = dict(SearchSpec.model_validate(study.user_attrs[SPEC_ATTR]).fixed)
    hp = {**fixed, **final["params"], "epochs": state.epochs}
    std = f" ± {final['std']:.3g}" if final.get("std") is not None else ""
    head = (f"# advisor tune {state.request.task}: the best configuration, {state.metric} "
            f"{final['mean']:.4g}{std} over {final['n']} seed(s)\n")
    return head + yaml.safe_dump(_plain(hp), sort_keys=True)


# --------------------------------------------------------------------------- the replayed baseline

class Replay:
    """A runner whose one run is the baseline already trained: the search's baseline trial is
    recorded from it (its curve reported epoch by epoch) instead of training it again."""

    kind = "build"

    def __init__(self, runner, baseline: Optional[dict[str, Any]], epochs: int):
        self.label, self.source = runner.label, runner.source
        self.baseline, self.epochs = baseline or {}, epochs
        self.last = None

    def run(self, hp: dict, report, seed: int, epochs: int, on_epoch) -> float:
        from advisor.act.train import TrainResult

        curve = self.baseline.get("curve") or {}
        val = [v if v is not None else math.nan for v in curve.get("val") or []]
        for i, v in enumerate(val):
            on_epoch(i + 1)
            report(v, i)
        value = self.baseline.get("value")
        self.last = TrainResult(value=value if value is not None else math.nan, history=val,
                                train_loss=[v if v is not None else math.nan for v in curve.get("train_loss") or []],
                                epochs=len(val), seconds=float(self.baseline.get("seconds") or 0.0))
        return self.last.value


# --------------------------------------------------------------------------- curves as logs

def _curve_rows(result, diverged, metric: str) -> list[dict[str, Any]]:
    rows = []
    if result is not None:
        for i, (loss, val) in enumerate(zip(result.train_loss, result.history)):
            rows.append({"epoch": i + 1, "loss": _finite(loss), metric: _finite(val)})
    if diverged is not None:  # the epoch it diverged in: a non-finite loss the diagnosis reads
        rows.append({"epoch": len(rows) + 1, "loss": math.nan, metric: math.nan})
    return rows


def write_curve(path: Path, rows: list[dict[str, Any]], metric: str) -> None:
    """A Keras-style CSV log (epoch, loss, val_<metric>): what `advisor diagnose` reads, and the user can."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "loss", metric])
        for r in rows:
            w.writerow([r["epoch"], _cell(r["loss"]), _cell(r[metric])])


def _cell(v) -> str:
    if v is None:
        return ""
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}"


def diagnose_curve(path: Path, optimizer: Optional[str] = None, num_classes: Optional[int] = None) -> dict[str, Any]:
    """The diagnose rules on a curve the chain wrote: labels, findings, and the plan's summary
    (the number of classes, when known, lets them tell a loss stuck at chance level)."""
    from advisor.advice.diagnosis import diagnose
    from advisor.advice.plan import summarize_diagnosis
    from advisor.facts.context import context_facts

    report, _ = diagnose([path], context_facts(optimizer=optimizer, num_classes=num_classes))
    run = report.runs[0]
    return {"labels": [f.label for f in run.diagnoses if f.label], "verdict": run.verdict,
            "findings": [{"code": f.code, "label": f.label, "severity": f.severity, "message": f.message,
                          "advice": f.advice} for f in run.diagnoses + run.notes],
            "tune_first": list(run.tune_first), "summary": summarize_diagnosis(report).model_dump()}


# --------------------------------------------------------------------------- small helpers

def trial_seconds(began: float, ends: list[float], total: float) -> float:
    """One trial's time from the baseline run: its wall time with the first epoch counted at the
    mean of the others (the first pays once for what later runs do not: warm-up of the
    libraries and caches, the first allocations). One epoch: the wall time as it is."""
    if len(ends) < 2:
        return total
    durations = [b - a for a, b in zip([began] + ends[:-1], ends)]
    rest = statistics.fmean(durations[1:])
    return total - durations[0] + min(durations[0], rest)


def _num_classes(built) -> Optional[int]:
    """Classes of a classification task (metric accuracy): the width of the model's output on
    one validation batch (one logit: 2); None for anything else or when it cannot be told."""
    if built.metric != "accuracy":
        return None
    with contextlib.suppress(Exception):
        import torch

        from advisor.act.lr_find import forward, split_batch

        inputs, _ = split_batch(next(iter(built.val_loader)), "val_loader")
        built.model.eval()
        with torch.no_grad():
            out = forward(built.model, inputs)
        width = int(out.shape[-1]) if out.dim() >= 2 else 1
        return width if width > 1 else 2
    return None


def _no_report(value: float, epoch: int) -> None:
    return None


def _stem(task: str) -> str:
    return default_out(task).name.rsplit("-", 2)[0]


def _finite(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    from advisor.act.search.objective import _plain as plain

    return plain(value)


def _fmt_hp(hp: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def mean_std(values: list[Optional[float]]) -> tuple[Optional[float], Optional[float], int]:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    if not ok:
        return None, None, 0
    return statistics.fmean(ok), (statistics.stdev(ok) if len(ok) > 1 else 0.0), len(ok)
