"""advisor lr-find: the suggestion rules on recorded and synthetic curves, exact state restore,
bad input through the command, the JSON document, --demo, and no torch at import time."""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT

torch = pytest.importorskip("torch")

from advisor.act import lr_find as LF  # noqa: E402
from advisor.act.lr_find import lr_schedule, suggest  # noqa: E402
from advisor.errors import AdvisorError, InputError, RuleError  # noqa: E402

TASKS = Path(__file__).resolve().parent / "tasks"
sys.path.insert(0, str(TASKS))
import recorded_curves  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine


# --------------------------------------------------------------------------- synthetic curves

def synthetic(drop_at=-2.0, blow_at=0.0, noise=0.01, iters=100, start=1e-7, end=10.0, seed=0,
              floor=0.3, top=2.3, blow=True):
    """A range-test curve: plateau at `top`, a descent centred at 10**drop_at, a blow-up from
    10**blow_at (stopped 4x above the best, as the real test is)."""
    rng = np.random.default_rng(seed)
    lrs = lr_schedule(start, end, iters)
    x = np.log10(lrs)
    loss = floor + (top - floor) / (1 + np.exp(3.0 * (x - drop_at)))
    if blow:
        loss = loss * np.exp(np.minimum(np.clip(4.0 * (x - blow_at), 0, None) ** 2, 50))
    loss = loss * np.exp(noise * rng.standard_normal(iters))
    sm = LF.ema(loss, 0.98)
    best = np.minimum.accumulate(sm)
    over = np.flatnonzero(sm[1:] > 4 * best[:-1])
    stop = int(over[0]) + 2 if over.size else iters
    return lrs[:stop], loss[:stop], stop < iters


def test_ema_is_bias_corrected() -> None:
    assert np.allclose(LF.ema([5.0, 5.0, 5.0], 0.98), [5.0, 5.0, 5.0])
    assert LF.ema([1.0, 3.0], 0.5)[1] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)


def test_fastai_valley_matches_the_reference_algorithm() -> None:
    # a descent over indices 2..10 (longest decreasing run), then a rise
    losses = [5, 5.1, 5, 4.5, 4, 3.5, 3, 2.5, 2, 1.5, 1, 1.2, 2, 4]
    lrs = [10.0 ** i for i in range(len(losses))]
    # max_start 0 (lds counts from the first point lower than 5.1), max_end 10: idx = 0 + 3 + 1
    assert LF.valley_index(losses) == 4
    assert LF.valley(lrs, losses) == 1e4


def test_steepest_and_minimum_on_a_known_curve() -> None:
    lrs = [10.0 ** (i / 4) for i in range(9)]
    losses = [2.0, 2.0, 1.9, 1.5, 0.8, 0.6, 0.55, 0.9, 3.0]
    assert LF.steepest(lrs, losses) == pytest.approx(lrs[3])  # central differences: biggest fall at 3 and 4
    assert LF.minimum(lrs, losses, 10) == pytest.approx(lrs[6] / 10)
    assert LF.converging_index(losses, 0.1) == 6
    assert LF.largest_converging(lrs, losses, 3.5, 0.5) == pytest.approx(lrs[7] / 3.5)  # 0.9 is within half the descent


def test_suggestion_on_a_clean_synthetic_curve() -> None:
    lrs, losses, diverged = synthetic(drop_at=-2.5, blow_at=-0.5)
    s = suggest(lrs, losses, 100, diverged)
    assert s.verdict == "ok"
    assert 10 ** -3 < s.suggested_lr < 10 ** -0.5  # between the descent and the blow-up
    assert s.range[0] < s.suggested_lr < s.range[1]
    assert s.confidence > 0.4
    assert set(s.estimators) == {"valley", "steepest", "minimum", "converging"}
    assert set(s.peers) == {"fastai_valley", "fastai_minimum", "torch_lr_finder_steepest"}


