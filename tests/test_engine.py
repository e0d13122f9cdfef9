"""The rule engine: load-time checks of rule files, and forward chaining through derived facts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from advisor.engine import evaluate, load_knowledge
from advisor.engine.loader import rules_dir
from advisor.errors import RuleError


def _knowledge_with(tmp_path: Path, rules: list[dict], facts_extra: dict | None = None) -> Path:
    """A copy of the real knowledge base with one extra rule file."""
    root = tmp_path / "rules"
    shutil.copytree(rules_dir(), root)
    if facts_extra:
        facts = yaml.safe_load((root / "diagnose" / "facts.yaml").read_text())
        facts["facts"].update(facts_extra)
        (root / "diagnose" / "facts.yaml").write_text(yaml.safe_dump(facts))
    (root / "diagnose" / "zz_extra.yaml").write_text(yaml.safe_dump({"rules": rules}))
    return root


def _rule(**overrides) -> dict:
    rule = {
        "code": "X001", "name": "extra-rule", "kind": "note", "severity": "info",
        "when": "val_rise > 0.5", "message": "rose {val_rise:.0%}", "advice": "do something",
        "explain": {"what": "w", "why": "y", "example": "e"}, "source": "test",
        "examples": {"fires": [{"facts": {"val_rise": 1.0}}], "quiet": [{"facts": {"val_rise": 0.0}}]},
    }
    rule.update(overrides)
    return rule


def _load(root: Path):
    load_knowledge.cache_clear()
    try:
        return load_knowledge("diagnose", str(root))
    finally:
        load_knowledge.cache_clear()


def test_real_knowledge_loads_with_unique_codes_and_names() -> None:
    kb = load_knowledge("diagnose")
    codes = [r.code for r in kb.rules]
    names = [r.name for r in kb.rules]
    assert len(codes) == len(set(codes)) and len(names) == len(set(names))
    assert set(kb.labels) == {"diverged", "unstable", "overfitting", "underfitting", "slow_convergence",
                              "plateau", "not_learning", "healthy", "insufficient_data"}
    # every diagnosis label has at least one rule
    assert {r.label for r in kb.rules if r.kind == "diagnosis"} == set(kb.labels)


def test_a_valid_extra_rule_loads(tmp_path: Path) -> None:
    kb = _load(_knowledge_with(tmp_path, [_rule()]))
    assert kb.rule("X001").name == "extra-rule"


@pytest.mark.parametrize("overrides, words", [
    ({"when": "val_rsie > 0.5"}, ["zz_extra.yaml", "X001", "unknown fact 'val_rsie'", "did you mean 'val_rise'"]),
    ({"when": "lr_schedule == 'cosine'"}, ["X001", "never 'cosine'", "constant"]),
    ({"when": "has_warmup > 0.5"}, ["X001", "orders a bool"]),
    ({"when": "val_rise"}, ["X001", "not a condition"]),
    ({"when": "__import__('os')"}, ["X001", "only abs, min, max"]),
    ({"when": "val_rise >"}, ["X001", "not a valid expression"]),
    ({"message": "rose {val_rize}"}, ["X001", "message quotes unknown fact 'val_rize'"]),
    ({"concludes": {"n_epochs": 3}}, ["X001", "not a derived fact"]),
    ({"kind": "diagnosis", "label": "sad"}, ["X001", "label 'sad'"]),
    ({"tune": ["learning_rat"]}, ["X001", "did you mean 'learning_rate'"]),
    ({"code": "D101"}, ["D101", "already used"]),
    ({"colour": "red"}, ["X001", "colour", "Extra inputs"]),
    ({"name": "Not Kebab"}, ["X001", "name"]),
    ({"examples": {"fires": [{"facts": {"val_rise": 1.0}}], "quiet": []}}, ["X001", "quiet"]),
])
def test_bad_rules_fail_at_load_naming_file_rule_and_field(tmp_path: Path, overrides: dict, words: list[str]) -> None:
    with pytest.raises(RuleError) as err:
        _load(_knowledge_with(tmp_path, [_rule(**overrides)]))
    for word in words:
        assert word in str(err.value), str(err.value)


def test_rules_in_a_cycle_are_refused(tmp_path: Path) -> None:
    extra_facts = {"flag_a": {"type": "bool", "source": "derived", "definition": "a"},
                   "flag_b": {"type": "bool", "source": "derived", "definition": "b"}}
    rules = [_rule(code="X001", name="first", when="not flag_b", concludes={"flag_a": True}),
             _rule(code="X002", name="second", when="not flag_a", concludes={"flag_b": True})]
    with pytest.raises(RuleError, match="cycle"):
        _load(_knowledge_with(tmp_path, rules, extra_facts))


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    root = _knowledge_with(tmp_path, [_rule()])
    (root / "diagnose" / "zz_extra.yaml").write_text("rules:\n  - code: X001\n    name: [unclosed\n")
    with pytest.raises(RuleError, match=r"zz_extra.yaml:\d+: not valid YAML"):
        _load(root)


def test_forward_chaining_runs_a_rule_after_the_rules_that_conclude_its_inputs() -> None:
    kb = load_knowledge("diagnose")
    order = [r.code for r in kb.rules]
    # healthy reads `problem`, concluded by every problem rule: it must come after all of them
    for rule in kb.rules:
        if "problem" in rule.concludes:
            assert order.index(rule.code) < order.index("D801")
    # a diverged run is not also called healthy, overfitting or slow
    facts = {"nonfinite": True, "nonfinite_epoch": 3, "has_validation": True, "n_epochs": 20,
             "has_val_loss": True, "has_train_loss": True, "val_rise": 5.0, "best_val_fraction": 0.1,
             "gap_end": 0.9, "train_tail_improvement": 0.5, "n_finite_epochs": 3}
    findings, concluded = evaluate(kb, facts)
    assert [f.code for f in findings if f.kind == "diagnosis"] == ["D101"]
    assert concluded["diverged"] is True and concluded["problem"] is True


def test_unknown_facts_keep_a_rule_quiet_instead_of_guessing() -> None:
    kb = load_knowledge("diagnose")
    findings, _ = evaluate(kb, {"has_validation": True, "n_epochs": 30})
    codes = [f.code for f in findings]
    assert "D301" not in codes and "D501" not in codes  # no curve facts: no claims about curves
    assert "D801" in codes


def test_message_quotes_the_evidence() -> None:
    kb = load_knowledge("diagnose")
    facts = {"has_validation": True, "has_val_loss": True, "has_train_loss": True, "n_epochs": 60,
             "n_finite_epochs": 60, "val_rise": 0.42, "best_val_fraction": 0.2, "best_val_epoch": 12,
             "val_loss_best": 0.31, "gap_end": 0.8, "gap_trend": 0.1, "nonfinite": False,
             "train_total_improvement": 0.99, "train_rise": 0.0}
    findings, _ = evaluate(kb, facts)
    over = next(f for f in findings if f.code == "D301")
    assert "epoch 12" in over.message and "42%" in over.message
    assert {e.fact: e.value for e in over.evidence}["val_rise"] == 0.42
    assert "epoch 12" in over.advice


def test_codes_and_names_are_unique_across_families() -> None:
    from advisor.engine.loader import families

    seen: dict[str, str] = {}
    for family in families():
        for rule in load_knowledge(family).rules:
            for key in (rule.code, rule.name):
                assert key not in seen, f"{key} in {family} and {seen[key]}"
                seen[key] = family


def test_knowledge_cache_is_rebuilt_when_a_rule_file_changes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _knowledge_with(tmp_path, [_rule()])
    first = _load(root)
    assert list((tmp_path / "cache" / "advisor").glob("kb-diagnose-*.pickle"))
    assert _load(root).rule("X001").message == first.rule("X001").message  # from the cache
    import os
    import time

    extra = root / "diagnose" / "zz_extra.yaml"
    extra.write_text(extra.read_text().replace("rose {val_rise:.0%}", "went up {val_rise:.0%}"))
    later = time.time() + 5
    os.utime(extra, (later, later))
    assert _load(root).rule("X001").message == "went up {val_rise:.0%}"
    assert len(list((tmp_path / "cache" / "advisor").glob("kb-diagnose-*.pickle"))) == 1


def test_a_message_part_in_double_brackets_needs_all_its_facts() -> None:
    from advisor.engine.engine import render_message

    template = "Unstable:[[ {val_spikes} validation spikes,]][[ the {swings_of} reversed {metric_swings} times,]] over {n} epochs."
    assert render_message(template, {"val_spikes": 3, "swings_of": "reward", "metric_swings": 9, "n": 50}) == \
        "Unstable: 3 validation spikes, the reward reversed 9 times, over 50 epochs."
    assert render_message(template, {"val_spikes": None, "swings_of": "reward", "metric_swings": 9, "n": 50}) == \
        "Unstable: the reward reversed 9 times, over 50 epochs."
    assert render_message(template, {"val_spikes": 0, "swings_of": None, "metric_swings": 9, "n": 5}) == \
        "Unstable: 0 validation spikes, over 5 epochs."
