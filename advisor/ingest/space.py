"""Reading search spaces: advisor's own YAML (advisor/space.py) and W&B sweep configs.

Both become one `Space`; the source's line numbers, its raw mapping (for --fix) and the W&B
distribution of each parameter are kept beside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from advisor.errors import InputError
from advisor.inputs import load_yaml
from advisor.space import Param, Pruner, Space

# W&B sweep distributions -> advisor's (type, log); log_uniform takes natural-log exponents.
WANDB_DISTRIBUTIONS = {
    "constant": None, "categorical": ("categorical", False), "int_uniform": ("int", False),
    "uniform": ("float", False), "q_uniform": ("float", False),
    "log_uniform_values": ("float", True), "q_log_uniform_values": ("float", True),
    "log_uniform": ("float", True), "q_log_uniform": ("float", True),
    "inv_log_uniform_values": ("float", True), "inv_log_uniform": ("float", True),
    "normal": ("float", False), "q_normal": ("float", False),
    "log_normal": ("float", True), "q_log_normal": ("float", True),
}
WANDB_METHODS = {"grid": "grid", "random": "random", "bayes": "bayesian"}


@dataclass
class SpaceFile:
    path: str
    format: str                         # "advisor" or "wandb"
    space: Space
    raw: dict[str, Any]                 # the file as parsed, for --fix
    lines: dict[str, int] = field(default_factory=dict)      # parameter -> line in the file
    raw_params: dict[str, dict] = field(default_factory=dict)  # parameter -> its raw entry
    wandb_distribution: dict[str, str] = field(default_factory=dict)
    text: str = ""                       # the file as read (decoded), for --fix
    key_lines: dict[str, int] = field(default_factory=dict)  # 'metric.goal' -> its line
    broken: dict[str, dict] = field(default_factory=dict)  # lint: parameters that cannot be read
    goal: str | None = None              # W&B metric.goal as written
    # lint: what W&B (PyYAML, YAML 1.1) reads differently from advisor (rules K5xx)
    repeated: list[tuple[str, int, int]] = field(default_factory=list)  # (key, line, first line)
    numeric_strings: dict[str, list[str]] = field(default_factory=dict)  # parameter -> texts
    stray: dict[str, str] = field(default_factory=dict)  # entry W&B ignores -> why
    command: list[str] = field(default_factory=list)     # W&B command:, as text
    program: str | None = None


def _param_lines(root: Any, params_key: str) -> dict[str, int]:
    """Line of each entry under the parameters mapping (nested W&B parameters dotted)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            nested = next((v for k, v in value.value if getattr(k, "value", None) == "parameters"),
                          None) if isinstance(value, yaml.MappingNode) else None
            if nested is not None:
                walk(nested, f"{name}.")
            else:
                lines[name] = key.start_mark.line + 1

    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == params_key:
                walk(value, "")
    return lines


def load_space(path: str | Path, lint: bool = False) -> SpaceFile:
    """A search space file: a regular file of bounded size, UTF-8 or UTF-16, whose YAML aliases
    expand to a sane size and whose keys are each given once (advisor/inputs.py).

    What cannot be read as a space at all is an InputError naming the field. What reads but
    would not run (a reversed range, a W&B goal or distribution W&B does not have ...) is for the
    K0xx lint rules of `advisor check` to find (advisor.advice.check.runnable_space refuses it
    for `search`); with `lint`, a W&B parameter of an unknown distribution is kept aside in
    `broken` for them, else it is refused here."""
    path = Path(path)
    repeated: list | None = [] if lint else None  # W&B keeps a repeated key's last value: read it so
    data, root, text = load_yaml(path, "search space", repeated=repeated)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping (advisor space or W&B sweep), got {type(data).__name__}")
    is_wandb = "advisor_space" not in data and ("method" in data or ("parameters" in data and "params" not in data))
    if repeated and not is_wandb:  # advisor's own format is refused, as always (bad-input report F22)
        key, line, first = repeated[0]
        raise InputError(f"{path}:{line}: key '{key}' is given twice (first on line {first}); "
                         "YAML keeps only the last, so say it once")
    if "advisor_space" in data:
        sf = _advisor(path, root, data)
    elif "method" in data or ("parameters" in data and "params" not in data):
        sf = _wandb(path, root, data, lint, text)
    elif "params" in data:
        sf = _advisor(path, root, data)
    else:
        raise InputError(f"{path}: neither an advisor space (params:) nor a W&B sweep (method:, parameters:)")
    sf.text = text
    sf.key_lines = _key_lines(root)
    sf.repeated = repeated or []
    if sf.format == "wandb":
        for name, texts in _yaml11_strings(root).items():
            sf.numeric_strings.setdefault(name, []).extend(texts)
    return sf


