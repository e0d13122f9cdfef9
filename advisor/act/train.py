"""The trainer of `advisor search`: one configuration of a task, trained and evaluated.

advisor owns the loop; the task (see :mod:`advisor.act.task`) gives the model, the data, the
loss and the metric. From the hyperparameters (`hp`, canonical names) the trainer takes:

    optimizer      sgd (momentum, Nesterov), adam, adamw, rmsprop
    learning_rate  the peak learning rate
    momentum       SGD / RMSprop momentum; beta1 for Adam and AdamW
    nesterov       SGD only
    weight_decay   decoupled for AdamW, L2 for the others
    lr_schedule    constant | step | cosine | onecycle (rules/search.yaml says what each computes)
    warmup         linear warmup: a share of the training steps (< 1) or a number of steps
    grad_clip      max gradient norm (clip_grad_norm_), or none
    epochs         epochs to train

Anything else in `hp` (batch_size, dropout, width ...) is for the task's `build(hp)`. Defaults
come from rules/search.yaml. The validation metric is computed after every epoch and handed to
`report(value, epoch)` (the pruner's hook; it may raise to stop the trial). A non-finite
training loss or validation metric raises :class:`Diverged` at once; CUDA running out of memory
raises :class:`OutOfMemory` with a batch-size hint. Mixed precision on CUDA (bf16 where the GPU
has it, else fp16 with loss scaling).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from advisor.errors import InputError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
TRAINER_KEYS = ("optimizer", "learning_rate", "momentum", "nesterov", "weight_decay", "lr_schedule",
                "warmup", "grad_clip", "epochs")


# --------------------------------------------------------------------------- settings (rules/search.yaml)

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainerDefaults(_Strict):
    optimizer: str
    learning_rate: dict[str, float]
    momentum: dict[str, float]
    nesterov: bool
    weight_decay: dict[str, float]
    lr_schedule: str
    warmup: float = Field(ge=0)
    grad_clip: Optional[float] = None
    epochs: int = Field(ge=1)
    nonfinite_check_every: dict[str, int]


class StepSchedule(_Strict):
    milestones: list[float]
    gamma: float = Field(gt=0)


class CosineSchedule(_Strict):
    final: float = Field(ge=0, le=1)


class OneCycleSchedule(_Strict):
    pct_start: float = Field(gt=0, lt=1)
    div_factor: float = Field(gt=0)
    final_div_factor: float = Field(gt=0)


class Schedules(_Strict):
    step: StepSchedule
    cosine: CosineSchedule
    onecycle: OneCycleSchedule


class FinalSettings(_Strict):
    top_k: int = Field(ge=0)
    seeds: int = Field(ge=1)


class SearchLimits(_Strict):
    abort_after_failures: int = Field(ge=1)
    storage_timeout: float = Field(gt=0)
    heartbeat_s: int = Field(ge=1)
    grace_s: int = Field(ge=1)
    connect_attempts: int = Field(ge=1, le=10)
    nominal_trial_hours: float = Field(gt=0)
    default_trials: int = Field(ge=1)
    cpu_workers_per_core: "WorkersPerCore"


class WorkersPerCore(_Strict):
    """--workers on a machine without a GPU: at most cores x this many worker processes."""

    trainer: float = Field(gt=0)     # advisor's trainer (build(hp) tasks)
    objective: float = Field(gt=0)   # a custom objective(hp, report), which may wait on I/O


class DemoSettings(_Strict):
    params: list[str]
    optimizer: str
    epochs: int = Field(ge=1)
    trials: int = Field(ge=1)
    budget_hours: float = Field(gt=0)
    trial_hours: float = Field(gt=0)
    current: dict[str, Any] = {}


class SearchSettings(_Strict):
    trainer: TrainerDefaults
    schedules: Schedules
    final: FinalSettings
    search: SearchLimits
    demo: DemoSettings


@lru_cache(maxsize=None)
def load_settings(path: Optional[str] = None) -> SearchSettings:
    """rules/search.yaml, validated (unknown keys are an error naming the field)."""
    from advisor.engine.loader import load_settings_file

    return load_settings_file("search", SearchSettings, path)


# --------------------------------------------------------------------------- the configuration

class TrialError(Exception):
    """A configuration cannot be trained: the trial fails with this message; the search goes on."""


class Diverged(Exception):
    """The training loss or the validation metric became NaN or infinite."""

    def __init__(self, reason: str, epoch: int, value: float, at_start: bool = False):
        super().__init__(reason)
        self.reason, self.epoch, self.value = reason, epoch, value
        self.at_start = at_start  # non-finite from the first step (or first report), before any update
        self.partial: Optional["TrainResult"] = None  # train(): the epochs done before it diverged


class OutOfMemory(TrialError):
    """CUDA ran out of memory; the message carries a batch-size hint."""


@dataclass
class TrainConfig:
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    momentum: Optional[float] = None
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup: float = 0.0
    grad_clip: Optional[float] = None
    epochs: int = 10
    amp: Optional[bool] = None          # None: on for CUDA


def _number(hp: dict, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TrialError(f"{key}={value!r} is not a number") from None
    value = float(value)
    if not math.isfinite(value):
        raise TrialError(f"{key}={value} is not finite")
    return value


def config_from_hp(hp: dict, settings: Optional[SearchSettings] = None,
                   epochs: Optional[int] = None) -> TrainConfig:
    """The trainer's settings from a trial's hyperparameters, defaults from rules/search.yaml.
    Raises TrialError naming the bad value."""
    d = (settings or load_settings()).trainer
    opt = str(hp.get("optimizer") or d.optimizer).lower()
    if opt not in OPTIMIZERS:
        raise TrialError(f"optimizer={opt!r}: unknown (choose from {', '.join(OPTIMIZERS)})")
    schedule = str(hp.get("lr_schedule") or d.lr_schedule).lower()
    if schedule not in SCHEDULES:
        raise TrialError(f"lr_schedule={schedule!r}: unknown (choose from {', '.join(SCHEDULES)})")
    lr = _number(hp, "learning_rate", hp.get("learning_rate", d.learning_rate.get(opt, 1e-3)))
    if lr <= 0:
        raise TrialError(f"learning_rate={lr:g}: must be positive")
    momentum = hp.get("momentum")
    momentum = d.momentum.get(opt) if momentum is None else _number(hp, "momentum", momentum)
    if momentum is not None and not 0 <= momentum < 1:
        raise TrialError(f"momentum={momentum:g}: must be in [0, 1)")
    wd = _number(hp, "weight_decay", hp.get("weight_decay", d.weight_decay.get(opt, 0.0)))
    if wd < 0:
        raise TrialError(f"weight_decay={wd:g}: must be >= 0")
    warmup = _number(hp, "warmup", hp.get("warmup", d.warmup))
    if warmup < 0:
        raise TrialError(f"warmup={warmup:g}: must be >= 0")
    clip = hp.get("grad_clip", d.grad_clip)
    clip = None if clip in (None, 0, "none") else _number(hp, "grad_clip", clip)
    if clip is not None and clip <= 0:
        raise TrialError(f"grad_clip={clip:g}: must be positive")
    n_epochs = epochs if epochs is not None else hp.get("epochs", d.epochs)
    n_epochs = int(_number(hp, "epochs", n_epochs))
    if n_epochs < 1:
        raise TrialError(f"epochs={n_epochs}: must be at least 1")
    nesterov = bool(hp.get("nesterov", d.nesterov)) and opt == "sgd"
    if nesterov and not momentum:
        raise TrialError("nesterov needs momentum > 0")
    return TrainConfig(optimizer=opt, learning_rate=lr, momentum=momentum, nesterov=nesterov,
                       weight_decay=wd, lr_schedule=schedule, warmup=warmup, grad_clip=clip,
                       epochs=n_epochs)


def make_optimizer(config: TrainConfig, params):
    """The torch optimizer for `config` (sgd, adam, adamw, rmsprop)."""
    import torch

    lr, wd, m = config.learning_rate, config.weight_decay, config.momentum
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=m or 0.0, nesterov=config.nesterov, weight_decay=wd)
    if config.optimizer in ("adam", "adamw"):
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, betas=(0.9 if m is None else m, 0.999), weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, momentum=m or 0.0, weight_decay=wd)


# --------------------------------------------------------------------------- schedules (pure)

def warmup_steps(warmup: float, total: int) -> int:
    """A share of the steps (< 1) or a number of steps (>= 1), at most all of them."""
    steps = warmup * total if warmup < 1 else warmup
    return int(min(total, max(0, round(steps))))


def lr_factor(step: int, total: int, schedule: str, warmup: int = 0,
              settings: Optional[SearchSettings] = None) -> float:
    """The multiplier of the peak LR at optimizer step `step` (0-based) of `total`."""
    s = (settings or load_settings()).schedules
    total = max(1, total)
    if schedule == "onecycle":
        oc = s.onecycle
        up = max(1, int(round(oc.pct_start * total)))
        start = 1.0 / oc.div_factor
        end = start / oc.final_div_factor
        if step < up:
            return _cos_between(start, 1.0, step / up)
        return _cos_between(1.0, end, min(1.0, (step - up) / max(1, total - up)))
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return s.step.gamma ** sum(progress >= m for m in s.step.milestones)
    if schedule == "cosine":
        final = s.cosine.final
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {schedule!r}")


def _cos_between(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))


# --------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    value: float                     # the validation metric after the last epoch
    history: list[float] = field(default_factory=list)   # validation metric per epoch
    train_loss: list[float] = field(default_factory=list)  # mean training loss per epoch
    epochs: int = 0
    seconds: float = 0.0
    clipped_share: Optional[float] = None   # share of steps whose gradient norm was clipped
    mixed_precision: Optional[str] = None


def metric_direction(metric: Any) -> Optional[str]:
    """'maximize' for accuracy, 'minimize' for loss, the callable's `direction` attribute or None."""
    if metric == "accuracy":
        return "maximize"
    if metric == "loss":
        return "minimize"
    direction = getattr(metric, "direction", None)
    return direction if direction in ("maximize", "minimize") else None


