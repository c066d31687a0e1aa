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
on a CPU; on a CUDA GPU, ``torch_layout`` (``store.analysis.layout``) runs the same
optimisation there as batched tensor operations, after umap-learn has built the fuzzy graph
and the spectral initialisation. The exact graph is ``store.analysis.knn.exact_knn``; the
table a map colours by is ``store.analysis.tables.point_table``.

Above ``LANDMARKS_ABOVE`` vectors on a CPU (with an exact metric), the map is made through
landmarks (``landmark_coords``): the pipeline above runs on ``LANDMARKS`` random points, and
every other point is placed at the weighted mean of its nearest landmarks' places (found in
the PCA space by two small blocked scans, ``nearest_landmarks``). A million points then cost
a map of 50,000 plus those scans: under two minutes here, where umap-learn's own run took 55.

A projection is cached under ``<workspace>/cache/projections/<set id>/`` keyed by the set's
version, the parameters and the dataset scope (``dataset_id``: only that dataset's points are
projected, so a copy of the items in another dataset does not double the map): a revisit
loads it, and any write to the set bumps the version, so a changed set is projected anew
(older versions' files are removed then).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import InvalidInput
from ..records import FeatureSet
from .knn import exact_knn, knn_against, knn_device
from .layout import torch_layout
from .scope import scope_rows
from .tables import TABLE_COLUMNS, map_frame, point_table  # noqa: F401  (callers import them from here too)

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
# Without a GPU, larger sets are mapped through landmarks: UMAP of a random LANDMARKS of them,
# then every other point placed among its nearest landmarks (``landmark_coords``).
LANDMARKS_ABOVE = 200_000
LANDMARKS = 50_000
PLACE_COARSE_EVERY = 50  # a point's candidate landmarks: the PLACE_CANDIDATES nearest to its
PLACE_CANDIDATES = 256   # nearest coarse landmark (one in PLACE_COARSE_EVERY)
LAYOUT_PROGRESS_SECONDS = 0.2  # how often the layout reports its epochs
PIPELINE_VERSION = 1  # bump when a change alters coordinates: older cache files are then ignored
# Stages, in order, with the share of the overall fraction each one covers.
STAGES = {"load": (0.0, 0.05), "pca": (0.05, 0.15), "neighbors": (0.15, 0.5), "layout": (0.5, 0.9),
          "place": (0.9, 0.97), "save": (0.97, 1.0), "done": (1.0, 1.0), "cached": (1.0, 1.0)}
STAGE_LABELS = {"load": "loading vectors", "pca": "reducing with PCA", "neighbors": "finding neighbours",
                "layout": "laying out the map", "place": "placing the points among the landmarks",
                "save": "saving", "done": "done", "cached": "loaded from cache"}

# umap runs numba kernels in parallel; one fit at a time keeps concurrent sessions from
# oversubscribing the cores (and from re-entering numba's thread pool).
_FIT_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()
_NUMBA_GUARD = threading.Lock()
# Projections read from disk, kept in memory (keyed by file, mtime and size): every rerun of
# the Map page asks again, and a 1M-point file takes a second to read and decompress.
LOADED_KEPT = 3
_LOADED: dict[tuple, Projection] = {}
_LOADED_GUARD = threading.Lock()


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


def _cache_path(ws: "Workspace", set_id: str, version: int, params: dict, dataset_id: str | None = None) -> Path:
    scope = {} if dataset_id is None else {"dataset": dataset_id}  # unscoped keys stay as they were
    key = json.dumps({**params, **scope, "pipeline": PIPELINE_VERSION}, sort_keys=True)
    return _cache_dir(ws, set_id) / f"v{version}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _load(path: Path, set_id: str, version: int) -> Projection | None:
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with _LOADED_GUARD:
            kept = _LOADED.pop(key, None)
            if kept is not None:
                _LOADED[key] = kept  # most recent last
                return replace(kept, params=dict(kept.params), details=dict(kept.details))
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            proj = Projection(set_id, version, data["entity_ids"], data["coords"], meta["params"],
                              meta["details"], from_cache=True)
        for array in (proj.entity_ids, proj.coords):
            array.flags.writeable = False  # shared by every later load of this file
        with _LOADED_GUARD:
            _LOADED[key] = proj
            while len(_LOADED) > LOADED_KEPT:
                _LOADED.pop(next(iter(_LOADED)))
        return replace(proj, params=dict(proj.params), details=dict(proj.details))
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
    dataset_id: str | None = None,
) -> Projection | None:
    """The cached projection of the set (of one dataset's points) as it is now, or None
    when it must be computed."""
    params = projection_params(method, dims, n_neighbors, min_dist, metric, seed)
    fs = ws.feature_sets.resolve(feature_set)
    return _load(_cache_path(ws, fs.id, fs.version, params, dataset_id), fs.id, fs.version)


def clear_projection_cache(ws: "Workspace", feature_set: FeatureSet | str | None = None) -> int:
    """Delete cached projections (of one set, or all); return how many files went."""
    root = ws.path / "cache" / "projections"
    folder = _cache_dir(ws, ws.feature_sets.resolve(feature_set).id) if feature_set is not None else root
    files = list(folder.rglob("*.npz")) if folder.exists() else []
    for f in files:
        f.unlink(missing_ok=True)
    return len(files)


