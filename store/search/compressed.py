"""The compressed first pass of exact search: an int8 copy of a set's vectors and a rigorous
bound on what it gets wrong, so that a scan reads a quarter of the bytes of float32 and the
answer still equals brute force (``exact`` re-measures every row the bound cannot rule out).

The copy (``compress``) is a pure function of the float32 matrix: rows centred on the set's
mean ``mu`` (float64; distances do not change), each row ``y_i`` stored as int8 codes
``c_i`` times a float64 scale ``a_i = max|y_i| / 127``, with per row (float64) the squared
norm ``|y_i|^2``, ``a_i |c_i|`` and the residual norm ``eps_i = |y_i - a_i c_i|``.

For a query ``q`` (``q' = q - mu``, scaled by a power of two ``2^p`` and rounded to float32
``q32``, so that ``q' = 2^p (q32 + delta)``), ``scan`` computes the float32 dot ``s_i`` of
``c_i`` and ``q32`` (any summation order) and the key ``k_i = |y_i|^2 - 2 a_i 2^p s_i`` of the
true squared distance minus ``|q'|^2``. Its error is at most

    E_i = 2 (a_i 2^p (|c_i| (gamma_(d+1) |q32| + |delta|) + 2 d 2^-149) + eps_i |q'|) + slack_i

(float32 dot error, the query's rounding, the int8 residual by Cauchy-Schwarz, subnormals),
with ``slack_i = 2^-40 (|y_i|^2 + 2 |y_i| |q'| + |q'|^2)`` covering every float64 rounding
of these terms and of the float64 brute force itself, and the whole scaled by 1 + 2^-30.

The copy also groups the rows around about sqrt(n) centroids (a few k-means steps on a sample,
then every row to its nearest), keeping each row's float64 distance ``r_i`` to its centroid
and each group's largest, its reach ``R_c``. By the triangle inequality no member of group
``c`` is nearer the query than ``|q' - C_c| - R_c``, so ``reachable_bounds`` scans the groups
nearest the query first, takes the k-th smallest upper bound of what it found as a cut, and
skips every group (then every row) whose lower bound lies past it: on clustered vectors most
of the set is never read. The groups change what is read, never the answer (any grouping is
valid: the bounds are measured from the grouping made), and a query that reaches most groups
scans the whole copy as before.

The kernels are numba (already installed with umap-learn), compiled once and cached on disk;
numba is imported only when a compressed scan runs.
"""
from __future__ import annotations

import math
import threading
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

U32 = 2.0**-24  # float32 unit roundoff
SLACK = 2.0**-40  # relative room for every float64 rounding (gamma_d in float64 is ~2^-44 at d = 512)
GROW = 1.0 + 2.0**-30  # the bound's own rounding
MIN_CELLS = 1 << 24  # below n x d of this, the float32 pass is as fast (16k x 1024, 32k x 512)
PARALLEL_CELLS = 1 << 25  # scans of at least this many codes use every core
MAX_GROUPS = 2048  # centroids of the grouping: about sqrt(n), at most this
ASSIGN_DIMS = 64  # rows are assigned to centroids in this many principal directions
REACH_MARGIN = 2.0**-30  # relative room for the float64 roundings of the group bounds

_KERNELS: dict[str, Callable] = {}
_KERNEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class Groups:
    """The rows grouped around centroids (see the module's docstring), in centred coordinates."""

    centroids: np.ndarray  # (g, d) float64: C_c
    members: np.ndarray  # (n,) int64 rows, group after group, ascending within each
    starts: np.ndarray  # (g + 1,) int64: group c is members[starts[c]:starts[c + 1]]
    radius: np.ndarray  # (n,) float64 in members' order: r_i = |y_i - C_c|
    reach: np.ndarray  # (g,) float64: R_c, the largest radius of the group (0 when empty)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.centroids, self.members, self.starts, self.radius, self.reach))


