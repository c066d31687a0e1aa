"""Precomputed vectors (ones no model of featurelab made, like the seed's customer
profiles ``[age, income, years, purchases, value]``) into a feature set.

Files, one vector per row, each keyed by an item's name (or ``/dir/name``) or an entity id:

- CSV (or TSV): a key column (``name`` / ``id``, or the first column) and one numeric
  column per value; or a single column holding a JSON list per row.
- Parquet: the same, or one list column (``vector``, ``value`` or ``embedding``).
- ``.npy``: a 2-D array, with ``keys`` given (a list, or a text file with one per line).
- ``.npz``: arrays ``keys`` and ``vectors``.

Everything is checked before anything is written, then all vectors go in one transaction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidInput, NotFound
from ..records import Dataset, FeatureSet

if TYPE_CHECKING:
    from ..workspace import Workspace

KEY_KINDS = ("name", "id")
LIST_COLUMNS = ("vector", "value", "values", "embedding")


@dataclass
class ImportReport:
    feature_set: str
    imported: int
    unmatched: list[str] = field(default_factory=list)  # keys that named no entity; not imported

    def summary(self) -> str:
        tail = f"; {len(self.unmatched)} key(s) matched nothing: {self.unmatched[:5]}" if self.unmatched else ""
        return f"imported {self.imported} vectors into {self.feature_set}{tail}"


def import_vectors(
    ws: "Workspace",
    feature_set: FeatureSet | str,
    path: str | Path,
    key: str = "name",
    *,
    dataset: Dataset | str | None = None,
    keys: Sequence[str] | str | Path | None = None,
    key_column: str | None = None,
    display_name: str | None = None,
) -> ImportReport:
    """Import the vectors in ``path`` into ``feature_set``. ``key``: whether rows are keyed
    by item ``name`` (within ``dataset`` when given; ``/dir/name`` picks among equal names)
    or by entity ``id``. Rows whose key matches nothing are listed in the report; if none
    matches, nothing is imported and the error says so. Existing vectors of the same
    entities are replaced. ``display_name``: the file as the user knows it, for messages
    (an app writes an upload to a temporary file first)."""
    fs = feature_set if isinstance(feature_set, FeatureSet) else ws.feature_sets.resolve(feature_set)
    if key not in KEY_KINDS:
        raise InvalidInput(f"key must be one of {list(KEY_KINDS)}, got {key!r}")
    if key == "name" and fs.entity_type != "item":
        raise InvalidInput(f"feature set {fs.name!r} holds annotation vectors; key the rows by annotation id (key 'id')")
    row_keys, values = read_vectors(path, key=key, keys=keys, key_column=key_column, display_name=display_name)
    shown = display_name or Path(path).name
    if values.shape[1] != fs.size:
        raise InvalidInput(
            f"{shown} has {values.shape[1]} values per row but feature set {fs.name!r} holds size {fs.size}; "
            f"import it into a set of size {values.shape[1]} (create one first if there is none)"
        )
    duplicates = sorted({k for k in row_keys if row_keys.count(k) > 1}) if len(set(row_keys)) != len(row_keys) else []
    if duplicates:
        raise InvalidInput(f"key(s) {duplicates[:5]} appear more than once in {shown}; give each one row")
    resolve = _by_name if key == "name" else _by_id
    entity_ids = resolve(ws, fs, row_keys, _dataset_id(ws, dataset))
    matched = [i for i, e in enumerate(entity_ids) if e is not None]
    unmatched = [row_keys[i] for i, e in enumerate(entity_ids) if e is None]
    if not matched:
        raise NotFound(
            f"no key in {shown} names an entity (first: {row_keys[:3]}); nothing was imported. "
            f"Check that the rows are keyed by item {key}" + (" and the dataset to match in" if key == "name" else "")
        )
    chosen = [entity_ids[i] for i in matched]
    if len(set(chosen)) != len(chosen):
        raise InvalidInput("two rows name the same entity (a name and its /dir/name?); nothing was imported")
    chosen_values = values if len(matched) == len(values) else values[matched]
    ws.create_features(fs, chosen_values if chosen_values.dtype == np.float32 else chosen_values.astype(np.float32),
                       chosen)
    return ImportReport(fs.name, len(matched), unmatched)


def read_vectors(
    path: str | Path, *, key: str = "name", keys: Sequence[str] | str | Path | None = None,
    key_column: str | None = None, display_name: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """(keys, values of shape (n, size): float32 when stored so, else float64) from a CSV,
    Parquet, .npy or .npz file;
    messages name it ``display_name`` when given."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{display_name or path}: no such file")
    name = display_name or path.name
    suffix = path.suffix.lower()
    if suffix == ".npy":
        values = _numeric(_load_npy(path, name), name)
        row_keys = _keys_argument(keys, name)
    elif suffix == ".npz":
        row_keys, values = _load_npz(path, name)
    elif suffix in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        row_keys, values = _load_table(path, key, key_column, name)
    else:
        raise InvalidInput(f"{name}: import takes .csv, .tsv, .parquet, .npy or .npz files")
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise InvalidInput(f"{name}: expected rows of numbers, found an array of shape {values.shape}")
    if len(row_keys) != values.shape[0]:
        raise InvalidInput(f"{name}: {values.shape[0]} vectors but {len(row_keys)} keys; give one key per row")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise InvalidInput(f"{name}: row {int(np.flatnonzero(bad)[0]) + 1} holds an empty cell, NaN or infinity; fix it")
    return row_keys, values


