"""The dtlpy-shaped repositories: ``ws.datasets``, ``dataset.items``, ``item.annotations``,
``ws.feature_sets``, ``feature_set.features`` and ``item.features``. Each checks what it is
given and asks the workspace (the owner of the catalog, files and index) to do the work."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .errors import InvalidInput, NotFound
from .files import check_upload_size, normalize_dir
from .ids import SAFE_ID, new_id
from .records import Annotation, Dataset, Feature, FeatureSet, Item, Pages, UploadResult
from .io.coco import import_coco
from .search import language as q
from .search.metric import EUCLIDEAN, METRICS

if TYPE_CHECKING:
    from .workspace import DeletionSummary, Workspace

ENTITY_TYPES = ("item", "annotation")
ProgressFn = Callable[[int, int], None]


def unused_name(ws: "Workspace", table: str, name: Any, what: str) -> str:
    """``name`` stripped, refused when empty or already taken by another row of ``table``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a {what} needs a non-empty name")
    name = name.strip()
    if ws.catalog.one(f"SELECT 1 FROM {table} WHERE name=?", (name,)):
        raise InvalidInput(f"a {what} named {name!r} already exists; pick another name")
    return name


def check_metadata(metadata: Any) -> str:
    """An item's metadata as JSON; ``system`` is refused: as in Dataloop, it holds the
    store's own facts (size, mimetype...), which every item record fills in."""
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object (a dict)")
    if "system" in metadata:
        raise InvalidInput("metadata.system is reserved for featurelab's own facts (size, mimetype, ...); "
                           "put your fields under metadata.user")
    return check_json(metadata, "metadata")


