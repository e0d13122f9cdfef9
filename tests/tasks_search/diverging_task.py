"""A regression that diverges for large learning rates: inputs of scale 10, plain SGD, MSE.
Below a learning rate of about 1e-3 it converges; above about 1e-2 the loss overflows to inf/NaN
within the first epoch."""

import torch
from torch import nn

from advisor.act import Task
from advisor.act.demo import TensorLoader


def build(hp: dict):
    g = torch.Generator().manual_seed(0)
    x = 10 * torch.randn(512, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
    model = nn.Linear(16, 1)
    bs = int(hp.get("batch_size") or 32)
    return Task(model=model, train_loader=TensorLoader(x[:384], y[:384], bs),
                val_loader=TensorLoader(x[384:], y[384:], 128, shuffle=False),
                loss_fn=nn.MSELoss(), metric="loss")
