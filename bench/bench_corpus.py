"""How often `advisor diagnose` agrees with a practitioner on real, labelled training logs.

    python bench/bench_corpus.py ../shared/corpus/{keras,lightning,hf,det,csv}
    python bench/bench_corpus.py ../shared/corpus --cv 5 --misses

Each DIR holds `labels.json` (per file: `expect`, labels any of which is right; `forbid`, labels
that mislead; `scored`), the files (in `raw/`, or beside labels.json as in fixtures/real/) and
`SOURCES.md` (a table naming each file's repository); a folder holding such folders is taken
whole. A file agrees when one expected
label is among the labels `diagnose` reports and no forbidden one is.

Two figures, side by side:
- in-sample: the thresholds of rules/ fitted on every file, then scored on the same files;
- cross-validated: thresholds fitted on k-1 folds and scored on the held-out fold, the folds
  grouped by repository (a repository's files never on both sides), every file held out once.
The fit is a coordinate search over the `thresholds` of rules/diagnose/facts.yaml, each within
its `grid`, starting from each threshold's `prior` (the rubric's or the guide's value), never
from the shipped values (those were fitted on every file), and only through values under which
every rule's own examples (the fixtures and facts in rules/diagnose/*.yaml) still hold. The thresholds rules/ ships are the
ones fitted on all files (the in-sample fit); the run says so when they differ.

Nothing here is tuned per file: the same rules, the same thresholds for every log.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advisor.advice.diagnosis import diagnose  # noqa: E402  (the function the CLI calls)
from advisor.engine import load_knowledge  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402

LABELS = ("diverged", "unstable", "overfitting", "underfitting", "slow_convergence", "plateau",
          "not_learning", "healthy", "insufficient_data")


@dataclass
class Case:
    path: Path
    family: str
    repo: str
    expect: set[str]
    forbid: set[str]
    parts: list[dict[str, Any]] = field(default_factory=list)  # facts of each run in the file
    error: str | None = None     # a refusal (one line) or a crash
    crashed: bool = False


def find_dirs(dirs: list[str]) -> list[Path]:
    found: list[Path] = []
    for d in map(Path, dirs):
        if (d / "labels.json").is_file():
            found.append(d)
        else:
            found.extend(sorted(p.parent for p in d.glob("*/labels.json")))
    if not found:
        sys.exit(f"bench_corpus: no labels.json in {', '.join(dirs)}")
    return found


def repositories(folder: Path) -> dict[str, str]:
    """file -> repository, from the SOURCES.md table (the first two cells of each row)."""
    table: dict[str, str] = {}
    sources = folder / "SOURCES.md"
    if sources.is_file():
        for line in sources.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and re.match(r"^[\w.-]+/[\w.-]+$", cells[1]):
                table[cells[0]] = cells[1]
    return table


def load_cases(dirs: list[Path]) -> list[Case]:
    cases = []
    for folder in dirs:
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        repos = repositories(folder)
        for name, entry in sorted(labels.items()):
            if not entry.get("scored", True):
                continue
            raw = folder / "raw" / name
            cases.append(Case(path=raw if raw.exists() else folder / name, family=folder.name,
                              repo=repos.get(name, f"{folder.name}/{name}"),
                              expect=set(entry["expect"]), forbid=set(entry.get("forbid", []))))
    return cases


def measure(cases: list[Case]) -> None:
    """Read every file once and keep the facts of each run in it (the rules run later)."""
    for case in cases:
        try:
            report, _ = diagnose([case.path], {})
            case.parts = [run.facts for run in report.runs]
        except AdvisorError as exc:
            case.error = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - a crash is a finding of this benchmark
            case.error, case.crashed = f"{type(exc).__name__}: {exc}", True


def predict(kb, case: Case, thresholds: dict[str, float]) -> list[str]:
    """The labels diagnose reports for the file, most important first. A file holding several
    runs (appended or side by side) is judged by its worst run, as the JSON lists it first:
    the run whose first diagnosis ranks first (by severity, then label; the earlier run on a tie),
    among the runs long enough to judge."""
    from advisor.advice.diagnosis import rank_findings
    from advisor.engine import evaluate

    parts = []
    for facts in case.parts:
        findings, _ = evaluate(kb, {**facts, **thresholds})
        ranked = rank_findings([f for f in findings if f.kind == "diagnosis" and f.label], kb.labels)
        if ranked:
            parts.append(ranked)
    if not parts:
        return []
    # a fragment too short to judge says nothing about the file when another run was judged
    judged = [ranked for ranked in parts if ranked[0].label != "insufficient_data"]
    parts = judged or parts
    first = rank_findings([ranked[0] for ranked in parts], kb.labels)[0]  # sorted() is stable
    worst = next(ranked for ranked in parts if ranked[0] is first)
    return list(dict.fromkeys(f.label for f in worst))


def agrees(case: Case, labels: list[str]) -> bool:
    return bool(case.expect & set(labels)) and not (case.forbid & set(labels))


def score(kb, cases: list[Case], thresholds: dict[str, float]) -> int:
    return sum(agrees(c, predict(kb, c, thresholds)) for c in cases if c.parts)


@dataclass
class Example:
    """A rule's own example (rules/diagnose/*.yaml): facts on which the rule must fire, or not."""
    code: str
    fires: bool
    parts: list[dict[str, Any]]


