"""Facts of a search space: the space as a whole, and each parameter on its own scale."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from advisor.facts.params import canonical, name_parts, tables
from advisor.ingest.space import SpaceFile, grid_size


# --- what the whole file says about the training (rules/tables/infer.yaml) -------------------

@lru_cache(maxsize=None)
def _infer_table() -> dict[str, Any]:
    from advisor.engine.loader import read_yaml, rules_dir

    return read_yaml(rules_dir() / "tables" / "infer.yaml")


def _words(text: Any) -> list[str]:
    return re.findall(r"[a-z0-9]+", str(text).lower())


def _names_in(text: Any, names: list[str]) -> bool:
    """One of `names` is a word of `text`, with a version or size after it ('gpt2', 'resnet18'),
    or, for names of four letters or more, at the end of a word ('distilbert')."""
    for word in _words(text):
        for name in names:
            if word == name or (word.startswith(name) and word[len(name):].isdigit()) or (
                    len(name) >= 4 and word.endswith(name)):
                return True
    return False


def _joined(name: str) -> str:
    return "_".join(name_parts(name))


def _named(name: str, names: list[str]) -> bool:
    """The parameter's name (or its part after the last dot) is one of `names`."""
    return _joined(name) in names or _joined(name.rsplit(".", 1)[-1]) in names


def command_flags(command: list[str]) -> dict[str, str]:
    """Literal `--key value` and `--key=value` flags of a W&B command; a flag whose value is a
    macro (${lr}) is W&B's to fill and skipped; a flag with no value is 'true'."""
    flags: dict[str, str] = {}
    for i, item in enumerate(command):
        if not item.startswith("--") or item == "--" or "${" in item:
            continue
        key, eq, value = item[2:].partition("=")
        if not eq:
            nxt = command[i + 1] if i + 1 < len(command) else None
            if nxt is not None and "${" in nxt:
                continue
            value = nxt if nxt is not None and not nxt.startswith("-") else "true"
        flags[key.replace("-", "_")] = value
    return flags


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    try:
        return float(str(v))
    except ValueError:
        return None


def _optimizer_kind(name: Any, t: dict[str, Any]) -> str | None:
    word = "_".join(_words(name))
    for kind, names in t["optimizers"].items():
        if word in names:
            return kind
    return "other" if word in t["adaptive_other"] else None