@dataclass(frozen=True)
class Int8Copy:
    """The int8 copy of one float32 matrix (see the module's docstring)."""

    codes: np.ndarray  # (n, d) int8
    mean: np.ndarray  # (d,) float64: mu
    scale: np.ndarray  # (n,) float64: a_i
    sq: np.ndarray  # (n,) float64: |y_i|^2
    code_norm: np.ndarray  # (n,) float64: a_i |c_i|
    resid: np.ndarray  # (n,) float64: eps_i
    groups: Groups | None = None

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + 4 * self.scale.nbytes + (self.groups.nbytes if self.groups else 0)


def _kernels() -> dict[str, Callable]:
    """numba kernels, compiled (or loaded from numba's disk cache) on first use."""
    with _KERNEL_LOCK:
        if _KERNELS:
            return _KERNELS
        import numba
        from numba import prange

        @numba.njit(parallel=True, nogil=True, cache=True)
        def quantize(values, mean, codes, scale, sq, code_norm, resid):  # pragma: no cover - compiled
            n, d = values.shape
            for i in prange(n):
                top = 0.0
                for j in range(d):
                    top = max(top, abs(np.float64(values[i, j]) - mean[j]))
                a = top / 127.0
                inv = 127.0 / top if top > 0.0 else 0.0  # any rounding of c is fine: the residual measures it
                s2 = 0.0
                c2 = 0.0
                r2 = 0.0
                for j in range(d):
                    y = np.float64(values[i, j]) - mean[j]
                    c = min(127.0, max(-127.0, np.rint(y * inv)))
                    codes[i, j] = np.int8(c)
                    r = y - a * c
                    s2 += y * y
                    c2 += c * c
                    r2 += r * r
                scale[i] = a
                sq[i] = s2
                code_norm[i] = a * np.sqrt(c2)
                resid[i] = np.sqrt(r2)

        @numba.njit(parallel=True, nogil=True, cache=True)
        def radii(values, mean, centroids, members, labels, out):  # pragma: no cover - compiled
            d = values.shape[1]
            for t in prange(members.shape[0]):
                i = members[t]
                c = labels[i]
                r2 = 0.0
                for j in range(d):
                    r = (np.float64(values[i, j]) - mean[j]) - centroids[c, j]
                    r2 += r * r
                out[t] = np.sqrt(r2)

        def scan(codes, q32, rows, scale, sq, code_norm, resid, two_p, alpha, alpha0, beta, sign,
                 lo, hi):  # pragma: no cover - compiled
            d = codes.shape[1]
            for t in prange(rows.shape[0]):
                i = rows[t]
                s = np.float32(0.0)
                for j in range(d):
                    s += np.float32(codes[i, j]) * q32[j]
                key = sign * (sq[i] - 2.0 * scale[i] * two_p * np.float64(s))
                y = np.sqrt(sq[i])
                err = 2.0 * (code_norm[i] * alpha + scale[i] * alpha0 + resid[i] * beta)
                err = (err + 2.0**-40 * (sq[i] + 2.0 * y * beta + beta * beta)) * (1.0 + 2.0**-30)
                lo[t] = key - err
                hi[t] = key + err

        # No nnan / ninf / afn: any summation order (reassoc) and FMAs (contract) stay inside the
        # gamma bound, and no other shortcut touches the arithmetic. Small scans run on one
        # thread: waking a pool costs more than they do on a loaded machine.
        flags = {"reassoc", "contract", "nsz", "arcp"}
        serial = types.FunctionType(scan.__code__, scan.__globals__, "scan_serial", scan.__defaults__, scan.__closure__)
        serial.__qualname__ = scan.__qualname__ + "_serial"  # its own entry in numba's disk cache
        _KERNELS.update(quantize=quantize, radii=radii, scan=numba.njit(parallel=True, nogil=True, fastmath=flags, cache=True)(scan),
                        scan_serial=numba.njit(nogil=True, fastmath=flags, cache=True)(serial))
        return _KERNELS