def _to(obj, device):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_to(o, device) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _amp(torch, device, amp: Optional[bool]):
    """(autocast dtype or None, GradScaler or None): bf16 where the GPU has it, else fp16 + scaler."""
    if device.type != "cuda" or amp is False:
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _batch_size(hp: dict, task) -> Optional[int]:
    bs = hp.get("batch_size") if hp else None
    return bs if bs is not None else getattr(task.train_loader, "batch_size", None)


def _oom_message(where: str, hp: dict, task) -> str:
    bs = _batch_size(hp, task)
    at = f" at batch_size={bs}" if bs is not None else ""
    return (f"CUDA out of memory{at} during {where}: lower batch_size (cap the batch-size range of the "
            "search below this value) or use a smaller model")


def train(task, config: TrainConfig, *, device=None, report: Optional[Callable[[float, int], None]] = None,
          hp: Optional[dict] = None, settings: Optional[SearchSettings] = None,
          on_epoch: Optional[Callable[[int], None]] = None) -> TrainResult:
    """Train `task` with `config`; evaluate after every epoch and call report(value, epoch).

    epoch is 0-based (the pruner's step). Raises Diverged (non-finite loss or metric),
    OutOfMemory (CUDA), TrialError (the task's own code failed: message says where), or whatever
    `report` raises (optuna.TrialPruned). The model stays where it was trained.
    """
    import torch

    from advisor.act.lr_find import forward, split_batch

    cfg = settings or load_settings()
    device = device or torch.device("cpu")
    hp = hp or {}
    model = task.model
    began = time.perf_counter()
    try:
        model.to(device)
    except torch.cuda.OutOfMemoryError:
        raise OutOfMemory(_oom_message("model placement", hp, task)) from None
    opt = make_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    amp_dtype, scaler = _amp(torch, device, config.amp)
    check_every = int(cfg.trainer.nonfinite_check_every.get(device.type, 8))
    try:
        steps_per_epoch: Optional[int] = len(task.train_loader)
    except TypeError:
        steps_per_epoch = None
    params = [p for p in model.parameters() if p.requires_grad]
    result = TrainResult(value=math.nan, mixed_precision={None: None, torch.bfloat16: "bf16",
                                                          torch.float16: "fp16"}[amp_dtype])
    try:
        return _train_epochs(task, config, device, report, hp, cfg, on_epoch, model, opt, amp_dtype, scaler,
                             check_every, steps_per_epoch, params, result, began)
    except Diverged as exc:
        exc.partial = result  # the epochs done before it diverged: their curves are diagnosed
        raise


