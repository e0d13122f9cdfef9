"""Console text: the values a training run printed (Keras fit, Hugging Face Trainer dicts, tqdm,
logging and print lines), read by one generic extractor. Real files in fixtures/real/text/ (the
corpus' text family, SOURCES.md there); the numbers checked come from its NOTES.md."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import InputError
from advisor.ingest import load_run, load_runs
from advisor.ingest.readers import read, sniff

from conftest import FIXTURES, run_cli

TEXT = FIXTURES / "real" / "text"


def _epoch_of(run, role: str, value: float) -> float:
    series = run.series(role)
    return float(run.epochs.index[int(np.flatnonzero(np.isclose(series, value, atol=5e-5))[0])])


# --- real console logs ---------------------------------------------------------------------------

def test_keras2_epoch_lines() -> None:
    run = load_run(TEXT / "x_01_cat-dog-keras.txt")  # 'Found N images' lines, then 'Epoch k/40' + one line
    assert run.format == "text"
    assert run.columns == {"epoch": "epoch", "train_loss": "loss", "val_loss": "val_loss",
                           "train_metric": "acc", "val_metric": "val_acc"}
    assert list(run.epochs.index) == list(range(1, 41))
    val = run.series("val_loss")
    assert np.nanargmin(val) == 39 and val[-1] == pytest.approx(0.3401)
    assert run.series("val_metric")[8] == pytest.approx(0.76301)  # five decimals, as printed


def test_keras3_intermediate_lines_and_a_number_wrapped_across_lines() -> None:
    path = TEXT / "x_02_road-surface-keras3.txt"
    run = load_run(path)
    assert len(run.epochs) == 26  # 'Epoch 26: early stopping' and the checkpoint lines are no epochs
    # the epoch's final line wins over the intermediate train-only one ('484/485 ... loss: 0.2090')
    assert run.series("train_loss")[1] == pytest.approx(0.1809)
    assert run.series("val_loss")[9] == pytest.approx(9.3789)  # the blow-up at epoch 10
    assert run.series("val_loss")[15] == pytest.approx(0.0240, abs=1e-4)  # the minimum, epoch 16
    raw = read(path, None)
    epoch = list(raw.columns["epoch"]).index(24)
    # 'val_recall: 0' ends a line, '.9938 - learning_rate: 2.5000e-04' starts the next
    assert raw.columns["val_recall"][epoch] == pytest.approx(0.9938)
    assert raw.columns["learning_rate"][epoch] == pytest.approx(2.5e-4)
    # TensorFlow's log lines ('cuda_dnn.cc:473] ...') give no columns
    assert set(raw.columns) == {"epoch", "accuracy", "loss", "precision", "recall", "val_accuracy",
                                "val_loss", "val_precision", "val_recall", "learning_rate"}


def test_utf16_with_bom_crlf_and_ansi_colours() -> None:
    path = TEXT / "x_04_leukemia-keras-utf16.txt"  # a PowerShell '>' redirect
    assert sniff(path)[0] == "text"
    run = load_run(path)
    assert len(run.epochs) == 10
    val = run.series("val_loss")
    assert val[0] == pytest.approx(19.6809) and np.nanmin(val) == pytest.approx(3.7745)
    assert run.series("train_loss")[-1] == pytest.approx(0.0418)


def test_huggingface_printed_dicts_two_runs() -> None:
    runs = load_runs(TEXT / "x_05_bert-mlm-ner-hf-dicts.txt")
    # run 1 (MLM) ends with its summary dict, run 2 (NER) starts again at epoch 1; the closing
    # 'eval_results= {...}' repeats run 2's last evaluation and is no third run
    assert len(runs) == 2
    mlm, ner = runs
    assert mlm.columns["train_loss"] == "loss" and mlm.columns["val_loss"] == "eval_loss"
    assert mlm.columns["lr"] == "learning_rate"
    assert mlm.n_steps == 13 and len(mlm.epochs) == 3  # 13 training logs in 3 epochs
    assert ner.metric == "eval_f1" and ner.higher_is_better is True
    assert len(ner.epochs) == 10
    assert _epoch_of(ner, "val_loss", np.nanmin(ner.series("val_loss"))) == 7
    assert np.nanmin(ner.series("val_loss")) == pytest.approx(0.031270574778318405)
    raw = read(TEXT / "x_05_bert-mlm-ner-hf-dicts.txt", None)
    assert "train_runtime" not in raw.columns  # the summaries are not points
    assert "text" not in raw.columns and "num_rows" not in raw.columns  # a dataset dump is no log


def test_print_lines_after_progress_bars_crlf() -> None:
    run = load_run(TEXT / "x_06_alzheimer-3dcnn-valacc.txt")  # 'Epoch k/200, Train Loss: ..., Val Acc: ...'
    assert run.columns == {"epoch": "epoch", "train_loss": "Train Loss", "val_metric": "Val Acc"}
    assert len(run.epochs) == 39
    assert run.series("val_metric")[-1] == pytest.approx(0.8571)  # not 'Test Accuracy: 0.8600'


def test_python_logging_prefix() -> None:
    run = load_run(TEXT / "x_08_emonet-tcn-500ep.log")  # '2023-05-15 22:50:17,398 INFO:Epoch 1: Train Loss=...'
    assert run.columns["train_loss"] == "Train Loss" and run.columns["val_loss"] == "Val Loss"
    assert len(run.epochs) == 500
    assert run.series("val_loss")[0] == pytest.approx(0.0766)


def test_keras2_eta_lines() -> None:
    run = load_run(TEXT / "x_09_leaf-keras-1000ep.txt")  # an intermediate 'ETA' line in every epoch
    assert len(run.epochs) == 1000
    val = run.series("val_loss")
    assert val[0] == pytest.approx(1.0300) and np.nanargmin(val) == 0
    assert run.series("train_loss")[0] == pytest.approx(1.2549)  # the final line, not 'ETA ... 1.1833'


def test_one_epoch_over_three_logging_lines_with_section_words() -> None:
    run = load_run(TEXT / "x_10_gnn-vgae-nan.log")  # 'Epoch: 0, Loss:', 'Train. Total Loss: ...', 'Val. ...'
    assert run.columns["val_loss"] == "Val Total Loss"
    assert run.metric == "Val AP"  # detection's mean precision before AUC (roles)
    assert list(run.epochs.index) == list(range(10))
    assert run.series("val_loss")[:4] == pytest.approx([1.79, 1.77, 1.79, 1.97])
    assert list(run.epochs["nonfinite"]) == [False] * 4 + [True] * 6  # 'nan' from epoch 4
    assert run.series("val_metric")[0] == pytest.approx(0.5055)  # '50.55%'


# --- the shapes people print --------------------------------------------------------------------

def _write(tmp_path, text: str, name: str = "train.log", **kw):
    path = tmp_path / name
    path.write_text(text, **kw)
    return path


@pytest.mark.parametrize("line", [
    "Epoch {e} | train loss {t} | val loss {v} | val acc {a}%",
    "epoch: {e}, loss={t}, val_loss={v}, val_acc={a}%",
    "[{e}/30] loss: {t} - val_loss: {v} - val_acc: {a}%",
    "2024-01-01 10:00:00,123 - INFO - trainer - Epoch [{e}/30] train_loss={t} val_loss={v} val_acc={a}%",
    "Epoch {e}: 100%|##########| 50/50 [00:03<00:00, 14.1it/s, loss={t}, val_loss={v}, val_acc={a}%]",
])
def test_hand_written_shapes(tmp_path, line: str) -> None:
    rows = [line.format(e=e, t=f"{2 / e:.4f}", v=f"{2.2 / e:.4f}", a=f"{50 + e:.1f}") for e in range(1, 31)]
    run = load_run(_write(tmp_path, "starting\n" + "\n".join(rows) + "\ndone\n"))
    assert list(run.epochs.index) == list(range(1, 31))
    assert run.series("train_loss")[1] == pytest.approx(1.0)
    assert run.series("val_loss")[-1] == pytest.approx(2.2 / 30, abs=1e-4)
    assert run.series("val_metric")[0] == pytest.approx(0.51)  # percent -> fraction


def test_number_spellings(tmp_path) -> None:
    text = ("epoch 1: loss 1,234.5 val_loss 2.5e+03\n".replace(" loss", " | loss").replace(" val_loss", " | val_loss")
            + "epoch: 2, loss: 1.2E2, val_loss: NaN\n"
            + "epoch: 3, loss: -INF, val_loss: Infinity\n"
            + "epoch: 4, loss: tensor(0.5000, device='cuda:0', grad_fn=<NllLossBackward0>), val_loss: 0.6\n")
    raw = read(_write(tmp_path, text), None)
    loss, val = raw.columns["loss"], raw.columns["val_loss"]
    assert loss[0] == 1234.5 and val[0] == 2500.0
    assert loss[1] == 120.0 and np.isnan(val[1]) and raw.explicit_nan["val_loss"][1]
    assert loss[2] == -np.inf and val[2] == np.inf
    assert loss[3] == 0.5


def test_progress_bar_redraws_with_carriage_returns_and_backspaces(tmp_path) -> None:
    """Keras 2 writing to a file: each redraw after '\\r' or a run of '\\b'; the epoch's last line wins."""
    lines = []
    for e in range(1, 6):
        bar = "".join(f"{b}/4 [{'=' * b}{'.' * (4 - b)}] - ETA: 1s - loss: {1 / e + 0.1 * b:.4f}\x08\x08\x08\x08\x08"
                      for b in range(1, 4))
        lines.append(f"Epoch {e}/5\n{bar}\r4/4 [====] - 2s 10ms/step - loss: {1 / e:.4f} - val_loss: {1.1 / e:.4f}\n")
    run = load_run(_write(tmp_path, "".join(lines)))
    assert len(run.epochs) == 5
    assert run.series("train_loss") == pytest.approx([1 / e for e in range(1, 6)], abs=1e-4)
    assert run.series("val_loss") == pytest.approx([1.1 / e for e in range(1, 6)], abs=1e-4)


