"""Which device to train on: `auto` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from advisor.errors import InputError

CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> torch.device, or InputError saying why not."""
    import torch

    key = (name or "auto").strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "mps":
        if not _mps_available(torch):
            raise InputError("--device mps: Apple MPS is not available on this machine (use --device auto or cpu)")
        return torch.device("mps")
    if key == "cuda" or key.startswith("cuda:"):
        index_text = key.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise InputError(f"--device {name}: expected cuda:N with N a device number")
        if not torch.cuda.is_available():
            build = torch.version.cuda
            why = ("this torch was built without CUDA (install a CUDA build of torch)" if build is None
                   else f"no CUDA device is visible (torch built for CUDA {build})")
            raise InputError(f"--device {name}: CUDA is not available: {why}; use --device auto or cpu")
        count = torch.cuda.device_count()
        index = int(index_text) if index_text else torch.cuda.current_device()
        if index >= count:
            raise InputError(f"--device {name}: only {count} CUDA device(s) here (cuda:0"
                             f"{f'..cuda:{count - 1}' if count > 1 else ''})")
        return torch.device("cuda", index)
    raise InputError(f"--device: unknown device '{name}' (choose from {CHOICES})")


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device) -> str:
    """'cuda:0 (NVIDIA H100 80GB HBM3)', 'mps', 'cpu (2 threads)'."""
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, as taskset and
    container CPU sets restrict it), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
