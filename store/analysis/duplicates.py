"""Near-duplicates and outliers of a feature set, exact, and hiding duplicates undoably.

    dups = duplicate_groups(ws, "clip", threshold=0.15)        # groups of >= 2, largest first
    done = hide_duplicates(ws, dups, rule="first")              # keep one per group, hide the rest
    undo(ws, done.action_id)                                    # un-hide exactly what it hid
    nn = nearest_neighbor_distances(ws, "clip")                 # for a histogram under a slider
    top = outliers(ws, "clip", k=5, top=20)                     # farthest from their 5th neighbour
    scores = outlier_scores(ws, "clip", k=5)                    # entity id -> score, for the map

On plain arrays (a Chroma collection, a selection): ``duplicate_groups_of_values(values, t)``
(lists of row indices), ``knn_distances_of_values(values, k)`` and
``kth_neighbor_distances(values, k)``.

Distances are true Euclidean distances, and the answers equal brute force in float64
(``sqrt(sum((a - b) ** 2))`` per pair, as ``store.search.exact`` measures). The work is blocked
float32 matrix products in PyTorch (a CUDA GPU when present; the scans of
``store.analysis.knn``), on data centred on its mean and scaled by a power of two (precise
products, no overflow). Every pair whose float32
value a rigorous error bound cannot place on one side of the threshold (or of the k-th
neighbour) is measured again in float64. Near-duplicate groups are the connected components
of the graph "distance <= threshold" (single linkage): the range search covers each pair
once (the upper triangle), skips rows whose nearest candidate is beyond the threshold, and
merges components as it goes, so even a threshold that joins everything stays in memory.

Hiding is the only change made to the workspace: ``items.hidden = 1``, recorded per action
in the catalog's ``hide_actions`` table so that ``undo`` un-hides exactly the items that
action hid (not those hidden before, nor those a later action took over). For annotation
sets the group members are annotations and hiding hides their items (never an item that
holds a kept annotation).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import operator
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..catalog import hide_items
from ..errors import InvalidInput, NotFound
from ..records import FeatureSet
from . import knn
from .scope import scope_rows
from .tables import annotation_rows

if TYPE_CHECKING:
    from ..workspace import Workspace

U32 = 2.0**-24  # float32 unit roundoff
CHUNK_ELEMENTS = 1 << 22  # candidate masks are extracted in pieces of at most this many cells
MERGE_EDGES = 1 << 21  # merge components once this many edges wait (bounds memory when dense)
REMEASURE_PAIRS = 1 << 16  # pairs measured in float64 per NumPy call
KEEP_RULES = ("first", "largest", "manual")
APPROX_NEIGHBOURS = 10  # candidates per entity from the ANN index in approximate mode
KEEP_LABELS = {"first": "first uploaded", "largest": "largest image", "manual": "by hand"}


# ---- checks ---------------------------------------------------------------------------------------
def _as_matrix(values: Any) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"values must be a 2-D array of numbers: {exc}") from exc
    if x.ndim != 2:
        raise InvalidInput(f"values must be a 2-D array (rows = vectors), got {x.ndim} dimension(s)")
    if x.size and not np.isfinite(x).all():
        raise InvalidInput("values hold NaN or infinity; fix or drop those rows first")
    return np.ascontiguousarray(x)


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold) \
            or threshold < 0:
        raise InvalidInput(f"the distance threshold must be a finite number >= 0, got {threshold!r}")
    return float(threshold)


def _check_k(given: Any, n: int) -> int:
    try:
        k = None if isinstance(given, bool) else operator.index(given)
    except TypeError:
        k = None
    if k is None or k < 1:
        raise InvalidInput(f"k must be a whole number >= 1, got {given!r}")
    if k > n - 1:
        raise InvalidInput(f"k={k} needs at least {k + 1} vectors, there are {n}; pick a smaller k")
    return k


# ---- float helpers --------------------------------------------------------------------------------
def _f32_up(v: np.ndarray) -> np.ndarray:
    """float64 -> the nearest float32 at or above (comparisons stay on the safe side)."""
    return _f32_toward(v, np.inf)


def _f32_down(v: np.ndarray) -> np.ndarray:
    return _f32_toward(v, -np.inf)


def _f32_toward(v: np.ndarray, toward: float) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        f = v.astype(np.float32)
        wide = f.astype(np.float64)
        off = wide < v if toward > 0 else wide > v
    f[off] = np.nextafter(f[off], np.float32(toward))
    return f


def pair_distances(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference: true Euclidean distance of rows ``a[i]`` and ``b[i]``, in float64, as
    ``store.search.exact.exact_distances`` measures it."""
    out = np.empty(len(a), dtype=np.float64)
    step = max(1, REMEASURE_PAIRS * 64 // max(values.shape[1], 1))
    for start in range(0, len(a), step):
        diff = values[a[start : start + step]].astype(np.float64) - values[b[start : start + step]].astype(np.float64)
        out[start : start + step] = np.sqrt((diff * diff).sum(axis=1))
    return out


@dataclass
class _Prepared:
    """Rows centred on their mean and scaled by a power of two (distances scale exactly), as
    float32 on the device, with a per-row bound on the error of a float32 squared distance."""

    data: Any  # torch (n, d) float32
    sq: Any  # torch (n,) float32: squared norms of data rows
    sq64: np.ndarray  # the same in float64
    err: np.ndarray  # float64 per row i: |float32 (|y_j|^2 - 2 y_i.y_j) + |y_i|^2 - true d_ij^2| <= err[i]
    scale: float
    device: str


def _prepare(x: np.ndarray, device: str) -> _Prepared:
    torch = knn.import_torch()
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    step = max(1, (1 << 22) // max(d, 1))
    norms = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        c = x[start : start + step].astype(np.float64) - mean
        norms[start : start + step] = np.sqrt(np.einsum("ij,ij->i", c, c))
    top = float(norms.max()) if n else 0.0
    scale = 2.0 ** math.floor(math.log2(top)) if top > 0 else 1.0
    data = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, step):
        data[start : start + step] = (x[start : start + step].astype(np.float64) - mean) / scale
    for start in range(0, n, step):  # norms of the rounded rows, which the products see
        c = data[start : start + step].astype(np.float64)
        norms[start : start + step] = np.sqrt(np.einsum("ij,ij->i", c, c))
    top = float(norms.max()) if n else 0.0
    # Products and sums of d terms in float32 (gamma_d), the final additions, and the
    # rounding of the centred rows themselves, with room to spare; plus an absolute term for
    # any subnormal results.
    err = (d + 8) * 2 * U32 * (norms + top) ** 2 + (d + 8) * 2.0**-100
    t = torch.from_numpy(data).to(device)
    return _Prepared(t, (t * t).sum(dim=1), norms * norms, err, scale, device)


def _device(device: str | None) -> str:
    device = knn.knn_device(device)
    if device == "numpy":
        raise InvalidInput("near-duplicates and outliers need PyTorch; install torch")
    return device


# ---- connected components ------------------------------------------------------------------------
def _merge(rep: np.ndarray, a: list[np.ndarray], b: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Components after adding edges a-b to the forest ``rep`` (each node -> its component's
    smallest node); returns the new ``rep`` and the number of components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(rep)
    rows = np.concatenate([*a, np.arange(n)])
    cols = np.concatenate([*b, rep])
    graph = coo_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, n)).tocsr()
    count, comp = connected_components(graph, directed=False)
    _, first = np.unique(comp, return_index=True)  # nodes are numbered in order: the first is the smallest
    return first[comp].astype(np.int64), int(count)


