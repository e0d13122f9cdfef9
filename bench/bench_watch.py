"""advisor watch: what a judgement costs while a run trains, and how early and how right it is.

    python bench/bench_watch.py cost                       # ms per logged epoch at 1,000 epochs
    python bench/bench_watch.py cost --steps 50            # the same with 50 per-step rows per epoch
    python bench/bench_watch.py corpus fixtures/real       # replay real logs epoch by epoch
    python bench/bench_watch.py corpus ../shared/corpus
    python bench/bench_watch.py compare fixtures/real      # findings = diagnose on the file cut there

cost: a Monitor fed 1,000 epochs (train and validation loss, accuracy, lr), each log() timed;
the figure is the mean of the last 100 calls (at ~1,000 epochs logged) and the largest single one.

corpus: each labelled file is read as `diagnose` reads it, then its rows are given to a Monitor
one by one, as the training loop logged them. Two figures:
- diverging runs (`diverged` among the expected labels): the epochs from the first non-finite or
  exploded value (a finite loss at explode_ratio x its initial value, rules/diagnose) to the
  first `diverged` event;
- healthy runs (`healthy` expected): the events at warning level or above raised while replaying
  (the goal: none).

The same replay is what tests/test_watch_replay.py compares with `diagnose` on the file cut at
each epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advisor.errors import AdvisorError  # noqa: E402
from advisor.watch import Monitor  # noqa: E402


# --------------------------------------------------------------------------- replay

def raw_table(path: Path):
    """The file's raw table, as `diagnose` reads it (before roles, per-epoch grouping and the
    cutting into runs)."""
    from advisor.ingest.readers import read, resolve_path

    return read(resolve_path(path), None)


def rows(raw) -> Iterator[dict[str, Any]]:
    """The raw table's rows as a training loop would have logged them: a cell not logged is
    left out, a logged NaN is float('nan'), text stays text."""
    names = list(raw.columns)
    explicit = {c: raw.explicit_nan.get(c) for c in names}
    columns = [(c, raw.columns[c], explicit[c]) for c in names]
    for i in range(raw.n_rows):
        row: dict[str, Any] = {}
        for name, values, nan_mask in columns:
            v = values[i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if nan_mask is not None and nan_mask[i]:
                    row[name] = math.nan
                continue
            row[name] = v.item() if isinstance(v, np.generic) else v
        yield row


def replayable(raw) -> bool:
    """Rows alone carry the runs of the file: not runs side by side that a reader found from
    the layout (Keras histories of different lengths in one JSON object)."""
    return raw.groups is None


def replay(path: Path, on_judgement=None) -> Monitor:
    """Give the file's rows to a Monitor one by one; on_judgement(monitor, row_index, events)
    after each row that brought a judgement."""
    raw = raw_table(path)
    mon = Monitor(name=str(path))
    for i, row in enumerate(rows(raw)):
        before = mon._judged_rows
        events = mon.log(**row)
        if on_judgement is not None and mon._judged_rows != before:
            on_judgement(mon, i, events)
    return mon


# --------------------------------------------------------------------------- the same as diagnose

def cut_csv(path: Path, raw):
    """A function writing the file's first k rows with the columns logged in them so far (a
    logger writing the file live knows no later names; CSVLogger rewrites its header when one
    comes), every cell as its own text; None when the data lines are not one row each."""
    import csv

    from advisor.ingest.readers import _csv_header

    _, sep, title = _csv_header(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    head = lines[:title]
    table = list(csv.reader([line for line in lines[title:] if line.strip()], delimiter=sep))
    header, data = table[0], table[1:]
    if len(data) != raw.n_rows or any(len(r) != len(header) for r in data):
        return None

    def write(out: Path, k: int) -> None:
        logged = [j for j in range(len(header)) if any(r[j].strip() for r in data[:k])]
        with out.open("w", encoding="utf-8", newline="") as fh:
            fh.writelines(line + "\n" for line in head)
            w = csv.writer(fh, delimiter=sep, lineterminator="\n")
            for r in [header, *data[:k]]:
                w.writerow([r[j] for j in logged])
    return write


def cut_hf(path: Path, raw):
    history = json.loads(path.read_text(encoding="utf-8"))["log_history"]
    records = [r for r in history if isinstance(r, dict) and "train_runtime" not in r]
    if len(records) != raw.n_rows:
        return None
    return lambda out, k: out.write_text(json.dumps({"log_history": records[:k]}), encoding="utf-8")


def said(findings) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in findings]


def compare(path: Path, points: int = 8, tmp: Path | None = None) -> tuple[int, list[str]] | None:
    """Replay `path` and, at up to `points` of its judgements (evenly spread, every one that
    brought an event, the last), run `diagnose` on the file cut after the rows judged then.
    Returns (judgements compared, mismatches), or None for a file whose rows are not its lines
    (console text, JSON lines: their readers' own business)."""
    import tempfile

    from advisor.advice.diagnosis import diagnose

    raw = raw_table(path)
    if path.suffix == ".json" and path.parent.name == "hf":
        cut = cut_hf(path, raw)
    elif path.suffix in (".csv", ".tsv"):
        cut = cut_csv(path, raw)
    else:
        cut = None
    if cut is None or not replayable(raw):
        return None
    seen: dict[int, tuple] = {}  # rows judged -> (findings said, facts, brought events)

    def judged(mon, i, events):
        d = mon._diagnosis
        if d is not None and mon.error is None:
            seen[mon.judged_rows] = (said(d.diagnoses + d.notes), d.facts, bool(events))

    replay(path, judged)
    rows = sorted(seen)
    step = max(1, len(rows) // points)
    chosen = sorted(set(rows[::step]) | {r for r in rows if seen[r][2]} | set(rows[-1:]))
    mismatches = []
    with tempfile.TemporaryDirectory(prefix="advisor-watch-cut-") as folder:
        out = Path(tmp or folder) / path.name
        for k in chosen:
            cut(out, k)
            report, _ = diagnose([out], {})
            run = report.runs[-1]
            if seen[k][0] != said(run.diagnoses + run.notes) or seen[k][1] != run.facts:
                mismatches.append(f"{path.name} cut after {k} rows: watch {seen[k][0]} / diagnose "
                                  f"{said(run.diagnoses + run.notes)}")
    return len(chosen), mismatches


# --------------------------------------------------------------------------- cost

def cost(epochs: int = 1000, steps: int = 0, seed: int = 0) -> dict[str, float]:
    """A Monitor fed `epochs` epochs; with `steps`, that many per-step rows (step, loss, lr)
    before each epoch's row of validation values. The time of each epoch is that of all its
    log() calls."""
    rng = np.random.default_rng(seed)
    mon = Monitor(stop_on=())
    times = []
    for e in range(epochs):
        tl = 2.0 * math.exp(-e / 200) + 0.02 * rng.random()
        vl = tl + 0.1 + 0.03 * rng.random()
        acc = 1.0 - 0.9 * math.exp(-e / 200)
        lr = 1e-3 * (1 - e / epochs)
        t = time.perf_counter()
        if steps:
            for k in range(steps):
                mon.log(epoch=e, step=e * steps + k, loss=tl * (1 + 0.1 * rng.standard_normal()), lr=lr)
            mon.log(epoch=e, step=(e + 1) * steps - 1, val_loss=vl, val_acc=acc)
        else:
            mon.log(epoch=e, train_loss=tl, val_loss=vl, val_acc=acc, lr=lr)
        times.append(time.perf_counter() - t)
    assert mon.error is None, mon.error
    assert mon.diagnosis.epochs == epochs
    ms = np.array(times) * 1e3
    return {"epochs": epochs, "steps": steps, "mean_ms": float(ms.mean()),
            "last100_mean_ms": float(ms[-100:].mean()), "max_ms": float(ms.max()), "total_s": float(ms.sum() / 1e3)}


# --------------------------------------------------------------------------- corpus figures

def labelled_files(dirs: list[str]) -> list[tuple[Path, dict]]:
    out = []
    for d in map(Path, dirs):
        folders = [d] if (d / "labels.json").is_file() else sorted(p.parent for p in d.glob("*/labels.json"))
        for folder in folders:
            labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
            for name, entry in sorted(labels.items()):
                if not entry.get("scored", True):
                    continue
                raw = folder / "raw" / name
                out.append((raw if raw.exists() else folder / name, entry))
    return out


def first_blowup(path: Path) -> int | None:
    """Position (0-based epoch of the run as diagnose reads it) of the first non-finite loss, or
    of the first finite loss at explode_ratio x the initial loss; None when there is neither."""
    from advisor.advice.diagnosis import diagnose

    report, runs = diagnose([path], {})
    run, facts = runs[-1], report.runs[-1].facts
    bad = run.epochs["nonfinite"].to_numpy(dtype=bool)
    candidates = [int(np.argmax(bad))] if bad.any() else []
    l0 = facts.get("loss_initial")
    ratio = Monitor().kb.catalogue.thresholds["explode_ratio"].value
    curve = run.series("train_loss") if run.series("train_loss") is not None else run.series("val_loss")
    if l0 and l0 > 0 and curve is not None:
        over = np.flatnonzero(np.isfinite(curve) & (curve >= ratio * l0))
        if len(over):
            candidates.append(int(over[0]))
    return min(candidates) if candidates else None


def corpus(dirs: list[str]) -> dict[str, Any]:
    diverging, healthy, skipped = [], [], []
    for path, entry in labelled_files(dirs):
        expect = set(entry["expect"])
        if not expect & {"diverged", "healthy"}:
            continue
        try:
            raw = raw_table(path)
            if not replayable(raw):
                skipped.append((path.name, "runs side by side by layout"))
                continue
            mon = replay(path)
            training = len(mon.events)
            mon.finish()
        except AdvisorError as exc:
            skipped.append((path.name, str(exc)))
            continue
        if "diverged" in expect:
            ref = first_blowup(path)
            last = mon._tracker.part  # the run of the file that diagnose's figures are about
            events = [e for e in mon.events if e.event == "new" and e.label == "diverged" and e.part == last]
            at = _position(path, events[0]) if events else None
            lag = None if ref is None or at is None else at - ref
            diverging.append({"file": path.name, "blowup_epoch": ref, "diverged_at": at, "lag": lag,
                              "final": [f.label for f in mon.findings if f.kind == "diagnosis"]})
        if "healthy" in expect:
            # while training: before the log was complete (finish() announces diagnose's last word)
            loud = [e for e in mon.events[:training] if e.event != "cleared" and e.severity in ("warning", "error")]
            end = [f.code for f in mon.findings if f.severity in ("warning", "error")]
            healthy.append({"file": path.name, "warnings": [f"{e.code}@{e.epoch}" for e in loud], "end": end})
    with_blowup = [d for d in diverging if d["blowup_epoch"] is not None]
    on_time = [d for d in with_blowup if d["lag"] is not None and d["lag"] <= 2]
    # healthy runs on which diagnose itself, on the finished log, finds nothing at warning level
    agreed = [h for h in healthy if not h["end"]]
    quiet = [h for h in agreed if not h["warnings"]]
    out = {"diverging": diverging, "healthy": healthy, "skipped": skipped,
           "diverged_within_2": f"{len(on_time)}/{len(with_blowup)}",
           "healthy_quiet": f"{len(quiet)}/{len(agreed)}",
           "healthy_all_quiet": f"{len([h for h in healthy if not h['warnings']])}/{len(healthy)}"}
    return out


def _position(path: Path, event) -> int | None:
    """The 0-based epoch of the finished run at which an event came: the epoch the loop logged
    (a per-step log judged inside its first epoch has rows for periods), else the periods
    diagnose counted then."""
    from advisor.ingest import load_runs

    index = [float(x) for x in load_runs(path)[-1].epochs.index]
    if event.epoch is not None and float(event.epoch) in index:
        return index.index(float(event.epoch))
    return None if event.period is None else event.period - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--epochs", type=int, default=1000)
    c.add_argument("--steps", type=int, default=0, help="per-step rows logged in each epoch")
    m = sub.add_parser("compare")
    m.add_argument("dirs", nargs="+")
    m.add_argument("--points", type=int, default=8)
    k = sub.add_parser("corpus")
    k.add_argument("dirs", nargs="+")
    args = p.parse_args()
    if args.what == "cost":
        r = cost(args.epochs, args.steps)
        per_step = f" ({r['steps']} steps each)" if r["steps"] else ""
        print(f"{r['epochs']} epochs{per_step} logged in {r['total_s']:.2f} s: {r['mean_ms']:.2f} ms per logged epoch on "
              f"average, {r['last100_mean_ms']:.2f} ms at ~{r['epochs']} epochs (mean of the last 100), "
              f"largest {r['max_ms']:.2f} ms")
        return
    if args.what == "compare":
        files = [p for d in args.dirs for p in sorted(Path(d).rglob("*"))
                 if p.is_file() and p.name != "labels.json" and p.suffix in (".csv", ".tsv", ".json")]
        total = same = 0
        for path in files:
            t = time.perf_counter()
            try:
                result = compare(path, args.points)
            except AdvisorError as exc:
                print(f"  {path.name}: refused ({exc})")
                continue
            if result is None:
                continue
            n, mismatches = result
            total += n
            same += n - len(mismatches)
            print(f"  {path.name}: {n - len(mismatches)}/{n} judgements as diagnose ({time.perf_counter() - t:.1f} s)")
            for line in mismatches:
                print("    " + line)
        print(f"judgements equal to diagnose on the file cut there: {same}/{total}")
        return
    r = corpus(args.dirs)
    print("diverging runs (epochs from the first non-finite or exploded value to `diverged`):")
    for d in r["diverging"]:
        print(f"  {d['file']}: blow-up at {d['blowup_epoch']}, diverged raised at {d['diverged_at']}"
              f" (lag {d['lag']}); at the end: {', '.join(d['final'])}")
    print("healthy runs (warnings or errors raised while replaying):")
    for h in r["healthy"]:
        end = f" (diagnose on the finished log: {', '.join(h['end'])})" if h["end"] else ""
        print(f"  {h['file']}: {', '.join(h['warnings']) or 'none'}{end}")
    for name, why in r["skipped"]:
        print(f"  skipped {name}: {why}")
    print(f"diverged within 2 epochs of the blow-up: {r['diverged_within_2']}; "
          f"healthy runs with nothing at warning level raised while training: {r['healthy_quiet']} of those "
          f"diagnose finds healthy on the finished log, {r['healthy_all_quiet']} of all")


if __name__ == "__main__":
    main()
