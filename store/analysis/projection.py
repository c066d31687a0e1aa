"""Maps of a feature set: UMAP (2D or 3D) and PCA projections, cached on disk.

    proj = project(ws, "clip", dims=2, progress=lambda stage, fraction: ...)
    table = point_table(ws, "clip", proj.entity_ids, metadata_fields=["user.split"])
    # table rows line up with proj.coords: colour by any of its columns

The UMAP path: vectors -> rows normalised (cosine, correlation) -> PCA to ``PCA_DIMS`` when
the set holds more than ``PCA_ABOVE`` vectors -> k-nearest-neighbour graph -> umap-learn's
layout. The graph is exact, built here by blocked matrix products and top-k (PyTorch on a
CUDA GPU when there is one, else PyTorch or NumPy on the CPU), and handed to umap as
``precomputed_knn``: umap's own approximate search (NNDescent) is most of its run time.
Without a GPU above ``EXACT_CPU_MAX`` vectors (where NNDescent is faster than the exact
product on a CPU), and for metrics other than ``EXACT_METRICS``, the graph is umap-learn's
NNDescent, run here on every core (a seeded UMAP runs it on one). The layout is umap-learn's
on a CPU; on a CUDA GPU, ``torch_layout`` runs the same optimisation there as batched tensor
operations, after umap-learn has built the fuzzy graph and the spectral initialisation.

A projection is cached under ``<workspace>/cache/projections/<set id>/`` keyed by the set's
version and the parameters: a revisit loads it, and any write to the set bumps the version,
so a changed set is projected anew (older versions' files are removed then).

umap's numba kernels take tens of seconds to compile in a fresh process. They are cached in
``<workspace>/cache/numba`` (``configure_numba_cache``), with caching switched on for the
kernels that umap-learn does not mark cacheable, and ``warm_numba_cache`` loads or compiles
them in a background thread at app start. (pynndescent's NNDescent kernels are marked
uncacheable by pynndescent; only the NNDescent path above pays them, once per process.)
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import numbers
import operator
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InvalidInput
from ..records import FeatureSet

if TYPE_CHECKING:
    import pandas as pd

    from ..workspace import Workspace

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float], None]
METHODS = ("umap", "pca")
EXACT_METRICS = ("euclidean", "cosine", "correlation")  # graph built here, exactly
METRICS = EXACT_METRICS + ("manhattan", "chebyshev", "canberra", "braycurtis")
PCA_ABOVE = 30_000  # larger sets are reduced to PCA_DIMS before the kNN graph
PCA_DIMS = 50
EXACT_CPU_MAX = 50_000  # without a GPU, larger sets use NNDescent (faster there)
UMAP_SMALL = 4096  # below this umap-learn computes an exact graph itself for any metric
LAYOUT_PROGRESS_SECONDS = 0.2  # how often the layout reports its epochs
PIPELINE_VERSION = 1  # bump when a change alters coordinates: older cache files are then ignored
# Stages, in order, with the share of the overall fraction each one covers.
STAGES = {"load": (0.0, 0.05), "pca": (0.05, 0.15), "neighbors": (0.15, 0.5), "layout": (0.5, 0.97),
          "save": (0.97, 1.0), "done": (1.0, 1.0), "cached": (1.0, 1.0)}
STAGE_LABELS = {"load": "loading vectors", "pca": "reducing with PCA", "neighbors": "finding neighbours",
                "layout": "laying out the map", "save": "saving", "done": "done", "cached": "loaded from cache"}

# umap runs numba kernels in parallel; one fit at a time keeps concurrent sessions from
# oversubscribing the cores (and from re-entering numba's thread pool).
_FIT_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()
_NUMBA_GUARD = threading.Lock()


@dataclass
class Projection:
    """Coordinates of one feature set at one version: row i of ``coords`` is ``entity_ids[i]``."""

    feature_set_id: str
    version: int
    entity_ids: np.ndarray  # (n,) str
    coords: np.ndarray  # (n, dims) float32
    params: dict  # what was asked: method, dims (and n_neighbors, min_dist, metric, seed for umap)
    details: dict = field(default_factory=dict)  # how it was made: knn builder, PCA first, seconds
    from_cache: bool = False

    def to_frame(self) -> "pd.DataFrame":
        """``entity_id, x, y`` (and ``z`` in 3D), one row per point."""
        import pandas as pd

        frame = pd.DataFrame({"entity_id": self.entity_ids})
        for axis, column in zip("xyz", self.coords.T):
            frame[axis] = column
        return frame


# ---- parameters and the cache ---------------------------------------------------------------
def projection_params(
    method: str = "umap", dims: int = 2, n_neighbors: int = 15, min_dist: float = 0.1,
    metric: str = "euclidean", seed: int | None = 42,
) -> dict:
    """The checked, canonical parameters (the cache key); PCA ignores the UMAP ones."""
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {list(METHODS)}, got {method!r}")
    if _whole(dims) not in (2, 3):
        raise InvalidInput(f"dims must be 2 or 3, got {dims!r}")
    if method == "pca":
        return {"method": "pca", "dims": _whole(dims)}
    if _whole(n_neighbors) is None or not 2 <= n_neighbors <= 200:
        raise InvalidInput(f"n_neighbors must be a whole number from 2 to 200, got {n_neighbors!r}")
    if isinstance(min_dist, bool) or not isinstance(min_dist, numbers.Real) or not 0.0 <= min_dist <= 1.0:
        raise InvalidInput(f"min_dist must be a number from 0 to 1, got {min_dist!r}")
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if seed is not None and (_whole(seed) is None or not 0 <= seed < 2**32):
        raise InvalidInput(f"seed must be a whole number from 0 to 2**32-1, or None, got {seed!r}")
    return {"method": "umap", "dims": _whole(dims), "n_neighbors": _whole(n_neighbors), "min_dist": float(min_dist),
            "metric": metric, "seed": None if seed is None else _whole(seed)}


def _whole(value: Any) -> int | None:
    """``value`` as a Python int when it is a whole number (NumPy's included, bools not)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _cache_dir(ws: "Workspace", set_id: str) -> Path:
    # Set ids may be chosen by the caller; only a plain token becomes a folder name.
    safe = set_id if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", set_id) else hashlib.sha256(set_id.encode()).hexdigest()[:32]
    return ws.path / "cache" / "projections" / safe


def _cache_path(ws: "Workspace", set_id: str, version: int, params: dict) -> Path:
    key = json.dumps({**params, "pipeline": PIPELINE_VERSION}, sort_keys=True)
    return _cache_dir(ws, set_id) / f"v{version}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _load(path: Path, set_id: str, version: int) -> Projection | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return Projection(set_id, version, data["entity_ids"], data["coords"], meta["params"],
                              meta["details"], from_cache=True)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: drop it and compute again
        log.warning("ignoring unreadable projection cache %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def _save(path: Path, proj: Projection) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"params": proj.params, "details": proj.details})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, entity_ids=proj.entity_ids, coords=proj.coords, meta=np.array(meta))
    os.replace(tmp, path)  # readers see the old file or the whole new one
    for old in path.parent.glob("v*.npz"):  # other versions of the set can never be asked for again
        if not old.name.startswith(f"v{proj.version}-"):
            old.unlink(missing_ok=True)


def cached_projection(
    ws: "Workspace", feature_set: FeatureSet | str, *, method: str = "umap", dims: int = 2,
    n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean", seed: int | None = 42,
) -> Projection | None:
    """The cached projection of the set as it is now, or None when it must be computed."""
    params = projection_params(method, dims, n_neighbors, min_dist, metric, seed)
    fs = ws.feature_sets.resolve(feature_set)
    return _load(_cache_path(ws, fs.id, fs.version, params), fs.id, fs.version)


def clear_projection_cache(ws: "Workspace", feature_set: FeatureSet | str | None = None) -> int:
    """Delete cached projections (of one set, or all); return how many files went."""
    root = ws.path / "cache" / "projections"
    folder = _cache_dir(ws, ws.feature_sets.resolve(feature_set).id) if feature_set is not None else root
    files = list(folder.rglob("*.npz")) if folder.exists() else []
    for f in files:
        f.unlink(missing_ok=True)
    return len(files)


# ---- progress -----------------------------------------------------------------------------------
class _Progress:
    """Maps (stage, fraction of the stage) onto one overall fraction that never goes back."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self.callback = callback
        self.last = 0.0

    def __call__(self, stage: str, within: float = 0.0) -> None:
        if self.callback is None:
            return
        start, end = STAGES.get(stage, (self.last, self.last))
        self.last = max(self.last, min(1.0, start + (end - start) * min(max(within, 0.0), 1.0)))
        self.callback(stage, self.last)


class _EpochStream(io.TextIOBase):
    """A file for umap's tqdm bar (``bar_format='{n}/{total}'``): turns epochs into progress."""

    def __init__(self, report: _Progress) -> None:
        self.report = report

    def write(self, text: str) -> int:
        counts = re.findall(r"(\d+)/(\d+)", text)
        if counts:
            done, total = (int(v) for v in counts[-1])
            self.report("layout", done / max(total, 1))
        return len(text)


# ---- numba --------------------------------------------------------------------------------------
def configure_numba_cache(ws: "Workspace") -> Path:
    """Point numba's disk cache at ``<workspace>/cache/numba`` (unless ``NUMBA_CACHE_DIR`` is set).

    numba reads ``NUMBA_CACHE_DIR`` when it is imported and fixes each kernel's cache folder
    when the kernel is defined (when umap is imported), so this runs before umap is imported;
    if numba is already loaded its config is updated too. The folder is process-wide: the
    first workspace that projects hosts it."""
    with _NUMBA_GUARD:
        if not os.environ.get("NUMBA_CACHE_DIR"):
            folder = (ws.path / "cache" / "numba").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
        if "numba" in sys.modules:
            from numba.core import config

            config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
        return Path(os.environ["NUMBA_CACHE_DIR"])


def _enable_kernel_caching() -> None:
    """umap-learn defines its kernels with ``numba.njit()`` without ``cache=True``, so each new
    process compiled them again; switching caching on for them here (numba's own
    ``Dispatcher.enable_caching``, what ``cache=True`` calls) lets the disk cache serve them.
    pynndescent is left alone: it caches what it can and marks the rest ``cache=False``."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "umap" or name.startswith("umap.")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                obj.enable_caching()


def _import_umap(ws: "Workspace"):
    configure_numba_cache(ws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns about optional extras (tensorflow) at import
        import umap
    with _NUMBA_GUARD:
        _enable_kernel_caching()
    return umap


def warm_numba_cache(ws: "Workspace", *, background: bool = True) -> threading.Thread | None:
    """Load umap's kernels from the workspace's numba cache, compiling what is missing, with a
    tiny projection (seeded and parallel layouts both), so the first real map is not the one
    that waits. Runs in a daemon thread by default and returns it; ``background=False`` runs
    here and returns None. Errors are logged, never raised from the thread."""
    configure_numba_cache(ws)  # now, in the caller's thread, before anything imports numba

    def run() -> None:
        try:
            started = time.perf_counter()
            _import_umap(ws)
            rng = np.random.default_rng(0)
            values = (rng.normal(size=(4, 8)).repeat(50, axis=0) + rng.normal(scale=0.1, size=(200, 8))).astype(np.float32)
            for seed in (0, None):
                _umap_coords(values, projection_params(seed=seed), _Progress(None), n_epochs=20)
            log.info("numba kernels ready in %.1f s", time.perf_counter() - started)
        except Exception:
            log.exception("warming umap's numba kernels failed; the first map will compile them")
            if not background:
                raise

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name="featurelab-numba-warm", daemon=True)
    thread.start()
    return thread


# ---- the kNN graph ----------------------------------------------------------------------------
def _torch():
    try:
        import torch

        return torch
    except ImportError:
        return None


def knn_device() -> str:
    """Where the exact kNN graph is built: 'cuda', 'cpu' (PyTorch) or 'numpy'."""
    torch = _torch()
    if torch is None:
        return "numpy"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _block_rows(n: int, device: str) -> int:
    """Rows per block, so that one block of distances stays near 128 MB (1 GB on a GPU)."""
    budget = 2**28 if device == "cuda" else 2**25
    return int(min(8192, max(64, budget // max(n, 1))))


def exact_knn(
    values: np.ndarray, k: int, *, device: str | None = None, progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest neighbours (Euclidean) of every row among all rows, as umap wants
    them: ``(indices int64 (n, k), distances float32 (n, k))``, ascending, each row itself
    first at distance 0 (duplicates included). ``device``: 'cuda', 'cpu' or 'numpy'."""
    device = device or knn_device()
    n = len(values)
    k = min(k, n)
    # Centring keeps float32 products precise (distances do not change); the ranking key
    # |y|^2 - 2x.y omits |x|^2, constant along a row.
    data = np.ascontiguousarray(values - values.mean(axis=0, dtype=np.float64).astype(np.float32), dtype=np.float32)
    block = _block_rows(n, device)
    if device == "numpy":
        indices = _knn_blocks_numpy(data, k, block, progress)
    else:
        indices = _knn_blocks_torch(data, k, block, device, progress)
    return indices, _neighbour_distances(data, indices)


def _knn_blocks_torch(data: np.ndarray, k: int, block: int, device: str, progress) -> np.ndarray:
    torch = _torch()
    with torch.inference_mode():
        x = torch.from_numpy(data).to(device)
        sq = (x * x).sum(dim=1)
        out = torch.empty((len(data), k), dtype=torch.int64, device=device)
        for start in range(0, len(data), block):
            stop = min(start + block, len(data))
            key = torch.addmm(sq[None, :], x[start:stop], x.T, alpha=-2.0)
            rows = torch.arange(stop - start, device=device)
            key[rows, rows + start] = -torch.inf  # itself first, even among exact duplicates
            out[start:stop] = torch.topk(key, k, dim=1, largest=False, sorted=True).indices
            if progress:
                progress(stop / len(data))
        return out.cpu().numpy()


def _knn_blocks_numpy(data: np.ndarray, k: int, block: int, progress) -> np.ndarray:
    sq = np.einsum("ij,ij->i", data, data)
    out = np.empty((len(data), k), dtype=np.int64)
    for start in range(0, len(data), block):
        stop = min(start + block, len(data))
        key = sq[None, :] - 2.0 * (data[start:stop] @ data.T)
        rows = np.arange(stop - start)
        key[rows, rows + start] = -np.inf
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
        if progress:
            progress(stop / len(data))
    return out


def _neighbour_distances(data: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Distances measured directly (not from the product), re-sorted after the point itself."""
    dists = np.empty(indices.shape, dtype=np.float32)
    step = max(1, 2**24 // max(indices.shape[1] * data.shape[1], 1))  # ~64 MB of differences
    for start in range(0, len(data), step):
        rows = indices[start : start + step]
        diff = data[rows] - data[start : start + len(rows), None, :]
        dists[start : start + len(rows)] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(dists[:, 1:], axis=1, kind="stable") + 1
    indices[:, 1:] = np.take_along_axis(indices, order, axis=1)
    dists[:, 1:] = np.take_along_axis(dists, order, axis=1)
    dists[:, 0] = 0.0
    return dists


# ---- computing ------------------------------------------------------------------------------------
def _prepare(values: np.ndarray, metric: str) -> np.ndarray:
    """Rows as the metric sees them: cosine compares directions, correlation centred directions."""
    data = values.astype(np.float32, copy=True)
    if metric == "correlation":
        data -= data.mean(axis=1, keepdims=True)
    if metric in ("cosine", "correlation"):
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        data /= np.where(norms > 0, norms, 1.0)
    return data


def _pca(values: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n, d = values.shape
    out = np.zeros((n, dims), dtype=np.float32)
    keep = min(dims, n, d)
    if n >= 2 and keep >= 1:
        # Fixed random_state: the randomized solver (large sets) gives the same map every time.
        out[:, :keep] = PCA(n_components=keep, random_state=0).fit_transform(values.astype(np.float32))
    return out


def _umap_coords(
    values: np.ndarray, params: dict, report: _Progress, n_epochs: int | None = None,
    layout_device: str | None = None,
) -> tuple[np.ndarray, dict]:
    """UMAP coordinates. ``layout_device``: None runs umap-learn's own layout (numba, CPU); a
    torch device runs ``torch_layout`` there instead (the default on a CUDA GPU)."""
    import umap  # imported (with the cache configured) by the caller

    n, d = values.shape
    metric, dims = params["metric"], params["dims"]
    if n < dims + 3:
        raise InvalidInput(f"UMAP needs at least {dims + 3} vectors, this set has {n}; use method='pca'")
    data = _prepare(values, metric)
    details: dict[str, Any] = {"vectors": n, "size": d}
    if n > PCA_ABOVE and d > PCA_DIMS:
        report("pca", 0.0)
        data = _pca(data, PCA_DIMS)
        details["pca_first"] = PCA_DIMS
        report("pca", 1.0)
    k = min(params["n_neighbors"], n - 1)
    if layout_device is None and knn_device() == "cuda":
        layout_device = "cuda"
    report("neighbors", 0.0)
    started = time.perf_counter()
    knn, details["knn"] = _neighbour_graph(data, k, metric, params["seed"], report)
    details["knn_seconds"] = round(time.perf_counter() - started, 3)
    report("layout", 0.0)
    epochs = n_epochs if n_epochs is not None else (200 if n > 10_000 else 500)  # umap-learn's defaults
    reducer = umap.UMAP(
        n_neighbors=k, n_components=dims, min_dist=params["min_dist"], metric=metric,
        random_state=params["seed"], precomputed_knn=knn, n_epochs=0 if layout_device else epochs,
        tqdm_kwds={"disable": False, "file": _EpochStream(report), "bar_format": "{n}/{total}",
                   "mininterval": LAYOUT_PROGRESS_SECONDS},
    )
    with _FIT_LOCK, warnings.catch_warnings():
        # Expected and harmless here: seeded runs are single-threaded, no search index is kept
        # (this map never transforms new points), small graphs fall back to other inits.
        warnings.filterwarnings("ignore", module=r"umap|pynndescent|sklearn|numba")
        coords = reducer.fit_transform(data)  # with n_epochs=0: umap-learn's graph and spectral init only
    if layout_device:
        coords = torch_layout(reducer.graph_, coords, params["min_dist"], epochs, params["seed"],
                              device=layout_device, progress=lambda f: report("layout", f))
        details["layout"] = f"torch ({layout_device}) on umap-learn's graph and init"
    else:
        details["layout"] = "umap-learn, " + ("seeded (one thread)" if params["seed"] is not None else "parallel")
    return np.ascontiguousarray(coords, dtype=np.float32), details


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

    torch = _torch()
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
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # per-epoch tensors are small: extra CPU threads only wait on each other
        torch.set_num_threads(1)
    try:
        for epoch in range(n_epochs):
            _layout_epoch(torch, y, head, tail, every, every_negative, next_sample, next_negative, epoch, n_epochs,
                          a, b, generator)
            if progress and (epoch % 10 == 9 or epoch == n_epochs - 1):
                progress((epoch + 1) / n_epochs)
    finally:
        torch.set_num_threads(threads)
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


def _neighbour_graph(data: np.ndarray, k: int, metric: str, seed: int | None, report: _Progress) -> tuple[tuple, str]:
    """umap's ``precomputed_knn`` triple (all None: umap-learn builds it) and how it was built."""
    device = knn_device()
    if metric in EXACT_METRICS and (device == "cuda" or len(data) <= EXACT_CPU_MAX):
        indices, dists = exact_knn(data, k, device=device, progress=lambda f: report("neighbors", f))
        if metric != "euclidean":  # rows are unit vectors: cosine distance = |a - b|^2 / 2
            dists = dists * dists / 2.0
        return (indices, dists, None), f"exact ({device})"
    if len(data) >= UMAP_SMALL:
        return _nndescent(data, k, metric, seed), "NNDescent (parallel)"
    return (None, None, None), "umap-learn (exact, small set)"


def _nndescent(data: np.ndarray, k: int, metric: str, seed: int | None) -> tuple:
    """pynndescent's approximate graph, built as umap-learn builds it but on every core: a
    seeded UMAP would run it on one thread. Seeded, it is the same graph on a given machine."""
    from umap.umap_ import nearest_neighbors

    random_state = np.random.RandomState(seed) if seed is not None else None
    with _FIT_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"umap|pynndescent|numba")
        indices, dists, _ = nearest_neighbors(data, k, metric, {}, False, random_state, low_memory=True,
                                              use_pynndescent=True, n_jobs=-1)
    return indices, dists, None


def _key_lock(path: Path) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(str(path), threading.Lock())


def project(
    ws: "Workspace", feature_set: FeatureSet | str, *, method: str = "umap", dims: int = 2,
    n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean", seed: int | None = 42,
    progress: ProgressFn | None = None,
) -> Projection:
    """Project a feature set (a ``FeatureSet``, its name or id) to ``dims`` (2 or 3).

    ``method='umap'`` with umap-learn's ``n_neighbors``, ``min_dist`` and ``metric`` (one of
    ``METRICS``); ``seed`` makes the map reproducible (None: faster parallel layout, a new map
    each time). ``method='pca'`` is the quick look. The result is cached per set version and
    parameters, so asking again is instant until the set changes. ``progress(stage, fraction)``
    gets a stage name (keys of ``STAGE_LABELS``) and the overall fraction done, 0 to 1.
    """
    params = projection_params(method, dims, n_neighbors, min_dist, metric, seed)
    report = _Progress(progress)
    fs = ws.feature_sets.resolve(feature_set)
    hit = _load(_cache_path(ws, fs.id, fs.version, params), fs.id, fs.version)
    if hit is not None:
        report("cached", 1.0)
        return hit
    if method == "umap":
        _import_umap(ws)  # before anything below could pull numba in
    report("load", 0.0)
    matrix = ws.matrix(fs)  # vectors and the version they were read at
    path = _cache_path(ws, fs.id, matrix.version, params)
    with _key_lock(path):  # a second caller for the same map waits, then reads the first one's
        hit = _load(path, fs.id, matrix.version)
        if hit is not None:
            report("cached", 1.0)
            return hit
        if len(matrix) == 0:
            raise InvalidInput(f"feature set {fs.name!r} holds no vectors yet; add features, then project it")
        report("load", 1.0)
        started = time.perf_counter()
        if method == "pca":
            report("pca", 0.0)
            coords, details = _pca(matrix.values, dims), {"vectors": len(matrix), "size": matrix.dim}
        else:
            coords, details = _umap_coords(matrix.values, params, report)
        details["seconds"] = round(time.perf_counter() - started, 3)
        proj = Projection(fs.id, matrix.version, matrix.entity_ids.copy(), coords, params, details)
        report("save", 0.0)
        _save(path, proj)
    report("done", 1.0)
    return proj


# ---- the table a map colours by ----------------------------------------------------------------
def _chunks(ids: Sequence[str], size: int = 900) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _annotation_rows(ws: "Workspace", annotation_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """annotation id -> (item id, label)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(annotation_ids):
        marks = ",".join("?" * len(chunk))
        for row in ws.catalog.all(f"SELECT id, item_id, label FROM annotations WHERE id IN ({marks})", chunk):
            found[row[0]] = (row[1], row[2])
    return found


def _most_common_labels(ws: "Workspace", item_ids: Sequence[str]) -> dict[str, str]:
    """item id -> its most common annotation label (ties: alphabetical first)."""
    best: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(item_ids):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT item_id, label, COUNT(*) FROM annotations WHERE item_id IN ({marks}) GROUP BY item_id, label"
        for item_id, label, count in ws.catalog.all(sql, chunk):
            current = best.get(item_id)
            if current is None or (-count, label) < (-current[0], current[1]):
                best[item_id] = (count, label)
    return {item_id: label for item_id, (_, label) in best.items()}


def _item_rows(ws: "Workspace", item_ids: Sequence[str]) -> dict[str, tuple]:
    """item id -> (name, dir, kind, hidden, dataset id, metadata JSON), as plain rows: a map
    can have 100k points, where building Item records and 100+ IN queries took seconds. Many
    ids are read in one pass over the items table instead."""
    columns = "id, name, dir, kind, hidden, dataset_id, metadata"
    if len(item_ids) <= 5_000:
        rows = []
        for chunk in _chunks(item_ids):
            rows += ws.catalog.all(f"SELECT {columns} FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        return {r[0]: tuple(r[1:]) for r in rows}
    wanted = set(item_ids)
    with ws.catalog.lock:
        cursor = ws.catalog.conn.execute(f"SELECT {columns} FROM items")
        return {r[0]: tuple(r[1:]) for r in cursor if r[0] in wanted}


TABLE_COLUMNS = ("entity_id", "item_id", "name", "filename", "dataset", "dir", "kind", "hidden", "label")


def _metadata_column(field_path: str) -> str:
    """A metadata field's column: its name as given, unless a built-in column has that name."""
    taken = field_path in TABLE_COLUMNS or field_path in ("x", "y", "z", "distance")
    return f"metadata.{field_path}" if taken else field_path


def _metadata_value(metadata: dict, field_path: str) -> Any:
    """``user.split`` (or ``metadata.user.split``) inside an item's metadata; None when absent."""
    value: Any = metadata
    parts = field_path.split(".")
    if parts[0] == "metadata":
        parts = parts[1:]
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def point_table(
    ws: "Workspace", feature_set: FeatureSet | str, entity_ids: Sequence[str],
    metadata_fields: Sequence[str] = (), distances: Mapping[str, float] | None = None,
) -> "pd.DataFrame":
    """What a map colours and labels its points by: one row per entity id, in the given order
    (so row i matches ``projection.coords[i]``), with columns ``entity_id, item_id, name,
    filename, dataset, dir, kind, hidden, label``, one column per metadata field (dotted path
    such as ``user.split``, named as given, or ``metadata.<field>`` where that name is taken),
    and ``distance`` when ``distances`` (entity id ->
    distance, e.g. the last search's) is given, NaN for the others.

    ``label`` is an item's most common annotation label (None without annotations); for an
    annotation set, the annotation's own label. Entities deleted since the projection keep
    their row with empty fields."""
    import pandas as pd

    fs = ws.feature_sets.resolve(feature_set)
    ids = [str(e) for e in entity_ids]
    if fs.entity_type == "annotation":
        annotations = _annotation_rows(ws, ids)
        item_of = {eid: annotations[eid][0] for eid in ids if eid in annotations}
        label_of = {eid: annotations[eid][1] for eid in ids if eid in annotations}
    else:
        item_of = {eid: eid for eid in ids}
        label_of = _most_common_labels(ws, ids)
    items = _item_rows(ws, list(dict.fromkeys(item_of.values())))
    dataset_names = {d.id: d.name for d in ws.datasets.list()}
    columns: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
    fields = list(dict.fromkeys(metadata_fields))
    extra: dict[str, list] = {_metadata_column(f): [] for f in fields}
    for eid in ids:
        item_id = item_of.get(eid)
        row = items.get(item_id)
        columns["entity_id"].append(eid)
        if row is None:
            for name in TABLE_COLUMNS[1:]:
                columns[name].append(label_of.get(eid) if name == "label" else None)
            for values in extra.values():
                values.append(None)
            continue
        name, folder, kind, hidden, dataset_id, metadata = row
        columns["item_id"].append(item_id)
        columns["name"].append(name)
        columns["filename"].append(f"{folder}{name}" if folder.endswith("/") else f"{folder}/{name}")
        columns["dataset"].append(dataset_names.get(dataset_id))
        columns["dir"].append(folder)
        columns["kind"].append(kind)
        columns["hidden"].append(bool(hidden))
        columns["label"].append(label_of.get(eid))
        if fields:
            meta = json.loads(metadata)
            for field_path, values in zip(fields, extra.values()):
                values.append(_metadata_value(meta, field_path))
    table = pd.DataFrame({**columns, **extra})
    if distances is not None:
        table["distance"] = np.array([distances.get(eid, np.nan) for eid in ids], dtype=np.float64)
    return table


def map_frame(
    ws: "Workspace", projection: Projection, metadata_fields: Sequence[str] = (),
    distances: Mapping[str, float] | None = None,
) -> "pd.DataFrame":
    """A map ready to draw: ``entity_id, x, y`` (``z``) followed by ``point_table``'s columns."""
    table = point_table(ws, projection.feature_set_id, projection.entity_ids, metadata_fields, distances)
    return projection.to_frame().join(table.drop(columns="entity_id"))