def test_what_is_printed_after_training_is_not_an_epoch(tmp_path) -> None:
    body = "".join(f"Epoch {e}/3\n10/10 [====] - 1s - loss: {1 / e:.3f} - val_loss: {1.2 / e:.3f}\n" for e in (1, 2, 3))
    # model.evaluate() right after fit, and a summary line with a loss
    text = body + "5/5 [====] - 0s - loss: nan - accuracy: 0.1000\nBest val loss: 0.4\n"
    run = load_run(_write(tmp_path, text))
    assert len(run.epochs) == 3 and not run.epochs["nonfinite"].any()
    assert run.series("train_loss")[-1] == pytest.approx(0.333)


def test_step_lines_each_a_row(tmp_path) -> None:
    text = "".join(f"step {s} | loss {3 / (s / 10 + 1):.4f}\n" for s in range(10, 1010, 10))
    run = load_run(_write(tmp_path, text))
    assert run.columns["step"] == "step"
    assert len(run.epochs) == 100


def test_nothing_found_is_one_line_and_exit_2(tmp_path) -> None:
    path = _write(tmp_path, "hello\nthis file has no training values\nlr: 0.001\n")
    with pytest.raises(InputError, match="no training values found"):
        load_run(path)
    result = run_cli("diagnose", str(path))
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "no training values found" in result.err


