"""The tables beside a map or a cluster: one row per entity with its item, dataset, label
and metadata, read from the catalog in few queries (a map can have 100k points). Shared by
``projection`` (``point_table``, ``map_frame``), ``clusters`` and ``compare``
(``entity_labels``), ``duplicates`` and the command line (``annotation_rows``)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from ..records import FeatureSet

if TYPE_CHECKING:
    import pandas as pd

    from ..workspace import Workspace
    from .projection import Projection


def _chunks(ids: Sequence[str], size: int = 900) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def annotation_rows(ws: "Workspace", annotation_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """annotation id -> (item id, label)."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(annotation_ids):
        marks = ",".join("?" * len(chunk))
        for row in ws.catalog.all(f"SELECT id, item_id, label FROM annotations WHERE id IN ({marks})", chunk):
            found[row[0]] = (row[1], row[2])
    return found


def most_common_labels(ws: "Workspace", item_ids: Sequence[str]) -> dict[str, str]:
    """item id -> its most common annotation label (ties: alphabetical first)."""
    best: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(item_ids):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT item_id, label, COUNT(*) FROM annotations WHERE item_id IN ({marks}) GROUP BY item_id, label"
        for item_id, label, count in ws.catalog.all(sql, chunk):
            current = best.get(item_id)
            if current is None or (-count, label) < (-current[0], current[1]):
                best[item_id] = (count, label)
    return {item_id: label for item_id, (_, label) in best.items()}