def infer(sf: SpaceFile) -> dict[str, dict[str, Any]]:
    """What the file says about the training when the user does not: {what: {value, from}}
    for model_family, optimizer, epochs, steps, warmup, learning_rate (a parameter's name)."""
    t = _infer_table()
    space = sf.space
    flags = command_flags(sf.command) if sf.format == "wandb" else {}
    fixed = {**flags, **{k: v for k, v in space.fixed.items()}}  # the file's parameters win
    out: dict[str, dict[str, Any]] = {}

    # model family: a transformer-only parameter, then names in the program, command, values
    families = t["model_family"]
    heads = [n for n in space.params if _named(n, t["transformer_parameters"])]
    if heads:
        out["model_family"] = {"value": "transformer", "from": f"the parameter '{heads[0]}'"}
    else:
        # what names the model first (its parameter, fixed or searched), then the program, then
        # any other fixed text (an output folder named after the model ...)
        def where(k: str, v: Any) -> str:
            return f"{'the command flag' if k in flags and k not in space.fixed else 'the fixed value'} {k}={v}"

        texts = [(k, v) for k, v in fixed.items() if isinstance(v, str)]
        sources = [(where(k, v), v) for k, v in texts if _named(k, t["model_parameters"])]
        for name, p in space.params.items():
            if _named(name, t["model_parameters"]) and p.choices:
                found = {fam for c in p.choices for fam, names in families.items() if _names_in(c, names)}
                if len(found) == 1:  # every choice that names a family names the same one
                    sources.append((f"the choices of '{name}'", " ".join(map(str, p.choices))))
        sources += [(f"the program '{sf.program}'", sf.program)] if sf.program else []
        generic = [(where(k, v), v) for k, v in texts if not _named(k, t["model_parameters"])]
        for source, text in sources + generic:
            # 'mlp' names a head or a block as often as a model: only where the model is named
            found = [fam for fam, names in families.items() if _names_in(text, names)
                     and (fam != "mlp" or (source, text) not in generic)]
            if len(found) == 1:
                out["model_family"] = {"value": found[0], "from": source}
                break

    # optimizer: a fixed value (a one-item list too) or a command flag
    for key, value in fixed.items():
        if _named(key, t["optimizer_parameters"]) and _optimizer_kind(value, t):
            out["optimizer"] = {"value": _optimizer_kind(value, t), "from": f"{key}={value}",
                                "name": str(value).lower()}
            break

    # length of each run: fixed, or the longest searched
    for unit, names in t["length_parameters"].items():
        for key, value in fixed.items():
            if _named(key, names) and _number(value) is not None and _number(value) > 0:
                out[unit] = {"value": int(_number(value)), "from": f"{key}={value}"}
                break
        else:
            for name, p in space.params.items():
                if _named(name, names):
                    top = p.high if p.choices is None else max(
                        (_number(c) for c in p.choices if _number(c) is not None), default=None)
                    if top is not None and top > 0:
                        out[unit] = {"value": int(top), "from": f"the longest '{name}' searched"}
                        break

    # warmup given as a flag or a fixed schedule that names it
    for key, value in fixed.items():
        if canonical(key) == "warmup" and _number(value) is not None:
            if _number(value) > 0:
                out["warmup"] = {"value": True, "from": f"{key}={value}"}
            break
        if isinstance(value, str) and _names_in(value, t["warmup_words"]):
            out["warmup"] = {"value": True, "from": f"{key}={value}"}
            break

    # the learning rate under another name, when none is named as one
    if not any(canonical(n) == "learning_rate" for n in space.params) and not any(
            canonical(k) == "learning_rate" for k in space.fixed):
        for name, p in space.params.items():
            if _named(name, t["learning_rate_when_alone"]) and p.log:
                out["learning_rate"] = {"value": name, "from": f"'{name}', searched on a log scale "
                                                               "with no parameter named as the LR"}
                break
    return out


def _architecture(name: str, p: Any) -> bool:
    """Width or depth: by its usual names, or a numeric parameter named with their words."""
    canon = canonical(name)
    if canon in ("width", "depth"):
        return True
    if canon is not None:
        return False
    numeric = p.type == "int" or (p.choices is not None and p.choices and all(
        isinstance(c, int) and not isinstance(c, bool) for c in p.choices))
    words = _infer_table()["architecture_words"]
    return numeric and any(w in words["width"] + words["depth"] for w in name_parts(name.rsplit(".", 1)[-1]))


def _is_exponential(name: str, canon: str | None) -> bool:
    scales = tables()["scales"]
    if canon is not None:
        return canon in scales["exponential"]
    return any(p in scales["exponential_fragments"] for p in name_parts(name))


def _decades(low: float | None, high: float | None) -> float | None:
    if low is None or high is None or low <= 0 or high <= 0:
        return None
    return math.log10(high / low)


def _linear_choices(values: list[float], a: dict[str, float]) -> bool:
    """Evenly spaced on a linear scale (gaps within a factor of each other), across a decade or
    more, or from 0 in several steps (0, 0.025, 0.05, ...: a linear grid where a log one belongs)."""
    values = sorted(values)
    if len(values) < 3:
        return False
    gaps = [b - a for a, b in zip(values, values[1:])]
    if min(gaps) <= 0 or max(gaps) / min(gaps) > a["linear_gap_ratio"]:
        return False
    positive = [v for v in values if v > 0]
    spans_decade = len(positive) >= 2 and positive[-1] / positive[0] >= 10
    return spans_decade or (values[0] == 0 and len(values) >= a["linear_from_zero_values"])


def _lr_range(optimizer: str | None, family: str | None = None) -> tuple[float, float]:
    spec = tables()["ranges"]["parameters"]["learning_rate"]
    low, high = spec["by_optimizer"].get(optimizer or "unknown", spec["by_optimizer"]["unknown"])
    factor = spec["scale"].get(family or "", 1.0)  # a transformer trains at smaller LRs
    return low * factor, high * factor