def test_a_table_stays_a_table_and_text_lines_in_a_csv_stay_text(tmp_path) -> None:
    table = _write(tmp_path, "epoch,loss,val_loss\n" + "".join(f"{e},{1 / e},{1.1 / e}\n" for e in range(1, 20)),
                   name="log.csv")
    assert sniff(table)[0] == "csv"
    assert sniff(FIXTURES / "real/csv/c_20_convlstm-har-text-in-csv.csv")[0] == "text"


def test_detection_reads_only_the_head(tmp_path) -> None:
    """Detection looks at the first 64 KB: a long log whose tail is not text is still sniffed."""
    head = "".join(f"Epoch {e}/2000\n10/10 [====] - loss: {1 / e:.4f} - val_loss: {1.1 / e:.4f}\n"
                   for e in range(1, 2001))
    path = tmp_path / "big.log"
    path.write_bytes(head.encode() + b"\x00" * 100_000)
    assert len(head) > 65536
    assert sniff(path)[0] == "text"


# --- notebooks ----------------------------------------------------------------------------------

def test_notebook_several_fit_calls_are_several_runs() -> None:
    runs = load_runs(TEXT / "x_16_nbeats-airquality.ipynb")  # 7 cells of 'epoch: k, loss: ..., val_loss: ...'
    assert runs[0].format == "notebook"
    assert [len(r.epochs) for r in runs] == [100] * 7
    temp = runs[0].series("val_loss")
    assert np.nanargmin(temp) == 6 and np.nanmin(temp) == pytest.approx(0.00522, abs=1e-5)


