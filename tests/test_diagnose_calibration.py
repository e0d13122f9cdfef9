"""The epoch-level facts the corpus calibration brought in, the named thresholds, the scorer,
and the shipped rules measured on the real labelled logs in fixtures/real/."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.engine import evaluate, load_knowledge
from advisor.facts.curves import epoch_spikes, metric_swings, recovered_bump, tail_gain

from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_corpus  # noqa: E402


def test_epoch_spikes_count_jumps_that_come_back_also_below_zero() -> None:
    up = np.array([1.0, 0.9, 2.0, 0.85, 0.8, 0.8, 1.5, 0.7])
    assert epoch_spikes(up, 1.5, 0.02).tolist() == [False, True, False, False, False, True]
    # a Gaussian NLL below zero: the same shape shifted down still has its spikes
    nll = np.array([-2.0, -2.1, 5.0, -2.2, -2.3])
    assert epoch_spikes(nll, 1.5, 0.02).sum() == 1
    # the jitter of a loss near zero against a curve that fell from 1.0 is not a spike
    near_zero = np.array([1.0, 0.5, 0.01, 0.003, 0.009, 0.004, 0.004])
    assert epoch_spikes(near_zero, 1.5, 0.02).sum() == 0


def test_a_blow_up_recovers_only_when_the_curve_comes_back() -> None:
    recovered = np.array([4.0, 2.0, 1.0, 2.5, 2.8, 1.2, 1.0])
    assert recovered_bump(recovered, 0.5, 0.02) == pytest.approx(2.8)
    stays_up = np.array([4.0, 2.0, 1.0, 2.5, 2.8, 2.7, 2.9])
    assert recovered_bump(stays_up, 0.5, 0.02) == 1.0
    assert recovered_bump(np.array([-1.0, -2.0, -1.5, -3.0]), 0.5, 0.02) is None  # not a loss > 0


def test_metric_swings_are_reversals_relative_to_the_level() -> None:
    assert metric_swings(np.array([0.80, 0.90, 0.41, 0.78, 0.80, 0.81]), 0.1) == 2
    # WER in percent moving by a fraction of a point: no swing
    assert metric_swings(np.array([34.6, 33.9, 34.2, 32.0, 32.4, 32.1]), 0.1) == 0


def test_tail_gain_is_the_relative_improvement_over_the_last_part() -> None:
    falling = np.linspace(2.0, 1.0, 30)
    assert 0.2 < tail_gain(falling, 0.33) < 0.4
    flat = np.concatenate([np.linspace(2.0, 1.0, 10), np.full(20, 1.0)])
    assert abs(tail_gain(flat, 0.33)) < 1e-9
    assert tail_gain(np.array([1.0, 0.9, 0.8]), 0.33) is None  # too short to judge


def test_thresholds_are_facts_whose_values_calibration_can_override() -> None:
    kb = load_knowledge("diagnose")
    assert kb.catalogue.facts["overfit_rise"].source == "threshold"
    facts = {"diverged": False, "has_val_loss": True, "has_train_loss": True, "val_rise": 0.07,
             "best_val_fraction": 0.3, "gap_end": 0.5, "val_loss_best": 0.4, "best_val_epoch": 3}
    fired = {f.code for f in evaluate(kb, {**facts, "overfit_rise": 0.05})[0]}
    assert "D301" in fired
    fired = {f.code for f in evaluate(kb, {**facts, "overfit_rise": 0.1})[0]}
    assert "D301" not in fired
    # a threshold is not evidence: findings quote the measured facts only
    finding = next(f for f in evaluate(kb, facts)[0] if f.code == "D301")
    assert "overfit_rise" not in {e.fact for e in finding.evidence}


def test_folds_never_split_a_repository() -> None:
    cases = [bench_corpus.Case(Path(f"f{i}"), "x", f"owner/repo{i % 7}", {"healthy"}, set()) for i in range(40)]
    folds = bench_corpus.folds_of(cases, 5)
    by_repo: dict[str, set[int]] = {}
    for case, fold in zip(cases, folds):
        by_repo.setdefault(case.repo, set()).add(fold)
    assert all(len(f) == 1 for f in by_repo.values())
    assert len(set(folds)) > 1


def test_the_fit_never_scores_below_its_start() -> None:
    kb = load_knowledge("diagnose")
    case = bench_corpus.Case(Path("x"), "x", "o/r", {"overfitting"}, {"healthy"})
    case.parts = [{"n_epochs": 30, "n_finite_epochs": 30, "has_train_loss": True, "has_val_loss": True,
                   "has_validation": True, "val_rise": 0.07, "best_val_fraction": 0.3, "gap_end": 0.5,
                   "val_loss_best": 0.4, "best_val_epoch": 3, "train_total_improvement": 0.9}]
    start = {**kb.catalogue.threshold_values(), "overfit_rise": 0.15}
    assert bench_corpus.score(kb, [case], start) == 0
    fitted = bench_corpus.fit(kb, [case], start, {"overfit_rise": [0.05, 0.15]})
    assert fitted["overfit_rise"] == 0.05
    assert bench_corpus.score(kb, [case], fitted) == 1


def test_plot_shades_overfitting_from_the_best_epoch(tmp_path: Path) -> None:
    from advisor.advice.diagnosis import diagnose
    from advisor.render.plot import _regions

    kb = load_knowledge("diagnose")
    report, runs = diagnose([FIXTURES / "runs" / "overfitting.keras.csv"], {})
    epochs = runs[0].epochs.index.to_numpy(dtype=float)
    regions = _regions(epochs, runs[0], report.runs[0], kb.catalogue.analysis)
    overfit = [r for r in regions if r[2] == "overfitting"]
    assert overfit and overfit[0][0] == report.runs[0].facts["best_val_epoch"]
    assert overfit[0][1] == epochs[-1]


REAL = FIXTURES / "real"
FAMILIES = ("keras", "lightning", "hf", "det", "csv", "tbml", "text")


def test_shipped_rules_agree_with_the_practitioner_on_the_real_logs() -> None:
    """Regression guard on the calibration corpus (copied into fixtures/real/): the shipped
    thresholds, scored as bench/bench_corpus.py scores them. The honest figure is the scorer's
    cross-validated one (README); this one is in-sample and must not drop."""
    kb = load_knowledge("diagnose")
    cases = bench_corpus.load_cases([REAL / f for f in FAMILIES])
    assert len(cases) == 85
    bench_corpus.measure(cases)
    assert not [c.path.name for c in cases if c.error], "every real log is read"
    predicted = {i: bench_corpus.predict(kb, c, kb.catalogue.threshold_values()) for i, c in enumerate(cases)}
    figures = bench_corpus.report(kb, cases, predicted, "shipped")
    assert figures["agreement"] >= 0.93
    assert figures["problem_called_healthy"] / figures["problem_runs"] <= 0.05


def test_rules_ship_the_thresholds_fitted_on_the_corpus() -> None:
    """The values in rules/ are the ones the fit finds from the priors (no hand edits after it),
    and the fit keeps every rule example true."""
    kb = load_knowledge("diagnose")
    cases = bench_corpus.load_cases([REAL / f for f in FAMILIES])
    bench_corpus.measure(cases)
    examples = bench_corpus.rule_examples(kb)
    start = kb.catalogue.threshold_values(prior=True)
    grids = {n: t.grid for n, t in kb.catalogue.thresholds.items() if t.grid}
    fitted = bench_corpus.fit(kb, cases, start, grids, examples)
    assert fitted == kb.catalogue.threshold_values()
    assert bench_corpus.examples_hold(kb, examples, fitted)


def test_a_metric_only_log_is_judged_on_its_metric(tmp_path: Path) -> None:
    from advisor.advice.diagnosis import diagnose

    rising, falling = tmp_path / "rising.csv", tmp_path / "falling.csv"
    rising.write_text("epoch,val_accuracy\n" + "".join(f"{e},{0.5 + 0.02 * e:.2f}\n" for e in range(20)))
    falling.write_text("epoch,val_accuracy\n" + "".join(f"{e},{0.9 - 0.02 * e:.2f}\n" for e in range(20)))
    report, _ = diagnose([rising], {})
    assert report.runs[0].facts["judged_on"] == "val_metric"
    assert {d.label for d in report.diagnoses} == {"slow_convergence", "healthy"}
    report, _ = diagnose([falling], {})
    assert [d.label for d in report.diagnoses] == ["overfitting"]


def test_metric_swings_must_clear_the_range_and_the_sampling_noise() -> None:
    falling_error = np.array([7.4, 5.0, 3.1, 2.0, 1.2, 0.80, 0.70, 0.78, 0.68, 0.74, 0.66])
    assert metric_swings(falling_error, 0.1) >= 2          # 10% of a level near 1: jitter counts
    assert metric_swings(falling_error, 0.1, of_range=0.05) == 0  # but it is 1-2% of the range
    acc = np.array([0.60, 0.80, 0.64, 0.84, 0.68, 0.88, 0.70, 0.86])
    assert metric_swings(acc, 0.1, floor=3 * (0.75 * 0.25 / 25) ** 0.5) == 0  # 25 examples: noise
    assert metric_swings(acc, 0.1, floor=3 * (0.75 * 0.25 / 1000) ** 0.5) >= 5  # 1,000: real


def _labels(path: Path) -> list[str]:
    from advisor.advice.diagnosis import diagnose

    report, _ = diagnose([path], {})
    return [f.label for f in report.diagnoses]


def test_a_reinforcement_learning_run_is_judged_on_its_reward() -> None:
    """PPO's surrogate loss rises while the agent learns: not divergence (SB3, TensorBoard);
    a GRPO reward that swings without trend is instability (TRL trainer_state.json)."""
    ppo = _labels(REAL / "tbml" / "t_12_sb3-ppo-db-index")
    assert "plateau" in ppo and "diverged" not in ppo
    grpo = _labels(REAL / "hf" / "h_09_grpo-game-agent.json")
    assert "unstable" in grpo and "healthy" not in grpo
