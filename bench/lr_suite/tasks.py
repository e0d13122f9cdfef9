"""The held-out task suite of `advisor lr-find`: tasks its estimator was never tuned on.

Fifteen tiny tasks on data scikit-learn ships or that this file makes (nothing downloaded),
chosen to differ in what moves the best learning rate: the model family (MLP, residual MLP,
CNN with batch norm, residual CNN, LSTM, GRU, transformer with layer norm and warmup), the
optimizer (SGD with momentum, Adam, AdamW, RMSprop), the loss (classification, regression,
next-token sequence modelling), the length (3 to 30 epochs) and the batch size (16 to 512).

Each entry of TASKS says how the task is trained; `make_optimizer` and `train` are the protocol
the sweep and the range test share. A full training run takes well under two seconds on one CPU
thread: the suite is sized for a shared two-core machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from advisor.act.demo import TensorLoader
from advisor.act.lr_find import cycle, forward, seed_everything, split_batch
from advisor.act.task import Task


# --------------------------------------------------------------------------- data

def _t(a, dtype=torch.float32):
    return torch.tensor(np.asarray(a), dtype=dtype)


def _split(x, y, val: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = int(round(val * len(x)))
    return x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]


def _standardize(xt, xv):
    mu, sd = xt.mean(0), xt.std(0) + 1e-8
    return (xt - mu) / sd, (xv - mu) / sd


@lru_cache(maxsize=None)
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    xt, yt, xv, yv = _split(d.data / 16.0, d.target, 0.25, seed=1)
    return _t(xt), _t(yt, torch.int64), _t(xv), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    xt, yt, xv, yv = _split(d.data, d.target, 0.3)
    xt, xv = _standardize(xt, xv)
    return _t(xt), _t(yt, torch.int64), _t(xv), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def wine():
    from sklearn.datasets import load_wine

    d = load_wine()
    xt, yt, xv, yv = _split(d.data, d.target, 0.3)
    xt, xv = _standardize(xt, xv)
    return _t(xt), _t(yt, torch.int64), _t(xv), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    xt, yt, xv, yv = _split(d.data, d.target, 0.25)
    xt, xv = _standardize(xt, xv)
    mu, sd = yt.mean(), yt.std()
    return _t(xt), _t((yt - mu) / sd)[:, None], _t(xv), _t((yv - mu) / sd)[:, None]


@lru_cache(maxsize=None)
def blobs(n=3000, features=20, classes=4, seed=3):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=features, n_informative=10, n_redundant=4,
                               n_classes=classes, n_clusters_per_class=2, class_sep=1.0, flip_y=0.02,
                               random_state=seed)
    xt, yt, xv, yv = _split(x, y, 0.25)
    xt, xv = _standardize(xt, xv)
    return _t(xt), _t(yt, torch.int64), _t(xv), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def linear_regression():
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=1500, n_features=30, n_informative=12, noise=20.0, random_state=4)
    xt, yt, xv, yv = _split(x, y, 0.25)
    xt, xv = _standardize(xt, xv)
    mu, sd = yt.mean(), yt.std()
    return _t(xt), _t((yt - mu) / sd)[:, None], _t(xv), _t((yv - mu) / sd)[:, None]


@lru_cache(maxsize=None)
def friedman3():
    from sklearn.datasets import make_friedman3

    x, y = make_friedman3(n_samples=2000, noise=0.05, random_state=5)
    xt, yt, xv, yv = _split(x, y, 0.25)
    xt, xv = _standardize(xt, xv)
    mu, sd = yt.mean(), yt.std()
    return _t(xt), _t((yt - mu) / sd)[:, None], _t(xv), _t((yv - mu) / sd)[:, None]


@lru_cache(maxsize=None)
def waves(n=900, length=48, seed=6):
    """Noisy sine waves of 4 frequency bands with random phase: classify the band (1-D CNN)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    freq = (1.5 + 1.2 * y + rng.uniform(-0.4, 0.4, n))[:, None]
    t = np.arange(length)[None, :] / length
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, (n, 1))) + 0.8 * rng.standard_normal((n, length))
    xt, yt, xv, yv = _split(x[:, None, :], y, 0.25)
    return _t(xt), _t(yt, torch.int64), _t(xv), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def majority(n=1600, length=16, vocab=6, seed=7):
    """Token sequences: which token occurs most often (ties broken by the smallest token)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(vocab), n)
    x = np.stack([rng.choice(vocab, length, p=pi) for pi in p])
    y = np.array([np.bincount(row, minlength=vocab).argmax() for row in x])
    xt, yt, xv, yv = _split(x, y, 0.25)
    return _t(xt, torch.int64), _t(yt, torch.int64), _t(xv, torch.int64), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def markov(n=1000, length=16, vocab=12, seed=8):
    """Sequences from a sparse second-order Markov chain: next-token prediction."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.15), (vocab, vocab))
    x = np.zeros((n, length + 1), dtype=np.int64)
    x[:, :2] = rng.integers(0, vocab, (n, 2))
    for i in range(2, length + 1):
        cum = table[x[:, i - 2], x[:, i - 1]].cumsum(1)
        x[:, i] = (rng.random((n, 1)) < cum).argmax(1)
    xt, yt, xv, yv = _split(x[:, :-1], x[:, 1:], 0.25)
    return _t(xt, torch.int64), _t(yt, torch.int64), _t(xv, torch.int64), _t(yv, torch.int64)