def _train_epochs(task, config, device, report, hp, cfg, on_epoch, model, opt, amp_dtype, scaler, check_every,
                  steps_per_epoch, params, result, began) -> TrainResult:
    import torch

    from advisor.act.lr_find import forward, split_batch

    step = 0
    clipped = torch.zeros((), device=device)
    for epoch in range(config.epochs):
        total = (steps_per_epoch or 1) * config.epochs
        warm = warmup_steps(config.warmup, total)
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float32)
        pending = 0
        n_batches = 0
        try:
            for batch in task.train_loader:
                if steps_per_epoch is None and epoch == 0:
                    factor = lr_factor(0, 1, config.lr_schedule, 0, cfg)  # length unknown until one epoch ran
                else:
                    factor = lr_factor(step, total, config.lr_schedule, warm, cfg)
                for group in opt.param_groups:
                    group["lr"] = config.learning_rate * factor
                inputs, targets = split_batch(batch)
                inputs, targets = _to(inputs, device), _to(targets, device)
                opt.zero_grad(set_to_none=True)
                if amp_dtype is not None:
                    with torch.autocast(device_type=device.type, dtype=amp_dtype):
                        loss = task.loss_fn(forward(model, inputs), targets)
                else:
                    loss = task.loss_fn(forward(model, inputs), targets)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if config.grad_clip is not None:
                        scaler.unscale_(opt)
                        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                        clipped += (norm > config.grad_clip).float()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    if config.grad_clip is not None:
                        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                        clipped += (norm > config.grad_clip).float()
                    opt.step()
                loss_sum += loss.detach().float()
                step += 1
                n_batches += 1
                pending += 1
                if pending >= check_every or step == 1:  # the first step too: a loss NaN from the start
                    pending = 0
                    _check_finite(loss_sum, epoch, n_batches)
        except Diverged:
            raise
        except InputError as exc:  # the loader's batches are not (inputs, targets)
            raise TrialError(str(exc)) from None
        except torch.cuda.OutOfMemoryError:
            _free(torch, device)
            raise OutOfMemory(_oom_message(f"epoch {epoch + 1}", hp, task)) from None
        except Exception as exc:
            raise TrialError(f"training epoch {epoch + 1} failed: {describe(exc)}") from None
        if n_batches == 0:
            if epoch:  # it gave an epoch, then none: a generator or an iterator runs only once
                raise TrialError(f"train_loader yielded no batches in epoch {epoch + 1}, after a full epoch 1 "
                                 f"({type(task.train_loader).__name__} can be iterated only once); give a "
                                 "DataLoader, a list, or an object whose __iter__ starts again")
            raise TrialError("train_loader yielded no batches")
        if steps_per_epoch is None:
            steps_per_epoch = n_batches
        _check_finite(loss_sum, epoch, n_batches)
        result.train_loss.append(float(loss_sum) / n_batches)
        try:
            value = evaluate(task, device, amp_dtype)
        except torch.cuda.OutOfMemoryError:
            _free(torch, device)
            raise OutOfMemory(_oom_message(f"evaluation after epoch {epoch + 1}", hp, task)) from None
        except Diverged:
            raise
        except TrialError as exc:
            if epoch and str(exc) == "val_loader yielded no batches":  # it did after epoch 1
                raise TrialError(f"val_loader yielded no batches after epoch {epoch + 1}, after a full pass "
                                 f"after epoch 1 ({type(task.val_loader).__name__} can be iterated only once); "
                                 "give a DataLoader, a list, or an object whose __iter__ starts again") from None
            raise
        except InputError as exc:
            raise TrialError(str(exc)) from None
        except Exception as exc:
            raise TrialError(f"evaluation after epoch {epoch + 1} failed: {describe(exc)}") from None
        result.epochs = epoch + 1
        result.history.append(value)
        result.value = value
        if on_epoch is not None:
            on_epoch(epoch + 1)
        if not math.isfinite(value):
            raise Diverged(f"validation metric {value} after epoch {epoch + 1}", epoch, value)
        if report is not None:
            report(value, epoch)
    if config.grad_clip is not None and step:
        result.clipped_share = float(clipped) / step
    result.seconds = time.perf_counter() - began
    return result


