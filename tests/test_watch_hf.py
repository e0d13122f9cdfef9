"""advisor.watch.hf.AdvisorCallback on a real Hugging Face Trainer: a 2-layer BERT built from a
config (nothing downloaded) on random token ids, CPU."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

from advisor.advice.diagnosis import diagnose  # noqa: E402
from advisor.watch.hf import AdvisorCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random ids; the label is whether the first id is in the lower half of the vocabulary."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 64, (n, 16), generator=g)
        self.y = (self.x[:, 0] < 32).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def _train(tmp_path: Path, callback, epochs: int, lr_growth: float | None = None):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=epochs, per_device_train_batch_size=16,
                             learning_rate=1e-3, logging_steps=2, eval_strategy="epoch", save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=True, max_grad_norm=0.0 if lr_growth else 1.0)
    optimizers = (None, None)
    if lr_growth:  # the LR grows 10x every `lr_growth` steps: fine at first, then the loss blows up
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        optimizers = (opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 10 ** (s / lr_growth)))
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(128, 0), eval_dataset=Tokens(64, 1),
                      callbacks=[callback], optimizers=optimizers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))
    return trainer


def test_findings_are_diagnose_on_trainer_state(tmp_path: Path) -> None:
    cb = AdvisorCallback()
    trainer = _train(tmp_path, cb, epochs=6)
    assert cb.stopped_step is None and trainer.state.epoch == 6
    report, _ = diagnose([tmp_path / "trainer_state.json"], {})
    run = report.runs[0]
    assert [(f.code, f.message) for f in cb.monitor.findings] == [(f.code, f.message) for f in run.diagnoses + run.notes]
    assert cb.monitor.diagnosis.facts == run.facts
    assert cb.monitor.diagnosis.columns == {**run.columns}


def test_divergence_sets_should_training_stop(tmp_path: Path, caplog) -> None:
    cb = AdvisorCallback(stop_on=("diverged",))
    with caplog.at_level(logging.INFO, logger="transformers"):
        trainer = _train(tmp_path, cb, epochs=10, lr_growth=8)
    assert cb.stopped_step is not None and trainer.state.global_step == cb.stopped_step < 80
    # the epochs' mean training loss as diagnose reads it: the stop comes within two epochs of
    # the first one at 10x the first epoch's (or non-finite)
    report, runs = diagnose([tmp_path / "trainer_state.json"], {})
    losses = runs[0].series("train_loss")
    first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v) or v >= 10 * losses[0])
    assert first_bad + 1 <= math.ceil(cb.stopped_epoch) <= first_bad + 3  # epochs count from 1 here
    assert "diverged" in cb.stop_reason
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("advisor: stop at epoch") for m in messages)
    assert any("new ERROR" in m and "[diverged]" in m for m in messages)
