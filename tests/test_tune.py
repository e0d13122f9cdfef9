"""advisor tune: the chain end to end on real training (the demo's MLP on digits, the search
tests' tasks), its folder, its budget, its stops, interrupt and resume, and the HTML report in a
real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("optuna")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tests" / "tasks_search"


def advisor(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    # SIG_DFL: a test runner started in the background ignores SIGINT, and children inherit that
    return subprocess.Popen([sys.executable, "-m", "advisor", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(proc: subprocess.Popen, text: str, limit: float = 300) -> list[str]:
    """stderr lines up to the first that holds `text`."""
    seen = []
    until = time.monotonic() + limit
    while time.monotonic() < until:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    proc.kill()
    raise AssertionError(f"never saw {text!r}: {''.join(seen)}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One whole demo run, shared by the tests that read its folder."""
    out = tmp_path_factory.mktemp("tune") / "demo"
    began = time.monotonic()
    r = advisor("tune", "--demo", "--budget", "3m", "--out", str(out), "--json")
    wall = time.monotonic() - began
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout), r.stderr, wall


def test_demo_runs_the_whole_chain_and_beats_its_baseline(demo):
    out, s, err, wall = demo
    assert s["status"] == "done" and s["stopped"] is None
    names = [p["name"] for p in s["phases"]]
    assert names == ["baseline", "lr_find", "plan", "check", "search", "final", "report"]
    assert all(p["status"] == "done" for p in s["phases"])
    # every step's trace in the progress lines, in order
    order = [err.index(f"{step}:") for step in ("baseline", "lr-find", "plan", "check", "search", "final")]
    assert order == sorted(order)
    # baseline and tuned compared at the same number of seeds
    assert s["final"]["n"] == s["baseline"]["n"] == s["plan"]["seeds_final"]
    assert s["improvement"]["better"] and s["improvement"]["beyond_two_std"], s["improvement"]
    assert s["final"]["mean"] > s["baseline"]["mean"]
    # the budget: held, with the whole process's wall time within +5%
    assert s["budget"]["within"] and wall <= 180 * 1.05 + 10, wall
    assert sum(p["seconds"] for p in s["phases"]) <= 180 * 1.05
    # the search's trial count follows the measured trial time (the plan's room / one run)
    # (planned in trials: the budget the plan got is the number of measured runs that fit)
    trial_s = json.loads((out / "state.json").read_text())["trial_s"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["budget"]["budget_hours"] == pytest.approx(s["plan"]["budget_s"] / trial_s, rel=0.01)
    assert plan["budget"]["trial_hours"] == 1.0
    # the baseline's second seed ran before the search (warm, it timed the trial) and counts
    # among the comparison's seeds: the final step ran only the third
    state = json.loads((out / "state.json").read_text())
    runs = state["baseline_runs"]
    assert [r["seed"] for r in runs] == [1, 2] and trial_s == pytest.approx(min(
        runs[0]["seconds"], trial_s), abs=1e-3) and trial_s <= state["baseline"]["seconds"]
    assert err.index("baseline: again at seed 1") < err.index("lr-find:") < err.index("final: the baseline at seed 2")
    assert "final: the baseline at seed 1" not in err


def test_demo_folder_holds_every_artifact(demo):
    out, s, _, _ = demo
    for name in ("study.db", "lr_find.json", "lr_find.png", "plan.json", "plan.yaml", "search.json", "audit.json",
                 "best.yaml", "best.csv", "baseline.csv", "report.md", "report.html", "tune.json", "state.json"):
        assert (out / name).is_file(), name
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["learning_rate"] == pytest.approx(s["final"]["params"]["learning_rate"])
    assert best["epochs"] == 8
    assert json.loads((out / "tune.json").read_text())["final"] == s["final"]
    # the lr-find answer reached the plan: its learning-rate range is the range test's
    plan = json.loads((out / "plan.json").read_text())
    lr = next(p for p in plan["params"] if p["name"] == "learning_rate")
    assert "--lr-from" in " ".join(lr["because"]) or plan["budget"] is not None
    assert json.loads((out / "lr_find.json").read_text())["suggested_lr"] == s["lr_find"]["suggested_lr"]
    # report.md links its plots beside it
    md = (out / "report.md").read_text()
    for link in ("plot_compare.png", "plot_history.png", "lr_find.png"):
        assert f"]({link})" in md and (out / link).is_file()


def test_baseline_is_recorded_in_the_study_not_trained_twice(demo):
    out, s, _, _ = demo
    import optuna

    study = optuna.load_study(study_name=s["search"]["study"], storage=f"sqlite:///{out / 'study.db'}")
    base = [t for t in study.trials if t.user_attrs.get("baseline")]
    assert len(base) == 1
    assert base[0].value == pytest.approx(s["baseline"]["value"])
    assert base[0].user_attrs["curve"]["val"] == pytest.approx(s["baseline"]["curve"]["val"], rel=1e-5)
    # the finalists' seeds are in the study, each with its curve
    finals = [t for t in study.trials if t.user_attrs.get("final")]
    assert len(finals) == s["plan"]["top_k"] * s["plan"]["seeds_final"]
    assert all(t.user_attrs.get("curve") for t in finals if t.state.name == "COMPLETE")


def test_report_html_is_one_file_that_renders_in_chromium(demo, tmp_path):
    out, _, _, _ = demo
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 5 and 'src="data:image/png;base64,' in page
    assert "src=\"http" not in page and "<link" not in page  # nothing fetched from elsewhere
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium here (apt-get install chromium)")
    probe = tmp_path / "probe.html"  # a copy with a script that counts the images that did not load
    probe.write_text(page.replace("</body>", "<script>addEventListener('load',()=>{const i=[...document.images];"
                                  "document.body.dataset.images=i.length;document.body.dataset.broken="
                                  "i.filter(x=>!x.complete||x.naturalWidth===0).length})</script></body>"))
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert 'data-broken="0"' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert f'data-images="{page.count("<img")}"' in r.stdout


def test_a_diverging_baseline_stops_the_chain_before_the_budget(tmp_path):
    out = tmp_path / "div"
    r = advisor("tune", f"{TASKS / 'diverging_task.py'}:build", "--budget", "10m", "--optimizer", "sgd",
                "--current", "lr=0.5", "--epochs", "3", "--out", str(out), "--json")
    assert r.returncode == 1, r.stderr
    s = json.loads(r.stdout)
    assert s["stopped"]["step"] == "baseline" and "diverged" in s["stopped"]["message"]
    assert s["stopped"]["advice"]  # what to fix, from the diagnosis
    assert "diverged" in s["baseline"]["diagnosis"]["labels"]
    assert "nan" in (out / "baseline.csv").read_text()
    assert not (out / "study.db").exists() and not (out / "lr_find.json").exists()
    assert (out / "report.html").is_file()
    assert s["budget"]["used_s"] < 120


def test_a_budget_too_small_for_a_search_says_what_it_needs(tmp_path):
    r = advisor("tune", "--demo", "--budget", "3s", "--out", str(tmp_path / "small"), "--json")
    assert r.returncode == 1
    s = json.loads(r.stdout)
    assert s["stopped"]["step"] == "baseline" and "no room for a search" in s["stopped"]["message"]
    assert s["stopped"]["advice"].startswith("give --budget")
    assert not (tmp_path / "small" / "study.db").exists()


def test_the_tasks_own_batch_size_is_the_plans_current_one(tmp_path):
    """A task that builds batch 32 by default: tune says so to the plan (as --current bs=32 would,
    so that its batch range is centred on it); a --current bs the user gives stays theirs."""
    task = f"{TASKS / 'normal_task.py'}:build"
    for extra, want in (([], "32"), (["--current", "bs=64"], "64")):
        out = tmp_path / f"bs{want}"
        r = advisor("tune", task, "--budget", "3s", "--epochs", "2", *extra, "--out", str(out), "--json")
        assert r.returncode == 1, r.stderr  # no room for a search: stopped after the baseline
        current = json.loads((out / "state.json").read_text())["current"]
        assert current.get("batch_size", current.get("bs")) == want and len(current) == 2, current  # and the LR


@pytest.mark.parametrize("args, message", [
    (["--demo"], "--budget: missing"),
    (["--budget", "1h"], "TASK: missing"),
    (["--demo", "--budget", "1h", "--epochs", "0"], "--epochs"),
    (["--demo", "--budget", "1h", "--optimizer", "lion"], "--optimizer"),
    (["--demo", "--budget", "1h", "--current", "lr=-1"], "lr"),
    (["--resume", "nowhere-at-all"], "--resume nowhere-at-all: no such folder"),
    (["--demo", "--resume", "x"], "drop --demo"),
    ([f"{TASKS / 'objective_task.py'}:objective", "--budget", "1h"], "objective"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    r = advisor("tune", *args, "--out", str(tmp_path / "o"), cwd=tmp_path) if "--resume" not in args else \
        advisor("tune", *args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_an_existing_folder_is_never_written_into(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = advisor("tune", "--demo", "--budget", "3m", "--out", str(out))
    assert r.returncode == 2 and "not empty" in r.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def _trials(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "study.db") as db:
        return db.execute("select trial_id, state from trials").fetchall()


def test_sigterm_saves_the_state_and_resume_finishes_within_the_budget(tmp_path):
    out = tmp_path / "term"
    proc = start("tune", "--demo", "--budget", "3m", "--out", str(out))
    wait_for(proc, "search: study")
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"advisor tune --resume {out}" in err
    state = json.loads((out / "state.json").read_text())
    assert state["steps"]["baseline"]["status"] == "done" and state["steps"]["search"]["status"] == "pending"
    spent = state["spent_s"]
    assert 0 < spent < 180
    r = advisor("tune", "--resume", str(out), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["status"] == "done" and s["final"]["n"] == 3, (s["final"], s["search"], r.stderr)
    assert "(resumed)" in r.stderr
    assert s["budget"]["used_s"] <= 180 * 1.05
    # the baseline ran once: not again on resume
    assert r.stderr.count("baseline: demo at") == 0


def test_sigkill_loses_at_most_the_trial_in_flight(tmp_path):
    out = tmp_path / "kill"
    proc = start("tune", "--demo", "--budget", "3m", "--out", str(out))
    wait_for(proc, "search: study")
    time.sleep(4)
    proc.kill()
    proc.wait(timeout=60)
    before = _trials(out)
    finished = [t for t in before if t[1] in ("COMPLETE", "PRUNED")]
    running = [t for t in before if t[1] == "RUNNING"]
    assert len(running) <= 1 and finished
    r = advisor("tune", "--resume", str(out), "--json")
    assert r.returncode == 0, r.stderr
    after = dict(_trials(out))
    for tid, state in finished:  # every trial that had finished is kept as it was
        assert after[tid] == state
    assert all(after[tid] == "FAIL" for tid, _ in running)  # the one in flight: failed, interrupted
    assert json.loads(r.stdout)["status"] == "done"


@pytest.mark.parametrize("strategy,plan_trials,trial_s,cost_share,seconds,expected", [
    ("bayesian", 20, 2.0, 0.5, 100.0, 100),   # the share buys 100 at half a trial each: cap lifted
    ("random", 20, 2.0, 1.0, 100.0, 50),      # no pruning: one full trial each
    ("bayesian", 120, 2.0, 0.5, 100.0, None),  # the plan's count already spends the share
    ("grid", 20, 2.0, 0.5, 100.0, None),      # a grid keeps its points whatever the time
])
def test_the_search_gets_the_trials_its_time_share_buys(tmp_path, strategy, plan_trials, trial_s, cost_share,
                                                        seconds, expected):
    from advisor.act.tune import State, Tune, TuneRequest

    state = State(request=TuneRequest(task="demo", budget_s=600.0), out=str(tmp_path), created="now",
                  trial_s=trial_s, plan={"strategy": strategy, "trials": plan_trials, "cost_share": cost_share,
                                         "pruner": "median"})
    said: list[str] = []
    tune = Tune(state, say=said.append)
    assert tune._trials_for(seconds) == expected
    assert bool(said) == (expected is not None)   # a changed count is said, with why
    if expected is not None:
        assert f"{expected} trials instead of the plan's {plan_trials}" in said[0]


@pytest.mark.parametrize("pruner, stop_margin", [
    ({"type": "successive_halving", "min_resource": 2}, 10.0 * 2 / 8),  # a next trial up to its first rung
    ({"type": "none"}, 10.0),                                            # without a pruner: a whole trial
])
def test_the_search_ends_at_its_deadline_to_the_epoch(tmp_path, pruner, stop_margin):
    """The search's deadline (_finals_must_fit): it stops when what is left holds only the
    finalists' seeds (as long as their trials trained), the report and a next trial up to its
    pruner's first rung; a trial still training later is cut with one epoch of margin."""
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from advisor.act.search.objective import SearchSpec
    from advisor.act.tune import State, Tune, TuneRequest

    state = State(request=TuneRequest(task="demo", budget_s=600.0), out=str(tmp_path), created="now",
                  trial_s=2.0, plan={"seeds_final": 3})
    tune = Tune(state, say=lambda line: None)
    space = {"strategy": "bayesian", "trials": 50, "epochs": 8, "pruner": pruner,
             "params": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}
    spec = SearchSpec(task="demo", space=space, trials=50, epochs=8, top_k=2, seeds_final=3, direction="minimize")
    began = datetime(2026, 1, 1)

    def trial(number, value, seconds, lr, **attrs):
        return SimpleNamespace(number=number, value=value, params={"learning_rate": lr}, user_attrs=attrs,
                               state=SimpleNamespace(name="COMPLETE"), datetime_start=began,
                               datetime_complete=began + timedelta(seconds=seconds))

    # the best took 4 s, 3.5 of them training (the rest the storage's round trips at each epoch,
    # which a final re-run does not make); the second 3 s, unmeasured; the slowest 10 s
    trials = [trial(0, 0.5, 4.0, 1e-3, train_s=3.5), trial(1, 0.6, 3.0, 1e-2), trial(2, 0.9, 10.0, 1e-4)]
    stop, cut = tune._finals_must_fit(spec)
    finals = 3 * (3.5 + 3.0)
    reserve = tune.reserve_after_search()   # the baseline's 2 seeds still to run and the report
    deadline = finals + reserve
    for left, stops, cuts in [(deadline + stop_margin + 0.1, False, False),
                              (deadline + stop_margin - 0.1, True, stop_margin <= 10.0 / 8),
                              (deadline + 10.0 / 8 - 0.1, True, True)]:
        tune.left = lambda left=left: left
        assert stop(trials) is stops, left
        assert cut() is cuts, left