@pytest.mark.parametrize("name, low, high", [("DIGITS_MLP_SGD", 0.05, 0.5),
                                              ("REVERSE_TRANSFORMER_ADAMW", 2.5e-3, 2.5e-2)])
def test_suggestion_on_recorded_curves_lands_in_the_good_band(name, low, high) -> None:
    rec = getattr(recorded_curves, name)
    lrs = lr_schedule(1e-7, 10, rec["iters"])[: len(rec["losses"])]
    s = suggest(lrs, rec["losses"], rec["iters"], rec["diverged"])
    assert s.verdict == "ok"
    assert low <= s.suggested_lr <= high, s.estimators


def test_flat_curve_gets_the_flat_verdict_and_no_number() -> None:
    lrs = lr_schedule(1e-7, 10, 100)
    losses = 0.05 * (1 + 0.01 * np.random.default_rng(1).standard_normal(100))
    s = suggest(lrs, losses, 100, False)
    assert s.verdict == "flat"
    assert s.suggested_lr is None and s.range is None
    assert "already be trained" in s.advice


def test_never_diverging_curve_says_raise_end() -> None:
    lrs, losses, diverged = synthetic(drop_at=0.3, blow=False, end=10.0)
    assert not diverged
    s = suggest(lrs, losses, 100, diverged)
    assert s.verdict == "never-diverged"
    assert "--end" in s.advice
    assert s.confidence <= 0.3


def test_curve_that_blows_up_at_once_has_too_few_points() -> None:
    lrs, losses, diverged = synthetic(drop_at=-7.5, blow_at=-6.5)
    assert diverged and len(losses) < 40
    s = suggest(lrs, losses, 100, diverged)
    assert s.verdict == "too-few-points"
    assert "--start" in s.advice and s.suggested_lr is None


def test_noisy_curve_is_called_noisy() -> None:
    lrs, losses, diverged = synthetic(drop_at=-2.0, blow_at=0.0, noise=0.25, seed=3, floor=1.6)
    s = suggest(lrs, losses, 100, diverged)
    assert s.verdict == "too-noisy"
    assert "--batch-size" in s.advice and s.confidence <= 0.3
    quiet = suggest(*synthetic(drop_at=-2.0, blow_at=0.0, noise=0.01, seed=3, floor=1.6)[:2], 100)
    assert quiet.verdict == "ok" and quiet.confidence > s.confidence


def test_nan_at_the_end_is_cut_off() -> None:
    lrs, losses, _ = synthetic(drop_at=-2.5, blow_at=-0.5)
    losses = np.append(losses, [np.nan, np.inf])
    lrs = lr_schedule(1e-7, 10, 100)[: len(losses)]
    assert suggest(lrs, losses, 100).verdict == "ok"


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 100), shift=st.integers(-3, 3), seed=st.integers(0, 1000))
def test_suggestion_is_unit_free(scale: float, shift: int, seed: int) -> None:
    """Multiplying the losses by a constant changes nothing; multiplying the LRs scales the answer."""
    lrs, losses, diverged = synthetic(drop_at=-2.5, blow_at=-0.5, seed=seed, noise=0.03)
    base = suggest(lrs, losses, 100, diverged)
    scaled = suggest(lrs * 10.0 ** shift, losses * scale, 100, diverged)
    assert scaled.verdict == base.verdict
    if base.suggested_lr:
        assert scaled.suggested_lr == pytest.approx(base.suggested_lr * 10.0 ** shift, rel=1e-6)


def test_repeats_are_combined_with_their_spread() -> None:
    runs = [suggest(*synthetic(drop_at=-2.5, blow_at=-0.5, seed=s, noise=0.03)[:2], 100) for s in range(3)]
    c = LF.combine(runs)
    assert c.suggestion.verdict == "ok"
    lrs = [r.suggested_lr for r in runs]
    assert min(lrs) <= c.suggestion.suggested_lr <= max(lrs)
    assert c.spread == pytest.approx(max(lrs) / min(lrs))
    assert c.suggestion.range[0] <= min(lrs) and c.suggestion.range[1] >= max(lrs)


