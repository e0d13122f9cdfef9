"""advisor check on real W&B sweeps (fixtures/sweeps, labelled by a tuning expert; issue 18):
the agreement goal, what check infers from the whole file, W&B's reading of odd files, and
--fix output that W&B's own loader and schema accept."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, run_cli

SWEEPS = FIXTURES / "sweeps"
RAW = SWEEPS / "raw"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sweeps", ROOT / "bench" / "bench_sweeps.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _check(path: Path, *args: str) -> dict:
    result = run_cli("check", path, *args, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_agreement_with_the_expert_meets_the_goal() -> None:
    bench = _bench()
    cases = bench.load_cases(SWEEPS)
    assert len(cases) == 27
    bench.measure(cases)
    r = bench.report(cases, "shipped copies")
    misses = [(c.path.name, sorted(c.found), c.error) for c in cases if not c.agrees]
    assert r["agreement"] >= 0.90, misses
    assert r["recall"] >= 0.90, misses
    assert r["false_alarms_per_file"] <= 1 / 20, misses
    assert r["refused"] == 0 and r["crashed"] == 0, misses


def test_the_copies_are_the_labelled_files() -> None:
    labels = json.loads((SWEEPS / "labels.json").read_text())
    assert sorted(labels) == sorted(p.name for p in RAW.iterdir())
    assert b"\r\n" in (RAW / "s_22_repavit_bayes_hyperband.yaml").read_bytes()  # CRLF kept


def test_check_says_what_it_inferred_and_from_where() -> None:
    doc = _check(RAW / "s_04_metapt_bert_grid.yaml")
    assert doc["inferred"]["model_family"]["value"] == "transformer"
    assert "bert-base-uncased" in doc["inferred"]["model_family"]["source"]
    assert "missing_warmup" in {f["label"] for f in doc["findings"]}
    doc = _check(RAW / "s_31_gnn_mi_bayes.yaml")
    assert doc["inferred"]["optimizer"]["value"] == "adam"  # a one-item optimizer.name list
    assert doc["inferred"]["epochs"]["value"] == 500
    text = run_cli("check", RAW / "s_31_gnn_mi_bayes.yaml", "--fail-on", "never").out
    assert "inferred:" in text and "epochs 500" in text


def test_what_the_user_gives_wins_over_what_is_inferred() -> None:
    doc = _check(RAW / "s_04_metapt_bert_grid.yaml", "--model-family", "cnn")
    assert "model_family" not in doc["inferred"]
    assert "missing_warmup" not in {f["label"] for f in doc["findings"]}
    doc = _check(RAW / "s_23_thesis_peft_random.yaml", "--epochs", "3")
    assert "epochs" not in doc["inferred"]
    assert "no_pruning" not in {f["label"] for f in doc["findings"]}


def test_one_item_lists_are_fixed_values() -> None:
    doc = _check(RAW / "s_29_klue_deberta_grid.yaml")
    assert doc["space"]["params"] == ["learning_rate", "batch_size"]  # seed, model, epochs: [x]
    assert doc["space"]["grid_size"] == 6


def test_command_flags_tell_the_length_and_warmup(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("program: train.py\nmethod: random\nparameters:\n"
                    "  learning_rate: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}\n"
                    "command:\n  - ${env}\n  - python\n  - ${program}\n  - --model_name_or_path\n"
                    "  - roberta-base\n  - --num_train_epochs=20\n  - --lr\n  - ${lr}\n  - ${args}\n")
    doc = _check(path)
    assert doc["inferred"]["model_family"]["value"] == "transformer"
    assert doc["inferred"]["epochs"]["value"] == 20
    assert {"no_pruning", "missing_warmup"} <= {f["label"] for f in doc["findings"]}
    path.write_text(path.read_text().replace("--num_train_epochs=20", "--warmup_ratio=0.06"))
    labels = {f["label"] for f in _check(path)["findings"]}
    assert "missing_warmup" not in labels and "no_pruning" not in labels


def test_a_max_steps_parameter_is_a_long_run(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("method: bayes\nrun_cap: 50\nparameters:\n"
                    "  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}\n"
                    "  max_steps: {values: [20000, 50000]}\n")
    doc = _check(path)
    assert doc["inferred"]["steps"]["value"] == 50000
    assert "no_pruning" in {f["label"] for f in doc["findings"]}
    path.write_text(path.read_text() + "early_terminate: {type: hyperband, min_iter: 3}\n")
    assert "no_pruning" not in {f["label"] for f in _check(path)["findings"]}


def test_what_wandb_reads_differently_is_a_finding_not_a_refusal(tmp_path: Path) -> None:
    # a key given twice: read as W&B reads it (the last), said once
    doc = _check(FIXTURES / "spaces" / "bad-repeated-key.yaml")
    assert [f["label"] for f in doc["findings"]] == ["repeated_key"]
    assert "lines 13 and 15" in doc["findings"][0]["message"]
    # a parameter left holding nothing (its mapping lost to bad indentation)
    path = tmp_path / "sweep.yaml"
    path.write_text("method: random\nparameters:\n  lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-2}\n"
                    "  scheduler:\n  value: null\n")
    doc = _check(path)
    stray = [f for f in doc["findings"] if f["label"] == "stray_parameter"]
    assert stray and "'scheduler'" in stray[0]["message"] and "'value'" in stray[0]["message"]
    assert doc["space"]["params"] == ["lr"]


def _fixable() -> list[str]:
    from advisor.advice.check import check

    names = []
    for path in sorted(RAW.iterdir()):
        _, _, fixes = check(path, {})
        if fixes:
            names.append(path.name)
    return names


def _numbers_are_numbers(config: dict) -> list[str]:
    """Bounds that W&B's loader read as something other than a number."""
    bad = []
    for name, spec in (config.get("parameters") or {}).items():
        for key in ("min", "max", "mu", "sigma", "q"):
            if isinstance(spec, dict) and key in spec and not isinstance(spec[key], (int, float)):
                bad.append(f"{name}.{key}={spec[key]!r}")
    return bad


@pytest.mark.parametrize("name", _fixable())
def test_fix_writes_what_wandb_accepts_and_check_finds_clean(name: str, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    import yaml
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    from advisor.advice.check import check

    src = RAW / name
    before = src.read_bytes()
    report, _, fixes = check(src, {})
    fixed_codes = {f.code for f in fixes}
    fixed_labels = {f.label for f in report.findings if f.code in fixed_codes}
    out = tmp_path / name
    result = run_cli("check", src, "--fix", "--out", out, "--fail-on", "never")
    assert result.code == 0, result.err
    assert src.read_bytes() == before  # never the user's file without --in-place

    config = load_sweep_config(str(out))  # W&B's loader: yaml.safe_load, YAML 1.1
    assert isinstance(config, dict) and config["parameters"]
    assert config["method"] in ("grid", "random", "bayes")
    assert not _numbers_are_numbers(config), _numbers_are_numbers(config)
    after = {f["label"] for f in _check(out)["findings"]}
    assert not (after & fixed_labels), after & fixed_labels
    try:  # W&B's own sweep schema (the `sweeps` package of wandb[sweeps]), where installed
        import sweeps
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        was = set(sweeps.schema_violations_from_proposed_config(yaml.safe_load(before)))
        now = set(sweeps.schema_violations_from_proposed_config(config))
    assert now <= was, now - was  # no new complaint from W&B's schema
    if "K501" in fixed_codes:  # and none left about a number read as a string
        assert not [v for v in now if "is not valid under any of the given schemas" in v
                    and any(f"'{k}': '" in v for k in ("min", "max"))], now