def _yaml11_strings(root: Any) -> dict[str, list[str]]:
    """Numbers advisor reads (`1e-5`) that PyYAML's YAML 1.1 resolver, and so W&B, reads as
    strings (a float needs a dot there): per top-level parameter, the texts as written."""
    import yaml

    plain11 = yaml.resolver.Resolver()  # PyYAML's own YAML 1.1 rules; the nodes carry advisor's tags
    found: dict[str, list[str]] = {}

    def walk(node: Any, owner: str) -> None:
        if isinstance(node, yaml.ScalarNode):
            if not node.style and node.tag == "tag:yaml.org,2002:float" and plain11.resolve(
                    yaml.ScalarNode, node.value, (True, False)) == "tag:yaml.org,2002:str":
                found.setdefault(owner, []).append(node.value)
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                walk(child, owner)
        elif isinstance(node, yaml.MappingNode):
            for _, child in node.value:
                walk(child, owner)

    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if getattr(key, "value", None) == "parameters" and isinstance(value, yaml.MappingNode):
                for pkey, pvalue in value.value:
                    walk(pvalue, str(pkey.value))
    return found


def _key_lines(root: Any) -> dict[str, int]:
    """Line of each top-level key, and of the keys one level down ('metric.goal')."""
    import yaml

    lines: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        lines[key.value] = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode):
            for sub, _ in value.value:
                if isinstance(sub, yaml.ScalarNode):
                    lines[f"{key.value}.{sub.value}"] = sub.start_mark.line + 1
    return lines