def check_json(value: Any, what: str) -> str:
    """``value`` as canonical JSON, refusing what JSON cannot hold (NaN, infinity, objects)."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be JSON data without NaN or infinity: {exc}") from exc


class DatasetsRepo:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def from_row(self, row) -> Dataset:
        return Dataset(row["id"], row["name"], row["created_at"], self.ws)

    def create(self, name: str) -> Dataset:
        name = unused_name(self.ws, "datasets", name, "dataset")
        ds_id = new_id()
        with self.ws.catalog.transaction() as c:
            c.execute("INSERT INTO datasets (id, name, created_at) VALUES (?,?,?)", (ds_id, name, time.time()))
        return self.get(dataset_id=ds_id)

    def get(self, dataset_name: str | None = None, dataset_id: str | None = None) -> Dataset:
        if dataset_id:
            row = self.ws.catalog.one("SELECT * FROM datasets WHERE id=?", (dataset_id,))
        elif dataset_name:
            row = self.ws.catalog.one("SELECT * FROM datasets WHERE name=?", (dataset_name,))
        else:
            raise InvalidInput("give dataset_name or dataset_id")
        if row is None:
            raise NotFound(f"no dataset {dataset_id or dataset_name!r}; create it first or list them with `python -m store datasets`")
        return self.from_row(row)

    def get_or_create(self, name: str) -> Dataset:
        try:
            return self.get(dataset_name=name)
        except NotFound:
            return self.create(name)

    def list(self) -> list[Dataset]:
        rows = self.ws.catalog.all("SELECT * FROM datasets WHERE name NOT LIKE '.importing-%' ORDER BY created_at, name")
        return [self.from_row(r) for r in rows]

    def rename(self, dataset_id: str, name: str) -> Dataset:
        ds = self.get(dataset_id=dataset_id)
        if name != ds.name:
            name = unused_name(self.ws, "datasets", name, "dataset")
            with self.ws.catalog.transaction() as c:
                c.execute("UPDATE datasets SET name=? WHERE id=?", (name, ds.id))
        return self.get(dataset_id=ds.id)

    def deletion_summary(self, dataset_id: str) -> "DeletionSummary":
        """What ``delete(dataset_id)`` would delete: its items, their files no other dataset
        shares, their annotations and feature vectors."""
        ds = self.get(dataset_id=dataset_id)
        ids = [r[0] for r in self.ws.catalog.all("SELECT id FROM items WHERE dataset_id=?", (ds.id,))]
        return self.ws.deletion_summary(ids)

    def delete(self, dataset_id: str) -> None:
        ds = self.get(dataset_id=dataset_id)
        ids = [r[0] for r in self.ws.catalog.all("SELECT id FROM items WHERE dataset_id=?", (ds.id,))]
        self.ws.delete_items(ids)
        with self.ws.catalog.transaction() as c:
            c.execute("DELETE FROM datasets WHERE id=?", (ds.id,))


class ItemsRepo:
    """The items of one dataset."""

    def __init__(self, ws: Workspace, dataset_id: str) -> None:
        self.ws = ws
        self.dataset_id = dataset_id

    def upload(
        self,
        files: Any,
        dir: str = "/",
        *,
        copy: bool = False,
        metadata: dict | None = None,
        progress: ProgressFn | None = None,
    ) -> list[UploadResult]:
        """Upload files into ``dir``. ``files``: a path, a folder (walked; sub-folders become
        dirs), ``(name, bytes)``, or a list of these. The same bytes twice in one dataset give
        back the existing item (status ``duplicate``) unless ``copy=True``. A bad file is
        ``rejected`` with the reason; the others go on."""
        jobs = list(_expand_uploads(files, normalize_dir(dir)))
        results: list[UploadResult] = []
        for done, (name, folder, loader) in enumerate(jobs, 1):
            try:
                data = loader()
            except OSError as exc:
                results.append(UploadResult(name, "rejected", None, f"{name}: cannot read ({exc})"))
            except InvalidInput as exc:
                results.append(UploadResult(name, "rejected", None, str(exc)))
            else:
                results.append(self.ws.upload_one(self.dataset_id, name, data, folder, copy=copy, metadata=metadata))
            if progress:
                progress(done, len(jobs))
        return results

    def upload_bytes(self, data: bytes, name: str, dir: str = "/", **kwargs) -> UploadResult:
        return self.upload([(name, data)], dir, **kwargs)[0]

    def get(self, item_id: str | None = None, filepath: str | None = None) -> Item:
        if filepath:
            folder, _, name = filepath.rpartition("/")
            row = self.ws.catalog.one(
                "SELECT * FROM items WHERE dataset_id=? AND dir=? AND name=?",
                (self.dataset_id, normalize_dir(folder), name),
            )
            if row is None:
                raise NotFound(f"no item {filepath!r} in this dataset")
            return self.ws.item_from_row(row)
        item = self.ws.get_item(item_id)
        if item.dataset_id != self.dataset_id:
            raise NotFound(f"item {item_id!r} is not in this dataset")
        return item

    def list(self, filters: Any = None) -> Pages:
        """Items of this dataset; ``filters`` in the filter language (vector search included)."""
        return self.ws.search(filters if filters is not None else {}, dataset_id=self.dataset_id)

    def delete(self, item_ids: Sequence[str] | None = None, *, filters: Any = None) -> int:
        """Delete these items, or (as the SDK's ``dataset.items.delete(filters=...)``) every
        item of this dataset that ``filters`` passes, all or nothing. Returns how many."""
        if filters is not None:
            return self.ws.bulk(_with_operation(filters, {"delete": True}), dataset_id=self.dataset_id)
        found = self.ws.items_by_ids(list(item_ids or []))
        foreign = [i for i in item_ids if i not in found or found[i].dataset_id != self.dataset_id]
        if foreign:
            raise NotFound(f"item(s) {foreign[:5]} are not in this dataset; nothing was deleted")
        return self.ws.delete_items(item_ids)

    def update(self, *, filters: Any, update_values: dict | None = None, hidden: bool | None = None) -> int:
        """Merge ``update_values`` into ``metadata.user`` (and set ``hidden``) of every item of
        this dataset that ``filters`` passes, in one transaction; the SDK's
        ``dataset.items.update(filters=..., update_values=...)``. Returns how many."""
        values: dict = {"metadata": {"user": update_values}} if update_values else {}
        if hidden is not None:
            values["hidden"] = hidden
        return self.ws.bulk(_with_operation(filters, {"update": values}), dataset_id=self.dataset_id)

    def count(self) -> int:
        return self.ws.catalog.scalar("SELECT COUNT(*) FROM items WHERE dataset_id=?", (self.dataset_id,))

    def browse(self, *, folder: str | None = None, subfolders: bool = True, hidden: bool | None = None,
               filter: dict | None = None, sort: str = "filename", descending: bool = False,
               page: int = 0, page_size: int = 48) -> Pages:
        """One page of this dataset's items for a grid: in ``folder`` (and below it with
        ``subfolders``), ``hidden`` or not (None: both), passing ``filter`` (a filter object of
        the filter language, or a whole filter JSON whose ``filter`` is used), sorted by ``sort``."""
        conditions: list[dict] = []
        if folder:
            folder = normalize_dir(folder)
            if not subfolders:
                conditions.append({"dir": folder})
            elif folder != "/":
                conditions.append({"dir": f"{folder}/**"})
        if hidden is not None:
            conditions.append({"hidden": bool(hidden)})
        if filter:
            if not isinstance(filter, dict):
                raise InvalidInput('the item filter must be a JSON object, e.g. {"metadata.user.digit": 3}')
            if "join" in filter:
                raise InvalidInput("a vector search ($euclid join) runs on the Search page; here give item filters only")
            conditions.append(filter.get("filter", {}) if set(filter) & q.CONTROL_KEYS else filter)
        doc = {"filter": {"$and": conditions} if conditions else {}, "sort": {sort: "descending" if descending else "ascending"},
               "page": int(page), "pageSize": int(page_size), "resource": "items"}
        return self.list(doc)

    def folders(self) -> list[str]:
        """Every folder that holds an item of this dataset, sorted (for a folder picker)."""
        rows = self.ws.catalog.all("SELECT DISTINCT dir FROM items WHERE dataset_id=? ORDER BY dir", (self.dataset_id,))
        return [r[0] for r in rows]


def _with_operation(filters: Any, operation: dict) -> dict:
    """A filter (JSON or ``Filters``-like) with a bulk operation added."""
    doc = dict(q.as_filter_json(filters) or {})
    if doc and not set(doc) & q.CONTROL_KEYS:
        doc = {"filter": doc}
    return {**doc, **operation}


def read_limited(path: Path) -> bytes:
    """A file's bytes, refusing one over the upload limit before reading it."""
    check_upload_size(path.name, path.stat().st_size)
    return path.read_bytes()


