"""Ingest on real training logs from public repositories (fixtures/real/<family>/, with the
SOURCES.md of each family): each test reads one file the way its format is written in the wild
and checks what was read (roles, epochs or parts, a value from the file's NOTES)."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import InputError
from advisor.ingest import load_run, load_runs
from advisor.ingest.roles import higher_is_better

from conftest import FIXTURES, RUNS

REAL = FIXTURES / "real"


def test_every_real_fixture_has_its_sources() -> None:
    for folder in [f for f in REAL.iterdir() if f.is_dir()]:
        sources = (folder / "SOURCES.md").read_text(encoding="utf-8")
        for log in folder.iterdir():
            if log.name not in ("SOURCES.md", "NOTES.md", "labels.json"):
                assert log.name in sources, log


# --- CSV layouts ------------------------------------------------------------------------------

def test_title_line_above_a_semicolon_header() -> None:
    """Keras CSVLogger re-saved by a spreadsheet: 'model_history_log', then 'epoch;accuracy;...', CRLF."""
    run = load_run(REAL / "keras/k_03_speech-digits-semicolon.csv")
    assert run.columns == {"epoch": "epoch", "train_loss": "loss", "val_loss": "val_loss",
                           "train_metric": "accuracy", "val_metric": "val_accuracy"}
    assert len(run.epochs) == 17
    val = run.series("val_loss")
    assert int(np.nanargmin(val)) == 6 and np.nanmin(val) == pytest.approx(0.1439, abs=1e-4)


def test_number_inside_a_tensor_repr() -> None:
    run = load_run(REAL / "csv/c_04_unet-sngp-tensor-strings.csv")
    assert len(run.epochs) == 100
    assert run.series("train_loss")[0] == pytest.approx(3.1304)
    assert run.series("val_loss")[0] == pytest.approx(2.9495)


def test_a_lone_series_is_a_loss_curve() -> None:
    run = load_run(REAL / "csv/c_07_forgery-cnn-stuck-ln2.csv")  # pd.Series.to_csv: header '0'
    assert run.columns == {"train_loss": "0"}
    assert len(run.epochs) == 50
    assert run.series("train_loss")[0] == pytest.approx(0.69135, abs=1e-5)


def test_camel_case_names() -> None:
    run = load_run(REAL / "csv/c_12_mae-bioseq-val-explodes.csv")  # ',Loss,ValLoss,ReconstructRate,...'
    assert run.columns["train_loss"] == "Loss" and run.columns["val_loss"] == "ValLoss"
    assert run.metric == "ValReconstructRate" and run.higher_is_better is True
    assert len(run.epochs) == 500


def test_trn_prefix_and_a_second_loss_is_no_metric() -> None:
    run = load_run(REAL / "csv/c_18_catsdogs-cosine-lr.csv")
    assert run.columns["train_loss"] == "trn_loss" and run.columns["val_loss"] == "val_loss"
    assert run.metric is None  # val_logloss is a loss: never a metric taken as higher-is-better


def test_validation_columns_win_over_test_columns() -> None:
    run = load_run(REAL / "lightning/l_17_neural_ode.csv")  # test_loss sorts before val_loss
    assert run.columns["val_loss"] == "val_loss" and run.columns["val_metric"] == "val_accuracy"


def test_long_table_with_a_phase_column() -> None:
    run = load_run(REAL / "csv/c_15_bert-bios-phase-column.csv")  # 'train' rows every 50 steps, 3 'val' rows
    assert run.columns["train_loss"] == "loss" and run.columns["val_loss"] == "val_loss"
    assert run.metric == "val_accuracy"
    assert list(run.series("val_loss")) == pytest.approx([2.242011, 2.147159, 2.148795])
    assert list(run.series("train_loss")) == pytest.approx([2.58, 1.75, 1.40], abs=0.01)  # no val row in them


# --- runs in one file ---------------------------------------------------------------------------

def test_wandb_export_of_one_run() -> None:
    runs = load_runs(REAL / "csv/c_08_wandb-sentence-reorder-val.csv")
    assert len(runs) == 1 and runs[0].part is None
    run = runs[0]
    assert run.columns == {"step": "Step", "val_loss": "epoch/val_loss"}  # __MIN/__MAX left out
    assert len(run.epochs) == 64
    assert np.nanmin(run.series("val_loss")) == pytest.approx(0.2093, abs=1e-4)


def test_wandb_export_of_runs_side_by_side() -> None:
    runs = load_runs(REAL / "csv/c_13_wandb-nanogpt-multirun.csv")
    assert len(runs) == 8 and {r.parts for r in runs} == {8}
    assert [r.part for r in runs] == list(range(8))
    gpt2 = next(r for r in runs if r.part_name == "gpt2")
    assert len(gpt2.epochs) == 386  # its own rows only, not the longest run's blank cells
    assert np.nanmin(gpt2.series("train_loss")) == pytest.approx(3.263, abs=1e-3)
    assert sorted(len(r.epochs) for r in runs)[0] == 51


def test_numbered_runs_side_by_side() -> None:
    runs = load_runs(REAL / "csv/c_19_fashionmnist-two-runs-wide.csv")  # ',loss0,loss1,acc0,acc1'
    assert [(r.part_name, len(r.epochs)) for r in runs] == [("0", 60), ("1", 60)]
    assert runs[0].columns == runs[1].columns == {"train_loss": "loss", "train_metric": "acc"}
    assert runs[0].series("train_loss")[0] == pytest.approx(1.7477, abs=1e-4)
    assert runs[1].series("train_loss")[0] == pytest.approx(1.7585, abs=1e-4)


def test_column_json_of_two_models() -> None:
    """json.dump of two merged history.history dicts: reg_* (30 epochs) and cls_* (19 epochs)."""
    reg, cls = load_runs(REAL / "keras/k_15_hdfc-reg-cls-lstm.json")
    assert (reg.part_name, len(reg.epochs), cls.part_name, len(cls.epochs)) == ("reg", 30, "cls", 19)
    assert reg.columns["val_loss"] == "val_loss" and reg.metric == "val_mae" and reg.higher_is_better is False
    assert cls.metric == "val_accuracy" and cls.higher_is_better is True
    assert np.nanmin(reg.series("val_loss")) == pytest.approx(0.3446, abs=1e-4)


def test_appended_runs_are_parts() -> None:
    runs = load_runs(REAL / "keras/k_22_image-cnn-three-runs.csv")  # epochs 0-299, 0-129, 0-2
    assert [len(r.epochs) for r in runs] == [300, 130, 3]
    assert runs[2].series("train_loss")[0] == pytest.approx(3.583, abs=1e-3)
    assert load_run(REAL / "keras/k_22_image-cnn-three-runs.csv").part == 2  # the latest run


def test_appended_runs_with_a_one_epoch_run_between() -> None:
    runs = load_runs(REAL / "det/y_03_poster-genre-v8cls-appended.csv")  # epochs 1-10, 1, 1-10
    assert [len(r.epochs) for r in runs] == [10, 1, 10]
    # val/loss is the text 'nan' in every row (never computed for classify): no validation loss
    assert all("val_loss" not in r.columns and not r.epochs["nonfinite"].any() for r in runs)
    assert runs[2].metric == "metrics/accuracy_top1"


def test_text_lines_in_a_csv_file() -> None:
    runs = load_runs(REAL / "csv/c_20_convlstm-har-text-in-csv.csv")  # 'Epoch: [1/100], training loss: ...'
    assert runs[0].format == "text"
    assert [len(r.epochs) for r in runs] == [79, 150, 150, 150, 150]  # the epoch counter restarts
    assert runs[0].columns["train_loss"] == "training loss"
    assert runs[0].series("train_loss")[0] == pytest.approx(1.646285)


# --- vision frameworks --------------------------------------------------------------------------

def test_yolov5_map_column_with_dots_and_colon() -> None:
    run = load_run(REAL / "det/y_04_pipeline-v5-lr01-nan.csv")
    assert run.metric == "metrics/mAP_0.5:0.95" and run.higher_is_better is True
    assert run.columns["train_loss"] == "train/loss"  # box + obj + cls
    assert run.epochs["nonfinite"].any()  # NaN losses at epochs 167, 176, 177


def test_detectron2_evaluation_merged_into_training_lines() -> None:
    run = load_run(REAL / "det/y_13_watermeter-d2-frcnn.json")
    assert run.metric == "bbox/AP" and run.metric_scale == 0.01
    assert len(run.epochs) == 4  # four evaluations, each closing a period of training
    assert run.series("val_metric")[-1] == pytest.approx(0.641, abs=1e-3)
    assert not run.epochs["nonfinite"].any()  # NaN in 'bbox/APl' is a class without instances


def test_mmengine_scalars_iteration_based() -> None:
    run = load_run(REAL / "det/y_17_watermelon-mmseg-scalars.json")  # val `step` = iteration
    assert run.format == "mmengine" and run.metric == "val_mIoU"
    assert len(run.epochs) == 20
    assert np.nanmax(run.series("val_metric")) == pytest.approx(0.773, abs=1e-3)


def test_mmengine_scalars_epoch_based_with_placeholders() -> None:
    run = load_run(REAL / "det/y_18_ear-rtmpose-mmpose-scalars.json")  # val `step` = epoch
    assert run.metric == "val_coco/AP"
    assert len(run.epochs) == 200
    metric = run.epochs["val_metric"].dropna()
    assert list(metric.index[:2]) == [10, 20] and len(metric) == 20
    assert metric.iloc[-1] == pytest.approx(0.686, abs=1e-3)
    assert higher_is_better("NME") is False


# --- Hugging Face -------------------------------------------------------------------------------

def test_hf_run_shorter_than_an_epoch_is_judged_per_evaluation() -> None:
    run = load_run(REAL / "hf/h_13_whisper-bashkir-asr.json")  # 0.23 epoch, 20 evaluations
    assert len(run.epochs) == 20 and run.n_steps == 400
    assert run.series("val_loss")[-1] == pytest.approx(0.209, abs=1e-3)
    assert run.metric == "eval_wer" and run.higher_is_better is False


def test_grpo_log_without_evaluation() -> None:
    run = load_run(REAL / "hf/h_09_grpo-game-agent.json")  # 0.58 epoch, 50 logs, no eval
    assert len(run.epochs) == 50
    assert run.columns["train_metric"] == "reward"
    assert run.series("train_metric")[0] == pytest.approx(-9.6625)


# --- bad input (reports/bad-input-2026-11.md F7-F10, F21), on a real Keras log -------------------

def _keras_rows() -> tuple[str, list[str]]:
    lines = (RUNS / "overfitting.keras.csv").read_text().splitlines()
    return lines[0], lines[1:]


@pytest.mark.parametrize("order", ["reversed", "by validation loss"])
def test_rows_out_of_epoch_order_are_sorted(tmp_path, order: str) -> None:  # F8
    header, rows = _keras_rows()
    val = header.split(",").index("val_loss")
    shuffled = rows[::-1] if order == "reversed" else sorted(rows, key=lambda r: float(r.split(",")[val]))
    path = tmp_path / "sorted.csv"
    path.write_text("\n".join([header, *shuffled]) + "\n")
    runs = load_runs(path)
    assert len(runs) == 1 and runs[0].epochs.index.is_monotonic_increasing
    assert np.array_equal(runs[0].series("val_loss"), load_run(RUNS / "overfitting.keras.csv").series("val_loss"))


def test_resumed_run_keeps_the_latest_rows(tmp_path) -> None:  # F9
    header, rows = _keras_rows()
    resumed = [*rows[:60], *[r.replace(",", ",", 1) for r in rows[50:]]]
    # the first pass of epochs 50-59 differs from the second: only the second may count
    first_pass = [f"{r.split(',')[0]},{','.join(['9'] * (len(r.split(',')) - 1))}" for r in rows[50:60]]
    path = tmp_path / "resumed.csv"
    path.write_text("\n".join([header, *rows[:50], *first_pass, *rows[50:]]) + "\n")
    runs = load_runs(path)
    assert len(runs) == 1 and len(runs[0].epochs) == len(rows) == len(set(resumed))
    assert np.array_equal(runs[0].series("val_loss"), load_run(RUNS / "overfitting.keras.csv").series("val_loss"))


def test_header_wider_than_64_kb(tmp_path) -> None:  # F7
    cols = ["epoch", "loss"] + [f"sys/gpu.process.{i:05d}.memoryAllocatedBytes" for i in range(3000)] + ["val_loss"]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(cols) + "\n" + "".join(
        ",".join([str(e), str(1 / (e + 1))] + ["1"] * 3000 + [str(2 / (e + 1))]) + "\n" for e in range(20)))
    run = load_run(path)
    assert run.columns["val_loss"] == "val_loss" and run.series("val_loss")[1] == pytest.approx(1.0)


@pytest.mark.parametrize("bad_row", [0, 11])
def test_row_with_more_fields_than_the_header_is_refused(tmp_path, bad_row: int) -> None:  # F10
    rows = [f"{e},{1 / (e + 1)},{1 / (e + 1) + 0.05}" + (",0.001" if e >= bad_row else "") for e in range(20)]
    path = tmp_path / "shifted.csv"
    path.write_text("epoch,loss,val_loss\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=rf"shifted.csv: line {bad_row + 2} has .*more .*than the header"):
        load_run(path)


def test_nan_placeholders_in_a_validation_column_are_missing_values(tmp_path) -> None:  # F21
    header, rows = _keras_rows()
    cols = header.split(",")
    val = [cols.index("val_loss"), cols.index("val_accuracy")]
    out = []
    for i, row in enumerate(rows):
        cells = row.split(",")
        if i % 5 != 4:
            for j in val:
                cells[j] = "nan"
        out.append(",".join(cells))
    path = tmp_path / "every5.csv"
    path.write_text("\n".join([header, *out]) + "\n")
    run = load_run(path)
    assert not run.epochs["nonfinite"].any()
    assert np.isfinite(run.series("val_loss")).sum() == len(rows) // 5
    # a validation loss that turns NaN and stays NaN is still divergence
    assert load_run(RUNS / "diverged.hf").epochs["nonfinite"].any()


@pytest.mark.parametrize("name, lower", [
    ("val_nll", True), ("val_fid", True), ("val_mape", True), ("val_rmsle", True), ("eval_wer", True),
    ("eval_cer", True), ("NME", True), ("val_perplexity", True), ("val_mean_absolute_error", True),
    ("val_top1_err", True), ("val_distance", True), ("val_loss", True),
    ("val_accuracy", False), ("val_precision", False), ("val_f1", False), ("coco/AP", False),
    ("reward", False), ("val_mIoU", False), ("val_alignment_score", False)])
def test_metric_direction_table(name: str, lower: bool) -> None:
    assert higher_is_better(name) is not lower