_SCALAR = (str, int, float, bool, type(None))
# W&B distributions whose min/max are the values themselves (a reversed pair is swapped by --fix)
_WANDB_VALUE_BOUNDS = {"int_uniform", "uniform", "q_uniform", "log_uniform_values",
                       "q_log_uniform_values", "inv_log_uniform_values"}


def broken_param_facts(sf: SpaceFile, name: str) -> dict[str, Any]:
    """Facts of a parameter that could not be read as one (lint mode: a W&B distribution that
    W&B does not have): its name, line and what it says."""
    raw = sf.broken[name]
    return {"p_name": name, "p_canonical": canonical(name) or "other", "p_line": sf.lines.get(name),
            "p_distribution": raw.get("distribution"), "p_distribution_known": False}


def _bad_choice(p: Any) -> str | None:
    """The first choice a search cannot use: a list or mapping (Optuna takes numbers, strings,
    booleans and null), or for a float / int parameter anything but a number."""
    numeric = p.type in ("float", "int")
    for c in p.choices or []:
        if not isinstance(c, _SCALAR) or (numeric and (isinstance(c, bool) or not isinstance(c, (int, float)))):
            return repr(c)[:60]
    return None


def _validity(sf: SpaceFile, name: str) -> dict[str, Any]:
    """What keeps the parameter from running as written: a reversed or non-finite range (the
    first one, as written), choices that are not values, a step that does not move."""
    p = sf.space.params[name]
    facts: dict[str, Any] = {"p_reversed": False, "p_nonfinite": False}
    for key, lo, hi in p.bounds():
        if not (math.isfinite(lo) and math.isfinite(hi)):
            facts.update(p_nonfinite=True, p_bad_low=lo, p_bad_high=hi, p_bad_range=key)
            break
        if p.type != "categorical" and lo > hi:
            facts.update(p_reversed=True, p_bad_low=lo, p_bad_high=hi, p_bad_range=key)
            break
    if not facts["p_nonfinite"] and p.type in ("float", "int"):
        odd = [c for c in p.choices or [] if isinstance(c, float) and not math.isfinite(c)]
        if odd:
            facts.update(p_nonfinite=True, p_bad_low=min(odd), p_bad_high=max(odd))
    raw = sf.raw_params.get(name) or {}
    if facts["p_reversed"] and p.by is None and p.choices is None:
        keys = ("low", "high") if sf.format == "advisor" else ("min", "max")
        if sf.format == "advisor" or sf.wandb_distribution.get(name) in _WANDB_VALUE_BOUNDS:
            facts["p_swap_low"], facts["p_swap_high"] = raw.get(keys[1]), raw.get(keys[0])
    bad = _bad_choice(p)
    facts["p_choices_unusable"] = bad is not None
    facts["p_bad_choice"] = bad
    facts["p_has_choices"] = bool(p.choices)
    facts["p_by"] = p.by
    facts["p_by_searched"] = p.by is not None and p.by in sf.space.params
    facts["p_step"] = p.step
    facts["p_distribution"] = sf.wandb_distribution.get(name)
    facts["p_distribution_known"] = True
    return facts


