"""Output files never destroy what the user had: F1-F6 and F15 of reports/bad-input-2026-11.md.

One writer (advisor/commands/common.py: write_output) for every --report, --plot, --out and --fix:
never onto an input (by resolved path and by inode, the log inside a folder and the SQLite file
behind a URL included); an existing file only with --force, never a read-only one, keeping its
mode; a symlink written through; a device, FIFO or our own stdout written to, never replaced;
nothing half-written left behind. And `search --storage` refuses a database that is not Optuna's.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, RUNS, run_cli

LOG = RUNS / "overfitting.keras.csv"
STUDY = FIXTURES / "studies" / "sound.db"
BAD_SPACE = FIXTURES / "spaces" / "bad-linear-scale.yaml"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
# As root, a regression here would replace the system's /dev/null or /dev/stdout: root tests the
# same paths through a stand-in (mknod, a symlink to /proc/self/fd/1) in tmp_path instead.
NOT_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="as root, a failure would replace the real /dev node")


def refused(result, *words: str) -> None:
    """Exit 2 with one line `advisor: ...` that names the path and says why."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advisor: "), result.err
    assert "internal error" not in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*advisor-tmp*")]


@pytest.fixture
def run_csv(tmp_path: Path) -> Path:
    path = tmp_path / "of.csv"
    shutil.copy(LOG, path)
    return path


# --------------------------------------------------------------------------- F1: the log inside a folder

