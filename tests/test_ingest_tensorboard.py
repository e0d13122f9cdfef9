"""TensorBoard event files: written here by real writers (torch.utils.tensorboard, and TensorBoard's
own event-file writer for the tensor records TF2/Keras write), and the corpus' real run folders in
fixtures/real/tbml/ (SOURCES.md there; the numbers checked come from its NOTES.md)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from advisor.errors import InputError  # noqa: E402
from advisor.ingest import load_run, load_runs  # noqa: E402

from conftest import FIXTURES, ROOT  # noqa: E402

TBML = FIXTURES / "real" / "tbml"


def _torch_writer(folder, **kw):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), **kw)


def _tf2_scalars(folder, tags: dict[str, list[float]], start_step: int = 0) -> None:
    """Scalars as TF2 (Keras' TensorBoard callback) writes them: float tensors, the 'scalars'
    plugin named on a tag's first value only."""
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    n = len(next(iter(tags.values())))
    for i in range(n):
        values = []
        for tag, series in tags.items():
            meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name="scalars")) if i == 0 else None
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[series[i]])
            values.append(summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta))
        writer.add_event(Event(wall_time=time.time(), step=start_step + i, summary=summary_pb2.Summary(value=values)))
    writer.close()


def _curve(n: int, scale: float = 1.0, floor: float = 0.0) -> list[float]:
    return [scale * 2.0 / (e + 1) + floor for e in range(n)]


# --- written by real writers --------------------------------------------------------------------

def test_torch_summary_writer_run_folder(tmp_path) -> None:
    with _torch_writer(tmp_path / "run") as w:
        for e in range(20):
            w.add_scalar("Loss/train", 2.0 / (e + 1), e)
            w.add_scalar("Loss/val", 2.2 / (e + 1) + 0.01 * e, e)
            w.add_scalar("Accuracy/val", 0.5 + 0.02 * e, e)
            w.add_scalar("learning_rate", 1e-3 * 0.9 ** e, e)
            w.add_histogram("weights", np.random.default_rng(e).normal(size=50), e)  # no curve
    run = load_run(tmp_path / "run")
    assert run.format == "tensorboard"
    assert run.columns["train_loss"] == "Loss/train" and run.columns["val_loss"] == "Loss/val"
    assert run.columns["lr"] == "learning_rate" and run.metric == "Accuracy/val"
    assert len(run.epochs) == 20
    assert run.series("val_loss")[5] == pytest.approx(2.2 / 6 + 0.05, rel=1e-6)


def test_keras_train_and_validation_folders(tmp_path) -> None:
    """The same tags in train/ and validation/: only the folder tells them apart."""
    _tf2_scalars(tmp_path / "logs" / "train", {"epoch_loss": _curve(30), "epoch_accuracy": [0.5 + 0.01 * e for e in range(30)]})
    _tf2_scalars(tmp_path / "logs" / "validation", {"epoch_loss": _curve(30, 1.1, 0.05),
                                                    "epoch_accuracy": [0.45 + 0.01 * e for e in range(30)]})
    run = load_run(tmp_path / "logs")
    assert run.columns["train_loss"] == "train/epoch_loss"
    assert run.columns["val_loss"] == "validation/epoch_loss"
    assert run.metric == "validation/epoch_accuracy" and run.higher_is_better is True
    assert list(run.epochs.index) == list(range(30))
    assert run.series("val_loss") == pytest.approx(_curve(30, 1.1, 0.05), rel=1e-6)


def test_several_event_files_merged_by_step_a_restart_replaces(tmp_path) -> None:
    """A run that crashed at step 9 and restarted from its checkpoint at step 6: TensorBoard keeps
    the restarted run's values from step 6 on; a file that holds only hparams adds nothing."""
    folder = tmp_path / "version_0"
    with _torch_writer(folder, filename_suffix=".0") as w:
        for s in range(10):
            w.add_scalar("train_loss", 1.0, s)
            w.add_scalar("val_loss", 1.5, s)
    time.sleep(1.1)  # the next file's name carries a later time stamp
    with _torch_writer(folder, filename_suffix=".1") as w:
        for s in range(6, 15):
            w.add_scalar("train_loss", 0.5, s)
            w.add_scalar("val_loss", 0.7, s)
    time.sleep(1.1)
    with _torch_writer(folder, filename_suffix=".2") as w:
        w.add_scalar("hp_metric", -1, 0)  # Lightning's placeholder
    assert len(list(folder.glob("*tfevents*"))) == 3
    run = load_run(folder)
    assert list(run.epochs.index) == list(range(15))
    assert list(run.series("train_loss")) == [1.0] * 6 + [0.5] * 9
    assert "hp_metric" not in run.columns.values()