# ---- progress -----------------------------------------------------------------------------------
class Progress:
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

    def __init__(self, report: Progress) -> None:
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


def import_umap(ws: "Workspace") -> Any:
    """umap, imported with the workspace's numba cache configured and its kernels cacheable."""
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
            import_umap(ws)
            rng = np.random.default_rng(0)
            values = (rng.normal(size=(4, 8)).repeat(50, axis=0) + rng.normal(scale=0.1, size=(200, 8))).astype(np.float32)
            for seed in (0, None):
                umap_coords(values, projection_params(seed=seed), Progress(None), n_epochs=20)
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


def pca_coords(values: np.ndarray, dims: int) -> np.ndarray:
    """The first ``dims`` principal components (columns of zeros where there are fewer)."""
    from sklearn.decomposition import PCA

    n, d = values.shape
    out = np.zeros((n, dims), dtype=np.float32)
    keep = min(dims, n, d)
    if n >= 2 and keep >= 1:
        # Fixed random_state: the randomized solver (large sets) gives the same map every time.
        out[:, :keep] = PCA(n_components=keep, random_state=0).fit_transform(values.astype(np.float32))
    return out


def umap_coords(
    values: np.ndarray, params: dict, report: Progress, n_epochs: int | None = None,
    layout_device: str | None = None, landmarks: int | None = None,
) -> tuple[np.ndarray, dict]:
    """UMAP coordinates. ``layout_device``: None runs umap-learn's own layout (numba, CPU); a
    torch device runs ``torch_layout`` there instead (the default on a CUDA GPU).
    ``landmarks``: lay out that many random points and place the rest among them
    (``landmark_coords``; n or more: lay out all); None: ``LANDMARKS`` above
    ``LANDMARKS_ABOVE`` points on a CPU with an exact metric, else all."""
    n, d = values.shape
    metric, dims = params["metric"], params["dims"]
    if n < dims + 3:
        raise InvalidInput(f"UMAP needs at least {dims + 3} vectors, this set has {n}; use method='pca'")
    data = _prepare(values, metric)
    details: dict[str, Any] = {"vectors": n, "size": d}
    if n > PCA_ABOVE and d > PCA_DIMS:
        report("pca", 0.0)
        data = pca_coords(data, PCA_DIMS)
        details["pca_first"] = PCA_DIMS
        report("pca", 1.0)
    if layout_device is None and knn_device() == "cuda":
        layout_device = "cuda"
    if landmarks is None and layout_device is None and n > LANDMARKS_ABOVE and metric in EXACT_METRICS:
        landmarks = LANDMARKS
    if landmarks is not None and landmarks < n:
        coords, how = landmark_coords(data, params, report, landmarks, n_epochs, layout_device)
    else:
        coords, how = _umap_layout(data, params, report, n_epochs, layout_device)
    return coords, details | how


def landmark_coords(
    data: np.ndarray, params: dict, report: Progress, landmarks: int, n_epochs: int | None = None,
    layout_device: str | None = None,
) -> tuple[np.ndarray, dict]:
    """A map of many points at the cost of a map of ``landmarks``: UMAP lays out a random
    sample of that many (seeded by ``params['seed']``), then each other point goes to the
    weighted mean of its ``n_neighbors`` nearest landmarks' places (``nearest_landmarks``,
    weighted as UMAP weighs a neighbourhood: the nearest fully, the farther falling off by
    the row's mean extra distance). ``data`` as UMAP sees it (prepared, PCA)."""
    n = len(data)
    chosen = np.sort(np.random.default_rng(params["seed"]).choice(n, landmarks, replace=False))
    placed_coords, details = _umap_layout(data[chosen], params, report, n_epochs, layout_device)
    report("place", 0.0)
    started = time.perf_counter()
    rest = np.ones(n, dtype=bool)
    rest[chosen] = False
    rest = np.flatnonzero(rest)
    k = min(params["n_neighbors"], landmarks)
    indices, dists = nearest_landmarks(data[rest], data[chosen], k, progress=lambda f: report("place", f))
    coords = np.empty((n, placed_coords.shape[1]), dtype=np.float32)
    coords[chosen] = placed_coords
    coords[rest] = _among(placed_coords, indices, dists)
    details.update(landmarks=landmarks, place_seconds=round(time.perf_counter() - started, 3))
    return coords, details