def _check_finite(loss_sum, epoch: int, n_batches: int) -> None:
    value = float(loss_sum)
    if not math.isfinite(value):
        at_start = epoch == 0 and n_batches == 1
        where = "at the first step, before any update" if at_start else f"in epoch {epoch + 1} by step {n_batches}"
        raise Diverged(f"non-finite training loss ({value}) {where}", epoch, value, at_start=at_start)


def _free(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def evaluate(task, device, amp_dtype=None) -> float:
    """The task's validation metric: accuracy, mean loss, or the task's callable on all outputs."""
    import torch

    from advisor.act.lr_find import forward, split_batch

    model, metric = task.model, task.metric
    if task.val_loader is None:
        raise TrialError("task.val_loader is None: advisor search evaluates every epoch")
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.float64)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = predicted = 0
    outs, tgts = [], []
    with torch.no_grad():
        for batch in task.val_loader:
            inputs, targets = split_batch(batch, "val_loader")
            inputs, targets = _to(inputs, device), _to(targets, device)
            if amp_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=amp_dtype):
                    out = forward(model, inputs)
            else:
                out = forward(model, inputs)
            n = _length(targets)
            count += n
            if metric == "accuracy":
                hits, made = _correct(out, targets)
                correct += hits
                predicted += made
            elif metric == "loss":
                loss_sum += task.loss_fn(out, targets).detach().double() * n
            else:
                outs.append(out.detach().float().cpu() if isinstance(out, torch.Tensor) else out)
                tgts.append(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
    if count == 0:
        raise TrialError("val_loader yielded no batches")
    if metric == "accuracy":  # per prediction: a sequence model predicts one class per token
        return float(correct) / max(1, predicted)
    if metric == "loss":
        return float(loss_sum) / count
    out = torch.cat(outs) if all(isinstance(o, torch.Tensor) for o in outs) else outs
    tgt = torch.cat(tgts) if all(isinstance(t, torch.Tensor) for t in tgts) else tgts
    return float(metric(out, tgt))


def _length(targets) -> int:
    if hasattr(targets, "shape") and len(targets.shape):
        return int(targets.shape[0])
    try:
        return len(targets)
    except TypeError:
        return 1


def _correct(out, targets):
    """(correct predictions, predictions) in a batch: class logits (argmax), or one logit per
    example (> 0); a sequence model's logits (batch, tokens, classes) predict once per token."""
    if out.dim() >= 2 and out.shape[-1] > 1:
        pred = out.argmax(-1)
        if targets.dim() == out.dim():      # one-hot or probabilities
            targets = targets.argmax(-1)
    else:
        pred = (out.reshape(targets.shape) > 0).to(targets.dtype)
    hits = pred == targets
    return hits.sum().double(), int(hits.numel())


def describe(exc: BaseException) -> str:
    """'KeyError: huge' (first line of the message)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["Diverged", "OutOfMemory", "TrainConfig", "TrainResult", "TrialError", "config_from_hp",
           "evaluate", "load_settings", "lr_factor", "make_optimizer", "metric_direction", "train",
           "warmup_steps"]
