"""The analysis wing: maps (``projection``, with ``layout`` for the GPU layout),
near-duplicates and outliers (``duplicates``), named clusters (``clusters``) and two sets'
neighbour lists (``compare``), how long each takes here (``estimate``), on the shared exact
kNN scans (``knn``), point tables
(``tables``), large maps as density images with lasso answered here (``density``) and dataset scopes (``scope``: which rows of a set an analysis looks at).

    from store.analysis import project, map_frame, duplicate_groups, cluster_feature_set

Names are imported from their module on first use, so importing this package stays cheap
(no torch, umap or scikit-learn until a computation runs)."""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "projection": (
        "EXACT_METRICS", "METHODS", "METRICS", "STAGE_LABELS", "Projection", "Progress", "cached_projection",
        "clear_projection_cache", "configure_numba_cache", "import_umap", "pca_coords", "project",
        "project_values", "projection_params", "umap_coords", "warm_numba_cache",
    ),
    "tables": ("TABLE_COLUMNS", "annotation_rows", "entity_labels", "map_frame", "point_table"),
    "knn": ("exact_knn", "knn_device"),
    "layout": ("torch_layout",),
    "density": ("LARGE_MAP_ABOVE", "DensityImage", "box_polygon", "density_image", "large_map_above",
                "points_in_polygon"),
    "duplicates": (
        "KEEP_LABELS", "KEEP_RULES", "DuplicateGroup", "Duplicates", "HideAction", "HideResult",
        "NeighbourDistances", "Outlier", "UndoResult", "duplicate_groups", "duplicate_groups_of_values",
        "hide_actions", "hide_duplicates", "knn_distances_of_values", "kth_neighbor_distances",
        "nearest_neighbor_distances", "nearest_neighbor_distances_of_values", "outlier_scores", "outliers",
        "state_token", "suggest_threshold", "undo", "distinct_nearest_distances", "keep_rules",
    ),
    "clusters": (
        "KEY_PATTERN", "PROMPT_TEMPLATE", "Cluster", "ClusterResult", "KMeansResult", "check_key",
        "clear_assignment", "cluster_feature_set", "default_key", "default_vocabulary", "kmeans", "load_result",
        "parse_vocabulary", "save_assignment",
    ),
    "compare": ("Comparison", "compare_sets", "label_agreement", "shared_counts"),
    "estimate": ("ESTIMATE_ABOVE", "Estimate", "LIMIT_S", "duration", "estimate"),
    "scope": ("check_dataset", "scope_entities", "scope_rows", "vector_counts"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