def compress(values: np.ndarray, *, grouped: bool = True) -> Int8Copy:
    """The int8 copy of a float32 matrix (n, d), a pure function of it; ``grouped=False``
    leaves out the grouping (every query then scans the whole copy: benchmarks)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    n, d = values.shape
    mean = values.mean(axis=0, dtype=np.float64) if n else np.zeros(d)
    codes = np.empty((n, d), dtype=np.int8)
    scale, sq, code_norm, resid = (np.empty(n, dtype=np.float64) for _ in range(4))
    if n:
        _kernels()["quantize"](values, mean, codes, scale, sq, code_norm, resid)
    return Int8Copy(codes, mean, scale, sq, code_norm, resid, group(values, mean) if n and grouped else None)


def group(values: np.ndarray, mean: np.ndarray, *, steps: int = 6, block: int = 16384) -> Groups:
    """About sqrt(n) centroids by k-means on a sample (fixed seed, farthest-point seeds), each
    row (and each sample row in the k-means steps) to its nearest as seen in the sample's top
    ``ASSIGN_DIMS`` principal directions (float32, the centred rows scaled to at most 1), and
    each row's float64 radius. Any assignment is valid, only the radii measured from it must
    be exact; at 1M x 512 the 64 directions halve the build against all 512."""
    n, d = values.shape
    k = int(min(MAX_GROUPS, max(1, round(math.sqrt(n)))))
    rng = np.random.default_rng(0)
    top = max(float(values.max()), -float(values.min())) + float(np.abs(mean).max())
    unit = np.float32(1.0 / top) if top > 0 else np.float32(1.0)
    mean32 = mean.astype(np.float32)

    def scaled(rows: np.ndarray) -> np.ndarray:
        return (rows - mean32) * unit

    sample = scaled(values[np.sort(rng.choice(n, min(n, 40 * k), replace=False))])
    cents = _spread_seeds(sample[rng.permutation(len(sample))[: 10 * k]], k)
    basis = _principal(sample, ASSIGN_DIMS)
    seen = sample @ basis
    for _ in range(steps):
        cents = _means(sample, _nearest(seen, cents @ basis), cents)
    near_cents = cents @ basis
    labels = np.concatenate([_nearest(scaled(values[s : s + block]) @ basis, near_cents) for s in range(0, n, block)])
    members = np.argsort(labels, kind="stable").astype(np.int64)
    starts = np.searchsorted(labels[members], np.arange(k + 1)).astype(np.int64)
    centroids = cents.astype(np.float64) / np.float64(unit)  # back to the data's scale, centred
    radius = np.empty(n, dtype=np.float64)
    _kernels()["radii"](np.ascontiguousarray(values), mean, centroids, members, labels.astype(np.int64), radius)
    reach = np.zeros(k, dtype=np.float64)
    filled = np.flatnonzero(np.diff(starts) > 0)
    reach[filled] = np.maximum.reduceat(radius, starts[filled])
    return Groups(centroids, members, starts, radius, reach)


def _means(rows: np.ndarray, labels: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """One k-means step: each centroid to the mean of its rows (an empty one stays)."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(cents))
    filled = np.flatnonzero(counts)
    out = cents.copy()
    out[filled] = np.add.reduceat(rows[order], np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]) / counts[filled, None]
    return out


def _principal(rows: np.ndarray, dims: int) -> np.ndarray:
    """(d, dims) float32: the rows' top principal directions (all d when d <= dims)."""
    d = rows.shape[1]
    if d <= dims:
        return np.eye(d, dtype=np.float32)
    centred = rows - rows.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T.astype(np.float64) @ centred)
    return np.ascontiguousarray(vecs[:, -dims:], dtype=np.float32)


def _spread_seeds(rows: np.ndarray, k: int) -> np.ndarray:
    """``k`` rows, each the farthest from those chosen before (farthest-point seeding): on
    clustered vectors every cluster gets a seed before any gets two, where random seeds miss a
    third of them and leave groups that straddle two clusters (then nothing is ruled out)."""
    sq = np.einsum("ij,ij->i", rows, rows)
    chosen = [0]
    gap = sq - 2 * (rows @ rows[0]) + sq[0]
    for _ in range(k - 1):
        i = int(np.argmax(gap))
        chosen.append(i)
        np.minimum(gap, sq - 2 * (rows @ rows[i]) + sq[i], out=gap)
    return rows[chosen].copy()