def param_facts(sf: SpaceFile, name: str, optimizer: str | None, a: dict[str, float],
                family: str | None = None) -> dict[str, Any]:
    p = sf.space.params[name]
    canon = canonical(name)
    ranges = tables()["ranges"]["parameters"]
    validity = _validity(sf, name)
    numeric = [c for c in (p.choices or []) if isinstance(c, (int, float)) and not isinstance(c, bool)
               and math.isfinite(c)]
    bounds = p.bounds()
    if validity["p_reversed"] or validity["p_nonfinite"]:
        bounds, numeric = [], []  # a range that cannot run has no scale to judge (rules K003, K004)
    low = min((b[1] for b in bounds), default=min(numeric) if numeric else None)
    high = max((b[2] for b in bounds), default=max(numeric) if numeric else None)
    positive = [v for v in numeric if v > 0]
    decades = _decades(low, high) if bounds else (_decades(min(positive), max(positive)) if len(positive) >= 2 else None)
    facts: dict[str, Any] = {
        "p_name": name, "p_canonical": canon or "other", "p_line": sf.lines.get(name),
        "p_type": p.type, "p_log": p.log, "p_low": low, "p_high": high, "p_decades": decades,
        "p_exponential": _is_exponential(name, canon), "p_n_choices": len(p.choices or []) or None,
        "p_choices_linear": _linear_choices([float(v) for v in numeric], a) if numeric else False,
        "p_from_zero": bool(bounds) and p.type == "float" and p.choices is None and low == 0
                       and high is not None and high > 0,
        "p_conditional": p.by is not None,
        "p_wandb_log_uniform": sf.wandb_distribution.get(name) in ("log_uniform", "q_log_uniform", "inv_log_uniform"),
        **validity,
    }
    raw = sf.raw_params.get(name) or {}
    if facts["p_wandb_log_uniform"] and bounds:
        facts["p_raw_low"], facts["p_raw_high"] = _number(raw.get("min")), _number(raw.get("max"))
        facts["p_sampled_low"], facts["p_sampled_high"] = low, high
        rl, rh = facts["p_raw_low"], facts["p_raw_high"]
        if rl is not None and rh is not None and 0 < rl <= rh <= a["log_uniform_values_max"]:
            # values written as exponents (rule K105): the other rules judge the range meant,
            # so that one mistake is one finding and its fix is not undone by another's
            low, high = rl, rh
            facts.update(p_low=low, p_high=high, p_decades=_decades(low, high))
    # corrected ranges the lint rules quote and --fix writes
    if canon == "learning_rate":
        facts["p_usual_low"], facts["p_usual_high"] = _lr_range(optimizer, family)
    elif canon in ranges and "range" in ranges[canon]:
        facts["p_usual_low"], facts["p_usual_high"] = ranges[canon]["range"]
    elif canon == "weight_decay":
        facts["p_usual_low"], facts["p_usual_high"] = ranges["weight_decay"]["by_optimizer"].get(
            optimizer or "default", ranges["weight_decay"]["by_optimizer"]["default"])
    if high is not None and high > 0:
        floor = facts.get("p_usual_low") if canon in ("weight_decay", "learning_rate") else None
        facts["p_safe_low"] = floor if floor and floor < high else high / 1e4
        if low is not None and low <= 0:  # a log range starts at a positive floor (K101's fix)
            facts["p_log_floor"] = facts["p_safe_low"]
    return facts