@lru_cache(maxsize=None)
def sorting(n=1200, length=8, vocab=10, seed=9):
    """Sort a sequence of digits (a per-position classification)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = x.sort(1).values
    cut = int(n * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


# --------------------------------------------------------------------------- models

def mlp(d_in, d_out, width, depth=2, norm=None):
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width)] + ([norm(width)] if norm else []) + [nn.ReLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class ResBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(self.norm(x))))


class ResMLP(nn.Module):
    def __init__(self, d_in, d_out, width=64, blocks=3):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d_out))

    def forward(self, x):
        return self.out(self.blocks(self.inp(x)))


class BNCNN(nn.Module):
    """Two conv + batch-norm layers on the 8x8 digits."""

    def __init__(self, c=12):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * c, 10))

    def forward(self, x):
        return self.body(x.view(-1, 1, 8, 8))


class ResCNN(nn.Module):
    """A stem and two residual conv blocks with batch norm (a tiny ResNet) on the digits."""

    def __init__(self, c=12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
                                    for _ in range(2))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        h = self.stem(x.view(-1, 1, 8, 8))
        for block in self.blocks:
            h = F.relu(h + block(h))
        return self.head(h.mean((2, 3)))


class Conv1D(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, c, 5, padding=2), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2),
                                  nn.Conv1d(c, c, 5, padding=2), nn.BatchNorm1d(c), nn.ReLU(),
                                  nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(c, 4))

    def forward(self, x):
        return self.body(x)


class RNNClassifier(nn.Module):
    def __init__(self, vocab, classes, hidden=32, cell=nn.LSTM, emb=16, rows=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb) if vocab else None
        self.rnn = cell(emb if vocab else rows, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        h = self.emb(x) if self.emb is not None else x.view(len(x), 8, 8)
        out, _ = self.rnn(h)
        return self.head(out[:, -1])


class RNNLM(nn.Module):
    def __init__(self, vocab, hidden=32, cell=nn.GRU):
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.rnn = cell(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.rnn(self.emb(x))
        return self.head(out)


class Transformer(nn.Module):
    """Embedding + learned positions, pre-/post-layer-norm encoder layers, a linear head."""

    def __init__(self, vocab, length, d=32, layers=2, causal=False, norm_first=False):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.head = nn.Linear(d, vocab)
        self.mask = nn.Transformer.generate_square_subsequent_mask(length) if causal else None

    def forward(self, x):
        h = self.emb(x) + self.pos[: x.shape[1]]
        mask = None if self.mask is None else self.mask[: x.shape[1], : x.shape[1]]
        return self.head(self.norm(self.enc(h, mask=mask, is_causal=mask is not None)))


def seq_ce(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


# --------------------------------------------------------------------------- the suite

@dataclass(frozen=True)
class Spec:
    data: Callable
    model: Callable
    loss: Callable
    metric: str               # "accuracy" or "loss" (validation)
    optimizer: str            # sgd | adam | adamw | rmsprop
    epochs: int
    batch_size: int
    kind: str
    warmup: float = 0.0       # fraction of the steps with a linear warmup (then constant)
    train_subset: int = 0     # 0: all of the training split


TASKS: dict[str, Spec] = {
    "wine-mlp-adamw": Spec(wine, lambda: mlp(13, 3, 32), nn.CrossEntropyLoss(), "accuracy", "adamw", 30, 16,
                           "MLP classifier, tiny data, AdamW"),
    "cancer-mlp-sgd": Spec(breast_cancer, lambda: mlp(30, 2, 32), nn.CrossEntropyLoss(), "accuracy", "sgd", 20, 32,
                           "MLP classifier, SGD+momentum"),
    "diabetes-mlp-adam": Spec(diabetes, lambda: mlp(10, 1, 64), nn.MSELoss(), "loss", "adam", 20, 16,
                              "MLP regression (MSE), Adam"),
    "linreg-mlp-rmsprop": Spec(linear_regression, lambda: mlp(30, 1, 64), nn.MSELoss(), "loss", "rmsprop", 10, 64,
                               "MLP regression (MSE), RMSprop"),
    "friedman3-resmlp-sgd": Spec(friedman3, lambda: ResMLP(4, 1, 48, 2), nn.MSELoss(), "loss", "sgd", 15, 128,
                                 "residual MLP with layer norm, regression, SGD+momentum"),
    "blobs-bnmlp-adamw": Spec(blobs, lambda: mlp(20, 4, 64, 3, nn.BatchNorm1d), nn.CrossEntropyLoss(), "accuracy",
                              "adamw", 30, 512, "deep MLP with batch norm, large batch, AdamW"),
    "blobs-resmlp-rmsprop": Spec(blobs, lambda: ResMLP(20, 4, 48, 3), nn.CrossEntropyLoss(), "accuracy",
                                 "rmsprop", 8, 64, "residual MLP classifier, RMSprop"),
    "digits-bncnn-sgd": Spec(digits, lambda: BNCNN(8), nn.CrossEntropyLoss(), "accuracy", "sgd", 8, 128,
                             "CNN with batch norm, SGD+momentum, batch 128"),
    "digits-rescnn-adam": Spec(digits, lambda: ResCNN(8), nn.CrossEntropyLoss(), "accuracy", "adam", 3, 32,
                               "residual CNN with batch norm, Adam, 3 epochs"),
    "waves-cnn1d-sgd": Spec(waves, Conv1D, nn.CrossEntropyLoss(), "accuracy", "sgd", 4, 16,
                            "1-D CNN with batch norm on time series, SGD+momentum, batch 16"),
    "digits-gru-rmsprop": Spec(digits, lambda: RNNClassifier(0, 10, 32, nn.GRU, rows=8), nn.CrossEntropyLoss(),
                               "accuracy", "rmsprop", 6, 64, "GRU over the digit rows, RMSprop"),
    "majority-lstm-adam": Spec(majority, lambda: RNNClassifier(6, 6, 32, nn.LSTM), nn.CrossEntropyLoss(),
                               "accuracy", "adam", 8, 64, "LSTM sequence classifier, Adam"),
    "markov-gru-adamw": Spec(markov, lambda: RNNLM(12, 32, nn.GRU), seq_ce, "loss", "adamw", 5, 32,
                             "GRU next-token model (cross-entropy), AdamW"),
    "sort-transformer-adamw": Spec(sorting, lambda: Transformer(10, 8, 32, 2), seq_ce, "accuracy", "adamw", 8, 64,
                                   "transformer (post-LN) sorting digits, AdamW, 10% warmup", warmup=0.1),
    "markov-transformer-adam": Spec(markov, lambda: Transformer(12, 16, 32, 2, causal=True, norm_first=True),
                                    seq_ce, "loss", "adam", 4, 32,
                                    "causal pre-LN transformer next-token model, Adam, 10% warmup", warmup=0.1),
}


# Longer trainings of four suite tasks (the same data, model and optimizer, k times the epochs), for
# bench/bench_tune.py only: advisor tune's fixed costs (a process start, the report) take seconds,
# so a budget of 30 full trainings is a user's situation only when one training takes seconds too.
# Not part of the suite lr-find is evaluated on (TASKS); swept by `sweep.py --long` into
# results/sweep-long.jsonl.
LONG: dict[str, Spec] = {f"{name}-x{k}": replace(TASKS[name], epochs=TASKS[name].epochs * k)
                         for name, k in (("digits-rescnn-adam", 4), ("markov-transformer-adam", 4),
                                         ("digits-bncnn-sgd", 4), ("diabetes-mlp-adam", 3),
                                         ("blobs-bnmlp-adamw", 3))}
SPECS: dict[str, Spec] = {**TASKS, **LONG}

def make_optimizer(name: str, params, lr: float):
    """The optimizers of the suite, with the defaults `advisor lr-find` uses."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name}")


