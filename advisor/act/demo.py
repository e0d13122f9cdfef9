"""The built-in task of `advisor lr-find --demo`: an MLP on scikit-learn's bundled digits.

Fully offline (the 8x8 digits ship inside scikit-learn), a second or two on a CPU. Also an
example of the task protocol: `build(hp)` returns an advisor.Task.
"""

from __future__ import annotations

from advisor.act.task import Task


class TensorLoader:
    """A minimal, fast DataLoader over in-memory tensors: shuffled (from torch's global RNG,
    so seeding torch makes it reproducible) batches of (inputs, targets)."""

    def __init__(self, x, y, batch_size: int = 64, shuffle: bool = True, drop_last: bool = False):
        if len(x) != len(y):
            raise ValueError(f"inputs and targets differ in length ({len(x)} vs {len(y)})")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        import torch

        n = len(self.x)
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        stop = n - (n % self.batch_size) if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def digits_tensors(val_fraction: float = 0.2, split_seed: int = 0):
    """(x_train, y_train, x_val, y_val): 1797 8x8 digits scaled to [0, 1], a fixed stratified split."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    val = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        val[rng.choice(members, size=int(round(val_fraction * len(members))), replace=False)] = True
    t = torch.from_numpy
    return t(x[~val]), t(y[~val]), t(x[val]), t(y[val])


def build(hp: dict) -> Task:
    """hp: batch_size (64), width (128), dropout (0.0)."""
    from torch import nn

    x_train, y_train, x_val, y_val = digits_tensors()
    width = int(hp.get("width", 128))
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Dropout(float(hp.get("dropout", 0.0))),
                          nn.Linear(width, 10))
    batch_size = int(hp.get("batch_size") or 64)
    return Task(model=model,
                train_loader=TensorLoader(x_train, y_train, batch_size, shuffle=True),
                val_loader=TensorLoader(x_val, y_val, 512, shuffle=False),
                loss_fn=nn.CrossEntropyLoss(), metric="accuracy")


__all__ = ["TensorLoader", "build", "digits_tensors"]

if __name__ == "__main__":  # pragma: no cover
    import torch

    task = build({})
    print(task.model, sum(p.numel() for p in task.model.parameters()), "parameters", torch.__version__)
