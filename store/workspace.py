"""The facade: one ``Workspace`` holds the catalog, the item files and the vector index.

    ws = Workspace.open("./workspace")
    ds = ws.datasets.create("pets")
    ds.items.upload(["cat.jpg"], dir="/cats")
    fs = ws.feature_sets.create(name="clip", size=512)
    fs.features.create(value=vector, entity=item)
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .index import guard as index_guard
from .search import exact, language as q
from .blobs import BlobStore
from .catalog import Catalog
from .errors import InvalidInput, NotFound, WorkspaceBusy
from .locks import OwnerLock, exclusive
from .files import check_upload_size, inspect, normalize_dir, safe_name
from .ids import new_id
from .records import Annotation, Dataset, Feature, FeatureSet, Item, Pages, UploadResult
from .repos import DatasetsRepo, FeatureSetsRepo, check_json
from .index.chroma import VectorIndex, chroma_url_from_env

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]


def default_home() -> Path:
    return Path(os.environ.get("FEATURELAB_HOME", "./workspace"))


class Workspace:
    """A folder with ``catalog.db`` (SQLite), ``blobs/`` (item files), ``chroma/`` and ``cache/``."""

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
        self.index: VectorIndex | None = None
        self.index_damage: dict[str, str] = {}  # what the open-time probe found (set id or '*' -> reason)
        self._index_files: dict | None = None
        if chroma_url:  # a server serialises writers itself
            self.index = VectorIndex(self.path / "chroma", chroma_url, namespace)
        else:
            self._owner_lock = OwnerLock(self.path / "chroma.lock")
            if self._owner_lock.try_acquire():  # probed first in a child when its files changed (never a segfault here)
                self._index_files = index_guard.known_files(self.catalog)
                self.index, self.index_damage = index_guard.open_embedded(self.path / "chroma", self.catalog, namespace)
        self._matrices: dict[str, exact.VectorMatrix] = {}
        self._matrix_lock = threading.Lock()
        self._allowed_cache: dict[tuple, np.ndarray] = {}  # filter -> matrix rows, see _allowed_rows
        self.datasets = DatasetsRepo(self)
        self.feature_sets = FeatureSetsRepo(self)
        from .io.transfer import remove_abandoned_imports

        remove_abandoned_imports(self)
        self.sync_index()
        self.rebuilt_at_open = self._rebuild_damaged_index()
        self.note_index_files()

    def note_index_files(self) -> None:
        """Record the embedded index's HNSW files as good (this process wrote them whole)."""
        if self.index is not None and self.index.url is None:
            self._index_files = index_guard.note_files(self.catalog, self.path / "chroma", self._index_files)

    def _rebuild_damaged_index(self) -> list[str]:
        """Names of the sets whose index disagreed with the catalog at open (a deleted or
        replaced Chroma folder, say) and was rebuilt from the catalog's vectors."""
        if self.index is None:
            return []
        rebuilt = []
        for fs in self.feature_sets.list():
            state = self.check_index(fs.id)
            if not state["ok"]:
                log.warning("index of %s disagrees with the catalog (%s); rebuilding it", fs.name, state)
                self.repair_index(fs.id)
                rebuilt.append(fs.name)
        return rebuilt

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, chroma_url: str | None = None) -> "Workspace":
        """Open (or create) a workspace. ``path`` defaults to ``$FEATURELAB_HOME`` or
        ``./workspace``; ``chroma_url`` to ``$FEATURELAB_CHROMA_URL`` (embedded when unset)."""
        return cls(Path(path) if path else default_home(), chroma_url or chroma_url_from_env())

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.note_index_files()
        self.catalog.close()
        if self._owner_lock is not None:
            self._owner_lock.release()

    @property
    def index_location(self) -> str:
        if self.index is not None:
            return self.index.location
        return f"embedded, owned by {self._owner_lock.holder()}"

    def require_index(self) -> VectorIndex:
        """The Chroma index, or a clear refusal when another process owns it."""
        if self.index is None:
            raise WorkspaceBusy(
                f"the Chroma index of {self.path} is held by {self._owner_lock.holder()}. Stop that process "
                "(e.g. the app) and run this again, or use a Chroma server (FEATURELAB_CHROMA_URL) to share it"
            )
        return self.index

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def import_dataset(self, path: str | os.PathLike, *, name: str | None = None, progress: ProgressFn | None = None) -> Dataset:
        """Import an export folder or zip as a new dataset (see ``store.io.transfer``)."""
        from .io.transfer import import_dataset

        return import_dataset(self, path, name=name, progress=progress)

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
                {**fs.to_json(), "vectors": fs.count()} for fs in self.feature_sets.list()
            ],
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
            raise NotFound(f"no item with id {item_id!r}; list items with `python -m store items --dataset NAME`")
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
                if not isinstance(metadata, dict):
                    raise InvalidInput("metadata must be a JSON object (a dict)")
                c.execute("UPDATE items SET metadata=? WHERE id=?", (check_json(metadata, "metadata"), item_id))
        return self.get_item(item_id)

    def upload_one(
        self, dataset_id: str, name: str, data: bytes, folder: str = "/", *, copy: bool = False,
        metadata: dict | None = None,
    ) -> UploadResult:
        try:
            display = safe_name(name)
            folder = normalize_dir(folder)
            check_upload_size(display, len(data))
            meta_json = check_json(metadata or {}, "metadata")
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
            final = self.free_name(c, dataset_id, folder, display)
            item_id = new_id()
            c.execute(
                "INSERT INTO items (id, dataset_id, name, dir, kind, mimetype, size, sha256, width, height,"
                " hidden, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?)",
                (item_id, dataset_id, final, folder, facts.kind, facts.mimetype, len(data), sha,
                 facts.width, facts.height, meta_json, time.time()),
            )
        message = "" if final == display else f"renamed to {final}: {display} already exists in {folder}"
        return UploadResult(display, "added", self.get_item(item_id), message)

    @staticmethod
    def free_name(c, dataset_id: str, folder: str, name: str) -> str:
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = name, 1
        while c.execute(
            "SELECT 1 FROM items WHERE dataset_id=? AND dir=? AND name=?", (dataset_id, folder, candidate)
        ).fetchone():
            candidate = f"{stem} ({n}){dot}{ext}"
            n += 1
        return candidate

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

    def _resolve_entities(self, fs: FeatureSet, entities: Sequence[Any]) -> list[tuple[str, str]]:
        """(entity id, dataset id) for each entity, checked to exist and match the set's type."""
        ids = []
        for e in entities:
            eid = e.id if isinstance(e, (Item, Annotation)) else e
            if not isinstance(eid, str):
                raise InvalidInput(f"entity must be an item, an annotation or an id string, got {type(e).__name__}")
            if fs.entity_type == "item" and isinstance(e, Annotation) or fs.entity_type == "annotation" and isinstance(e, Item):
                raise InvalidInput(f"feature set {fs.name!r} holds {fs.entity_type} vectors; got a {type(e).__name__.lower()}")
            ids.append(eid)
        if fs.entity_type == "item":
            sql = "SELECT id, dataset_id FROM items WHERE id IN ({})"
        else:
            sql = "SELECT annotations.id, items.dataset_id FROM annotations JOIN items ON items.id = annotations.item_id WHERE annotations.id IN ({})"
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 900):
            chunk = unique[start : start + 900]
            found.update((r[0], r[1]) for r in self.catalog.all(sql.format(",".join("?" * len(chunk))), chunk))
        missing = [i for i in unique if i not in found]
        if missing:
            raise NotFound(
                f"unknown {fs.entity_type} id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                f"({len(missing)} in all); nothing was written. Upload the items first, or check the ids"
            )
        return [(i, found[i]) for i in ids]

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
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise InvalidInput(
                f"vector {int(np.flatnonzero(bad)[0])} holds NaN or infinity; nothing was written. Fix the values"
            )
        if arr.dtype != np.float32 and (np.abs(arr) > np.finfo(np.float32).max).any():
            raise InvalidInput("a value is too large for float32; nothing was written")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def create_features(self, fs: FeatureSet, values: Any, entities: Sequence[Any]) -> list[Feature]:
        """Create one feature per entity, replacing any the set already has for it.
        All are checked first: on any error nothing is written."""
        entities = list(entities)
        if not entities:
            return []
        arr = self._check_values(fs, values, len(entities))
        resolved = self._resolve_entities(fs, entities)
        if len({e for e, _ in resolved}) != len(resolved):
            raise InvalidInput("an entity appears twice in one bulk create; give each entity one vector")
        now = time.time()
        ids = [new_id() for _ in resolved]
        rows = [(fid, fs.id, eid, did, arr[i].tobytes(), now) for i, (fid, (eid, did)) in enumerate(zip(ids, resolved))]
        with self.catalog.transaction() as c:
            if c.execute("SELECT 1 FROM feature_sets WHERE id=?", (fs.id,)).fetchone() is None:
                raise NotFound(f"feature set {fs.name!r} was deleted")
            eids = [(fs.id, eid) for eid, _ in resolved]
            c.executemany("DELETE FROM features WHERE feature_set_id=? AND entity_id=?", eids)
            c.executemany(
                "INSERT INTO features (id, feature_set_id, entity_id, dataset_id, value, created_at)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )
            c.execute("UPDATE feature_sets SET version = version + 1 WHERE id=?", (fs.id,))
        self.after_feature_write({fs.id})
        return [
            Feature(fid, fs.id, eid, did, arr[i].copy(), now, self)
            for i, (fid, (eid, did)) in enumerate(zip(ids, resolved))
        ]

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
        for set_id in set_ids:
            self.sync_index(set_id)

    # ---- the vector index ------------------------------------------------------------
    def sync_index(self, set_id: str | None = None, batch: int = 20_000) -> None:
        """Bring Chroma up to date with the catalog: tombstones first, then every feature
        written after the set's high-water mark. Idempotent, so safe to rerun after a crash."""
        if self.index is None:  # another process owns the index and catches up from the catalog
            return
        set_ids = [set_id] if set_id else [r[0] for r in self.catalog.all("SELECT id FROM feature_sets")]
        wrote = False
        with self.catalog.lock, exclusive(self.path / "index-sync.lock"):
            if set_id is None:
                self.index.drop_others(set(set_ids))
            for sid in set_ids:
                tomb = self.catalog.all(
                    "SELECT rowid, entity_id FROM index_tombstones WHERE feature_set_id=? ORDER BY rowid", (sid,)
                )
                if tomb:
                    wrote = True
                    self.index.delete(sid, [r[1] for r in tomb])
                    with self.catalog.transaction() as c:
                        c.execute(
                            "DELETE FROM index_tombstones WHERE feature_set_id=? AND rowid<=?", (sid, tomb[-1][0])
                        )
                mark = self.catalog.scalar("SELECT indexed_rid FROM feature_sets WHERE id=?", (sid,))
                if mark is None:
                    continue
                while True:
                    rows = self.catalog.all(
                        "SELECT rid, entity_id, value FROM features WHERE feature_set_id=? AND rid>? ORDER BY rid LIMIT ?",
                        (sid, mark, batch),
                    )
                    if not rows:
                        break
                    values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                    wrote = True
                    self.index.upsert(sid, [r[1] for r in rows], values)
                    mark = rows[-1][0]
                    with self.catalog.transaction() as c:
                        c.execute("UPDATE feature_sets SET indexed_rid=? WHERE id=?", (mark, sid))
            if wrote:
                self.note_index_files()

    def check_index(self, set_id: str) -> dict:
        """Compare the index with the catalog for one set."""
        index = self.require_index()
        self.sync_index(set_id)
        in_catalog = self.catalog.scalar("SELECT COUNT(*) FROM features WHERE feature_set_id=?", (set_id,))
        try:
            in_index = index.count(set_id)
        except Exception as exc:
            return {"ok": False, "catalog": in_catalog, "index": None, "error": str(exc)}
        return {"ok": in_catalog == in_index, "catalog": in_catalog, "index": in_index}

    def repair_index(self, set_id: str | None = None) -> list[str]:
        """Rebuild Chroma collections from the vectors in the catalog; return the set ids rebuilt."""
        index = self.require_index()
        set_ids = [set_id] if set_id else [r[0] for r in self.catalog.all("SELECT id FROM feature_sets")]
        with self.catalog.lock:
            for sid in set_ids:
                index.drop(sid)
                with self.catalog.transaction() as c:
                    c.execute("UPDATE feature_sets SET indexed_rid=0 WHERE id=?", (sid,))
                    c.execute("DELETE FROM index_tombstones WHERE feature_set_id=?", (sid,))
                self.sync_index(sid)
        return set_ids

    def matrix(self, fs: FeatureSet) -> exact.VectorMatrix:
        """All vectors of a set in memory, cached until the set's version changes."""
        version = self.catalog.scalar("SELECT version FROM feature_sets WHERE id=?", (fs.id,))
        if version is None:
            raise NotFound(f"feature set {fs.name!r} no longer exists")
        with self._matrix_lock:
            cached = self._matrices.get(fs.id)
            if cached is not None and cached.version == version:
                return cached
            with self.catalog.lock:
                rows = self.catalog.conn.execute(
                    "SELECT entity_id, id, value FROM features WHERE feature_set_id=? ORDER BY rid", (fs.id,)
                ).fetchall()
                version = self.catalog.scalar("SELECT version FROM feature_sets WHERE id=?", (fs.id,))
            values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), fs.size)
            m = exact.VectorMatrix(
                entity_ids=np.array([r[0] for r in rows], dtype=str) if rows else np.zeros(0, dtype="<U24"),
                feature_ids=np.array([r[1] for r in rows], dtype=str) if rows else np.zeros(0, dtype="<U24"),
                values=np.ascontiguousarray(values),
                version=version,
            )
            self._matrices[fs.id] = m
            return m

    # ---- search ----------------------------------------------------------------------
    def search(self, filters: Any, *, dataset_id: str | None = None) -> Pages:
        """Run a filter (the seed's custom_filter JSON, a ``Filters``, or a ``Query``)."""
        from .search.filters import Filters

        if isinstance(filters, Filters):
            query = q.parse(filters.prepare())
        elif isinstance(filters, q.Query):
            query = filters
        else:
            query = q.parse(filters)
        return self._run(query, dataset_id)

    def _run(self, query: q.Query, dataset_id: str | None) -> Pages:
        def fetch(page: int) -> Pages:
            nxt = q.Query(query.resource, query.filter, query.vector, page, query.page_size)
            return self._run(nxt, dataset_id)

        if query.vector is None:
            records, total = self._list(query, dataset_id)
        else:
            records, total = self._vector_search(query, dataset_id)
        return Pages(records, total, query.page, query.page_size, fetch)

    def _where(self, query: q.Query, dataset_id: str | None) -> tuple[str, list]:
        where, params = q.compile_where(query.filter, query.resource) if query.filter else ("1", [])
        if dataset_id is not None:
            column = {"items": "items.dataset_id", "annotations": "items.dataset_id", "feature_vectors": "features.dataset_id"}[query.resource]
            where, params = f"({where}) AND {column} = ?", [*params, dataset_id]
        return where, params

    _FROM = {
        "items": "items",
        "annotations": "annotations JOIN items ON items.id = annotations.item_id",
        "feature_vectors": "features",
    }

    def _list(self, query: q.Query, dataset_id: str | None) -> tuple[list, int]:
        where, params = self._where(query, dataset_id)
        table = self._FROM[query.resource]
        order = {"items": "items.dir, items.name, items.id", "annotations": "annotations.created_at, annotations.id",
                 "feature_vectors": "features.rid"}[query.resource]
        select = {"items": "items.*", "annotations": "annotations.*", "feature_vectors": "features.*"}[query.resource]
        total = self.catalog.scalar(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)
        rows = self.catalog.all(
            f"SELECT {select} FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, query.page_size, query.offset],
        )
        make = {"items": self.item_from_row, "annotations": self.annotation_from_row, "feature_vectors": self.feature_from_row}[query.resource]
        return [make(r) for r in rows], total

    def query_vector(self, fs: FeatureSet, value: list[float] | str | np.ndarray) -> np.ndarray:
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

    def distances_to(self, fs: FeatureSet, value: list[float] | str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every vector's distance to a query (a vector or a feature id): ``(entity_ids,
        distances)`` in the set's own order. For pictures (a histogram, a map's colours):
        float32 precision, not the exact ranking that ``search`` gives."""
        vec = self.query_vector(fs, value)
        m = self.matrix(fs)
        squared = m.sq_norms - 2 * (m.values @ vec) + np.float32(vec @ vec)
        return m.entity_ids, np.sqrt(np.maximum(squared, 0, out=squared))

    def query_for_entities(self, fs: FeatureSet, entity_ids: Sequence[str]) -> str | list[float]:
        """A query standing for some of a set's entities ("search from here"): the feature id
        of a single entity, or the mean of several entities' vectors."""
        m = self.matrix(fs)
        rows = m.rows_for(list(dict.fromkeys(entity_ids)))
        if len(rows) == 0:
            raise InvalidInput(f"none of the chosen points has a vector in {fs.name!r} any more; select again")
        if len(rows) == 1:
            return str(m.feature_ids[rows[0]])
        return m.values[rows].astype(np.float64).mean(axis=0).astype(np.float32).tolist()

    def _vector_search(self, query: q.Query, dataset_id: str | None) -> tuple[list, int]:
        clause = query.vector
        fs = self.feature_sets.resolve(clause.feature_set_id)  # an id, or (for hand-written files) a name
        wanted = {"items": "item", "annotations": "annotation"}.get(query.resource)
        if wanted and fs.entity_type != wanted:
            raise InvalidInput(
                f"feature set {fs.name!r} holds {fs.entity_type} vectors; search it with resource "
                f"'{'items' if fs.entity_type == 'item' else 'annotations'}' or 'feature_vectors'"
            )
        vec = self.query_vector(fs, clause.input)
        filtered = bool(query.filter) or dataset_id is not None
        limit = query.offset + query.page_size
        # HNSW cannot rank farthest-first, and a process that does not own the index uses exact search.
        if clause.approximate and not clause.descending and self.index is not None:
            allowed = self._allowed_ids(query, dataset_id) if filtered else None
            self.sync_index(fs.id)  # catch up with writes from other processes
            entity_ids, dists = self.index.query(fs.id, vec, limit, allowed)
            if clause.distance_ops:
                keep = exact._passes(dists, clause.distance_ops)
                entity_ids, dists = [e for e, k in zip(entity_ids, keep) if k], dists[keep]
            total = len(entity_ids)
            page_ids, page_d = entity_ids[query.offset :], dists[query.offset :]
        else:
            m = self.matrix(fs)
            rows = self._allowed_rows(query, dataset_id, m) if filtered else None
            hits = exact.search(m, vec, rows, clause.distance_ops, clause.descending, limit)
            total = hits.total
            page_rows = hits.rows[query.offset :]
            page_ids, page_d = m.entity_ids[page_rows].tolist(), hits.distances[query.offset :]
        return self._records_with_distance(query.resource, fs, page_ids, page_d), total

    def _allowed_ids(self, query: q.Query, dataset_id: str | None) -> list[str]:
        """The entity ids that the query's item / annotation filter lets through."""
        where, params = self._where(query, dataset_id)
        id_col = {"items": "items.id", "annotations": "annotations.id", "feature_vectors": "features.entity_id"}[query.resource]
        return [r[0] for r in self.catalog.all(f"SELECT {id_col} FROM {self._FROM[query.resource]} WHERE {where}", params)]

    def _allowed_rows(self, query: q.Query, dataset_id: str | None, m: exact.VectorMatrix) -> np.ndarray:
        """The matrix rows the filter lets through, kept until the catalog changes: the seed's
        own filter ({"hidden": false}, ...) passes most of a set, and reading 100k ids from
        SQLite costs ten times the search itself, while a user runs query after query with
        the same filter."""
        key = (m.version, id(m), query.resource, dataset_id, json.dumps(query.filter, sort_keys=True, default=str),
               self.catalog.change_stamp())
        with self._matrix_lock:
            rows = self._allowed_cache.get(key)
        if rows is None:
            rows = m.rows_for(self._allowed_ids(query, dataset_id))
            with self._matrix_lock:
                self._allowed_cache[key] = rows
                while len(self._allowed_cache) > 16:
                    self._allowed_cache.pop(next(iter(self._allowed_cache)))
        return rows

    def _records_with_distance(self, resource, fs, entity_ids, distances) -> list:
        if resource == "items":
            found = self.items_by_ids(entity_ids)
        elif resource == "annotations":
            rows = self.rows_by_ids("SELECT * FROM annotations WHERE id IN ({})", entity_ids)
            found = {r["id"]: self.annotation_from_row(r) for r in rows}
        else:
            rows = self.rows_by_ids("SELECT * FROM features WHERE feature_set_id=? AND entity_id IN ({})", entity_ids,
                                     (fs.id,))
            found = {r["entity_id"]: self.feature_from_row(r) for r in rows}
        out = []
        for eid, d in zip(entity_ids, distances):
            rec = found.get(eid)
            if rec is not None:  # deleted between ranking and fetching
                rec.distance = float(d)
                out.append(rec)
        return out