def build(name: str, seed: int) -> Task:
    """The task with its model initialised from `seed` (the loaders shuffle from torch's RNG)."""
    spec = SPECS[name]
    seed_everything(seed)
    xt, yt, xv, yv = spec.data()
    if spec.train_subset:
        xt, yt = xt[: spec.train_subset], yt[: spec.train_subset]
    return Task(spec.model(), TensorLoader(xt, yt, spec.batch_size), TensorLoader(xv, yv, 1024, False),
                spec.loss, spec.metric)


def evaluate(task: Task) -> float:
    model = task.model
    model.eval()
    total, weight = 0.0, 0
    with torch.no_grad():
        for batch in task.val_loader:
            x, y = split_batch(batch, "val_loader")
            out = forward(model, x)
            if task.metric == "accuracy":
                value = (out.argmax(-1) == y).float().mean().item()
            else:
                value = task.loss_fn(out, y).item()
            total += value * len(y)
            weight += len(y)
    model.train()
    return total / weight


def worst(metric: str) -> float:
    return 0.0 if metric == "accuracy" else math.inf


def steps_per_epoch(name: str) -> int:
    spec = SPECS[name]
    n = len(spec.data()[0]) if not spec.train_subset else spec.train_subset
    return -(-n // spec.batch_size)


def train(name: str, lr: float, seed: int) -> list[float]:
    """The protocol: constant LR (after the task's linear warmup), the task's epochs; the
    validation metric after every epoch. A run whose loss turns non-finite scores the worst
    value from then on."""
    spec = SPECS[name]
    task = build(name, seed)
    opt = make_optimizer(spec.optimizer, task.model.parameters(), lr)
    total = spec.epochs * steps_per_epoch(name)
    warm = int(spec.warmup * total)
    step, history = 0, []
    for _ in range(spec.epochs):
        for x, y in task.train_loader:
            if warm:
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / warm)
            opt.zero_grad(set_to_none=True)
            loss = task.loss_fn(forward(task.model, x), y)
            loss.backward()
            opt.step()
            step += 1
        if not math.isfinite(loss.item()):
            return history + [worst(spec.metric)] * (spec.epochs - len(history))
        value = evaluate(task)
        history.append(value if math.isfinite(value) else worst(spec.metric))
    return history


def range_test(name: str, seed: int, iters: int = 100):
    """advisor's range test on the task (default sweep), with the task's optimizer."""
    from advisor.act.lr_find import range_test as rt

    spec = SPECS[name]
    task = build(name, seed)
    opt = make_optimizer(spec.optimizer, task.model.parameters(), 1e-7)
    return rt(task.model, task.train_loader, task.loss_fn, optimizer=opt, iters=iters, seed=seed)


def plain_steps(name: str, steps: int, seed: int) -> None:
    """`steps` plain training steps (the cost reference of the range test)."""
    spec = SPECS[name]
    task = build(name, seed)
    opt = make_optimizer(spec.optimizer, task.model.parameters(), 1e-7)
    batches = cycle(task.train_loader)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = task.loss_fn(forward(task.model, x), y)
        loss.backward()
        opt.step()
    loss.item()
