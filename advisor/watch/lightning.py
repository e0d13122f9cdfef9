"""PyTorch Lightning: advisor's diagnosis as a callback (pip install 'advisor[lightning]').

    from advisor.watch.lightning import AdvisorCallback
    trainer = Trainer(callbacks=[AdvisorCallback(stop_on=("diverged", "overfitting"))])

A thin adapter: at the end of each training epoch the epoch's logged metrics (what
`self.log(..., on_epoch=True)` put in `trainer.callback_metrics`, the validation values only when
validation ran that epoch) and the learning rate go to a Monitor; its events are logged through
Lightning's logger; a finding in `stop_on` sets `trainer.should_stop` (every process stops when
one does, as EarlyStopping does).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name carries the same API
    try:
        import pytorch_lightning as pl
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise ImportError("advisor.watch.lightning needs PyTorch Lightning: pip install 'advisor[lightning]'") from None

from advisor.ingest.roles import is_held_out
from advisor.watch.monitor import Monitor, WatchEvent

log = logging.getLogger(f"{pl.__name__}.callbacks.advisor")

_LEVEL = {"error": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO}


class AdvisorCallback(Callback):
    """Diagnoses the run each epoch; stops it on a finding whose label is in `stop_on`.

    After fit: `monitor` (findings, events, report()), `stopped_epoch`, `best_epoch` (the
    checkpoint to keep when overfitting stopped the run) and `stop_reason`."""

    def __init__(self, stop_on: Iterable[str] = ("diverged",), monitor: Monitor | None = None,
                 verbose: bool = True, **context: Any) -> None:
        super().__init__()
        self.monitor = monitor or Monitor(stop_on=stop_on, name="<lightning>", **context)
        self.verbose = verbose
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.stop_reason: str | None = None
        self._validation: dict[str, Any] = {}

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # (on_validation_end: the epoch's values are in callback_metrics by then, as EarlyStopping reads them)
        if trainer.sanity_checking or trainer.state.fn != "fit":  # trainer.validate(): not a point of the curve
            return
        self._validation = {k: v for k, v in _metrics(trainer).items() if is_held_out(k)}

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        row = {k: v for k, v in _metrics(trainer).items() if not is_held_out(k)}
        row.update(self._validation)  # validation ran this epoch: its values, else none (not stale ones)
        self._validation = {}
        lr = _learning_rate(trainer)
        if lr is not None and not any(k.startswith(("lr", "learning_rate")) for k in row):
            row["lr"] = lr
        self._report(trainer, self.monitor.log(**{**row, "epoch": trainer.current_epoch}))
        should_stop = trainer.strategy.reduce_boolean_decision(self.monitor.should_stop, all=False)
        if should_stop and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            self.best_epoch = self.monitor.best_epoch
            self.stop_reason = self.monitor.stop_reason()
            if self.stop_reason:
                self._say(trainer, logging.WARNING, self.stop_reason)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._report(trainer, self.monitor.finish())

    def _report(self, trainer: "pl.Trainer", events: list[WatchEvent]) -> None:
        if not self.verbose:
            return
        from advisor.render.watch import event_line

        for event in events:
            self._say(trainer, _LEVEL[event.severity] if event.event != "cleared" else logging.INFO,
                      "advisor: " + event_line(event))

    @staticmethod
    def _say(trainer: "pl.Trainer", level: int, message: str) -> None:
        if trainer.is_global_zero:
            log.log(level, message)


def _metrics(trainer: "pl.Trainer") -> dict[str, Any]:
    """The epoch's values: '<name>_step' keys are the last batch's, not the epoch's."""
    return {k: v for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}


def _learning_rate(trainer: "pl.Trainer") -> float | None:
    try:
        return float(trainer.optimizers[0].param_groups[0]["lr"])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