def nearest_landmarks(
    points: np.ndarray, marks: np.ndarray, k: int, progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points``, k of the nearest ``marks`` (indices, distances, ascending): exact
    among the ``PLACE_CANDIDATES`` marks nearest to the point's nearest coarse mark (one mark in
    ``PLACE_COARSE_EVERY``). Two small scans instead of points x marks: 1M x 50k x 50 would be
    most of an hour of products on two cores, this is a minute."""
    k = min(k, len(marks))
    coarse = marks[:: PLACE_COARSE_EVERY]  # marks are a random sample: so is every n-th of them
    candidates, _ = knn_against(coarse, marks, max(k, min(PLACE_CANDIDATES, len(marks))))
    cell = knn_against(points, coarse, 1, progress=(lambda f: progress(0.5 * f)) if progress else None)[0][:, 0]
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(len(coarse) + 1))
    indices = np.empty((len(points), k), dtype=np.int64)
    dists = np.empty((len(points), k), dtype=np.float32)
    for c in range(len(coarse)):
        rows = order[bounds[c] : bounds[c + 1]]
        if len(rows):
            near, dists[rows] = knn_against(points[rows], marks[candidates[c]], k)
            indices[rows] = candidates[c][near]
        if progress and c % 50 == 49:
            progress(0.5 + 0.5 * (c + 1) / len(coarse))
    return indices, dists


def _among(coords: np.ndarray, indices: np.ndarray, dists: np.ndarray) -> np.ndarray:
    """Each row's place: the weighted mean of ``coords[indices]`` (weights 1 for the nearest,
    exp(-extra / mean extra) beyond it)."""
    extra = dists - dists[:, :1]
    scale = extra.mean(axis=1, keepdims=True)
    weights = np.exp(-extra / np.where(scale > 0, scale, 1.0))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("ij,ijk->ik", weights, coords[indices]).astype(np.float32)


def _umap_layout(
    data: np.ndarray, params: dict, report: Progress, n_epochs: int | None, layout_device: str | None,
) -> tuple[np.ndarray, dict]:
    """The kNN graph and the layout of ``data`` (prepared, reduced): coordinates and how."""
    import umap  # imported (with the cache configured) by the caller

    n = len(data)
    metric, dims = params["metric"], params["dims"]
    k = min(params["n_neighbors"], n - 1)
    details: dict[str, Any] = {}
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


def _neighbour_graph(data: np.ndarray, k: int, metric: str, seed: int | None, report: Progress) -> tuple[tuple, str]:
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


def project_values(values: np.ndarray, params: dict, report: Progress) -> tuple[np.ndarray, dict]:
    """The pipeline on an array (``values`` (n, d), ``params`` from ``projection_params``):
    ``(coords, details)``. For UMAP, ``import_umap`` first to use a workspace's numba cache."""
    if params["method"] == "pca":
        report("pca", 0.0)
        return pca_coords(values, params["dims"]), {"vectors": len(values), "size": int(values.shape[1])}
    return umap_coords(values, params, report)


def _key_lock(path: Path) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(str(path), threading.Lock())


def project(
    ws: "Workspace", feature_set: FeatureSet | str, *, method: str = "umap", dims: int = 2,
    n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean", seed: int | None = 42,
    progress: ProgressFn | None = None, dataset_id: str | None = None,
) -> Projection:
    """Project a feature set (a ``FeatureSet``, its name or id) to ``dims`` (2 or 3).
    ``dataset_id``: project only that dataset's vectors (None: every dataset's), so copies
    of the same items in another dataset neither crowd the map nor fill the kNN graph.

    ``method='umap'`` with umap-learn's ``n_neighbors``, ``min_dist`` and ``metric`` (one of
    ``METRICS``); ``seed`` makes the map reproducible (None: faster parallel layout, a new map
    each time). ``method='pca'`` is the quick look. The result is cached per set version and
    parameters (and scope), so asking again is instant until the set changes. ``progress(stage, fraction)``
    gets a stage name (keys of ``STAGE_LABELS``) and the overall fraction done, 0 to 1.
    """
    params = projection_params(method, dims, n_neighbors, min_dist, metric, seed)
    report = Progress(progress)
    fs = ws.feature_sets.resolve(feature_set)
    hit = _load(_cache_path(ws, fs.id, fs.version, params, dataset_id), fs.id, fs.version)
    if hit is not None:
        report("cached", 1.0)
        return hit
    if method == "umap":
        import_umap(ws)  # before anything below could pull numba in
    report("load", 0.0)
    matrix = ws.matrix(fs)  # vectors and the version they were read at
    path = _cache_path(ws, fs.id, matrix.version, params, dataset_id)
    with _key_lock(path):  # a second caller for the same map waits, then reads the first one's
        hit = _load(path, fs.id, matrix.version)
        if hit is not None:
            report("cached", 1.0)
            return hit
        rows = scope_rows(ws, fs, matrix.entity_ids, dataset_id=dataset_id)
        if len(rows) == 0:
            where = "" if dataset_id is None else " in this dataset"
            raise InvalidInput(f"feature set {fs.name!r} holds no vectors{where} yet; add features, then project it")
        whole = len(rows) == len(matrix)
        report("load", 1.0)
        started = time.perf_counter()
        coords, details = project_values(matrix.values if whole else matrix.values[rows], params, report)
        details["seconds"] = round(time.perf_counter() - started, 3)
        if dataset_id is not None:
            details["dataset_id"] = dataset_id
        proj = Projection(fs.id, matrix.version, matrix.entity_ids[rows].copy(), coords, params, details)
        report("save", 0.0)
        _save(path, proj)
    report("done", 1.0)
    return proj
