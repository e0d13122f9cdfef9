"""The rule engine: knowledge loaded from rules/, evaluated over facts, no I/O beyond loading."""

from advisor.engine.catalogue import Catalogue, FactSpec
from advisor.engine.engine import evaluate
from advisor.engine.findings import Finding, SEVERITIES, severity_rank
from advisor.engine.loader import KnowledgeBase, load_knowledge, rules_dir
from advisor.engine.schema import Rule

__all__ = [
    "Catalogue", "FactSpec", "Finding", "KnowledgeBase", "Rule", "SEVERITIES",
    "evaluate", "load_knowledge", "rules_dir", "severity_rank",
]
