"""Hugging Face Trainer: advisor's diagnosis as a callback (pip install 'advisor[hf]').

    from advisor.watch.hf import AdvisorCallback
    trainer = Trainer(..., callbacks=[AdvisorCallback(stop_on=("diverged", "overfitting"))])

A thin adapter: each record the Trainer logs (training loss, learning rate and gradient norm
every `logging_steps`, the evaluation's metrics) goes to a Monitor as the Trainer writes it into
`log_history` (with its global step), so the diagnosis is the one `advisor diagnose` gives on
trainer_state.json at that point. Events go to the transformers logger; a finding in `stop_on`
sets `control.should_training_stop`.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

try:
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
except ImportError:
    raise ImportError("advisor.watch.hf needs transformers: pip install 'advisor[hf]'") from None

from advisor.watch.monitor import Monitor, WatchEvent

log = hf_logging.get_logger("transformers.trainer.advisor")

_LEVEL = {"error": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO}


class AdvisorCallback(TrainerCallback):
    """Diagnoses the run at each logged record; stops it on a finding whose label is in `stop_on`.

    After train(): `monitor` (findings, events, report()), `stopped_step`, `stopped_epoch`,
    `best_epoch` (the evaluation to keep when overfitting stopped the run) and `stop_reason`."""

    def __init__(self, stop_on: Iterable[str] = ("diverged",), monitor: Monitor | None = None,
                 verbose: bool = True, **context: Any) -> None:
        self.monitor = monitor or Monitor(stop_on=stop_on, name="<hf>", **context)
        self.verbose = verbose
        self.stopped_step: int | None = None
        self.stopped_epoch: float | None = None
        self.best_epoch: int | None = None
        self.stop_reason: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        # the closing summary (train_runtime, the run's mean loss) is no point of the curve, as
        # diagnose leaves it out of trainer_state.json
        if not logs or "train_runtime" in logs:
            return control
        self._report(state, self.monitor.log(**{**logs, "step": state.global_step}))  # as log_history has it
        if self.monitor.should_stop and not control.should_training_stop:
            control.should_training_stop = True
            self.stopped_step, self.stopped_epoch = state.global_step, state.epoch
            self.best_epoch = self.monitor.best_epoch
            self.stop_reason = self.monitor.stop_reason()
            if self.stop_reason and state.is_world_process_zero:
                log.warning(self.stop_reason)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._report(state, self.monitor.finish())
        return control

    def _report(self, state, events: list[WatchEvent]) -> None:
        if not self.verbose or not state.is_world_process_zero:
            return
        from advisor.render.watch import event_line

        for event in events:
            log.log(_LEVEL[event.severity] if event.event != "cleared" else logging.INFO, "advisor: " + event_line(event))
