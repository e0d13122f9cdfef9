"""Hardware facts: CUDA GPUs (names, memory), Apple MPS, CPU cores.

Detection is lazy and never fails: torch is imported only when the user did not say what the
machine has (--gpus / --gpu-memory), and a machine without torch falls back to `nvidia-smi`,
then to "no GPU found". Every detected value can be overridden.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Literal

from pydantic import BaseModel

from advisor.errors import InputError

SCHEMA = "advisor.hardware/1"

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(g|gb|gib)?\s*$", re.I)
# Bounds on what the command line may claim: a plan is for one cluster, and `detect` lists each
# GPU (a count of 10**8 took minutes and gigabytes: bad-input report F23).
MAX_GPUS = 10_000
MAX_GPU_MEMORY_GB = 100_000.0


class Gpu(BaseModel):
    index: int
    name: str
    memory_gb: float | None = None


class Hardware(BaseModel):
    schema_version: str = SCHEMA
    cuda: list[Gpu] = []
    mps: bool = False
    cpu_cores: int
    torch_version: str | None = None
    # given: from the command line; torch / nvidia-smi: detected with it; none: nothing detected
    source: Literal["given", "torch", "nvidia-smi", "none"]
    notes: list[str] = []

    @property
    def gpus(self) -> int:
        return len(self.cuda)

    @property
    def gpu_memory_gb(self) -> float | None:
        sizes = [g.memory_gb for g in self.cuda if g.memory_gb]
        return min(sizes) if sizes else None

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else ("mps" if self.mps else "cpu")


def parse_memory(text: str | None, option: str = "--gpu-memory") -> float | None:
    """'24', '24GB', '24g' -> 24.0 (GB per GPU)."""
    if text is None:
        return None
    match = _MEMORY.match(text)
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"{option}: cannot read GPU memory {text[:40]!r} (use e.g. 24 or 24GB)")
    value = float(match.group(1))
    if value > MAX_GPU_MEMORY_GB:  # also what overflows to infinity (F29)
        raise InputError(f"{option}: {text[:40]!r} is more memory than a GPU has "
                         f"(at most {MAX_GPU_MEMORY_GB:,.0f} GB)")
    return value


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect(gpus: int | None = None, gpu_memory_gb: float | None = None) -> Hardware:
    """What this machine has; given values win and spare the detection (and the torch import)."""
    if gpus is not None and gpus < 0:
        raise InputError(f"--gpus: must be 0 or more, got {gpus}")
    if gpus is not None and gpus > MAX_GPUS:
        raise InputError(f"--gpus: at most {MAX_GPUS:,} (a plan is for one cluster), got {str(gpus)[:30]}")
    if gpus is not None or gpu_memory_gb is not None:
        count = 1 if gpus is None else gpus
        return Hardware(cuda=[Gpu(index=i, name="(given)", memory_gb=gpu_memory_gb) for i in range(count)],
                        cpu_cores=cpu_cores(), source="given")
    found = _detect_torch()
    if found is None:
        found = _detect_nvidia_smi()
    elif not found.cuda:
        smi = _detect_nvidia_smi()
        if smi is not None and smi.cuda:  # a CPU build of torch on a machine with GPUs
            found = smi.model_copy(update={
                "mps": found.mps, "torch_version": found.torch_version,
                "notes": [f"torch {found.torch_version} sees no CUDA device but nvidia-smi lists "
                          f"{len(smi.cuda)}: install the CUDA build of torch to train on them"]})
    if found is None:
        return Hardware(cpu_cores=cpu_cores(), source="none",
                        notes=["no GPU found (torch is not installed and nvidia-smi is not available); "
                               "give --gpus and --gpu-memory if this machine has GPUs"])
    return found


def _detect_torch() -> Hardware | None:
    try:
        import torch
    except Exception:  # not installed, or a broken install: fall back
        return None
    cuda: list[Gpu] = []
    notes: list[str] = []
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                cuda.append(Gpu(index=i, name=props.name, memory_gb=round(props.total_memory / 1e9, 1)))
    except Exception as exc:  # driver trouble: report it, do not fail
        notes.append(f"CUDA detection failed: {exc}")
    mps = False
    try:
        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    except Exception:
        mps = False
    return Hardware(cuda=cuda, mps=mps, cpu_cores=cpu_cores(), torch_version=str(torch.__version__),
                    source="torch", notes=notes)


def _detect_nvidia_smi() -> Hardware | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    cuda = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                cuda.append(Gpu(index=int(parts[0]), name=parts[1], memory_gb=round(float(parts[2]) * 1.048576e-3, 1)))
            except ValueError:
                continue
    return Hardware(cuda=cuda, cpu_cores=cpu_cores(), source="nvidia-smi",
                    notes=["torch is not installed: GPUs read from nvidia-smi"])
