"""Exact neighbours by blocked matrix products: the one home of the block scans that the
map's kNN graph (``projection``), near-duplicates and outliers (``duplicates``) and the
neighbour lists of two sets (``compare``) run.

Every scan ranks pairs by the float32 key ``|y_j|^2 - 2 y_i.y_j`` (``keys``; plus
``|y_i|^2`` for the squared distance itself), a block of rows at a time (``block_rows``
bounds a block's memory), in PyTorch (a CUDA GPU when there is one) or, for ``exact_knn``
only, in NumPy where torch is not installed:

- ``exact_knn``: each row's k nearest rows, itself first, as umap wants them;
- ``knn_against``: each query row's k nearest rows of another matrix (the map's landmarks);
- ``top_lists``: each row's smallest keys to other rows, each pair computed once (the upper
  triangle of blocks) and offered to both its rows;
- ``range_pairs`` / ``range_rows``: every pair whose key is under a per-row limit.

Callers that need exact answers (``duplicates``) bound the float32 error and re-measure the
unclear pairs in float64 themselves. Torch is imported only when a scan runs.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from ..devices import import_torch, resolve_device


def knn_device(device: str | None = None) -> str:
    """Where an exact kNN scan runs: 'cuda', 'cpu' (PyTorch) or 'numpy' (no torch installed)."""
    return resolve_device(device, allow_numpy=True)


def block_rows(n: int, device: str) -> int:
    """Rows per block, so that one block of distances stays near 128 MB (1 GB on a GPU)."""
    budget = 2**28 if device == "cuda" else 2**25
    return int(min(8192, max(64, budget // max(n, 1))))


@contextmanager
def exact_matmul(torch: Any) -> Iterator[None]:
    """float32 products in full float32 (no TF32 / bf16 shortcuts): error bounds assume it."""
    previous = torch.get_float32_matmul_precision()
    if previous != "highest":
        torch.set_float32_matmul_precision("highest")
    try:
        with torch.inference_mode():
            yield
    finally:
        if previous != "highest":
            torch.set_float32_matmul_precision(previous)


def keys(torch: Any, data: Any, sq: Any, rows: Any, cols_from: int = 0, *, row_norms: bool = False,
         queries: Any = None) -> Any:
    """The float32 key ``|y_j|^2 - 2 y_i.y_j`` of ``rows`` (a slice or an index tensor of
    ``data``, or of ``queries`` when given) against the columns from ``cols_from`` on;
    ``row_norms`` adds ``|y_i|^2`` (of ``data``'s rows), making it the squared distance.
    ``sq``: the squared norms of ``data``'s rows."""
    left = data if queries is None else queries
    key = torch.addmm(sq[None, cols_from:], left[rows], data[cols_from:].T, alpha=-2.0)
    if row_norms:
        key.add_(sq[rows][:, None])
    return key


def upper_blocks(torch: Any, data: Any, sq: Any, block: int, *, row_norms: bool = False) -> Iterator[tuple[int, Any]]:
    """``(start, key)`` per block of rows ``start:start + block``: ``keys`` against the
    columns from ``start`` on, the block's own lower triangle and diagonal set to +inf, so
    each pair (i, j > i) is seen once."""
    n = len(data)
    lower = torch.ones((block, block), dtype=torch.bool, device=data.device).tril()
    for start in range(0, n, block):
        rows = min(start + block, n) - start
        key = keys(torch, data, sq, slice(start, start + rows), start, row_norms=row_norms)
        key[:, :rows].masked_fill_(lower[:rows, :rows], torch.inf)
        yield start, key


# ---- each row's k nearest, itself first (the map's graph, compare's lists) --------------------
def exact_knn(
    values: np.ndarray, k: int, *, device: str | None = None, progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest neighbours (Euclidean) of every row among all rows, as umap wants
    them: ``(indices int64 (n, k), distances float32 (n, k))``, ascending, each row itself
    first at distance 0 (duplicates included). ``device``: 'cuda', 'cpu' or 'numpy'."""
    device = knn_device(device)
    n = len(values)
    k = min(k, n)
    # Centring keeps float32 products precise (distances do not change); the ranking key
    # |y|^2 - 2x.y omits |x|^2, constant along a row.
    data = np.ascontiguousarray(values - values.mean(axis=0, dtype=np.float64).astype(np.float32), dtype=np.float32)
    block = block_rows(n, device)
    if device == "numpy":
        indices = _knn_blocks_numpy(data, k, block, progress)
    else:
        indices = _knn_blocks_torch(data, k, block, device, progress)
    return indices, _neighbour_distances(data, indices)


def knn_against(
    queries: np.ndarray, base: np.ndarray, k: int, *, device: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest rows of ``base`` to each row of ``queries`` (Euclidean):
    ``(indices int64 (m, k), distances float32 (m, k))``, ascending. ``device`` as ``exact_knn``."""
    device = knn_device(device)
    k = min(k, len(base))
    centre = base.mean(axis=0, dtype=np.float64).astype(np.float32)  # as exact_knn: precise float32 keys
    data = np.ascontiguousarray(base - centre, dtype=np.float32)
    asked = np.ascontiguousarray(queries - centre, dtype=np.float32)
    block = block_rows(len(data), device)
    if device == "numpy":
        indices = _knn_blocks_numpy(data, k, block, progress, asked)
    else:
        indices = _knn_blocks_torch(data, k, block, device, progress, asked)
    return indices, _neighbour_distances(data, indices, asked)


def _knn_blocks_torch(data: np.ndarray, k: int, block: int, device: str, progress,
                      queries: np.ndarray | None = None) -> np.ndarray:
    """Each row's (of ``queries``, else of ``data`` itself: itself first) k nearest rows of ``data``."""
    torch = import_torch()
    with torch.inference_mode():
        x = torch.from_numpy(data).to(device)
        q = x if queries is None else torch.from_numpy(queries).to(device)
        sq = (x * x).sum(dim=1)
        out = torch.empty((len(q), k), dtype=torch.int64, device=device)
        for start in range(0, len(q), block):
            stop = min(start + block, len(q))
            key = keys(torch, x, sq, slice(start, stop), queries=q)
            if queries is None:
                rows = torch.arange(stop - start, device=device)
                key[rows, rows + start] = -torch.inf  # itself first, even among exact duplicates
            out[start:stop] = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
            if progress:
                progress(stop / len(q))
        return out.cpu().numpy()


def _knn_blocks_numpy(data: np.ndarray, k: int, block: int, progress, queries: np.ndarray | None = None) -> np.ndarray:
    sq = np.einsum("ij,ij->i", data, data)
    q = data if queries is None else queries
    out = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), block):
        stop = min(start + block, len(q))
        key = sq[None, :] - 2.0 * (q[start:stop] @ data.T)
        if queries is None:
            rows = np.arange(stop - start)
            key[rows, rows + start] = -np.inf
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
        if progress:
            progress(stop / len(q))
    return out


