"""How often `advisor check` agrees with a tuning expert on real, labelled W&B sweep configs.

    python bench/bench_sweeps.py ../shared/sweeps
    python bench/bench_sweeps.py fixtures/sweeps --misses --json out.json

DIR holds `labels.json` (per file: `expect`, the mistakes present, every one of which check must
report; `forbid`, labels that would be false alarms), the files in `raw/` (or beside labels.json)
and `SOURCES.md` (a table naming each file's repository). Labels in neither list are *open*:
check may report them or not. A file agrees when every expected label is reported and no
forbidden one is. A file check refuses (exit 2) disagrees: W&B accepted every one of them.

Figures: files that agree; per label, precision (reported where expected / reported where
expected or forbidden) and recall; false alarms (forbidden labels reported) per file; refusals
and crashes. Findings outside the labels' vocabulary are listed apart (not scored).

Nothing here is fitted: check has no thresholds fitted on these files, so there is no
cross-validated figure. The whole set is also the development set, so the honest companion
figure is the score on the files that motivated no change (`--motivation`, a JSON map from each
change to the files that prompted it; fixtures/sweeps/motivation.json by default): those files
played the role of a held-out set for every change.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from advisor.advice.check import check  # noqa: E402  (the function the CLI calls)
from bench_corpus import repositories  # noqa: E402  (the same SOURCES.md table)
from advisor.errors import AdvisorError  # noqa: E402


@dataclass
class Case:
    path: Path
    repo: str
    expect: set[str]
    forbid: set[str]
    found: list[str] = field(default_factory=list)
    inferred: dict[str, Any] = field(default_factory=dict)
    error: str | None = None      # a refusal (one line) or a crash
    crashed: bool = False

    @property
    def agrees(self) -> bool:
        return self.error is None and self.expect <= set(self.found) and not (self.forbid & set(self.found))


def load_cases(folder: Path) -> list[Case]:
    if not (folder / "labels.json").is_file():
        sys.exit(f"bench_sweeps: no labels.json in {folder}")
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    repos = repositories(folder)
    cases = []
    for name, entry in sorted(labels.items()):
        raw = folder / "raw" / name
        cases.append(Case(path=raw if raw.exists() else folder / name, repo=repos.get(name, name),
                          expect=set(entry.get("expect", [])), forbid=set(entry.get("forbid", []))))
    return cases


def measure(cases: list[Case]) -> None:
    """`check` on every file with no context given, as a new user runs it."""
    for case in cases:
        try:
            report, _, _ = check(case.path, {})
            case.found = list(dict.fromkeys(f.label for f in report.findings if f.label))
            case.inferred = {k: v.value for k, v in report.inferred.items()}  # what check said it inferred
        except AdvisorError as exc:
            case.error = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - a crash is a finding of this benchmark
            case.error, case.crashed = f"{type(exc).__name__}: {exc}", True


def vocabulary(cases: list[Case]) -> list[str]:
    return sorted(set().union(*(c.expect | c.forbid for c in cases)))


def report(cases: list[Case], title: str) -> dict[str, Any]:
    vocab = vocabulary(cases)
    n = len(cases)
    per_label = {}
    for label in vocab:
        wanted = [c for c in cases if label in c.expect]
        hit = [c for c in wanted if label in c.found]
        false = [c for c in cases if label in c.forbid and label in c.found]
        said = len(hit) + len(false)
        per_label[label] = {"expected": len(wanted), "found": len(hit), "false_alarms": len(false),
                            "precision": len(hit) / said if said else None,
                            "recall": len(hit) / len(wanted) if wanted else None}
    expected = sum(len(c.expect) for c in cases)
    found = sum(len(c.expect & set(c.found)) for c in cases)
    false_alarms = sum(len(c.forbid & set(c.found)) for c in cases)
    outside = sorted({lab for c in cases for lab in c.found if lab not in vocab})
    return {"title": title, "files": n, "agree": sum(c.agrees for c in cases),
            "agreement": sum(c.agrees for c in cases) / n if n else 0.0,
            "expected_labels": expected, "expected_found": found,
            "recall": found / expected if expected else 1.0,
            "false_alarms": false_alarms, "false_alarms_per_file": false_alarms / n if n else 0.0,
            "refused": sum(1 for c in cases if c.error and not c.crashed),
            "crashed": sum(1 for c in cases if c.crashed),
            "outside_vocabulary": outside, "per_label": per_label}


def print_report(r: dict[str, Any]) -> None:
    print(f"\n== {r['title']} ==")
    print(f"files agreeing   {r['agree']}/{r['files']} = {r['agreement']:.1%}")
    print(f"expected labels  found {r['expected_found']}/{r['expected_labels']} = recall {r['recall']:.1%}")
    print(f"false alarms     {r['false_alarms']} in {r['files']} files = {r['false_alarms_per_file']:.3f} per file")
    print(f"refused {r['refused']}, crashed {r['crashed']}")
    if r["outside_vocabulary"]:
        print(f"reported outside the labels' vocabulary (not scored): {', '.join(r['outside_vocabulary'])}")
    print(f"{'label':24} {'expected':>8} {'found':>6} {'false':>6} {'precision':>9} {'recall':>7}")
    for label, s in r["per_label"].items():
        p = "-" if s["precision"] is None else f"{s['precision']:.0%}"
        rc = "-" if s["recall"] is None else f"{s['recall']:.0%}"
        print(f"{label:24} {s['expected']:8} {s['found']:6} {s['false_alarms']:6} {p:>9} {rc:>7}")


def print_files(cases: list[Case], only_misses: bool) -> None:
    print("\n== files ==" if not only_misses else "\n== files that disagree ==")
    for case in cases:
        if only_misses and case.agrees:
            continue
        if case.error:
            print(f"{case.path.name}: {'CRASH' if case.crashed else 'refused'}: {case.error}")
            continue
        missed = sorted(case.expect - set(case.found))
        false = sorted(case.forbid & set(case.found))
        mark = "ok  " if case.agrees else "MISS"
        print(f"{mark} {case.path.name}: found {sorted(case.found)}"
              + (f"; missed {missed}" if missed else "") + (f"; false {false}" if false else "")
              + (f"; inferred {case.inferred}" if case.inferred else ""))


def motivated_files(path: Path | None) -> dict[str, list[str]]:
    if path is None or not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {change: list(files) for change, files in data.get("changes", {}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="folder with labels.json, raw/ and SOURCES.md")
    ap.add_argument("--misses", action="store_true", help="list only the files that disagree")
    ap.add_argument("--motivation", type=Path, default=ROOT / "fixtures" / "sweeps" / "motivation.json",
                    help="JSON {changes: {change: [files]}}: also score the files that motivated no change")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)

    cases = load_cases(args.dir)
    measure(cases)
    print(f"{len(cases)} labelled sweeps from {len({c.repo for c in cases})} repositories ({args.dir})")
    results = [report(cases, "all files")]
    changes = motivated_files(args.motivation)
    if changes:
        touched = set().union(*map(set, changes.values()))
        rest = [c for c in cases if c.path.name not in touched]
        results.append(report(rest, f"files that motivated no change ({len(rest)}; a held-out set for every change)"))
    for r in results:
        print_report(r)
    print_files(cases, args.misses)
    if changes:
        print("\n== changes and the files that motivated them ==")
        for change, files in changes.items():
            print(f"- {change}: {', '.join(files) or 'none (a general rule)'}")
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
