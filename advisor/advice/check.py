"""Check: a search space through facts and lint rules, ranked findings, and the fixes they imply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from advisor.engine import Finding, evaluate, load_knowledge, severity_rank
from advisor.errors import InputError
from advisor.facts.space import broken_param_facts, param_facts, space_facts
from advisor.ingest.space import SpaceFile, load_space

SCHEMA = "advisor.check/1"


class SpaceSummary(BaseModel):
    path: str
    format: str
    strategy: str
    params: list[str]
    trials: int | None
    grid_size: int | None


class Inferred(BaseModel):
    """Something the file says about the training that the user did not give (--optimizer ...)."""
    value: Any
    source: str


class CheckReport(BaseModel):
    schema_version: str = SCHEMA
    findings: list[Finding]
    space: SpaceSummary
    # model_family, optimizer, epochs, steps, warmup, learning_rate: read from the whole file
    inferred: dict[str, Inferred] = {}

    def worst_severity(self) -> int:
        return max((severity_rank(f.severity) for f in self.findings), default=-1)


class _Fix(BaseModel):
    code: str
    param: str | None
    changes: dict[str, Any]


def check(path: str | Path, context: dict[str, Any], sf: SpaceFile | None = None
          ) -> tuple[CheckReport, SpaceFile, list[_Fix]]:
    sf = sf or load_space(path, lint=True)  # read (and refused) before the rules are loaded
    kb = load_knowledge("check")
    facts, optimizer, inferred = space_facts(sf, {k: v for k, v in context.items() if v is not None},
                                             kb.catalogue.analysis)
    findings, _ = evaluate(kb, facts)
    fixes: list[_Fix] = []
    for finding in findings:
        rule = kb.rule(finding.code)
        if rule and "space" in rule.fix:
            fixes.append(_Fix(code=rule.code, param=None, changes=_resolve(rule.fix["space"], facts)))
    for name in [*sf.space.params, *sf.broken]:
        if name in sf.broken:
            pfacts = {**facts, **broken_param_facts(sf, name)}
        else:
            pfacts = {**facts, **param_facts(sf, name, optimizer, kb.catalogue.analysis, facts["model_family"])}
        found, _ = evaluate(kb, pfacts, scope="param", param=name)
        findings += found
        for finding in found:
            rule = kb.rule(finding.code)
            if rule and "param" in rule.fix:
                changes = _resolve(rule.fix["param"], pfacts)
                if changes:
                    fixes.append(_Fix(code=rule.code, param=name, changes=changes))
    for finding in findings:
        finding.run = sf.path
    findings.sort(key=lambda f: (-severity_rank(f.severity), f.code, f.param or ""))
    summary = SpaceSummary(path=sf.path, format=sf.format, strategy=sf.space.strategy,
                           params=list(sf.space.params), trials=sf.space.trials, grid_size=facts["grid_size"])
    told = {k: Inferred(value=v["value"], source=v["from"]) for k, v in inferred.items()}
    return CheckReport(findings=findings, space=summary, inferred=told), sf, fixes


def cannot_run(finding: Finding) -> bool:
    """K0xx: the space cannot run as written (a reversed range, a goal W&B does not have ...):
    `search` refuses what these rules find, so a clean `check` means the space runs."""
    return finding.code.startswith("K0")


def runnable_space(path: str | Path) -> SpaceFile:
    """A space file for `search --plan`: read as `check` reads it, and refused with the first
    K0xx finding (its file, line and message) when it would not run."""
    sf = load_space(path)
    report, _, _ = check(path, {}, sf)
    for finding in report.findings:
        if cannot_run(finding):
            raise InputError(f"{sf.path}: {finding.code} {finding.message} "
                             f"(`advisor check {sf.path}` lists every problem)")
    return sf


def _resolve(changes: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in changes.items():
        if isinstance(value, str) and value.startswith("="):
            value = facts.get(value[1:])
            if value is None:
                continue
        out[key] = value
    return out


# --- --fix: the same file with the findings' fixes applied, everything else kept ------------

def fixed_document(sf: SpaceFile, fixes: list[_Fix]):
    """The file re-read with comments and order kept (ruamel.yaml) and the fixes applied."""
    try:
        from ruamel.yaml import YAML
    except ImportError:  # pragma: no cover - a dependency, but say so if it is missing
        raise InputError("--fix needs ruamel.yaml: pip install ruamel.yaml") from None
    yaml = YAML()
    yaml.preserve_quotes = True
    if sf.format == "wandb":  # W&B reads YAML 1.1: every float written must stay a float there
        _yaml11_floats(yaml)
    yaml.allow_duplicate_keys = True  # K502 reports them; W&B keeps the last, as written below
    doc = yaml.load(sf.text)  # the text load_space read and judged (decoded, bounded)
    if sf.repeated:
        _keep_last(doc, sf)
    notes: list[str] = []
    for fix in fixes:
        if fix.param is None:
            _fix_space(doc, sf.format, fix.changes, notes)
        else:
            entry = _param_entry(doc, sf.format, fix.param)
            if entry is not None:
                (_fix_wandb_param if sf.format == "wandb" else _fix_advisor_param)(entry, fix.changes, fix.param, notes)
    return yaml, doc, notes


def _keep_last(doc, sf: SpaceFile) -> None:
    """ruamel.yaml keeps a repeated key's first value, PyYAML (W&B, and what check judged) the
    last: put the last back, found by the line of the key ruamel kept."""
    firsts = {(key, first) for key, _, first in sf.repeated}

    def walk(node, raw) -> None:
        if not isinstance(node, dict) or not isinstance(raw, dict):
            return
        for key in list(node):
            line = node.lc.key(key)[0] + 1 if hasattr(node, "lc") else None
            if (str(key), line) in firsts and key in raw:
                node[key] = raw[key]
            else:
                walk(node[key], raw.get(key))

    walk(doc, sf.raw)


def _yaml11_float_text(value: float) -> str:
    """A float as YAML 1.1 (PyYAML, W&B) reads a float: a dot in the mantissa and a signed
    exponent (1e-05 is a string there, 1.0e-05 the number)."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exp if exp[0] in '+-' else '+' + exp}"
    return text