def _nearest(rows: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centroid (float32: |c|^2 - 2 x.c)."""
    key = rows @ cents.T
    key *= np.float32(-2.0)
    key += np.einsum("ij,ij->i", cents, cents)
    return np.argmin(key, axis=1)


def key_bounds(copy: Int8Copy, query: np.ndarray, rows: np.ndarray | None = None,
               *, descending: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` float64 per row (every row, or ``rows`` in their order): bounds on the
    true key ``|x - q|^2 - |q - mu|^2`` (negated when ``descending``), so ranking by the key
    ranks by distance."""
    q = np.asarray(query, dtype=np.float64) - copy.mean
    beta = float(np.sqrt(np.dot(q, q)))
    top = float(np.abs(q).max()) if len(q) else 0.0
    p = math.frexp(top)[1] if top > 0 else 0  # |q / 2^p| < 1: no float32 overflow, few subnormals
    q_scaled = np.ldexp(q, -p)
    q32 = q_scaled.astype(np.float32)
    delta = q_scaled - q32.astype(np.float64)
    d = len(q)
    two_p = math.ldexp(1.0, p)
    gamma = (d + 1) * U32 / (1 - (d + 1) * U32)
    alpha = two_p * (gamma * float(np.linalg.norm(q32.astype(np.float64))) + float(np.linalg.norm(delta)))
    alpha0 = two_p * 2 * d * 2.0**-149
    if rows is not None and 2 * len(rows) > len(copy.codes):
        # A filter that passes most rows: the straight scan and a gather beat reading through
        # the index (1.0 to 1.5x unfiltered against 1.8x at 1M, measured here).
        lo, hi = key_bounds(copy, query, descending=descending)
        return lo[rows], hi[rows]
    idx = np.arange(len(copy.codes)) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    lo, hi = np.empty(len(idx), dtype=np.float64), np.empty(len(idx), dtype=np.float64)
    if len(idx):
        kernel = "scan" if len(idx) * d >= PARALLEL_CELLS else "scan_serial"
        _kernels()[kernel](copy.codes, q32, idx, copy.scale, copy.sq, copy.code_norm, copy.resid,
                           two_p, alpha, alpha0, beta, -1.0 if descending else 1.0, lo, hi)
    return lo, hi


def reachable_bounds(copy: Int8Copy, query: np.ndarray, k: int, rows: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(scanned, lo, hi)``: the rows (of ``rows``, or of all) that may hold one of the ``k``
    nearest, with their key bounds (as ``key_bounds``), every other row ruled out by its
    group's bound; None when the copy has no groups or the query reaches most rows (then a
    straight scan is cheaper). ``candidates(lo, hi, k)`` on them picks as on a full scan."""
    g = copy.groups
    if g is None:
        return None
    q = np.asarray(query, dtype=np.float64) - copy.mean
    beta = float(np.sqrt(np.dot(q, q)))
    near = np.sqrt(((g.centroids - q) ** 2).sum(axis=1))  # |q' - C_c|
    # No member of c is nearer than near - R_c (less the roundings of r_i, y_i, q' and brute force).
    floor = np.maximum(near - g.reach - REACH_MARGIN * (near + g.reach + beta), 0.0)
    order = np.argsort(floor, kind="stable")
    allowed = None
    if rows is not None:
        allowed = np.zeros(len(copy.codes), dtype=bool)
        allowed[rows] = True
    seed, enough = _seed(g, order, k, allowed)  # the nearest groups holding k (allowed) rows
    if len(seed) < k:
        return None
    lo, hi = key_bounds(copy, query, seed)
    cut = float(np.partition(hi, k - 1)[k - 1])  # >= the k-th smallest true key
    rest = order[enough:][_floor_key(floor[order[enough:]], beta) <= cut]
    sizes = np.diff(g.starts)
    if 2 * int(sizes[rest].sum() + sizes[order[:enough]].sum()) > len(copy.codes):
        return None
    pos = _positions(g, rest)
    centre, radius = np.repeat(near[rest], np.diff(g.starts)[rest]), g.radius[pos]
    row_floor = np.maximum(centre - radius - REACH_MARGIN * (centre + radius + beta), 0.0)
    more = g.members[pos[_floor_key(row_floor, beta) <= cut]]
    if allowed is not None:
        more = more[allowed[more]]
    more_lo, more_hi = key_bounds(copy, query, more)
    return np.concatenate([seed, more]), np.concatenate([lo, more_lo]), np.concatenate([hi, more_hi])


def _floor_key(floor: np.ndarray, beta: float) -> np.ndarray:
    """A distance's lower bound as one on the key ``|y - q'|^2 - |q'|^2``, rounded down."""
    return floor * floor * (1 - REACH_MARGIN) - beta * beta * (1 + REACH_MARGIN)


def _seed(g: Groups, order: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The (allowed) rows of the first groups of ``order`` that hold ``k`` of them, and how
    many groups that took: taken 1, 2, 4, ... groups at a time, so a filter that lets few rows
    through costs a few gathers, not one per group."""
    parts, taken, count, step = [], 0, 0, 1
    while count < k and taken < len(order):
        part = _rows_of(g, order[taken : taken + step], allowed)
        parts.append(part)
        count, taken, step = count + len(part), taken + step, 2 * step
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return rows, taken


def _positions(g: Groups, which: np.ndarray) -> np.ndarray:
    """Positions in ``g.members`` of the groups ``which``, group after group."""
    if not len(which):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(g.starts[c], g.starts[c + 1]) for c in which])


def _rows_of(g: Groups, which: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    rows = g.members[_positions(g, which)]
    return rows if allowed is None else rows[allowed[rows]]


def candidates(lo: np.ndarray, hi: np.ndarray, k: int) -> np.ndarray:
    """Positions that may hold one of the ``k`` smallest true keys: every ``lo`` at or under
    the k-th smallest ``hi`` (k rows are surely at or under it). The k-th is found on a
    strided sample first (its k-th is an upper bound), then among the few rows under that."""
    if k >= len(hi):
        return np.arange(len(hi))
    stride = 16 if len(hi) >= 64 * k else 1
    sample = hi[::stride]
    if stride > 1:
        rough = np.partition(sample, k - 1)[k - 1]
        near = hi[hi <= rough]
        kth = np.partition(near, k - 1)[k - 1]
    else:
        kth = np.partition(sample, k - 1)[k - 1]
    return np.flatnonzero(lo <= kth)


class CompressedCache:
    """The int8 copy of one matrix, built once, in the background when asked not to wait:
    a search that finds it not ready yet scans float32 instead."""

    def __init__(self, values: np.ndarray, *, grouped: bool = True) -> None:
        self._values = values
        self._grouped = grouped
        self._copy: Int8Copy | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def get(self, *, wait: bool = True) -> Int8Copy | None:
        """The copy; with ``wait=False`` None until a background build is done."""
        if self._copy is not None:
            return self._copy
        if wait:
            self.join()
            with self._lock:
                if self._copy is None:
                    self._copy = compress(self._values, grouped=self._grouped)
            return self._copy
        with self._lock:
            if self._thread is None and self._copy is None:
                self._thread = threading.Thread(target=self._build, name="int8-copy", daemon=True)
                self._thread.start()
        return None

    def _build(self) -> None:
        try:
            copy = compress(self._values, grouped=self._grouped)
        except BaseException as exc:  # noqa: BLE001 - searches go on in float32; kept to report
            self.error = exc
            return
        with self._lock:
            self._copy = copy

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background build (benchmarks, tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def warm() -> Any:
    """Compile (or load) the kernels now, so the first compressed scan does not wait for it."""
    copy = compress(np.zeros((2, 4), dtype=np.float32))
    key_bounds(copy, np.zeros(4, dtype=np.float32))
    kernels = _kernels()
    if not kernels["scan"].signatures:  # the parallel one too
        lo, hi = np.empty(2), np.empty(2)
        kernels["scan"](copy.codes, np.zeros(4, dtype=np.float32), np.arange(2), copy.scale, copy.sq,
                        copy.code_norm, copy.resid, 1.0, 0.0, 0.0, 0.0, 1.0, lo, hi)
    return copy


__all__ = ["GROW", "Groups", "Int8Copy", "reachable_bounds", "CompressedCache", "MIN_CELLS", "candidates", "compress", "key_bounds", "warm"]