def _load_npy(path: Path, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)  # never run code from a data file
    except ValueError as exc:
        raise InvalidInput(f"{name}: not a plain numeric .npy array ({exc})") from exc


def _load_npz(path: Path, name: str) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "keys" not in z or not ({"vectors", "values"} & set(z.files)):
                raise InvalidInput(f"{name}: an .npz needs arrays 'keys' and 'vectors'; it has {z.files}")
            return [str(k) for k in z["keys"].tolist()], _numeric(z["vectors" if "vectors" in z else "values"], name)
    except ValueError as exc:
        raise InvalidInput(f"{name}: not a plain .npz archive ({exc})") from exc


def _keys_argument(keys, name: str) -> list[str]:
    if keys is None:
        raise InvalidInput(
            f"{name} holds vectors without keys: give keys (a text file with one item name or id per line, "
            "in row order), or use an .npz with 'keys' and 'vectors', or a CSV"
        )
    if isinstance(keys, (str, Path)):
        text = Path(keys).read_text(encoding="utf-8")
        return [str(k) for k in json.loads(text)] if text.lstrip().startswith("[") else [
            line.strip() for line in text.splitlines() if line.strip()]
    return [str(k) for k in keys]


def _numeric(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise InvalidInput(f"{name}: the vectors must be numbers, found {array.dtype}")
    # float32 stays float32 (what the catalog stores: no float64 copy of a million rows); the rest float64.
    array = array if array.dtype == np.float32 else array.astype(np.float64)
    return array.reshape(array.shape[0], -1) if array.ndim >= 1 else array


def _load_table(path: Path, key: str, key_column: str | None, name: str) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        lists = _parquet_list_column(path, key, key_column, name)
        if lists is not None:
            return lists
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:  # all text first: keys like "007" stay as written, bad cells get a clear message
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                                keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise InvalidInput(f"{name}: cannot read the table ({exc})") from exc
    column = key_column or (key if key in frame.columns else frame.columns[0])
    if column not in frame.columns:
        raise InvalidInput(f"{name}: no column {column!r}; columns are {list(frame.columns)}")
    row_keys = frame[column].astype(str).str.strip().tolist()
    rest = frame.drop(columns=[column])
    if len(rest.columns) == 1 and (rest.columns[0] in LIST_COLUMNS or _looks_like_list(rest.iloc[0, 0])):
        return row_keys, _stack_lists(rest.iloc[:, 0], name)
    for col in rest.columns:
        if rest[col].dtype.kind not in "iufb":
            try:
                rest[col] = pd.to_numeric(rest[col].astype(str).str.strip())
            except ValueError as exc:
                raise InvalidInput(
                    f"{name}: column {col!r} holds something that is not a number ({exc}); "
                    "keep the key column and one number per column"
                ) from exc
    return row_keys, rest.to_numpy(dtype=np.float64)


def _parquet_list_column(path: Path, key: str, key_column: str | None, name: str):
    """(keys, values) of a Parquet file of a key column and one list column of equal-length
    vectors, read column-wise by pyarrow (a million rows in seconds, not row by row); None
    for any other layout, which the general reader takes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise InvalidInput(f"{name}: cannot read the table ({exc})") from exc
    column = key_column or (key if key in table.column_names else table.column_names[0])
    rest = [c for c in table.column_names if c != column]
    if column not in table.column_names or len(rest) != 1:
        return None
    vectors = table[rest[0]].combine_chunks()
    kind = vectors.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return None
    if vectors.null_count or not pa.types.is_floating(kind.value_type) and not pa.types.is_integer(kind.value_type):
        return None
    lengths = np.asarray(pa.compute.list_value_length(vectors))
    if len(lengths) == 0 or (lengths != lengths[0]).any():
        return None  # the general reader says which lengths differ
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    row_keys = [str(k).strip() for k in table[column].to_pylist()]
    return row_keys, _numeric(flat.reshape(len(lengths), int(lengths[0])), name)


def _looks_like_list(cell) -> bool:
    return isinstance(cell, (list, np.ndarray)) or (isinstance(cell, str) and cell.lstrip().startswith("["))


def _stack_lists(column, name: str) -> np.ndarray:
    rows = []
    for i, cell in enumerate(column, 1):
        try:
            value = json.loads(cell) if isinstance(cell, str) else cell
            rows.append(np.asarray(value, dtype=np.float64).ravel())
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{name}: row {i} is not a list of numbers ({exc})") from exc
    if len({r.shape[0] for r in rows}) > 1:
        raise InvalidInput(f"{name}: the vectors have different lengths {sorted({r.shape[0] for r in rows})}")
    return np.stack(rows)


def _dataset_id(ws: "Workspace", dataset: Dataset | str | None) -> str | None:
    if dataset is None or isinstance(dataset, Dataset):
        return getattr(dataset, "id", None)
    try:
        return ws.datasets.get(dataset_id=dataset).id
    except NotFound:
        return ws.datasets.get(dataset_name=dataset).id


def _by_id(ws: "Workspace", fs: FeatureSet, row_keys: list[str], dataset_id: str | None) -> list[str | None]:
    found = ws.existing_ids("items" if fs.entity_type == "item" else "annotations", row_keys)
    return [k if k in found else None for k in row_keys]


def _by_name(ws: "Workspace", fs: FeatureSet, row_keys: list[str], dataset_id: str | None) -> list[str | None]:
    """An item per key: by ``/dir/name`` when the key has a slash, else by name, which must
    then be unique (in the dataset, or the workspace)."""
    sql = "SELECT id, dir, name FROM items" + (" WHERE dataset_id=?" if dataset_id else "")
    by_name: dict[str, list[str]] = {}
    by_path: dict[str, str] = {}
    for item_id, folder, name in ws.catalog.all(sql, (dataset_id,) if dataset_id else ()):
        by_name.setdefault(name, []).append(item_id)
        by_path[f"{folder.rstrip('/')}/{name}"] = item_id
    out: list[str | None] = []
    for k in row_keys:
        if "/" in k:
            out.append(by_path.get(k if k.startswith("/") else f"/{k}"))
            continue
        ids = by_name.get(k, [])
        if len(ids) > 1:
            raise InvalidInput(
                f"{len(ids)} items are named {k!r}; key that row by /dir/name or by id, or name the dataset"
            )
        out.append(ids[0] if ids else None)
    return out
