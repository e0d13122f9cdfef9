"""Every rule fires on its 'fires' examples and stays quiet on its 'quiet' ones.

Examples are inline facts or fixture files (real training logs made by fixtures/make_fixtures.py);
a fixture example runs the whole pipeline: ingest, curve facts, context, rules.
"""

from __future__ import annotations

import pytest

from advisor.engine import evaluate, load_knowledge
from advisor.engine.loader import families

from conftest import FIXTURES


def _diagnose_fixture(path, context) -> set[str]:
    from advisor.advice.diagnosis import diagnose

    report, _ = diagnose([path], context)
    return {f.code for f in report.diagnoses + report.notes}


def _check_fixture(path, context) -> set[str]:
    from advisor.advice.check import check

    report, _, _ = check(path, context)
    return {f.code for f in report.findings}


def _audit_fixture(path, context) -> set[str]:
    from advisor.advice.audit import fired_codes

    return fired_codes(path, context)  # context: study, metric, direction, baseline_trial


# How a fixture example of each family runs through its whole pipeline.
FIXTURE_RUNNERS = {"diagnose": _diagnose_fixture, "check": _check_fixture, "audit": _audit_fixture}

KBS = {family: load_knowledge(family) for family in families()}
CASES = [(family, rule, outcome, i, example)
         for family, kb in KBS.items()
         for rule in kb.rules
         for outcome in ("fires", "quiet")
         for i, example in enumerate(getattr(rule.examples, outcome))]


def _fired(family: str, rule, example) -> set[str]:
    if example.facts is not None:
        findings, _ = evaluate(KBS[family], dict(example.facts), scope=rule.scope)
        return {f.code for f in findings}
    return FIXTURE_RUNNERS[family](FIXTURES / example.fixture, dict(example.context))


@pytest.mark.parametrize("family, rule, outcome, index, example", CASES,
                         ids=[f"{r.code}-{o}-{i}" for _, r, o, i, _ in CASES])
def test_rule_example(family: str, rule, outcome: str, index: int, example) -> None:
    code = rule.code
    fired = _fired(family, rule, example)
    if outcome == "fires":
        assert code in fired, f"{code} should fire on {example}; fired {sorted(fired)}"
    else:
        assert code not in fired, f"{code} should stay quiet on {example}; fired {sorted(fired)}"


def test_every_rule_has_an_example_both_ways() -> None:
    for kb in KBS.values():
        for rule in kb.rules:
            assert rule.examples.fires and rule.examples.quiet, rule.code


def test_fixture_examples_exist() -> None:
    missing = [(r.code, e.fixture) for kb in KBS.values() for r in kb.rules
               for e in r.examples.fires + r.examples.quiet
               if e.fixture and not (FIXTURES / e.fixture).exists()]
    assert not missing