def test_settings_file_is_strict(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((ROOT / "rules" / "lr_find.yaml").read_text())
    assert LF.load_settings().sweep.stop_factor == data["sweep"]["stop_factor"] == 4.0
    data["sweep"]["stop_factr"] = 3
    bad = tmp_path / "lr_find.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(RuleError, match="stop_factr"):
        LF.load_settings(str(bad))


# --------------------------------------------------------------------------- state restore

def _snapshot(model, optimizer=None):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    opt = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        opt = {"groups": json.dumps(sd["param_groups"]),
               "state": {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()}
                         for k, s in sd["state"].items()}}
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    return state, grads, opt, rng, [m.training for m in model.modules()]


def _assert_same(before, model, optimizer=None) -> None:
    state, grads, opt, rng, modes = before
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:
        assert torch.equal(state[k], now[k]), k  # bit-identical, buffers (batch-norm) included
    for n, p in model.named_parameters():
        assert (grads[n] is None and p.grad is None) or torch.equal(grads[n], p.grad), n
    if optimizer is not None:
        sd = optimizer.state_dict()
        assert json.dumps(sd["param_groups"]) == opt["groups"]
        assert sd["state"].keys() == opt["state"].keys()
        for k, s in opt["state"].items():
            for n, v in s.items():
                assert torch.equal(v, sd["state"][k][n]) if torch.is_tensor(v) else v == sd["state"][k][n]
    assert random.getstate() == rng[0]
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert torch.equal(torch.get_rng_state(), rng[2])
    assert [m.training for m in model.modules()] == modes


def _good_task():
    import good_task

    torch.manual_seed(0)
    return good_task.build({})


def test_range_test_restores_model_buffers_rng_exactly() -> None:
    task = _good_task()
    task.model.eval()  # a flag the test must put back
    before = _snapshot(task.model)
    curve = LF.range_test(task.model, task.train_loader, task.loss_fn, optimizer_name="adamw", iters=60, seed=5)
    assert curve.steps > 10 and len(curve.lrs) == len(curve.losses) == len(curve.smoothed)
    _assert_same(before, task.model)
    # the RNG really was put back: the next draws are the ones that would have come anyway
    a = torch.rand(3)
    torch.set_rng_state(before[3][2])
    assert torch.equal(a, torch.rand(3))


def test_range_test_restores_a_users_optimizer_with_state_and_grads() -> None:
    task = _good_task()
    opt = torch.optim.SGD(task.model.parameters(), lr=0.05, momentum=0.9)
    x, y = next(iter(task.train_loader))
    task.loss_fn(task.model(x), y).backward()
    opt.step()  # momentum buffers now exist; the gradients stay on the parameters
    before = _snapshot(task.model, opt)
    LF.range_test(task.model, task.train_loader, task.loss_fn, optimizer=opt, iters=40)
    _assert_same(before, task.model, opt)
    assert opt.param_groups[0]["lr"] == 0.05


def test_state_is_restored_when_the_test_fails_midway() -> None:
    task = _good_task()

    class Breaks:
        def __iter__(self):
            for i, batch in enumerate(task.train_loader):
                if i == 5:
                    raise OSError("disk gone")
                yield batch

    before = _snapshot(task.model)
    with pytest.raises(InputError, match="batch 6.*disk gone"):
        LF.range_test(task.model, Breaks(), task.loss_fn, iters=30)
    _assert_same(before, task.model)


def test_reading_losses_in_blocks_gives_the_same_curve() -> None:
    """The CUDA path reads the loss every 8 steps (one sync per block): same curve, same stop."""
    from advisor.act import demo

    task = demo.build({})
    one = LF.range_test(task.model, task.train_loader, task.loss_fn, optimizer_name="adam", seed=3, end=100.0)
    eight = LF.range_test(task.model, task.train_loader, task.loss_fn, optimizer_name="adam", seed=3, end=100.0,
                          read_every=8)
    assert one.stop_reason == eight.stop_reason == "diverged"
    assert one.losses == eight.losses and one.lrs == eight.lrs


