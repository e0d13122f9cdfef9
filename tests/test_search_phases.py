"""advisor search runs the phases the plan prints (issue 12, items 5 and 8): explore over the full
ranges, refine over ranges narrowed around the best explore configurations, final seeds; the phase
lives in the study, so --resume continues where it stopped; the stop rule is reported as such and
--no-stop-rule turns it off."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from advisor.act import search as S  # noqa: E402
from advisor.act.search.phases import PHASE_ATTR, REFINE_ATTR, narrow, split_trials  # noqa: E402
from advisor.commands import search as C  # noqa: E402
from advisor.space import Space  # noqa: E402

TASKS = Path(__file__).resolve().parent / "tasks_search"
NORMAL = f"{TASKS / 'normal_task.py'}:build"
OBJECTIVE = f"{TASKS / 'objective_task.py'}:objective"

torch.set_num_threads(1)


@pytest.fixture
def cli(monkeypatch):
    import typer

    import advisor.cli

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command(name="search", epilog=C.EPILOG)(C.search)
    app.command(name="worker", epilog=C.WORKER_EPILOG)(C.worker)  # two commands: `search` is a sub-command
    monkeypatch.setattr(advisor.cli, "app", app)
    return run_cli


def _plan(tmp_path: Path, *, trials: int, epochs: int = 3, sampler: str = "QMCSampler", strategy: str = "random",
          extra: str = "") -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(
        f"advisor_space: 1\ndirection: maximize\nstrategy: {strategy}\ntrials: {trials}\nepochs: {epochs}\n"
        "top_k: 2\nseeds_final: 2\npruner: {type: median, n_startup_trials: 3, n_warmup_steps: 1}\n"
        f"sampler: {{type: {sampler}}}\nbaseline: {{learning_rate: 0.001}}\n{extra}"
        "params:\n"
        "  learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\n"
        "  weight_decay: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, zero: true}\n"
        "  batch_size: {type: categorical, choices: [16, 32, 64]}\n")
    return path


def _inside(t, refined: Space, keep: dict) -> bool:
    for name, p in refined.params.items():
        v = t.user_attrs["hp"][name]
        if name in keep:
            if v not in keep[name]:
                return False
        elif p.type != "categorical" and not (p.low * (1 - 1e-9) <= v <= p.high * (1 + 1e-9) or (p.zero and v == 0)):
            return False
    return True


@pytest.mark.parametrize("sampler, strategy", [("QMCSampler", "random"), ("TPESampler", "bayesian")])
def test_phases_run_as_planned_and_refine_stays_in_the_narrowed_ranges(cli, tmp_path, sampler, strategy) -> None:
    plan = _plan(tmp_path, trials=12, sampler=sampler, strategy=strategy, extra="phases: {explore: 8, refine: 4}\n")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    r = cli("search", NORMAL, "--plan", plan, "--storage", url, "--study", "p", "--json", "--device", "cpu")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [(ph["name"], ph["trials"]) for ph in doc["phases"]] == [("explore", 8), ("refine", 4), ("final", 4)]
    assert doc["epochs_used"] == sum(ph["epochs"] for ph in doc["phases"])
    study = optuna.load_study(study_name="p", storage=url)
    raw = study.user_attrs[REFINE_ATTR]
    refined, keep = Space.model_validate(raw["space"]), raw["keep"]
    full = Space.model_validate(doc["refined"] and raw["space"]).params["learning_rate"]
    assert 1e-5 <= full.low < full.high <= 1e-1
    trials = [t for t in study.trials if not t.user_attrs.get("final")]
    explore = [t for t in trials if t.user_attrs["phase"] == "explore"]
    refine = [t for t in trials if t.user_attrs["phase"] == "refine"]
    assert len(explore) == 8 and len(refine) == 4 and explore[-1].number < refine[0].number
    assert all(_inside(t, refined, keep) for t in refine)
    # the narrowed range is the best explore configurations' span, widened 2x: narrower than the full one
    lr = refined.params["learning_rate"]
    assert math.log10(lr.high / lr.low) < math.log10(1e-1 / 1e-5)
    best = sorted((t for t in explore if t.state.name == "COMPLETE"), key=lambda t: -t.value)[:raw["around"]]
    assert all(lr.low <= t.user_attrs["hp"]["learning_rate"] <= lr.high for t in best)
    assert study.user_attrs[PHASE_ATTR] == "final"


def test_narrow_is_the_best_span_widened_and_keeps_categoricals() -> None:
    space = Space.model_validate({"strategy": "random", "params": {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "bs": {"type": "categorical", "choices": [16, 32, 64]}}})
    narrowed, keep = narrow(space, [{"lr": 1e-3, "dropout": 0.2, "bs": 32}, {"lr": 4e-3, "dropout": 0.3, "bs": 32}], 2.0)
    assert narrowed.params["lr"].low == pytest.approx(5e-4) and narrowed.params["lr"].high == pytest.approx(8e-3)
    assert narrowed.params["dropout"].low == pytest.approx(0.15) and narrowed.params["dropout"].high == pytest.approx(0.35)
    assert keep == {"bs": [32]} and narrowed.params["bs"].choices == [16, 32, 64]  # Optuna keeps one choice list
    edge, _ = narrow(space, [{"lr": 5e-2, "dropout": 0.5, "bs": 16}], 2.0)
    assert edge.params["lr"].high == 1e-1 and edge.params["dropout"].high == 0.5  # never beyond the plan's range


def test_split_follows_the_plan() -> None:
    assert split_trials(24, 42, 21) == [{"name": "explore", "trials": 16}, {"name": "refine", "trials": 8}]
    assert split_trials(1, 2, 1) == [{"name": "explore", "trials": 1}]


def test_resume_continues_in_the_phase_where_it_stopped(tmp_path, monkeypatch) -> None:
    space = Space.model_validate({"strategy": "random", "trials": 9, "epochs": 2,
                                  "sampler": {"type": "QMCSampler"}, "pruner": {"type": "none"}, "params": {
                                      "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                                      "weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
    spec = S.SearchSpec(task=OBJECTIVE, space=space.to_yaml_dict(), trials=9, epochs=2, top_k=1, seeds_final=2,
                        phases=[{"name": "explore", "trials": 6}, {"name": "refine", "trials": 3}])
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    sampler = type(S.make_sampler(space, 0))
    calls = {"n": 0}
    real = sampler.before_trial

    def ctrl_c_in_refine(self, study, trial):
        calls["n"] += 1
        if calls["n"] == 8:  # the second refine trial
            raise KeyboardInterrupt
        return real(self, study, trial)

    monkeypatch.setattr(sampler, "before_trial", ctrl_c_in_refine)
    with pytest.raises(KeyboardInterrupt):
        S.run(spec, url, "r", resume=False, device_name="cpu", audit=False)
    monkeypatch.setattr(sampler, "before_trial", real)
    study = optuna.load_study(study_name="r", storage=url)
    assert study.user_attrs[PHASE_ATTR] == "refine"
    narrowed_before = study.user_attrs[REFINE_ATTR]

    report = S.run(spec, url, "r", resume=True, device_name="cpu", audit=False)
    assert [(ph["name"], ph["trials"]) for ph in report.phases] == [("explore", 6), ("refine", 3), ("final", 2)]
    study = optuna.load_study(study_name="r", storage=url)
    assert study.user_attrs[REFINE_ATTR] == narrowed_before  # the same narrowed ranges after the resume
    refined = Space.model_validate(narrowed_before["space"])
    refine = [t for t in study.trials if t.user_attrs.get("phase") == "refine" and t.state.name == "COMPLETE"]
    assert len(refine) == 3 and all(_inside(t, refined, {}) for t in refine)
    assert report.stopped_by == "budget"


def test_the_stop_rule_is_reported_and_can_be_turned_off(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADVISOR_TEST_CONSTANT", "1")  # every configuration scores the same: no gain
    plan = _plan(tmp_path, trials=30, epochs=2, extra="stop: {min_gain_per_trial: 0.001, stale_trials: 3}\n")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "s", "--trials", "30", "--top-k", "0")
    assert r.code == 0, r.err
    text = " ".join(r.out.split())
    assert "stopped by: stale (the stop rule" in text and "--no-stop-rule" in text
    assert "--trials 30: the stop rule may end the search earlier" in text
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) < 30
    # the stale explore phase moved on to refine, whose stop rule ended the search
    assert {t.user_attrs["phase"] for t in study.trials} == {"explore", "refine"}

    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "n", "--trials", "12", "--top-k", "0",
            "--no-stop-rule", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["stopped_by"] == "budget" and doc["trials"]["total"] == 12 and doc["budget"]["stop_rule"] is None
    assert not any("stop rule may end" in n for n in doc["notes"])


def test_a_caller_with_a_deadline_keeps_the_last_phase_going_when_stale(tmp_path, monkeypatch) -> None:
    """advisor tune's search (stale_ends_search=False): the stop rule still moves a stale explore
    on to refine, but a stale refine runs to its trials instead of ending the search."""
    monkeypatch.setenv("ADVISOR_TEST_CONSTANT", "1")  # every configuration scores the same: no gain
    space = Space.model_validate({"strategy": "random", "trials": 16, "epochs": 2,
                                  "sampler": {"type": "QMCSampler"}, "pruner": {"type": "none"}, "params": {
                                      "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}})
    phases = [{"name": "explore", "trials": 8}, {"name": "refine", "trials": 8}]

    def spec():
        return S.SearchSpec(task=OBJECTIVE, space=space.to_yaml_dict(), trials=16, epochs=2, top_k=0, seeds_final=0,
                            phases=phases, stop_stale=3, stop_min_gain=0.001)

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ended = S.run(spec(), url, "open", resume=False, device_name="cpu", audit=False)
    kept = S.run(spec(), url, "deadline", resume=False, device_name="cpu", audit=False, stale_ends_search=False)
    assert ended.stopped_by == "stale" and [ph["trials"] for ph in ended.phases] == [4, 4]
    assert kept.stopped_by == "budget" and [(ph["name"], ph["trials"]) for ph in kept.phases] == [("explore", 4),
                                                                                                   ("refine", 12)]


def test_a_callers_cut_prunes_the_trial_in_flight_at_an_epoch_and_never_a_final(tmp_path) -> None:
    """run(cut_when=...): the deadline read after each epoch of a search trial prunes it there
    (kept as `cut`); the search then ends by stop_when, and the final re-runs train in full."""
    space = Space.model_validate({"strategy": "random", "trials": 6, "epochs": 4,
                                  "sampler": {"type": "QMCSampler"}, "pruner": {"type": "none"}, "params": {
                                      "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}})
    spec = S.SearchSpec(task=NORMAL, space=space.to_yaml_dict(), trials=6, epochs=4, top_k=1, seeds_final=1)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    epochs = {"n": 0}

    def cut() -> bool:  # comes during the second trial's second epoch, and stays
        epochs["n"] += 1
        return epochs["n"] >= 6

    report = S.run(spec, url, "c", resume=False, device_name="cpu", audit=False,
                   cut_when=cut, stop_when=lambda trials: epochs["n"] >= 6)
    study = optuna.load_study(study_name="c", storage=url)
    search = [t for t in study.trials if not t.user_attrs.get("final")]
    assert [t.state.name for t in search] == ["COMPLETE", "PRUNED"]
    assert len(search[0].intermediate_values) == 4
    took = (search[0].datetime_complete - search[0].datetime_start).total_seconds()
    assert 0 < search[0].user_attrs["train_s"] < took   # the training alone, without the bookkeeping
    cut_trial = search[1]
    assert cut_trial.user_attrs.get("cut") is True and cut_trial.user_attrs.get("pruned_at") == 2
    assert len(cut_trial.intermediate_values) == 2
    assert report.stopped_by == "timeout"
    finals = [t for t in study.trials if t.user_attrs.get("final")]
    assert finals and all(t.state.name == "COMPLETE" for t in finals)
    assert all(t.user_attrs["hp"]["learning_rate"] == search[0].params["learning_rate"] for t in finals)
