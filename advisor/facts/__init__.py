"""Facts: named, typed measurements of a run and of its context, the engine's only input."""

from advisor.facts.context import context_facts
from advisor.facts.curves import run_facts

__all__ = ["context_facts", "run_facts"]
