"""Data the browser tests put into the shared workspace before they open a page."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def vector_notes(home: str | Path, dataset: str, feature_set: str, notes: dict[str, list[float]], *,
                 dir: str = "/") -> None:
    """A dataset of small text items named by ``notes``' keys and a feature set holding each
    one's vector (the values), written through the store as any client would."""
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create(dataset)
        items = [r.item for r in ds.items.upload([(n, n.encode()) for n in notes], dir=dir)]
        fs = ws.feature_sets.create(name=feature_set, size=len(next(iter(notes.values()))))
        ws.create_features(fs, np.array([notes[i.name] for i in items], np.float32), [i.id for i in items])
    finally:
        ws.close()
