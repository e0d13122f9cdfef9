"""advisor.watch.lightning.AdvisorCallback on a real PyTorch Lightning Trainer (tiny models, CPU)."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from advisor.advice.diagnosis import diagnose  # noqa: E402
from advisor.watch import watch_settings  # noqa: E402
from advisor.watch.lightning import AdvisorCallback  # noqa: E402


class Classifier(pl.LightningModule):
    """A small MLP; `lr` and the data decide whether it learns, diverges or memorizes."""

    def __init__(self, lr: float, width: int = 16, grow: float = 1.0) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
        self.lr, self.grow = lr, grow

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        out = self.net(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr)
        # the LR grows by `grow` each epoch: a run that is fine, then blows up
        return [opt], [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.grow)]


def _data(n: int, seed: int, noisy: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() if not noisy else torch.randint(0, 2, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def _fit(tmp_path: Path, model, train, val, callback, epochs: int):
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback, pl.callbacks.LearningRateMonitor("epoch")],
                         logger=pl.loggers.CSVLogger(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on num_workers and logging intervals
        trainer.fit(model, train, val)
    return trainer


def test_findings_are_diagnose_on_the_csvlogger_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cb = AdvisorCallback()
    trainer = _fit(tmp_path, Classifier(0.3), _data(256, 0), _data(128, 1), cb, epochs=12)
    assert not cb.stopped_epoch and trainer.current_epoch == 12
    report, _ = diagnose([Path(trainer.logger.log_dir) / "metrics.csv"], {})
    run = report.runs[0]
    assert run.epochs == 12 == cb.monitor.diagnosis.epochs
    assert [(f.code, f.message) for f in cb.monitor.findings] == [(f.code, f.message) for f in run.diagnoses + run.notes]
    assert cb.monitor.diagnosis.columns["val_metric"] == "val_acc"


def test_divergence_stops_the_trainer_within_two_epochs(tmp_path: Path, caplog) -> None:
    torch.manual_seed(0)
    cb = AdvisorCallback(stop_on=("diverged",))
    with caplog.at_level(logging.INFO):
        trainer = _fit(tmp_path, Classifier(0.05, grow=4.0), _data(256, 0), _data(128, 1), cb, epochs=40)
    assert cb.stopped_epoch is not None and trainer.current_epoch < 39
    losses = [float(r["train_loss"]) for r in _rows(trainer)]
    first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v) or v >= 10 * losses[0])
    assert first_bad <= cb.stopped_epoch <= first_bad + 2
    assert "diverged" in cb.stop_reason
    assert any("advisor: stop at epoch" in r.getMessage() for r in caplog.records)
    assert any("new ERROR" in r.getMessage() and "[diverged]" in r.getMessage() for r in caplog.records)


def _rows(trainer) -> list[dict]:
    import csv

    with open(Path(trainer.logger.log_dir) / "metrics.csv") as fh:
        return [r for r in csv.DictReader(fh) if r.get("train_loss")]


def test_confirmed_overfitting_stops_and_names_the_best_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cb = AdvisorCallback(stop_on=("overfitting",))
    # 48 samples with random labels and a wide net: memorized, validation worse every epoch
    trainer = _fit(tmp_path, Classifier(0.5, width=256), _data(48, 0, noisy=True), _data(256, 1, noisy=True),
                   cb, epochs=150)
    assert cb.stopped_epoch is not None and trainer.current_epoch < 149
    assert cb.stop_reason.startswith(f"advisor: stop at epoch {cb.stopped_epoch}: overfitting")
    assert cb.best_epoch is not None and cb.best_epoch < cb.stopped_epoch
    assert f"keep the checkpoint of epoch {cb.best_epoch}" in cb.stop_reason
    # the stop came once overfitting had held for the epochs rules/watch.yaml asks
    confirm = watch_settings().announce.findings["overfitting"].confirm
    first = min(e.epoch for e in cb.monitor.events if e.label == "overfitting")
    assert first == cb.stopped_epoch
    assert cb.stopped_epoch + 1 >= confirm
