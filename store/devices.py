"""The one device picker: where torch work runs (a model, a kNN scan, k-means, a layout).
Imports torch only when called."""
from __future__ import annotations

from .errors import InvalidInput


def resolve_device(device: str | None = None, *, allow_numpy: bool = False) -> str:
    """``None``/``"auto"``: ``cuda`` when torch sees a GPU, else ``cpu``. An explicit device
    that is not there is refused with what to do instead. ``allow_numpy``: for work that
    also runs on plain NumPy (the exact kNN graph), ``numpy`` is a device too, and the
    automatic choice where torch is not installed."""
    if allow_numpy and device in (None, "", "auto", "numpy"):
        try:
            import torch
        except ImportError:
            return "numpy"
        if device == "numpy":
            return device
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
    if device == "cpu" or (device == "numpy" and allow_numpy):
        return device
    choices = "cpu, cuda, cuda:N, mps or numpy" if allow_numpy else "cpu, cuda, cuda:N or mps"
    raise InvalidInput(f"unknown device {device!r}; use {choices}")