def test_notebook_prints_glued_to_tqdm_bars_and_a_resumed_cell() -> None:
    run = load_run(TEXT / "x_12_vit-kan-hindi-tqdm.ipynb")  # epochs 1-50 in one cell, 71-80 in another
    assert run.parts == 1
    assert list(run.epochs.index) == [*range(1, 51), *range(71, 81)]
    assert run.series("val_loss")[49] == pytest.approx(0.1495, abs=1e-4)
    assert np.nanmin(run.series("val_loss")) == pytest.approx(0.1048, abs=1e-4)


def test_notebook_keras3_with_ansi_escapes_and_checkpoint_lines() -> None:
    run = load_run(TEXT / "x_13_lstm-wordlm-keras3.ipynb")
    assert len(run.epochs) == 26
    val = run.series("val_loss")
    assert np.nanargmin(val) == 8 and np.nanmin(val) == pytest.approx(5.721, abs=1e-3)
    assert run.series("train_loss")[0] == pytest.approx(6.325, abs=1e-3)  # the final line, not the intermediate


def test_notebook_minified_on_one_line() -> None:
    run = load_run(TEXT / "x_19_wisdm-lstm.ipynb")
    assert len(run.epochs) == 20
    assert np.nanmin(run.series("val_loss")) == pytest.approx(0.1438, abs=1e-4)


def test_notebook_tqdm_postfix_and_an_interrupted_epoch() -> None:
    run = load_run(TEXT / "x_20_hangman-transformer-tqdm.ipynb")  # epoch 13 stopped at 370/390
    assert len(run.epochs) == 13
    assert run.series("val_loss")[-1] == pytest.approx(0.226)


def test_notebook_keras2_fit_cell() -> None:
    run = load_run(TEXT / "x_17_covid-inceptionv3-frozen.ipynb")
    assert len(run.epochs) == 80
    assert np.nanmin(run.series("val_loss")) == pytest.approx(0.6593, abs=1e-4)


def test_notebook_images_skipped_and_evaluate_is_no_epoch(tmp_path) -> None:
    import json

    fit = "".join(f"Epoch {e}/4\n8/8 [====] - 1s - loss: {1 / e:.4f} - val_loss: {1.3 / e:.4f}\n" for e in range(1, 5))
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "model.fit(...)", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": fit.splitlines(keepends=True)},
            {"output_type": "execute_result", "data": {"text/plain": "<keras.callbacks.History at 0x1>"}}]},
        {"cell_type": "code", "source": "model.evaluate(x)", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "4/4 [====] - 0s - loss: nan - accuracy: 0.1\n"},
            {"output_type": "execute_result", "data": {"text/plain": "[nan, 0.1]"}}]},
        {"cell_type": "code", "source": "plt.plot()", "outputs": [
            {"output_type": "display_data", "data": {"image/png": "loss: 0.5 " * 1000, "text/plain": "<Figure>"}}]},
        {"cell_type": "markdown", "source": "loss: 3"},
    ]}
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(nb))
    run = load_run(path)
    assert len(run.epochs) == 4 and not run.epochs["nonfinite"].any()
    assert run.series("val_loss")[-1] == pytest.approx(0.325)


