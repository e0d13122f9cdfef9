"""A small, valid task for the lr-find tests: batch-norm and dropout (buffers and RNG in play),
a real torch DataLoader that shuffles."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from advisor.act import Task


def _data(n: int = 512, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    y = (x @ w).argmax(1)
    return x, y


def build(hp: dict):
    x, y = _data()
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
    bs = int(hp.get("batch_size") or 32)
    return Task(model=model,
                    train_loader=DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True),
                    val_loader=DataLoader(TensorDataset(x[:128], y[:128]), batch_size=128),
                    loss_fn=nn.CrossEntropyLoss(), metric="accuracy")
