"""`advisor explain` and `advisor rules`: the knowledge base, browsable."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

from advisor.engine import Rule, load_knowledge
from advisor.engine.loader import families
from advisor.errors import InputError


def find_rule(key: str) -> tuple[str, Rule]:
    for family in families():
        rule = load_knowledge(family).rule(key)
        if rule is not None:
            return family, rule
    import difflib

    names = [r.name for f in families() for r in load_knowledge(f).rules] + \
        [r.code for f in families() for r in load_knowledge(f).rules]
    close = difflib.get_close_matches(key, names, n=1) if len(key) <= 100 else []
    hint = f"; did you mean '{close[0]}'?" if close else "; `advisor rules` lists them"
    shown = key if len(key) <= 60 else f"{key[:60]}... ({len(key):,} characters)"  # F39: never echo 100 kB
    raise InputError(f"no rule {shown!r}{hint}")


def explain(family: str, rule: Rule, console: Console) -> None:
    label = f" [{rule.label}]" if rule.label else ""
    console.print(f"[bold]{rule.code} {rule.name}[/]{escape(label)}  ({rule.severity}, {family}, {rule.file})")
    sections = (("What it does", rule.explain.what), ("Why it matters", rule.explain.why),
                ("Example", rule.explain.example), ("Condition", rule.when),
                ("Advice", rule.advice), ("Tunes", ", ".join(rule.tune) or "nothing: not a tuning problem"),
                ("Source", rule.source))
    for title, text in sections:
        console.print(f"\n[bold underline]{title}[/]")
        console.print(escape(" ".join(text.split())))


def listing(console: Console, as_json: bool) -> None:
    rows = [(family, r) for family in families() for r in load_knowledge(family).rules]
    rows.sort(key=lambda fr: fr[1].code)
    if as_json:
        sys.stdout.write(json.dumps([{"family": f, "code": r.code, "name": r.name, "kind": r.kind,
                                      "label": r.label, "severity": r.severity, "tune": r.tune,
                                      "what": r.explain.what, "source": r.source} for f, r in rows],
                                    indent=2) + "\n")
        return
    family = None
    for fam, r in sorted(rows, key=lambda fr: (fr[0], fr[1].code)):
        if fam != family:
            family = fam
            console.print(f"\n[bold]{fam}[/]")
        label = f" [{r.label}]" if r.label else ""
        console.print(f"  [bold]{r.code}[/] {r.name}{escape(label)} [dim]{r.kind}, {r.severity}[/]")
        console.print(f"       {escape(r.explain.what)}", soft_wrap=True)
