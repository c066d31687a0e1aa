"""Where a model runs: CUDA when present (with bf16 or fp16 autocast), else the CPU."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from ..devices import one_cpu_thread, resolve_device

__all__ = ["resolve_device", "autocast_dtype", "inference", "default_batch_size", "default_workers"]

# Batch sizes that keep a GPU busy without running a small card out of memory, and that
# amortise Python overhead on a CPU without holding much memory.
GPU_BATCH = {"image": 256, "text": 512}
CPU_BATCH = {"image": 32, "text": 64}


def autocast_dtype(device: str):
    """bf16 on GPUs that support it, else fp16; ``None`` (plain float32) elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def inference(device: str, *, single: bool = False) -> Iterator[None]:
    """``torch.inference_mode`` plus autocast on CUDA; ``single`` (one query, not a batch):
    on one CPU thread (``store.devices.one_cpu_thread``)."""
    import torch

    dtype = autocast_dtype(device)
    with torch.inference_mode(), one_cpu_thread(torch, device, when=single):
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
