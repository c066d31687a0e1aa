"""How long an analysis will take here, said before it starts: from n and a calibration run on
this machine (a small piece of the same computation, timed once per process).

    est = estimate(ws, "clip", "outliers", k=5)
    print(est.message)      # "outliers of 1,000,000 vectors x 512: about 2 h 45 min here ..."
    if not est.fits():      # more than ``LIMIT_S`` (10 minutes)
        ...

Cost models (d: the vectors' size):

- ``outliers`` / ``nearest`` / ``duplicates`` (exact): one blocked all-pairs scan
  (``knn.top_lists`` or ``range_pairs``), n^2 d / 2 products: the calibration times
  ``top_lists`` on ``CALIBRATION_ROWS`` rows, scaled by (n / rows)^2 (the heavier of the two
  scans, so near-duplicates come in under it: 881 s against 1,860 estimated at 100k);
- ``duplicates`` with ``approximate``: one ANN query per entity (calibrated on this set's own
  index with a few hundred of its vectors), plus the exact re-measure of the candidates;
- ``kmeans``: k-means++ seeding (2 + ln k candidates per centre) and up to ``max_iter``
  Lloyd iterations of n k d each, calibrated on one assignment pass over a sample;
  ``seconds`` is the worst case (every iteration), ``typical`` assumes ``TYPICAL_ITERATIONS``;
- ``hdbscan``: scikit-learn's HDBSCAN timed on two samples (after PCA, as the run does), and
  the power of n between them extrapolated.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidInput
from ..records import FeatureSet
from . import knn
from .scope import scope_rows

if TYPE_CHECKING:
    from ..workspace import Workspace

LIMIT_S = 600.0  # what "finishes here" means: ten minutes
ESTIMATE_ABOVE = 20_000  # vectors: below this every analysis takes seconds, and nothing need be said
CALIBRATION_ROWS = 4096
TYPICAL_ITERATIONS = 30
TASKS = ("outliers", "nearest", "duplicates", "kmeans", "hdbscan")
_CALIBRATED: dict[tuple, float] = {}
_LOCK = threading.Lock()


@dataclass
class Estimate:
    task: str
    n: int
    d: int
    seconds: float  # the expected time (the worst case for k-means)
    basis: str  # how it was reached, in words
    typical: float | None = None  # k-means: with TYPICAL_ITERATIONS iterations

    def fits(self, limit_s: float = LIMIT_S) -> bool:
        return (self.typical if self.typical is not None else self.seconds) <= limit_s

    @property
    def message(self) -> str:
        said = f"about {duration(self.typical)} (at most {duration(self.seconds)})" if self.typical is not None \
            else f"about {duration(self.seconds)}"
        return f"{self.task} of {self.n:,} vectors x {self.d}: {said} here ({self.basis})"

    def to_json(self) -> dict:
        return {"task": self.task, "n": self.n, "d": self.d, "seconds": self.seconds, "typical": self.typical,
                "basis": self.basis, "fits": self.fits()}


def duration(seconds: float) -> str:
    """'40 s', '12 min', '2 h 45 min'."""
    if seconds < 90:
        return f"{max(seconds, 0.1):.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60)} min"


def _timed(key: tuple, run) -> float:
    """Seconds of ``run()``, measured once per process and key (a second, warm run counts)."""
    with _LOCK:
        if key in _CALIBRATED:
            return _CALIBRATED[key]
    run()  # warm: imports, kernels, caches
    t = time.perf_counter()
    run()
    seconds = time.perf_counter() - t
    with _LOCK:
        _CALIBRATED[key] = seconds
    return seconds


def _sample(values: np.ndarray, rows: int) -> np.ndarray:
    if len(values) <= rows:
        return np.array(values, dtype=np.float32)  # a writable copy: torch warns on read-only arrays
    pick = np.random.default_rng(0).choice(len(values), rows, replace=False)
    return np.ascontiguousarray(values[np.sort(pick)], dtype=np.float32)


def pairwise_seconds(values: np.ndarray, device: str | None = None) -> tuple[float, str]:
    """The all-pairs scan of ``values`` (n, d): (seconds, basis)."""
    n, d = values.shape
    device = knn.knn_device(device)
    if device == "numpy":
        raise InvalidInput("this analysis needs PyTorch; install torch")
    torch = knn.import_torch()
    sample = _sample(values, CALIBRATION_ROWS)
    m = len(sample)

    def run() -> None:
        with knn.exact_matmul(torch):
            x = torch.from_numpy(sample).to(device)
            knn.top_lists(torch, x, (x * x).sum(1), 6, min(knn.block_rows(m, device), m))

    base = _timed(("pairs", m, d, device), run)
    return base * (n / max(m, 1)) ** 2, f"n^2 scan, {m:,} rows took {base:.2f} s"


def estimate(
    ws: "Workspace", feature_set: FeatureSet | str, task: str, *, k: int = 8, max_iter: int = 300,
    min_size: int = 5, approximate: bool = False, include_hidden: bool = True, dataset_id: str | None = None,
    device: str | None = None,
) -> Estimate:
    """How long ``task`` (one of ``TASKS``) takes on the set's vectors in scope, here."""
    if task not in TASKS:
        raise InvalidInput(f"task must be one of {list(TASKS)}, got {task!r}")
    fs = ws.feature_sets.resolve(feature_set)
    m = ws.matrix(fs)
    rows = scope_rows(ws, fs, m.entity_ids, dataset_id=dataset_id, include_hidden=include_hidden)
    values = m.values if len(rows) == len(m) else m.values[rows]
    n, d = len(values), fs.size
    if task == "duplicates" and approximate:
        seconds, basis = _ann_seconds(ws, fs, values)
    elif task in ("outliers", "nearest", "duplicates"):
        # One n^2 pass: the groups' range scan, or the nearest distances (after which the
        # groups scan only the rows with a neighbour in reach).
        seconds, basis = pairwise_seconds(values, device)
    elif task == "kmeans":
        per_pass, basis = _assignment_seconds(values, k, device)
        seeding = per_pass * (2 + math.log(max(k, 1)))
        return Estimate(task, n, d, seeding + per_pass * max_iter, basis, seeding + per_pass * TYPICAL_ITERATIONS)
    else:
        seconds, basis = _hdbscan_seconds(values, min_size)
    return Estimate(task, n, d, seconds, basis)