def test_single_event_file_and_a_nan(tmp_path) -> None:
    with _torch_writer(tmp_path) as w:
        for s in range(12):
            w.add_scalar("loss", float("nan") if s >= 8 else 1.0 / (s + 1), s)
    (path,) = tmp_path.glob("events.out.tfevents*")
    run = load_run(path)
    assert len(run.epochs) == 12
    assert list(run.epochs["nonfinite"]) == [False] * 8 + [True] * 4


def test_a_folder_of_runs_gives_one_run_each(tmp_path) -> None:
    for name, scale in (("lr_1e-3", 1.0), ("lr_1e-2", 2.0)):
        with _torch_writer(tmp_path / name) as w:
            for s in range(10):
                w.add_scalar("train/loss", scale / (s + 1), s)
                w.add_scalar("eval/loss", scale * 1.2 / (s + 1), s)
    runs = load_runs(tmp_path)
    assert sorted(r.part_name for r in runs) == ["lr_1e-2", "lr_1e-3"]
    for run in runs:
        assert run.columns["train_loss"] == "train/loss" and run.columns["val_loss"] == "eval/loss"
        assert len(run.epochs) == 10


def test_missing_extra_names_itself(tmp_path, monkeypatch) -> None:
    import advisor.ingest.tensorboard as tb

    with _torch_writer(tmp_path) as w:
        w.add_scalar("loss", 1.0, 0)
    monkeypatch.setattr(tb, "_loader", lambda: None)
    with pytest.raises(InputError, match=r"pip install 'advisor\[tensorboard\]'") as err:
        load_run(tmp_path)
    assert "\n" not in str(err.value)


def test_not_an_event_file(tmp_path) -> None:
    path = tmp_path / "events.out.tfevents.123.host"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage, not a record" * 3)
    with pytest.raises(InputError, match="events.out.tfevents.123.host"):
        load_run(path)


def test_diagnose_of_a_csv_does_not_import_tensorboard(tmp_path) -> None:
    log = tmp_path / "run.csv"
    log.write_text("epoch,loss,val_loss\n" + "".join(f"{i},{2 / (i + 1)},{2.2 / (i + 1)}\n" for i in range(20)))
    code = ("import sys, runpy; sys.argv = ['advisor', 'diagnose', %r]\n"
            "try:\n    runpy.run_module('advisor', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('tensorboard' in sys.modules, file=sys.stderr)") % str(log)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr.strip().splitlines()[-1] == "False"


# --- the corpus' real run folders ---------------------------------------------------------------

def test_catboost_learn_and_test_folders() -> None:
    run = load_run(TBML / "t_07_catboost-druggability")  # learn/ and test/, both tag RMSE, no file_version
    assert run.columns["train_loss"] == "learn/RMSE" and run.columns["val_loss"] == "test/RMSE"
    assert len(run.epochs) == 1000
    val = run.series("val_loss")
    assert np.nanargmin(val) == 439 and np.nanmin(val) == pytest.approx(44.59, abs=0.01)
    assert run.series("train_loss")[-1] == pytest.approx(9.26, abs=0.01)


def test_keras_callback_run_folder() -> None:
    run = load_run(TBML / "t_11_keras-cbam-noise5-rms1")  # train/ (+ graph, profile-empty file), validation/
    assert run.columns["train_loss"] == "train/epoch_loss" and run.columns["val_loss"] == "validation/epoch_loss"
    assert len(run.epochs) == 1000
    val = run.series("val_loss")
    assert np.nanmax(val) == pytest.approx(11.97, abs=0.01) and np.count_nonzero(val > 1.0) == 72
    assert np.nanargmin(val) == 678 and np.nanmin(val) == pytest.approx(0.02379, abs=1e-5)


def test_lightning_run_with_epoch_tag_and_hp_metric() -> None:
    run = load_run(TBML / "t_02_breast-cancer-mlp")
    assert run.columns["epoch"] == "epoch" and run.columns["val_loss"] == "val_loss"
    assert len(run.epochs) == 527
    val = run.series("val_loss")
    assert np.nanargmin(val) == 194 and np.nanmin(val) == pytest.approx(0.0941, abs=1e-4)


def test_neuralprophet_nan_from_the_first_epoch_and_an_hparams_file() -> None:
    run = load_run(TBML / "t_05_neuralprophet-weather-lags72")
    assert run.columns["train_loss"] == "Loss" and run.columns["val_loss"] == "Loss_val"
    assert len(run.epochs) == 5 and run.epochs["nonfinite"].all()
    healthy = load_run(TBML / "t_06_neuralprophet-weather-lags24")
    assert len(healthy.epochs) == 47 and not healthy.epochs["nonfinite"].any()


def test_stable_baselines_reward() -> None:
    run = load_run(TBML / "t_12_sb3-ppo-db-index")  # step = environment timesteps
    assert run.columns["train_metric"] == "rollout/ep_rew_mean"
    assert len(run.epochs) == 49
    assert run.series("train_metric")[0] == pytest.approx(0.127, abs=1e-3)
