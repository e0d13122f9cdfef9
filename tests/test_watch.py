"""advisor.watch.Monitor: the diagnosis fed one epoch at a time, its events and its stops."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.advice.diagnosis import diagnose
from advisor.errors import InputError, RuleError
from advisor.watch import Monitor, WatchSettings, watch_settings

from conftest import ROOT


def _diverging(epochs: int = 30, blow: int = 12):
    """A loss that falls, explodes from epoch `blow` and goes NaN three epochs later."""
    for e in range(epochs):
        if e < blow:
            tl = 2.0 * math.exp(-e / 5) + 0.1
        elif e < blow + 3:
            tl = 40.0 * (e - blow + 1)
        else:
            tl = math.nan
        yield {"epoch": e, "train_loss": tl, "val_loss": tl * 1.1 if math.isfinite(tl) else math.nan,
               "val_acc": 0.5 + min(e, blow) / 40, "lr": 1e-3}


def _write_csv(path: Path, rows: list[dict]) -> None:
    names = list(rows[0])
    lines = [",".join(names)] + [",".join("nan" if isinstance(r[n], float) and math.isnan(r[n]) else repr(r[n])
                                          for n in names) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_the_findings_are_diagnose_on_the_rows_logged_so_far(tmp_path: Path) -> None:
    mon = Monitor(stop_on=())
    rows = list(_diverging())
    for k, row in enumerate(rows, 1):
        mon.log(**row)
        if k in (3, 8, 13, 20, 30):
            _write_csv(tmp_path / "run.csv", rows[:k])
            report, _ = diagnose([tmp_path / "run.csv"], {})
            want = [(f.code, f.message) for f in report.runs[0].diagnoses + report.runs[0].notes]
            assert [(f.code, f.message) for f in mon.findings] == want, f"after {k} epochs"
    assert mon.result().runs[0].facts == report.runs[0].facts


def test_diverged_stops_at_the_explosion_and_names_it() -> None:
    mon = Monitor(stop_on=("diverged",))
    stopped = None
    for row in _diverging(blow=12):
        mon.log(**row)
        if mon.should_stop:
            stopped = row["epoch"]
            break
    assert stopped is not None and 12 <= stopped <= 14
    first = [e for e in mon.events if e.label == "diverged"][0]
    assert (first.event, first.epoch, first.severity) == ("new", stopped, "error")
    assert "diverged" in mon.stop_reason() and f"epoch {stopped}" in mon.stop_reason()


def test_an_explosion_that_turns_nan_is_one_finding_changed() -> None:
    mon = Monitor(stop_on=())
    for row in _diverging(blow=12):
        mon.log(**row)
    diverged = [(e.event, e.code) for e in mon.events if e.label == "diverged"]
    assert diverged[0] == ("new", "D102")
    assert ("changed", "D101") in diverged
    assert not any(kind == "cleared" for kind, _ in diverged)


def test_a_finding_that_goes_away_is_cleared_with_its_epoch() -> None:
    mon = Monitor(stop_on=())
    for e in range(10):  # training loss only, then validation appears
        row = {"epoch": e, "train_loss": 2.0 / (e + 1)}
        if e >= 6:
            row["val_loss"] = 2.2 / (e + 1)
        mon.log(**row)
    d002 = [(e.event, e.epoch) for e in mon.events if e.code == "D002"]
    assert d002 == [("new", 0), ("cleared", 6)]


def test_odd_values_are_recorded_never_raised() -> None:
    class Tensorish:  # a framework value: float() works on one element, not on many
        def __init__(self, *v): self.v = v
        def __float__(self):
            if len(self.v) != 1:
                raise ValueError("only one element tensors can be converted to Python scalars")
            return float(self.v[0])

    mon = Monitor(stop_on=())
    for e in range(12):
        mon.log(epoch=e, train_loss=Tensorish(2.0 / (e + 1)), val_loss=None if e % 3 else 2.5 / (e + 1),
                note="fast" if e == 2 else None, batch=Tensorish(1, 2) if e == 4 else e,
                val_acc="0.9" if e == 5 else "tensor(0.8, device='cuda:0')", tags=[1, 2] if e == 7 else None)
    assert mon.error is None
    assert {(s.name, s.row) for s in mon.skipped} == {("note", 2), ("batch", 4), ("tags", 7)}
    assert mon.diagnosis.columns["val_metric"] == "val_acc"  # text read as ingest reads a cell
    assert mon.findings and mon.diagnosis.epochs == 12


def test_map_names_the_column_of_a_role() -> None:
    plain, mapped = Monitor(), Monitor(map={"train_loss": "b"})
    for e in range(8):
        for mon in (plain, mapped):
            mon.log(epoch=e, a=65536.0, b=1.0 / (e + 1))
    assert plain.findings == [] and "no loss" in plain.error
    assert mapped.diagnosis.columns["train_loss"] == "b" and mapped.findings


def test_nothing_judgeable_yet_is_an_error_recorded_not_raised() -> None:
    mon = Monitor()
    assert mon.log(epoch=0, lr=1e-3) == []
    assert "no loss" in mon.error
    assert mon.findings == [] and not mon.should_stop
    mon.log(epoch=1, lr=1e-3, loss=1.0)
    assert mon.error is None and mon.findings


def test_a_nan_loss_is_judged_at_once_even_between_epochs() -> None:
    mon = Monitor()
    for step in range(1, 40):
        mon.log(epoch=0, step=step, loss=1.0 / step if step < 30 else math.nan)
        if mon.should_stop:
            break
    assert step == 30
    assert [(e.event, e.epoch) for e in mon.events if e.code == "D101"] == [("new", 0)]


def test_overfitting_stops_once_confirmed_and_names_the_best_epoch() -> None:
    confirm = watch_settings().announce.findings["overfitting"].confirm
    mon = Monitor(stop_on=("overfitting",))
    rise = None
    for e in range(60):
        tl = 2.0 * math.exp(-e / 8) + 0.01
        vl = 2.1 * math.exp(-e / 8) + 0.3 + (0.02 * (e - 20) if e > 20 else 0.0)
        mon.log(epoch=e, train_loss=tl, val_loss=vl)
        if rise is None and any(f.label == "overfitting" for f in mon.findings):
            rise = e
        if mon.should_stop:
            break
    assert rise is not None and e == rise + confirm - 1  # held over `confirm` epochs first
    assert 18 <= mon.best_epoch <= 22
    assert f"keep the checkpoint of epoch {mon.best_epoch}" in mon.stop_reason()


def test_insufficient_data_is_never_announced_and_finish_says_the_rest() -> None:
    mon = Monitor()
    for e in range(4):
        mon.log(epoch=e, loss=1.0 / (e + 1), val_loss=1.1 / (e + 1))
    assert [f.code for f in mon.findings if f.label == "insufficient_data"] == ["D001"]
    assert not any(e.label == "insufficient_data" for e in mon.events)
    events = mon.finish()  # the log is complete: the diagnosis as it stands
    assert any(e.code == "D001" and e.event == "new" for e in events)


def test_stop_on_an_unknown_label_fails_at_once() -> None:
    with pytest.raises(InputError, match="stop_on: unknown label 'exploded'"):
        Monitor(stop_on=("exploded",))
    with pytest.raises(InputError, match="map: unknown role 'loss'"):
        Monitor(map={"loss": "objective"})
    assert Monitor(stop_on="overfitting").stop_on == ("overfitting",)
    assert Monitor(stop_on=("D101",)).stop_on == ("D101",)


def test_watch_rules_name_labels_or_codes_of_the_diagnosis(tmp_path: Path) -> None:
    bad = tmp_path / "watch.yaml"
    bad.write_text("announce:\n  default: {confirm: 1}\n  findings: {overfiting: {confirm: 3}}\n")
    with pytest.raises(RuleError, match="'overfiting' is neither a label"):
        watch_settings(str(bad))
    bad.write_text("announce:\n  default: {confirm: 1, patience: 3}\n")
    with pytest.raises(RuleError, match="patience"):
        watch_settings(str(bad))
    assert isinstance(watch_settings(), WatchSettings)


def test_report_lists_the_events_and_the_diagnosis() -> None:
    mon = Monitor()
    for row in _diverging():
        mon.log(**row)
    text = mon.report()
    assert "events while training" in text and "D101" in text and "What to tune first" in text


def test_the_monitor_imports_no_torch() -> None:
    code = ("import sys; from advisor.watch import Monitor; m = Monitor(); "
            "[m.log(epoch=e, loss=1/(e+1), val_loss=1.2/(e+1)) for e in range(8)]; m.findings; m.report(); "
            "print(sorted(x for x in sys.modules if x.split('.')[0] in ('torch', 'matplotlib', 'optuna')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_step_noise_in_the_first_epoch_is_not_announced_as_instability() -> None:
    """Before its second epoch a per-step log is read row by row (ingest): diagnose on it sees
    spikes; rules/watch.yaml lets only divergence be announced then."""
    assert watch_settings().announce.first_epoch == ["diverged"]
    mon = Monitor()
    for s in range(40):
        mon.log(epoch=0, step=s, train_loss=1.0 if s % 3 else 2.0)
    assert "unstable" in {f.label for f in mon.findings}  # what diagnose says of the rows
    assert not any(e.label == "unstable" for e in mon.events)
    assert [e.code for e in mon.events] == ["D002"]  # announced at the first row, and kept
    for s in range(40, 60):
        mon.log(epoch=0, step=s, train_loss=math.inf if s == 50 else 1.0)
        if mon.should_stop:
            break
    assert s == 50 and mon.events[-1].label == "diverged"  # divergence is announced at once
