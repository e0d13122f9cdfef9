"""Hyperparameter names: every spelling advisor accepts, from the tables in rules/tables/.

One alias map for all commands (--current, --params, space and study parameters), read from
importance.yaml and ranges.yaml, so a new alias is one line of YAML.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from advisor.engine.loader import read_yaml, rules_dir


@lru_cache(maxsize=None)
def tables() -> dict[str, Any]:
    base = rules_dir() / "tables"
    return {"importance": read_yaml(base / "importance.yaml")["parameters"],
            "ranges": read_yaml(base / "ranges.yaml"), "scales": read_yaml(base / "scales.yaml"),
            "budget": read_yaml(base / "budget.yaml")}


@lru_cache(maxsize=None)
def param_aliases() -> dict[str, str]:
    """Every accepted spelling of a parameter (lower case, '_' for '-') -> its canonical name."""
    t = tables()
    names: dict[str, str] = {}
    for canon, spec in t["importance"].items():
        names[canon] = canon
        for alias in spec.get("aliases", []):
            names[alias.replace("-", "_")] = canon
    for canon, aliases in (t["ranges"].get("aliases") or {}).items():
        for alias in aliases:
            names.setdefault(alias.replace("-", "_"), canon)
    return names


def name_parts(name: str) -> list[str]:
    return [p for p in re.split(r"[._\-/ ]+", name.lower()) if p]


def canonical(name: str) -> str | None:
    """The hyperparameter a name in a space or a study stands for ('optimizer.lr' ->
    learning_rate), or None: exact spellings first, then the fragments names are made of."""
    aliases = param_aliases()
    parts = name_parts(name)
    for candidate in ("_".join(parts), parts[-1] if parts else "", "_".join(parts[-2:])):
        if candidate in aliases:
            return aliases[candidate]
    # "learning" alone is not the LR: RL's learning_starts counts steps ("learning_rate" is an alias)
    if (any(p in ("lr", "lr0", "eta") for p in parts) or ("learning", "rate") in zip(parts, parts[1:])) and not any(
            p in ("schedule", "scheduler", "decay", "lrf", "gamma", "step", "factor") for p in parts):
        return "learning_rate"
    for fragment, canon in (("dropout", "dropout"), ("drop", "dropout"), ("warmup", "warmup"),
                            ("batch", "batch_size")):
        if fragment in parts:
            return canon
    return None