# --- standard input -----------------------------------------------------------------------------

def _stdin(monkeypatch, data: bytes) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("name", ["x_04_leukemia-keras-utf16.txt", "x_19_wisdm-lstm.ipynb", "x_08_emonet-tcn-500ep.log"])
def test_standard_input_format_from_content(monkeypatch, name: str) -> None:
    _stdin(monkeypatch, (TEXT / name).read_bytes())
    runs = load_runs("-")
    assert [len(r.epochs) for r in runs] == [len(r.epochs) for r in load_runs(TEXT / name)]
    assert runs[0].path == "<stdin>"


def test_standard_input_table(monkeypatch) -> None:
    _stdin(monkeypatch, b"epoch,loss,val_loss\n" + b"".join(f"{e},{1 / e},{1.1 / e}\n".encode() for e in range(1, 11)))
    run = load_run("-")
    assert run.format == "csv" and len(run.epochs) == 10


def test_standard_input_errors_name_it(monkeypatch) -> None:
    _stdin(monkeypatch, b"")
    with pytest.raises(InputError, match="^<stdin>: file is empty$"):
        load_run("-")
    _stdin(monkeypatch, b"hello\n")
    with pytest.raises(InputError, match="^<stdin>: no training values found"):
        load_run("-")


def test_diagnose_dash_reads_a_pipe() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    log = (TEXT / "x_01_cat-dog-keras.txt").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "advisor", "diagnose", "-", "--json"], input=log,
                          capture_output=True, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["runs"][0]["run"] == "<stdin>"


def test_step_lines_then_an_epoch_summary_line(tmp_path) -> None:
    """A custom loop printing 'step N | loss x' lines and, at each epoch's end, its evaluation:
    the step lines belong to the epoch whose summary follows them."""
    lines = []
    for e in range(1, 6):
        lines += [f"2024-01-01 10:00:00,123 INFO step {(e - 1) * 10 + s} | loss {1 / e:.4f} | lr 1.00e-03"
                  for s in range(10)]
        lines.append(f"Epoch {e}: val_loss={1.2 / e:.4f}, val_acc={80 + e:.2f}%")
    run = load_run(_write(tmp_path, "\n".join(lines) + "\n"))
    assert run.columns["step"] == "step" and run.n_steps == 50
    assert list(run.epochs.index) == [1, 2, 3, 4, 5]
    assert run.series("train_loss") == pytest.approx([1 / e for e in range(1, 6)], abs=1e-4)
    assert run.series("val_loss") == pytest.approx([1.2 / e for e in range(1, 6)], abs=1e-4)


def test_a_notebooks_several_fits_are_compared_and_run_n_picks_one() -> None:
    import json

    notebook = FIXTURES / "real" / "text" / "x_16_nbeats-airquality.ipynb"
    every = json.loads(run_cli("diagnose", notebook, "--json").out)
    assert len(every["runs"]) == 7 and len(every["comparison"]) == 7
    assert len({r["run"] for r in every["runs"]}) == 7  # each run named apart: '[run 2 of 7]'
    second = run_cli("diagnose", notebook, "--run", "2", "--json")
    assert second.code in (0, 1), second
    picked = json.loads(second.out)["runs"]
    assert len(picked) == 1 and picked[0]["run"].endswith("[run 2 of 7]")
    assert picked[0]["facts"] == every["runs"][1]["facts"]
    beyond = run_cli("diagnose", notebook, "--run", "8")
    assert beyond.code == 2 and "--run 8: it holds 7 runs" in beyond.err