def item_rows(ws: "Workspace", item_ids: Sequence[str]) -> dict[str, tuple]:
    """item id -> (name, dir, kind, hidden, dataset id, metadata JSON), as plain rows: a map
    can have 100k points, where building Item records and 100+ IN queries took seconds. Many
    ids are read in one pass over the items table instead."""
    columns = "id, name, dir, kind, hidden, dataset_id, metadata"
    if len(item_ids) <= 5_000:
        rows = []
        for chunk in _chunks(item_ids):
            rows += ws.catalog.all(f"SELECT {columns} FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        return {r[0]: tuple(r[1:]) for r in rows}
    wanted = set(item_ids)
    with ws.catalog.lock:
        cursor = ws.catalog.conn.execute(f"SELECT {columns} FROM items")
        return {r[0]: tuple(r[1:]) for r in cursor if r[0] in wanted}


TABLE_COLUMNS = ("entity_id", "item_id", "name", "filename", "dataset", "dir", "kind", "hidden", "label")


def _metadata_column(field_path: str) -> str:
    """A metadata field's column: its name as given, unless a built-in column has that name."""
    taken = field_path in TABLE_COLUMNS or field_path in ("x", "y", "z", "distance")
    return f"metadata.{field_path}" if taken else field_path


def metadata_value(metadata: dict, field_path: str) -> Any:
    """``user.split`` (or ``metadata.user.split``) inside an item's metadata; None when absent."""
    value: Any = metadata
    parts = field_path.split(".")
    if parts[0] == "metadata":
        parts = parts[1:]
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def point_table(
    ws: "Workspace", feature_set: FeatureSet | str, entity_ids: Sequence[str],
    metadata_fields: Sequence[str] = (), distances: Mapping[str, float] | None = None,
) -> "pd.DataFrame":
    """What a map colours and labels its points by: one row per entity id, in the given order
    (so row i matches ``projection.coords[i]``), with columns ``entity_id, item_id, name,
    filename, dataset, dir, kind, hidden, label``, one column per metadata field (dotted path
    such as ``user.split``, named as given, or ``metadata.<field>`` where that name is taken),
    and ``distance`` when ``distances`` (entity id ->
    distance, e.g. the last search's) is given, NaN for the others.

    ``label`` is an item's most common annotation label (None without annotations); for an
    annotation set, the annotation's own label. Entities deleted since the projection keep
    their row with empty fields."""
    import pandas as pd

    fs = ws.feature_sets.resolve(feature_set)
    ids = [str(e) for e in entity_ids]
    if fs.entity_type == "annotation":
        annotations = annotation_rows(ws, ids)
        item_of = {eid: annotations[eid][0] for eid in ids if eid in annotations}
        label_of = {eid: annotations[eid][1] for eid in ids if eid in annotations}
    else:
        item_of = {eid: eid for eid in ids}
        label_of = most_common_labels(ws, ids)
    items = item_rows(ws, list(dict.fromkeys(item_of.values())))
    dataset_names = {d.id: d.name for d in ws.datasets.list()}
    columns: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
    fields = list(dict.fromkeys(metadata_fields))
    extra: dict[str, list] = {_metadata_column(f): [] for f in fields}
    for eid in ids:
        item_id = item_of.get(eid)
        row = items.get(item_id)
        columns["entity_id"].append(eid)
        if row is None:
            for name in TABLE_COLUMNS[1:]:
                columns[name].append(label_of.get(eid) if name == "label" else None)
            for values in extra.values():
                values.append(None)
            continue
        name, folder, kind, hidden, dataset_id, metadata = row
        columns["item_id"].append(item_id)
        columns["name"].append(name)
        columns["filename"].append(f"{folder}{name}" if folder.endswith("/") else f"{folder}/{name}")
        columns["dataset"].append(dataset_names.get(dataset_id))
        columns["dir"].append(folder)
        columns["kind"].append(kind)
        columns["hidden"].append(bool(hidden))
        columns["label"].append(label_of.get(eid))
        if fields:
            meta = json.loads(metadata)
            for field_path, values in zip(fields, extra.values()):
                values.append(metadata_value(meta, field_path))
    table = pd.DataFrame({**columns, **extra})
    if distances is not None:
        table["distance"] = np.array([distances.get(eid, np.nan) for eid in ids], dtype=np.float64)
    return table


def map_frame(
    ws: "Workspace", projection: "Projection", metadata_fields: Sequence[str] = (),
    distances: Mapping[str, float] | None = None,
) -> "pd.DataFrame":
    """A map ready to draw: ``entity_id, x, y`` (``z``) followed by ``point_table``'s columns."""
    table = point_table(ws, projection.feature_set_id, projection.entity_ids, metadata_fields, distances)
    return projection.to_frame().join(table.drop(columns="entity_id"))


def _label_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def entity_labels(
    ws: "Workspace", fs: FeatureSet, entity_ids: Sequence[str] | np.ndarray, label_field: str | None = None,
) -> list[str | None]:
    """Each entity's label as text (None without one): ``label_field`` of its item's
    metadata, else its annotation label (as ``point_table`` shows it)."""
    ids = np.asarray(entity_ids, dtype=str).tolist()
    if fs.entity_type == "annotation":
        rows = annotation_rows(ws, ids)
        if label_field is None:
            return [rows[e][1] if e in rows else None for e in ids]
        item_of = {e: rows[e][0] for e in ids if e in rows}
    else:
        if label_field is None:
            best = most_common_labels(ws, ids)
            return [best.get(e) for e in ids]
        item_of = {e: e for e in ids}
    metadata = _metadata_of(ws, "items", list(dict.fromkeys(item_of.values())))
    return [_label_text(metadata_value(metadata[item_of[e]], label_field)) if item_of.get(e) in metadata else None
            for e in ids]


def _metadata_of(ws: "Workspace", table: str, ids: Sequence[str]) -> dict[str, dict]:
    """id -> parsed metadata of rows of ``table`` ('items' or 'annotations')."""
    out: dict[str, dict] = {}
    for start in range(0, len(ids), 900):
        chunk = list(ids[start : start + 900])
        sql = f"SELECT id, metadata FROM {table} WHERE id IN ({','.join('?' * len(chunk))})"
        out.update((r[0], json.loads(r[1])) for r in ws.catalog.all(sql, chunk))
    return out


__all__ = ["TABLE_COLUMNS", "annotation_rows", "entity_labels", "item_rows", "map_frame", "metadata_value",
           "most_common_labels", "point_table"]