def _neighbour_distances(data: np.ndarray, indices: np.ndarray, queries: np.ndarray | None = None) -> np.ndarray:
    """Distances measured directly (not from the product), re-sorted (after the point itself
    when the rows are ``data``'s own)."""
    q = data if queries is None else queries
    first = 1 if queries is None else 0
    dists = np.empty(indices.shape, dtype=np.float32)
    step = max(1, 2**24 // max(indices.shape[1] * data.shape[1], 1))  # ~64 MB of differences
    for start in range(0, len(q), step):
        rows = indices[start : start + step]
        diff = data[rows] - q[start : start + len(rows), None, :]
        dists[start : start + len(rows)] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(dists[:, first:], axis=1, kind="stable") + first
    indices[:, first:] = np.take_along_axis(indices, order, axis=1)
    dists[:, first:] = np.take_along_axis(dists, order, axis=1)
    if first:
        dists[:, 0] = 0.0
    return dists


# ---- each row's smallest squared distances to other rows, each pair computed once ----------------
def top_lists(torch: Any, data: Any, sq: Any, take: int, block: int) -> tuple[Any, Any]:
    """Each row's ``take`` smallest float32 squared distances to other rows, with their
    columns (torch tensors, ascending). Each pair is computed once (the upper triangle of
    blocks) and offered to both of its rows: to row i along the block's rows, to row j along
    its columns."""
    n = len(data)
    best_v = torch.full((n, take), torch.inf, device=data.device)
    best_i = torch.zeros((n, take), dtype=torch.int64, device=data.device)
    for start, key in upper_blocks(torch, data, sq, block, row_norms=True):
        stop = start + len(key)
        row_v, row_i = torch.topk(key, min(take, key.shape[1]), dim=1, largest=False)
        _merge_top(torch, best_v, best_i, start, stop, row_v, row_i + start, take)
        col_v, col_i = torch.topk(key, min(take, len(key)), dim=0, largest=False)
        _merge_top(torch, best_v, best_i, start, n, col_v.T, col_i.T + start, take)
    return best_v, best_i


def _merge_top(torch, best_v, best_i, start: int, stop: int, new_v, new_i, take: int) -> None:
    v = torch.cat([best_v[start:stop], new_v], dim=1)
    i = torch.cat([best_i[start:stop], new_i], dim=1)
    top_v, pos = torch.topk(v, take, dim=1, largest=False, sorted=True)
    best_v[start:stop] = top_v
    best_i[start:stop] = torch.gather(i, 1, pos)


# ---- range scans: every pair under a per-row limit ------------------------------------------------
def range_pairs(
    torch: Any, data: Any, sq: Any, limit: Any, block: int, chunk: int, labels: Callable[[], Any] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair (i, j > i) whose key (``keys`` without ``|y_i|^2``) is at most ``limit[i]``
    (a float32 tensor per row), as NumPy ``(i, j, key)`` pieces of at most ``chunk`` cells'
    worth of rows. Rows whose smallest key is beyond their limit are skipped. ``labels()``
    (when given, read before each piece) returns None or a tensor of component labels: pairs
    inside one component are left out, as the caller learns them."""
    for start, key in upper_blocks(torch, data, sq, block):
        active = (key.amin(dim=1) <= limit[start : start + len(key)]).nonzero().squeeze(1)
        step = max(1, chunk // key.shape[1])
        for c0 in range(0, len(active), step):
            local = active[c0 : c0 + step]
            sub = key.index_select(0, local)
            cand = sub <= limit[start + local][:, None]
            current = labels() if labels is not None else None
            if current is not None:  # edges inside one component change nothing
                cand &= current[start + local][:, None] != current[None, start:]
            li, cj = cand.nonzero(as_tuple=True)
            if not len(li):
                continue
            yield (start + local[li]).cpu().numpy(), (start + cj).cpu().numpy(), sub[li, cj].cpu().numpy()


def range_rows(
    torch: Any, data: Any, sq: Any, rows: np.ndarray, limit: np.ndarray, block: int, chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, column) pair with float32 squared distance <= ``limit[row]``, for the given
    rows against all others (themselves left out)."""
    n = len(limit)
    a_list, b_list = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    limit_t = torch.from_numpy(limit).to(data.device)
    step = max(1, min(block, chunk // max(n, 1)))
    for c0 in range(0, len(rows), step):
        local = torch.from_numpy(rows[c0 : c0 + step]).to(data.device)
        key = keys(torch, data, sq, local, row_norms=True)
        key[torch.arange(len(local), device=data.device), local] = torch.inf
        li, cj = (key <= limit_t[local][:, None]).nonzero(as_tuple=True)
        a_list.append(local[li].cpu().numpy())
        b_list.append(cj.cpu().numpy())
    return np.concatenate(a_list), np.concatenate(b_list)


__all__ = ["block_rows", "exact_knn", "exact_matmul", "import_torch", "keys", "knn_against", "knn_device", "range_pairs",
           "range_rows", "top_lists", "upper_blocks"]