def _components(rep: np.ndarray) -> list[np.ndarray]:
    """Groups of >= 2 rows sharing a representative: largest first, then by smallest row."""
    order = np.argsort(rep, kind="stable")
    bounds = np.flatnonzero(np.diff(rep[order])) + 1
    groups = [g for g in np.split(order, bounds) if len(g) >= 2]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return groups


# ---- near-duplicates on an array ------------------------------------------------------------------
def duplicate_groups_of_values(
    values: np.ndarray, threshold: float, *, device: str | None = None,
) -> list[np.ndarray]:
    """Groups of rows of ``values`` (n, d) linked by distance <= ``threshold`` (true
    Euclidean; connected components, single linkage), only groups of two or more: a list of
    int64 arrays of row indices, each ascending, largest group first (ties: smallest first
    row). Equal to brute force in float64. ``device``: 'cuda' or 'cpu' (default: CUDA when
    available)."""
    t = _check_threshold(threshold)
    x = _as_matrix(values)
    n = len(x)
    if n < 2:
        return []
    rep = _range_components(x, t, _device(device))
    return _components(rep)


def _range_components(x: np.ndarray, t: float, device: str) -> np.ndarray:
    torch = knn.import_torch()
    n = len(x)
    with knn.exact_matmul(torch):
        p = _prepare(x, device)
        ts = t / p.scale
        t2 = ts * ts
        # Per row i the bounds on the float32 key |y_j|^2 - 2 y_i.y_j (|y_i|^2 left out).
        hi = _f32_up(t2 - p.sq64 + p.err)
        lo = _f32_down(t2 - p.sq64 - p.err)
        hi_t = torch.from_numpy(hi).to(device)
        rep = np.arange(n, dtype=np.int64)
        labels = None  # rep on the device, once anything was merged
        pending_a: list[np.ndarray] = []
        pending_b: list[np.ndarray] = []
        waiting = 0
        block = min(knn.block_rows(n, device), n)
        for a, b, kv in knn.range_pairs(torch, p.data, p.sq, hi_t, block, CHUNK_ELEMENTS, lambda: labels):
            keep = kv <= lo[a]
            border = np.flatnonzero(~keep)
            if len(border):
                keep[border] = pair_distances(x, a[border], b[border]) <= t
            pending_a.append(a[keep])
            pending_b.append(b[keep])
            waiting += int(keep.sum())
            if waiting >= MERGE_EDGES:
                rep, count = _merge(rep, pending_a, pending_b)
                pending_a, pending_b, waiting = [], [], 0
                if count == 1:
                    return rep
                labels = torch.from_numpy(rep).to(device)
        if waiting:
            rep, _ = _merge(rep, pending_a, pending_b)
        return rep


