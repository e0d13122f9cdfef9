"""Forward chaining over facts: each rule in dependency order, conclusions feed later rules."""

from __future__ import annotations

import ast
import math
import re
import string
from typing import Any

from simpleeval import EvalWithCompoundTypes

from advisor.engine.findings import Evidence, Finding
from advisor.engine.loader import FUNCTIONS, KnowledgeBase
from advisor.engine.schema import Rule


class _UnknownValue:
    """An unknown fact, read closed-world: it is false, and so is every comparison with it
    (so `x > 1 or y` still looks at y); arithmetic on it stays unknown. A rule that negates a
    fact that can be unknown guards it with the fact that says whether it is known
    (`lr_logged and not has_warmup`)."""

    def _false(self, other: Any) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _false

    def _same(self, *other: Any) -> "_UnknownValue":
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __neg__ = __abs__ = _same
    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        return False


UNKNOWN = _UnknownValue()


def _fmt_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value


class _Template(string.Formatter):
    """Message templates over facts: an unknown fact prints as 'n/a', whatever its format spec."""

    def get_value(self, key, args, kwargs):
        return kwargs.get(key)

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None or (isinstance(value, str) and format_spec):
            return "n/a" if value is None else str(value)
        try:
            return format(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


_TEMPLATE = _Template()
_OPTIONAL = re.compile(r"\[\[(.*?)\]\]", re.S)


def render_message(template: str, facts: dict[str, Any]) -> str:
    """A message template filled from the facts. A part written [[ ... ]] is kept only when
    every fact it names is known, so one message can speak of whichever curves the run has."""
    def part(match: re.Match) -> str:
        names = [field for _, field, _, _ in _TEMPLATE.parse(match.group(1)) if field]
        known = all(facts.get(name.split(".")[0].split("[")[0]) is not None for name in names)
        return match.group(1) if known else ""

    return _TEMPLATE.vformat(_OPTIONAL.sub(part, template), (), facts)


def evaluate(kb: KnowledgeBase, given: dict[str, Any], scope: str = "run",
             param: str | None = None) -> tuple[list[Finding], dict[str, Any]]:
    """Run every rule of the scope once, in order; return the findings and the facts with the
    rules' conclusions added. For scope "param", `given` holds one parameter's facts too."""
    facts = kb.catalogue.initial_facts(given)

    def lookup(node: ast.Name) -> Any:
        value = facts[node.id]
        return UNKNOWN if value is None else value

    evaluator = EvalWithCompoundTypes(functions=FUNCTIONS, names=lookup)  # lists for `in`
    findings: list[Finding] = []
    for rule in kb.rules:
        if rule.scope != scope:
            continue
        try:
            result = evaluator.eval(rule.when)
            fired = result is not UNKNOWN and bool(result)
        except (TypeError, ZeroDivisionError):
            fired = False
        if not fired:
            continue
        facts.update(rule.concludes)
        finding = _finding(kb, rule, facts)
        finding.param = param
        findings.append(finding)
    return findings, facts


def _finding(kb: KnowledgeBase, rule: Rule, facts: dict[str, Any]) -> Finding:
    specs = kb.catalogue.facts
    # Evidence: the facts the message quotes, then the measured facts the condition tested.
    quoted = list(dict.fromkeys(
        kb.quoted[rule.code] + rule.evidence
        + [n for n in sorted(kb.inputs[rule.code])
           if specs[n].source not in ("derived", "threshold") and specs[n].type != "bool"]))
    evidence = [Evidence(fact=n, value=_fmt_value(facts[n]), unit=specs[n].unit,
                         definition=specs[n].definition)
                for n in quoted if facts.get(n) is not None]
    return Finding(
        code=rule.code, name=rule.name, kind=rule.kind, label=rule.label, severity=rule.severity,
        tier=rule.tier, message=render_message(rule.message, facts),
        advice=render_message(rule.advice, facts), tune=list(rule.tune),
        evidence=evidence, source=rule.source,
    )
