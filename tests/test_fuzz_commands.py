"""Issue 16, item 7: property-based input for every command that reads a user's file or options.

Whatever hypothesis generates (malformed search spaces and W&B sweeps for `check` and `search
--plan`, trials exports for `audit`, console text for `diagnose`, option values for `plan`,
output paths for `--report`/`--plot`/`--out`), each run must: exit 0, 1 or 2 only; on 2 print
one line and never "internal error" or a traceback; leave every input file byte for byte (and
mode) as it was; and end within a time limit (a SIGALRM in the test turns a hang into a failure).
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, run_cli

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMIT_S = 30  # one example; the slowest legitimate one (a plan, a diagnose) takes well under a second


@contextlib.contextmanager
def _time_limit(seconds: int = LIMIT_S):
    def _hang(signum, frame):
        raise AssertionError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_clean(*args: str, inputs: tuple[Path, ...] = ()):
    before = {p: (p.read_bytes(), p.stat().st_mode) for p in inputs if p.is_file()}
    with _time_limit():
        result = run_cli(*args)
    assert result.code in (0, 1, 2), (args, result)
    assert "Traceback" not in result.err and "internal error" not in result.err, (args, result.err)
    if result.code == 2:  # one line of advisor's, or the option parser's usage error ending in one
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 or (lines[0].startswith("Usage:") and lines[-1].startswith("Error:")), result.err
    for path, (data, mode) in before.items():
        assert path.read_bytes() == data and path.stat().st_mode == mode, f"{path} was changed by {args}"
    return result


# --- search spaces: advisor YAML and W&B sweeps ------------------------------------------------

_scalar = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: repr(x).replace("nan", ".nan").replace("inf", ".inf")),
    st.integers(-10**9, 10**9).map(str),
    st.sampled_from(["1e-5", "1.0e-3", "0", "-1", "true", "null", "~", "'0.1'", "adam", "[]", "{}", "[1, [2]]"]),
)
_param_keys = st.sampled_from(["type", "low", "high", "log", "choices", "step", "by", "ranges", "zero",
                               "distribution", "min", "max", "values", "value", "q", "mu", "sigma"])
_param_names = st.sampled_from(["lr", "learning_rate", "weight_decay", "batch_size", "dropout", "optimizer",
                                "epochs", "warmup", "seed", "width", "depth", "num_train_epochs"])


@st.composite
def _param(draw) -> str:
    fields = draw(st.dictionaries(_param_keys, _scalar, max_size=5))
    if draw(st.booleans()):
        fields["type"] = draw(st.sampled_from(["float", "int", "categorical", "loguniform", "grid", "x"]))
    if draw(st.booleans()):
        fields["distribution"] = draw(st.sampled_from(
            ["uniform", "log_uniform_values", "log_uniform", "int_uniform", "categorical", "q_uniform",
             "normal", "log_uniform_value", "constant"]))
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


@st.composite
def space_text(draw) -> str:
    params = draw(st.dictionaries(_param_names, _param(), max_size=5))
    body = "\n".join(f"  {name}: {spec}" for name, spec in params.items())
    if draw(st.booleans()):  # advisor's own format
        head = [f"advisor_space: {draw(st.sampled_from(['1', '2', 'x']))}",
                f"strategy: {draw(st.sampled_from(['random', 'grid', 'bayesian', 'tpe', '']))}",
                f"trials: {draw(_scalar)}", f"epochs: {draw(_scalar)}"]
        text = "\n".join(head) + "\nparams:\n" + body
    else:  # a W&B sweep
        head = [f"method: {draw(st.sampled_from(['random', 'grid', 'bayes', 'hyperopt']))}",
                f"metric: {{name: {draw(st.sampled_from(['val_loss', 'acc', '']))}, "
                f"goal: {draw(st.sampled_from(['minimize', 'maximize', 'minimise', '']))}}}",
                f"run_cap: {draw(_scalar)}"]
        if draw(st.booleans()):
            head.append(f"early_terminate: {{type: {draw(st.sampled_from(['hyperband', 'x']))}, min_iter: 3}}")
        text = "\n".join(head) + "\nparameters:\n" + body
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@SETTINGS
@given(text=space_text(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_check_of_any_space_is_clean(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(text.encode(encoding))
    os.chmod(path, 0o600)
    _run_clean("check", str(path), "--json", inputs=(path,))
    fixed = tmp_path / "fixed.yaml"
    fixed.unlink(missing_ok=True)
    _run_clean("check", str(path), "--fix", "--out", str(fixed), inputs=(path,))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=space_text())
def test_search_reads_any_plan_file_or_names_what_is_wrong(tmp_path: Path, text: str) -> None:
    """What `search --plan FILE` does before any training: read the file and check it runs."""
    pytest.importorskip("optuna")
    from advisor.act.search.space import _check_space, space_from_file
    from advisor.errors import AdvisorError

    path = tmp_path / "space.yaml"
    path.write_text(text)
    with _time_limit():
        try:
            _check_space(space_from_file(str(path)), str(path))
        except AdvisorError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), str(exc)


# --- trials exports for audit ------------------------------------------------------------------

_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 10**6).map(str),
                  st.sampled_from(["", "COMPLETE", "PRUNED", "FAIL", "RUNNING", "abc", "1e400", "-0"]))
_columns = st.lists(st.sampled_from(["number", "value", "state", "params_lr", "params_width", "duration",
                                     "values_0", "user_attrs_x", "config/lr", "loss", "Name", "lr"]),
                    min_size=1, max_size=6, unique=True)


@SETTINGS
@given(columns=_columns, data=st.data(), sep=st.sampled_from([",", "\t", ";"]))
def test_audit_of_any_trials_export_is_clean(tmp_path: Path, columns: list[str], data, sep: str) -> None:
    rows = data.draw(st.lists(st.lists(_cell, min_size=len(columns) - 1, max_size=len(columns) + 1), max_size=15))
    path = tmp_path / "trials.csv"
    path.write_text(sep.join(columns) + "\n" + "\n".join(sep.join(r) for r in rows) + "\n")
    _run_clean("audit", str(path), "--json", inputs=(path,))


# --- console text for diagnose -----------------------------------------------------------------

_word = st.sampled_from(["Epoch", "epoch", "loss", "val_loss", "acc", "lr", "step", "eval_loss", "-", "|", ":",
                         "=", "[", "]", "/", "{'loss':", "}", "%", "nan", "INF", "1,234", "\r", "\x08", "ETA"])
_number = st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x:.4g}")


@SETTINGS
@given(lines=st.lists(st.lists(st.one_of(_word, _number, st.text(string.printable, max_size=4)), max_size=12),
                      max_size=40))
def test_diagnose_of_any_console_text_is_clean(tmp_path: Path, lines: list[list[str]]) -> None:
    path = tmp_path / "train.log"
    path.write_text("\n".join(" ".join(line) for line in lines))
    _run_clean("diagnose", str(path), "--format", "text", "--json", inputs=(path,))
    _run_clean("diagnose", str(path), "--json", inputs=(path,))


# --- plan options ------------------------------------------------------------------------------

_duration = st.one_of(st.sampled_from(["50h", "90m", "2d", "0", "-1h", "1e400h", "nan", "1h30m", "", "h", "3600"]),
                      st.text(string.ascii_letters + string.digits + ".-", max_size=8))
_count = st.one_of(st.integers(-3, 10**12).map(str), st.sampled_from(["nan", "x", "", "1.5"]))


@SETTINGS
@given(budget=_duration, trial=_duration, workers=_count, gpus=_count,
       params=st.lists(st.sampled_from(["lr", "weight_decay", "batch_size", "dropout", "x", "", "lr"]), max_size=5),
       optimizer=st.sampled_from(["adam", "adamw", "sgd", "lion", "", "x"]),
       family=st.sampled_from(["transformer", "cnn", "mlp", "x", ""]))
def test_plan_of_any_options_is_clean(budget, trial, workers, gpus, params, optimizer, family) -> None:
    args = ["plan", "--budget", budget, "--trial-time", trial, "--workers", workers, "--gpus", gpus,
            "--optimizer", optimizer, "--model-family", family, "--json"]
    if params:
        args += ["--params", ",".join(params)]
    _run_clean(*args)


# --- output paths ------------------------------------------------------------------------------

_RUN = FIXTURES / "runs" / "overfitting.keras.csv"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(report=st.sampled_from(["input", "dir", "existing", "readonly", "missing-dir", "link-to-input", "new",
                               "dev-null", "same-as-plot"]),
       force=st.booleans())
def test_diagnose_output_paths_never_harm_an_input(tmp_path: Path, report: str, force: bool) -> None:
    run = tmp_path / "run.csv"
    run.write_bytes(_RUN.read_bytes())
    existing = tmp_path / "old.md"
    existing.write_text("the user's notes\n")
    readonly = tmp_path / "ro.md"
    readonly.write_text("keep\n")
    readonly.chmod(0o444)
    link = tmp_path / "link.md"
    with contextlib.suppress(FileExistsError):
        link.symlink_to(run)
    target = {"input": run, "dir": tmp_path, "existing": existing, "readonly": readonly,
              "missing-dir": tmp_path / "no" / "such" / "r.md", "link-to-input": link, "new": tmp_path / "new.md",
              "dev-null": Path(os.devnull), "same-as-plot": tmp_path / "both.md"}[report]
    args = ["diagnose", str(run), "--report", str(target)]
    if report == "same-as-plot":
        args += ["--plot", str(target)]
    if force:
        args.append("--force")
    guarded = (run,) if force else (run, existing, readonly)
    result = _run_clean(*args, inputs=guarded)
    if report in ("input", "link-to-input", "dir", "missing-dir", "same-as-plot"):
        assert result.code == 2, result
    if report == "readonly" and force:
        # replaced only with --force, and its mode kept
        assert result.code == 2 or (readonly.stat().st_mode & 0o777) == 0o444


@pytest.mark.parametrize("command", [
    ["plan", "--budget", "10h", "--trial-time", "1h", "--emit", "wandb", "--out"],
    ["check", str(FIXTURES / "spaces" / "bad-narrow-lr.yaml"), "--fix", "--out"],
])
def test_other_commands_never_write_onto_their_input_or_an_existing_file(tmp_path: Path, command: list[str]) -> None:
    existing = tmp_path / "sweep.yaml"
    existing.write_text("mine\n")
    _run_clean(*command, str(existing), inputs=(existing,))
    assert existing.read_text() == "mine\n"
    if command[0] == "check":  # --out onto the space it reads
        source = Path(command[1])
        assert _run_clean(*command, str(source), inputs=(source,)).code == 2
