"""Context facts: what the user tells advisor about the run (optimizer, model, data, budget)."""

from __future__ import annotations

import math
from typing import Any

from advisor.errors import InputError

# The hyperparameters diagnose has a current_* fact for (any of their spellings is accepted).
CURRENT = ("learning_rate", "weight_decay", "batch_size", "warmup", "dropout", "momentum")


def context_facts(optimizer: str | None = None, model_family: str | None = None,
                  finetune: bool | None = None, dataset_size: int | None = None,
                  budget_hours: float | None = None, num_classes: int | None = None,
                  current: dict[str, str] | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "optimizer": optimizer.lower() if optimizer else None,
        "model_family": model_family.lower() if model_family else None,
        "finetune": finetune,
        "dataset_size": dataset_size,
        "budget_hours": budget_hours,
        "num_classes": num_classes,
        "chance_loss": math.log(num_classes) if num_classes and num_classes > 1 else None,
    }
    for key, text in (current or {}).items():
        from advisor.facts.params import param_aliases  # reads the tables: only when given

        name = param_aliases().get(key.lower().replace("-", "_"))
        if name not in CURRENT:
            raise InputError(f"--current {key}={text}: unknown hyperparameter '{key}' "
                             f"(known: {', '.join(CURRENT)}, or lr, wd, bs ...)")
        try:
            facts[f"current_{name}"] = float(text)
        except ValueError:
            raise InputError(f"--current {key}={text}: '{text}' is not a number") from None
    return facts
