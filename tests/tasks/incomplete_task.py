"""build returns an object that lacks loss_fn and metric."""

from types import SimpleNamespace

from torch import nn


def build(hp):
    return SimpleNamespace(model=nn.Linear(2, 2), train_loader=[], val_loader=None)