def _expand_uploads(files: Any, base_dir: str):
    """(name, dir, loader) for each file to upload."""
    if isinstance(files, (str, os.PathLike, tuple)):
        files = [files]
    for entry in files:
        if isinstance(entry, tuple):
            name, data = entry
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidInput(f"upload ({name!r}, ...) needs bytes, got {type(data).__name__}")
            yield str(name), base_dir, (lambda d=bytes(data): d)
            continue
        path = Path(entry)
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = sub.parent.relative_to(path).as_posix()
                folder = base_dir if rel == "." else normalize_dir(f"{base_dir}/{rel}")
                yield sub.name, folder, (lambda p=sub: read_limited(p))
        elif path.is_file():
            yield path.name, base_dir, (lambda p=path: read_limited(p))
        else:
            raise NotFound(f"{path}: no such file or folder")


class ItemAnnotations:
    def __init__(self, ws: Workspace, item: Item) -> None:
        self.ws = ws
        self.item = item

    def create(self, label: str, box: Sequence[float], metadata: dict | None = None) -> Annotation:
        return self.ws.add_box(self.item, label, box, metadata)

    def list(self) -> list[Annotation]:
        rows = self.ws.catalog.all("SELECT * FROM annotations WHERE item_id=? ORDER BY created_at, id", (self.item.id,))
        return [self.ws.annotation_from_row(r) for r in rows]

    def get(self, annotation_id: str) -> Annotation:
        ann = self.ws.get_annotation(annotation_id)
        if ann.item_id != self.item.id:
            raise NotFound(f"annotation {annotation_id!r} is not on item {self.item.filename}")
        return ann

    def delete(self, annotation_id: str) -> None:
        self.get(annotation_id)
        self.ws.delete_annotations([annotation_id])


