"""advisor check: the guide's anti-examples caught, its recommendations clean, --fix, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli

SPACES = FIXTURES / "spaces"

EXPECTED = {
    "bad-grid-explosion.yaml": {"grid_explosion", "grid_high_dimensional", "dropout_too_high"},
    "bad-loguniform-zero.yaml": {"log_nonpositive", "dropout_too_high"},
    "bad-narrow-lr.yaml": {"range_too_narrow"},
    "bad-linear-scale.yaml": {"linear_scale"},
    "bad-dropout.yaml": {"dropout_too_high"},
    "bad-batch-without-lr.yaml": {"batch_size_without_lr"},
    "bad-adam-weight-decay.yaml": {"adam_weight_decay"},
    "bad-shared-lr.yaml": {"shared_lr_range", "adam_weight_decay"},
    "bad-bayes-few-trials.yaml": {"too_few_trials"},
    "bad-no-pruning.yaml": {"no_pruning"},
    "bad-seeds.yaml": {"seeds_in_exploration"},
    "bad-transformer-no-warmup.yaml": {"missing_warmup"},
    "bad-architecture-first.yaml": {"architecture_before_lr"},
    # one mistake, one finding: the range is judged as the values meant (1e-5..0.1 is fine), not
    # as the e^1e-5..e^0.1 it samples, which only K105 reports
    "bad-wandb-log-uniform.yaml": {"log_uniform_exponents"},
    "bad-lr-off-scale.yaml": {"lr_range_off_scale"},
    # K0xx: spaces that cannot run as written
    "bad-empty-space.yaml": {"empty_space"},
    "bad-wandb-goal.yaml": {"unknown_goal"},
    "bad-reversed-range.yaml": {"reversed_range"},
    "bad-nonfinite-bound.yaml": {"nonfinite_bound"},
    "bad-wandb-distribution.yaml": {"unknown_distribution", "batch_size_without_lr"},
    "bad-choices-not-values.yaml": {"unusable_choice"},
    "bad-by-unsearched.yaml": {"dangling_condition"},
    "bad-grid-float.yaml": {"grid_without_points"},
    "bad-zero-step.yaml": {"nonpositive_step"},
    # K5xx: what W&B reads differently from what the file seems to say
    "bad-wandb-number-string.yaml": {"numeric_string"},
    "bad-repeated-key.yaml": {"repeated_key"},
    "bad-wandb-stray-parameter.yaml": {"stray_parameter"},
    "good-small-grid.yaml": set(),
    "good-random.yaml": set(),
    "good-bayesian.yaml": set(),
    "good-wandb.yaml": set(),
}


def _labels(*args) -> tuple[set[str], dict]:
    result = run_cli("check", *args, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    return {f["label"] for f in doc["findings"]}, doc


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_guide_spaces(name: str) -> None:
    labels, _ = _labels(SPACES / name)
    assert labels == EXPECTED[name]


def test_every_label_is_caught_by_some_fixture() -> None:
    from advisor.engine import load_knowledge

    vocabulary = set(load_knowledge("check").labels)
    assert set().union(*EXPECTED.values()) == vocabulary


def test_findings_quote_the_entry_its_line_and_the_corrected_range() -> None:
    _, doc = _labels(SPACES / "bad-loguniform-zero.yaml")
    wd = next(f for f in doc["findings"] if f["label"] == "log_nonpositive")
    assert wd["param"] == "weight_decay" and "(line 10)" in wd["message"]
    assert "1e-06" in wd["advice"]
    evidence = {e["fact"]: e["value"] for e in wd["evidence"]}
    assert evidence["p_line"] == 10 and evidence["p_low"] == 0.0


def test_grid_is_costed_from_the_users_trial_time() -> None:
    _, doc = _labels(SPACES / "good-small-grid.yaml", "--budget", "5h", "--trial-time", "30m")
    grid = next(f for f in doc["findings"] if f["label"] == "grid_explosion")  # 12 x 0.5 h > 5 h
    assert "6 h" in grid["message"] and "10 trials" in grid["advice"]  # what 5 h affords
    labels, _ = _labels(SPACES / "good-small-grid.yaml", "--budget", "50h", "--trial-time", "30m")
    assert labels == set()


def test_exit_codes() -> None:
    assert run_cli("check", SPACES / "good-random.yaml").code == 0
    assert run_cli("check", SPACES / "bad-linear-scale.yaml").code == 1          # an error
    assert run_cli("check", SPACES / "bad-dropout.yaml").code == 0               # a warning
    assert run_cli("check", SPACES / "bad-dropout.yaml", "--fail-on", "warning").code == 1


@pytest.mark.parametrize("name", ["bad-loguniform-zero.yaml", "bad-linear-scale.yaml", "bad-narrow-lr.yaml",
                                  "bad-grid-explosion.yaml", "bad-wandb-log-uniform.yaml", "bad-seeds.yaml",
                                  "bad-no-pruning.yaml", "bad-bayes-few-trials.yaml", "bad-dropout.yaml"])
def test_fix_writes_a_space_that_checks_clean_of_what_it_fixed(tmp_path: Path, name: str) -> None:
    src = tmp_path / name
    shutil.copy(SPACES / name, src)
    before = src.read_text()
    result = run_cli("check", src, "--fix", "--fail-on", "never")
    assert result.code == 0, result.err
    fixed = tmp_path / name.replace(".yaml", ".fixed.yaml")
    assert fixed.exists() and src.read_text() == before  # the original is untouched
    assert fixed.read_text().splitlines()[0] == before.splitlines()[0]  # comments kept
    fixable = {"linear_scale", "log_nonpositive", "range_too_narrow", "dropout_too_high", "grid_explosion",
               "grid_high_dimensional", "log_uniform_exponents", "too_few_trials", "no_pruning",
               "seeds_in_exploration"}
    after, _ = _labels(fixed)
    assert not (after & fixable), after


def test_fix_keeps_what_it_does_not_understand(tmp_path: Path) -> None:
    src = tmp_path / "sweep.yaml"
    text = (SPACES / "bad-wandb-log-uniform.yaml").read_text().replace("program: train.py",
                                                                        "program: train.py\ncommand: [python, x.py]")
    src.write_text(text)
    run_cli("check", src, "--fix", "--out", tmp_path / "out.yaml")
    out = (tmp_path / "out.yaml").read_text()
    assert "command: [python, x.py]" in out and "program: train.py" in out
    assert "distribution: log_uniform_values" in out


def test_fix_never_overwrites(tmp_path: Path) -> None:
    src = tmp_path / "s.yaml"
    shutil.copy(SPACES / "bad-dropout.yaml", src)
    (tmp_path / "s.fixed.yaml").write_text("mine\n")
    result = run_cli("check", src, "--fix")
    assert result.code == 2 and "exists already" in result.err
    assert (tmp_path / "s.fixed.yaml").read_text() == "mine\n"
    result = run_cli("check", src, "--fix", "--in-place", "--fail-on", "never")
    assert result.code == 0 and "high: 0.5" not in src.read_text() and "0.9" not in src.read_text()


@pytest.mark.parametrize("content, words", [
    ("params: {lr: [1, 2\n", ["not valid YAML"]),
    ("advisor_space: 1\nparams:\n  lr: {type: gaussian, low: 1, high: 2}\n", ["field 'params.lr.type'"]),
    ("advisor_space: 1\nparams:\n  lr: {type: float}\n", ["params.lr"]),
    ("- just\n- a list\n", ["expected a mapping"]),
    ("hello: world\n", ["neither an advisor space"]),
])
def test_bad_input_one_line_exit_2(tmp_path: Path, content: str, words: list[str]) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(content)
    result = run_cli("check", path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    for word in words:
        assert word in result.err, result.err


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    assert run_cli("check", tmp_path / "nope.yaml").code == 2
    assert run_cli("check", SPACES / "good-random.yaml", "--budget", "lots").code == 2
    assert run_cli("check", SPACES / "good-random.yaml", "--in-place").code == 2
