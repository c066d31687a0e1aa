"""Where a model runs: CUDA when present (with bf16 or fp16 autocast), else the CPU."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from ..errors import InvalidInput

# Batch sizes that keep a GPU busy without running a small card out of memory, and that
# amortise Python overhead on a CPU without holding much memory.
GPU_BATCH = {"image": 256, "text": 512}
CPU_BATCH = {"image": 32, "text": 64}


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"``: ``cuda`` when torch sees a GPU, else ``cpu``. An explicit device
    that is not there is refused with what to do instead."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device).strip().lower()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(
                f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu or install a CUDA build of torch"
            )
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise InvalidInput(f"--device {device}: there are {torch.cuda.device_count()} GPU(s), numbered from 0")
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidInput("--device mps: Apple's Metal backend is not available here; use --device cpu")
        return device
    if device == "cpu":
        return device
    raise InvalidInput(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")


def autocast_dtype(device: str):
    """bf16 on GPUs that support it, else fp16; ``None`` (plain float32) elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def inference(device: str) -> Iterator[None]:
    """``torch.inference_mode`` plus autocast on CUDA."""
    import torch

    dtype = autocast_dtype(device)
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type="cuda", dtype=dtype):
                yield


def default_batch_size(device: str, modality: str) -> int:
    table = GPU_BATCH if device.startswith("cuda") else CPU_BATCH
    return table.get(modality, table["image"])


def default_workers(device: str) -> int:
    """Threads that decode images while the model runs. Pillow's and torchvision's decoders
    and torch's resize release the GIL, so threads scale. On a CPU they share the cores with
    the model (one per core measured best on 2 cores); on a GPU they leave one core free."""
    cores = os.cpu_count() or 1
    if device == "cpu":
        return max(1, min(8, cores))
    return max(2, min(16, cores - 1))
