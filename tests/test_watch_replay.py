"""advisor watch on real logs: replayed epoch by epoch, the Monitor's findings are the ones
`diagnose` gives on the file cut at that point; and the figures of the issue (diverged early,
healthy runs quiet) on the corpus copies in fixtures/real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench_watch  # noqa: E402

REAL = FIXTURES / "real"
POINTS = 8  # judgements compared per file (evenly spread, and every one that brought an event)
MOST_ROWS = 3000
LONGEST = 150  # epochs: longer logs are left to bench/bench_watch.py (a replay costs a judgement per epoch)


def _cases():
    out = []
    for folder in ("csv", "keras", "lightning", "det", "hf"):
        for path in sorted((REAL / folder).iterdir()):
            if path.suffix == ".csv" or (folder == "hf" and path.suffix == ".json" and path.name != "labels.json"):
                out.append(pytest.param(path, id=path.name))
    return out


@pytest.mark.parametrize("path", _cases())
def test_replayed_findings_are_diagnose_on_the_file_cut_there(path: Path) -> None:
    raw = bench_watch.raw_table(path)
    if raw.n_rows > MOST_ROWS:
        pytest.skip(f"more than {MOST_ROWS} rows")
    from advisor.ingest import load_runs

    if sum(len(run.epochs) for run in load_runs(path)) > LONGEST:
        pytest.skip(f"more than {LONGEST} epochs")
    result = bench_watch.compare(path, POINTS)
    if result is None:
        pytest.skip("rows of this file are not lines of it")
    compared, mismatches = result
    assert compared >= 1, "the replay judged nothing"
    assert mismatches == []


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
