"""Forward chaining over facts: each rule in dependency order, conclusions feed later rules."""

from __future__ import annotations

import ast
import math
from typing import Any

from simpleeval import SimpleEval

from advisor.engine.findings import Evidence, Finding
from advisor.engine.loader import FUNCTIONS, KnowledgeBase
from advisor.engine.schema import Rule


class _Unknown(Exception):
    """A fact the condition needs is unknown for this run: the rule cannot fire."""


def _fmt_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value


class _Facts(dict):
    """Facts for message templates: floats print compactly unless the template says otherwise."""

    def __missing__(self, key: str) -> Any:
        return "?"


def evaluate(kb: KnowledgeBase, given: dict[str, Any]) -> tuple[list[Finding], dict[str, Any]]:
    """Run every rule once, in order; return the findings and the facts with conclusions added."""
    facts = kb.catalogue.initial_facts(given)

    def lookup(node: ast.Name) -> Any:
        value = facts[node.id]
        if value is None:
            raise _Unknown(node.id)
        return value

    evaluator = SimpleEval(functions=FUNCTIONS, names=lookup)
    findings: list[Finding] = []
    for rule in kb.rules:
        try:
            fired = bool(evaluator.eval(rule.when))
        except (_Unknown, TypeError, ZeroDivisionError):
            fired = False
        if not fired:
            continue
        facts.update(rule.concludes)
        findings.append(_finding(kb, rule, facts))
    return findings, facts


def _finding(kb: KnowledgeBase, rule: Rule, facts: dict[str, Any]) -> Finding:
    specs = kb.catalogue.facts
    # Evidence: the facts the message quotes, then the measured facts the condition tested.
    quoted = list(dict.fromkeys(
        kb.quoted[rule.code] + rule.evidence
        + [n for n in sorted(kb.inputs[rule.code]) if specs[n].source != "derived" and specs[n].type != "bool"]))
    evidence = [Evidence(fact=n, value=_fmt_value(facts[n]), unit=specs[n].unit,
                         definition=specs[n].definition)
                for n in quoted if facts.get(n) is not None]
    template_facts = _Facts({k: v for k, v in facts.items() if v is not None})
    return Finding(
        code=rule.code, name=rule.name, kind=rule.kind, label=rule.label, severity=rule.severity,
        tier=rule.tier, message=rule.message.format_map(template_facts),
        advice=rule.advice.format_map(template_facts), tune=list(rule.tune),
        evidence=evidence, source=rule.source,
    )