class DatasetAnnotations:
    def __init__(self, ws: Workspace, dataset_id: str) -> None:
        self.ws = ws
        self.dataset_id = dataset_id

    def list(self, filters: Any = None) -> Pages:
        f = q.parse(filters or {}, resource="annotations")
        f.resource = "annotations"
        return self.ws.search(f, dataset_id=self.dataset_id)

    def import_coco(self, coco: str | os.PathLike | dict) -> dict:
        """Boxes from a COCO JSON file; see ``store.io.coco``."""
        return import_coco(self.ws, self.dataset_id, coco)


class FeatureSetsRepo:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def from_row(self, row) -> FeatureSet:
        return FeatureSet(
            id=row["id"], name=row["name"], size=row["size"], set_type=row["set_type"],
            entity_type=row["entity_type"], model=json.loads(row["model"]) if row["model"] else None,
            metric=row["metric"], created_at=row["created_at"], version=row["version"], _ws=self.ws,
        )

    def create(
        self,
        name: str,
        size: int | None = None,
        set_type: str = "embeddings",
        entity_type: str = "item",
        model: str | dict | None = None,
        metric: str = EUCLIDEAN,
        model_id: str | dict | None = None,
        feature_set_id: str | None = None,
    ) -> FeatureSet:
        """A named container of vectors of one ``size``. ``model`` (or the SDK's ``model_id``)
        names the model that makes them: a name or a dict with at least ``name``."""
        model = model if model is not None else model_id
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a feature set needs a non-empty name")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 65536:
            raise InvalidInput(f"size must be a whole number from 1 to 65536 (the vector length), got {size!r}")
        entity_type = getattr(entity_type, "value", entity_type)
        if entity_type not in ENTITY_TYPES:
            raise InvalidInput(f"entity_type must be one of {list(ENTITY_TYPES)}, got {entity_type!r}")
        if metric not in METRICS:
            raise InvalidInput(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if not isinstance(set_type, str) or not set_type:
            raise InvalidInput("set_type must be a non-empty string such as 'embeddings'")
        if isinstance(model, str):
            model = {"name": model}
        if model is not None and (not isinstance(model, dict) or not model.get("name")):
            raise InvalidInput("model must be a model name or a dict with a 'name'")
        name = unused_name(self.ws, "feature_sets", name, "feature set")
        if feature_set_id is not None and not SAFE_ID.fullmatch(feature_set_id):
            raise InvalidInput(f"feature set id {feature_set_id!r} must be 1 to 64 letters, digits, '_' or '-'")
        fs_id = feature_set_id or new_id()
        with self.ws.catalog.transaction() as c:
            c.execute(
                "INSERT INTO feature_sets (id, name, size, set_type, entity_type, model, metric, created_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (fs_id, name, size, set_type, entity_type, check_json(model, "model") if model else None, metric,
                 time.time()),
            )
        index = self.ws.index_if_open  # a new set's collection: never the reason to open Chroma
        if index is not None:
            index.collection(fs_id)
        return self.get(feature_set_id=fs_id)

    def get(self, feature_set_name: str | None = None, feature_set_id: str | None = None) -> FeatureSet:
        if feature_set_id:
            row = self.ws.catalog.one("SELECT * FROM feature_sets WHERE id=?", (feature_set_id,))
        elif feature_set_name:
            row = self.ws.catalog.one("SELECT * FROM feature_sets WHERE name=?", (feature_set_name,))
        else:
            raise InvalidInput("give feature_set_name or feature_set_id")
        if row is None:
            raise NotFound(
                f"no feature set {feature_set_id or feature_set_name!r}; list them with `python -m store sets`"
            )
        return self.from_row(row)

    def resolve(self, feature_set: "FeatureSet | str") -> FeatureSet:
        """A set given as itself (read afresh: its version may have moved), its id or its name."""
        if isinstance(feature_set, FeatureSet):
            return self.get(feature_set_id=feature_set.id)
        if not isinstance(feature_set, str):
            raise InvalidInput(f"a feature set is a FeatureSet, a name or an id, got {type(feature_set).__name__}")
        try:
            return self.get(feature_set_id=feature_set)
        except NotFound:
            return self.get(feature_set_name=feature_set)

    def list(self) -> list[FeatureSet]:
        return [self.from_row(r) for r in self.ws.catalog.all("SELECT * FROM feature_sets ORDER BY created_at, name")]

    def update(self, feature_set_id: str, *, name: str | None = None, set_type: str | None = None) -> FeatureSet:
        """Rename a set or change its free-text type; its vectors, size and model stay."""
        fs = self.get(feature_set_id=feature_set_id)
        if name is not None and name != fs.name:
            name = unused_name(self.ws, "feature_sets", name, "feature set")
        if set_type is not None and (not isinstance(set_type, str) or not set_type):
            raise InvalidInput("set_type must be a non-empty string such as 'embeddings'")
        with self.ws.catalog.transaction() as c:
            c.execute("UPDATE feature_sets SET name=?, set_type=? WHERE id=?",
                      (name or fs.name, set_type or fs.set_type, fs.id))
        return self.get(feature_set_id=fs.id)

    def delete(self, feature_set_id: str) -> None:
        fs = self.get(feature_set_id=feature_set_id)
        with self.ws.catalog.transaction() as c:
            c.execute("DELETE FROM features WHERE feature_set_id=?", (fs.id,))
            c.execute("DELETE FROM index_tombstones WHERE feature_set_id=?", (fs.id,))
            c.execute("DELETE FROM feature_sets WHERE id=?", (fs.id,))
        self.ws.index_sync.drop_set(fs.id)  # when this process owns the index; else the owner drops it at open
        self.ws.vectors.drop(fs.id)
        self.ws.engine.forget(fs.id)
        shutil.rmtree(self.ws.path / "cache" / "projections" / fs.id, ignore_errors=True)