def space_facts(sf: SpaceFile, context: dict[str, Any], a: dict[str, float]
                ) -> tuple[dict[str, Any], str | None, dict[str, dict[str, Any]]]:
    """Facts of the whole space, the optimizer it trains with (given, fixed or inferred), and
    what was inferred from the file for what the user did not give."""
    t = _infer_table()
    space = sf.space
    inferred = {k: v for k, v in infer(sf).items() if context.get(k) is None}
    by_canon: dict[str, list[str]] = {}
    for name in space.params:
        by_canon.setdefault(canonical(name) or name, []).append(name)
    if "learning_rate" in inferred:  # alpha on a log scale, with no parameter named as the LR
        by_canon.setdefault("learning_rate", []).append(inferred["learning_rate"]["value"])
    fixed_canon = {canonical(k) or k: v for k, v in space.fixed.items()}
    # a fixed optimizer in the space wins over --optimizer (given "when the space does not fix it")
    fixed_opt = next((_optimizer_kind(v, t) or str(v).lower() for k, v in space.fixed.items()
                      if canonical(k) == "optimizer" or _named(k, t["optimizer_parameters"])), None)
    optimizer = fixed_opt or context.get("optimizer") or (
        inferred["optimizer"]["value"] if "optimizer" in inferred else None)
    optimizer = str(optimizer).lower() if optimizer else None
    kinds: list[str | None] = []
    opt_names = [n for n in space.params if _named(n, t["optimizer_parameters"]) or canonical(n) == "optimizer"]
    if opt_names:
        kinds = [_optimizer_kind(c, t) for c in space.params[opt_names[0]].choices or []]
    lr_names = by_canon.get("learning_rate", [])
    wd_positive = False
    if "weight_decay" in by_canon:
        wd = space.params[by_canon["weight_decay"][0]]
        wd_positive = any(v > 0 for v in [wd.high or 0, *[c for c in wd.choices or [] if isinstance(c, (int, float))]])
    elif _number(fixed_canon.get("weight_decay")) is not None:
        wd_positive = _number(fixed_canon["weight_decay"]) > 0
    warmup_fixed = _number(fixed_canon.get("warmup"))
    epochs = space.epochs or context.get("epochs") or (inferred["epochs"]["value"] if "epochs" in inferred else None)
    steps = inferred["steps"]["value"] if "steps" in inferred else None
    trial_hours = context.get("trial_hours")
    if trial_hours is None and context.get("epoch_hours") and epochs:
        trial_hours = context["epoch_hours"] * epochs
    size = grid_size(space)
    budget = context.get("budget_hours")
    affordable = int(budget / trial_hours) if budget and trial_hours else None
    advised = int(a["random_trials_advised"])
    family = fixed_canon.get("model_family") or context.get("model_family") or (
        inferred["model_family"]["value"] if "model_family" in inferred else None)
    stray = sorted(sf.stray)
    numeric = sorted(sf.numeric_strings)
    facts: dict[str, Any] = {
        "format": sf.format, "strategy": space.strategy, "n_params": len(space.params) + len(sf.broken),
        "params_line": sf.key_lines.get("params" if sf.format == "advisor" else "parameters"),
        "wandb_goal": sf.goal, "wandb_goal_line": sf.key_lines.get("metric.goal"),
        "wandb_goal_unknown": sf.goal is not None and sf.goal not in ("minimize", "maximize"),
        "trials": space.trials, "grid_size": size, "epochs": epochs, "train_steps": steps, "seeds": space.seeds,
        "run_length": ", ".join(x for x in (f"{epochs} epochs" if epochs else "", f"{steps} steps" if steps else "",
                                            f"{trial_hours:.2g} h" if trial_hours else "") if x) or None,
        "budget_hours": budget, "trial_hours": trial_hours,
        "grid_hours": size * trial_hours if size and trial_hours else None,
        "affordable_trials": affordable,
        "random_trials_advised": min(advised, affordable) if affordable else advised,
        "pruning": space.pruner.type != "none",
        "lr_searched": bool(lr_names), "lr_conditional": any(space.params[n].by for n in lr_names),
        "batch_size_searched": "batch_size" in by_canon,
        "optimizer_searched": bool(kinds),
        # SGD's good learning rates are 10-100x an adaptive optimizer's; unknown names mix nothing
        "optimizers_mixed": "sgd" in kinds and any(k not in (None, "sgd") for k in kinds),
        "optimizer": optimizer if optimizer in ("sgd", "adam", "adamw", "rmsprop") else ("other" if optimizer else None),
        "adam_used": optimizer == "adam" or "adam" in kinds,
        "weight_decay_positive": wd_positive,
        "warmup_present": "warmup" in by_canon or (warmup_fixed is not None and warmup_fixed > 0)
                          or "warmup" in inferred,
        "architecture_searched": any(_architecture(n, p) for n, p in space.params.items()),
        "model_family": str(family).lower() if family else None,
        "seed_searched": any(name_parts(n)[-1:] == ["seed"] for n in space.params),
        "repeated_key_count": len(sf.repeated), "stray_count": len(sf.stray),
        "numeric_string_params": len(sf.numeric_strings),
        "repeated_keys": ", ".join(f"'{k}' (lines {first} and {line})" for k, line, first in sf.repeated) or None,
        "repeated_line": sf.repeated[0][1] if sf.repeated else None,
        "stray_entries": "; ".join(f"'{k}' {why}" for k, why in sorted(sf.stray.items())) or None,
        "stray_line": min((sf.lines.get(k.rsplit(".", 1)[0]) or 0 for k in stray), default=None) or None,
        "numeric_strings": ", ".join(f"{k} ({', '.join(sf.numeric_strings[k])})" for k in numeric) or None,
        "numeric_strings_line": min((sf.lines.get(k) or 0 for k in numeric), default=None) or None,
    }
    return facts, optimizer, inferred