def rule_examples(kb) -> list[Example]:
    """Every example of every diagnose rule, fixtures measured once. A fit keeps them all true:
    the examples are the rules' unit tests, and calibration may not break them."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    out = []
    for rule in kb.rules:
        for fires, examples in ((True, rule.examples.fires), (False, rule.examples.quiet)):
            for ex in examples:
                if ex.facts is not None:
                    parts = [dict(ex.facts)]
                else:
                    report, _ = diagnose([fixtures / ex.fixture], dict(ex.context))
                    parts = [{**run.facts, **ex.context} for run in report.runs]
                out.append(Example(rule.code, fires, parts))
    return out


def examples_hold(kb, examples: list[Example], thresholds: dict[str, float]) -> bool:
    from advisor.engine import evaluate

    for ex in examples:
        fired = {f.code for facts in ex.parts for f in evaluate(kb, {**facts, **thresholds})[0]}
        if (ex.code in fired) != ex.fires:
            return False
    return True


def fit(kb, cases: list[Case], start: dict[str, float], grids: dict[str, list[float]],
        examples: list[Example] | None = None, rounds: int = 3) -> dict[str, float]:
    """Coordinate search: each threshold in turn set to the grid value that agrees most often,
    among the values that keep every rule example true (ties keep the current value)."""
    best = dict(start)
    current = score(kb, cases, best)
    for _ in range(rounds):
        changed = False
        for name, grid in grids.items():
            for value in grid:
                trial = {**best, name: value}
                s = score(kb, cases, trial)
                if s > current and (examples is None or examples_hold(kb, examples, trial)):
                    best, current, changed = trial, s, True
        if not changed:
            break
    return best


def folds_of(cases: list[Case], k: int) -> list[int]:
    """Fold of each case: repositories spread over k folds by a stable hash of their name."""
    return [zlib.crc32(c.repo.encode()) % k for c in cases]


def report(kb, cases: list[Case], predicted: dict[int, list[str]], title: str) -> dict[str, Any]:
    scored = [i for i, c in enumerate(cases) if c.parts]
    agree = [i for i in scored if agrees(cases[i], predicted[i])]
    # a problem run: one the labels say calling healthy would mislead (RUBRIC: forbid healthy)
    problems = [i for i, c in enumerate(cases) if "healthy" in c.forbid]
    called_healthy = [i for i in problems if "healthy" in predicted[i]]
    first_ok = [i for i in scored if predicted[i] and predicted[i][0] in cases[i].expect]
    per_label = {}
    for label in LABELS:
        said = [i for i in scored if label in predicted[i]]
        right = [i for i in said if label in cases[i].expect]
        wanted = [i for i in scored if label in cases[i].expect]
        misled = [i for i in said if label in cases[i].forbid]
        per_label[label] = {"reported": len(said), "precision": len(right) / len(said) if said else None,
                            "recall": len([i for i in wanted if label in predicted[i]]) / len(wanted) if wanted else None,
                            "forbidden_reported": len(misled), "expected": len(wanted)}
    n = len(cases)
    out = {"title": title, "files": n, "read": len(scored), "agree": len(agree),
           "agreement": len(agree) / n if n else 0.0,
           "first_label_right": len(first_ok) / n if n else 0.0,
           "problem_runs": len(problems), "problem_called_healthy": len(called_healthy),
           "refused": sum(1 for c in cases if c.error and not c.crashed),
           "crashed": sum(1 for c in cases if c.crashed), "per_label": per_label,
           # the same figure per corpus folder (keras, hf, tbml, text ...): where agreement is low
           "per_family": {fam: {"files": sum(c.family == fam for c in cases),
                                "agree": sum(cases[i].family == fam for i in agree)}
                          for fam in sorted({c.family for c in cases})}}
    return out


def print_report(r: dict[str, Any]) -> None:
    print(f"\n== {r['title']} ==")
    print(f"agreement        {r['agree']}/{r['files']} = {r['agreement']:.1%} "
          f"(first label right: {r['first_label_right']:.1%})")
    share = r["problem_called_healthy"] / r["problem_runs"] if r["problem_runs"] else 0.0
    print(f"problem runs called healthy {r['problem_called_healthy']}/{r['problem_runs']} = {share:.1%} "
          f"(runs whose labels forbid 'healthy'; an unread file counts as not called healthy)")
    print(f"read {r['read']}/{r['files']}, refused {r['refused']}, crashed {r['crashed']}")
    if len(r["per_family"]) > 1:
        print("by folder        " + ", ".join(f"{fam} {v['agree']}/{v['files']}" for fam, v in r["per_family"].items()))
    print(f"{'label':18} {'expected':>8} {'reported':>8} {'precision':>9} {'recall':>7} {'misleading':>10}")
    for label, s in r["per_label"].items():
        p = "-" if s["precision"] is None else f"{s['precision']:.0%}"
        rc = "-" if s["recall"] is None else f"{s['recall']:.0%}"
        print(f"{label:18} {s['expected']:8} {s['reported']:8} {p:>9} {rc:>7} {s['forbidden_reported']:10}")


_SHOWN = ("n_epochs", "best_val_fraction", "val_rise", "gap_end", "gap_trend", "train_total_improvement",
          "train_tail_improvement", "val_tail_improvement",
          "val_spikes", "train_epoch_spikes", "train_bump", "val_bump", "metric_swings", "metric_drop", "loss_peak_ratio",
          "spike_count", "train_rise", "train_end_over_best", "judged_on", "end_gain", "end_best_fraction")


def print_misses(cases: list[Case], predicted: dict[int, list[str]]) -> None:
    print("\n== misses (cross-validated) ==")
    for i, case in enumerate(cases):
        if case.error:
            print(f"{case.family}/{case.path.name}: {'CRASH' if case.crashed else 'refused'}: {case.error}")
        elif not agrees(case, predicted[i]):
            facts = case.parts[0]
            shown = ", ".join(f"{k}={facts[k]}" for k in _SHOWN if facts.get(k) is not None)
            print(f"{case.family}/{case.path.name}: said {predicted[i]}, expect {sorted(case.expect)}, "
                  f"forbid {sorted(case.forbid)}\n    {shown}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", help="corpus folders (each with labels.json and raw/), or their parent")
    ap.add_argument("--cv", type=int, default=5, help="folds, grouped by repository (default 5)")
    ap.add_argument("--misses", action="store_true", help="list the files that disagree, with their facts")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)

    kb = load_knowledge("diagnose")
    cases = load_cases(find_dirs(args.dirs))
    t0 = time.perf_counter()
    measure(cases)
    print(f"{len(cases)} labelled files from {len({c.repo for c in cases})} repositories, "
          f"read in {time.perf_counter() - t0:.1f} s")
    shipped_values = kb.catalogue.threshold_values()
    start = kb.catalogue.threshold_values(prior=True)  # every fit starts from the rubric's values
    grids = {name: t.grid for name, t in kb.catalogue.thresholds.items() if t.grid}

    examples = rule_examples(kb)
    if not examples_hold(kb, examples, start):
        sys.exit("bench_corpus: the priors break a rule example (run tests/test_rule_examples.py)")
    shipped = {i: predict(kb, c, shipped_values) for i, c in enumerate(cases)}
    fitted_all = fit(kb, cases, start, grids, examples)
    in_sample = {i: predict(kb, c, fitted_all) for i, c in enumerate(cases)}

    folds = folds_of(cases, args.cv)
    held_out: dict[int, list[str]] = {}
    for k in range(args.cv):
        train = [c for c, f in zip(cases, folds) if f != k]
        fitted = fit(kb, train, start, grids, examples)
        for i, (c, f) in enumerate(zip(cases, folds)):
            if f == k:
                held_out[i] = predict(kb, c, fitted)

    results = [report(kb, cases, shipped, "as shipped (the thresholds in rules/)"),
               report(kb, cases, in_sample, "in-sample (fitted on all files, scored on them)"),
               report(kb, cases, held_out, f"cross-validated ({args.cv} folds grouped by repository)")]
    for r in results:
        print_report(r)
    moved = {k: v for k, v in fitted_all.items() if v != start[k]}
    stale = {k: v for k, v in fitted_all.items() if v != shipped_values[k]}
    print(f"\nthresholds fitted on all files (moved from their priors): {moved or 'none'}")
    if stale:
        print(f"rules/ ships other values than this fit: {stale}")
    if args.misses:
        print_misses(cases, held_out)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "fitted": fitted_all}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