# ---- k nearest neighbours on an array -------------------------------------------------------------
def knn_distances_of_values(
    values: np.ndarray, k: int, *, device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest other rows of every row of ``values`` (n, d): ``(distances (n, k)
    float64, indices (n, k) int64)``, ascending by distance, ties by index. A row never counts
    as its own neighbour; an identical row does (at distance 0). Equal to brute force in
    float64. Needs 1 <= k <= n - 1."""
    x = _as_matrix(values)
    n = len(x)
    k = _check_k(k, n)
    device = _device(device)  # before torch: says so where it is missing
    torch = knn.import_torch()
    take = min(k + 1, n - 1)  # one more than asked, to see whether the k-th is clear of the rest
    with knn.exact_matmul(torch):
        p = _prepare(x, device)
        best_v, best_i = knn.top_lists(torch, p.data, p.sq, take, min(knn.block_rows(n, device), n))
        kth = best_v[:, k - 1].double().cpu().numpy()
        limit = _f32_up(kth + 2.0 * p.err)
        if take == n - 1:  # every other row is in each list: all are candidates
            a_list = [np.repeat(np.arange(n), take)]
            b_list = [best_i.cpu().numpy().ravel()]
            unclear = np.zeros(0, dtype=np.int64)
        else:
            clear = best_v[:, k].cpu().numpy() > limit
            a_list = [np.repeat(np.flatnonzero(clear), k)]
            b_list = [best_i[torch.from_numpy(clear).to(device), :k].cpu().numpy().ravel()]
            unclear = np.flatnonzero(~clear)
        # near-ties at the k-th: every candidate
        a_extra, b_extra = knn.range_rows(torch, p.data, p.sq, unclear, limit, knn.block_rows(n, device),
                                          CHUNK_ELEMENTS)
    a = np.concatenate([*a_list, a_extra])
    b = np.concatenate([*b_list, b_extra])
    dist = pair_distances(x, a, b)
    order = np.lexsort((b, dist, a))
    a, b, dist = a[order], b[order], dist[order]
    pick = np.searchsorted(a, np.arange(n))[:, None] + np.arange(k)
    return dist[pick], b[pick]


def kth_neighbor_distances(values: np.ndarray, k: int, *, device: str | None = None) -> np.ndarray:
    """Each row's exact distance (float64) to its k-th nearest other row: an outlier score."""
    return knn_distances_of_values(values, k, device=device)[0][:, k - 1]


def nearest_neighbor_distances_of_values(values: np.ndarray, *, device: str | None = None) -> np.ndarray:
    """Each row's exact distance (float64) to its nearest other row."""
    return kth_neighbor_distances(values, 1, device=device)


def suggest_threshold(nn_distances: np.ndarray) -> float:
    """A threshold where duplicates seem to end: the middle (geometric) of the widest gap,
    at least 3-fold, among the smaller 95% of the positive nearest-neighbour distances; with
    no such gap, the 2nd percentile of them (the closest pairs). 0.0 only when no distance
    is positive (no two distinct vectors to tell apart). Exact copies (distance 0) are left
    out: they are duplicates at any threshold, and a set with many (every item of a saved
    selection seen beside its original) would otherwise hide the gap."""
    d = np.sort(np.asarray(nn_distances, dtype=np.float64))
    d = d[np.isfinite(d) & (d > 0)]
    if len(d) == 0:
        return 0.0
    if len(d) < 3:
        return float(d[0])
    typical = float(np.median(d))
    low = np.maximum(d[: max(2, int(len(d) * 0.95))], typical * 1e-3)
    gaps = np.diff(np.log(low))
    widest = int(np.argmax(gaps))
    if gaps[widest] >= math.log(3.0):
        return float(math.sqrt(low[widest] * low[widest + 1]))
    return float(max(np.quantile(d, 0.02), d[0]))


def distinct_nearest_distances(values: np.ndarray, nn_distances: np.ndarray) -> np.ndarray:
    """Each distinct vector's distance to its nearest *other distinct* vector: the
    nearest-neighbour distances with exact copies merged first. Equal to ``nn_distances``
    when no two rows are identical; otherwise (copies of a dataset in view beside it) the
    distances the copies hid, for ``suggest_threshold``."""
    if not len(nn_distances) or float(np.min(nn_distances)) > 0:
        return nn_distances
    distinct = np.unique(np.ascontiguousarray(values), axis=0)
    if len(distinct) < 2:
        return np.zeros(0)
    return knn_distances_of_values(distinct, 1)[0][:, 0]


# ---- the workspace: which rows, and a small cache ------------------------------------------------
_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 6


@dataclass
class _Scope:
    fs: FeatureSet
    version: int
    entity_ids: np.ndarray  # (n,) of the rows considered
    values: np.ndarray  # (n, d) float32
    key: tuple  # cache key: workspace, set, version, which rows


def _rows(ws: "Workspace", fs: FeatureSet, include_hidden: bool, dataset_id: str | None):
    """The set's vectors in memory, the rows considered, and a digest of which rows those are."""
    m = ws.matrix(fs)
    rows = scope_rows(ws, fs, m.entity_ids, dataset_id=dataset_id, include_hidden=include_hidden)
    return m, rows, hashlib.sha1(rows.astype(np.int64).tobytes()).hexdigest()[:16]


def _scope(ws: "Workspace", feature_set: FeatureSet | str, include_hidden: bool,
           dataset_id: str | None = None) -> _Scope:
    fs = ws.feature_sets.resolve(feature_set)
    m, rows, digest = _rows(ws, fs, include_hidden, dataset_id)
    values = m.values if len(rows) == len(m) else m.values[rows]
    return _Scope(fs, m.version, m.entity_ids[rows], values, (str(ws.path.resolve()), fs.id, m.version, digest))


def state_token(ws: "Workspace", feature_set: FeatureSet | str, include_hidden: bool = False,
                dataset_id: str | None = None) -> str:
    """Changes whenever a result of this module for the set would: its version, and which of
    its entities are in scope (the dataset, hidden ones). For caches (the app's ``st.cache_data``)."""
    m, _, digest = _rows(ws, ws.feature_sets.resolve(feature_set), include_hidden, dataset_id)
    return f"{m.version}-{digest}"


def clear_cache() -> None:
    """Forget the nearest-neighbour distances kept in memory (a benchmark starts from scratch)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached_knn(scope: _Scope, k: int, compute: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    with _CACHE_LOCK:
        for (key, kk), hit in _CACHE.items():
            if key == scope.key and kk >= k:
                _CACHE.move_to_end((key, kk))
                return hit[0][:, :k], hit[1][:, :k]
    if not compute:
        return None
    dists, idx = knn_distances_of_values(scope.values, k)
    with _CACHE_LOCK:
        _CACHE[(scope.key, k)] = (dists, idx)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return dists, idx


def _item_ids(ws: "Workspace", fs: FeatureSet, entity_ids: Sequence[str]) -> list[str | None]:
    if fs.entity_type != "annotation":
        return list(entity_ids)
    found = annotation_rows(ws, list(entity_ids))
    return [found[e][0] if e in found else None for e in entity_ids]


# ---- near-duplicates in a feature set -------------------------------------------------------------
@dataclass
class DuplicateGroup:
    """Entities within the threshold of each other (through a chain of such links)."""

    entity_ids: list[str]  # ascending
    item_ids: list[str]  # the item of each entity (the entity itself in an item set)
    distances: list[float]  # each member's exact distance to its nearest other member

    @property
    def size(self) -> int:
        return len(self.entity_ids)

    @property
    def min_distance(self) -> float:
        return min(self.distances)

    def to_json(self) -> dict:
        return {"entityIds": self.entity_ids, "itemIds": self.item_ids, "distances": self.distances,
                "size": self.size, "minDistance": self.min_distance}


@dataclass
class Duplicates:
    """The near-duplicate groups of one feature set at one version and threshold."""

    feature_set_id: str
    feature_set_name: str
    entity_type: str
    version: int
    threshold: float
    entities: int  # how many vectors were compared (hidden items' left out unless asked)
    groups: list[DuplicateGroup] = field(default_factory=list)
    dataset_id: str | None = None  # the dataset compared within; None: all datasets (copies pair up)

    @property
    def redundant(self) -> int:
        """How many entities keeping one per group would hide."""
        return sum(g.size - 1 for g in self.groups)

    def to_json(self) -> dict:
        return {"featureSetId": self.feature_set_id, "featureSet": self.feature_set_name,
                "entityType": self.entity_type, "version": self.version, "threshold": self.threshold,
                "entities": self.entities, "redundant": self.redundant, "datasetId": self.dataset_id,
                "groups": [g.to_json() for g in self.groups]}


def duplicate_groups(
    ws: "Workspace", feature_set: FeatureSet | str, threshold: float, *, include_hidden: bool = False,
    dataset_id: str | None = None, approximate: bool = False, neighbours: int = APPROX_NEIGHBOURS,
) -> Duplicates:
    """The near-duplicate groups of a feature set (a ``FeatureSet``, its name or id): entities
    linked by distance <= ``threshold`` (connected, single linkage), groups of two or more,
    largest first, then the tightest (smallest distance between two members), then by first
    entity id. Members are ascending by entity id. Entities of hidden items are left out
    unless ``include_hidden``. ``dataset_id``: compare only that dataset's entities (None:
    every dataset, so copies in two datasets pair up). Exact: equal to brute force in float64.

    ``approximate``: the candidate pairs are each entity's ``neighbours`` nearest in the ANN
    index (Chroma's HNSW), their distances then measured exactly; a pair the index misses is
    missed, so groups can come out smaller or split (never joined wrongly), and each member's
    distance is to its nearest member found. Time grows as n log n instead of n^2."""
    t = _check_threshold(threshold)
    scope = _scope(ws, feature_set, include_hidden, dataset_id)
    n = len(scope.entity_ids)
    found: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, their nearest-neighbour distances)
    if approximate and n >= 2:
        found = _approximate_groups(ws, scope, t, neighbours)
    elif n >= 2:
        cached = _cached_knn(scope, 1, compute=False)
        if cached is not None:  # only rows whose nearest neighbour is within t can have a link
            nn = cached[0][:, 0]
            near = np.flatnonzero(nn <= t)
            for g in duplicate_groups_of_values(scope.values[near], t):
                found.append((near[g], nn[near[g]]))
        else:  # within a group, each member's nearest neighbour is a member
            for g in duplicate_groups_of_values(scope.values, t):
                found.append((g, knn_distances_of_values(scope.values[g], 1)[0][:, 0]))
    groups = []
    for rows, dists in found:
        ids = scope.entity_ids[rows]
        order = np.argsort(ids, kind="stable")
        entity_ids = ids[order].tolist()
        groups.append(DuplicateGroup(entity_ids, [], dists[order].astype(float).tolist()))
    groups.sort(key=lambda g: (-g.size, g.min_distance, g.entity_ids[0]))
    items = _item_ids(ws, scope.fs, [e for g in groups for e in g.entity_ids])
    at = 0
    for g in groups:
        g.item_ids, at = items[at : at + g.size], at + g.size
    return Duplicates(scope.fs.id, scope.fs.name, scope.fs.entity_type, scope.version, t, n, groups, dataset_id)


def require_ann_index(ws: "Workspace", fs: FeatureSet) -> None:
    """Make sure the set's ANN index holds every vector, for the approximate mode: a small
    backlog is indexed now (as an approximate search does), a large one (a bulk load still
    indexing in the background) is refused with what to do, rather than indexed inline."""
    if ws.index is None:
        raise InvalidInput("approximate near-duplicates need the ANN index, which another process holds; "
                           "run them there, or without approximate")
    if not ws.index_sync.ready(fs.id):
        raise InvalidInput(
            f"approximate near-duplicates need the whole ANN index, and the index of {fs.name!r} is "
            f"{ws.index_state(fs.id).describe()}; wait until it is up to date (the Feature sets page "
            "and `featurelab info` show its progress), or run them without approximate")


def _approximate_groups(ws: "Workspace", scope: _Scope, t: float, neighbours: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups from the index's candidate pairs, measured exactly (see ``duplicate_groups``)."""
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
        raise InvalidInput(f"neighbours must be a whole number >= 1, got {neighbours!r}")
    require_ann_index(ws, scope.fs)
    n = len(scope.entity_ids)
    row_of = {e: i for i, e in enumerate(scope.entity_ids.tolist())}
    a_list, b_list = [], []
    step = 4096
    for start in range(0, n, step):
        ids, dists = ws.index.query_many(scope.fs.id, scope.values[start : start + step], neighbours + 1)
        for i, (row_ids, row_d) in enumerate(zip(ids, dists), start):
            # Chroma's float32 distances only pick candidates: generously, they are re-measured.
            for eid in (e for e, d in zip(row_ids, row_d) if d <= t * (1 + 1e-3) + 1e-6):
                j = row_of.get(eid)
                if j is not None and j != i:
                    a_list.append(min(i, j))
                    b_list.append(max(i, j))
    if not a_list:
        return []
    pairs = np.unique(np.stack([np.asarray(a_list, dtype=np.int64), np.asarray(b_list, dtype=np.int64)]), axis=1)
    dist = pair_distances(scope.values, pairs[0], pairs[1])
    keep = dist <= t
    a, b, dist = pairs[0][keep], pairs[1][keep], dist[keep]
    rep, _ = _merge(np.arange(n, dtype=np.int64), [a], [b])
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, a, dist)
    np.minimum.at(nearest, b, dist)
    return [(g, nearest[g]) for g in _components(rep)]


