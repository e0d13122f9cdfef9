"""Issue 16: the reproductions of the bad-input report (reports/bad-input-2026-11.md) that concern
reading an input (advisor/inputs.py), `check`, `plan`, `audit`, `explain` and the rule cache.

Each test runs the report's reproduction and asserts what the report found wrong no longer
happens: one line naming the file or the field and exit 2 where the input cannot be used, a
finding with its line where `check` must catch what `search` would reject, never "internal
error", never a hang (anything that could block runs in a subprocess under a timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, run_cli

SPACES = FIXTURES / "spaces"


def _one_line(result, *words: str) -> str:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "internal error" not in lines[0] and "Traceback" not in result.err, lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _limit_memory() -> None:
    """In the child: at most 4 GB of address space, so that a read without end (/dev/zero, if the
    guard ever breaks) fails there with MemoryError instead of exhausting the machine."""
    import resource

    limit = 4 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _subprocess(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in its own process: what might block (a FIFO) or read without end (/dev/zero)
    must not take the test run with it."""
    return subprocess.run([sys.executable, "-m", "advisor", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          preexec_fn=_limit_memory if sys.platform.startswith("linux") else None)


def _bomb(path: Path, levels: int = 10) -> Path:
    """F16: 'a: &a ["lol" x9]', then b: &b [*a x9] ... up to j; the space's choices are *j."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghij"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    lines += ["advisor_space: 1", "params:", f"  lr: {{type: categorical, choices: *{prev}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- F18: FIFOs

@pytest.mark.parametrize("args", [
    ["check", "{fifo}"],
    ["plan", "--budget", "10h", "--trial-time", "1h", "--gpus", "1", "--lr-from", "{fifo}"],
    ["plan", "--budget", "10h", "--trial-time", "1h", "--gpus", "1", "--from", "{fifo}"],
    ["audit", "{fifo}"],
    ["diagnose", "{fifo}"],
], ids=["check", "plan-lr-from", "plan-from", "audit", "diagnose"])
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path, args: list[str]) -> None:
    fifo = tmp_path / "d_fifo.csv"
    os.mkfifo(fifo)
    start = time.monotonic()
    proc = _subprocess(*[a.format(fifo=fifo) for a in args], timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "FIFO" in proc.stderr and str(fifo) in proc.stderr and "internal error" not in proc.stderr
    assert time.monotonic() - start < 20


# --------------------------------------------------------------------------- F17: /dev/zero

@pytest.mark.parametrize("args", [
    ["check", "/dev/zero"],
    ["plan", "--budget", "10h", "--trial-time", "1h", "--gpus", "1", "--lr-from", "/dev/zero"],
    ["audit", "/dev/zero"],
], ids=["check", "plan-lr-from", "audit"])
def test_dev_zero_is_refused_before_a_byte_is_read(args: list[str]) -> None:
    proc = _subprocess(*args, timeout=30)
    assert proc.returncode == 2 and "character device" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_guard_refuses_devices_directories_and_big_files(tmp_path: Path) -> None:
    from advisor.errors import InputError
    from advisor.inputs import MAX_BYTES, read_bytes, read_text

    with pytest.raises(InputError, match="character device"):
        read_bytes("/dev/null")
    with pytest.raises(InputError, match="is a directory"):
        read_text(tmp_path, "search space")
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: nothing is written, the size is what is judged
    with pytest.raises(InputError, match="at most"):
        read_bytes(big, "search space")
    loop = tmp_path / "loop1"
    os.symlink(tmp_path / "loop2", loop)
    os.symlink(loop, tmp_path / "loop2")
    with pytest.raises(InputError, match="symlink loop"):
        read_bytes(loop)


def test_a_space_bigger_than_the_bound_is_one_line(tmp_path: Path) -> None:
    from advisor.inputs import MAX_BYTES

    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(MAX_BYTES + 1)
    _one_line(run_cli("check", big), str(big), "at most")


# --------------------------------------------------------------------------- F16: YAML bombs

def test_billion_laughs_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    from advisor.errors import InputError
    from advisor.inputs import load_yaml

    bomb = _bomb(tmp_path / "bomb_adv.yaml")
    start = time.monotonic()
    with pytest.raises(InputError, match="anchors and aliases"):
        load_yaml(bomb, "search space")
    assert time.monotonic() - start < 0.5
    _one_line(run_cli("check", bomb), "bomb_adv.yaml", "aliases")


def test_search_plan_reads_the_bomb_through_the_guard(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb_adv.yaml")
    code = ("import sys\nfrom advisor.act.search.space import space_from_file\nfrom advisor.errors import InputError\n"
            "try:\n    space_from_file(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, preexec_fn=_limit_memory if sys.platform.startswith("linux") else None)
    assert "aliases" in proc.stdout, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30


def test_small_anchors_still_work_and_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    ok = tmp_path / "anchors.yaml"
    ok.write_text("advisor_space: 1\nstrategy: random\ntrials: 40\nlog: &log {type: float, log: true}\n"
                  "params:\n  learning_rate: {<<: *log, low: 1.0e-5, high: 1.0e-2}\n")
    result = run_cli("check", ok, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    assert json.loads(result.out)["space"]["params"] == ["learning_rate"]
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &a [1, *a]\nadvisor_space: 1\nparams: {}\n")
    _one_line(run_cli("check", loop), "loop.yaml", "contains itself")


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    # F22: the first `lr:` was silently discarded
    path = tmp_path / "dup_keys.yaml"
    path.write_text("advisor_space: 1\nparams:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                    "  lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\n")
    _one_line(run_cli("check", path), "dup_keys.yaml:4", "'lr'", "line 3")


# --------------------------------------------------------------------------- encodings, deep JSON

@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_utf16_and_bom_spaces_are_read(tmp_path: Path, encoding: str) -> None:
    text = (SPACES / "bad-linear-scale.yaml").read_text()
    path = tmp_path / "space.yaml"
    path.write_bytes(text.encode(encoding))
    result = run_cli("check", path, "--json")
    assert result.code == 1, result.err
    assert {f["code"] for f in json.loads(result.out)["findings"]} == {"K101"}
    fixed = run_cli("check", path, "--fix", "--out", tmp_path / "fixed.yaml")  # --fix reads the decoded text
    assert fixed.code == 1 and "log: true" in (tmp_path / "fixed.yaml").read_text()


def test_text_encoding() -> None:
    from advisor.inputs import decode_text, text_encoding

    assert text_encoding("a: 1\n".encode("utf-16-le")) == ("utf-16-le", 0)
    assert text_encoding("a: 1\n".encode("utf-16")) [1] == 2
    assert text_encoding("é: 1\n".encode("utf-8")) == ("utf-8", 0)
    assert decode_text("\ufeffa: 1".encode("utf-8"), "x") == "a: 1"


def test_deep_and_huge_json_in_lr_from(tmp_path: Path) -> None:
    deep = tmp_path / "lr_deep.json"
    deep.write_text("[" * 100000)
    _one_line(run_cli("plan", "--budget", "10h", "--trial-time", "1h", "--gpus", "1", "--lr-from", deep),
              "lr_deep.json", "nested too deeply")
    huge = tmp_path / "lr_bigint.json"
    huge.write_text('{"suggested_lr": 1' + "0" * 5000 + "}")
    _one_line(run_cli("plan", "--budget", "10h", "--trial-time", "1h", "--gpus", "1", "--lr-from", huge),
              "lr_bigint.json")


# --------------------------------------------------------------------------- F14: check = search

REVERSED = """advisor_space: 1
fixed: {optimizer: adamw}
params:
  learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
  weight_decay: {type: float, low: 1.0e-2, high: 1.0e-6, log: true}
  dropout: {type: float, low: 0.5, high: 0.1}
  depth: {type: int, low: 8, high: 2}
"""


def test_check_finds_the_reversed_ranges_search_rejects(tmp_path: Path) -> None:
    path = tmp_path / "rev_other.yaml"
    path.write_text(REVERSED)
    result = run_cli("check", path, "--json")
    assert result.code == 1
    found = {(f["code"], f["param"]) for f in json.loads(result.out)["findings"]}
    assert found == {("K003", "weight_decay"), ("K003", "dropout"), ("K003", "depth")}
    assert "(line 5)" in next(f["message"] for f in json.loads(result.out)["findings"]
                              if f["param"] == "weight_decay")
    fixed = run_cli("check", path, "--fix", "--out", tmp_path / "fixed.yaml")
    assert fixed.code == 1
    again = run_cli("check", tmp_path / "fixed.yaml", "--json")
    assert again.code == 0 and json.loads(again.out)["findings"] == []


def _codes(path: Path) -> set[str]:
    result = run_cli("check", path, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    return {f["code"] for f in json.loads(result.out)["findings"]}


@pytest.mark.parametrize("text, code", [
    ("advisor_space: 1\nparams:\n  lr: {type: float, low: .nan, high: 1.0e-2, log: true}\n", "K004"),
    ("method: random\nparameters:\n  lr: {distribution: log_uniform_values, min: .nan, max: 0.1}\n", "K004"),
    ("advisor_space: 1\nstrategy: grid\nparams:\n  depth: {type: int, low: 1, high: .inf}\n", "K004"),
    ("method: random\nmetric: {name: val_loss, goal: minimise}\nparameters:\n"
     "  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n", "K002"),
    ("method: random\nparameters:\n  lr: {distribution: log_uniform_value, min: 0.0001, max: 0.1}\n", "K005"),
    ("advisor_space: 1\nparams: {}\n", "K001"),
    ("advisor_space: 1\nparams:\n  arch: {type: categorical, choices: [[1, 2], {a: 1}]}\n", "K006"),
    ("advisor_space: 1\nparams:\n  learning_rate: {type: float, log: true, by: optimizer, "
     "ranges: {adam: [1.0e-5, 1.0e-2]}}\n", "K007"),
    ("advisor_space: 1\nfixed: {optimizer: adam}\nparams:\n"
     "  learning_rate: {type: float, low: 1.0e100, high: 1.0e300, log: true}\n", "K106"),
], ids=["nan", "wandb-nan", "grid-int-inf", "goal-minimise", "unknown-distribution", "empty",
        "list-choices", "by-unsearched", "lr-1e100"])
def test_check_catches_what_search_would_reject(tmp_path: Path, text: str, code: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    codes = _codes(path)
    assert code in codes and "K103" not in codes  # 1e100..1e300 is not 'too narrow'
    from advisor.advice.check import runnable_space
    from advisor.errors import InputError

    if code.startswith("K0"):  # what cannot run, search (--plan) refuses with the same finding
        with pytest.raises(InputError, match=code if code != "K005" else "unknown distribution"):
            runnable_space(path)
    else:
        assert runnable_space(path).space.params


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES.glob("good-*.yaml")))
def test_clean_spaces_run(name: str) -> None:
    from advisor.advice.check import runnable_space

    assert runnable_space(SPACES / name).space.params


def test_a_wandb_sweep_without_a_goal_minimizes_as_wandb_does(tmp_path: Path) -> None:
    from advisor.ingest.space import load_space

    path = tmp_path / "sweep.yaml"
    path.write_text("method: random\nmetric: {name: val_loss}\nparameters:\n  lr: {min: 0.001, max: 0.1}\n")
    assert load_space(path).space.direction == "minimize"


@pytest.mark.parametrize("text, words", [
    ("method: random\nmetric: val_loss\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'metric'"]),
    ("method: random\nmetric: [x]\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'metric'"]),
    ("method: random\nearly_terminate: hyperband\nparameters:\n  lr: {min: 0.001, max: 0.1}\n",
     ["field 'early_terminate'"]),
    ("method: random\nrun_cap: lots\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'run_cap'"]),
    ("method: random\nrun_cap: -5\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'run_cap'"]),
    ("method: random\nrun_cap: 10.5\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'run_cap'"]),
    ("method: random\nname: [a, b]\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'name'"]),
    ("method: random\nmetric: {name: 5}\nparameters:\n  lr: {min: 0.001, max: 0.1}\n", ["field 'metric.name'"]),
    ("method: random\nparameters:\n  lr: {distribution: normal, mu: abc, sigma: 1}\n", [":3", "'mu'", "abc"]),
    ("method: random\nparameters:\n  lr: {distribution: normal, mu: [1], sigma: 1}\n", ["'mu'"]),
], ids=["metric-str", "metric-list", "early-str", "runcap-str", "runcap-neg", "runcap-float",
        "name-list", "metric-name-int", "mu-str", "mu-list"])
def test_malformed_wandb_fields_are_one_line(tmp_path: Path, text: str, words: list[str]) -> None:
    # F25: AttributeError / ValidationError / ValueError before
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    _one_line(run_cli("check", path), "sweep.yaml", *words)


# --------------------------------------------------------------------------- plan: F19, F20, F23

PLAN = ("plan", "--budget", "50h", "--trial-time", "30m")


def test_more_workers_than_gpus_is_refused_unless_gpus_says_so() -> None:
    _one_line(run_cli(*PLAN, "--gpus", "1", "--workers", "64", "--json"), "--workers 64", "--gpus 64")
    result = run_cli(*PLAN, "--gpus", "64", "--workers", "64", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["budget"]["compute_hours"] == 50 * 64


@pytest.mark.parametrize("args", [[*PLAN, "--gpus", "100000000"], ["hardware", "--gpus", "9" * 23]],
                         ids=["plan", "hardware"])
def test_huge_gpu_counts_are_refused_at_once(args: list[str]) -> None:
    start = time.monotonic()
    proc = _subprocess(*args, timeout=60)  # F23: listed one GPU object per GPU, minutes and gigabytes
    assert proc.returncode == 2 and "--gpus: at most" in proc.stderr, proc.stderr
    assert time.monotonic() - start < 30


def test_a_gpu_memory_that_overflows_is_one_line() -> None:
    # F29: a memory that overflows to infinity printed "Infinity" in the JSON
    _one_line(run_cli("hardware", "--gpu-memory", "9" * 400, "--json"), "--gpu-memory")


def _finder(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "lr.json"
    path.write_text(json.dumps(doc))
    return path


def test_absurd_finder_values_are_refused(tmp_path: Path) -> None:
    _one_line(run_cli(*PLAN, "--gpus", "1", "--optimizer", "adam", "--lr-from",
                      _finder(tmp_path, {"suggested_lr": 1e300})), "lr.json", "plausible")
    _one_line(run_cli(*PLAN, "--gpus", "1", "--optimizer", "adam", "--lr-from",
                      _finder(tmp_path, {"suggested_lr": 5, "range": [1e-4, 1e-2]})), "lr.json", "outside")
    _one_line(run_cli(*PLAN, "--gpus", "1", "--lr-from", _finder(tmp_path, {"suggested_lr": 1e-9})),
              "lr.json", "plausible")


def test_centring_on_the_finder_is_claimed_only_when_it_happened(tmp_path: Path) -> None:
    finder = _finder(tmp_path, {"suggested_lr": 1e-3, "range": [1e-4, 1e-2]})
    doc = json.loads(run_cli(*PLAN, "--gpus", "1", "--lr-from", finder, "--json").out)
    codes = {r["code"] for r in doc["reasons"]}
    lr = next(p for p in doc["params"] if p["name"] == "learning_rate")
    if lr.get("ranges"):  # the optimizer is searched and the finder's optimizer is unknown
        assert "P303" not in codes and "P304" in codes
        assert lr["ranges"]["adamw"] == [1e-5, 1e-2]  # the defaults, as P304 says
    doc = json.loads(run_cli(*PLAN, "--gpus", "1", "--optimizer", "adamw", "--lr-from", finder, "--json").out)
    lr = next(p for p in doc["params"] if p["name"] == "learning_rate")
    assert "P303" in {r["code"] for r in doc["reasons"]}
    # centred on the finder: +-1.2 decades around its suggestion (rules/tables/ranges.yaml finder)
    assert lr["low"] == pytest.approx(1e-3 / 10 ** 1.2, rel=0.01) and lr["high"] == pytest.approx(1e-3 * 10 ** 1.2, rel=0.01)


@pytest.mark.parametrize("args, words", [
    (("--budget", "1" + "0" * 400 + "h", "--trial-time", "30m"), ["--budget", "century"]),
    (("--budget", "50h", "--trial-time", "1" + "0" * 400 + "h"), ["--trial-time"]),
    (("--budget", "0.0000001s", "--trial-time", "30m"), ["--budget", "under a second"]),
    (("--budget", "50h", "--epoch-time", "100h", "--epochs", "10000"), ["--epoch-time x --epochs"]),
    (("--budget", "10h", "--trial-time", "1h", "--current", "lr=0"), ["lr=0", "above 0"]),
    (("--budget", "10h", "--trial-time", "1h", "--current", "bs=0.5"), ["bs=0.5"]),
    (("--budget", "10h", "--trial-time", "1h", "--current", "dropout=5"), ["dropout=5", "below 1"]),
    (("--budget", "10h", "--trial-time", "1h", "--metric", "val\nacc", "--emit", "wandb", "--out", "sweep.yaml"),
     ["--metric"]),
], ids=["budget-overflow", "trial-overflow", "budget-tiny", "epochs-overflow", "lr-0", "bs-half",
        "dropout-5", "metric-newline"])
def test_plan_options_out_of_range_are_one_line(args: tuple, words: list[str]) -> None:
    _one_line(run_cli("plan", "--gpus", "1", *args), *words)


# --------------------------------------------------------------------------- audit: F27, F28, F25 ...

def test_audit_masks_the_storage_password() -> None:
    result = run_cli("audit", "postgresql+psycopg2://alice:S3cretPassw0rd@127.0.0.1:1/optuna", "--study", "x",
                     "--timeout", "2")
    line = _one_line(result)
    assert "S3cretPassw0rd" not in result.err + result.out and "alice:***@127.0.0.1" in line


def test_hide_password() -> None:
    from advisor.ingest.study import hide_password

    assert hide_password("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert hide_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert hide_password("sqlite:///x.db") == "sqlite:///x.db"


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_audit_refuses_ragged_rows_and_bad_trial_numbers(tmp_path: Path) -> None:
    _one_line(run_cli("audit", _csv(tmp_path, "t_ragged.csv",
                                    "number,value,params_lr,state\n0,0.5,0.1,COMPLETE,extra\n1,0.6\n")),
              "t_ragged.csv", "line 2", "5 fields")
    _one_line(run_cli("audit", _csv(tmp_path, "t_dup.csv",
                                    "number,value,params_lr,state\n0,0.5,0.1,COMPLETE\n0,0.6,0.01,COMPLETE\n")),
              "t_dup.csv", "appears twice")
    _one_line(run_cli("audit", _csv(tmp_path, "t_str.csv",
                                    "number,value,params_lr,state\nabc,0.5,0.1,COMPLETE\n1,0.6,0.01,COMPLETE\n")),
              "t_str.csv", "'abc'")


@pytest.mark.parametrize("sep", ["\t", ";"])
def test_audit_reads_a_tsv_or_semicolon_file_named_csv(tmp_path: Path, sep: str) -> None:
    rows = ["number,value,params_lr,state"] + [f"{i},{0.5 + i / 10},{10 ** -(i + 1)},COMPLETE" for i in range(6)]
    path = _csv(tmp_path, "trials.csv", "\n".join(r.replace(",", sep) for r in rows) + "\n")
    result = run_cli("audit", path, "--json", "--fail-on", "never")
    assert result.code == 0, result.err
    assert json.loads(result.out)["study"]["params"][0]["name"] == "lr"


def test_audit_reads_utf16_csv_and_names_a_text_file_called_db(tmp_path: Path) -> None:
    rows = ["number,value,params_lr,state"] + [f"{i},{0.5 + i / 10},{10 ** -(i + 1)},COMPLETE" for i in range(6)]
    path = tmp_path / "trials.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("utf-16"))
    assert run_cli("audit", path, "--fail-on", "never").code == 0
    _one_line(run_cli("audit", _csv(tmp_path, "notsqlite.db", "hello\nworld\n")), "notsqlite.db",
              "not a SQLite database")


def test_audit_names_a_trial_value_edited_to_text(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    db = tmp_path / "weird.db"
    shutil.copy(FIXTURES / "studies" / "sound.db", db)
    con = sqlite3.connect(db)
    con.execute("update trial_values set value='abc' where trial_value_id=(select min(trial_value_id) from trial_values)")
    con.commit()
    con.close()
    _one_line(run_cli("audit", db), "weird.db", "'abc'", "not a number")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_audit_timeout_must_be_finite(value: str) -> None:
    _one_line(run_cli("audit", FIXTURES / "studies" / "sound.db", "--timeout", value), "--timeout")


def test_audit_of_values_near_the_float_limit_warns_nothing(tmp_path: Path) -> None:
    rows = ["number,value,params_lr,state"] + [
        f"{i},{1.7e308 if i % 2 else -1.7e308},{10 ** (-5 + i / 10)},COMPLETE" for i in range(30)]
    path = _csv(tmp_path, "t_big.csv", "\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_cli("audit", path, "--fail-on", "never")
    assert result.code == 0, result.err
    assert not [w for w in caught if "overflow" in str(w.message)]


# --------------------------------------------------------------------------- F24, F39

def test_an_unreadable_cache_folder_means_no_cache(tmp_path: Path, monkeypatch) -> None:
    from advisor.engine import loader

    class Locked(type(Path())):  # what a non-root user meets in a 0700 HOME not their own
        def exists(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        def open(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(loader, "_cache_file", lambda folder, base: Locked(tmp_path / "kb-check-x.pickle"))
    loader.load_knowledge.cache_clear()
    try:
        assert loader.load_knowledge("check").rule("K003") is not None
    finally:
        loader.load_knowledge.cache_clear()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run as nobody")
def test_an_unreadable_cache_folder_as_another_user(tmp_path: Path) -> None:
    home = tmp_path / "h700"
    (home / ".cache").mkdir(parents=True)
    home.chmod(0o700)
    os.chmod(tmp_path, 0o755)
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_CACHE_HOME", None)
    try:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "advisor", "explain", "K003"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    except (FileNotFoundError, PermissionError):
        pytest.skip("setpriv is not available")
    if "Permission denied" in proc.stderr and "advisor" not in proc.stderr:
        pytest.skip("the interpreter is not readable by nobody here")
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr


def test_explain_does_not_echo_a_huge_argument() -> None:
    line = _one_line(run_cli("explain", "x" * 100_000), "100,000 characters")
    assert len(line) < 300