def test_real_range_test_on_the_demo_task() -> None:
    from advisor.act import demo

    torch.manual_seed(0)
    task = demo.build({})
    curve = LF.range_test(task.model, task.train_loader, task.loss_fn, optimizer_name="sgd", seed=0)
    assert curve.steps > 80 and max(curve.losses[-10:]) > 2 * min(curve.losses)  # it blew up at the end
    s = curve.suggest()
    assert s.verdict == "ok" and 0.05 < s.suggested_lr < 0.5  # the sweep's good band for this MLP


# --------------------------------------------------------------------------- the command

def _app():
    import typer

    from advisor.act.cli_lr_find import EPILOG, lr_find

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command(name="lr-find", epilog=EPILOG)(lr_find)

    @app.command()
    def other() -> None:  # a second command, so that "lr-find" is a sub-command as in advisor
        pass

    return app


def lr_find_cli(*args: str):
    """Run `advisor lr-find ARGS` in-process; (exit code, stdout, stderr), errors as advisor.cli does."""
    import typer

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result = _app()(["lr-find", *map(str, args)], standalone_mode=False)
            code = result if isinstance(result, int) else 0
        except AdvisorError as exc:
            print(f"advisor: error: {exc}", file=sys.stderr)
            code = 2
        except typer.Exit as exc:
            code = exc.exit_code
        except Exception as exc:  # usage errors (click)
            if hasattr(exc, "show"):
                exc.show()
                code = getattr(exc, "exit_code", 2)
            else:
                raise
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("args, pattern", [
    (["missing_task.py:build"], r"missing_task\.py: task file not found"),
    ([f"{TASKS / 'no_build.py'}:build"], r"no_build\.py: has no function 'build' \(functions there: make\)"),
    ([f"{TASKS / 'raising_task.py'}"], r"build\(hp\) raised raising_task\.py:6: KeyError: 'huge'"),
    ([f"{TASKS / 'incomplete_task.py'}:build"], r"lacks loss_fn, metric"),
    ([f"{TASKS / 'wrong_shape_task.py'}:build"], r"first training step failed.*shapes cannot be multiplied"),
    ([f"{TASKS / 'broadcast_task.py'}:build"], r"broadcast the targets"),
    ([f"{TASKS / 'nan_task.py'}:build"], r"loss is nan at the first step"),
    (["no_such_package.tasks:build"], r"no_such_package\.tasks: no such module"),
    (["--demo", "--optimizer", "lion"], r"--optimizer: unknown optimizer 'lion'"),
    (["--demo", "--optimizer", "adam", "--momentum", "0.8"], r"--momentum: only for --optimizer sgd"),
    (["--demo", "--start", "1", "--end", "0.1"], r"--end: must be above --start"),
    (["--demo", "--device", "tpu"], r"--device: unknown device 'tpu'"),
    ([], r"TASK: missing"),
])
def test_bad_input_is_one_line_and_exit_2(args, pattern) -> None:
    code, out, err = lr_find_cli(*args, "--iters", "20")
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advisor: error: "), err
    import re

    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_a_clear_error() -> None:
    code, out, err = lr_find_cli("--demo", "--device", "cuda")
    assert code == 2 and out == ""
    assert "--device cuda: CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_bad_task_leaves_a_given_model_untouched() -> None:
    """NaN from the first step: the InputError comes after the model was stepped; all restored."""
    import nan_task

    task = nan_task.build({})
    before = _snapshot(task.model)
    with pytest.raises(InputError, match="first step"):
        LF.range_test(task.model, task.train_loader, task.loss_fn, iters=20)
    _assert_same(before, task.model)


