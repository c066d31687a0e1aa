"""The facade: one ``Workspace`` holds the catalog, the item files and the vector index.

    ws = Workspace.open("./workspace")
    ds = ws.datasets.create("pets")
    ds.items.upload(["cat.jpg"], dir="/cats")
    fs = ws.feature_sets.create(name="clip", size=512)
    fs.features.create(value=vector, entity=item)
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .blobs import BlobStore
from .catalog import Catalog, free_item_name, hide_items
from .errors import InvalidInput, NotFound, WorkspaceBusy
from .files import check_upload_size, inspect, normalize_dir, safe_name
from .ids import new_id, new_ids
from .index import guard as index_guard
from .index.chroma import VectorIndex, chroma_url_from_env
from .index.sync import IndexState, IndexSync
from .locks import OwnerLock
from .records import Annotation, Dataset, Feature, FeatureSet, Item, Pages, UploadResult
from .io.transfer import export_dataset, import_dataset, remove_abandoned_imports
from .repos import (
    DatasetAnnotations, DatasetsRepo, FeatureSetsRepo, FeaturesRepo, ItemAnnotations, ItemsRepo, check_json,
    check_metadata,
)
from .search import exact, language as q
from .search.engine import SearchEngine
from .vectors import VectorFiles

ProgressFn = Callable[[int, int], None]


def merge_json(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` merged in: objects merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        out[key] = merge_json(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class DeletionSummary:
    """What deleting some items takes with it: the items, their files that no other item
    shares (content-addressed files are kept while any item refers to them), their
    annotations, and every feature vector of both (all sets)."""
    items: int
    files: int
    annotations: int
    features: int

    def describe(self) -> str:
        """One sentence for a confirmation, e.g. "3 items, 2 files, 1 annotation and 6 feature vectors"."""
        def n(count: int, word: str) -> str:
            return f"{count:,} {word}{'' if count == 1 else 's'}"

        return (f"{n(self.items, 'item')}, {n(self.files, 'file')} no longer referenced by any other item, "
                f"{n(self.annotations, 'annotation')} and {n(self.features, 'feature vector')}")


def default_home() -> Path:
    return Path(os.environ.get("FEATURELAB_HOME", "./workspace"))


class Workspace:
    """A folder with ``catalog.db`` (SQLite), ``blobs/`` (item files), ``chroma/`` and ``cache/``.

    The workspace owns the catalog, the files and the index, and writes items, annotations
    and features; it hands searching to ``self.engine`` (``store.search.engine``) and the
    index's upkeep to ``self.index_sync`` (``store.index.sync``)."""

    def __init__(self, path: Path, chroma_url: str | None = None) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "cache").mkdir(exist_ok=True)
        self.catalog = Catalog(self.path / "catalog.db")
        self.blobs = BlobStore(self.path / "blobs")
        self.blobs.remove_stale_temp_files()
        namespace = self.catalog.meta("workspace_id")
        if namespace is None:
            namespace = new_id()[:12]
            self.catalog.set_meta("workspace_id", namespace)
        self.id = namespace
        self._owner_lock: OwnerLock | None = None
        self._index: VectorIndex | None = None
        self._index_ready = False  # opened, and its opening chores (orphans, damage) done
        self._index_open_lock = threading.RLock()  # the warm-up thread, the index worker and page runs race to open
        self.index_damage: dict[str, str] = {}  # what the first open's probe found (set id or '*' -> reason)
        self.rebuilt_at_open: list[str] = []  # the sets whose index the first open found damaged
        known_files: dict | None = None
        if not chroma_url:
            self._owner_lock = OwnerLock(self.path / "chroma.lock")
            if self._owner_lock.try_acquire():  # embedded Chroma itself opens at first use (see ``index``)
                known_files = index_guard.known_files(self.catalog)
        self.vectors = VectorFiles(self.path / "cache" / "vectors", self.catalog.path)
        self.index_sync = IndexSync(self, known_files)
        self.engine = SearchEngine(self)
        self.datasets = DatasetsRepo(self)
        self.feature_sets = FeatureSetsRepo(self)
        remove_abandoned_imports(self)
        if chroma_url:  # a server serialises writers itself, and opening one imports nothing new
            self._index = VectorIndex(self.path / "chroma", chroma_url, namespace)
            self._after_index_open()
        self.index_sync.start()  # catches up, in the background, whatever earlier runs left behind

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, chroma_url: str | None = None) -> "Workspace":
        """Open (or create) a workspace. ``path`` defaults to ``$FEATURELAB_HOME`` or
        ``./workspace``; ``chroma_url`` to ``$FEATURELAB_CHROMA_URL`` (embedded when unset)."""
        return cls(Path(path) if path else default_home(), chroma_url or chroma_url_from_env())

    def close(self) -> None:
        """Stop the index worker (after its current step), close the index (recording its
        files as good), the catalog, and give up the index's lock."""
        self.index_sync.stop()
        self.vectors.close()
        with self._index_open_lock:
            if self._index is not None:
                self._index.close()
                self.note_index_files()  # after the close: it flushes the HNSW files
                self._index, self._index_ready = None, False
        self.catalog.close()
        if self._owner_lock is not None:
            self._owner_lock.release()  # and with it the right to open the index

    @property
    def owns_index(self) -> bool:
        """Whether this process keeps the index: a Chroma server's client, or the holder of
        ``chroma.lock`` (embedded Chroma, opened or not yet)."""
        return self._index is not None or (self._owner_lock is not None and self._owner_lock.fd is not None)

    @property
    def index_if_open(self) -> VectorIndex | None:
        """The index if it is open already (None otherwise): for callers that must not open it.
        While another thread opens it, waits for that open to finish (its opener sees it at once)."""
        if self._index_ready or self._index is None:
            return self._index if self._index_ready else None
        with self._index_open_lock:
            return self._index

    @property
    def index(self) -> VectorIndex | None:
        """The Chroma index, opened at its first use (importing chromadb and probing its files
        costs seconds: the app's first page does not wait for it); None when another process
        owns it. The first open drops orphaned collections and rebuilds damaged ones
        (``index_damage``, ``rebuilt_at_open``) before any other thread sees the index."""
        if self._index_ready or not self.owns_index:
            return self._index if self._index_ready else None
        with self._index_open_lock:  # reentrant: the opening chores use the index themselves
            if self._index is None and self.owns_index:
                self._index, self.index_damage = index_guard.open_embedded(self.path / "chroma", self.catalog, self.id)
                self._after_index_open()
            return self._index

    def _after_index_open(self) -> None:
        self.index_sync.drop_orphans()
        self.rebuilt_at_open = self.index_sync.rebuild_damaged()
        self.note_index_files()
        self._index_ready = True

    @property
    def index_location(self) -> str:
        if self._index is not None:
            return self._index.location
        if self.owns_index:
            return "embedded (opens at first use)"
        return f"embedded, owned by {self._owner_lock.holder()}"

    def require_index(self) -> VectorIndex:
        """The Chroma index, or a clear refusal when another process owns it."""
        index = self.index
        if index is None:
            raise WorkspaceBusy(
                f"the Chroma index of {self.path} is held by {self._owner_lock.holder()}. Stop that process "
                "(e.g. the app) and run this again, or use a Chroma server (FEATURELAB_CHROMA_URL) to share it"
            )
        return index

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def import_dataset(self, path: str | os.PathLike, *, name: str | None = None, progress: ProgressFn | None = None) -> Dataset:
        """Import an export folder or zip as a new dataset (see ``store.io.transfer``)."""
        return import_dataset(self, path, name=name, progress=progress)

    def export_dataset(self, dataset: Dataset, local_path: str | os.PathLike, **kwargs: Any) -> Path:
        """Export a dataset to a folder or zip (see ``store.io.transfer.export_dataset``)."""
        return export_dataset(self, dataset, local_path, **kwargs)

    # ---- the repositories that records hand out (``dataset.items``, ``item.features``...) ----
    def items_of(self, dataset_id: str) -> ItemsRepo:
        return ItemsRepo(self, dataset_id)

    def annotations_of_dataset(self, dataset_id: str) -> DatasetAnnotations:
        return DatasetAnnotations(self, dataset_id)

    def annotations_of_item(self, item: Item) -> ItemAnnotations:
        return ItemAnnotations(self, item)

    def features_of(self, feature_set: FeatureSet | None = None, entity_id: str | None = None) -> FeaturesRepo:
        """The features of one set, or of one entity across all sets."""
        return FeaturesRepo(self, feature_set=feature_set, entity_id=entity_id)

    # ---- summary -------------------------------------------------------------------
    def info(self) -> dict:
        c = self.catalog
        return {
            "path": str(self.path.resolve()),
            "chroma": self.index_location,
            "datasets": c.scalar("SELECT COUNT(*) FROM datasets"),
            "items": c.scalar("SELECT COUNT(*) FROM items"),
            "annotations": c.scalar("SELECT COUNT(*) FROM annotations"),
            "feature_sets": [
                {**fs.to_json(), "vectors": fs.count(), "index": self.index_state(fs.id).describe()}
                for fs in self.feature_sets.list()
            ],
            **({"index_error": self.index_sync.error} if self.index_sync.error else {}),
        }

    # ---- items ---------------------------------------------------------------------
    def item_from_row(self, row) -> Item:
        return Item(
            id=row["id"], dataset_id=row["dataset_id"], name=row["name"], dir=row["dir"], kind=row["kind"],
            mimetype=row["mimetype"], size=row["size"], sha256=row["sha256"], width=row["width"],
            height=row["height"], hidden=bool(row["hidden"]), metadata=json.loads(row["metadata"]),
            created_at=row["created_at"], _ws=self,
        )

    def get_item(self, item_id: str) -> Item:
        row = self.catalog.one("SELECT * FROM items WHERE id=?", (item_id,))
        if row is None:
            raise NotFound(f"no item with id {item_id!r}: it was deleted, or the id is mistyped (the Datasets page and "
                           "`python -m store items --dataset NAME` list the items)")
        return self.item_from_row(row)

    def rows_by_ids(self, sql: str, ids: Sequence[str], params: tuple = ()) -> list:
        """Rows of ``sql`` (with ``{}`` where the id placeholders go), in chunks SQLite accepts."""
        rows = []
        for start in range(0, len(ids), 900):
            chunk = list(ids[start : start + 900])
            rows += self.catalog.all(sql.format(",".join("?" * len(chunk))), [*params, *chunk])
        return rows

    _ITEM_COLUMNS = "id, dataset_id, name, dir, kind, mimetype, size, sha256, width, height, hidden, metadata, created_at"

    def items_by_ids(self, ids: Sequence[str]) -> dict[str, Item]:
        """Items by id (missing ids left out). Rows are read by position: this runs once per
        search page, where looking columns up by name was a tenth of the query's time."""
        rows = self.rows_by_ids(f"SELECT {self._ITEM_COLUMNS} FROM items WHERE id IN ({{}})", ids)
        return {
            r[0]: Item(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]),
                       {} if r[11] == "{}" else json.loads(r[11]), r[12], self)
            for r in rows
        }

    def update_item(self, item_id: str, *, hidden: bool | None = None, metadata: dict | None = None) -> Item:
        self.get_item(item_id)
        with self.catalog.transaction() as c:
            if hidden is not None:
                if not isinstance(hidden, bool):
                    raise InvalidInput(f"hidden must be true or false, got {hidden!r}")
                c.execute("UPDATE items SET hidden=? WHERE id=?", (int(hidden), item_id))
            if metadata is not None:
                c.execute("UPDATE items SET metadata=? WHERE id=?", (check_metadata(metadata), item_id))
        return self.get_item(item_id)

    def upload_one(
        self, dataset_id: str, name: str, data: bytes, folder: str = "/", *, copy: bool = False,
        metadata: dict | None = None,
    ) -> UploadResult:
        try:
            display = safe_name(name)
            folder = normalize_dir(folder)
            check_upload_size(display, len(data))
            meta_json = check_metadata(metadata or {})
            facts = inspect(data, display)
        except InvalidInput as exc:
            return UploadResult(str(name), "rejected", None, str(exc))
        sha = self.blobs.put(data)
        with self.catalog.transaction() as c:
            if not copy:
                row = c.execute(
                    "SELECT * FROM items WHERE dataset_id=? AND sha256=? ORDER BY created_at LIMIT 1",
                    (dataset_id, sha),
                ).fetchone()
                if row is not None:
                    item = self.item_from_row(row)
                    return UploadResult(display, "duplicate", item, f"same content as {item.filename}; kept that item")
            final = free_item_name(c, dataset_id, folder, display)
            item_id = new_id()
            c.execute(
                "INSERT INTO items (id, dataset_id, name, dir, kind, mimetype, size, sha256, width, height,"
                " hidden, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?)",
                (item_id, dataset_id, final, folder, facts.kind, facts.mimetype, len(data), sha,
                 facts.width, facts.height, meta_json, time.time()),
            )
        message = "" if final == display else f"renamed to {final}: {display} already exists in {folder}"
        return UploadResult(display, "added", self.get_item(item_id), message)

    def delete_items(self, item_ids: Sequence[str]) -> int:
        """Delete items with their annotations and every feature of both (all sets)."""
        ids = list(item_ids)
        if not ids:
            return 0
        shas: set[str] = set()
        touched: set[str] = set()
        with self.catalog.transaction() as c:
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                shas.update(r[0] for r in c.execute(f"SELECT sha256 FROM items WHERE id IN ({marks})", chunk))
                ann = [r[0] for r in c.execute(f"SELECT id FROM annotations WHERE item_id IN ({marks})", chunk)]
                touched |= self._delete_features_of_entities(c, chunk + ann)
                c.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
        self.after_feature_write(touched)
        self._drop_unreferenced_blobs(shas)
        return len(ids)

    def deletion_summary(self, item_ids: Sequence[str]) -> DeletionSummary:
        """What ``delete_items(item_ids)`` would delete, counted without deleting (unknown ids
        count for nothing)."""
        ids = list(dict.fromkeys(item_ids))
        inside: dict[str, int] = {}
        for sha, count in self.rows_by_ids("SELECT sha256, COUNT(*) FROM items WHERE id IN ({}) GROUP BY sha256", ids):
            inside[sha] = inside.get(sha, 0) + count
        shas = list(inside)
        if len(shas) > 900:  # no index on sha256 alone: one scan beats a scan per chunk
            everywhere = dict(self.catalog.all("SELECT sha256, COUNT(*) FROM items GROUP BY sha256"))
        else:
            everywhere = dict(self.rows_by_ids("SELECT sha256, COUNT(*) FROM items WHERE sha256 IN ({}) GROUP BY sha256", shas))
        ann = [r[0] for r in self.rows_by_ids("SELECT id FROM annotations WHERE item_id IN ({})", ids)]
        features = sum(r[0] for r in self.rows_by_ids("SELECT COUNT(*) FROM features WHERE entity_id IN ({})", ids + ann))
        return DeletionSummary(items=sum(inside.values()), files=sum(1 for s in shas if everywhere[s] == inside[s]),
                               annotations=len(ann), features=features)

    def _drop_unreferenced_blobs(self, shas: Iterable[str]) -> None:
        for sha in shas:
            if self.catalog.one("SELECT 1 FROM items WHERE sha256=? LIMIT 1", (sha,)) is None:
                self.blobs.delete(sha)

    # ---- annotations ---------------------------------------------------------------
    def annotation_from_row(self, row) -> Annotation:
        return Annotation(
            id=row["id"], item_id=row["item_id"], label=row["label"], type=row["type"],
            coordinates=json.loads(row["coordinates"]), metadata=json.loads(row["metadata"]),
            created_at=row["created_at"], _ws=self,
        )

    def add_box(self, item: Item, label: str, box: Sequence[float], metadata: dict | None = None) -> Annotation:
        """A box ``(left, top, right, bottom)`` in pixels on an image item."""
        if item.kind != "image":
            raise InvalidInput(f"{item.filename} is a {item.kind} item; boxes go on images")
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput("a box needs a non-empty label")
        if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
            raise InvalidInput(f"a box is four finite numbers (left, top, right, bottom), got {box!r}")
        left, top, right, bottom = (float(v) for v in box)
        if not (0 <= left < right <= item.width and 0 <= top < bottom <= item.height):
            raise InvalidInput(
                f"box {box!r} is not inside {item.filename} ({item.width}x{item.height}) with left<right, top<bottom"
            )
        ann_id = new_id()
        coords = {"left": left, "top": top, "right": right, "bottom": bottom}
        with self.catalog.transaction() as c:
            c.execute(
                "INSERT INTO annotations (id, item_id, label, type, coordinates, metadata, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (ann_id, item.id, label.strip(), "box", json.dumps(coords), check_json(metadata or {}, "metadata"),
                 time.time()),
            )
        return self.get_annotation(ann_id)

    def get_annotation(self, annotation_id: str) -> Annotation:
        row = self.catalog.one("SELECT * FROM annotations WHERE id=?", (annotation_id,))
        if row is None:
            raise NotFound(f"no annotation with id {annotation_id!r}")
        return self.annotation_from_row(row)

    def delete_annotations(self, annotation_ids: Sequence[str]) -> int:
        ids = list(annotation_ids)
        with self.catalog.transaction() as c:
            touched = self._delete_features_of_entities(c, ids)
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                c.execute(f"DELETE FROM annotations WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        self.after_feature_write(touched)
        return len(ids)

    # ---- features ------------------------------------------------------------------
    def feature_from_row(self, row) -> Feature:
        value = np.frombuffer(row["value"], dtype=np.float32).copy()
        return Feature(
            id=row["id"], feature_set_id=row["feature_set_id"], entity_id=row["entity_id"],
            dataset_id=row["dataset_id"], value=value, created_at=row["created_at"], _ws=self,
        )

    def get_feature(self, feature_id: str) -> Feature:
        row = self.catalog.one("SELECT * FROM features WHERE id=?", (feature_id,))
        if row is None:
            raise NotFound(f"no feature vector with id {feature_id!r}")
        return self.feature_from_row(row)

    def query_vector(self, fs: FeatureSet, value: list[float] | str | np.ndarray) -> np.ndarray:
        """A query for ``fs`` (a vector, or the id of a stored feature) as a checked float32 vector."""
        if isinstance(value, str):
            feature = self.get_feature(value)
            vec = feature.value
        else:
            n = np.shape(value)[-1] if np.ndim(value) >= 1 else 0
            if np.ndim(value) != 1 or n != fs.size:
                raise InvalidInput(f"the query vector has size {n} but feature set {fs.name!r} holds size {fs.size}")
            vec = self._check_values(fs, value, 1)[0]
        if vec.shape != (fs.size,):
            raise InvalidInput(f"the query has size {vec.shape[0]} but feature set {fs.name!r} holds size {fs.size}")
        return vec

    def existing_ids(self, table: str, ids: Sequence[str]) -> dict[str, str]:
        """Which of ``ids`` name an item (``table`` "items") or an annotation ("annotations"),
        with the dataset each is in. One query over all of them (the ids go in as one JSON
        array): a million take seconds, where chunks of 900 placeholders took three times longer."""
        if table == "items":
            sql = "SELECT items.id, items.dataset_id FROM json_each(?) AS wanted JOIN items ON items.id = wanted.value"
        else:
            sql = ("SELECT annotations.id, items.dataset_id FROM json_each(?) AS wanted"
                   " JOIN annotations ON annotations.id = wanted.value JOIN items ON items.id = annotations.item_id")
        with self.catalog.lock:
            cursor = self.catalog.conn.cursor()
            cursor.row_factory = None  # plain tuples: a Row per id costs more than the lookup
            return dict(cursor.execute(sql, (json.dumps(list(ids)),)).fetchall())

    def _resolve_entities(self, fs: FeatureSet, entities: Sequence[Any]) -> tuple[list[str], list[str]]:
        """The entity ids and the dataset id of each, checked to exist, to match the set's
        type and to appear once."""
        ids = []
        for e in entities:
            eid = e.id if isinstance(e, (Item, Annotation)) else e
            if not isinstance(eid, str):
                raise InvalidInput(f"entity must be an item, an annotation or an id string, got {type(e).__name__}")
            if fs.entity_type == "item" and isinstance(e, Annotation) or fs.entity_type == "annotation" and isinstance(e, Item):
                raise InvalidInput(f"feature set {fs.name!r} holds {fs.entity_type} vectors; got a {type(e).__name__.lower()}")
            ids.append(eid)
        found = self.existing_ids("items" if fs.entity_type == "item" else "annotations", ids)
        if len(found) != len(ids):
            missing = [i for i in dict.fromkeys(ids) if i not in found]
            if not missing:
                raise InvalidInput("an entity appears twice in one bulk create; give each entity one vector")
            raise NotFound(
                f"unknown {fs.entity_type} id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                f"({len(missing)} in all); nothing was written. Upload the items first, or check the ids"
            )
        return ids, list(map(found.__getitem__, ids))

    def _check_values(self, fs: FeatureSet, values: Any, count: int | None) -> np.ndarray:
        if isinstance(values, np.ndarray) and values.dtype == np.float32:
            arr = values  # already float32: no float64 copy of a large bulk batch (nor overflow to check)
        else:
            try:
                arr = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"vector values must be numbers: {exc}") from exc
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != fs.size:
            got = arr.shape[-1] if arr.ndim >= 1 else 0
            raise InvalidInput(
                f"feature set {fs.name!r} holds vectors of size {fs.size}, got size {got}; nothing was written"
            )
        if count is not None and arr.shape[0] != count:
            raise InvalidInput(f"{arr.shape[0]} vectors for {count} entities; give one vector per entity")
        suspect = np.flatnonzero(~np.isfinite(arr @ np.ones(arr.shape[1], arr.dtype)))  # one pass, no n x size mask
        bad = suspect[~np.isfinite(arr[suspect]).all(axis=1)]  # a NaN or inf makes its row's sum one; a large sum only may
        if len(bad):
            raise InvalidInput(f"vector {int(bad[0])} holds NaN or infinity; nothing was written. Fix the values")
        if arr.dtype != np.float32 and (np.abs(arr) > np.finfo(np.float32).max).any():
            raise InvalidInput("a value is too large for float32; nothing was written")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def create_features(self, fs: FeatureSet, values: Any, entities: Sequence[Any]) -> list[Feature]:
        """Create one feature per entity, replacing any the set already has for it.
        All are checked first: on any error nothing is written."""
        entities = list(entities)
        if not entities:
            return []
        # The index worker waits until the whole call, records included, is over: their 0.6 s
        # per 100k was a pause long enough for it to start decoding blobs between two batches.
        with self.index_sync.writing():
            arr = self._check_values(fs, values, len(entities))
            entity_ids, dataset_ids = self._resolve_entities(fs, entities)
            now = time.time()
            ids = new_ids(len(entity_ids))
            self._insert_features(fs, ids, entity_ids, dataset_ids, arr, now)
            self.after_feature_write({fs.id})
            # The records hold rows of one array: the caller's, copied (they may change it later), or ours.
            kept = arr.copy() if isinstance(values, np.ndarray) and np.may_share_memory(arr, values) else arr
            return list(map(Feature, ids, repeat(fs.id), entity_ids, dataset_ids, kept, repeat(now), repeat(self)))

    def _insert_features(self, fs: FeatureSet, ids: list[str], entity_ids: list[str], dataset_ids: list[str],
                         arr: np.ndarray, now: float) -> None:
        """One transaction: the entities' old vectors in the set go, the new rows come in."""
        flat, width = memoryview(arr).cast("B"), arr.shape[1] * 4  # slices bind as the vectors' bytes, uncopied
        blobs = map(flat.__getitem__, map(slice, range(0, len(flat), width), range(width, len(flat) + width, width)))
        with self.catalog.transaction() as c:
            if c.execute("SELECT 1 FROM feature_sets WHERE id=?", (fs.id,)).fetchone() is None:
                raise NotFound(f"feature set {fs.name!r} was deleted")
            if c.execute("SELECT 1 FROM features WHERE feature_set_id=? LIMIT 1", (fs.id,)).fetchone():
                # An entity's old vector goes; the new one is a new row (a new rid, so the index
                # and the vector files see it as written after their marks). One statement, one
                # index probe per entity (CROSS JOIN keeps json_each outside): twice as fast as
                # a DELETE per entity, and no more than a probe where none had a vector yet.
                c.execute("DELETE FROM features WHERE rid IN (SELECT f.rid FROM json_each(?) AS w CROSS JOIN"
                          " features AS f ON f.feature_set_id=? AND f.entity_id=w.value)",
                          (json.dumps(entity_ids), fs.id))
            c.executemany(
                "INSERT INTO features (id, feature_set_id, entity_id, dataset_id, value, created_at)"
                " VALUES (?,?,?,?,?,?)",
                zip(ids, repeat(fs.id), entity_ids, dataset_ids, blobs, repeat(now)),
            )
            c.execute("UPDATE feature_sets SET version = version + 1 WHERE id=?", (fs.id,))

    def _delete_features_of_entities(self, c, entity_ids: Sequence[str]) -> set[str]:
        """Inside a transaction: delete features, leave tombstones for the index; return touched sets."""
        touched: set[str] = set()
        for start in range(0, len(entity_ids), 900):
            chunk = list(entity_ids[start : start + 900])
            marks = ",".join("?" * len(chunk))
            rows = c.execute(f"SELECT feature_set_id, entity_id FROM features WHERE entity_id IN ({marks})", chunk).fetchall()
            if rows:
                c.executemany("INSERT INTO index_tombstones (feature_set_id, entity_id) VALUES (?,?)", [tuple(r) for r in rows])
                c.execute(f"DELETE FROM features WHERE entity_id IN ({marks})", chunk)
                touched.update(r[0] for r in rows)
        for set_id in touched:
            c.execute("UPDATE feature_sets SET version = version + 1 WHERE id=?", (set_id,))
        return touched

    def delete_features(self, feature_ids: Sequence[str]) -> int:
        ids = list(feature_ids)
        touched: set[str] = set()
        with self.catalog.transaction() as c:
            for fid in ids:
                row = c.execute("SELECT feature_set_id, entity_id FROM features WHERE id=?", (fid,)).fetchone()
                if row is None:
                    raise NotFound(f"no feature vector with id {fid!r}; nothing was deleted")
                c.execute("INSERT INTO index_tombstones (feature_set_id, entity_id) VALUES (?,?)", tuple(row))
                c.execute("DELETE FROM features WHERE id=?", (fid,))
                touched.add(row[0])
            for set_id in touched:
                c.execute("UPDATE feature_sets SET version = version + 1 WHERE id=?", (set_id,))
        self.after_feature_write(touched)
        return len(ids)

    def after_feature_write(self, set_ids: Iterable[str]) -> None:
        """After a committed write: the index and the vector files catch up in the background."""
        self.index_sync.written(set(set_ids))

    # ---- the vector index: upkeep in store.index.sync ------------------------------------
    def sync_index(self, set_id: str | None = None) -> None:
        """Bring Chroma up to date with the catalog now, in this thread (see ``IndexSync.sync``)."""
        self.index_sync.sync(set_id)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Block until the background worker has brought every set's index up to date (True),
        or ``timeout`` seconds passed (False). A process that does not own the index returns at once."""
        return self.index_sync.wait(timeout)

    def index_state(self, set_id: str) -> IndexState:
        """How far a set's index is behind the catalog (``describe()`` says it in words)."""
        return self.index_sync.state(set_id)

    def check_index(self, set_id: str) -> dict:
        """Compare the index with the catalog for one set."""
        return self.index_sync.check(set_id)

    def repair_index(self, set_id: str | None = None) -> list[str]:
        """Rebuild Chroma collections from the vectors in the catalog; return the set ids rebuilt."""
        return self.index_sync.repair(set_id)

    def note_index_files(self) -> None:
        """Record the embedded index's HNSW files as good (this process wrote them whole)."""
        self.index_sync.note_files()

    # ---- search: answered by store.search.engine ----------------------------------------
    def search(self, filters: Any, *, dataset_id: str | None = None) -> Pages:
        """Run a filter (the seed's custom_filter JSON, a ``Filters``, or a ``Query``)."""
        return self.engine.search(filters, dataset_id=dataset_id)

    def bulk(self, filters: Any, *, dataset_id: str | None = None) -> int:
        """Run a filter's bulk operation (``"delete": true`` or ``"update": {...}``, as the SDK
        sends them) on every record it passes, paging ignored, all or nothing. Returns how many."""
        query = q.parse(filters)
        op = query.operation
        if op is None:
            raise InvalidInput('this filter has no operation; add "delete": true or "update": {...}')
        if query.vector is not None:
            raise InvalidInput("a bulk operation takes a plain filter, not a $euclid search; search, then delete the ids")
        ids = self.engine.allowed_ids(query, dataset_id)
        if op.kind == "delete":
            return self.delete_items(ids) if query.resource == "items" else self.delete_annotations(ids)
        return self._update_items(ids, op.values)

    def _update_items(self, item_ids: Sequence[str], values: dict) -> int:
        """Merge ``values["metadata"]`` into each item's metadata and set ``hidden``, in one transaction."""
        patch = values.get("metadata") or {}  # checked by the language: no metadata.system in it
        with self.catalog.transaction() as c:
            for start in range(0, len(item_ids), 900) if patch else ():
                chunk = list(item_ids[start : start + 900])
                rows = c.execute(f"SELECT id, metadata FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                for item_id, metadata in rows.fetchall():
                    merged = merge_json(json.loads(metadata), patch)
                    c.execute("UPDATE items SET metadata=? WHERE id=?", (check_json(merged, "metadata"), item_id))
            if values.get("hidden") is True:  # hiding is undoable, as near-duplicate hiding is
                hide_items(c, list(item_ids), {"kind": "bulk update", "count": len(item_ids)})
            elif values.get("hidden") is False:
                c.executemany("UPDATE items SET hidden=0 WHERE id=?", [(i,) for i in item_ids])
        return len(item_ids)

    def matrix(self, fs: FeatureSet) -> exact.VectorMatrix:
        """All vectors of a set in memory, cached until the set's version changes."""
        return self.engine.matrix(fs)

    def distance_profile(self, filters: Any, *, dataset_id: str | None = None) -> np.ndarray:
        """Every distance to a search's query among the vectors its item filters let through
        (its k and distance limit aside): the histogram under the results."""
        return self.engine.distance_profile(filters, dataset_id=dataset_id)

    def distances_to(self, fs: FeatureSet, value: list[float] | str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every vector's distance to a query (a vector or a feature id), in float32 (see
        ``SearchEngine.distances_to``)."""
        return self.engine.distances_to(fs, value)

    def query_for_entities(self, fs: FeatureSet, entity_ids: Sequence[str]) -> str | list[float]:
        """A query standing for some of a set's entities ("search from here"): the feature id
        of a single entity, or the mean of several entities' vectors."""
        return self.engine.query_for_entities(fs, entity_ids)
