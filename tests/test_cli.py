"""The command line: output sinks, exit codes, explain/rules, python -m advisor."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli


def _write_run(path: Path, overfit: bool = False, epochs: int = 30) -> Path:
    lines = ["epoch,loss,val_loss,val_accuracy,lr"]
    for e in range(epochs):
        train = 2.3 * math.exp(-e / 4) + 0.02
        val = 2.3 * math.exp(-e / 4) + 0.3 + (0.03 * (e - 8) ** 1.5 if overfit and e > 8 else 0.0)
        lines.append(f"{e},{train:.5f},{val:.5f},{min(0.97, 0.3 + e / 30) - (0.05 if overfit else 0):.4f},0.001")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_is_the_only_thing_on_stdout(tmp_path: Path) -> None:
    result = run_cli("diagnose", _write_run(tmp_path / "run.csv", overfit=True), "--json")
    doc = json.loads(result.out)
    assert doc["schema_version"] == "advisor.diagnose/1"
    assert [d["label"] for d in doc["diagnoses"]] == ["overfitting"]
    first = doc["diagnoses"][0]
    for key in ("code", "name", "severity", "evidence", "advice", "label", "tier", "source", "run"):
        assert key in first
    assert doc["runs"][0]["tune_first"][0]["param"] == "lr_schedule"
    assert result.code == 0  # overfitting is a warning; --fail-on defaults to error


def test_fail_on_warning_exits_1(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run.csv", overfit=True)
    assert run_cli("diagnose", run, "--fail-on", "warning").code == 1
    assert run_cli("diagnose", run, "--fail-on", "never").code == 0
    assert run_cli("diagnose", run, "--fail-on", "sometimes").code == 2


def test_healthy_run_exits_0_even_with_fail_on_info(tmp_path: Path) -> None:
    result = run_cli("diagnose", _write_run(tmp_path / "run.csv"), "--fail-on", "info", "--json")
    labels = [d["label"] for d in json.loads(result.out)["diagnoses"]]
    assert labels[0] == "healthy" and set(labels) <= {"healthy", "plateau", "slow_convergence"}
    assert result.code == 0  # where a healthy run ended (plateau, slow convergence) is no failure


def test_terminal_report_shows_evidence_and_tuning_order(tmp_path: Path) -> None:
    result = run_cli("diagnose", _write_run(tmp_path / "run.csv", overfit=True))
    assert "D301 overfitting" in result.out
    assert "evidence:" in result.out and "val_rise=" in result.out
    assert "What to tune first" in result.out
    order = result.out[result.out.index("What to tune first"):]
    assert order.index("lr_schedule") < order.index("weight_decay") < order.index("dropout")


def test_report_and_plot_are_written(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run.csv", overfit=True)
    report, plot = tmp_path / "r.md", tmp_path / "p.png"
    result = run_cli("diagnose", run, "--report", report, "--plot", plot)
    assert result.code == 0, result.err
    text = report.read_text()
    assert "# advisor diagnosis" in text and "D301" in text and "| val_rise |" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*advisor-tmp*"))


def test_several_runs_are_compared(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a.csv", overfit=True)
    b = _write_run(tmp_path / "b.csv")
    doc = json.loads(run_cli("diagnose", a, b, "--json").out)
    assert len(doc["runs"]) == 2 and len(doc["comparison"]) == 2
    assert doc["best_run"].endswith("b.csv")
    assert {d["run"].rsplit("/", 1)[-1] for d in doc["diagnoses"]} == {"a.csv", "b.csv"}


def test_context_rules_fire_on_what_the_user_says(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run.csv")
    doc = json.loads(run_cli("diagnose", run, "--json", "--optimizer", "adam", "--current", "lr=1e-3,wd=1e-4",
                             "--model-family", "transformer", "--budget", "45m", "--dataset-size", "500").out)
    codes = {n["code"] for n in doc["notes"]}
    assert {"C001", "C003", "C004", "C005"} <= codes
    quiet = json.loads(run_cli("diagnose", run, "--json", "--optimizer", "adamw", "--current", "wd=0.01").out)
    assert not {n["code"] for n in quiet["notes"]} & {"C003"}


def test_bad_context_values_exit_2(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run.csv")
    for args in (("--optimizer", "lion9"), ("--budget", "soon"), ("--current", "lr"),
                 ("--current", "colour=red"), ("--dataset-size", "-3")):
        result = run_cli("diagnose", run, *args)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1, (args, result.err)


def test_map_overrides_a_column_role(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("ep,crit,holdout\n" + "".join(f"{e},{2 / (e + 1):.4f},{2.2 / (e + 1):.4f}\n"
                                                       for e in range(12)))
    assert run_cli("diagnose", path).code == 2  # no loss column by name
    doc = json.loads(run_cli("diagnose", path, "--json", "--map", "train_loss=crit",
                             "--map", "val_loss=holdout").out)
    assert doc["runs"][0]["columns"] == {"train_loss": "crit", "val_loss": "holdout", "epoch": "ep"}


@pytest.mark.parametrize("key", ["D301", "d301", "overfitting"])
def test_explain_by_code_or_name(key: str) -> None:
    result = run_cli("explain", key)
    assert result.code == 0
    for section in ("What it does", "Why it matters", "Example", "Advice", "Source"):
        assert section in result.out


def test_explain_unknown_rule_suggests() -> None:
    result = run_cli("explain", "overfiting")
    assert result.code == 2 and "did you mean 'overfitting'" in result.err


def test_rules_lists_every_rule() -> None:
    doc = json.loads(run_cli("rules", "--json").out)
    assert {"D101", "D301", "D801", "C004"} <= {r["code"] for r in doc}


def test_python_dash_m_and_help_examples() -> None:
    proc = subprocess.run([sys.executable, "-m", "advisor", "diagnose", "--help"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0 and "Examples" in proc.stdout and "--plot" in proc.stdout