def _field_error(path: Path, exc: ValidationError, names: dict[str, str] | None = None) -> InputError:
    """One line for pydantic's first complaint, naming the field as the file names it."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    for ours, theirs in (names or {}).items():
        if loc == ours or loc.startswith(ours + "."):
            loc = theirs + loc[len(ours):]
    value = err.get("input")
    shown = f" (got {value!r:.60})" if value is not None and not isinstance(value, (dict, list)) else ""
    return InputError(f"{path}: field '{loc}': {err['msg']}{shown}")


def _advisor(path: Path, root: Any, data: dict) -> SpaceFile:
    try:
        space = Space.model_validate(data)
    except ValidationError as exc:
        raise _field_error(path, exc) from None
    raw_params = data.get("params") or {}
    return SpaceFile(str(path), "advisor", space, data, _param_lines(root, "params"),
                     {k: v for k, v in raw_params.items() if isinstance(v, dict)})


def _flatten(params: dict, prefix: str = "") -> dict[str, dict]:
    flat: dict[str, dict] = {}
    for name, spec in params.items():
        if isinstance(spec, dict) and isinstance(spec.get("parameters"), dict):
            flat.update(_flatten(spec["parameters"], f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = spec
    return flat


def _planned_grid(values: list) -> dict[str, Param] | None:
    """A grid axis whose values are whole configurations ({optimizer: sgd, learning_rate: 1e-3},
    as advisor writes a conditional grid) -> the parameters: a categorical for each key of text
    values, and each numeric key as a range per value of that categorical with its grid points."""
    if len(values) < 2 or not all(isinstance(v, dict) and v for v in values):
        return None
    keys = list(dict.fromkeys(k for v in values for k in v))
    if any(set(v) != set(keys) for v in values):
        return None
    text = [k for k in keys if all(isinstance(v[k], str) for v in values)]
    numbers = [k for k in keys if all(_is_number(v[k]) for v in values)]
    if len(text) + len(numbers) != len(keys) or len(text) > 1:
        return None
    out: dict[str, Param] = {}
    by = text[0] if text else None
    if by:
        out[by] = Param(type="categorical", choices=list(dict.fromkeys(v[by] for v in values)))
    for k in numbers:
        kind = "int" if all(isinstance(v[k], int) for v in values) else "float"
        groups: dict[str, list[float]] = {}
        for v in values:
            groups.setdefault(v[by] if by else "", []).append(v[k])
        every = [x for g in groups.values() for x in g]
        log = min(every) > 0 and max(every) / min(every) >= 10
        if by:
            out[k] = Param(type=kind, log=log, by=by, ranges={g: [min(x), max(x)] for g, x in groups.items()},
                           grid={g: list(dict.fromkeys(x)) for g, x in groups.items()})
        else:
            out[k] = Param(type=kind, log=log, low=min(every), high=max(every), choices=list(dict.fromkeys(every)))
    return out


_ZERO_MARK = re.compile(r"^#\s*([A-Za-z_][\w.]*): values below (\S+) mean exactly 0", re.M)


def _zero_marks(text: str) -> dict[str, float]:
    out = {}
    for name, value in _ZERO_MARK.findall(text or ""):
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mapping(path: Path, data: dict, key: str, keys: str) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{path}: field '{key}': expected a mapping ({keys}), got {value!r:.60}")
    return value


def _wandb(path: Path, root: Any, data: dict, lint: bool = False, text: str = "") -> SpaceFile:
    method = data.get("method")
    if method not in WANDB_METHODS:
        raise InputError(f"{path}: field 'method': {method!r} is not one of grid, random, bayes")
    if not isinstance(data.get("parameters"), dict) or not data["parameters"]:
        raise InputError(f"{path}: field 'parameters': a W&B sweep needs a mapping of parameters")
    lines = _param_lines(root, "parameters")
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    dists: dict[str, str] = {}
    broken: dict[str, dict[str, Any]] = {}
    flat = _flatten(data["parameters"])
    stray: dict[str, str] = {}
    numeric_strings: dict[str, list[str]] = {}
    for name, spec in flat.items():
        where = f"{path}" + (f":{lines[name]}" if name in lines else "") + f": parameter '{name}'"
        if not isinstance(spec, dict):
            if lint:  # W&B skips it (a key left over from bad indentation): rule K503
                stray[name] = f"(it holds {spec!r:.40}, not a mapping of value, values or a distribution)"
                continue
            raise InputError(f"{where}: expected a mapping (value, values, distribution ...)")
        for key, sub in spec.items():  # a parameter indented under another: W&B never sees it
            if (lint and isinstance(sub, dict) and key not in _WANDB_PARAM_KEYS
                    and _PARAM_SHAPE & set(sub)):
                stray[f"{name}.{key}"] = f"(indented under '{name}', it is a key of that parameter)"
        if lint:  # quoted numbers in min/max: W&B's schema refuses them; advisor reads the number
            for key in ("min", "max", "mu", "sigma", "q"):
                if isinstance(spec.get(key), str) and _as_number(spec[key]) is not None:
                    numeric_strings.setdefault(name, []).append(spec[key])
                    spec = {**spec, key: _as_number(spec[key])}
        if lint and isinstance(spec.get("values"), list) and len(spec["values"]) == 1 and spec.get(
                "distribution") in (None, "categorical"):
            fixed[name] = spec["values"][0]  # one value is a fixed value, not a searched axis
            dists[name] = "categorical"
            continue
        dist = spec.get("distribution")
        if dist is None:
            dist = ("categorical" if "values" in spec else "constant" if "value" in spec
                    else "int_uniform" if all(isinstance(spec.get(k), int) for k in ("min", "max")) else "uniform")
        if not isinstance(dist, str) or dist not in WANDB_DISTRIBUTIONS:
            if lint:  # for rule K005, with its line
                broken[name] = {"distribution": str(dist)}
                continue
            raise InputError(f"{where}: unknown distribution '{dist}' "
                             f"(W&B has {', '.join(sorted(WANDB_DISTRIBUTIONS))})")
        dists[name] = dist
        if dist == "constant":
            fixed[name] = spec.get("value")
            continue
        kind, log = WANDB_DISTRIBUTIONS[dist]
        if kind == "categorical":
            if not isinstance(spec.get("values"), list) or not spec["values"]:
                raise InputError(f"{where}: 'values' must be a non-empty list")
            planned = _planned_grid(spec["values"]) if method == "grid" else None
            if planned:  # whole configurations (advisor's conditional grid): the parameters they hold
                params.update(planned)
                dists.update({k: "categorical" for k in planned})
                continue
            params[name] = Param(type="categorical", choices=spec["values"])
            continue
        lo, hi = spec.get("min"), spec.get("max")
        if dist.startswith(("normal", "q_normal", "log_normal", "q_log_normal")):
            mu, sigma = spec.get("mu", 0.0), spec.get("sigma", 1.0)
            for key, v in (("mu", mu), ("sigma", sigma)):
                if not _is_number(v):
                    raise InputError(f"{where}: '{key}' must be a number, got {v!r:.60}")
            lo, hi = mu - 2 * sigma, mu + 2 * sigma
        if not all(_is_number(v) for v in (lo, hi)):
            raise InputError(f"{where}: '{dist}' needs numeric 'min' and 'max'")
        if dist in ("log_uniform", "q_log_uniform", "inv_log_uniform"):  # exponents -> values
            lo, hi = (math.exp(min(lo, 700)), math.exp(min(hi, 700)))
        params[name] = Param(type=kind, low=float(lo), high=float(hi), log=log)
    for name, low in _zero_marks(text).items():  # advisor's "values below X mean exactly 0" comment
        p = params.get(name)
        if p is not None and p.type == "float" and p.log and p.low and math.isclose(p.low * 10, low, rel_tol=1e-6):
            params[name] = Param(type="float", low=low, high=p.high, log=True, zero=True)
    metric = _mapping(path, data, "metric", "name, goal")
    early = _mapping(path, data, "early_terminate", "type, min_iter ...")
    goal = metric.get("goal")
    bands = {"min_resource": early.get("min_iter"), "reduction_factor": early.get("eta")}
    bands = {k: v for k, v in bands.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 1}
    try:
        space = Space(
            name=data.get("name"), strategy=WANDB_METHODS[method],
            # W&B minimizes unless told to maximize; an unknown goal is rule K002's
            direction="maximize" if goal == "maximize" else "minimize",
            metric=metric.get("name", "val_metric"), trials=data.get("run_cap"),
            pruner=(Pruner(type="hyperband", **bands) if early.get("type") == "hyperband" else Pruner(type="none")),
            fixed=fixed, params=params,
        )
    except ValidationError as exc:
        raise _field_error(path, exc, {"trials": "run_cap", "metric": "metric.name"}) from None
    command = data.get("command")
    sf = SpaceFile(str(path), "wandb", space, data, lines, flat, dists, broken=broken,
                   goal=None if goal is None else str(goal), stray=stray, numeric_strings=numeric_strings,
                   command=[str(c) for c in command] if isinstance(command, list) else [],
                   program=str(data["program"]) if data.get("program") is not None else None)
    return sf


# keys of a W&B parameter; a mapping under any other key that has a parameter's shape is a
# parameter indented one level too deep
_WANDB_PARAM_KEYS = {"value", "values", "distribution", "min", "max", "mu", "sigma", "q", "probabilities",
                     "parameters"}
_PARAM_SHAPE = {"value", "values", "distribution", "min", "max"}


def _as_number(text: str) -> float | int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def grid_size(space: Space) -> int | None:
    """Configurations a grid over the space has (None when a parameter is continuous)."""
    size = 1
    for p in space.params.values():
        if p.choices is None:
            if (p.type == "int" and p.low is not None and p.high is not None and not p.log
                    and math.isfinite(p.low) and math.isfinite(p.high) and p.low <= p.high):
                size *= int(p.high - p.low) + 1
                continue
            return None
        size *= len(p.choices) + (1 if p.zero else 0)
    return size
