"""advisor lr-find on the held-out suite: the horizon correction, repeats read off their mean
curve, --method sweep (successive halving), the stored ground truth and the leave-one-task-out
script on a two-task subset."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")

from advisor.act import lr_find as LF  # noqa: E402
from advisor.errors import InputError  # noqa: E402
from test_lr_find import lr_find_cli, synthetic  # noqa: E402

SUITE = ROOT / "bench" / "lr_suite"
torch.set_num_threads(1)


def settings_with(tmp_path: Path, **changes) -> LF.LRFindSettings:
    """rules/lr_find.yaml with some top-level sections' keys changed, loaded from a copy."""
    import yaml

    data = yaml.safe_load((ROOT / "rules" / "lr_find.yaml").read_text())
    for section, values in changes.items():
        data[section].update(values)
    path = tmp_path / f"lr_find_{len(list(tmp_path.iterdir()))}.yaml"  # load_settings caches by path
    path.write_text(yaml.safe_dump(data))
    return LF.load_settings(str(path))


# --------------------------------------------------------------------------- horizon

def test_horizon_lowers_the_lr_by_the_slope_per_decade_of_steps(tmp_path: Path) -> None:
    cfg = settings_with(tmp_path, horizon={"slope": 0.5, "max_decades": 1.5})
    c = LF.horizon_correction(10_000, 100, cfg, "--epochs")
    assert c["applied"] and c["factor"] == pytest.approx(10 ** -1.0, rel=1e-3)  # 2 decades x 0.5
    assert "capped" not in c["why"] and c["source"] == "--epochs"
    c = LF.horizon_correction(1000, 100, cfg)
    assert c["factor"] == pytest.approx(10 ** -0.5, rel=1e-3) and "divided by 3.16" in c["why"]
    c = LF.horizon_correction(10 ** 8, 100, cfg)
    assert c["factor"] == pytest.approx(10 ** -1.5, rel=1e-3) and "capped" in c["why"]  # max_decades
    assert not LF.horizon_correction(80, 100, cfg)["applied"]        # shorter than the test
    none = LF.horizon_correction(None, 100, cfg)
    assert not none["applied"] and none["factor"] == 1.0 and "--epochs" in none["why"]


def test_apply_horizon_scales_the_suggestion_and_its_range() -> None:
    lrs, losses, diverged = synthetic(drop_at=-2.5, blow_at=-0.5)
    s = LF.suggest(lrs, losses, 100, diverged)
    corr = {"applied": True, "factor": 0.25, "planned_steps": 2000}
    t = LF.apply_horizon(s, corr)
    assert t.suggested_lr == pytest.approx(s.suggested_lr * 0.25, rel=1e-3)
    assert t.range[0] == pytest.approx(s.range[0] * 0.25, rel=1e-3)
    assert "2000 steps" in t.message
    assert LF.apply_horizon(s, {"applied": False, "factor": 1.0}) == s


def test_the_fitted_constants_live_in_the_rules(tmp_path: Path) -> None:
    lrs, losses, diverged = synthetic(drop_at=-2.5, blow_at=-0.5)
    base = LF.suggest(lrs, losses, 100, diverged, settings_with(tmp_path, suggest={"offset_decades": 0.0}))
    up = LF.suggest(lrs, losses, 100, diverged, settings_with(tmp_path, suggest={"offset_decades": 0.5}))
    assert up.suggested_lr / base.suggested_lr == pytest.approx(10 ** 0.5, rel=1e-2)
    cfg = LF.load_settings()
    assert cfg.sweep.repeats >= 1 and cfg.horizon.slope >= 0 and len(cfg.halving.offsets_decades) >= 2


# --------------------------------------------------------------------------- repeats

def test_mean_curve_is_the_geometric_mean_up_to_the_shortest_finite_curve() -> None:
    a = ([1.0, 2.0, 3.0, 4.0], [4.0, 2.0, 1.0, 8.0])
    b = ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, float("nan"), 1.0])
    x, y = LF.mean_curve([a, b])
    assert list(x) == [1.0, 2.0] and np.allclose(y, [2.0, 2.0])


def test_repeats_read_off_the_mean_curve_spread_less_than_single_tests() -> None:
    """Nine noisy synthetic tests of one curve: three means of three agree better than three singles."""
    runs = [synthetic(drop_at=-2.0, blow_at=0.0, noise=0.25, seed=s) for s in range(9)]
    curves = [LF.Curve(lrs=list(x), losses=list(y), smoothed=list(LF.ema(y)), iters=100, start=1e-7, end=10.0,
                       diverged=d, stop_reason="diverged" if d else "end", seconds=0.0) for x, y, d in runs]
    singles = [c.suggest().suggested_lr for c in curves[:3]]
    means = [LF.combine_curves(curves[i:i + 3]).suggestion.suggested_lr for i in (0, 3, 6)]
    spread = lambda v: max(v) / min(v)  # noqa: E731
    assert spread(means) < spread(singles)
    combined = LF.combine_curves(curves[:3])
    assert combined.spread >= 1 and len(combined.suggested_lrs) == 3
    assert "mean of 3 curves" in combined.suggestion.message


# --------------------------------------------------------------------------- --method sweep

