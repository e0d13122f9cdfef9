"""advisor search on a real PostgreSQL server: the same command in several processes is one search
(the plan stored once, the budget global, the phases switched once, the final re-runs shared), a
worker killed with SIGKILL has its trial failed by the heartbeat and retried once, a worker that
comes after the budget says so, a refused connection is one line, and `advisor audit` reads the
study. Each test makes a database of its own and drops it.

The server: ADVISOR_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432). Where none
answers, the tests skip with the reason; in CI (CI=true) they fail instead."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'advisor[postgres]'")
optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

from advisor.act.search.phases import PHASE_ATTR  # noqa: E402
from advisor.act.search.trials import counts, done_search, is_extra, is_final  # noqa: E402

SERVER = os.environ.get("ADVISOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
TASKS = Path(__file__).resolve().parent / "tasks_search"


def _server_error() -> str | None:
    try:
        with psycopg.connect(f"{SERVER}/postgres", connect_timeout=3):
            return None
    except Exception as exc:  # no server here
        return f"no PostgreSQL server answers at {SERVER} ({str(exc).strip().splitlines()[0]})"


_WHY = _server_error()
if _WHY and os.environ.get("CI", "").lower() == "true":
    raise RuntimeError(f"CI=true and {_WHY}: the many-machine tests must run in CI")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


@pytest.fixture
def pg_url():
    """A database of this test's own on the server (dropped after): no two tests share one."""
    name = f"advisor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    if os.environ.get("ADVISOR_TEST_KEEP_DB"):
        return
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def plan_file(tmp_path: Path, name: str = "plan.yaml", trials: int = 12, low: str = "1.0e-5") -> Path:
    path = tmp_path / name
    path.write_text("advisor_space: 1\ndirection: maximize\nstrategy: random\n"
                    f"trials: {trials}\nepochs: 2\ntop_k: 1\npruner: {{type: none}}\n"
                    "baseline: {learning_rate: 0.001}\nparams:\n"
                    f"  learning_rate: {{type: float, low: {low}, high: 1.0e-1, log: true}}\n")
    return path


GATED = """
import importlib.util, os, time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_objective_task", {source!r})
_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_task)
_deadline = time.monotonic() + 120


def objective(hp, report):
    \"\"\"objective_task's, behind a gate: no trial scores until {n} processes have each begun one
    (one file per process id in ADVISOR_TEST_GATE), so every process takes part whatever its start-up.\"\"\"
    gate = Path(os.environ["ADVISOR_TEST_GATE"])
    (gate / str(os.getpid())).touch()
    while len(list(gate.iterdir())) < {n} and time.monotonic() < _deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # a trial that takes a little time: the processes interleave
    return _task.objective(hp, report)


objective.direction = "maximize"
"""

HELD = """
import importlib.util, os, time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_objective_task", {source!r})
_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_task)
_calls = 0


def objective(hp, report):
    \"\"\"objective_task's; in a process with ADVISOR_TEST_HOLD set, its second trial stops after
    its first epoch, creates that marker file and waits there for the test to kill the process.\"\"\"
    global _calls
    _calls += 1
    marker = os.environ.get("ADVISOR_TEST_HOLD")
    if not marker or _calls != 2:
        return _task.objective(hp, report)

    def held(value, epoch):
        report(value, epoch)
        Path(marker).touch()
        time.sleep(120)

    return _task.objective(hp, held)


objective.direction = "maximize"
"""


