"""advisor's task protocol (`build(hp) -> advisor.Task`) over tasks of the lr-find suite.

One `build_<task>` per chosen task of bench/lr_suite/tasks.py (its `SPECS` are reused, not
copied): the suite's data and model, hp["batch_size"] honoured (default the spec's), and the
returned Task carries `epochs` = the spec's epochs (the planned length). advisor's trainer
owns the optimizer, the schedule and the seeding (it seeds before calling build).

    advisor tune bench/tune_tasks/lr_suite_tasks.py:build_diabetes_mlp_adam --budget 60s --optimizer adam
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.lr_suite.tasks import LONG, SPECS  # noqa: E402

from advisor.act.demo import TensorLoader  # noqa: E402
from advisor.act.task import Task  # noqa: E402

if os.environ.get("BENCH_TUNE_PREWARM"):
    # bench_tune.py --prewarm: pay torch's one-off import of torch._dynamo (1.5-2 s, done by the first
    # torch.optim optimizer a process builds) when advisor imports this file, before advisor tune
    # times its baseline run, so that the measured trial time is a warm training's
    import torch._dynamo  # noqa: F401

CHOSEN = ("diabetes-mlp-adam", "blobs-bnmlp-adamw", "waves-cnn1d-sgd", "markov-transformer-adam",
          "digits-rescnn-adam", "majority-lstm-adam", "sort-transformer-adamw", "digits-bncnn-sgd",
          "markov-gru-adamw", "digits-gru-rmsprop", *LONG)


def build_task(name: str, hp: dict) -> Task:
    spec = SPECS[name]
    xt, yt, xv, yv = spec.data()
    if spec.train_subset:
        xt, yt = xt[: spec.train_subset], yt[: spec.train_subset]
    batch_size = int(hp.get("batch_size") or spec.batch_size)
    task = Task(spec.model(), TensorLoader(xt, yt, batch_size), TensorLoader(xv, yv, 1024, False),
                spec.loss, spec.metric)
    task.epochs = spec.epochs
    return task


def function_name(name: str) -> str:
    return "build_" + name.replace("-", "_")


def _make(name: str):
    def build(hp: dict) -> Task:
        return build_task(name, hp)

    build.__name__ = build.__qualname__ = function_name(name)
    spec = SPECS[name]
    build.__doc__ = f"{name}: {spec.kind} ({spec.epochs} epochs, batch {spec.batch_size})"
    return build


for _name in CHOSEN:
    globals()[function_name(_name)] = _make(_name)
