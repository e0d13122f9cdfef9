"""`advisor explain` and `advisor rules`: the knowledge base, browsable."""

from __future__ import annotations

import typer

from advisor.commands.common import console

EXPLAIN_EPILOG = "Examples:\n\n  advisor explain D301\n\n  advisor explain overfitting"
RULES_EPILOG = "Examples:\n\n  advisor rules\n\n  advisor rules --json"

def explain(code: str = typer.Argument(..., help="A rule code (D301) or name (overfitting).")) -> None:
    """Explain a rule: what it detects, why it matters, an example, the advice and the source."""
    from advisor.render.rules import explain as render_explain, find_rule

    family, rule = find_rule(code)
    render_explain(family, rule, console())


def list_rules(json_: bool = typer.Option(False, "--json", help="Print the rules as JSON.")) -> None:
    """List every rule of the knowledge base."""
    from advisor.render.rules import listing

    listing(console(), json_)