def _search(task: str, plan: Path, url: str, study: str, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "advisor", "search", task, "--plan", str(plan), "--storage", url,
                             "--study", study, "--no-stop-rule", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _env(**more: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVISOR_TEST_", "ADVISOR_HEARTBEAT"))}
    return {**env, "PYTHONPATH": str(ROOT), **more}


def _trials(url: str, study: str):
    st = optuna.load_study(study_name=study, storage=url)
    return st, st.get_trials(deepcopy=False)


def test_three_processes_with_the_same_command_are_one_search(tmp_path, pg_url) -> None:
    task = tmp_path / "gated.py"
    task.write_text(GATED.format(source=str(TASKS / "objective_task.py"), n=3))
    gate = tmp_path / "gate"
    gate.mkdir()
    plan = plan_file(tmp_path, trials=12)
    env = _env(ADVISOR_TEST_GATE=str(gate))
    procs = [_search(f"{task}:objective", plan, pg_url, "many", env) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert json.loads(out)["study"] == "many"
    study, trials = _trials(pg_url, "many")
    search = [t for t in trials if not is_final(t)]
    c = counts(trials)
    assert done_search(trials) == 12 and c["running"] == 0, c  # exactly the budget, whatever the workers
    counted = sorted((t for t in search if not is_extra(t)), key=lambda t: t.number)
    assert len(counted) == 12
    assert len({t.user_attrs["worker"] for t in counted}) == 3  # each process ran trials of the one study
    assert all(t.user_attrs.get("extra_reason", "").startswith("extra") for t in search if is_extra(t))
    # the phases switched once, for all: by creation order, no explore trial after a refine one
    order = [ph["name"] for ph in json.loads(json.dumps(study.user_attrs["advisor_search"]))["phases"]]
    assert order == ["explore", "refine"]
    seen = [order.index(t.user_attrs["phase"]) for t in counted]
    assert seen == sorted(seen) and set(seen) == {0, 1}, seen
    assert study.user_attrs[PHASE_ATTR] == "final"
    # the final re-runs ran once, shared: one per (configuration, seed)
    finals = [t for t in trials if is_final(t) and not is_extra(t) and t.state.name == "COMPLETE"]
    keys = [(t.user_attrs["config"], t.user_attrs["seed"]) for t in finals]
    assert len(keys) == len(set(keys)) == 3  # top_k 1 x 3 seeds
    # every process reports the same finalist and the same search
    docs = [json.loads(out) for out, _ in outs]
    assert len({json.dumps(d["final"][0]["params"], sort_keys=True) for d in docs}) == 1
    assert {d["trials"]["complete"] for d in docs} == {c["complete"]}

    # a worker started once the budget is spent says so in one line and exits 0, nothing run
    before = len(trials)
    r = run_cli("search", f"{task}:objective", "--plan", plan, "--storage", pg_url, "--study", "many",
                "--no-stop-rule")
    assert r.code == 0, r.err
    assert "budget is spent" in r.err and "12 of 12" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert len(_trials(pg_url, "many")[1]) == before

    # another plan under the same name: one line, exit 2, nothing written
    attrs = dict(study.user_attrs)
    for other in (plan_file(tmp_path, "wider.yaml", trials=12, low="1.0e-6"), plan_file(tmp_path, "more.yaml", 20)):
        r = run_cli("search", f"{task}:objective", "--plan", other, "--storage", pg_url, "--study", "many",
                    "--no-stop-rule")
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
        assert "different" in r.err and "nothing was changed" in r.err
    study, after = _trials(pg_url, "many")
    assert len(after) == before and dict(study.user_attrs) == attrs

    # advisor audit reads the study on the server
    r = run_cli("audit", pg_url, "--study", "many", "--json")
    assert r.code in (0, 1), r.err
    doc = json.loads(r.out)
    assert "many" in json.dumps(doc)


def test_a_grid_run_by_three_workers_runs_each_configuration_once(tmp_path, pg_url) -> None:
    # --workers 3 on the server: the grid's 12 configurations, each exactly once, whatever the
    # interleaving (every process begins a trial before any scores: see GATED)
    task = tmp_path / "gated.py"
    task.write_text(GATED.format(source=str(TASKS / "objective_task.py"), n=3))
    gate = tmp_path / "gate"
    gate.mkdir()
    plan = tmp_path / "grid.yaml"
    plan.write_text("advisor_space: 1\ndirection: maximize\nstrategy: grid\ntrials: 12\nepochs: 2\ntop_k: 0\n"
                    "pruner: {type: none}\nparams:\n"
                    "  learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true, "
                    "choices: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3]}\n"
                    "  weight_decay: {type: float, low: 0.0, high: 1.0e-3, choices: [0.0, 1.0e-4, 1.0e-3]}\n")
    proc = _search(f"{task}:objective", plan, pg_url, "grid", _env(ADVISOR_TEST_GATE=str(gate)), "--workers", "3")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    doc = json.loads(out)
    assert not [n for n in doc["notes"] if "worker" in n and "exited" in n], doc["notes"]
    _, trials = _trials(pg_url, "grid")
    counted = [t for t in trials if not is_final(t) and not is_extra(t)]
    assert all(t.state.name == "COMPLETE" for t in counted)
    keys = [json.dumps(t.params, sort_keys=True) for t in counted]
    assert len(keys) == 12 and len(set(keys)) == 12, sorted(keys)  # every point once, none twice
    assert len({t.user_attrs["worker"] for t in counted}) == 3
    assert done_search(trials) == 12 and doc["stopped_by"] in ("grid", "budget")
    assert sum(1 for t in trials if is_extra(t)) <= 2  # at most one started past the budget per other worker


def test_a_killed_worker_s_trial_is_failed_by_the_heartbeat_retried_once_and_counted_once(tmp_path, pg_url) -> None:
    task = tmp_path / "held.py"
    task.write_text(HELD.format(source=str(TASKS / "objective_task.py")))
    marker = tmp_path / "held"
    plan = plan_file(tmp_path, trials=6)
    env = _env(ADVISOR_HEARTBEAT="1,3")
    victim = _search(f"{task}:objective", plan, pg_url, "k", {**env, "ADVISOR_TEST_HOLD": str(marker)}, "--top-k", "0")
    deadline = time.monotonic() + 120
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), victim.communicate()[1][-2000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, trials = _trials(pg_url, "k")
    killed = [t for t in trials if t.state.name == "RUNNING"]
    assert len(killed) == 1  # left RUNNING by the dead process
    other = _search(f"{task}:objective", plan, pg_url, "k", env, "--top-k", "0")
    out, err = other.communicate(timeout=180)
    assert other.returncode == 0, err[-2000:]
    _, trials = _trials(pg_url, "k")
    # whenever the heartbeat fails the dead trial (before this worker's phase began or during it),
    # this one worker finishes the whole budget, the retry counted in place of the dead trial
    dead = next(t for t in trials if t.number == killed[0].number)
    assert dead.state.name == "FAIL"
    retries = [t for t in trials if (t.system_attrs or {}).get("retry_history") == [dead.number]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"  # retried once
    assert retries[0].params == dead.params
    c = counts(trials)
    assert done_search(trials) == 6 and c["running"] == 0 and c["failed"] == c["interrupted"] == 1, c
    assert json.loads(out)["trials"]["complete"] == 6


def test_a_refused_connection_is_one_line_naming_the_host_without_the_password(tmp_path) -> None:
    began = time.monotonic()
    r = run_cli("search", f"{TASKS / 'objective_task.py'}:objective", "--plan", plan_file(tmp_path),
                "--storage", "postgresql://advisor:s3cret@127.0.0.1:1/optuna", "--study", "x")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "127.0.0.1:1" in r.err and "s3cret" not in r.err and "attempts" in r.err
    assert time.monotonic() - began < 20


def test_a_lost_connection_is_retried_and_the_search_goes_on(tmp_path, pg_url) -> None:
    # the server drops every connection of the search while it runs (as a restart or a network cut
    # would): the worker reconnects and finishes the budget, nothing counted twice (a trial cut
    # before it recorded its owner waits for the heartbeat's grace period, short here)
    plan = plan_file(tmp_path, trials=6)
    proc = _search(f"{TASKS / 'objective_task.py'}:objective", plan, pg_url, "lost", _env(ADVISOR_TEST_DELAY="0.3", ADVISOR_HEARTBEAT="1,3"),
                   "--top-k", "0")
    db = pg_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 120
    with psycopg.connect(pg_url, autocommit=True) as con:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                done = 0
            if done >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        dropped = 0
        for _ in range(2):
            until = time.monotonic() + 10
            while time.monotonic() < until and proc.poll() is None:  # the search holds a connection
                n = con.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                                "AND pid <> pg_backend_pid()", (db,)).fetchone()[0]
                if n:
                    dropped += 1
                    break
                time.sleep(0.05)
            time.sleep(0.4)
        assert dropped == 2
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    _, trials = _trials(pg_url, "lost")
    assert done_search(trials) == 6 and counts(trials)["running"] == 0
