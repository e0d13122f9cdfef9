"""Loading the knowledge base: rule files validated, conditions checked against the catalogue."""

from __future__ import annotations

import ast
import difflib
import os
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from advisor.engine.catalogue import Catalogue, FactSpec
from advisor.engine.schema import Rule
from advisor.errors import RuleError


LABELLED_KINDS = ("diagnosis", "lint", "audit")

# Functions a condition may call; everything else is refused at load time.
FUNCTIONS = {"abs": abs, "min": min, "max": max}


def families(root: Path | None = None) -> list[str]:
    """The rule families: each folder of rules/ with a fact catalogue."""
    base = root or rules_dir()
    return sorted(p.parent.name for p in base.glob("*/facts.yaml"))


def rules_dir() -> Path:
    """The knowledge: inside the installed package, or at the repository root in a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "rules"


def read_yaml(path: Path) -> Any:
    import yaml  # here, not at import: a cached knowledge base needs no YAML at all

    try:
        with path.open("rb") as fh:
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RuleError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_settings_file(name: str, model: type, path: str | None = None):
    """rules/<name>.yaml (or `path`) validated by a pydantic model: the numbers of lr-find and
    search live in the rules too; unknown keys are an error naming the field."""
    file = Path(path) if path else rules_dir() / f"{name}.yaml"
    try:
        data = read_yaml(file)
    except OSError as exc:
        raise RuleError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RuleError(f"{file}: {_first_error(exc)}") from None


@dataclass
class KnowledgeBase:
    """One family of rules (diagnose, check, audit ...) with its catalogue and tables."""

    family: str
    catalogue: Catalogue
    rules: list[Rule]  # in evaluation order: a rule runs after every rule that concludes its inputs
    labels: list[str]
    importance: dict[str, dict[str, Any]]
    inputs: dict[str, set[str]] = field(default_factory=dict)  # rule code -> facts its `when` reads
    quoted: dict[str, list[str]] = field(default_factory=dict)  # rule code -> facts its message quotes

    def rule(self, code_or_name: str) -> Rule | None:
        key = code_or_name.strip()
        for rule in self.rules:
            if key.upper() == rule.code or key.lower() == rule.name:
                return rule
        return None


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class _ConditionChecker(ast.NodeVisitor):
    """Refuse anything but comparisons, boolean logic and arithmetic over catalogued facts."""

    _ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
                ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Name, ast.Load, ast.Constant,
                ast.Call, ast.Tuple, ast.List)

    def __init__(self, facts: dict[str, FactSpec], where: str):
        self.facts, self.where, self.names = facts, where, set()

    def fail(self, msg: str) -> None:
        raise RuleError(f"{self.where}: {msg}")

    def generic_visit(self, node: ast.AST) -> None:
        if not isinstance(node, self._ALLOWED):
            self.fail(f"'{type(node).__name__}' is not allowed in a condition")
        super().generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords:
            self.fail(f"only {', '.join(FUNCTIONS)} may be called in a condition")
        for arg in node.args:
            self.visit(arg)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("True", "False", "None"):
            return
        if node.id not in self.facts:
            self.fail(f"unknown fact '{node.id}'{_suggest(node.id, list(self.facts))}")
        self.names.add(node.id)

    def type_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.facts[node.id].type if node.id in self.facts else None
        if isinstance(node, ast.Constant):
            return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(node.value))
        if isinstance(node, (ast.BinOp, ast.Call)) or (
                isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)):
            return "float"
        if isinstance(node, (ast.Compare, ast.BoolOp)) or isinstance(node, ast.UnaryOp):
            return "bool"
        return None

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self._require_bool(value)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._require_bool(node.operand)
        self.generic_visit(node)

    def _require_bool(self, node: ast.AST) -> None:
        kind = self.type_of(node)
        if kind not in (None, "bool"):
            self.fail(f"'{ast.unparse(node)}' is a {kind}, not a condition; compare it to a value")

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:]):
            self._check_pair(op, left, right)
        self.generic_visit(node)

    def _check_pair(self, op: ast.cmpop, left: ast.AST, right: ast.AST) -> None:
        lt, rt = self.type_of(left), self.type_of(right)
        numeric = {"int", "float"}
        if isinstance(op, (ast.In, ast.NotIn)):
            return
        if lt is None or rt is None:
            return
        if isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and not (lt in numeric and rt in numeric):
            self.fail(f"'{ast.unparse(left)} {type(op).__name__} {ast.unparse(right)}' orders a "
                      f"{lt} against a {rt}; only numbers can be ordered")
        if (lt in numeric) != (rt in numeric) or (lt not in numeric and lt != rt):
            self.fail(f"'{ast.unparse(left)}' ({lt}) compared with '{ast.unparse(right)}' ({rt})")
        for name_node, const in ((left, right), (right, left)):
            if isinstance(name_node, ast.Name) and isinstance(const, ast.Constant):
                allowed = self.facts[name_node.id].values
                if allowed and const.value not in allowed:
                    self.fail(f"'{name_node.id}' is never {const.value!r}; its values are "
                              f"{', '.join(allowed)}{_suggest(str(const.value), allowed)}")


def _check_rule(rule: Rule, catalogue: Catalogue, labels: list[str],
                importance: dict[str, dict[str, Any]]) -> set[str]:
    where = f"{rule.file}: rule {rule.code} ({rule.name})"
    try:
        tree = ast.parse(rule.when, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"{where}: `when` is not a valid expression ({exc.msg})") from None
    checker = _ConditionChecker(catalogue.facts, f"{where}, `when`")
    checker.visit(tree)
    checker._require_bool(tree.body)
    for fact, value in rule.concludes.items():
        spec = catalogue.facts.get(fact)
        if spec is None or spec.source != "derived":
            known = [n for n, s in catalogue.facts.items() if s.source == "derived"]
            raise RuleError(f"{where}: concludes '{fact}', which is not a derived fact in the "
                            f"catalogue{_suggest(fact, known)}")
    for text, part in ((rule.message, "message"), (rule.advice, "advice")):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
        except ValueError as exc:
            raise RuleError(f"{where}: {part} template is malformed ({exc})") from None
        for fld in fields:
            if fld not in catalogue.facts:
                raise RuleError(f"{where}: {part} quotes unknown fact '{fld}'"
                                f"{_suggest(fld, list(catalogue.facts))}")
    for fact in rule.evidence:
        if fact not in catalogue.facts:
            raise RuleError(f"{where}: evidence names unknown fact '{fact}'"
                            f"{_suggest(fact, list(catalogue.facts))}")
    if rule.kind in LABELLED_KINDS or rule.label is not None:
        if rule.label not in labels:
            raise RuleError(f"{where}: label {rule.label!r} is not one of {', '.join(labels) or '(none)'}")
    for target, changes in rule.fix.items():
        for key, value in changes.items():
            if isinstance(value, str) and value.startswith("=") and value[1:] not in catalogue.facts:
                raise RuleError(f"{where}: fix sets {target}.{key} from unknown fact '{value[1:]}'"
                                f"{_suggest(value[1:], list(catalogue.facts))}")
    for param in rule.tune:
        if param not in importance:
            raise RuleError(f"{where}: tunes unknown parameter '{param}'"
                            f"{_suggest(param, list(importance))}")
    return checker.names


def _order(rules: list[Rule], inputs: dict[str, set[str]], family: str) -> list[Rule]:
    """Stratify: a rule that reads a derived fact runs after all rules that conclude it."""
    producers: dict[str, list[str]] = {}
    for rule in rules:
        for fact in rule.concludes:
            producers.setdefault(fact, []).append(rule.code)
    by_code = {r.code: r for r in rules}
    ordered: list[Rule] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(code: str, chain: list[str]) -> None:
        if state.get(code) == 2:
            return
        if state.get(code) == 1:
            raise RuleError(f"rules/{family}: rules depend on each other in a cycle: "
                            f"{' -> '.join(chain + [code])}")
        state[code] = 1
        for fact in sorted(inputs[code]):
            for producer in producers.get(fact, []):
                if producer != code:
                    visit(producer, chain + [code])
        state[code] = 2
        ordered.append(by_code[code])

    for rule in rules:
        visit(rule.code, [])
    return ordered


def _cache_file(folder: Path, base: Path) -> Path | None:
    """Where a validated knowledge base is kept between runs, keyed by the rule files' sizes and
    times, advisor's version and the engine's own modules (whose classes the pickle holds):
    loading YAML and checking every rule costs more than reading a pickle, and `diagnose` must
    start fast."""
    import zlib

    from advisor import __version__

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    files = sorted([*folder.glob("*.yaml"), *(base / "tables").glob("*.yaml")]) + sorted(
        Path(__file__).parent.glob("*.py"))
    text = f"{__version__}|{folder.resolve()}" + "".join(
        f"|{p.name}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files)
    data = text.encode()
    key = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # zlib is loaded already; hashlib is not
    return Path(root) / "advisor" / f"kb-{folder.name}-{key}.pickle"


@lru_cache(maxsize=None)
def load_knowledge(family: str, root: str | None = None) -> KnowledgeBase:
    """The knowledge base of a family, validated; from the cache when the rule files are unchanged."""
    import pickle

    base = Path(root) if root else rules_dir()
    folder = base / family
    try:
        cache = _cache_file(folder, base) if folder.is_dir() else None
    except OSError:  # a rule file vanished while listed: load without a cache, which names it
        cache = None
    if cache is not None:
        try:  # the cache folder may be unreadable (HOME=/root under another user): no cache then
            with cache.open("rb") as fh:
                kb = pickle.load(fh)
            if isinstance(kb, KnowledgeBase):
                return kb
        except Exception:  # missing, unreadable, stale or broken: rebuilt, never trusted
            pass
    kb = _load_knowledge(family, base)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                pickle.dump(kb, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cache)
            for old in cache.parent.glob(f"kb-{family}-*.pickle"):  # earlier versions of the rules
                if old != cache:
                    old.unlink(missing_ok=True)
        except OSError:  # a read-only home: just no cache
            pass
    return kb


def _load_knowledge(family: str, base: Path) -> KnowledgeBase:
    """Load rules/<family>/: facts.yaml (the catalogue) and every other *.yaml (rules)."""
    folder = base / family
    if not folder.is_dir():
        raise RuleError(f"{folder}: no such rule family")
    try:
        catalogue = Catalogue.model_validate(read_yaml(folder / "facts.yaml"))
    except ValidationError as exc:
        raise RuleError(f"{folder / 'facts.yaml'}: {_first_error(exc)}") from None
    tables = read_yaml(base / "tables" / "importance.yaml")
    importance = tables["parameters"]
    labels = catalogue.labels

    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "facts.yaml":
            continue
        data = read_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise RuleError(f"{path}: expected a mapping with a 'rules' list")
        for i, raw in enumerate(data["rules"]):
            ident = raw.get("code", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
            try:
                rule = Rule.model_validate(raw)
            except ValidationError as exc:
                raise RuleError(f"{path}: rule {ident}: {_first_error(exc)}") from None
            rule.file = str(path.relative_to(base.parent)) if base.parent in path.parents else str(path)
            for key in (rule.code, rule.name):
                if key in seen:
                    raise RuleError(f"{path}: rule {rule.code}: '{key}' is already used in {seen[key]}")
                seen[key] = str(path)
            tiers = [importance[p]["tier"] for p in rule.tune if p in importance]
            rule.tier = min(tiers) if tiers else None
            rules.append(rule)
    inputs = {r.code: _check_rule(r, catalogue, labels, importance) for r in rules}
    quoted = {r.code: [f for _, f, _, _ in string.Formatter().parse(r.message) if f] for r in rules}
    return KnowledgeBase(family, catalogue, _order(rules, inputs, family), labels, importance,
                         inputs, quoted)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"field '{loc}': {err['msg']}" if loc else err["msg"]