def test_halving_plan_and_pick() -> None:
    plan = LF.halving_plan(1e-3, 9)
    assert len(plan["candidates"]) == len(LF.load_settings().halving.offsets_decades)
    assert min(plan["candidates"]) < 1e-3 < max(plan["candidates"]) * 1.0001
    assert plan["cost_full_runs"] == pytest.approx((len(plan["candidates"]) * plan["first_epochs"]
                                                    + plan["keep"] * 9) / 9, abs=0.01)
    short = LF.halving_plan(1e-3, 1)  # one epoch: no halving, every candidate once
    assert short["keep"] == 1 and short["cost_full_runs"] == len(short["candidates"])
    assert LF.halving_pick({1.0: 0.5, 2.0: 0.9, 3.0: math.nan, 4.0: 0.9}, 2, True) == [2.0, 4.0]
    assert LF.halving_pick({1.0: 0.5, 2.0: 0.2, 3.0: math.nan}, 1, False) == [2.0]


def test_halving_sweep_trains_and_returns_the_best_of_the_last_rung() -> None:
    from advisor.act import demo

    plan = LF.halving_plan(0.01, 2)
    out = LF.halving_sweep(lambda: demo.build({}), plan, optimizer="adamw", seed=0)
    first, last = out["rungs"]
    assert first["epochs"] == plan["first_epochs"] and len(first["lrs"]) == len(plan["candidates"])
    assert len(last["lrs"]) == plan["keep"] and set(last["lrs"]) <= set(first["lrs"])
    assert out["best_metric"] == max(v for v in last["metrics"] if v is not None)  # accuracy
    assert out["best_lr"] in last["lrs"]


def test_method_sweep_through_the_command() -> None:
    code, out, err = lr_find_cli("--demo", "--method", "sweep", "--epochs", "2", "--iters", "40",
                                 "--repeats", "1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["method"] == "sweep" and doc["halving"]["best_lr"] == doc["suggested_lr"]
    assert "full training runs" in err  # the cost, said before it starts
    assert doc["horizon"]["source"].startswith("--epochs")


@pytest.mark.parametrize("args, pattern", [
    (("--method", "sweep"), r"--method sweep: needs the planned length"),
    (("--method", "grid"), r"--method: unknown method 'grid'"),
    (("--epochs", "0"), r"--epochs: must be at least 1"),
])
def test_bad_method_input_is_one_line_and_exit_2(args, pattern) -> None:
    import re

    code, out, err = lr_find_cli("--demo", "--iters", "20", "--repeats", "1", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), err


def test_epochs_correct_the_suggestion_in_the_json(tmp_path: Path) -> None:
    code, out, err = lr_find_cli("--demo", "--epochs", "40", "--iters", "60", "--repeats", "1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    hz = doc["horizon"]
    assert hz["planned_steps"] == 40 * 23 and hz["test_steps"] == 60
    if LF.load_settings().horizon.slope > 0:
        assert hz["applied"] and doc["suggested_lr"] == pytest.approx(doc["uncorrected_lr"] * hz["factor"], rel=1e-3)


# --------------------------------------------------------------------------- the suite's stored results

def _suite():
    sys.path.insert(0, str(SUITE))
    import tasks

    return tasks


def test_stored_ground_truth_has_the_promised_shape() -> None:
    T = _suite()
    runs: dict = {}
    for line in (SUITE / "results" / "sweep.jsonl").read_text().splitlines():
        r = json.loads(line)
        runs.setdefault(r["task"], {}).setdefault(r["lr"], []).append(r)
        assert len(r["history"]) == T.TASKS[r["task"]].epochs
    curves: dict = {}
    for line in (SUITE / "results" / "curves.jsonl").read_text().splitlines():
        r = json.loads(line)
        curves.setdefault(r["task"], set()).add((r["seed"], r["iters"]))
        assert len(r["lrs"]) == len(r["losses"]) <= r["iters"]
    assert len(runs) >= 12
    for name, by_lr in runs.items():
        assert len(by_lr) >= 15 and all(len(v) == 3 for v in by_lr.values()), name
        assert len(curves[name]) >= 9, name
    kinds = {s.optimizer for s in T.TASKS.values()}
    assert kinds == {"sgd", "adam", "adamw", "rmsprop"}
    epochs = [s.epochs for s in T.TASKS.values()]
    sizes = [s.batch_size for s in T.TASKS.values()]
    assert min(epochs) <= 3 and max(epochs) >= 30 and min(sizes) <= 16 and max(sizes) >= 512


def test_loto_script_runs_on_two_tasks(tmp_path: Path) -> None:
    sys.path.insert(0, str(SUITE))
    import loto

    out = tmp_path / "loto.json"
    loto.main(["--tasks", "wine-mlp-adamw", "cancer-mlp-sgd", "--json", str(out)])
    report = json.loads(out.read_text())
    assert set(report["tasks"]) == {"wine-mlp-adamw", "cancer-mlp-sgd"}
    for rule in ("fastai_valley", "torch_lr_finder_steepest", "fastai_minimum"):
        assert 0 <= report["overall"][rule]["mean_task_hit_rate"] <= 1
    row = report["tasks"]["wine-mlp-adamw"]
    assert row["fastai_valley"]["n"] == 9 and row["advisor LOTO (mean curve of 3)"]["n"] == 3


def test_suite_task_trains_for_real() -> None:
    T = _suite()
    history = T.train("cancer-mlp-sgd", 0.03, 0)
    assert len(history) == T.TASKS["cancer-mlp-sgd"].epochs and history[-1] > 0.9
    assert T.train("cancer-mlp-sgd", 50.0, 0)[-1] < 0.8  # a far too large LR does not train
