"""Getting data in and out: dataset export and import, COCO annotations, precomputed
vectors, saving or exporting a selection, the sample data, and reading an existing Chroma.

Cheap to import: the sample data and the Chroma reader load on first use."""
from __future__ import annotations

import importlib
from typing import Any

from .coco import import_coco
from .selection import CLASH_RULES, SelectionResult, export_selection, save_selection, selection_item_ids
from .transfer import export_dataset, import_dataset, remove_abandoned_imports
from .vector_import import KEY_KINDS, ImportReport, import_vectors, read_vectors

# Public name -> the module of this wing that defines it, imported when the name is first used.
_LAZY = {
    **dict.fromkeys(("SampleReport", "clip_weights_at_hand", "load_sample"), "samples"),
    **dict.fromkeys(("ChromaSource", "CollectionHit", "CollectionImport", "CollectionInfo", "LoadedCollection",
                     "import_collection", "is_url", "open_source", "source_signature"), "chroma_source"),
}

__all__ = [
    "CLASH_RULES", "ImportReport", "KEY_KINDS", "SelectionResult", "export_dataset", "export_selection",
    "import_coco", "import_dataset", "import_vectors", "read_vectors", "remove_abandoned_imports",
    "save_selection", "selection_item_ids", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
