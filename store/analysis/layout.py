"""umap-learn's layout optimisation as batched tensor operations (``torch_layout``): what a
CUDA machine runs after umap-learn has built the fuzzy graph and the spectral
initialisation (``store.analysis.projection``)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..devices import one_cpu_thread
from .knn import import_torch


def torch_layout(
    graph, init: np.ndarray, min_dist: float, n_epochs: int, seed: int | None, *, device: str = "cuda",
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """umap-learn's layout optimisation (``optimize_layout_euclidean`` with its defaults:
    learning rate 1, repulsion 1, 5 negative samples, gradients clipped at 4, the same
    per-edge sampling schedule), with every edge due in an epoch applied as one batch from the
    epoch's starting positions instead of one after another. On a GPU that is a few kernels
    per epoch; umap-learn's loop cannot use one, and is single-threaded when seeded. On a CPU
    umap-learn's own loop is faster, so this runs only where a GPU is. Seeded, it repeats on
    a CPU; on a GPU, atomic additions may change the last bits between runs."""
    from umap.umap_ import find_ab_params, make_epochs_per_sample

    torch = import_torch()
    a, b = (float(v) for v in find_ab_params(1.0, min_dist))
    coo = graph.tocoo()
    coo.sum_duplicates()
    coo.data[coo.data < coo.data.max() / float(n_epochs)] = 0.0  # as umap-learn prunes rare edges
    coo.eliminate_zeros()
    dev = torch.device(device)
    head = torch.from_numpy(coo.row.astype(np.int64)).to(dev)
    tail = torch.from_numpy(coo.col.astype(np.int64)).to(dev)
    every = torch.from_numpy(make_epochs_per_sample(coo.data, n_epochs)).to(dev)
    every_negative = every / 5.0
    next_sample, next_negative = every.clone(), every_negative.clone()
    y = torch.from_numpy(np.ascontiguousarray(init, dtype=np.float32)).to(dev)
    generator = torch.Generator(device=dev)
    generator.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
    # Per-epoch tensors are small: extra CPU threads only wait on each other.
    with one_cpu_thread(torch, dev.type):
        for epoch in range(n_epochs):
            _layout_epoch(torch, y, head, tail, every, every_negative, next_sample, next_negative, epoch, n_epochs,
                          a, b, generator)
            if progress and (epoch % 10 == 9 or epoch == n_epochs - 1):
                progress((epoch + 1) / n_epochs)
    return y.cpu().numpy()


def _layout_epoch(torch, y, head, tail, every, every_negative, next_sample, next_negative, epoch: int,
                  n_epochs: int, a: float, b: float, generator) -> None:
    """One epoch of ``torch_layout``, updating ``y`` and the sampling schedule in place."""
    alpha = 1.0 - epoch / n_epochs
    due = (next_sample <= epoch).nonzero().squeeze(1)
    h, t = head[due], tail[due]
    diff = y[h] - y[t]
    d2 = (diff * diff).sum(1)
    pull = -2.0 * a * b * d2.clamp_min(1e-12).pow(b - 1.0) / (a * d2.pow(b) + 1.0)
    step = (torch.where(d2 > 0, pull, 0.0)[:, None] * diff).clamp(-4.0, 4.0) * alpha
    delta = torch.zeros_like(y).index_add_(0, h, step).index_add_(0, t, -step)
    next_sample[due] += every[due]
    negatives = ((epoch - next_negative[due]) / every_negative[due]).floor().clamp_min(0).long()
    next_negative[due] += negatives * every_negative[due]
    h = h.repeat_interleave(negatives)
    other = torch.randint(0, len(y), (len(h),), generator=generator, device=y.device)
    diff = y[h] - y[other]
    d2 = (diff * diff).sum(1)
    push = 2.0 * b / ((0.001 + d2) * (a * d2.pow(b) + 1.0))
    step = (torch.where(d2 > 0, push, 0.0)[:, None] * diff).clamp(-4.0, 4.0) * alpha
    y += delta.index_add_(0, h, step)


__all__ = ["torch_layout"]
