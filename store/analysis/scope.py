"""Which rows of a feature set an analysis looks at: a dataset scope, and hidden items.

A feature set spans datasets, so a saved selection or an imported export puts copies of the
same items (and vectors) into the same set; scoped to one dataset, a search, a map,
near-duplicates, outliers, clusters or a comparison see each item once. ``dataset_id=None``
is every dataset (the default everywhere, as before scopes existed).

    rows = scope_rows(ws, fs, matrix.entity_ids, dataset_id=ds.id, include_hidden=False)
    vector_counts(ws, fs)          # dataset id -> how many of the set's vectors are in it
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from ..errors import NotFound
from ..records import FeatureSet

if TYPE_CHECKING:
    from ..workspace import Workspace


def _entity_join(fs: FeatureSet) -> str:
    """FROM clause reaching each feature's item (through its annotation in an annotation set)."""
    if fs.entity_type == "annotation":
        return ("features JOIN annotations ON annotations.id = features.entity_id "
                "JOIN items ON items.id = annotations.item_id")
    return "features JOIN items ON items.id = features.entity_id"


def check_dataset(ws: "Workspace", dataset_id: str) -> str:
    """The dataset id, refused with NotFound when no such dataset exists."""
    if ws.catalog.scalar("SELECT COUNT(*) FROM datasets WHERE id = ?", (dataset_id,)) == 0:
        raise NotFound(f"no dataset with id {dataset_id!r}; list them with `python -m store datasets`")
    return dataset_id


def scope_entities(ws: "Workspace", fs: FeatureSet, *, dataset_id: str | None = None,
                   hidden_only: bool = False) -> list[str]:
    """Entity ids of the set's vectors in a dataset (all datasets: None), or only those of
    hidden items with ``hidden_only``."""
    where, params = ["features.feature_set_id = ?"], [fs.id]
    if dataset_id is not None:
        where.append("items.dataset_id = ?")
        params.append(check_dataset(ws, dataset_id))
    if hidden_only:
        where.append("items.hidden = 1")
    sql = f"SELECT features.entity_id FROM {_entity_join(fs)} WHERE {' AND '.join(where)}"
    return [r[0] for r in ws.catalog.all(sql, params)]


def scope_rows(ws: "Workspace", fs: FeatureSet, entity_ids: np.ndarray, *, dataset_id: str | None = None,
               include_hidden: bool = True) -> np.ndarray:
    """Indices into ``entity_ids`` (a set's matrix rows) inside the scope: the dataset's
    (every dataset's with None), hidden items' left out unless ``include_hidden``."""
    keep = np.ones(len(entity_ids), dtype=bool)
    if dataset_id is not None:
        keep &= np.isin(entity_ids, scope_entities(ws, fs, dataset_id=dataset_id))
    if not include_hidden:
        hidden = scope_entities(ws, fs, dataset_id=dataset_id, hidden_only=True)
        if hidden:
            keep &= ~np.isin(entity_ids, hidden)
    return np.flatnonzero(keep)


_COUNTS: dict[tuple, dict[str, int]] = {}
_COUNTS_GUARD = threading.Lock()


def vector_counts(ws: "Workspace", feature_set: FeatureSet | str) -> dict[str, int]:
    """Dataset id -> how many vectors of the set belong to its items, in the order of the
    datasets' creation (the first is the scope a page starts with)."""
    fs = ws.feature_sets.resolve(feature_set)
    # Kept while the set's version and the datasets stay: every rerun of a page asks, and the
    # join takes 1-2 s at 1M. (Not the catalog's change stamp: a 1M set's background indexing
    # writes its progress every few seconds.) Items never change dataset; deleting one deletes
    # its vectors, which bumps the version.
    version = ws.catalog.scalar("SELECT version FROM feature_sets WHERE id = ?", (fs.id,))
    datasets = tuple(r[0] for r in ws.catalog.all("SELECT id FROM datasets ORDER BY id"))
    key = (str(ws.path), id(ws.catalog), fs.id, version, datasets)
    with _COUNTS_GUARD:
        if key in _COUNTS:
            return dict(_COUNTS[key])
    sql = (f"SELECT items.dataset_id, COUNT(*) FROM {_entity_join(fs)} "
           "JOIN datasets ON datasets.id = items.dataset_id WHERE features.feature_set_id = ? "
           "GROUP BY items.dataset_id ORDER BY MIN(datasets.created_at), items.dataset_id")
    counts = {r[0]: int(r[1]) for r in ws.catalog.all(sql, (fs.id,))}
    with _COUNTS_GUARD:
        _COUNTS[key] = counts
        while len(_COUNTS) > 16:
            _COUNTS.pop(next(iter(_COUNTS)))
    return dict(counts)


__all__ = ["check_dataset", "scope_entities", "scope_rows", "vector_counts"]