def _ann_seconds(ws: "Workspace", fs: FeatureSet, values: np.ndarray) -> tuple[float, str]:
    from .duplicates import APPROX_NEIGHBOURS, require_ann_index

    if len(values) == 0:
        return 0.0, "no vectors in scope"
    require_ann_index(ws, fs)  # an empty or half-built index would time the wrong thing
    sample = _sample(values, 256)
    base = _timed(("ann", fs.id, len(sample)),
                  lambda: ws.index.query_many(fs.id, sample, APPROX_NEIGHBOURS + 1))
    return base * len(values) / max(len(sample), 1), f"one ANN query each, {len(sample)} took {base:.2f} s"


def _assignment_seconds(values: np.ndarray, k: int, device: str | None) -> tuple[float, str]:
    """One k-means assignment pass over all rows (n k d), from a pass over a sample."""
    from .clusters import _device, _sq_dists

    device = _device(device)
    torch = knn.import_torch()
    sample = _sample(values, 16 * CALIBRATION_ROWS)
    rng = np.random.default_rng(1)
    centres = sample[rng.choice(len(sample), min(k, len(sample)), replace=False)]

    def run() -> None:
        x = torch.from_numpy(sample).to(device)
        c = torch.from_numpy(centres).to(device)
        _sq_dists(x, (x * x).sum(1), c, 8192)

    base = _timed(("assign", len(sample), values.shape[1], k, device), run)
    per_pass = base * len(values) / max(len(sample), 1)
    return per_pass, f"one pass over {len(sample):,} rows x {k} centres took {base:.3f} s"


def _hdbscan_seconds(values: np.ndarray, min_size: int) -> tuple[float, str]:
    from .clusters import HDBSCAN_PCA_ABOVE, PCA_DIMS, _hdbscan

    small, large = (_sample(values, r) for r in (1000, 2000))
    if len(values) > HDBSCAN_PCA_ABOVE and values.shape[1] > PCA_DIMS:  # as the run will: on PCA dims
        from sklearn.decomposition import PCA

        pca = PCA(n_components=PCA_DIMS, random_state=0).fit(large)
        small, large = (pca.transform(s).astype(np.float32) for s in (small, large))
    if len(values) <= len(large):
        t = _timed(("hdbscan", len(values), values.shape[1], min_size), lambda: _hdbscan(small, min_size))
        return t, f"{len(values)} rows took {t:.2f} s"
    t1 = _timed(("hdbscan", len(small), values.shape[1], min_size), lambda: _hdbscan(small, min_size))
    t2 = _timed(("hdbscan", len(large), values.shape[1], min_size), lambda: _hdbscan(large, min_size))
    power = min(2.0, max(1.0, math.log(max(t2, 1e-6) / max(t1, 1e-6)) / math.log(len(large) / len(small))))
    return t2 * (len(values) / len(large)) ** power, f"samples of {len(small)} / {len(large)} rows, n^{power:.2f}"


__all__ = ["CALIBRATION_ROWS", "ESTIMATE_ABOVE", "Estimate", "LIMIT_S", "TASKS", "duration", "estimate", "pairwise_seconds"]
