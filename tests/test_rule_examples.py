"""Every rule fires on its 'fires' examples and stays quiet on its 'quiet' ones.

Examples are inline facts or fixture files (real training logs made by fixtures/make_fixtures.py);
a fixture example runs the whole pipeline: ingest, curve facts, context, rules.
"""

from __future__ import annotations

import pytest

from advisor.advice.diagnosis import diagnose
from advisor.engine import evaluate, load_knowledge

from conftest import FIXTURES

KB = load_knowledge("diagnose")
CASES = [(rule.code, outcome, i, example)
         for rule in KB.rules
         for outcome in ("fires", "quiet")
         for i, example in enumerate(getattr(rule.examples, outcome))]


def _fired(example) -> set[str]:
    if example.facts is not None:
        findings, _ = evaluate(KB, dict(example.facts))
        return {f.code for f in findings}
    report, _ = diagnose([FIXTURES / example.fixture], dict(example.context))
    return {f.code for f in report.diagnoses + report.notes}


@pytest.mark.parametrize("code, outcome, index, example", CASES,
                         ids=[f"{c}-{o}-{i}" for c, o, i, _ in CASES])
def test_rule_example(code: str, outcome: str, index: int, example) -> None:
    fired = _fired(example)
    if outcome == "fires":
        assert code in fired, f"{code} should fire on {example}; fired {sorted(fired)}"
    else:
        assert code not in fired, f"{code} should stay quiet on {example}; fired {sorted(fired)}"


def test_every_rule_has_a_fixture_or_inline_example_both_ways() -> None:
    for rule in KB.rules:
        assert rule.examples.fires and rule.examples.quiet, rule.code


def test_fixture_examples_exist() -> None:
    missing = [(r.code, e.fixture) for r in KB.rules for e in r.examples.fires + r.examples.quiet
               if e.fixture and not (FIXTURES / e.fixture).exists()]
    assert not missing
