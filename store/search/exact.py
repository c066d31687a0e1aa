"""Exact nearest-neighbour search over one feature set's vectors held in memory.

Distances are computed in two passes: a first pass ranks every vector (fast, but with
rounding error), then every vector that could possibly belong to the answer, given a
rigorous bound on that error, is re-measured in float64 as ``sqrt(sum((x - q) ** 2))``. The
result is what brute force over every vector returns. The first pass is a float32 matrix
product or, for the k nearest (or farthest) of a large set, a scan of the set's int8 copy
(``compressed``: a quarter of the bytes, a looser bound), built from the float32 matrix in
the background the first time a large set is searched; the k nearest read only the groups of
rows the query can reach (the copy's grouping, by the triangle inequality).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import compressed as int8

@dataclass
class VectorMatrix:
    """All vectors of one feature set at one version."""

    entity_ids: np.ndarray  # (n,) str array (fixed-width, so it can break ties in a sort)
    feature_ids: np.ndarray  # (n,) str array
    values: np.ndarray  # (n, d) float32, C-contiguous (may be memory-mapped, read-only)
    version: int
    sq_norms: np.ndarray | None = None  # (n,) float32; computed when not given (store.vectors keeps them)
    norms: np.ndarray = field(init=False)
    int8_copy: "int8.CompressedCache" = field(init=False, repr=False)  # the int8 copy, a pure function of values
    _row_of: dict[str, int] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sq_norms is None:
            self.sq_norms = np.einsum("ij,ij->i", self.values, self.values, dtype=np.float32)
        self.norms = np.sqrt(self.sq_norms)
        self.int8_copy = int8.CompressedCache(self.values)

    @property
    def row_of(self) -> dict[str, int]:
        """Entity id -> row, built on first use (a million ids take a second: not at load)."""
        if self._row_of is None:
            self._row_of = {e: i for i, e in enumerate(self.entity_ids.tolist())}
        return self._row_of

    def __len__(self) -> int:
        return len(self.entity_ids)

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    def rows_for(self, entity_ids) -> np.ndarray:
        row_of = self.row_of
        return np.fromiter((row_of[e] for e in entity_ids if e in row_of), dtype=np.int64)


@dataclass
class Hits:
    rows: np.ndarray  # rows of the matrix, in result order
    distances: np.ndarray  # float64 true distances, same order
    total: int  # how many vectors pass the filters (before paging)


def exact_distances(values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The reference: true Euclidean distance in float64 (in pieces of ~32 MB of float64)."""
    q = query.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    step = max(1, (1 << 22) // max(values.shape[1] if values.ndim == 2 else 1, 1))
    for start in range(0, len(values), step):
        diff = values[start : start + step].astype(np.float64) - q
        out[start : start + step] = np.sqrt((diff * diff).sum(axis=1))
    return out


def _error_bound(matrix: VectorMatrix, q_norm: float) -> float:
    """Worst-case absolute error of the float32 squared distance ||x||^2 - 2x.q + ||q||^2."""
    eps32 = np.float64(2.0**-24)
    x_max = float(matrix.norms.max()) if len(matrix) else 0.0
    return float((matrix.dim + 8) * 2 * eps32 * (x_max + q_norm) ** 2) + 1e-30


def passes(distances: np.ndarray, ops: dict[str, float]) -> np.ndarray:
    """Which true ``distances`` satisfy every ``$eq $lt $lte $gt $gte`` bound in ``ops``."""
    keep = np.ones(len(distances), dtype=bool)
    for op, bound in ops.items():
        if op == "$eq":
            keep &= distances == bound
        elif op == "$lt":
            keep &= distances < bound
        elif op == "$lte":
            keep &= distances <= bound
        elif op == "$gt":
            keep &= distances > bound
        elif op == "$gte":
            keep &= distances >= bound
    return keep


def _maybe_passes(approx_sq: np.ndarray, ops: dict[str, float], err: float) -> np.ndarray:
    """Rows whose true distance could pass, judged on the approximate square with margin."""
    keep = np.ones(len(approx_sq), dtype=bool)
    for op, bound in ops.items():
        sq = float(bound) ** 2 if bound >= 0 else -1.0
        if op in ("$lt", "$lte"):
            keep &= approx_sq <= sq + err
        elif op in ("$gt", "$gte"):
            keep &= approx_sq >= sq - err if bound >= 0 else True
        elif op == "$eq":
            keep &= np.abs(approx_sq - sq) <= err
    return keep


def search(
    matrix: VectorMatrix,
    query: np.ndarray,
    rows: np.ndarray | None = None,
    distance_ops: dict[str, float] | None = None,
    descending: bool = False,
    limit: int | None = None,
    *,
    compressed: bool | None = None,
) -> Hits:
    """Rows of ``matrix`` (optionally only ``rows``) sorted by true distance to ``query``.

    ``distance_ops`` filters on the true distance; ``limit`` keeps the first ``limit`` in
    order (offset + page size); ``total`` counts every row that passes. Ties break by
    entity id so that pages are stable. ``compressed``: the int8 first pass for the k
    nearest / farthest (True: always, building the copy now; False: never; None: once the
    set has ``int8.MIN_CELLS`` values and its copy is built, starting the build otherwise).
    """
    ops = distance_ops or {}
    q32 = np.ascontiguousarray(query, dtype=np.float32)
    pool = len(matrix) if rows is None else len(rows)
    if not ops and limit is not None and 0 < limit < pool:
        copy = _int8_copy(matrix, compressed)
        hits = _compressed_top(matrix, copy, q32, rows, descending, limit) if copy is not None else None
        if hits is not None:
            return hits
    if rows is None and not ops and limit is not None and 0 < limit < len(matrix):
        return _top_of_all(matrix, q32, descending, limit)
    all_rows = rows is None
    if all_rows:
        rows = np.arange(len(matrix), dtype=np.int64)
    if len(rows) == 0:
        return Hits(rows, np.zeros(0), 0)
    q_norm = float(np.linalg.norm(q32.astype(np.float64)))
    approx = matrix.sq_norms - 2.0 * (matrix.values @ q32) + np.float32(q_norm * q_norm)
    if not all_rows:
        approx = approx[rows]
    approx = approx.astype(np.float64)
    err = _error_bound(matrix, q_norm)

    if ops:
        # Rows clearly inside every bound pass as they are; only the border is re-measured.
        maybe = _maybe_passes(approx, ops, err)
        sure = _maybe_passes(approx, ops, -err) & maybe
        border = np.flatnonzero(maybe & ~sure)
        if len(border):
            border_ok = passes(exact_distances(matrix.values[rows[border]], q32), ops)
            sure[border[border_ok]] = True
        cand_idx = np.flatnonzero(sure)
    else:
        cand_idx = np.arange(len(rows))
    total = len(cand_idx)

    if limit is not None and limit < len(cand_idx):
        if limit <= 0:
            return Hits(np.zeros(0, dtype=np.int64), np.zeros(0), total)
        keyed = approx if len(cand_idx) == len(approx) else approx[cand_idx]
        keyed = -keyed if descending else keyed
        kth = np.partition(keyed, limit - 1)[limit - 1]
        cand_idx = cand_idx[keyed <= kth + 2 * err]

    return _remeasured(matrix, q32, rows[cand_idx], descending, limit, total)


def _int8_copy(matrix: VectorMatrix, compressed: bool | None) -> int8.Int8Copy | None:
    """The matrix's int8 copy when the first pass should use it (see ``search``)."""
    if compressed is False or (compressed is None and len(matrix) * matrix.dim < int8.MIN_CELLS):
        return None
    return matrix.int8_copy.get(wait=compressed is True)


def _compressed_top(matrix: VectorMatrix, copy: int8.Int8Copy, q32: np.ndarray, rows: np.ndarray | None,
                    descending: bool, limit: int) -> Hits | None:
    """The k nearest (farthest) by the int8 first pass, every row it cannot rule out
    re-measured; the nearest scan only the groups the query can reach. None when the bound
    rules out too few rows to be worth it (then float32)."""
    total = len(matrix) if rows is None else len(rows)
    reached = None if descending else int8.reachable_bounds(copy, q32, limit, rows)
    if reached is not None:
        scanned, lo, hi = reached
        return _remeasured(matrix, q32, scanned[int8.candidates(lo, hi, limit)], descending, limit, total)
    lo, hi = int8.key_bounds(copy, q32, rows, descending=descending)
    pos = int8.candidates(lo, hi, limit)
    if len(pos) > limit + len(lo) // 8 and _float32_safe(matrix, q32):
        return None
    return _remeasured(matrix, q32, pos if rows is None else rows[pos], descending, limit, total)


def _float32_safe(matrix: VectorMatrix, q32: np.ndarray) -> bool:
    """Whether the float32 pass's squares stay far inside float32's range (norms < ~1e18)."""
    x_max = float(matrix.norms.max()) if len(matrix) else 0.0
    return bool((x_max + float(np.linalg.norm(q32.astype(np.float64)))) ** 2 < 1e36)


def _remeasured(matrix: VectorMatrix, q32: np.ndarray, chosen_rows: np.ndarray, descending: bool,
                limit: int | None, total: int) -> Hits:
    """The chosen rows measured in float64, in result order (ties by entity id), cut at ``limit``."""
    distances = exact_distances(matrix.values[chosen_rows], q32)
    order = np.lexsort((matrix.entity_ids[chosen_rows], -distances if descending else distances))[:limit]
    return Hits(chosen_rows[order], distances[order], total)


def _top_of_all(matrix: VectorMatrix, q32: np.ndarray, descending: bool, limit: int) -> Hits:
    """The common case (k nearest or farthest among every vector, no distance filter) with no
    float64 copy of the whole set: rank by ``|x|^2 - 2x.q`` in float32 (``|q|^2`` is the same
    for every row), keep every row within the error bound of the k-th, re-measure those."""
    q_norm = float(np.linalg.norm(q32.astype(np.float64)))
    key = matrix.values @ q32
    key *= np.float32(-2.0)
    key += matrix.sq_norms
    if descending:
        np.negative(key, out=key)
    kth = float(key[np.argpartition(key, limit - 1)[limit - 1]])
    # Round the cut up, never down, when it becomes float32 for the comparison.
    cut = np.nextafter(np.float32(kth + 2 * _error_bound(matrix, q_norm)), np.float32(np.inf))
    return _remeasured(matrix, q32, np.flatnonzero(key <= cut), descending, limit, len(matrix))


def search_many(matrix: VectorMatrix, queries: np.ndarray, limit: int, *, descending: bool = False,
                block: int = 16384) -> list[Hits]:
    """The ``limit`` nearest (farthest) of every row for each of many queries, as one float32
    matrix product per block of rows (the matrix is read once for all of them), then the same
    bound and float64 re-measure as ``search``: each answer equals ``search``'s for its query."""
    qs = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    n = len(matrix)
    if not 0 < limit < n or not all(_float32_safe(matrix, q) for q in qs):
        return [search(matrix, q, None, None, descending, limit) for q in qs]
    sign = np.float32(-1.0 if descending else 1.0)
    cut = np.full(len(qs), np.inf, dtype=np.float32)  # per query: the k-th key so far + 2 err (only falls)
    err2 = np.array([2 * _error_bound(matrix, float(np.linalg.norm(q.astype(np.float64)))) for q in qs])
    best = np.full((limit, len(qs)), np.inf, dtype=np.float32)
    found_rows, found_q, found_key = [], [], []
    for start in range(0, n, block):
        key = matrix.values[start : start + block] @ qs.T
        key *= np.float32(-2.0)
        key += matrix.sq_norms[start : start + block, None]
        if descending:
            key *= sign
        pool = np.concatenate([best, key])
        best = np.partition(pool, limit - 1, axis=0)[:limit]
        kth = best.max(axis=0).astype(np.float64)
        cut = np.nextafter((kth + err2).astype(np.float32), np.float32(np.inf))
        r, j = np.nonzero(key <= cut[None, :])
        found_rows.append(r + start)
        found_q.append(j)
        found_key.append(key[r, j])
    rows, which, keys = (np.concatenate(a) for a in (found_rows, found_q, found_key))
    keep = keys <= cut[which]
    rows, which = rows[keep], which[keep]
    order = np.argsort(which, kind="stable")
    rows, which = rows[order], which[order]
    bounds = np.searchsorted(which, np.arange(len(qs) + 1))
    return [_remeasured(matrix, q, rows[bounds[i] : bounds[i + 1]], descending, limit, n) for i, q in enumerate(qs)]