@dataclass
class NeighbourDistances:
    """Each entity's exact distance to its nearest other entity in the set."""

    feature_set_id: str
    version: int
    entity_ids: np.ndarray
    distances: np.ndarray  # float64, row i for entity_ids[i]
    suggested_threshold: float
    reach: float = 0.0  # the largest nearest distance between distinct vectors (a slider's right end)

    def histogram(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` as ``np.histogram`` gives them."""
        if not len(self.distances):
            return np.zeros(0, dtype=np.int64), np.zeros(1)
        return np.histogram(self.distances, bins=bins)

    def within(self, threshold: float) -> int:
        """How many entities have another one within ``threshold``."""
        return int((self.distances <= threshold).sum())


def nearest_neighbor_distances(
    ws: "Workspace", feature_set: FeatureSet | str, *, include_hidden: bool = False,
    dataset_id: str | None = None,
) -> NeighbourDistances:
    """Every entity's distance to its nearest other entity (exact; within ``dataset_id`` when
    given), for the histogram drawn under a threshold slider, with a suggested threshold.
    Kept in memory per set version and scope, so ``duplicate_groups`` then only compares the
    entities that have a neighbour in reach."""
    scope = _scope(ws, feature_set, include_hidden, dataset_id)
    if len(scope.entity_ids) < 2:
        dists = np.full(len(scope.entity_ids), np.inf)
    else:
        dists = _cached_knn(scope, 1)[0][:, 0].copy()
    distinct = distinct_nearest_distances(scope.values, dists) if len(dists) >= 2 else np.zeros(0)
    finite = distinct[np.isfinite(distinct)]
    return NeighbourDistances(scope.fs.id, scope.version, scope.entity_ids.copy(), dists, suggest_threshold(finite),
                              float(finite.max()) if len(finite) else 0.0)


# ---- hiding and undo ---------------------------------------------------------------------------------
@dataclass
class HideResult:
    action_id: str | None  # None when nothing new was hidden (nothing to undo)
    groups: int  # groups acted on
    kept: list[str]  # the entity kept in each group
    hidden: int  # items hidden now
    already_hidden: int  # items that were hidden before (left as they were, not recorded)
    hidden_item_ids: list[str]

    def to_json(self) -> dict:
        return {"actionId": self.action_id, "groups": self.groups, "kept": self.kept, "hidden": self.hidden,
                "alreadyHidden": self.already_hidden, "hiddenItemIds": self.hidden_item_ids}


@dataclass
class HideAction:
    id: str
    feature_set_id: str | None
    item_ids: list[str]
    detail: dict
    created_at: float
    undone_at: float | None


@dataclass
class UndoResult:
    action_id: str
    unhidden: int  # items shown again
    skipped: int  # items of the action left alone: deleted, shown already, or taken over by a later action


def _keep_key(rule: str, item) -> tuple:
    first = (item.created_at, item.id)
    if rule == "largest":
        return (-((item.width or 0) * (item.height or 0)), -item.size, *first)
    return first


def _keepers(ws: "Workspace", dups: Duplicates, chosen: list[int], rule: str,
             keepers: Sequence[str]) -> list[str]:
    named = set(keepers)
    need_items = [i for g in chosen for i in dups.groups[g].item_ids if i]
    items = ws.items_by_ids(list(dict.fromkeys(need_items)))
    out = []
    for g in chosen:
        group = dups.groups[g]
        picked = [e for e in group.entity_ids if e in named]
        if len(picked) > 1:
            raise InvalidInput(f"group {g + 1} has {len(picked)} named keepers ({picked[:3]}); name one per group")
        if picked:
            out.append(picked[0])
            continue
        if rule == "manual":
            raise InvalidInput(f"rule 'manual' needs a keeper for group {g + 1}: name one of {group.entity_ids[:5]}")
        members = [(e, items.get(i)) for e, i in zip(group.entity_ids, group.item_ids)]
        alive = [(e, it) for e, it in members if it is not None]
        if not alive:
            raise NotFound(f"the items of group {g + 1} were deleted; compute the groups again")
        out.append(min(alive, key=lambda m: (*_keep_key(rule, m[1]), m[0]))[0])
    return out


def _has_images(ws: "Workspace", item_ids: Sequence[str]) -> bool:
    ids = list(dict.fromkeys(i for i in item_ids if i))
    return any(ws.rows_by_ids("SELECT 1 FROM items WHERE kind = 'image' AND id IN ({}) LIMIT 1", ids))


def keep_rules(ws: "Workspace", duplicates: Duplicates, groups: Sequence[int] | None = None) -> tuple[str, ...]:
    """The keep rules that mean something for these groups (default: all): 'largest'
    compares image sizes, so it is offered only when some member is an image."""
    chosen = range(len(duplicates.groups)) if groups is None else groups
    members = [i for g in chosen for i in duplicates.groups[g].item_ids]
    return KEEP_RULES if _has_images(ws, members) else tuple(r for r in KEEP_RULES if r != "largest")


def hide_duplicates(
    ws: "Workspace", duplicates: Duplicates, rule: str = "first", *, keepers: Sequence[str] = (),
    groups: Sequence[int] | None = None,
) -> HideResult:
    """Keep one entity per group and hide (``hidden = 1``) the items of the others, as one
    undoable action. ``rule``: 'first' (first uploaded: item created_at, then id), 'largest'
    (largest image width x height, then file size, then first uploaded) or 'manual'.
    ``keepers`` names the kept entity of any group (required for every group with 'manual').
    ``groups``: indices into ``duplicates.groups`` to act on (default: all). Items already
    hidden stay hidden and are not recorded, so ``undo`` leaves them hidden."""
    if rule not in KEEP_RULES:
        raise InvalidInput(f"rule must be one of {list(KEEP_RULES)}, got {rule!r}")
    chosen = list(range(len(duplicates.groups))) if groups is None else list(dict.fromkeys(groups))
    bad = [g for g in chosen if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < len(duplicates.groups)]
    if bad:
        raise InvalidInput(f"group index {bad[0]!r} is out of range: there are {len(duplicates.groups)} groups")
    if rule == "largest" and not _has_images(ws, [i for g in chosen for i in duplicates.groups[g].item_ids]):
        raise InvalidInput("'largest' keeps the largest image, and these groups hold no images; keep the first "
                           "uploaded ('first') or pick one by hand ('manual')")
    kept = _keepers(ws, duplicates, chosen, rule, list(keepers))
    kept_set = set(kept)
    kept_items = {i for g in chosen for e, i in zip(duplicates.groups[g].entity_ids, duplicates.groups[g].item_ids)
                  if e in kept_set}
    targets = list(dict.fromkeys(
        i for g in chosen for e, i in zip(duplicates.groups[g].entity_ids, duplicates.groups[g].item_ids)
        if e not in kept_set and i and i not in kept_items))
    detail = {"kind": "duplicates", "rule": rule, "threshold": duplicates.threshold, "groups": len(chosen),
              "kept": kept, "featureSet": duplicates.feature_set_name}
    with ws.catalog.transaction() as c:
        action_id, visible = hide_items(c, targets, detail, duplicates.feature_set_id)
    return HideResult(action_id, len(chosen), kept, len(visible),
                      len(targets) - len(visible), visible)


def _action(row) -> HideAction:
    return HideAction(row["id"], row["feature_set_id"], json.loads(row["item_ids"]), json.loads(row["detail"]),
                      row["created_at"], row["undone_at"])


def hide_actions(
    ws: "Workspace", feature_set: FeatureSet | str | None = None, *, include_undone: bool = False,
) -> list[HideAction]:
    """Hide actions, newest first (of one set when given; undone ones only when asked)."""
    sql, params = "SELECT * FROM hide_actions WHERE 1", []
    if feature_set is not None:
        sql, params = sql + " AND feature_set_id = ?", [ws.feature_sets.resolve(feature_set).id]
    if not include_undone:
        sql += " AND undone_at IS NULL"
    return [_action(r) for r in ws.catalog.all(sql + " ORDER BY created_at DESC, rowid DESC", params)]


def undo(ws: "Workspace", action_id: str) -> UndoResult:
    """Un-hide exactly the items that action hid, except those a later (not undone) action
    hid again; an action is undone once."""
    with ws.catalog.transaction() as c:
        row = c.execute("SELECT rowid, * FROM hide_actions WHERE id = ?", (action_id,)).fetchone()
        if row is None:
            raise NotFound(f"no hide action {action_id!r}; list them with `python -m store duplicates --actions`")
        if row["undone_at"] is not None:
            raise InvalidInput(f"hide action {action_id} was undone already")
        mine = json.loads(row["item_ids"])
        later: set[str] = set()
        for other in c.execute("SELECT item_ids FROM hide_actions WHERE undone_at IS NULL AND rowid > ?",
                               (row["rowid"],)):
            later.update(json.loads(other[0]))
        wanted = [i for i in mine if i not in later]
        shown = 0
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            cur = c.execute(f"UPDATE items SET hidden = 0 WHERE hidden = 1 AND id IN ({','.join('?' * len(chunk))})",
                            chunk)
            shown += cur.rowcount
        c.execute("UPDATE hide_actions SET undone_at = ? WHERE id = ?", (time.time(), action_id))
    return UndoResult(action_id, shown, len(mine) - shown)


# ---- outliers -----------------------------------------------------------------------------------------
@dataclass
class Outlier:
    entity_id: str
    item_id: str | None
    score: float  # exact distance to the k-th nearest other entity
    rank: int  # 1 = the most isolated

    def to_json(self) -> dict:
        return {"rank": self.rank, "entityId": self.entity_id, "itemId": self.item_id, "score": self.score}


def _scores(ws: "Workspace", feature_set: FeatureSet | str, k: int, include_hidden: bool,
            dataset_id: str | None) -> tuple[_Scope, np.ndarray]:
    scope = _scope(ws, feature_set, include_hidden, dataset_id)
    k = _check_k(k, len(scope.entity_ids))
    return scope, _cached_knn(scope, k)[0][:, k - 1]


def outliers(
    ws: "Workspace", feature_set: FeatureSet | str, k: int = 5, *, top: int | None = None,
    include_hidden: bool = False, dataset_id: str | None = None,
) -> list[Outlier]:
    """Entities ranked by their exact distance to their k-th nearest other entity, farthest
    first (ties by entity id); the first ``top`` of them (default all). Hidden items'
    entities are left out unless ``include_hidden``; ``dataset_id``: only that dataset's
    entities, neighbours included (None: all datasets)."""
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InvalidInput(f"top must be a whole number >= 1, got {top!r}")
    scope, scores = _scores(ws, feature_set, k, include_hidden, dataset_id)
    order = np.lexsort((scope.entity_ids, -scores))[: top if top is not None else None]
    ids = scope.entity_ids[order].tolist()
    items = _item_ids(ws, scope.fs, ids)
    return [Outlier(e, i, float(s), r) for r, (e, i, s) in enumerate(zip(ids, items, scores[order]), 1)]


def outlier_scores(
    ws: "Workspace", feature_set: FeatureSet | str, k: int = 5, *, include_hidden: bool = True,
    dataset_id: str | None = None,
) -> dict[str, float]:
    """Entity id -> exact distance to its k-th nearest other entity, for every vector of the
    set (of ``dataset_id`` only, when given; hidden items' too by default, as the map shows
    them): colour a map by it."""
    scope, scores = _scores(ws, feature_set, k, include_hidden, dataset_id)
    return dict(zip(scope.entity_ids.tolist(), scores.tolist()))


__all__ = [
    "KEEP_LABELS", "KEEP_RULES", "DuplicateGroup", "Duplicates", "HideAction", "HideResult", "NeighbourDistances",
    "Outlier", "UndoResult", "clear_cache", "duplicate_groups", "duplicate_groups_of_values", "hide_actions",
    "hide_duplicates", "knn_distances_of_values", "kth_neighbor_distances", "nearest_neighbor_distances",
    "nearest_neighbor_distances_of_values", "outlier_scores", "outliers", "pair_distances", "state_token",
    "distinct_nearest_distances", "keep_rules", "suggest_threshold", "undo",
]
