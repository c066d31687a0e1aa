"""Compare two feature sets over the same entities: do their neighbour lists agree?

    cmp = compare_sets(ws, "clip-b32", "clip-l14", k=10)
    cmp.mean_overlap, cmp.histogram()            # 0..1, and counts of 0/k .. k/k
    cmp.most_disagreeing(20)                     # rows, the least overlap first
    cmp.label_agreement()                        # {"a": .., "b": .., "labelled": n} or None

Only entities with a vector in both sets count (``only_a`` / ``only_b`` say how many were
left out). For each, its exact top-k neighbours among those entities in each set
(``store.analysis.knn.exact_knn``, Euclidean, the entity itself excluded), and the overlap
``|N_a(i) ∩ N_b(i)| / k``. The most disagreeing entities are those of least overlap; among
equal overlaps, those whose neighbours in one set lie farthest, in the other set's space,
relative to that set's own neighbours (``Comparison.stretch``) come first.

Labels: an item's ``label_field`` metadata value (a dotted path such as ``user.class``), or
without one its most common annotation label (an annotation's own label for annotation
sets), as the Map colours them. Label agreement at k for a set is, over the labelled
entities, the mean fraction of their k neighbours that carry the same label (a neighbour
without a label never agrees).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import InvalidInput
from ..records import FeatureSet
from .knn import exact_knn
from .scope import scope_rows
from .tables import entity_labels

if TYPE_CHECKING:
    from ..workspace import Workspace

ProgressFn = Callable[[str, float], None]


@dataclass
class Comparison:
    """Neighbour lists of two sets over their common entities; rows index ``entity_ids``."""

    a_id: str
    a_name: str
    b_id: str
    b_name: str
    entity_type: str
    k: int
    entity_ids: np.ndarray  # (n,) str, the entities in both sets
    neighbours_a: np.ndarray  # (n, k) int64 rows, nearest first
    neighbours_b: np.ndarray  # (n, k) int64 rows
    overlap: np.ndarray  # (n,) float64, |N_a ∩ N_b| / k
    only_a: int = 0  # entities of set a left out (no vector in b)
    only_b: int = 0
    labels: list[str | None] | None = None  # per row, None without a label
    agreement_a: np.ndarray | None = None  # (n,) fraction of a's neighbours sharing the label; NaN unlabelled
    agreement_b: np.ndarray | None = None
    label_field: str | None = None
    details: dict = field(default_factory=dict)
    # (centred vectors of a and b, own-neighbour distances in a and b): what stretch needs
    spaces: tuple | None = field(default=None, repr=False)
    _stretch_cache: dict = field(default_factory=dict, repr=False)

    @property
    def mean_overlap(self) -> float:
        return float(self.overlap.mean()) if len(self.overlap) else float("nan")

    def histogram(self) -> list[int]:
        """How many entities share 0, 1, ..., k of their k neighbours (k + 1 counts)."""
        shared = np.rint(self.overlap * self.k).astype(np.int64)
        return np.bincount(shared, minlength=self.k + 1).tolist()

    def stretch(self, rows: np.ndarray) -> np.ndarray:
        """For some rows: how much farther, in each set's space, the other set's neighbours
        lie than its own (1 when as close), averaged over both directions. Measured on first
        use and kept: only the rows that compete for ``most_disagreeing`` need it."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = np.array([r for r in rows.tolist() if r not in self._stretch_cache], dtype=np.int64)
        if len(missing):
            if self.spaces is None:
                raise InvalidInput("this comparison no longer holds its vectors; compare the sets again")
            va, vb, da, db = self.spaces
            values = _stretch(va, vb, self.neighbours_a, self.neighbours_b, da, db, missing)
            self._stretch_cache.update(zip(missing.tolist(), values.tolist()))
        return np.array([self._stretch_cache[r] for r in rows.tolist()], dtype=np.float64)

    def most_disagreeing(self, n: int = 20) -> np.ndarray:
        """Rows of the ``n`` entities of least overlap (ties: larger stretch, then entity id)."""
        n = min(max(int(n), 0), len(self.overlap))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        cutoff = np.partition(self.overlap, n - 1)[n - 1]
        rows = np.flatnonzero(self.overlap <= cutoff)  # every row that could be among the n
        order = np.lexsort((self.entity_ids[rows], -self.stretch(rows), self.overlap[rows]))
        return rows[order[:n]]

    def neighbour_ids(self, row: int, which: str) -> list[str]:
        """Entity ids of one row's neighbours in set 'a' or 'b', nearest first."""
        table = {"a": self.neighbours_a, "b": self.neighbours_b}.get(which)
        if table is None:
            raise InvalidInput(f"which must be 'a' or 'b', got {which!r}")
        return self.entity_ids[table[row]].tolist()

    def label_agreement(self) -> dict | None:
        """``{"a": mean, "b": mean, "labelled": count}`` over labelled entities, or None
        when no entity has a label."""
        if self.agreement_a is None:
            return None
        labelled = ~np.isnan(self.agreement_a)
        if not labelled.any():
            return None
        return {"a": float(self.agreement_a[labelled].mean()), "b": float(self.agreement_b[labelled].mean()),
                "labelled": int(labelled.sum())}

    def to_json(self, top: int = 20) -> dict:
        """A summary: sizes, mean overlap, histogram, label agreement, the ``top`` most
        disagreeing entities with both neighbour lists."""
        rows = self.most_disagreeing(top)
        return {
            "a": {"id": self.a_id, "name": self.a_name}, "b": {"id": self.b_id, "name": self.b_name},
            "k": self.k, "entities": len(self.entity_ids), "onlyA": self.only_a, "onlyB": self.only_b,
            "meanOverlap": self.mean_overlap, "histogram": self.histogram(),
            "labelField": self.label_field, "labelAgreement": self.label_agreement(),
            "mostDisagreeing": [
                {"entityId": str(self.entity_ids[r]), "overlap": float(self.overlap[r]),
                 "neighboursA": self.neighbour_ids(r, "a"), "neighboursB": self.neighbour_ids(r, "b")}
                for r in rows.tolist()
            ],
            "details": self.details,
        }


