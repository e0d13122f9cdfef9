"""A task that raises for some configurations: build(hp) fails when dropout is above 0.3, and
training fails (a shape error in the model) when the batch size is 64."""

import torch
from torch import nn

from advisor.act import Task
from normal_task import _data  # noqa: E402  (the task's folder is on sys.path while it loads)


class Picky(nn.Module):
    def __init__(self, bad: bool):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.bad = bad

    def forward(self, x):
        if self.bad:
            return self.net(x.reshape(-1, 3))  # wrong shape on purpose
        return self.net(x)


def build(hp: dict):
    dropout = float(hp.get("dropout", 0.0))
    if dropout > 0.3:
        raise ValueError(f"dropout {dropout:.2f} is not supported by this model")
    x, y = _data()
    bs = int(hp.get("batch_size") or 32)
    return Task(model=Picky(bad=bs == 64),
                train_loader=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:256], y[:256]),
                                                         batch_size=bs, shuffle=True),
                val_loader=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[256:], y[256:]),
                                                       batch_size=128),
                loss_fn=nn.CrossEntropyLoss(), metric="accuracy")