class FeaturesRepo:
    """Features of one set (``feature_set.features``) or of one entity across all sets
    (``item.features``)."""

    def __init__(self, ws: Workspace, feature_set: FeatureSet | None = None, entity_id: str | None = None) -> None:
        self.ws = ws
        self.feature_set = feature_set
        self.entity_id = entity_id

    def _set(self) -> FeatureSet:
        if self.feature_set is None:
            raise InvalidInput("create features through a feature set: feature_set.features.create(...)")
        return self.feature_set

    def create(self, value: Any, entity: Any) -> Feature | list[Feature]:
        """One vector for one entity, or (SDK style) a list of vectors for a list of entities.
        Creating a feature again for the same entity replaces the old one."""
        fs = self._set()
        if isinstance(entity, (list, tuple)):
            return self.ws.create_features(fs, value, entity)
        return self.ws.create_features(fs, [value] if np.ndim(value) == 1 else value, [entity])[0]

    def create_many(self, values: Any, entities: Sequence[Any]) -> list[Feature]:
        """Bulk create: ``values`` (n, size), one per entity, in one transaction."""
        return self.ws.create_features(self._set(), values, entities)

    def list(self, filters: Any = None, entity_id: str | None = None) -> Pages:
        conditions: list[dict] = []
        if self.feature_set is not None:
            conditions.append({"featureSetId": self.feature_set.id})
        if self.entity_id is not None:
            conditions.append({"entityId": self.entity_id})
        if entity_id is not None:
            conditions.append({"entityId": entity_id})
        doc = dict(q.as_filter_json(filters) or {})
        if doc and not set(doc) & q.CONTROL_KEYS:
            doc = {"filter": doc}
        given = doc.get("filter")
        if given and set(given) == {"$and"} and isinstance(given["$and"], list):
            conditions += given["$and"]  # one flat $and, so that a $euclid in it is found
        elif given:
            conditions.append(given)
        doc["filter"] = {"$and": conditions} if conditions else {}
        doc["resource"] = "feature_vectors"
        return self.ws.search(doc)

    def get(self, feature_id: str) -> Feature:
        return self.ws.get_feature(feature_id)

    def delete(self, feature_id: str) -> None:
        self.ws.delete_features([feature_id])