def _yaml11_floats(yaml) -> None:
    """Write floats, kept or new, in a form YAML 1.1 reads as floats: ruamel.yaml (YAML 1.2)
    writes 1e-05 and keeps 2e-5 as it was, both strings to W&B's loader."""
    import yaml as pyyaml
    from ruamel.yaml.scalarfloat import ScalarFloat

    yaml11 = pyyaml.resolver.Resolver()
    rep = yaml.representer

    def represent(representer, data):
        node = (representer.represent_scalar_float(data) if isinstance(data, ScalarFloat)
                else representer.represent_float(data))
        if yaml11.resolve(pyyaml.ScalarNode, node.value, (True, False)) == "tag:yaml.org,2002:str":
            node.value = _yaml11_float_text(data)
        return node

    rep.add_representer(float, represent)
    rep.add_representer(ScalarFloat, represent)


def _param_entry(doc, fmt: str, name: str):
    node = doc.get("params" if fmt == "advisor" else "parameters")
    if node is not None and name in node:  # a dotted name is a flat key as often as a nesting
        return node[name]
    for part in name.split(".") if fmt == "wandb" else [name]:
        if node is None:
            return None
        node = node.get(part)
        if fmt == "wandb" and node is not None and "parameters" in node and part != name.split(".")[-1]:
            node = node["parameters"]
    return node


def _numeric_choices(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _fix_advisor_param(entry, changes: dict[str, Any], name: str, notes: list[str]) -> None:
    changes = dict(changes)
    changes.pop("wandb_distribution", None)
    if entry.get("choices") is not None and ({"log", "low", "high"} & set(changes)):
        values = _numeric_choices(entry["choices"])
        if changes.keys() == {"high"}:  # cap the choices
            kept = [v for v in entry["choices"] if not isinstance(v, (int, float)) or v <= changes["high"]]
            entry["choices"] = kept or [changes["high"]]
            return
        positive = [v for v in values if v > 0]
        if positive:  # a list of values becomes the range they span, on the fixed scale
            entry["type"] = "float"
            entry["low"] = changes.get("low", min(positive))
            entry["high"] = changes.get("high", max(positive))
            entry["log"] = changes.get("log", True)
            if 0 in values or changes.get("zero"):
                entry["zero"] = True
            del entry["choices"]
            return
    for key, value in changes.items():
        entry[key] = value


def _fix_wandb_param(entry, changes: dict[str, Any], name: str, notes: list[str]) -> None:
    if "wandb_distribution" in changes:
        entry["distribution"] = changes["wandb_distribution"]
        return
    if "values" in entry and ({"log", "low", "high"} & set(changes)):
        values = _numeric_choices(entry["values"])
        if changes.keys() == {"high"}:
            entry["values"] = [v for v in entry["values"] if not isinstance(v, (int, float)) or v <= changes["high"]]
            return
        positive = [v for v in values if v > 0]
        if positive:
            low, high = changes.get("low", min(positive)), changes.get("high", max(positive))
            del entry["values"]
            entry["distribution"] = "log_uniform_values"
            entry["min"], entry["max"] = low, high
            if 0 in values or changes.get("zero"):
                notes.append(f"{name}: W&B cannot add 0 beside a log range; run a separate sweep with it at 0")
            return
    if changes.get("log"):
        entry["distribution"] = "log_uniform_values"
    if "low" in changes:
        entry["min"] = changes["low"]
    if "high" in changes:
        entry["max"] = changes["high"]
    if changes.get("zero"):
        notes.append(f"{name}: W&B cannot add 0 beside a log range; run a separate sweep with it at 0")


def _fix_space(doc, fmt: str, changes: dict[str, Any], notes: list[str]) -> None:
    if fmt == "advisor":
        for key, value in changes.items():
            doc[key] = value
        return
    methods = {"random": "random", "grid": "grid", "bayesian": "bayes"}
    for key, value in changes.items():
        if key == "numeric_strings":  # plain 1e-5 is rewritten by the dumper; quoted bounds here
            for entry in (doc.get("parameters") or {}).values():
                for bound in ("min", "max", "mu", "sigma", "q") if isinstance(entry, dict) else ():
                    if isinstance(entry.get(bound), str):
                        try:
                            entry[bound] = float(entry[bound])
                        except ValueError:
                            pass
            continue
        if key == "strategy":
            doc["method"] = methods.get(value, value)
        elif key == "trials":
            doc["run_cap"] = value
        elif key == "pruner":
            doc["early_terminate"] = {"type": "hyperband", "min_iter": 3}
        elif key == "seeds":
            notes.append("seeds: W&B runs one seed per run; drop the seed parameter or its repeats")