def test_demo_json_document(tmp_path: Path) -> None:
    plot = tmp_path / "lr.png"
    code, out, err = lr_find_cli("--demo", "--optimizer", "sgd", "--json", "--repeats", "2",
                                 "--plot", plot, "--batch-size", "64")
    assert code == 0, err
    doc = json.loads(out)  # stdout carries the JSON document and nothing else
    for key in ("schema_version", "suggested_lr", "range", "confidence", "confidence_label", "verdict",
                "message", "advice", "notes", "estimators", "peers", "curve", "repeats", "sweep",
                "optimizer", "batch_size", "task", "device", "mixed_precision", "seed", "seconds"):
        assert key in doc, key
    assert doc["schema_version"] == "advisor.lr-find/1"
    assert doc["verdict"] == "ok" and doc["task"] == "demo"
    low, high = doc["range"]
    assert low < doc["suggested_lr"] < high
    assert 0 <= doc["confidence"] <= 1
    assert set(doc["curve"]) >= {"lr", "loss", "smoothed"}
    assert len(doc["curve"]["lr"]) == len(doc["curve"]["loss"]) == doc["sweep"]["steps"]
    assert doc["repeats"]["n"] == 2 and doc["repeats"]["seeds"] == [0, 1]
    assert doc["repeats"]["spread"] >= 1
    assert doc["optimizer"] == {"name": "sgd", "momentum": 0.9, "weight_decay": 0.0}
    assert doc["device"].startswith("cpu") and doc["batch_size"] == 64
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    # what `advisor plan --lr-from` will read
    file = tmp_path / "lrfind.json"
    file.write_text(out)
    assert LF.read_report(file).suggested_lr == doc["suggested_lr"]


def test_demo_terminal_output() -> None:
    code, out, err = lr_find_cli("--demo", "--optimizer", "adamw")
    assert code == 0, err
    assert "suggested LR" in out and "verdict ok" in out and "estimators:" in out


def test_user_task_file_runs_and_gets_batch_size(tmp_path: Path) -> None:
    code, out, err = lr_find_cli(f"{TASKS / 'good_task.py'}:build", "--json", "--iters", "60",
                                 "--batch-size", "16", "--optimizer", "adam")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sweep"]["steps"] <= 60 and doc["batch_size"] == 16


def test_task_given_as_a_module_and_spec_parsing() -> None:
    from advisor.act.task import split_spec

    assert split_spec("pkg.tasks:make") == ("pkg.tasks", "make")
    assert split_spec("pkg.tasks") == ("pkg.tasks", "build")
    assert split_spec("dir/task.py") == ("dir/task.py", "build")
    assert split_spec(r"C:\work\task.py:build") == (r"C:\work\task.py", "build")
    assert split_spec(r"C:\work\task.py") == (r"C:\work\task.py", "build")
    code, out, err = lr_find_cli("good_task:build", "--json", "--iters", "30")  # tests/tasks is on sys.path
    assert code == 0, err
    assert json.loads(out)["task"] == "good_task:build"


def test_read_report_refuses_other_json(tmp_path: Path) -> None:
    file = tmp_path / "x.json"
    file.write_text('{"schema_version": "advisor.diagnose/1"}')
    with pytest.raises(InputError, match="not an advisor lr-find result"):
        LF.read_report(file)


def test_help_has_examples() -> None:
    code, out, _ = lr_find_cli("--help")
    assert code == 0
    assert "advisor lr-find --demo" in out and "--repeats" in out and "--device" in out


def test_registered_in_advisor_cli_when_the_lead_has_wired_it() -> None:
    from advisor.cli import app

    names = [c.name for c in app.registered_commands]
    if "lr-find" not in names:
        pytest.skip("lr-find is not registered in advisor/cli.py yet")
    from conftest import run_cli

    result = run_cli("lr-find", "--demo", "--json", "--iters", "40")
    assert result.code == 0, result.err
    assert json.loads(result.out)["schema_version"] == "advisor.lr-find/1"


# --------------------------------------------------------------------------- import cost

def test_importing_the_command_does_not_import_torch() -> None:
    code = ("import sys; import advisor.act.cli_lr_find, advisor.act.lr_find, advisor.act.task, advisor.act; "
            "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
