"""The one device picker: where torch work runs (a model, a kNN scan, k-means, a layout).
Imports torch only when called."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from .errors import InvalidInput

# Two threads importing torch at once (the app's warm-up and a first search or map) can leave
# one of them a half-initialised module: every first import of torch and of the model
# libraries takes this lock (``import_torch`` here, model loading in ``store.embedders``).
IMPORT_LOCK = threading.RLock()


def import_torch(*, optional: bool = False) -> Any:
    """PyTorch, imported on first use (it takes seconds) under ``IMPORT_LOCK``; ``optional``:
    None where it is not installed, instead of the ImportError."""
    with IMPORT_LOCK:
        try:
            import torch
        except ImportError:
            if optional:
                return None
            raise
    return torch


def resolve_device(device: str | None = None, *, allow_numpy: bool = False) -> str:
    """``None``/``"auto"``: ``cuda`` when torch sees a GPU, else ``cpu``. An explicit device
    that is not there is refused with what to do instead. ``allow_numpy``: for work that
    also runs on plain NumPy (the exact kNN graph), ``numpy`` is a device too, and the
    automatic choice where torch is not installed."""
    if allow_numpy and device in (None, "", "auto", "numpy"):
        if import_torch(optional=True) is None:
            return "numpy"
        if device == "numpy":
            return device
    torch = import_torch()

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
    if device == "cpu" or (device == "numpy" and allow_numpy):
        return device
    choices = "cpu, cuda, cuda:N, mps or numpy" if allow_numpy else "cpu, cuda, cuda:N or mps"
    raise InvalidInput(f"unknown device {device!r}; use {choices}")


@contextlib.contextmanager
def one_cpu_thread(torch: Any, device: str, *, when: bool = True) -> Iterator[None]:
    """Run torch's CPU work of the block on one thread (``when`` and the device is the CPU).
    For small tensors (one query, a layout epoch) more threads only wait on each other, and
    on a busy machine much worse: one MiniLM query 250 ms on torch's 2 threads, 30 ms on one,
    with the app's browser on the other core (load 4.5, 2 cores). The count is the calling
    thread's own (OpenMP's), so blocks in other threads neither see nor undo it."""
    if not when or not str(device).startswith("cpu"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
