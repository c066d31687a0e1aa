"""The distance metric, defined once: its name, how Chroma's distance becomes a true one,
and the float32 shortcut used for pictures. featurelab measures Euclidean distance only;
another metric (cosine, say) joins here and in the kernels (``exact``, the index's space).
"""
from __future__ import annotations

import numpy as np

EUCLIDEAN = "euclidean"
METRICS = (EUCLIDEAN,)  # what a feature set may declare
DISTANCE_OPS = ("$eq", "$lt", "$lte", "$gt", "$gte")  # the bounds a query may put on the distance
CHROMA_SPACE = "l2"  # Chroma's HNSW space for euclidean: it answers squared distances


def from_chroma(distances) -> np.ndarray:
    """True Euclidean distances (float64) from Chroma's squared l2 ones (clipped at 0)."""
    return np.sqrt(np.maximum(np.asarray(distances, dtype=np.float64), 0.0))


def approx_distances(sq_norms: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Every row's distance to ``query`` from ``|x|^2 - 2x.q + |q|^2`` in float32: fast, for
    pictures, but not the exact ranking (see ``exact`` for that)."""
    squared = sq_norms - 2 * (values @ query) + np.float32(query @ query)
    return np.sqrt(np.maximum(squared, 0, out=squared))