@pytest.mark.parametrize("option", ["--report", "--plot"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_diagnose_never_writes_over_the_log_it_found_in_a_folder(tmp_path, option, force) -> None:
    if option == "--plot":
        pytest.importorskip("matplotlib")
    folder = tmp_path / "lt"
    shutil.copytree(RUNS / "healthy.lightning", folder)
    log = folder / "version_0" / "metrics.csv"
    before = log.read_bytes()
    result = run_cli("diagnose", folder, option, log, *force)
    refused(result, str(log), "input")
    assert log.read_bytes() == before
    no_temporaries(tmp_path)


def test_plan_from_a_folder_never_writes_over_its_log(tmp_path) -> None:
    folder = tmp_path / "lt3"
    shutil.copytree(RUNS / "overfitting.lightning", folder)
    log = folder / "version_0" / "metrics.csv"
    before = log.read_bytes()
    result = run_cli("plan", "--budget", "50h", "--trial-time", "30m", "--gpus", "1", "--from", folder,
                     "--emit", "yaml", "--out", log, "--force")
    refused(result, str(log), "input")
    assert log.read_bytes() == before


def test_an_input_reached_by_a_hard_link_or_symlink_is_refused(tmp_path, run_csv) -> None:
    before = run_csv.read_bytes()
    os.link(run_csv, tmp_path / "hard.md")
    (tmp_path / "soft.md").symlink_to(run_csv)
    for out in ("hard.md", "soft.md"):
        refused(run_cli("diagnose", run_csv, "--report", tmp_path / out, "--force"), out, "input")
    assert run_csv.read_bytes() == before


# --------------------------------------------------------------------------- F2: the SQLite file behind a URL

@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_audit_of_a_url_never_writes_over_the_study(tmp_path, scheme) -> None:
    pytest.importorskip("optuna")
    db = tmp_path / "victim.db"
    shutil.copy(STUDY, db)
    before = db.read_bytes()
    for force in ([], ["--force"]):
        refused(run_cli("audit", f"{scheme}:///{db}", "--report", db, *force), str(db), "input")
    assert db.read_bytes() == before


# --------------------------------------------------------------------------- F3: the user's code under lr-find

@pytest.mark.parametrize("victim", ["victim_task.py", "victim_helper.py"])
def test_lr_find_plot_never_writes_over_the_task_or_what_it_imports(tmp_path, victim) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    shutil.copy(ROOT / "tests" / "tasks" / "good_task.py", tmp_path / "victim_task.py")
    (tmp_path / "victim_helper.py").write_text("SEED = 0\n")
    task = tmp_path / "victim_task.py"
    task.write_text("import victim_helper  # noqa: F401\n" + task.read_text())
    befores = {p: p.read_bytes() for p in tmp_path.iterdir()}
    out = tmp_path / victim
    result = run_cli("lr-find", f"{task}:build", "--device", "cpu", "--iters", "10", "--plot", out, "--force")
    refused(result, str(out), "input")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == befores


def test_lr_find_refuses_an_existing_plot_before_the_test_runs(tmp_path) -> None:
    out = tmp_path / "lr.png"
    out.write_text("mine\n")
    # no torch needed: the refusal comes before the task is imported
    refused(run_cli("lr-find", "--demo", "--plot", out), str(out), "--force")
    assert out.read_text() == "mine\n"


# --------------------------------------------------------------------------- F4: devices, FIFOs, symlinks

@ROOT_ONLY
def test_a_device_node_is_written_to_never_replaced(tmp_path, run_csv) -> None:
    node = tmp_path / "fakenull"
    os.mknod(node, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # a stand-in for /dev/null
    result = run_cli("diagnose", run_csv, "--report", node, "--fail-on", "never")
    assert result.code == 0, result.err
    st = node.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    no_temporaries(tmp_path)


@NOT_ROOT
def test_dev_null_is_written_to(run_csv) -> None:
    result = run_cli("diagnose", run_csv, "--report", "/dev/null", "--fail-on", "never")
    assert result.code == 0, result.err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_written_to_never_replaced(tmp_path, run_csv) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run_cli("diagnose", run_csv, "--report", fifo, "--fail-on", "never")
    reader.join(10)
    assert result.code == 0, result.err
    assert got and got[0].startswith(b"# advisor diagnosis")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def _advisor(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *map(str, args)], cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def _stdout_link(tmp_path: Path) -> Path:
    link = tmp_path / "mystdout"
    link.symlink_to("/proc/self/fd/1")
    return link


def test_report_through_a_symlink_to_stdout(tmp_path, run_csv) -> None:
    link = _stdout_link(tmp_path)
    for out in [link] + (["/dev/stdout"] if os.geteuid() else []):
        proc = _advisor("diagnose", run_csv, "--report", out, "--json", "--fail-on", "never", capture_output=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(b"# advisor diagnosis") and b'"diagnoses"' in proc.stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


def test_report_to_stdout_redirected_to_a_file(tmp_path, run_csv) -> None:
    """`advisor diagnose run.csv --report /dev/stdout > out.md`: no --force, report then JSON."""
    target = tmp_path / "out.md"
    out = "/dev/stdout" if os.geteuid() else _stdout_link(tmp_path)
    with target.open("wb") as fh:
        proc = _advisor("diagnose", run_csv, "--report", out, "--json", "--fail-on", "never",
                        stdout=fh, stderr=subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    text = target.read_text()
    assert text.startswith("# advisor diagnosis") and '"diagnoses"' in text


def test_a_symlink_is_written_through_to_its_target(tmp_path, run_csv) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "r.md"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "r.md"
    link.symlink_to(target)
    refused(run_cli("diagnose", run_csv, "--report", link), str(link), "--force")
    assert target.read_text() == "old\n"
    assert run_cli("diagnose", run_csv, "--report", link, "--force", "--fail-on", "never").code == 0
    assert link.is_symlink() and target.read_text().startswith("# advisor diagnosis")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    no_temporaries(tmp_path)


# --------------------------------------------------------------------------- F5: existing and read-only files

def test_an_existing_report_is_replaced_only_with_force_keeping_its_mode(tmp_path, run_csv) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("precious notes\n")
    notes.chmod(0o600)
    refused(run_cli("diagnose", run_csv, "--report", notes), "notes.md", "already exists", "--force")
    assert notes.read_text() == "precious notes\n"
    assert run_cli("diagnose", run_csv, "--report", notes, "--force", "--fail-on", "never").code == 0
    assert notes.read_text().startswith("# advisor diagnosis")
    assert stat.S_IMODE(notes.stat().st_mode) == 0o600
    no_temporaries(tmp_path)


def test_a_read_only_file_is_never_replaced(tmp_path, run_csv) -> None:
    keep = tmp_path / "keep.md"
    keep.write_text("mine\n")
    keep.chmod(0o444)
    for force in ([], ["--force"]):
        refused(run_cli("diagnose", run_csv, "--report", keep, *force), "keep.md", "read-only")
    assert keep.read_text() == "mine\n" and stat.S_IMODE(keep.stat().st_mode) == 0o444


def test_an_existing_plot_is_replaced_only_with_force(tmp_path, run_csv) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "p.png"
    plot.write_text("mine\n")
    refused(run_cli("diagnose", run_csv, "--plot", plot), "p.png", "--force")
    assert plot.read_text() == "mine\n"
    assert run_cli("diagnose", run_csv, "--plot", plot, "--force", "--fail-on", "never").code == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_audit_report_is_replaced_only_with_force(tmp_path) -> None:
    pytest.importorskip("optuna")
    report = tmp_path / "audit.md"
    report.write_text("mine\n")
    refused(run_cli("audit", STUDY, "--report", report), "audit.md", "--force")
    assert report.read_text() == "mine\n"
    assert run_cli("audit", STUDY, "--report", report, "--force", "--fail-on", "never").code == 0
    assert report.read_text() != "mine\n"


def test_nothing_half_written_is_left_behind(tmp_path) -> None:
    from advisor.commands.common import write_output

    def broken(fh) -> None:
        fh.write(b"half")
        raise RuntimeError("the writer failed midway")

    old = tmp_path / "old.md"
    old.write_text("whole\n")
    for path in (old, tmp_path / "new.md"):
        with pytest.raises(RuntimeError):
            write_output(path, None, [], writer=broken, force=True)
    assert old.read_text() == "whole\n" and not (tmp_path / "new.md").exists()
    no_temporaries(tmp_path)


# --------------------------------------------------------------------------- F6: search into someone's database

def test_search_refuses_a_sqlite_file_with_tables_that_are_not_optunas(tmp_path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    db = tmp_path / "mydata.db"
    con = sqlite3.connect(db)
    con.execute("create table foo(a)")
    con.commit()
    con.close()
    before = db.read_bytes()
    task = ROOT / "tests" / "tasks_search" / "normal_task.py"
    result = run_cli("search", task, "--params", "lr", "--epochs", "1", "--trials", "1", "--top-k", "0",
                     "--device", "cpu", "--storage", db, "--study", "x")
    refused(result, str(db), "foo")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata.db"]


# --------------------------------------------------------------------------- F15: check --fix --in-place

def _space(path: Path, mode: int) -> Path:
    shutil.copy(BAD_SPACE, path)
    path.chmod(mode)
    return path


def test_check_in_place_keeps_the_mode(tmp_path) -> None:
    space = _space(tmp_path / "priv.yaml", 0o600)
    before = space.read_text()
    result = run_cli("check", space, "--fix", "--in-place", "--fail-on", "never")
    assert result.code == 0, result.err
    assert space.read_text() != before and stat.S_IMODE(space.stat().st_mode) == 0o600
    no_temporaries(tmp_path)


def test_check_in_place_refuses_a_read_only_file(tmp_path) -> None:
    space = _space(tmp_path / "ro.yaml", 0o444)
    before = space.read_text()
    refused(run_cli("check", space, "--fix", "--in-place"), "ro.yaml", "read-only")
    assert space.read_text() == before and stat.S_IMODE(space.stat().st_mode) == 0o444


def test_check_in_place_writes_through_a_symlink(tmp_path) -> None:
    (tmp_path / "real").mkdir()
    real = _space(tmp_path / "real" / "s.yaml", 0o640)
    before = real.read_text()
    link = tmp_path / "link.yaml"
    link.symlink_to(Path("real") / "s.yaml")
    result = run_cli("check", link, "--fix", "--in-place", "--fail-on", "never")
    assert result.code == 0, result.err
    assert link.is_symlink() and real.read_text() != before
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_report_and_plot_on_one_path_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """F36: with --force the plot used to replace the report silently."""
    out = tmp_path / "same.md"
    result = run_cli("diagnose", str(RUNS / "healthy.keras.csv"), "--report", str(out), "--plot", str(out),
                     "--force")
    refused(result, "--report file too")
    assert not out.exists()
