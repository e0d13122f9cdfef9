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

import yaml
from pydantic import ValidationError

from advisor.errors import InputError
from advisor.space import Param, Pruner, Space

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1 reads `1e-5` as a string; people (and YAML 1.2 writers) mean a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)

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


def _param_lines(text: str, params_key: str) -> dict[str, int]:
    """Line of each entry under the parameters mapping (nested W&B parameters dotted)."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            nested = next((v for k, v in getattr(value, "value", []) if isinstance(value, yaml.MappingNode)
                           and getattr(k, "value", None) == "parameters"), None)
            if nested is not None:
                walk(nested, f"{name}.")
            else:
                lines[name] = key.start_mark.line + 1

    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == params_key:
                walk(value, "")
    return lines


def load_space(path: str | Path) -> SpaceFile:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the space or sweep YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; not a search space") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping (advisor space or W&B sweep), got {type(data).__name__}")
    if "advisor_space" in data:
        return _advisor(path, text, data)
    if "method" in data or ("parameters" in data and "params" not in data):
        return _wandb(path, text, data)
    if "params" in data:
        return _advisor(path, text, data)
    raise InputError(f"{path}: neither an advisor space (params:) nor a W&B sweep (method:, parameters:)")


def _advisor(path: Path, text: str, data: dict) -> SpaceFile:
    try:
        space = Space.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
        raise InputError(f"{path}: field '{loc}': {err['msg']}") from None
    raw_params = data.get("params") or {}
    return SpaceFile(str(path), "advisor", space, data, _param_lines(text, "params"),
                     {k: v for k, v in raw_params.items() if isinstance(v, dict)})


def _flatten(params: dict, prefix: str = "") -> dict[str, dict]:
    flat: dict[str, dict] = {}
    for name, spec in params.items():
        if isinstance(spec, dict) and isinstance(spec.get("parameters"), dict):
            flat.update(_flatten(spec["parameters"], f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = spec
    return flat


def _wandb(path: Path, text: str, data: dict) -> SpaceFile:
    method = data.get("method")
    if method not in WANDB_METHODS:
        raise InputError(f"{path}: field 'method': {method!r} is not one of grid, random, bayes")
    if not isinstance(data.get("parameters"), dict) or not data["parameters"]:
        raise InputError(f"{path}: field 'parameters': a W&B sweep needs a mapping of parameters")
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    dists: dict[str, str] = {}
    flat = _flatten(data["parameters"])
    for name, spec in flat.items():
        if not isinstance(spec, dict):
            raise InputError(f"{path}: parameter '{name}': expected a mapping (value, values, distribution ...)")
        dist = spec.get("distribution")
        if dist is None:
            dist = ("categorical" if "values" in spec else "constant" if "value" in spec
                    else "int_uniform" if all(isinstance(spec.get(k), int) for k in ("min", "max")) else "uniform")
        if dist not in WANDB_DISTRIBUTIONS:
            raise InputError(f"{path}: parameter '{name}': unknown distribution '{dist}' "
                             f"(W&B has {', '.join(sorted(WANDB_DISTRIBUTIONS))})")
        dists[name] = dist
        if dist == "constant":
            fixed[name] = spec.get("value")
            continue
        kind, log = WANDB_DISTRIBUTIONS[dist]
        if kind == "categorical":
            if not isinstance(spec.get("values"), list) or not spec["values"]:
                raise InputError(f"{path}: parameter '{name}': 'values' must be a non-empty list")
            params[name] = Param(type="categorical", choices=spec["values"])
            continue
        lo, hi = spec.get("min"), spec.get("max")
        if dist.startswith(("normal", "q_normal", "log_normal", "q_log_normal")):
            mu, sigma = float(spec.get("mu", 0.0)), float(spec.get("sigma", 1.0))
            lo, hi = mu - 2 * sigma, mu + 2 * sigma
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise InputError(f"{path}: parameter '{name}': '{dist}' needs numeric 'min' and 'max'")
        if dist in ("log_uniform", "q_log_uniform", "inv_log_uniform"):  # exponents -> values
            lo, hi = (math.exp(min(lo, 700)), math.exp(min(hi, 700)))
        params[name] = Param(type=kind, low=float(lo), high=float(hi), log=log)
    metric = data.get("metric") or {}
    early = data.get("early_terminate") or {}
    space = Space(
        name=data.get("name"), strategy=WANDB_METHODS[method],
        direction="minimize" if metric.get("goal") == "minimize" else "maximize",
        metric=metric.get("name", "val_metric"), trials=data.get("run_cap"),
        pruner=Pruner(type="hyperband" if early.get("type") == "hyperband" else "none"),
        fixed=fixed, params=params,
    )
    return SpaceFile(str(path), "wandb", space, data, _param_lines(text, "parameters"), flat, dists)


def grid_size(space: Space) -> int | None:
    """Configurations a grid over the space has (None when a parameter is continuous)."""
    size = 1
    for p in space.params.values():
        if p.choices is None:
            if p.type == "int" and p.low is not None and p.high is not None and not p.log:
                size *= int(p.high - p.low) + 1
                continue
            return None
        size *= len(p.choices) + (1 if p.zero else 0)
    return size
