"""One knowledge (issue 12, item 2): the context -- fine-tuning, model family, tiny data, the
optimizer -- is decided once, by diagnose's context rules (rules/diagnose/context.yaml), and the
plan obeys them (rules/tables/context.yaml names the rules that bound a search)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from conftest import run_cli

from advisor.advice.plan import PlanInput, build_plan, context_table, tables
from advisor.engine import evaluate, load_knowledge
from advisor.facts.context import context_facts
from advisor.facts.hardware import Gpu, Hardware

HW = Hardware(cuda=[Gpu(index=0, name="test GPU", memory_gb=24.0)], cpu_cores=8, source="given")
OPTIMIZERS = (None, "sgd", "adam", "adamw", "rmsprop")
FAMILIES = (None, "cnn", "transformer", "mlp", "rnn")
SIZES = (None, 500, 50_000)
BUDGETS = (0.5, 5.0, 50.0, 300.0, 2000.0)   # hours of 30-minute trials: every budget band


def _diagnose_allows(optimizer, family, finetune, size, budget) -> set[str] | None:
    """What diagnose's context rules leave to tune (None: no rule bounds the search)."""
    facts = context_facts(optimizer=optimizer, model_family=family, finetune=finetune,
                          dataset_size=size, budget_hours=budget)
    findings, _ = evaluate(load_knowledge("diagnose"), facts)
    bounding = [f for f in findings if f.code in context_table()["limits"]]
    if not bounding:
        return None
    allowed = set(bounding[0].tune)
    for f in bounding[1:]:
        allowed &= set(f.tune)
    return allowed


def _plan(optimizer, family, finetune, size, budget):
    return build_plan(PlanInput(budget_hours=budget, trial_hours=0.5, hardware=HW, optimizer=optimizer,
                                model_family=family, finetune=finetune, dataset_size=size))


def test_the_limits_are_diagnose_context_rules_with_a_tune_list() -> None:
    kb = load_knowledge("diagnose")
    for code in context_table()["limits"]:
        rule = kb.rule(code)
        assert rule is not None and rule.kind == "context" and rule.tune, code
        assert rule.file.endswith("diagnose/context.yaml")


def test_plan_never_tunes_what_the_context_rules_leave_alone() -> None:
    checked = bounded = 0
    for optimizer, family, finetune, size, budget in itertools.product(OPTIMIZERS, FAMILIES, (False, True),
                                                                       SIZES, BUDGETS):
        plan = _plan(optimizer, family, finetune, size, budget)
        allowed = _diagnose_allows(optimizer, family, finetune, size, budget)
        names = {p.name for p in plan.params}
        where = f"optimizer={optimizer} family={family} finetune={finetune} size={size} budget={budget}"
        checked += 1
        if allowed is not None:
            bounded += 1
            assert names <= allowed, f"{where}: searches {sorted(names - allowed)}"
        if finetune and family != "transformer":
            assert "warmup" not in names, where  # warmup only where the family wants it
        if finetune and family == "transformer" and size != 500 and budget >= 10:
            assert "warmup" in names, where  # ... and there it is searched with the learning rate
    assert checked == 750 and bounded > 300


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fine_tuning_range_is_ten_times_lower(optimizer) -> None:
    def lr(finetune: bool):
        return build_plan(PlanInput(budget_hours=50.0, trial_hours=0.5, hardware=HW, optimizer=optimizer,
                                    model_family="cnn", finetune=finetune, params=["learning_rate"])).params[0]

    scratch, tuned = lr(False), lr(True)
    assert tuned.high == pytest.approx(scratch.high * tables()["ranges"]["parameters"]["learning_rate"]["scale"]["finetune"])
    assert tuned.low == pytest.approx(scratch.low * 0.1)


def test_transformer_assumes_adamw_and_fine_tunes_the_lr_only() -> None:
    # the scenario of issue 12: it searched schedule and batch size with the LR up to 1e-2
    plan = _plan(None, "transformer", True, None, 40.0)
    assert plan.assumed == {"optimizer": "adamw"} and plan.fixed["optimizer"] == "adamw"
    assert [p.name for p in plan.params] == ["learning_rate", "warmup"]
    adamw_high = tables()["ranges"]["parameters"]["learning_rate"]["by_optimizer"]["adamw"][1]
    assert plan.param("learning_rate").high == pytest.approx(adamw_high * 0.1)
    assert "C002" in {r.code for r in plan.reasons}
    assert any(n.startswith("optimizer assumed: adamw") for n in plan.notes)
    # the optimizer the user names is never replaced
    sgd = _plan("sgd", "transformer", True, None, 40.0)
    assert sgd.assumed == {} and sgd.fixed["optimizer"] == "sgd"


def test_the_cli_plan_follows_what_diagnose_prints(tmp_path: Path) -> None:
    run = tmp_path / "run.csv"
    run.write_text("epoch,train_loss,val_loss\n"
                   + "".join(f"{e},{2 * 0.85 ** e:.4f},{2.1 * 0.87 ** e:.4f}\n" for e in range(20)))
    doc = json.loads(run_cli("diagnose", str(run), "--json", "--finetune", "--model-family", "transformer").out)
    c002 = next(n for n in doc["notes"] if n["code"] == "C002")
    res = run_cli("plan", "--budget", "40h", "--trial-time", "1h", "--gpus", "1", "--model-family", "transformer",
                  "--finetune", "--json")
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert {p["name"] for p in plan["params"]} <= set(c002["tune"])
    assert plan["params"][0]["name"] == "learning_rate" and plan["params"][0]["high"] <= 1e-3


def test_params_the_user_names_are_kept_with_a_note() -> None:
    plan = build_plan(PlanInput(budget_hours=50.0, trial_hours=0.5, hardware=HW, optimizer="adamw",
                                finetune=True, params=["learning_rate", "batch_size"]))
    assert {p.name for p in plan.params} == {"learning_rate", "batch_size"}
    assert any("C002" in n and "batch_size" in n for n in plan.notes)
