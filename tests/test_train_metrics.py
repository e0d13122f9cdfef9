"""The trainer's validation accuracy counts predictions, not batches' first dimension."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from advisor.act.task import Task  # noqa: E402
from advisor.act.train import evaluate  # noqa: E402


class OneHot(nn.Module):
    """Logits that put all the mass on the input class: right wherever target == input."""

    def forward(self, x):
        return nn.functional.one_hot(x, 5).float()


def _accuracy(inputs, targets) -> float:
    task = Task(model=OneHot(), train_loader=[(inputs, targets)], val_loader=[(inputs, targets)],
                loss_fn=nn.CrossEntropyLoss(), metric="accuracy")
    return evaluate(task, torch.device("cpu"))


def test_per_token_accuracy_of_a_sequence_model_is_a_share() -> None:
    x = torch.randint(0, 5, (10, 8), generator=torch.Generator().manual_seed(0))
    assert _accuracy(x, x) == 1.0  # 80 tokens right, not 80 / 10 sequences
    y = x.clone()
    y[:, :2] = (y[:, :2] + 1) % 5  # 2 of 8 tokens wrong in every sequence
    assert _accuracy(x, y) == pytest.approx(0.75)


def test_per_example_accuracy_is_unchanged() -> None:
    x = torch.arange(10) % 5
    y = x.clone()
    y[:3] = (y[:3] + 1) % 5
    assert _accuracy(x, y) == pytest.approx(0.7)
