"""`advisor watch PATH | -`: following a growing log, passing a pipe through, exit codes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, RUNS

KEYS = {"event", "epoch", "label", "code", "severity", "message"}


def watch(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", "watch", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=timeout)


def _json_lines(out: bytes) -> list[dict]:
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert all(set(line) == KEYS for line in lines)
    return lines


def test_a_pipe_is_passed_through_unchanged_with_findings_on_stderr() -> None:
    log = (FIXTURES / "real" / "text" / "x_10_gnn-vgae-nan.log").read_bytes()
    proc = watch("-", stdin=log)
    assert proc.returncode == 0
    assert proc.stdout == log
    err = proc.stderr.decode()
    assert "advisor: epoch 9: new ERROR D101 [diverged] The loss became NaN or infinite at epoch 4" in err
    assert "advisor:   -> Lower the learning rate" in err


def test_json_lines_alone_on_stdout_and_fail_on_exits_1() -> None:
    log = (FIXTURES / "real" / "text" / "x_10_gnn-vgae-nan.log").read_bytes()
    proc = watch("-", "--json", "--fail-on", "error", stdin=log)
    assert proc.returncode == 1
    events = _json_lines(proc.stdout)
    assert {"event": "new", "code": "D101", "label": "diverged", "severity": "error"}.items() <= events[0].items()
    assert proc.stderr == b""


def _writer(path: Path, stop: threading.Event, written: list[int], epochs: int = 60, blow: int = 8) -> None:
    """A training loop writing its CSV log an epoch at a time: falls, explodes at `blow`, NaN later."""
    with path.open("w") as fh:
        fh.write("epoch,loss,val_loss\n")
        fh.flush()
        for e in range(epochs):
            if stop.is_set():
                return
            loss = 2.0 * math.exp(-e / 4) + 0.1 if e < blow else (50.0 * (e - blow + 1) if e < blow + 3 else math.nan)
            fh.write(f"{e},{loss},{loss * 1.1}\n")
            fh.flush()
            written.append(e)
            time.sleep(0.2)


def test_a_growing_file_is_followed_and_fail_on_stops_it_while_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "train.csv"
    log.write_text("")
    stop, written = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(log, stop, written))
    writer.start()
    try:
        proc = watch(str(log), "--json", "--fail-on", "error", "--interval", "0.1")
    finally:
        stop.set()
        writer.join()
    assert proc.returncode == 1, proc.stderr
    events = _json_lines(proc.stdout)
    diverged = [e for e in events if e["label"] == "diverged"]
    assert diverged and diverged[0]["event"] == "new" and diverged[0]["epoch"] >= 8
    assert len(written) < 60  # it stopped while the run was still writing


def test_a_finished_file_is_judged_once_more_after_the_idle_timeout() -> None:
    proc = watch(str(RUNS / "overfitting.keras.csv"), "--idle-timeout", "0.5", "--interval", "0.1")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "new WARNING D301 [overfitting]" in out
    assert "  -> Keep the checkpoint of epoch" in out
    proc = watch(str(RUNS / "overfitting.keras.csv"), "--idle-timeout", "0.5", "--fail-on", "warning")
    assert proc.returncode == 1


def test_run_folders_are_followed_as_diagnose_reads_them() -> None:
    pytest.importorskip("tensorboard")
    proc = watch(str(FIXTURES / "real" / "tbml" / "t_05_neuralprophet-weather-lags72"), "--json",
                 "--idle-timeout", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "diverged" in {e["label"] for e in _json_lines(proc.stdout)}
    proc = watch(str(RUNS / "healthy.lightning"), "--idle-timeout", "0.5", "--fail-on", "warning")
    assert proc.returncode == 0 and "[healthy]" in proc.stdout.decode()


@pytest.mark.parametrize("args, stdin, message", [
    (["{tmp}/no-such-folder/missing.csv"], None, "missing.csv: no such file"),
    (["{tmp}/model.bin"], None, "model.bin: binary data, not a training log"),
    (["{tmp}", "--idle-timeout", "0.5"], None, "no training log appeared within --idle-timeout 0.5 s"),
    (["{tmp}/fifo"], None, "fifo: is a FIFO (named pipe), not a regular file"),
    (["-"], b"hello\nno numbers here\n", "<stdin>: "),
    (["-", "--idle-timeout", "0"], b"", "--idle-timeout: must be a positive number of seconds"),
    (["-", "--format", "excel"], b"", "--format: unknown format 'excel'"),
    (["-", "--fail-on", "sometimes"], b"", "--fail-on: expected one of"),
])
def test_bad_input_is_one_line_naming_it_exit_2(tmp_path: Path, args, stdin, message) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x00\x01\x02" * 100)
    os.mkfifo(tmp_path / "fifo")
    proc = watch(*[a.format(tmp=tmp_path) for a in args], stdin=stdin, timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if "waiting for" not in line]) == 1
    if stdin:
        assert proc.stdout == stdin  # what was passed through stays passed through


def test_the_command_is_listed_with_its_examples() -> None:
    proc = subprocess.run([sys.executable, "-m", "advisor", "watch", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0
    assert "advisor watch train.log" in proc.stdout and "advisor watch -" in proc.stdout
    assert "watch" in subprocess.run([sys.executable, "-m", "advisor", "--help"], capture_output=True, text=True,
                                     cwd=ROOT).stdout


def test_watch_imports_no_heavy_module(tmp_path: Path) -> None:
    from test_imports import _heavy_modules

    log = tmp_path / "run.csv"
    log.write_text("epoch,loss,val_loss\n" + "".join(f"{i},{2 / (i + 1)},{2.2 / (i + 1)}\n" for i in range(20)))
    assert _heavy_modules("watch", str(log), "--idle-timeout", "0.2") == []


def test_a_followed_log_in_its_first_epoch_announces_no_step_noise(tmp_path: Path) -> None:
    from advisor.watch import Monitor
    from advisor.watch.follow import Follower, PathSource

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train_loss\n" + "".join(f"0,{s},{1.0 if s % 3 else 2.0}\n" for s in range(40)))
    mon = Monitor(stop_on=())
    follower = Follower(PathSource(log, None, {}, mon.kb.catalogue.analysis), mon, interval=0.1)
    assert follower.judge() == [e for e in mon.events] and "unstable" not in {e.label for e in mon.events}
    assert "unstable" in {f.label for f in mon.findings}
    with log.open("a") as fh:  # the second epoch: epoch values now, judged as diagnose judges them
        fh.write("".join(f"1,{s},{0.9}\n" for s in range(40, 60)))
    follower.judge()
    assert mon.diagnosis.epochs == 2


def test_a_pipe_that_goes_quiet_ends_at_the_idle_timeout() -> None:
    lines = "".join(f"Epoch {e}: loss={2 / (e + 1):.4f} val_loss={2.2 / (e + 1):.4f}\n" for e in range(12))
    proc = subprocess.Popen([sys.executable, "-m", "advisor", "watch", "-", "--json", "--idle-timeout", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdin.write(lines.encode())
    proc.stdin.flush()  # and the pipe stays open: the training went quiet
    try:
        code = proc.wait(timeout=30)  # it ends by itself, its input still open
    finally:
        proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert code == 0, err
    assert "healthy" in {e["label"] for e in _json_lines(out)}


def test_watch_started_before_the_log_exists_waits_for_it(tmp_path: Path) -> None:
    """`advisor watch train.csv` typed before the training wrote its first line."""
    log = tmp_path / "train.csv"
    proc = subprocess.Popen([sys.executable, "-m", "advisor", "watch", str(log), "--fail-on", "error",
                             "--interval", "0.2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert proc.poll() is None  # still waiting, not refused
    log.write_bytes((RUNS / "diverged.keras.csv").read_bytes())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert b"waiting for" in err and b"[diverged]" in out
