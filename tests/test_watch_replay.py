"""advisor watch on real logs: replayed epoch by epoch, the Monitor's findings are the ones
`diagnose` gives on the file cut at that point; and the figures of the issue (diverged early,
healthy runs quiet) on the corpus copies in fixtures/real."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from advisor.advice.diagnosis import diagnose

from conftest import FIXTURES, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench_watch  # noqa: E402

REAL = FIXTURES / "real"
POINTS = 8  # judgements compared per file (evenly spread, and every one that brought an event)
MOST_ROWS = 3000
LONGEST = 150  # epochs: longer logs are left to bench/bench_watch.py (a replay costs a judgement per epoch)


def _cut_csv(path: Path, raw):
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


def _cut_hf(path: Path, raw):
    history = json.loads(path.read_text(encoding="utf-8"))["log_history"]
    records = [r for r in history if isinstance(r, dict) and "train_runtime" not in r]
    if len(records) != raw.n_rows:
        return None
    return lambda out, k: out.write_text(json.dumps({"log_history": records[:k]}), encoding="utf-8")


def _cases():
    out = []
    for folder in ("csv", "keras", "lightning", "det", "hf"):
        for path in sorted((REAL / folder).iterdir()):
            if path.suffix == ".csv" or (folder == "hf" and path.suffix == ".json" and path.name != "labels.json"):
                out.append(pytest.param(path, id=path.name))
    return out


def _said(findings) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in findings]


@pytest.mark.parametrize("path", _cases())
def test_replayed_findings_are_diagnose_on_the_file_cut_there(path: Path, tmp_path: Path) -> None:
    raw = bench_watch.raw_table(path)
    if raw.n_rows > MOST_ROWS:
        pytest.skip(f"more than {MOST_ROWS} rows")
    cut = (_cut_hf if path.suffix == ".json" else _cut_csv)(path, raw)
    if cut is None or not bench_watch.replayable(raw):
        pytest.skip("rows of this file are not lines of it")
    from advisor.ingest import load_runs

    if sum(len(run.epochs) for run in load_runs(path)) > LONGEST:
        pytest.skip(f"more than {LONGEST} epochs")
    seen: dict[int, tuple] = {}  # rows judged -> (findings said, facts, brought events)

    def judged(mon, i, events):
        d = mon._diagnosis
        if d is not None and mon.error is None:
            seen[mon.judged_rows] = (_said(d.diagnoses + d.notes), d.facts, bool(events))

    bench_watch.replay(path, judged)
    assert seen, "the replay judged nothing"
    rows = sorted(seen)
    step = max(1, len(rows) // POINTS)
    chosen = sorted(set(rows[::step]) | {r for r in rows if seen[r][2]} | {rows[-1]})
    out = tmp_path / path.name
    for k in chosen:
        cut(out, k)
        report, _ = diagnose([out], {})
        run = report.runs[-1]
        said, facts, _ = seen[k]
        assert said == _said(run.diagnoses + run.notes), f"{path.name} cut after {k} rows"
        assert facts == {n: v for n, v in run.facts.items()}, f"{path.name} cut after {k} rows"


def test_diverging_corpus_runs_are_called_diverged_within_two_epochs() -> None:
    figures = bench_watch.corpus([str(REAL)])
    blown = [d for d in figures["diverging"] if d["blowup_epoch"] is not None]
    assert len(blown) >= 4  # the NaN and explosion runs of several families
    for d in blown:
        assert d["lag"] is not None and 0 <= d["lag"] <= 2, d
    # healthy runs: nothing at warning level while training, wherever diagnose on the finished
    # log agrees that they are healthy
    agreed = [h for h in figures["healthy"] if not h["end"]]
    assert len(agreed) >= 15
    assert [h for h in agreed if h["warnings"]] == []
