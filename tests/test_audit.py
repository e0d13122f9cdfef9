"""`advisor audit`: every label from its rule on a real study, the sound study clean, CSV input,
bad input (one line, exit 2, nothing created), the JSON shape, and Optuna kept out of imports.

The studies in fixtures/studies/ come from real searches (fixtures/make_studies.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from conftest import FIXTURES, ROOT, Result

STUDIES = FIXTURES / "studies"
PROBLEMS = {"best_at_boundary", "over_pruned", "flat_results", "baseline_wins", "crashed_trials",
            "diverged_region"}


def run_audit(*args: str) -> Result:
    """The CLI's own main() (errors -> one line, exit 2) over an app with the audit command."""
    import advisor.cli as cli
    from advisor.commands import audit

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        """advisor"""

    app.command(epilog=audit.EPILOG)(audit.audit)
    out, err = io.StringIO(), io.StringIO()
    argv, real_app = sys.argv, cli.app
    sys.argv, cli.app = ["advisor", "audit", *map(str, args)], app
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, cli.app = argv, real_app
    return Result(code, out.getvalue(), err.getvalue())


def _json(*args: str) -> dict:
    result = run_audit(*args, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _by_label(doc: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for f in doc["findings"]:
        found.setdefault(f["label"], []).append(f)
    return found


# --------------------------------------------------------------------------- every label

# label -> (study, rule code, parameter or None, words the message must contain)
LABELS = {
    "best_at_boundary": ("boundary.db", "A102", "lr", ["upper edge", "log range"]),
    "over_pruned": ("over_pruned.db", "A201", None, ["46 of 50", "92%"]),
    "flat_results": ("flat.db", "A301", None, ["within 0.17%"]),
    "baseline_wins": ("boundary.db", "A401", None, ["trial #0"]),
    "crashed_trials": ("diverging.db", "A501", None, ["7 of 40", "18%"]),
    "diverged_region": ("diverging.db", "A601", "lr", ["at or above 2.83"]),
    "diminishing_returns": ("flat.db", "A701", None, ["under 0.1%"]),
    "stable_best": ("over_pruned.db", "A704", None, ["trial #17", "good sign"]),
    "importance": ("importance.db", "A801", "dropout", ["tier 4", "learning rate only 1%"]),
    "seeds_pending": ("boundary.db", "A901", None, ["5 of the top 5"]),
}


def test_every_label_of_the_vocabulary_is_exercised() -> None:
    from advisor.engine import load_knowledge

    kb = load_knowledge("audit")
    assert set(LABELS) == set(kb.labels)
    assert {r.label for r in kb.rules} == set(kb.labels)


@pytest.mark.parametrize("label", sorted(LABELS))
def test_label_comes_from_its_rule_on_its_study(label: str) -> None:
    study, code, param, words = LABELS[label]
    doc = _json(STUDIES / study)
    hits = [f for f in doc["findings"] if f["code"] == code]
    assert hits, f"{code} did not fire on {study}: {[f['code'] for f in doc['findings']]}"
    finding = hits[0]
    assert finding["label"] == label and finding["param"] == param
    for word in words:
        assert word in finding["message"], finding["message"]


def test_keep_going_when_the_best_still_improves() -> None:
    codes = {f["code"] for f in _json(STUDIES / "boundary.db")["findings"]}
    assert "A702" in codes and "A701" not in codes


def test_boundary_says_which_way_to_widen_in_the_parameters_own_scale() -> None:
    finding = next(f for f in _json(STUDIES / "boundary.db")["findings"] if f["code"] == "A102")
    assert "from 1e-05 to 0.01" in finding["advice"]  # a decade up, on the log scale
    position = next(e["value"] for e in finding["evidence"] if e["fact"] == "param_best_position")
    assert 0.95 <= position <= 1.0  # log10 position; on a linear scale 9.3e-4 would be 0.93


def test_diverged_region_names_the_threshold_and_a_safe_cap() -> None:
    finding = next(f for f in _json(STUDIES / "diverging.db")["findings"] if f["code"] == "A601")
    assert "below 2.83" in finding["advice"] and "2.41" in finding["advice"]


# --------------------------------------------------------------------------- the sound study

def test_sound_study_raises_none_of_the_problems() -> None:
    doc = _json(STUDIES / "sound.db")
    labels = {f["label"] for f in doc["findings"]}
    assert not labels & PROBLEMS, labels
    assert all(f["severity"] == "info" for f in doc["findings"]), doc["findings"]
    assert "seeds_pending" not in labels  # its top 5 were re-run with 3 seeds each
    assert run_audit(STUDIES / "sound.db", "--fail-on", "warning").code == 0


def test_seed_reruns_are_recognised() -> None:
    doc = _json(STUDIES / "sound.db")
    assert doc["facts"]["top_min_runs"] == 3
    assert doc["study"]["baseline"]["number"] == 0


# --------------------------------------------------------------------------- CSV input

def test_optuna_csv_gives_the_same_audit_as_the_storage() -> None:
    from_db = _json(STUDIES / "diverging.db")
    from_csv = _json(STUDIES / "diverging.optuna.csv")
    assert from_csv["study"]["format"] == "optuna-csv"
    assert from_csv["study"]["states"] == from_db["study"]["states"]
    assert {f["code"] for f in from_csv["findings"]} == {f["code"] for f in from_db["findings"]}
    # no declared space in a CSV: the bounds are those observed
    assert {p["bounds_from"] for p in from_csv["study"]["params"]} == {"observed"}


def test_ray_csv_with_a_baseline_trial() -> None:
    doc = _json(STUDIES / "boundary.ray.csv", "--baseline-trial", "0")
    assert doc["study"]["format"] == "ray-csv" and doc["study"]["metric"] == "val_acc"
    assert doc["study"]["direction"] == "maximize" and doc["study"]["direction_from"] == "metric name"
    assert {"A102", "A401"} <= {f["code"] for f in doc["findings"]}


def test_wandb_csv() -> None:
    doc = _json(STUDIES / "flat.wandb.csv")
    assert doc["study"]["format"] == "wandb-csv"
    assert [p["name"] for p in doc["study"]["params"]] == ["lr", "weight_decay"]
    assert doc["study"]["best"]["number"] == 0  # the export lists the newest run first
    assert "A301" in {f["code"] for f in doc["findings"]}


def test_plain_csv_states_epochs_and_nan(tmp_path: Path) -> None:
    rows = ["number,params_lr,params_optimizer,value,state,user_attrs_epochs"]
    for i in range(12):
        lr = 10 ** (-4 + i * 0.45)
        value = "nan" if lr > 1 else f"{0.5 + 0.03 * i:.3f}"
        rows.append(f"{i},{lr:.6g},{'adam' if i % 2 else 'sgd'},{value},COMPLETE,{1 if lr > 1 else 10}")
    path = tmp_path / "trials.csv"
    path.write_text("\n".join(rows) + "\n")
    doc = _json(path, "--direction", "maximize")
    facts = doc["facts"]
    assert facts["n_nonfinite"] == 3 and facts["n_crashed"] == 3
    assert doc["study"]["direction_from"] == "option"
    assert [p["kind"] for p in doc["study"]["params"]] == ["float", "categorical"]
    assert {"A502", "A601"} <= {f["code"] for f in doc["findings"]}


def test_optuna_journal_file(tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = tmp_path / "journal.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="j", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("lr", 1e-4, 1.0, log=True) - 1.0) ** 2, n_trials=12)
    before = path.read_bytes()
    doc = _json(path)
    assert doc["study"]["format"] == "optuna-journal" and doc["study"]["trials"] == 12
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.log"]


# --------------------------------------------------------------------------- JSON and exit codes

def test_json_shape_and_stdout_holds_only_json() -> None:
    result = run_audit(STUDIES / "diverging.db", "--json")
    doc = json.loads(result.out)
    assert doc["schema_version"] == "advisor.audit/1"
    assert {"findings", "study"} <= set(doc)
    for f in doc["findings"]:
        assert {"code", "label", "severity", "param", "evidence", "advice"} <= set(f)
        assert f["severity"] in ("info", "warning", "error")
        assert all({"fact", "value"} <= set(e) for e in f["evidence"])
    study = doc["study"]
    assert study["name"] == "diverging" and study["direction"] == "minimize"
    assert study["states"] == {"complete": 18, "pruned": 15, "failed": 7, "running": 0}
    assert {p["name"]: p["scale"] for p in study["params"]} == {"lr": "log", "width": "log"}


@pytest.mark.parametrize("study, args, code", [
    ("boundary.db", [], 1),                          # baseline-wins is an error
    ("boundary.db", ["--fail-on", "never"], 0),
    ("flat.db", [], 0),                              # warnings only
    ("flat.db", ["--fail-on", "warning"], 1),
    ("over_pruned.db", ["--fail-on", "warning"], 1),
])
def test_exit_codes(study: str, args: list[str], code: int) -> None:
    assert run_audit(STUDIES / study, *args).code == code


def test_stable_best_alone_never_fails_a_run(tmp_path: Path) -> None:
    from advisor.advice.audit import AuditReport

    report = AuditReport.model_validate(_json(STUDIES / "over_pruned.db"))
    report.findings = [f for f in report.findings if f.label == "stable_best"]
    assert report.findings and report.worst_severity() == -1


def test_terminal_and_markdown_report(tmp_path: Path) -> None:
    out = tmp_path / "audit.md"
    result = run_audit(STUDIES / "boundary.db", "--report", out, "--fail-on", "never")
    assert result.code == 0
    assert "A102 best-at-upper-bound" in result.out and "baseline" in result.out.lower()
    text = out.read_text()
    assert text.startswith("# advisor audit: `boundary`") and "best_at_boundary (lr)" in text


def test_report_never_overwrites_the_study(tmp_path: Path) -> None:
    study = tmp_path / "s.csv"
    study.write_bytes((STUDIES / "diverging.optuna.csv").read_bytes())
    result = run_audit(study, "--report", study)
    assert result.code == 2 and study.read_bytes() == (STUDIES / "diverging.optuna.csv").read_bytes()


# --------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def two_studies(tmp_path_factory) -> Path:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path = tmp_path_factory.mktemp("storage") / "two.db"
    for name in ("alpha", "beta"):
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return path


def _one_line_error(result: Result, *words: str) -> str:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for word in words:
        assert word in lines[0], lines[0]
    assert result.out == ""
    return lines[0]


def test_study_is_chosen_by_name(two_studies: Path) -> None:
    assert _json(two_studies, "--study", "beta")["study"]["name"] == "beta"


def test_missing_study_names_the_available_ones(two_studies: Path) -> None:
    _one_line_error(run_audit(two_studies, "--study", "gamma"), "no study 'gamma'", "alpha, beta")
    _one_line_error(run_audit(two_studies), "--study", "alpha, beta")


BAD_FILES = {
    "novalue.csv": (b"number,params_lr,state\n0,0.1,COMPLETE\n1,0.2,COMPLETE\n", ["no value column", "--metric"]),
    "badvalue.csv": (b"number,params_lr,value,state\n0,0.1,0.5,COMPLETE\n1,0.2,abc,COMPLETE\n", ["row 3", "'abc'"]),
    "header.csv": (b"number,value\n", ["header only"]),
    "empty.csv": (b"", ["empty"]),
    "binary.db": (bytes(range(256)) * 4, ["binary"]),
    "latin1.csv": ("number,value\n0,caf\xe9\n".encode("latin-1"), ["UTF-8"]),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_one_line_exit_2(tmp_path: Path, name: str) -> None:
    content, words = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    _one_line_error(run_audit(path), name, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert path.read_bytes() == content


def test_missing_metric_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("number,params_lr,value\n0,0.1,0.5\n")
    _one_line_error(run_audit(path, "--metric", "val_acc"), "no column 'val_acc'")


def test_sqlite_that_is_not_an_optuna_storage_is_left_alone(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = path.read_bytes()
    _one_line_error(run_audit(path), "other.db", "not an Optuna storage")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.parametrize("form", ["path", "url"])
def test_missing_sqlite_file_is_not_created(tmp_path: Path, form: str) -> None:
    path = tmp_path / "nope.db"
    arg = str(path) if form == "path" else f"sqlite:///{path}"
    _one_line_error(run_audit(arg), "nope.db", "no such file")
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_unreachable_storage_fails_fast() -> None:
    start = time.perf_counter()
    line = _one_line_error(run_audit("postgresql://nohost/db", "--timeout", "3"), "postgresql://nohost/db")
    assert time.perf_counter() - start < 15
    assert "driver" in line or "connect" in line or "no answer" in line


def test_a_storage_that_never_answers_is_given_up_on() -> None:
    from advisor.errors import InputError
    from advisor.ingest.study import with_deadline

    start = time.perf_counter()
    with pytest.raises(InputError, match="no answer from the storage within 0.5 s"):
        with_deadline(lambda: time.sleep(30), 0.5, "postgresql://slowhost/db")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("args, words", [
    (["--direction", "up"], ["--direction", "minimize or maximize"]),
    (["--fail-on", "sometimes"], ["--fail-on"]),
    (["--baseline-trial", "999"], ["--baseline-trial", "no trial number 999"]),
    (["--metric", "val_acc"], ["--metric", "Optuna storage"]),
    (["--timeout", "0"], ["--timeout"]),
])
def test_bad_options(args: list[str], words: list[str]) -> None:
    _one_line_error(run_audit(STUDIES / "flat.db", *args), *words)


def test_storage_files_are_never_written() -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in STUDIES.iterdir()}
    for name in ("boundary.db", "sound.db"):
        run_audit(STUDIES / name, "--json")
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in STUDIES.iterdir()}
    assert after == before


# --------------------------------------------------------------------------- imports and fixtures

def test_importing_the_audit_command_does_not_import_optuna() -> None:
    code = ("import sys, advisor.commands.audit, advisor.ingest.study, advisor.advice.audit, "
            "advisor.render.audit; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'torch', 'sklearn')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == "[]"


def test_fixture_script_makes_a_real_study(tmp_path: Path) -> None:
    """The generator runs and reproduces the over-pruned study's shape (values may differ in the
    last bits on another CPU)."""
    proc = subprocess.run([sys.executable, str(FIXTURES / "make_studies.py"), "--only", "over_pruned",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _json(tmp_path / "over_pruned.db")
    assert doc["study"]["trials"] == 50 and doc["facts"]["pruned_fraction"] > 0.9
