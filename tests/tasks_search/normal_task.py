"""A small, valid task for the search tests: 3 classes from 8 features, an MLP whose width and
dropout come from hp, batch size from hp (a plain torch DataLoader)."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from advisor.act import Task


def _data(n: int = 384, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    y = (x @ w).argmax(1)
    return x, y


def build(hp: dict):
    x, y = _data()
    width = int(hp.get("width", 32))
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Dropout(float(hp.get("dropout", 0.0))),
                          nn.Linear(width, 3))
    bs = int(hp.get("batch_size") or 32)
    return Task(model=model,
                train_loader=DataLoader(TensorDataset(x[:256], y[:256]), batch_size=bs, shuffle=True),
                val_loader=DataLoader(TensorDataset(x[256:], y[256:]), batch_size=128),
                loss_fn=nn.CrossEntropyLoss(), metric="accuracy")
