"""Monitor: the diagnose pipeline fed one epoch at a time, and the events it announces.

Every judgement is `diagnose` itself on the table logged so far: the same roles (ingest's
tidy), the same facts (facts/curves.py) and the same rules (rules/diagnose). At 1,000 epochs
a whole re-diagnosis costs a few milliseconds (bench/bench_watch.py), so nothing here is a
second, incremental implementation of a fact or a rule. What is the Monitor's own is only
which findings are news at a given epoch (rules/watch.yaml) and the record of them.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from advisor.errors import AdvisorError, InputError, RuleError

EventKind = Literal["new", "changed", "cleared"]


class WatchEvent(BaseModel):
    """A finding announced (new), replaced by another of its label or severity (changed), or
    withdrawn (cleared), at the epoch of the log when it happened."""

    event: EventKind
    epoch: int | float | None
    label: str | None
    code: str
    severity: str
    message: str
    run: str | None = None
    part: int = 0  # which run of the log (a restarted epoch counter begins the next one)
    period: int | None = None  # how many epochs (or evaluation periods) diagnose counted then
    advice: str | None = None  # what to do (new and changed)

    def line(self) -> dict[str, Any]:
        """The JSON line of `advisor watch --json`."""
        return self.model_dump(include={"event", "epoch", "label", "code", "severity", "message"})


class SkippedValue(BaseModel):
    """A value log() could not use (a string that is no number, a list, a tensor of many values)."""

    row: int
    name: str
    value: str   # its repr, cut short
    reason: str


# --------------------------------------------------------------------------- settings

class AnnounceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: int = Field(1, ge=1)      # epochs in a row it must hold before it is announced
    clear_after: int = Field(1, ge=1)  # epochs in a row without it before it is withdrawn


class Announce(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: AnnounceRule
    findings: dict[str, AnnounceRule] = {}  # by label or rule code (a code wins)
    silent: list[str] = []                   # labels or codes never announced
    first_epoch: list[str] = []              # the only ones announced while the rows are the periods


class WatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    announce: Announce


@lru_cache(maxsize=None)
def watch_settings(path: str | None = None) -> WatchSettings:
    """rules/watch.yaml, its labels and codes checked against rules/diagnose."""
    from advisor.engine import load_knowledge
    from advisor.engine.loader import load_settings_file, rules_dir

    settings = load_settings_file("watch", WatchSettings, path)
    kb = load_knowledge("diagnose")
    known = set(kb.labels) | {r.code for r in kb.rules}
    for key in [*settings.announce.findings, *settings.announce.silent, *settings.announce.first_epoch]:
        if key not in known:
            raise RuleError(f"{path or rules_dir() / 'watch.yaml'}: '{key}' is neither a label of "
                            f"rules/diagnose nor a rule code")
    return settings


# --------------------------------------------------------------------------- values

_PLAIN_NUMBER = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$")


def _as_number(value: Any) -> tuple[float, bool, str | None]:
    """(the value as a float, whether it is a logged NaN, why it was not usable). A missing
    value (None) is NaN without being a logged NaN; text is read as ingest reads a cell."""
    if value is None:
        return math.nan, False, None
    if isinstance(value, str):
        if _PLAIN_NUMBER.match(value):
            return float(value), False, None
        from advisor.ingest.readers import RawLog, numeric_column

        cell = RawLog("monitor", {"v": np.array([value], dtype=object)}, 1, {})
        try:
            number, explicit = numeric_column(cell, "v", "<monitor>")
        except AdvisorError:
            return math.nan, False, "not a number"
        return float(number[0]), bool(explicit is not None and explicit[0]), None
    try:
        x = float(value)  # int, bool, numpy scalars, a one-element tensor (no torch import)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return math.nan, False, f"not a number ({type(value).__name__})"
    return x, math.isnan(x), None


# --------------------------------------------------------------------------- the monitor

class Monitor:
    """The diagnosis of a run while it trains.

        mon = Monitor(optimizer="adamw", stop_on=("diverged",))
        for epoch in range(epochs):
            ...
            mon.log(epoch=epoch, train_loss=tl, val_loss=vl, val_metric=acc, lr=lr)
            if mon.should_stop:
                break
        print(mon.findings)

    log() takes any names: roles are found as `diagnose` finds them in a log's columns (epoch,
    step, loss / train_loss, val_loss, val_acc ..., lr, grad_norm), other names are kept. One
    call is one row of the log: per epoch, per evaluation or per step. A NaN is a logged NaN
    (divergence), None is no value; odd values (text that is no number, a list) are recorded in
    `skipped`, never raised.
    """

    def __init__(self, optimizer: str | None = None, model_family: str | None = None,
                 finetune: bool | None = None, dataset_size: int | None = None,
                 num_classes: int | None = None, current: dict[str, Any] | None = None,
                 stop_on: Iterable[str] = ("diverged",), map: dict[str, str] | None = None,
                 name: str = "<monitor>", settings: WatchSettings | None = None) -> None:
        from advisor.engine import load_knowledge
        from advisor.facts.context import context_facts

        self.kb = load_knowledge("diagnose")
        if isinstance(stop_on, str):
            stop_on = (stop_on,)
        self.stop_on = tuple(stop_on or ())
        labels = set(self.kb.labels) | {r.code for r in self.kb.rules} | {r.name for r in self.kb.rules}
        for key in self.stop_on:
            if key not in labels:
                raise InputError(f"stop_on: unknown label '{key}' (labels: {', '.join(self.kb.labels)})")
        self.context = context_facts(optimizer=optimizer, model_family=model_family, finetune=finetune,
                                     dataset_size=dataset_size, num_classes=num_classes,
                                     current={k: str(v) for k, v in (current or {}).items()})
        self.overrides = dict(map or {})
        from advisor.ingest.roles import ROLES

        for role in self.overrides:
            if role not in ROLES:
                raise InputError(f"map: unknown role '{role}' (roles: {', '.join(ROLES)})")
        self.name = name
        self.settings = settings or watch_settings()
        self.events: list[WatchEvent] = []
        self.skipped: list[SkippedValue] = []
        self.error: str | None = None  # why the log cannot be judged yet (no loss logged ...)
        self.epoch: int | float | None = None  # the last epoch judged
        # one float buffer per name, grown by doubling: a judgement takes views, not copies
        self._columns: dict[str, np.ndarray] = {}
        self._capacity = 0
        self._explicit: dict[str, list[int]] = {}
        self._rows = 0
        self._judged_rows = 0
        self._next_judgement = 1
        self._last_epoch: float | None = None
        self._epochs_ended = 0  # epoch ends seen (each is a judgement: no need for step checkpoints)
        self._roles_of: dict[tuple[str, ...], dict[str, str]] = {}
        self._diagnosis = None  # the last RunDiagnosis
        self._run = None        # the last RunLog
        self._tracker = _Tracker(self.kb, self.settings)
        self._final = False

    # ---- feeding -----------------------------------------------------------------------
    def log(self, **values: Any) -> list[WatchEvent]:
        """One row of the log. Returns the events this row brought (usually none)."""
        try:
            return self._log(values)
        except Exception as exc:  # noqa: BLE001 - never into the training loop
            self.error = f"{type(exc).__name__}: {exc}"
            return []

    def _log(self, values: dict[str, Any]) -> list[WatchEvent]:
        roles = self._roles(tuple(values))
        epoch = None
        if "epoch" in roles:
            e, _, _ = _as_number(values[roles["epoch"]])
            if math.isfinite(e):
                epoch = max(math.ceil(e - 1e-9), 1) if e != round(e) else int(e)  # HF's 0.25 is in epoch 1
        events: list[WatchEvent] = []
        if epoch is not None and epoch != self._last_epoch and self._rows > self._judged_rows:
            events += self._judge()  # the epoch before is complete: judged without this row of the next
        if epoch is not None:
            self._epochs_ended += self._last_epoch is not None and epoch != self._last_epoch
            self._last_epoch = epoch
        row = self._rows
        nonfinite = evaluation = False
        for name, value in values.items():
            x, logged_nan, why = _as_number(value)
            if why is not None:
                self.skipped.append(SkippedValue(row=row, name=name, value=repr(value)[:80], reason=why))
            column = self._columns.get(name)
            if column is None:
                column = self._columns[name] = np.full(self._capacity, math.nan)
            if row >= self._capacity:
                self._grow()
                column = self._columns[name]
            column[row] = x
            if logged_nan:
                self._explicit.setdefault(name, []).append(row)
            if not math.isfinite(x) and (logged_nan or math.isinf(x)) and _is_loss(name):
                nonfinite = True  # a loss went non-finite: judged at once, not at the epoch's end
            elif value is not None and _is_held_out(name):
                evaluation = True
        self._rows += 1
        a = self.kb.catalogue.analysis
        # a long log without epochs or steps is cut by diagnose into step_bins periods: its rows
        # are no epochs any more
        binned = epoch is None and "step" not in roles and self._rows > a["rows_per_epoch_max"]
        closes = nonfinite or (not binned and (evaluation or "step" not in roles))
        if not closes and self._rows >= self._next_judgement and not self._epochs_ended:
            closes = True  # per-step rows (in a first long epoch, or without epochs): ~step_bins judgements
        if closes and self._rows >= self._next_judgement:
            self._next_judgement = self._rows + max(1, self._rows // int(a["step_bins"]))
        return events + self._judge() if closes else events

    def _grow(self) -> None:
        self._capacity = max(64, 2 * self._capacity)
        for name, old in self._columns.items():
            new = np.full(self._capacity, math.nan)
            new[: len(old)] = old
            self._columns[name] = new

    def _roles(self, names: tuple[str, ...]) -> dict[str, str]:
        """The roles of a row's names, as diagnose finds them in a log's columns (cached: a
        training loop logs the same names each time)."""
        roles = self._roles_of.get(names)
        if roles is None:
            from advisor.ingest.roles import find_roles

            try:
                roles = find_roles(list(names), self.overrides if set(self.overrides.values()) <= set(names) else {},
                                   self.name)
            except AdvisorError:
                roles = {}
            self._roles_of[names] = roles
        return roles

    # ---- judging -----------------------------------------------------------------------
    def _table(self):
        from advisor.ingest.readers import RawLog

        n = self._rows
        columns = {k: v[:n] for k, v in self._columns.items()}  # rows written are never written again
        explicit = {}
        for k, rows in self._explicit.items():
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            explicit[k] = mask
        return RawLog("monitor", columns, n, explicit, records=True, first_row=1)

    def _judge(self) -> list[WatchEvent]:
        """Diagnose the table logged so far; announce what changed."""
        from advisor.ingest.parts import split
        from advisor.ingest.tidy import tidy

        self._judged_rows = self._rows
        a = self.kb.catalogue.analysis
        try:
            raw = self._table()
            parts = split(raw, self.name, self.overrides)
            # the run being trained is the last one (an epoch counter that restarted began it)
            run = tidy(parts[-1][1], self.name, self.overrides, int(a["step_bins"]), int(a["rows_per_epoch_max"]))
        except AdvisorError as exc:  # nothing to judge yet (no loss logged, a header only ...)
            self.error = str(exc)
            return []
        self.error = None
        only = self.settings.announce.first_epoch if rows_are_periods(parts[-1][1], run) else None
        return self.judge_run(run, len(parts) - 1, self._final, only)

    def judge_run(self, run, part: int = 0, final: bool = False, only: list[str] | None = None) -> list[WatchEvent]:
        """Judge a RunLog read elsewhere (advisor watch re-reads a growing file with ingest):
        its diagnosis, and the events that follow from the judgements before. `part`: which run
        of the log it is (a new one withdraws the findings of the one before); `final`: the log
        is complete, so every finding of the diagnosis is announced as it stands; `only`: the
        labels or codes that may be announced at this judgement (the rest wait)."""
        from advisor.advice.diagnosis import diagnose_run

        self._run = run
        self._diagnosis = diagnose_run(run, self.context, self.kb)
        # the epoch the training loop logged last (HF's 2.5 is epoch 3), else the log's period
        self.epoch = self._last_epoch if self._last_epoch is not None else _epoch_label(run)
        d = self._diagnosis
        new = self._tracker.update(d.diagnoses + d.notes, len(run.epochs), self.epoch, run.path, part, final,
                                   None if final else only)
        for event in new:
            event.period = len(run.epochs)
        self.events.extend(new)
        return new

    def finish(self) -> list[WatchEvent]:
        """The run is over: judge what was logged and announce the diagnosis as it stands, the
        same as `diagnose` on the finished log (findings still waiting for confirmation too)."""
        try:
            self._final = True
            return self._judge()
        except Exception as exc:  # noqa: BLE001 - never into the training loop
            self.error = f"{type(exc).__name__}: {exc}"
            return []
        finally:
            self._final = False

    def _fresh(self) -> None:
        if self._rows > self._judged_rows:
            try:
                self._judge()
            except Exception as exc:  # noqa: BLE001 - never into the training loop
                self.error = f"{type(exc).__name__}: {exc}"

    # ---- what it says --------------------------------------------------------------------
    @property
    def judged_rows(self) -> int:
        """How many logged rows the last judgement saw."""
        return self._judged_rows

    @property
    def findings(self) -> list:
        """The current findings (diagnoses, then notes): what `diagnose --json` lists for the
        log so far, same models."""
        self._fresh()
        d = self._diagnosis
        return [] if d is None else d.diagnoses + d.notes

    @property
    def diagnosis(self):
        """The current RunDiagnosis (None before anything could be judged)."""
        self._fresh()
        return self._diagnosis

    @property
    def announced(self) -> list:
        """The findings announced now (new or changed, not cleared): a subset of `findings`."""
        return list(self._tracker.raised.values())

    @property
    def should_stop(self) -> bool:
        """An announced finding whose label (or code, or name) is in stop_on."""
        return self.stopping_finding is not None

    @property
    def stopping_finding(self):
        for f in self._tracker.raised.values():
            if {f.label, f.code, f.name} & set(self.stop_on):
                return f
        return None

    def worst_announced(self) -> int:
        """The level --fail-on compares with (-1 none, 0 info ... 2 error), over the findings
        announced now and as `diagnose` counts it: a healthy run's diagnoses (healthy itself, the
        plateau or slow convergence beside it) are no problem, its notes count."""
        from advisor.engine import severity_rank

        raised = list(self._tracker.raised.values())
        healthy = any(f.label == "healthy" for f in raised)
        return max((severity_rank(f.severity) for f in raised if not (healthy and f.kind == "diagnosis")),
                   default=-1)

    @property
    def best_epoch(self) -> int | None:
        """The epoch with the best validation loss (or metric) so far: the checkpoint to keep."""
        d = self.diagnosis
        return None if d is None else d.facts.get("best_val_epoch")

    def stop_reason(self) -> str | None:
        """One line: why the run should stop, and the epoch to keep."""
        f = self.stopping_finding
        if f is None:
            return None
        best = self.best_epoch
        keep = f"; keep the checkpoint of epoch {best}" if best is not None and f.label != "insufficient_data" else ""
        return f"advisor: stop at epoch {self.epoch}: {f.label or f.name} ({f.code}){keep}. {f.message}"

    def result(self):
        """The DiagnoseReport `diagnose --json` would print for the log so far."""
        from advisor.advice.diagnosis import DiagnoseReport, rank_findings

        d = self.diagnosis
        runs = [] if d is None else [d]
        return DiagnoseReport(diagnoses=rank_findings([f for r in runs for f in r.diagnoses], self.kb.labels),
                              notes=rank_findings([f for r in runs for f in r.notes]), runs=runs)

    def report(self) -> str:
        """Plain text: the events with their epochs, then the current diagnosis."""
        import io

        from rich.console import Console

        from advisor.render.terminal import render
        from advisor.render.watch import event_line

        buf = io.StringIO()
        console = Console(file=buf, width=100, color_system=None, highlight=False, emoji=False)
        console.print(f"{len(self.events)} events while training:" if self.events else "No events while training.")
        for event in self.events:
            console.print("  " + event_line(event), markup=False)
        if self.skipped:
            console.print(f"{len(self.skipped)} values not used: "
                          + ", ".join(f"{s.name}={s.value} (row {s.row})" for s in self.skipped[:5]), markup=False)
        if self.error:
            console.print(f"Not judged: {self.error}", markup=False)
        result = self.result()
        if result.runs:
            render(result, console)
        return buf.getvalue()


def may_be_first_epoch(run) -> bool:
    """What the RunLog alone says of _rows_are_periods: an epoch column, several periods, no
    per-step arrays and no validation (the raw epoch column settles it)."""
    return ("epoch" in run.columns and run.steps is None and len(run.epochs) >= 2
            and not {"val_loss", "val_metric"} & set(run.columns))


def rows_are_periods(table, run) -> bool:
    """Whether diagnose took the rows of this log as its periods: an epoch column holding fewer
    than two epochs and no evaluation (ingest's reading of a run still in its first epoch), so
    per-step noise stands where epoch-level values would."""
    from advisor.ingest.parts import filled
    from advisor.ingest.readers import numeric_column

    column = run.columns.get("epoch")
    if not may_be_first_epoch(run) or column not in table.columns:
        return False
    epoch = filled(numeric_column(table, column, run.path)[0])
    epoch = epoch[np.isfinite(epoch)]
    if np.any(np.abs(epoch - np.round(epoch)) > 1e-9):
        epoch = np.maximum(np.ceil(epoch - 1e-9), 1.0)  # as tidy counts HF's fractional epochs
    return len(np.unique(epoch)) < 2


def _epoch_label(run) -> int | float | None:
    if not len(run.epochs):
        return None
    e = float(run.epochs.index[-1])
    return int(e) if e.is_integer() else e


def _is_loss(name: str) -> bool:
    from advisor.ingest.roles import is_loss

    return is_loss(name)


def _is_held_out(name: str) -> bool:
    from advisor.ingest.roles import is_held_out

    return is_held_out(name)


class _Tracker:
    """Which findings are announced now, by label (notes by code), under rules/watch.yaml:
    a finding is announced once it has held over `confirm` epochs in a row, withdrawn once it
    has been absent over `clear_after`. Epochs are counted in the run's own periods (epochs, or
    evaluations when they are more frequent), as diagnose counts them."""

    def __init__(self, kb, settings: WatchSettings) -> None:
        self.kb = kb
        self.announce = settings.announce
        self.part = 0
        self.raised: dict[str, Any] = {}   # key -> the finding announced
        self.since: dict[str, int] = {}    # key -> epoch count when its current streak began
        self.gone: dict[str, int] = {}     # key (raised) -> epoch count when it was first missing

    def rule_for(self, f) -> AnnounceRule | None:
        a = self.announce
        if f.code in a.silent or (f.label is not None and f.label in a.silent):
            return None
        return a.findings.get(f.code) or (a.findings.get(f.label) if f.label else None) or a.default

    def update(self, findings: list, n: int, epoch, run: str | None, part: int,
               final: bool = False, only: list[str] | None = None) -> list[WatchEvent]:
        """The events of one judgement: `findings` ranked as diagnose ranks them, `n` the run's
        epochs so far. `final`: the log is complete, so what diagnose says is announced as is.
        `only`: the labels or codes this judgement may speak of (the rest stand as they were)."""
        events: list[WatchEvent] = []
        if part != self.part:  # a new run began in the log: the old one's findings are withdrawn
            events += [_event("cleared", f, epoch, run, self.part) for f in self.raised.values()]
            self.raised, self.since, self.gone, self.part = {}, {}, {}, part
        if only is not None:
            findings = [f for f in findings if f.code in only or f.label in only]
        current: dict[str, Any] = {}
        for f in findings:  # the first of a label stands for it
            if self.rule_for(f) is not None or final:  # silent only while the run trains
                current.setdefault(f.label or f.code, f)
        for key, f in current.items():
            self.since.setdefault(key, n)
            self.gone.pop(key, None)
            old = self.raised.get(key)
            if old is None:
                if final or n - self.since[key] + 1 >= (self.rule_for(f) or self.announce.default).confirm:
                    self.raised[key] = f
                    events.append(_event("new", f, epoch, run, part))
            else:
                if (old.code, old.severity) != (f.code, f.severity):
                    events.append(_event("changed", f, epoch, run, part))
                self.raised[key] = f  # the latest message and evidence
        mute = set() if only is None else {k for k, f in self.raised.items() if f.code not in only and f.label not in only}
        for key in [k for k in self.since if k not in current]:
            del self.since[key]
        for key in [k for k in self.raised if k not in current and k not in mute]:
            f = self.raised[key]
            self.gone.setdefault(key, n)
            if final or n - self.gone[key] + 1 >= (self.rule_for(f) or self.announce.default).clear_after:
                del self.raised[key], self.gone[key]
                events.append(_event("cleared", f, epoch, run, part))
        return events


def _event(kind: EventKind, f, epoch, run, part: int) -> WatchEvent:
    return WatchEvent(event=kind, epoch=epoch, label=f.label, code=f.code, severity=f.severity,
                      message=f.message, run=run, part=part, advice=None if kind == "cleared" else f.advice)