def _common(ids_a: np.ndarray, ids_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entity ids in both (sorted), and their rows in a and in b."""
    common, rows_a, rows_b = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
    return common, rows_a, rows_b


def shared_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a[i] ∩ b[i]| for each row of two (n, k) integer tables (rows hold distinct values)."""
    n, k = a.shape
    out = np.empty(n, dtype=np.int64)
    step = max(1, 2**24 // max(k * b.shape[1], 1))
    for start in range(0, n, step):
        x, y = a[start : start + step], b[start : start + step]
        out[start : start + len(x)] = (x[:, :, None] == y[:, None, :]).any(axis=2).sum(axis=1)
    return out


def neighbours(values: np.ndarray, k: int, device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k neighbours of each row among the others (Euclidean): rows and distances."""
    index, dist = exact_knn(values, k + 1, device=device)
    # exact_knn puts each row itself first, even among exact duplicates.
    return np.ascontiguousarray(index[:, 1:]), np.ascontiguousarray(dist[:, 1:])


def _mean_distance(values: np.ndarray, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean distance from each row ``sources[i]`` of ``values`` to the rows ``targets[i]`` (m, k)."""
    out = np.empty(len(sources), dtype=np.float64)
    step = max(1, 2**24 // max(targets.shape[1] * values.shape[1], 1))
    for start in range(0, len(sources), step):
        diff = values[targets[start : start + step]] - values[sources[start : start + step], None, :]
        out[start : start + len(diff)] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)).mean(axis=1)
    return out


def _stretch(va: np.ndarray, vb: np.ndarray, na: np.ndarray, nb: np.ndarray, da: np.ndarray,
             db: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``Comparison.stretch`` of ``rows``."""
    own_a = np.maximum(da[rows].mean(axis=1, dtype=np.float64), 1e-12)
    own_b = np.maximum(db[rows].mean(axis=1, dtype=np.float64), 1e-12)
    return 0.5 * (_mean_distance(va, rows, nb[rows]) / own_a + _mean_distance(vb, rows, na[rows]) / own_b)


def label_agreement(labels: list[str | None], rows: np.ndarray) -> np.ndarray:
    """Per entity, the fraction of its neighbours ``rows[i]`` with its label; NaN unlabelled."""
    codes: dict[str, int] = {}
    code = np.array([-1 if v is None else codes.setdefault(v, len(codes)) for v in labels], dtype=np.int64)
    same = (code[rows] == code[:, None]).mean(axis=1)
    return np.where(code >= 0, same, np.nan)


def compare_sets(
    ws: "Workspace", a: FeatureSet | str, b: FeatureSet | str, *, k: int = 10, label_field: str | None = None,
    device: str | None = None, progress: ProgressFn | None = None, dataset_id: str | None = None,
) -> Comparison:
    """Compare the neighbour lists of feature sets ``a`` and ``b`` (sets, names or ids) over
    the entities both hold: exact top-``k`` in each, per-entity overlap, and label agreement
    at k where entities carry a label (``label_field``, an item metadata field, else the
    annotation label). ``device``: 'cuda', 'cpu' or 'numpy' (default: CUDA when present).
    ``dataset_id``: only that dataset's entities (None: every dataset).
    ``progress(stage, fraction)``: stages 'load', 'neighbours a', 'neighbours b', 'labels'."""
    report = progress or (lambda stage, fraction: None)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInput(f"k must be a whole number of at least 1, got {k!r}")
    k = int(k)
    if label_field is not None and (not isinstance(label_field, str) or not label_field.strip()):
        raise InvalidInput("label_field must be a metadata field such as user.class, or None")
    fa, fb = ws.feature_sets.resolve(a), ws.feature_sets.resolve(b)
    if fa.entity_type != fb.entity_type:
        raise InvalidInput(
            f"{fa.name!r} holds {fa.entity_type} vectors and {fb.entity_type!r} holds {fb.entity_type} vectors; "
            "compare two sets of the same entity type")
    report("load", 0.0)
    started = time.perf_counter()
    ma, mb = ws.matrix(fa), ws.matrix(fb)
    in_a = scope_rows(ws, fa, ma.entity_ids, dataset_id=dataset_id)
    in_b = scope_rows(ws, fb, mb.entity_ids, dataset_id=dataset_id)
    common, rows_a, rows_b = _common(ma.entity_ids[in_a], mb.entity_ids[in_b])
    rows_a, rows_b = in_a[rows_a], in_b[rows_b]
    n = len(common)
    if n <= k:
        raise InvalidInput(
            f"{fa.name!r} and {fb.name!r} share {n} entities; k = {k} needs at least {k + 1}. Embed the same "
            "items into both sets, or lower k")
    va = np.ascontiguousarray(ma.values[rows_a])
    vb = np.ascontiguousarray(mb.values[rows_b])
    report("load", 1.0)
    details: dict[str, Any] = {"load_seconds": round(time.perf_counter() - started, 3)}
    t = time.perf_counter()
    na, da = neighbours(va, k, device)
    report("neighbours a", 1.0)
    nb, db = neighbours(vb, k, device)
    report("neighbours b", 1.0)
    details["knn_seconds"] = round(time.perf_counter() - t, 3)
    overlap = shared_counts(na, nb) / k
    out = Comparison(fa.id, fa.name, fb.id, fb.name, fa.entity_type, k, common, na, nb, overlap,
                     only_a=len(in_a) - n, only_b=len(in_b) - n, label_field=label_field, details=details,
                     spaces=(va, vb, da, db))
    t = time.perf_counter()
    labels = entity_labels(ws, fa, common, label_field)
    if any(v is not None for v in labels):
        out.labels = labels
        out.agreement_a, out.agreement_b = label_agreement(labels, na), label_agreement(labels, nb)
    report("labels", 1.0)
    details["labels_seconds"] = round(time.perf_counter() - t, 3)
    details["seconds"] = round(time.perf_counter() - started, 3)
    return out
