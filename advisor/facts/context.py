"""Context facts: what the user tells advisor about the run (optimizer, model, data, budget)."""

from __future__ import annotations

import math
from typing import Any

from advisor.errors import InputError

# The canonical names of the hyperparameters a user may give with --current, and their aliases.
ALIASES = {"lr": "learning_rate", "learning_rate": "learning_rate", "wd": "weight_decay",
           "weight_decay": "weight_decay", "bs": "batch_size", "batch_size": "batch_size",
           "warmup": "warmup", "warmup_steps": "warmup", "dropout": "dropout",
           "momentum": "momentum"}


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
        name = ALIASES.get(key.lower())
        if name is None:
            raise InputError(f"--current {key}={text}: unknown hyperparameter '{key}' "
                             f"(known: {', '.join(sorted(set(ALIASES)))})")
        try:
            facts[f"current_{name}"] = float(text)
        except ValueError:
            raise InputError(f"--current {key}={text}: '{text}' is not a number") from None
    return facts
