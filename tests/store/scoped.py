"""A feature set whose items sit in two datasets: the source, and its copy made by
"save the selection as a dataset" (the case that returned every search hit twice)."""
from __future__ import annotations

import numpy as np

from store.io import save_selection


def clustered(n: int = 30, dim: int = 6, seed: int = 0) -> np.ndarray:
    """Rows 0 and 1 are near copies (distance ~0.01); the rest lie far apart."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32) * 10
    x[1] = x[0] + np.float32(0.01)
    return x


def copied_set(ws, values: np.ndarray, *, name: str = "notes", sets: int = 1):
    """Items of dataset ``name`` with ``values`` as vectors in ``sets`` feature sets (the
    second one, if asked, holds the values shifted), then all of them saved as dataset
    ``<name>-copy``. Returns (feature sets, source dataset, copy dataset, source items)."""
    ds = ws.datasets.create(name)
    items = [r.item for r in ds.items.upload([(f"{i:02d}.txt", f"item {i}".encode()) for i in range(len(values))])]
    out = []
    for s in range(sets):
        fs = ws.feature_sets.create(name=f"{name}-set{s}", size=values.shape[1])
        fs.features.create_many(values + np.float32(s), [i.id for i in items])
        out.append(fs)
    copy = save_selection(ws, [i.id for i in items], f"{name}-copy").dataset
    return [ws.feature_sets.get(feature_set_id=fs.id) for fs in out], ds, copy, items
