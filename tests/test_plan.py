"""`advisor plan` and `advisor hardware`: the guide's scenarios, --from, --lr-from, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT, RUNS, run_cli

from advisor.advice.plan import PlanInput, build_plan, tables
from advisor.engine import evaluate, load_knowledge
from advisor.facts.hardware import Hardware, detect


def _register() -> None:
    """Register plan and hardware on the real app unless advisor/cli.py already does."""
    from advisor.cli import app
    from advisor.commands import plan as plan_cmd

    names = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    if "plan" not in names:
        app.command(epilog=plan_cmd.EPILOG)(plan_cmd.plan)
    if "hardware" not in names:
        app.command(epilog=plan_cmd.HARDWARE_EPILOG)(plan_cmd.hardware)


_register()

ONE_GPU = ["--gpus", "1"]


def plan_json(*args: str) -> dict:
    res = run_cli("plan", *args, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)  # stdout carries only the JSON document


def codes(plan: dict) -> set[str]:
    return {r["code"] for r in plan["reasons"]}


def names(plan: dict) -> list[str]:
    return [p["name"] for p in plan["params"]]


def one_gpu() -> Hardware:
    return detect(gpus=1)


# --------------------------------------------------------------------------- the guide's scenarios

SCENARIOS = [
    # (id, arguments, expectations)
    ("5h-lr-only", ["--budget", "5h", "--trial-time", "30m"],
     dict(strategy={"manual", "grid"}, params=["learning_rate"], configs=(5, 10), top_k=0, pruner="none",
          codes={"P002", "P102"})),
    ("under-an-hour", ["--budget", "40m", "--trial-time", "8m"],
     dict(strategy={"manual"}, params=["learning_rate"], configs=(3, 5), top_k=0, pruner="none",
          codes={"P001", "P101"})),
    ("50h-4-params", ["--budget", "50h", "--trial-time", "30m", "--params", "lr,bs,wd,warmup"],
     dict(strategy={"bayesian"}, n_params=4, configs=(80, 100), top_k=5, seeds=3, pruner="successive_halving",
          codes={"P003", "P104", "P202"})),  # bench_strategies: Bayesian from ~20 configurations
    ("50h-chosen", ["--budget", "50h", "--trial-time", "30m"],
     dict(strategy={"bayesian"}, n_params=4, configs=(80, 100), top_k=5, seeds=3, codes={"P003", "P104"})),
    ("300h-20h-trials", ["--budget", "300h", "--trial-time", "20h", "--params", "lr,bs,wd,warmup"],
     dict(strategy={"random"}, n_params=4, configs=(13, 40), top_k=1, codes={"P004", "P103", "P105", "P110"})),
    ("300h-5-params", ["--budget", "300h", "--trial-time", "1h", "--params", "lr,bs,wd,warmup,dropout"],
     dict(strategy={"bayesian"}, n_params=5, configs=(200, 300), top_k=5, seeds=3,
          codes={"P004", "P104", "P420"})),
    ("300h-6-params-30m", ["--budget", "300h", "--trial-time", "30m", "--params",
                           "lr,schedule,bs,wd,warmup,dropout"],
     dict(strategy={"bayesian"}, n_params=6, configs=(200, 300), top_k=5, seeds=3, codes={"P004", "P104", "P120"})),
    ("1200h", ["--budget", "1200h", "--trial-time", "1h"],
     dict(strategy={"bayesian"}, configs=(500, 10 ** 6), top_k=5, seeds=3, pruner="hyperband",
          codes={"P005", "P104", "P203"})),
]


@pytest.mark.parametrize("args, want", [(a, w) for _, a, w in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_guide_scenarios(args: list[str], want: dict) -> None:
    plan = plan_json(*args, *ONE_GPU)
    assert plan["tune"] is True
    assert plan["strategy"] in want["strategy"]
    lo, hi = want["configs"]
    assert lo <= plan["n_configs"] <= hi
    if "params" in want:
        assert names(plan) == want["params"]
    if "n_params" in want:
        assert len(plan["params"]) == want["n_params"]
    assert plan["top_k"] == want["top_k"]
    if "seeds" in want:
        assert plan["seeds_final"] == want["seeds"]
        final = [ph for ph in plan["phases"] if ph["name"] == "final"]
        assert final and final[0]["configs"] == 5 and final[0]["seeds"] == 3
    if "pruner" in want:
        assert plan["pruner"]["type"] == want["pruner"]
    assert want["codes"] <= codes(plan)
    assert plan["expected_hours"] <= plan["budget"]["budget_hours"] * 1.001
    assert names(plan)[0] == "learning_rate"
    for key in ("tune", "strategy", "n_configs", "params", "phases", "pruner", "seeds_final",
                "stop_rules", "expected_hours", "reasons", "baseline", "coupled"):
        assert key in plan


def test_five_hours_prints_the_grid_it_runs() -> None:
    plan = plan_json("--budget", "5h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adamw")
    lr = plan["params"][0]
    assert lr["log"] and lr["distribution"] == "loguniform"
    values = lr["choices"]
    assert 5 <= len(values) <= 10 and values == sorted(values)
    assert values[0] == pytest.approx(lr["low"]) and values[-1] == pytest.approx(lr["high"])
    ratios = [b / a for a, b in zip(values, values[1:])]
    assert max(ratios) / min(ratios) < 1.05  # evenly spaced on a log scale
    assert plan["grid"] == [{"learning_rate": v} for v in values]
    # the terminal shows exactly these values
    text = run_cli("plan", "--budget", "5h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adamw").out
    assert all(f"{v:.3g}" in text for v in values)


def test_configurations_come_from_the_users_trial_time() -> None:
    """n_configs = min(band cap, (budget - final seeds) x workers / (trial cost x pruning share))."""
    bt = tables()["budget"]
    for budget, trial in (("50h", "1h"), ("80h", "45m"), ("600h", "3h"), ("40h", "20m")):
        plan = plan_json("--budget", budget, "--trial-time", trial, *ONE_GPU)
        b = plan["budget"]
        assert b["affordable_configs"] == pytest.approx((b["compute_hours"] - b["final_gpu_hours"]) / b["trial_hours"], abs=0.01)
        share = bt["pruning_cost_share"][plan["pruner"]["type"]]
        cap = bt["bands"][b["band"]]["configs"]
        assert plan["n_configs"] == min(cap, math.floor(b["affordable_configs"] / share + 1e-9))
        assert b["final_gpu_hours"] <= bt["final_share_max"] * b["compute_hours"] + 1e-9


def test_bayesian_needs_twenty_trials() -> None:
    plan = plan_json("--budget", "300h", "--trial-time", "20h", *ONE_GPU, "--params", "lr,bs,wd,warmup,dropout")
    assert plan["strategy"] == "random"
    assert "P105" in codes(plan) and "P104" not in codes(plan)


def test_workers_multiply_the_budget_and_share_a_journal() -> None:
    plan = plan_json("--budget", "100h", "--trial-time", "1h", "--gpus", "4")
    assert plan["budget"]["workers"] == 4 and plan["budget"]["compute_hours"] == 400
    assert plan["strategy"] == "bayesian" and plan["storage"] == "journal"
    assert plan["sampler"]["args"]["constant_liar"] is True
    assert {"P401", "P402"} <= codes(plan)
    assert plan["expected_hours"] <= 100
    assert plan_json("--budget", "100h", "--trial-time", "1h", "--gpus", "4", "--workers", "1")["budget"]["workers"] == 1


def test_every_decision_is_traceable_to_a_rule() -> None:
    kb = load_knowledge("plan")
    concluders = {r.code: set(r.concludes) for r in kb.rules}
    for _, args, _ in SCENARIOS:
        plan = plan_json(*args, *ONE_GPU)
        fired = codes(plan)
        for fact in ("budget_band", "tune", "strategy", "pruner", "lr_shift", "storage"):
            assert any(fact in concluders.get(c, set()) for c in fired), (args, fact)  # C0xx: diagnose's
        for r in plan["reasons"]:
            assert r["message"] and r["source"]
        for p in plan["params"]:
            assert p["because"] and p["tier"] in (1, 2, 3, 4, 5) and 0 < p["share"] <= 1


def test_band_table_agrees_with_band_rules() -> None:
    kb = load_knowledge("plan")
    for band, spec in tables()["budget"]["bands"].items():
        low, high = spec["hours"]
        probes = [low + 1e-6 if low else 0.01] + ([high - 1e-6] if high else [low * 10])
        for hours in probes:
            _, facts = evaluate(kb, {"compute_hours": hours})
            assert facts["budget_band"] == band, (band, hours)


# --------------------------------------------------------------------------- ranges and coupling

def test_weight_decay_is_log_with_a_positive_floor_and_zero() -> None:
    plan = plan_json("--budget", "8h", "--trial-time", "30m", *ONE_GPU, "--params", "lr,wd", "--optimizer", "sgd")
    wd = next(p for p in plan["params"] if p["name"] == "weight_decay")
    assert wd["log"] and wd["low"] > 0 and wd["zero"] is True
    assert "P315" in codes(plan)
    assert 0.0 in wd["choices"]  # a grid: 0 is one of the points, beside the log-spaced ones
    adamw = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--params", "lr,wd", "--optimizer", "adamw")
    assert next(p for p in adamw["params"] if p["name"] == "weight_decay")["high"] > wd["high"]


def test_lr_ranges_by_optimizer_family_and_finetuning() -> None:
    def lr(*extra: str) -> dict:
        return plan_json("--budget", "5h", "--trial-time", "30m", *ONE_GPU, *extra)["params"][0]

    sgd, adam = lr("--optimizer", "sgd"), lr("--optimizer", "adam")
    assert sgd["low"] > adam["low"] and sgd["high"] > adam["high"]
    tr = lr("--optimizer", "adamw", "--model-family", "transformer")
    ft = lr("--optimizer", "adamw", "--finetune")
    assert tr["high"] == pytest.approx(adam["high"] * 0.1) and ft["high"] == pytest.approx(adam["high"] * 0.1)


def test_searched_optimizer_gives_conditional_lr_ranges() -> None:
    plan = plan_json("--budget", "300h", "--trial-time", "1h", *ONE_GPU, "--params", "lr,optimizer,bs,wd")
    lr = plan["params"][0]
    assert lr["by"] == "optimizer" and set(lr["ranges"]) == {"sgd", "adamw"}
    assert lr["ranges"]["sgd"][0] > lr["ranges"]["adamw"][0]
    assert {"P314", "P312"} <= codes(plan)
    assert any(c["params"] == ["optimizer", "learning_rate"] for c in plan["coupled"])


@pytest.mark.parametrize("optimizer, scaling, code", [("sgd", "linear", "P310"), ("adam", "sqrt", "P311"),
                                                      ("adamw", "sqrt", "P311")])
def test_lr_batch_coupling_says_which_rule(optimizer: str, scaling: str, code: str) -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--params", "bs,wd",
                     "--optimizer", optimizer)
    assert names(plan)[0] == "learning_rate"  # added: batch size is never searched with the LR fixed
    assert "P121" in codes(plan)
    coupling = next(c for c in plan["coupled"] if "batch_size" in c["params"])
    assert coupling["scaling"] == scaling and coupling["code"] == code


def test_warmup_is_searched_with_the_lr_for_transformers() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--model-family", "transformer",
                     "--optimizer", "adamw")
    assert "warmup" in names(plan) and {"P016", "P313"} <= codes(plan)
    warmup = next(p for p in plan["params"] if p["name"] == "warmup")
    assert 0 < warmup["low"] < warmup["high"] <= 0.1 and not warmup["log"]


def test_current_config_is_the_baseline() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adamw",
                     "--current", "lr=2e-3,bs=96,wd=0,dropout=0.1", "--params", "lr,bs,wd")
    assert plan["baseline"] == {"learning_rate": 0.002, "batch_size": 96, "weight_decay": 0.0}
    bs = next(p for p in plan["params"] if p["name"] == "batch_size")
    assert 96 in bs["choices"] and min(bs["choices"]) >= 24 and max(bs["choices"]) <= 384
    assert plan["fixed"]["dropout"] == 0.1 and plan["fixed"]["optimizer"] == "adamw"
    assert "P410" in codes(plan)


def test_batch_size_capped_by_gpu_memory() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", "--gpus", "1", "--gpu-memory", "8GB",
                     "--params", "lr,bs")
    bs = next(p for p in plan["params"] if p["name"] == "batch_size")
    assert max(bs["choices"]) <= 128
    assert all(c & (c - 1) == 0 for c in bs["choices"])  # powers of two


def test_lr_from_finder_centres_the_range(tmp_path) -> None:
    finder = tmp_path / "lrfind.json"
    finder.write_text(json.dumps({"suggested_lr": 3e-3, "range": [1e-4, 1e-1]}))
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adam",
                     "--lr-from", str(finder))
    lr = plan["params"][0]
    # rules/tables/ranges.yaml finder: +-1.2 decades around the suggestion (measured on bench/lr_suite)
    assert lr["low"] == pytest.approx(3e-3 / 10 ** 1.2, rel=0.01) and lr["high"] == pytest.approx(3e-3 * 10 ** 1.2, rel=0.01)
    assert math.sqrt(lr["low"] * lr["high"]) == pytest.approx(3e-3, rel=0.01)
    assert "P303" in codes(plan) and plan["lr_shift"] == "finder"
    narrow = tmp_path / "narrow.json"  # the finder's own narrow range does not narrow the search
    narrow.write_text(json.dumps({"suggested_lr": 3e-3, "range": [2e-3, 5e-3]}))
    lr = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--lr-from", str(narrow))["params"][0]
    assert lr["low"] < 2e-3 and lr["high"] > 5e-3 and math.log10(lr["high"] / lr["low"]) >= 2.39


# --------------------------------------------------------------------------- --from a real run

def fixture(scenario: str):
    """The Keras log of a scenario, or any other format of it; skip while it is not generated."""
    for name in (f"{scenario}.keras.csv", f"{scenario}.tsv", f"{scenario}.wandb.csv", f"{scenario}.hf/trainer_state.json"):
        if (RUNS / name).exists():
            return RUNS / name
    pytest.skip(f"fixtures/runs/{scenario}.* not generated yet")


def test_from_overfitting_run_adds_regularization() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adam",
                     "--from", str(fixture("overfitting")))
    assert plan["tune"] and {"weight_decay", "dropout"} <= set(names(plan))
    assert "P020" in codes(plan)
    assert "P020" in next(p for p in plan["params"] if p["name"] == "weight_decay")["because"]
    assert "overfitting" in plan["from_run"]["labels"]


def test_from_healthy_run_says_do_not_tune() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--from", str(fixture("healthy")))
    assert plan["tune"] is False and plan["n_configs"] == 0 and plan["params"] == []
    assert "P010" in codes(plan)


def test_from_underfitting_run_says_tuning_will_not_fix_it() -> None:
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--from", str(fixture("underfitting")))
    assert plan["tune"] is False and "P011" in codes(plan)
    p011 = next(r for r in plan["reasons"] if r["code"] == "P011")
    assert "capacity" in p011["message"] and "wider or deeper" in p011["advice"]
    out = run_cli("plan", "--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--from", str(fixture("underfitting")))
    assert out.code == 0 and "Do not run a search" in out.out


@pytest.mark.parametrize("suggested, low, searches", [
    (4.5e-3, 6.6e-4, True),    # inside the finder's range, 4.5x below its suggestion: the LR is the suspect
    (1.4e-2, 1.7e-3, True),    # below the whole range
    (2.0e-3, 1.0e-4, False),   # 2x below the suggestion: within its error, capacity it is
])
def test_underfitting_at_a_learning_rate_well_below_the_finders_searches_the_lr(tmp_path, suggested, low,
                                                                                  searches) -> None:
    finder = tmp_path / "lrfind.json"
    finder.write_text(json.dumps({"suggested_lr": suggested, "range": [low, suggested * 10]}))
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adam", "--current",
                     "lr=1e-3", "--from", str(fixture("underfitting")), "--lr-from", str(finder))
    assert plan["tune"] is searches and ("P017" in codes(plan)) is searches and ("P011" in codes(plan)) is not searches
    if searches:
        assert names(plan)[0] == "learning_rate"


def test_from_unstable_run_lowers_the_lr_range() -> None:
    path = fixture("unstable")
    plan = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adam", "--from", str(path))
    if "unstable" not in plan["from_run"]["labels"]:
        pytest.skip(f"{path.name} is not diagnosed unstable: {plan['from_run']['labels']}")
    assert {"P021", "P301"} <= codes(plan) and plan["lr_shift"] == "lower"
    # warmup and clipping are searched, or deferred by the budget's parameter cap, asked by P021
    deferred = {d["param"] for d in plan["deferred"] if "P021" in d["asked_by"]}
    assert {"warmup", "grad_clip"} <= set(names(plan)) | deferred
    lr = plan["params"][0]
    current = plan["baseline"]["learning_rate"]
    default = plan_json("--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--optimizer", "adam")["params"][0]
    assert lr["high"] == pytest.approx(min(current * 0.5, default["high"]))  # below the unstable LR
    assert lr["low"] == pytest.approx(min(current * 0.01, default["low"]))
    assert lr["high"] < current


def test_lower_lr_range_respects_fine_tuning_scale() -> None:
    plan = build_plan(PlanInput(budget_hours=50, trial_hours=0.5, hardware=one_gpu(), optimizer="adamw",
                                finetune=True, current={"learning_rate": 1e-3},  # defaults: 1e-6..1e-3
                                diagnosis={"run": "r.csv", "labels": ["unstable"], "notes": [], "codes": [],
                                           "verdict": ""}))
    lr = plan.param("learning_rate")
    assert plan.lr_shift == "lower" and lr.high == pytest.approx(5e-4) and lr.low == pytest.approx(1e-6)
    slow = build_plan(PlanInput(budget_hours=50, trial_hours=0.5, hardware=one_gpu(), optimizer="sgd",
                                current={"learning_rate": 3e-3},
                                diagnosis={"run": "r.csv", "labels": ["slow_convergence"], "notes": [],
                                           "codes": [], "verdict": ""}))
    lr = slow.param("learning_rate")
    assert slow.lr_shift == "higher" and lr.low == pytest.approx(6e-3) and lr.high == pytest.approx(0.5)
    assert "P302" in {r.code for r in slow.reasons}


@pytest.mark.parametrize("optimizer, labels, high", [
    ("adam", ["overfitting"], 1e-1),    # an overfitting run searches stronger decay
    ("adam", ["slow_convergence"], 1e-2),  # the default range otherwise
    ("sgd", [], 1e-2),
    ("adamw", ["overfitting"], 1e-1),   # decoupled decay reaches 0.1 already
])
def test_weight_decay_reaches_higher_when_the_run_overfits(optimizer, labels, high) -> None:
    plan = build_plan(PlanInput(budget_hours=50, trial_hours=0.5, hardware=one_gpu(), optimizer=optimizer,
                                params=["learning_rate", "weight_decay"],
                                diagnosis={"run": "r.csv", "labels": labels, "notes": [], "codes": [],
                                           "verdict": ""}))
    wd = plan.param("weight_decay")
    assert wd.high == pytest.approx(high) and wd.zero
    assert ("because the run overfits" in (wd.note or "")) == (labels == ["overfitting"] and optimizer != "adamw")


@pytest.mark.parametrize("labels, first_rung", [
    (["overfitting"], 15),       # an overfitting run's trials are judged first at a quarter of 60 epochs
    (["slow_convergence"], 6),   # a tenth otherwise
    ([], 6),
])
def test_successive_halving_judges_an_overfitting_runs_trials_later(labels, first_rung) -> None:
    plan = build_plan(PlanInput(budget_hours=50, trial_hours=0.5, hardware=one_gpu(), optimizer="adam", epochs=60,
                                params=["learning_rate", "weight_decay", "batch_size"],
                                diagnosis={"run": "r.csv", "labels": labels, "notes": [], "codes": [],
                                           "verdict": ""}))
    assert plan.pruner.type == "successive_halving" and plan.pruner.min_resource == first_rung
    bt = tables()["budget"]
    late = labels == ["overfitting"]   # a later first rung prunes less: each configuration costs more
    assert plan.pruner.cost_share == (bt["pruner"]["late_first_rung_cost_share"] if late
                                      else bt["pruning_cost_share"]["successive_halving"])
    assert ("P205" in {r.code for r in plan.reasons}) == (labels == ["overfitting"])


# --------------------------------------------------------------------------- output and bad input

def test_terminal_output_shows_decisions_and_reasons() -> None:
    res = run_cli("plan", "--budget", "50h", "--trial-time", "30m", *ONE_GPU)
    assert res.code == 0 and res.err == ""
    for text in ("Bayesian optimization", "learning_rate", "explore", "refine", "final", "successive_halving", "P104",
                 "Stop when"):
        assert text in res.out


BAD = [
    (["--budget", "fifty hours", "--trial-time", "30m"], "--budget"),
    (["--budget", "0h", "--trial-time", "30m"], "positive"),
    (["--budget", "-5h", "--trial-time", "30m"], "--budget"),
    (["--budget", "50h", "--trial-time", "0m"], "--trial-time"),
    (["--budget", "50h", "--epoch-time", "-1m", "--epochs", "10"], "--epoch-time"),
    (["--budget", "50h", "--epoch-time", "1m", "--epochs", "0"], "--epochs"),
    (["--budget", "50h", "--epoch-time", "1m"], "--epochs"),
    (["--budget", "50h", "--trial-time", "30m", "--epoch-time", "1m", "--epochs", "3"], "not both"),
    (["--budget", "50h", "--trial-time", "30m", "--optimizer", "adagrad"], "--optimizer"),
    (["--budget", "50h", "--trial-time", "30m", "--model-family", "gnn"], "--model-family"),
    (["--budget", "50h", "--trial-time", "30m", "--params", "lr,learnin_rate2,foo"], "learnin_rate2"),
    (["--budget", "50h", "--trial-time", "30m", "--current", "lr=fast"], "not a number"),
    (["--budget", "50h", "--trial-time", "30m", "--current", "colour=red"], "colour"),
    (["--budget", "50h", "--trial-time", "30m", "--emit", "optuna"], "--out"),
    (["--budget", "50h", "--trial-time", "30m", "--emit", "keras", "--out", "x.py"], "--emit"),
    (["--budget", "50h", "--trial-time", "30m", "--gpu-memory", "lots"], "--gpu-memory"),
    (["--budget", "50h", "--trial-time", "30m", "--gpus", "-1"], "--gpus"),
    (["--budget", "50h", "--trial-time", "30m", "--from", "no/such/run.csv"], "no/such/run.csv"),
    (["--budget", "50h", "--trial-time", "30m", "--lr-from", "no/such/lrfind.json"], "lrfind.json"),
]


@pytest.mark.parametrize("args, needle", BAD, ids=[" ".join(a[2:]) or a[1] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    res = run_cli("plan", *args, *([] if "--gpus" in args else ONE_GPU))
    assert res.code == 2, res
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert res.out == ""
    assert "Traceback" not in res.err
    if lines[0].startswith("advisor: error:"):
        assert len(lines) == 1 and needle in lines[0], res.err
    else:  # a usage error from the command-line parser (typer/click)
        assert needle.split()[0] in res.err or "Usage" in res.err


def test_unknown_parameter_suggests_the_closest_name() -> None:
    res = run_cli("plan", "--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--params", "learnin_rate")
    assert res.code == 2 and "did you mean 'learning_rate'" in res.err


def test_lr_find_document_is_read_with_its_verdict(tmp_path) -> None:
    """The JSON of `advisor lr-find --json`: suggested_lr, range, verdict, optimizer."""
    doc = {"schema_version": "advisor.lr-find/1", "suggested_lr": 0.02, "range": [0.005, 0.08],
           "verdict": "too-noisy", "message": "the curve is noisy", "optimizer": {"name": "sgd", "momentum": 0.9}}
    path = tmp_path / "lrfind.json"
    path.write_text(json.dumps(doc))
    plan = plan_json("--budget", "5h", "--trial-time", "30m", *ONE_GPU, "--lr-from", str(path))
    lr = plan["params"][0]
    assert lr["low"] == pytest.approx(0.02 / 10 ** 1.2, rel=0.01) and lr["high"] == pytest.approx(0.02 * 10 ** 1.2, rel=0.01)
    assert plan["fixed"]["optimizer"] == "sgd"  # the optimizer the range test ran with
    assert any("too-noisy" in n for n in plan["notes"])
    doc.update(suggested_lr=None, range=None, verdict="flat", message="the loss never moved")
    path.write_text(json.dumps(doc))
    res = run_cli("plan", "--budget", "5h", "--trial-time", "30m", *ONE_GPU, "--lr-from", str(path))
    assert res.code == 2 and "flat" in res.err and len(res.err.strip().splitlines()) == 1


def test_bad_lr_finder_file(tmp_path) -> None:
    for text in ("{not json", '{"range": [1e-4, 1e-2]}', '{"suggested_lr": -1}', '{"suggested_lr": 1e-3, "range": [1e-2, 1e-4]}'):
        path = tmp_path / "lr.json"
        path.write_text(text)
        res = run_cli("plan", "--budget", "50h", "--trial-time", "30m", *ONE_GPU, "--lr-from", str(path))
        assert res.code == 2 and str(path) in res.err and len(res.err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- hardware

def test_hardware_given_is_not_detected() -> None:
    hw = detect(gpus=2, gpu_memory_gb=24.0)
    assert hw.gpus == 2 and hw.gpu_memory_gb == 24.0 and hw.source == "given" and hw.device == "cuda"
    assert detect(gpus=0).device in ("cpu",)


def test_hardware_detection_survives_a_missing_torch(monkeypatch) -> None:
    import advisor.facts.hardware as hardware

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    hw = hardware.detect()
    assert hw.source == "none" and hw.gpus == 0 and hw.cpu_cores >= 1 and hw.notes
    plan = build_plan(PlanInput(budget_hours=5, trial_hours=0.5, hardware=hw))
    assert plan.budget.workers == 1


def test_hardware_command() -> None:
    res = run_cli("hardware", "--json", "--gpus", "2", "--gpu-memory", "40")
    assert res.code == 0
    data = json.loads(res.out)
    assert len(data["cuda"]) == 2 and data["cuda"][0]["memory_gb"] == 40 and data["device"] == "cuda"
    assert data["cpu_cores"] >= 1
    res = run_cli("hardware")
    assert res.code == 0 and "CPU cores" in res.out


# --------------------------------------------------------------------------- plan stays light

PROBE = """
import sys
sys.argv = ["advisor", *{args!r}]
from advisor.cli import app, main
from advisor.commands import plan as plan_cmd
names = {{c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}}
if "plan" not in names:
    app.command()(plan_cmd.plan)
