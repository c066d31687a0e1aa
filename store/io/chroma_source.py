"""An existing Chroma, opened READ-ONLY: a persistent folder or a server URL. List its
collections, load one into memory, search it exactly (``store.search.exact``), map it (the pipeline
of ``store.analysis.projection``), find near-duplicates in it (``store.analysis.duplicates``), or import it into
a feature set.

    with open_source("/data/my-chroma") as src:          # or "http://127.0.0.1:8000"
        print([c.name for c in src.collections()])
        col = src.load("docs")                           # everything in memory; src may close
    hits = col.search("doc-17", k=10, max_distance=0.8)  # true Euclidean, exact
    coords = col.project(method="pca")
    groups = col.near_duplicates(0.05)                   # lists of ids, largest first
    import_collection(ws, col, dataset="docs", feature_set="docs-vectors")

Never written to: Chroma's ``PersistentClient`` writes to its folder on open (measured with
chromadb 1.5.9: it rewrites ``chroma.sqlite3`` and each collection's ``length.bin``, even
when only reading). So a folder is opened from a SNAPSHOT: the SQLite file is copied through
SQLite's backup API from a read-only connection (a consistent copy even while another
process writes), the rest of the folder with ``shutil``, into a temporary folder that
``close()`` removes. The snapshot costs a copy of the folder's size on the temp disk, and
shows the folder as it was when opened. A server is only asked to list, count and get.

A server URL may name a tenant and database: ``http://host:8000/?tenant=t&database=db``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np

from ..index.chroma import connect
from ..search import exact
from ..errors import FeaturelabError, InvalidInput, NotFound
from ..files import safe_name

if TYPE_CHECKING:
    import pandas as pd

    from ..records import Dataset, FeatureSet
    from ..workspace import Workspace

ProgressFn = Callable[[int, int], None]
PAGE_SIZE = 1000  # records per get() while loading
RESERVED_COLUMNS = ("id", "document", "entity_id", "name", "x", "y", "z", "distance", "rank")


def is_url(location: str) -> bool:
    return location.strip().lower().startswith(("http://", "https://"))


@dataclass
class CollectionInfo:
    name: str
    count: int
    dimension: int | None  # None for a collection that holds nothing yet
    metadata: dict
    id: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "count": self.count, "dimension": self.dimension, "metadata": self.metadata,
                "id": self.id}


@dataclass
class CollectionHit:
    rank: int
    id: str
    distance: float  # true Euclidean distance
    document: str | None
    metadata: dict | None

    def to_json(self) -> dict:
        return {"rank": self.rank, "id": self.id, "distance": self.distance, "document": self.document,
                "metadata": self.metadata}


def _snapshot(folder: Path) -> Path:
    """A private copy of a Chroma folder to open (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="featurelab-chroma-snapshot-"))
    copy = tmp / "chroma"
    try:
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("chroma.sqlite3*"))
        source = sqlite3.connect(f"{(folder / 'chroma.sqlite3').resolve().as_uri()}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(copy / "chroma.sqlite3")
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return copy


def _dimension(col) -> int | None:
    dim = getattr(getattr(col, "_model", None), "dimension", None)
    if dim is None and col.count():
        got = col.get(limit=1, include=["embeddings"])
        dim = len(got["embeddings"][0]) if len(got["embeddings"]) else None
    return int(dim) if dim is not None else None


class ChromaSource:
    """An open, read-only Chroma: ``open_source`` makes one. Close it (or use ``with``)."""

    def __init__(self, location: str, client, kind: str, snapshot: Path | None = None) -> None:
        self.location = location
        self.kind = kind  # "folder" or "server"
        self.snapshot = snapshot
        self.client = client
        self._closed = False
        # A forgotten source still removes its snapshot when it is garbage collected.
        self._cleanup = weakref.finalize(self, _release, client, snapshot)

    def __enter__(self) -> "ChromaSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._cleanup()

    def _collection(self, name: str):
        if self._closed:
            raise InvalidInput(f"the Chroma at {self.location} was closed; open it again")
        try:
            return self.client.get_collection(name, embedding_function=None)
        except Exception as exc:
            names = [c.name for c in self.collections()]
            raise NotFound(f"no collection {name!r} in {self.location}; it has {names}") from exc

    def collections(self) -> list[CollectionInfo]:
        """Every collection: name, count, dimension and its metadata, by name."""
        if self._closed:
            raise InvalidInput(f"the Chroma at {self.location} was closed; open it again")
        out = []
        for col in self.client.list_collections():
            out.append(CollectionInfo(col.name, int(col.count()), _dimension(col), dict(col.metadata or {}),
                                      str(col.id)))
        return sorted(out, key=lambda c: c.name)

    def load(self, name: str, *, page_size: int = PAGE_SIZE, progress: ProgressFn | None = None) -> "LoadedCollection":
        """All of one collection in memory: ids, embeddings (float32, as Chroma keeps them),
        documents and metadatas, read in pages of ``page_size``."""
        col = self._collection(name)
        total = int(col.count())
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        documents: list[str | None] = []
        metadatas: list[dict | None] = []
        for offset in range(0, total, page_size):
            got = col.get(include=["embeddings", "documents", "metadatas"], limit=page_size, offset=offset)
            ids += [str(i) for i in got["ids"]]
            if len(got["ids"]):
                chunks.append(np.asarray(got["embeddings"], dtype=np.float64))
            documents += list(got.get("documents") or [None] * len(got["ids"]))
            metadatas += [dict(m) if m else None for m in (got.get("metadatas") or [None] * len(got["ids"]))]
            if progress:
                progress(len(ids), total)
        if len(set(ids)) != len(ids):
            raise FeaturelabError(f"collection {name!r} changed while it was read (an id came twice); load it again")
        dim = _dimension(col) or (chunks[0].shape[1] if chunks else 0)
        wide = np.concatenate(chunks) if chunks else np.zeros((0, dim))
        values = np.ascontiguousarray(wide, dtype=np.float32)  # Chroma stores float32; its API widens to float64
        return LoadedCollection(name=name, location=self.location, ids=ids, values=values, documents=documents,
                                metadatas=metadatas, collection_metadata=dict(col.metadata or {}))


def _release(client, snapshot: Path | None) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # an already stopped client
            pass
    if snapshot is not None:
        shutil.rmtree(snapshot.parent, ignore_errors=True)


def open_source(location: str | os.PathLike) -> ChromaSource:
    """Open a Chroma folder (as a snapshot copy: the folder is never written) or a server
    URL (``http://host:port``, optionally ``?tenant=..&database=..``), read-only."""
    text = str(location).strip()
    if not text:
        raise InvalidInput("give a Chroma folder (with chroma.sqlite3 in it) or a server URL (http://host:8000)")
    if is_url(text):
        parsed = urlparse(text)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        extra = {k: query[k] for k in ("tenant", "database") if query.get(k)}
        try:
            client = connect(url=text, **extra)
        except Exception as exc:
            raise FeaturelabError(f"cannot reach the Chroma server at {text}: {exc}; check the URL and that "
                                  "`chroma run` is up") from exc
        return ChromaSource(text, client, "server")
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder; give the folder a Chroma PersistentClient was opened on")
    if not (folder / "chroma.sqlite3").is_file():
        raise InvalidInput(f"{folder} is not a Chroma folder (it has no chroma.sqlite3); give the folder a "
                           "PersistentClient(path=...) wrote")
    snapshot = _snapshot(folder)
    try:
        client = connect(snapshot)
    except Exception as exc:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
        raise FeaturelabError(f"cannot open the Chroma folder {folder}: {exc}; is it from a newer Chroma?") from exc
    return ChromaSource(str(folder.resolve()), client, "folder", snapshot)


def source_signature(location: str | os.PathLike) -> str:
    """Changes when a folder's files change (for caches keyed by it); a URL is its own
    signature (a server gives no cheap one: reload to see its changes)."""
    text = str(location).strip()
    if is_url(text):
        return text
    digest = hashlib.sha256()
    folder = Path(text).expanduser()
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                digest.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


# ---- one collection in memory --------------------------------------------------------------
@dataclass
class LoadedCollection:
    """One collection's records in memory; row i is ``ids[i]``."""

    name: str
    location: str
    ids: list[str]
    values: np.ndarray  # (n, d) float32, bit for bit what Chroma holds
    documents: list[str | None]
    metadatas: list[dict | None]
    collection_metadata: dict = field(default_factory=dict)
    _matrix: exact.VectorMatrix | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        return int(self.values.shape[1])

    @property
    def matrix(self) -> exact.VectorMatrix:
        """The records as ``store.search.exact``'s matrix (built once)."""
        if self._matrix is None:
            ids = np.array(self.ids, dtype=str) if self.ids else np.zeros(0, dtype="<U1")
            self._matrix = exact.VectorMatrix(entity_ids=ids, feature_ids=ids, values=self.values, version=0)
        return self._matrix

    def row(self, record_id: str) -> int:
        row = self.matrix.row_of.get(str(record_id))
        if row is None:
            raise NotFound(f"no record {record_id!r} in collection {self.name!r}; copy an id from its table")
        return row

    def vector(self, query: str | Sequence[float] | np.ndarray) -> np.ndarray:
        """A record's embedding (by id), or a given vector checked against the dimension."""
        if isinstance(query, str):
            return self.values[self.row(query)]
        try:
            vec = np.asarray(query, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the query vector must be numbers: {exc}") from exc
        if vec.ndim != 1 or vec.shape[0] != self.dimension:
            raise InvalidInput(f"the query vector has size {vec.shape[-1] if vec.ndim else 0}, but collection "
                               f"{self.name!r} holds size {self.dimension}")
        if not np.isfinite(vec).all():
            raise InvalidInput("the query vector holds NaN or infinity")
        return vec.astype(np.float32)

    def search(self, query: str | Sequence[float] | np.ndarray, k: int | None = 10,
               max_distance: float | None = None) -> list[CollectionHit]:
        """Exact nearest records by true Euclidean distance (``store.search.exact``): the ``k``
        nearest (None: all), only those within ``max_distance`` when given. A query by id
        finds the record itself first, at distance 0."""
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise InvalidInput(f"k must be a whole number of at least 1, got {k!r}")
        ops = {}
        if max_distance is not None:
            if not isinstance(max_distance, (int, float)) or not math.isfinite(max_distance) or max_distance < 0:
                raise InvalidInput(f"max_distance must be a number of at least 0, got {max_distance!r}")
            ops["$lte"] = float(max_distance)
        if not len(self):
            return []
        hits = exact.search(self.matrix, self.vector(query), None, ops, False, k)
        return [CollectionHit(rank, self.ids[row], float(d), self.documents[row], self.metadatas[row])
                for rank, (row, d) in enumerate(zip(hits.rows.tolist(), hits.distances.tolist()), 1)]

    def table(self, rows: Sequence[int] | None = None) -> "pd.DataFrame":
        """``id``, ``document`` and one column per metadata key (``metadata.<key>`` where the
        key is a reserved column name), one row per record (or per ``rows``)."""
        import pandas as pd

        rows = range(len(self)) if rows is None else rows
        keys = list(dict.fromkeys(k for r in rows for k in (self.metadatas[r] or {})))
        frame = pd.DataFrame({"id": [self.ids[r] for r in rows], "document": [self.documents[r] for r in rows]})
        for key in keys:
            column = f"metadata.{key}" if key in RESERVED_COLUMNS else key
            frame[column] = [(self.metadatas[r] or {}).get(key) for r in rows]
        return frame

    def hits_table(self, hits: Sequence[CollectionHit]) -> "pd.DataFrame":
        """Search results as a table: ``rank``, ``distance`` then ``table``'s columns."""
        frame = self.table([self.row(h.id) for h in hits])
        frame.insert(0, "distance", [h.distance for h in hits])
        frame.insert(0, "rank", [h.rank for h in hits])
        return frame

    def cached_projection(self, *, method: str = "pca", dims: int = 2, n_neighbors: int = 15,
                          min_dist: float = 0.1, metric: str = "euclidean", seed: int | None = 42) -> np.ndarray | None:
        """The map ``project`` made with these parameters, or None when it must be computed."""
        from ..analysis.projection import projection_params

        params = projection_params(method, dims, n_neighbors, min_dist, metric, seed)
        return self._cache.get(json.dumps(params, sort_keys=True))

    def project(self, *, method: str = "pca", dims: int = 2, n_neighbors: int = 15, min_dist: float = 0.1,
                metric: str = "euclidean", seed: int | None = 42, ws: "Workspace | None" = None,
                progress: Callable[[str, float], None] | None = None) -> np.ndarray:
        """(n, dims) float32 map coordinates, row i for ``ids[i]``, with the very pipeline of
        ``store.analysis.projection.project`` (its parameter checks, PCA, exact kNN graph and UMAP
        layout) run on this array. ``ws`` lends its numba cache to UMAP. Kept in memory per
        parameters."""
        from ..analysis import projection as P

        params = P.projection_params(method, dims, n_neighbors, min_dist, metric, seed)
        key = json.dumps(params, sort_keys=True)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            if not len(self):
                raise InvalidInput(f"collection {self.name!r} holds no records to map")
            report = P.Progress(progress)
            if params["method"] != "pca" and ws is not None:
                P.import_umap(ws)
            coords, _ = P.project_values(self.values, params, report)
            report("done", 1.0)
            self._cache[key] = coords
            return coords

    def map_frame(self, coords: np.ndarray) -> "pd.DataFrame":
        """What ``components.scatter.map_figure`` draws: ``entity_id`` (the record id), ``x``,
        ``y`` (``z``), ``name`` (the id) and ``table``'s document and metadata columns."""
        frame = self.table()
        out = frame.drop(columns="id")
        out.insert(0, "name", self.ids)
        for axis, column in reversed(list(zip("xyz", np.asarray(coords).T))):
            out.insert(0, axis, column)
        out.insert(0, "entity_id", self.ids)
        return out

    def near_duplicates(self, max_distance: float) -> list[list[str]]:
        """Groups of record ids linked by distances of at most ``max_distance`` (connected
        groups, single linkage; groups of two or more), largest first; exact.
        ``store.analysis.duplicates.duplicate_groups_of_values`` does the work, as for a feature set."""
        from ..analysis.duplicates import duplicate_groups_of_values

        if len(self) < 2:
            return []
        groups = duplicate_groups_of_values(self.values, max_distance)
        return [[self.ids[int(r)] for r in group] for group in groups]

    def nearest_neighbor_distances(self) -> np.ndarray:
        """Each record's exact distance to its nearest other record (float64, row order), for
        the histogram under a near-duplicate threshold; kept in memory."""
        from ..analysis.duplicates import nearest_neighbor_distances_of_values

        with self._lock:
            if "nn" not in self._cache:
                self._cache["nn"] = (nearest_neighbor_distances_of_values(self.values) if len(self) >= 2
                                    else np.zeros(len(self)))
            return self._cache["nn"]


# ---- import into a feature set -------------------------------------------------------------
@dataclass
class CollectionImport:
    dataset: "Dataset"
    feature_set: "FeatureSet"
    added: int  # items created
    reused: int  # items of an earlier import of the same collection, kept
    vectors: int

    def summary(self) -> str:
        again = f" ({self.reused} already there)" if self.reused else ""
        return (f"imported {self.vectors} vectors into {self.feature_set.name}, {self.added} new items in "
                f"{self.dataset.name}{again}")


def _plain(value: Any) -> Any:
    """Chroma metadata as JSON data: non-finite floats become None, anything odd its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item())
    return str(value)


def _record_file(index: int, record_id: str, document: str | None, metadata: dict) -> tuple[str, bytes]:
    """A text item from the document, else a small JSON file of the id and metadata."""
    has_text = isinstance(document, str) and document.strip() != ""
    suffix = ".txt" if has_text else ".json"
    try:
        name = safe_name(f"{record_id}{suffix}")
    except InvalidInput:
        name = f"record-{index}{suffix}"
    if has_text:
        return name, document.encode("utf-8")
    return name, json.dumps({"id": record_id, "metadata": metadata}, indent=1, ensure_ascii=False).encode("utf-8")


def import_collection(
    ws: "Workspace",
    collection: LoadedCollection,
    dataset: "Dataset | str",
    feature_set: "FeatureSet | str",
    *,
    dir: str = "/",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> CollectionImport:
    """One item per record of ``collection`` in ``dataset`` (created when missing), its
    embedding the item's vector in ``feature_set`` (created with the collection's size when
    missing; an existing one must hold item vectors of that size).

    An item is a text file ``<id>.txt`` holding the record's document, or, for a record
    without one, ``<id>.json`` holding its id and metadata. Either way the item's metadata
    is ``{"user": <the record's metadata>, "chroma": {"collection", "id", "source"}}``, so
    filters reach the record's fields as ``metadata.user.<key>``. Everything is checked
    first (sizes, NaN or infinity, the set's kind), then written; a rerun (after a
    failure or a cancel) reuses the items an earlier run made. ``progress(done, total)``
    counts records."""
    from ..records import Dataset, FeatureSet

    n = len(collection)
    if n == 0:
        raise InvalidInput(f"collection {collection.name!r} holds no records; nothing to import")
    bad = ~np.isfinite(collection.values).all(axis=1)
    if bad.any():
        first = collection.ids[int(np.flatnonzero(bad)[0])]
        raise InvalidInput(f"{int(bad.sum())} embedding(s) of {collection.name!r} hold NaN or infinity (the first: "
                           f"{first!r}); nothing was imported. Fix them in Chroma first")
    size = collection.dimension
    fs = feature_set if isinstance(feature_set, FeatureSet) else None
    if fs is None:
        if not isinstance(feature_set, str) or not feature_set.strip():
            raise InvalidInput("name the feature set to import the collection into")
        try:
            fs = ws.feature_sets.resolve(feature_set.strip())
        except NotFound:
            fs = None
    if fs is not None and (fs.size != size or fs.entity_type != "item"):
        raise InvalidInput(f"feature set {fs.name!r} holds {fs.entity_type} vectors of size {fs.size}, but "
                           f"collection {collection.name!r} has size {size}; name a new set to create one")
    if isinstance(dataset, str) and not dataset.strip():
        raise InvalidInput("name the dataset to import the collection into")
    metas = [_plain(m or {}) for m in collection.metadatas]
    files = [_record_file(i, rid, doc, metas[i])
             for i, (rid, doc) in enumerate(zip(collection.ids, collection.documents))]

    ds = dataset if isinstance(dataset, Dataset) else ws.datasets.get_or_create(dataset.strip())
    if fs is None:
        fs = ws.feature_sets.create(name=feature_set.strip(), size=size, set_type="embeddings")
    earlier = _earlier_items(ws, ds.id, collection.name)
    item_ids: list[str] = []
    added = 0
    for i, rid in enumerate(collection.ids):
        if cancel is not None and cancel.is_set():
            raise FeaturelabError(f"import cancelled after {i} of {n} records; run it again to go on")
        if rid in earlier:
            item_ids.append(earlier[rid])
        else:
            meta = {"user": metas[i], "chroma": {"collection": collection.name, "id": rid,
                                                 "source": collection.location}}
            name, data = files[i]
            result = ws.upload_one(ds.id, name, data, dir, copy=True, metadata=meta)
            if result.status != "added":
                raise InvalidInput(f"record {rid!r}: {result.message}; the items before it were imported, "
                                   "run the import again after fixing it")
            item_ids.append(result.item.id)
            added += 1
        if progress:
            progress(i + 1, n)
    for start in range(0, n, 5000):  # one transaction (and one index sync) per batch
        ws.create_features(fs, collection.values[start : start + 5000], item_ids[start : start + 5000])
    return CollectionImport(ws.datasets.get(dataset_id=ds.id), ws.feature_sets.get(feature_set_id=fs.id),
                            added, n - added, n)


def _earlier_items(ws: "Workspace", dataset_id: str, collection: str) -> dict[str, str]:
    """Chroma id -> item id of the dataset's items an earlier import of ``collection`` made."""
    out: dict[str, str] = {}
    for row in ws.catalog.all("SELECT id, metadata FROM items WHERE dataset_id=? AND metadata LIKE '%\"chroma\"%'",
                              (dataset_id,)):
        source = json.loads(row["metadata"]).get("chroma")
        if isinstance(source, dict) and source.get("collection") == collection and "id" in source:
            out.setdefault(str(source["id"]), row["id"])
    return out