try:
    main()
except SystemExit:
    pass
import json
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ("torch", "optuna", "matplotlib"))), file=sys.stderr)
"""


def _heavy(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True,
                          text=True, cwd=ROOT)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def test_plan_with_gpus_imports_neither_torch_nor_optuna(tmp_path) -> None:
    assert _heavy("plan", "--budget", "50h", "--trial-time", "30m", "--gpus", "1") == []
    assert _heavy("plan", "--budget", "300h", "--trial-time", "1h", "--gpu-memory", "24", "--json",
                  "--emit", "optuna", "--out", str(tmp_path / "search.py")) == []
    assert (tmp_path / "search.py").exists()


def test_cpu_torch_on_a_gpu_machine_falls_back_to_nvidia_smi(monkeypatch) -> None:
    import advisor.facts.hardware as hardware

    monkeypatch.setattr(hardware, "_detect_torch",
                        lambda: Hardware(cpu_cores=8, source="torch", torch_version="2.13.0+cpu"))
    monkeypatch.setattr(hardware, "_detect_nvidia_smi", lambda: Hardware(
        cuda=[hardware.Gpu(index=0, name="NVIDIA H100", memory_gb=85.0)], cpu_cores=8, source="nvidia-smi"))
    hw = hardware.detect()
    assert hw.gpus == 1 and hw.torch_version == "2.13.0+cpu" and "CUDA build" in hw.notes[0]
