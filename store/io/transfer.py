"""Export a dataset to a folder or zip, and import one back, losslessly.

Layout (after Dataloop's per-item export):

    dataset.json            format, the dataset, and the feature sets' own records
    items/<dir>/<name>      the item files
    json/<dir>/<name>.json  one record per item: id, name, filename, dir, type, hidden,
                            metadata, annotations, itemVectors [{featureSetId, value}]

Vectors are written as JSON numbers from float32 values, which read back bit for bit.
Import refuses any path that would land outside its target.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from ..errors import InvalidInput, NotFound
from ..blobs import process_alive
from ..files import FileFacts, inspect, normalize_dir, safe_name
from ..ids import new_id
from ..ids import SAFE_ID
from ..records import Dataset, FeatureSet
from ..search import language as q

if TYPE_CHECKING:
    from ..workspace import Workspace

FORMAT = "featurelab-export/1"
STAGING_PREFIX = ".importing-"
ProgressFn = Callable[[int, int], None]


def _selected_sets(ws: "Workspace", include: bool, feature_sets: Iterable[Any] | None) -> list[FeatureSet]:
    if not include:
        return []
    wanted = list(feature_sets or [])
    if not wanted:
        return ws.feature_sets.list()
    return [fs if isinstance(fs, FeatureSet) else ws.feature_sets.resolve(fs) for fs in wanted]


def _vector_filter_pairs(ws: "Workspace", feature_vector_filters: Any) -> set[tuple[str, str]] | None:
    """(set id, entity id) of the vectors that ``feature_vector_filters`` lets into the export
    (a filter on feature vectors, e.g. the SDK's ``{"$and": [{"featureSetId": X}]}``); None:
    all of them."""
    if not feature_vector_filters:
        return None
    doc = q.as_filter_json(feature_vector_filters)
    if isinstance(doc, dict) and not set(doc) & q.CONTROL_KEYS:
        doc = {"filter": doc}
    query = q.parse({**doc, "resource": "feature_vectors"})
    if query.vector is not None:
        raise InvalidInput("feature_vector_filters chooses which vectors to export; it cannot hold a $euclid search")
    where, params = q.where_sql(query)
    return {(r[0], r[1]) for r in ws.catalog.all(f"SELECT feature_set_id, entity_id FROM features WHERE {where}", params)}


def _vectors_by_entity(ws: "Workspace", sets: list[FeatureSet], allowed: set[tuple[str, str]] | None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for fs in sets:
        m = ws.matrix(fs)
        for eid, row in zip(m.entity_ids.tolist(), m.values):
            if allowed is None or (fs.id, eid) in allowed:
                out.setdefault(eid, []).append({"featureSetId": fs.id, "value": row.tolist()})
    return out


def item_record(item, annotations, vectors: dict[str, list[dict]]) -> dict:
    rec = item.to_json()
    rec["annotations"] = [{**a.to_json(), "itemVectors": vectors.get(a.id, [])} for a in annotations]
    rec["itemVectors"] = vectors.get(item.id, [])
    return rec


def _rel(folder: str, name: str) -> str:
    return posixpath.join(folder.lstrip("/"), name)


def export_dataset(
    ws: "Workspace",
    dataset: Dataset,
    local_path: str | os.PathLike,
    *,
    include_feature_vectors: bool = False,
    feature_sets: Iterable[Any] | None = None,
    feature_vector_filters: Any = None,
    filters: Any = None,
    include_annotations: bool = True,
    export_type: str | None = None,
    progress: ProgressFn | None = None,
    item_ids: Iterable[str] | None = None,
) -> Path:
    """Write ``dataset`` to ``local_path`` (a new folder, or a ``.zip`` file when the path
    ends in .zip or ``export_type='zip'``). Returns the path written. The output appears
    whole or not at all: it is built under a temporary name and renamed at the end.
    ``item_ids``: export only these items (from any dataset; ``dataset`` then only names the
    export), in the order given; see ``store.io.selection.export_selection``.
    ``filters``: export only the items it passes (JSON or a ``Filters``-like object; the SDK's
    ``Filters()`` leaves hidden items out). Without it every item goes, hidden ones with their
    flag, so that an import gives the dataset back as it was. ``feature_vector_filters``: only
    the vectors it passes (e.g. ``{"featureSetId": X}``)."""
    target = Path(local_path)
    as_zip = export_type == "zip" or (export_type is None and target.suffix.lower() == ".zip")
    if as_zip and target.suffix.lower() != ".zip":
        target = target.with_suffix(".zip")
    if target.exists() and (as_zip or any(target.iterdir())):
        raise InvalidInput(f"{target} already exists; choose a new {'file' if as_zip else 'empty folder'} to export to")
    allowed = _vector_filter_pairs(ws, feature_vector_filters)
    sets = _selected_sets(ws, include_feature_vectors, feature_sets)
    if allowed is not None:
        with_vectors = {set_id for set_id, _ in allowed}
        sets = [fs for fs in sets if fs.id in with_vectors]
    vectors = _vectors_by_entity(ws, sets, allowed)
    if item_ids is None:
        items = list(dataset.items.list(filters).all())
    else:
        items = _items_by_ids(ws, item_ids)
    header = {
        "format": FORMAT,
        "exportedAt": time.time(),
        "dataset": dataset.to_json(),
        "featureSets": [fs.to_json() for fs in sets],
        "itemCount": len(items),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-{os.getpid()}-"))
    try:
        files: list[tuple[str, bytes]] = [("dataset.json", json.dumps(header, indent=1).encode())]

        def emit(rel: str, data: bytes) -> None:
            if as_zip:
                files.append((rel, data))
            else:
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)

        for done, item in enumerate(items, 1):
            anns = item.annotations.list() if include_annotations else []
            rec = item_record(item, anns, vectors)
            emit(f"items/{_rel(item.dir, item.name)}", item.download())
            emit(f"json/{_rel(item.dir, item.name)}.json", json.dumps(rec, indent=1).encode())
            if progress:
                progress(done, len(items))
        if as_zip:
            zpath = tmp / "out.zip"
            with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                for rel, data in files:
                    z.writestr(rel, data)
            os.replace(zpath, target)
            shutil.rmtree(tmp)
        else:
            (tmp / "dataset.json").write_bytes(files[0][1])
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _items_by_ids(ws: "Workspace", item_ids: Iterable[str]) -> list:
    ids = list(dict.fromkeys(item_ids))
    found = ws.items_by_ids(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"no item(s) with id {missing[:5]} ({len(missing)} in all); nothing was exported")
    return [found[i] for i in ids]


def _remove_dead_partials(target: Path) -> None:
    """Half-written exports to the same target by processes that were killed."""
    for partial in target.parent.glob(f".{target.name}.partial-*"):
        pid = partial.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


# ---- import --------------------------------------------------------------------------
class _Source:
    """Read files of an export, folder or zip, refusing any path that escapes it."""

    def __init__(self, path: Path, shown: str) -> None:
        self.path, self.shown = path, shown  # shown: the name messages give it
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise InvalidInput(f"{shown} is neither an export folder nor a zip file ({exc})") from exc
            for info in self.zip.infolist():
                _check_relative(info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InvalidInput(f"archive member {info.filename!r} is a symbolic link; refusing to import")
        elif not path.is_dir():
            raise NotFound(f"{shown}: no such export folder or zip file")

    def read(self, rel: str) -> bytes:
        _check_relative(rel)
        if self.zip is not None:
            try:
                return self.zip.read(rel)
            except KeyError as exc:
                raise InvalidInput(f"{self.shown} is missing {rel}") from exc
        full = self.path / rel
        root = self.path.resolve()
        resolved = full.resolve()
        if root not in resolved.parents and resolved != root:
            raise InvalidInput(f"{rel!r} leads outside the export folder (a link?); refusing to import")
        try:
            return full.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{self.shown} is missing {rel} ({exc})") from exc

    def json_files(self) -> list[str]:
        if self.zip is not None:
            names = [n for n in self.zip.namelist() if n.startswith("json/") and n.endswith(".json")]
        else:
            names = [p.relative_to(self.path).as_posix() for p in (self.path / "json").rglob("*.json")]
        return sorted(names)


def _check_relative(rel: str) -> None:
    p = PurePosixPath(rel.replace("\\", "/"))
    if rel.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise InvalidInput(f"the export holds the path {rel!r}, which would escape its folder; refusing to import")


def _checked_record(rec: Any, where: str) -> dict:
    if not isinstance(rec, dict):
        raise InvalidInput(f"{where}: an item record must be a JSON object")
    name, folder = rec.get("name"), rec.get("dir", "/")
    if not isinstance(name, str) or not isinstance(folder, str):
        raise InvalidInput(f"{where}: item record needs string 'name' and 'dir'")
    try:
        plain = safe_name(name) == name and normalize_dir(folder) == folder
    except InvalidInput:
        plain = False
    if not plain:
        raise InvalidInput(
            f"{where}: the path {folder!r} + {name!r} would escape the dataset's folders or is not a plain "
            "file name; refusing to import. Fix the record or re-export"
        )
    return rec


def import_dataset(
    ws: "Workspace", path: str | os.PathLike, *, name: str | None = None, progress: ProgressFn | None = None,
    display_name: str | None = None,
) -> Dataset:
    """Import an export (folder or zip) as a new dataset. Ids are kept where they are free;
    feature sets are matched by name (same size and entity type) or created. Everything is
    checked before anything is written. ``display_name``: the export as the user knows it,
    for messages (an app writes an upload to a temporary file first)."""
    shown = display_name or str(path)
    src = _Source(Path(path), shown)
    try:
        header = json.loads(src.read("dataset.json"))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{shown}: dataset.json is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInput(f"{shown} is not a featurelab export (dataset.json 'format' should be {FORMAT!r})")
    records = []
    for rel in src.json_files():
        try:
            records.append(_checked_record(json.loads(src.read(rel)), rel))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{shown}: {rel} is not valid JSON ({exc})") from exc
    ds_name = name or header["dataset"]["name"]
    try:
        ws.datasets.get(dataset_name=ds_name)
    except NotFound:
        pass
    else:
        raise InvalidInput(f"a dataset named {ds_name!r} already exists; import it under another name "
                           "(the name of the new dataset; --name on the command line)")
    payloads = {rec["id"]: src.read(f"items/{_rel(rec['dir'], rec['name'])}") for rec in records}
    facts = {rid: inspect(data, rec["name"]) for rec in records for rid, data in [(rec["id"], payloads[rec["id"]])]}
    set_map = _import_feature_sets(ws, header.get("featureSets", []))
    vectors = _collect_vectors(records, set_map)

    # Build under a staging name and rename in one transaction at the end: a killed import
    # leaves no half dataset behind (the next open removes the staging one; see below).
    ds = _create_staging(ws, header["dataset"].get("id"))
    try:
        id_map: dict[str, str] = {}
        for done, rec in enumerate(records, 1):
            id_map.update(_insert_item(ws, ds, rec, payloads[rec["id"]], facts[rec["id"]]))
            if progress:
                progress(done, len(records))
        for set_id, pairs in vectors.items():
            fs = ws.feature_sets.get(feature_set_id=set_id)
            entities = [id_map[e] for e, _ in pairs]
            values = np.asarray([v for _, v in pairs], dtype=np.float32)
            ws.create_features(fs, values, entities)
        with ws.catalog.transaction() as c:
            c.execute("UPDATE datasets SET name=? WHERE id=?", (ds_name, ds.id))
            c.execute("DELETE FROM meta WHERE key=?", (f"importing:{ds.id}",))
    except BaseException:
        _drop_staging(ws, ds.id)
        raise
    return ws.datasets.get(dataset_id=ds.id)


def _drop_staging(ws: "Workspace", dataset_id: str) -> None:
    try:
        ws.datasets.delete(dataset_id)
    except NotFound:
        pass
    with ws.catalog.transaction() as c:
        c.execute("DELETE FROM meta WHERE key=?", (f"importing:{dataset_id}",))


def remove_abandoned_imports(ws: "Workspace") -> int:
    """Staging datasets of imports whose process died (killed mid-import)."""
    removed = 0
    for row in ws.catalog.all("SELECT key, value FROM meta WHERE key LIKE 'importing:%'"):
        if not process_alive(int(row["value"])):
            _drop_staging(ws, row["key"].split(":", 1)[1])
            removed += 1
    return removed


def _import_feature_sets(ws: "Workspace", records: list[dict]) -> dict[str, str]:
    """Old set id -> set id in this workspace."""
    out: dict[str, str] = {}
    for rec in records:
        try:
            fs = ws.feature_sets.get(feature_set_name=rec["name"])
        except NotFound:
            free = SAFE_ID.fullmatch(str(rec["id"])) is not None and ws.catalog.one(
                "SELECT 1 FROM feature_sets WHERE id=?", (rec["id"],)) is None
            fs = ws.feature_sets.create(
                name=rec["name"], size=rec["size"], set_type=rec.get("type", "embeddings"),
                entity_type=rec.get("entityType", "item"), model=rec.get("model"),
                metric=rec.get("metric", "euclidean"), feature_set_id=rec["id"] if free else None,
            )
        if fs.size != rec["size"] or fs.entity_type != rec.get("entityType", "item"):
            raise InvalidInput(
                f"feature set {rec['name']!r} exists here with size {fs.size} ({fs.entity_type}) but the export has "
                f"size {rec['size']} ({rec.get('entityType')}); rename one of them"
            )
        out[rec["id"]] = fs.id
    return out


def _collect_vectors(records: list[dict], set_map: dict[str, str]) -> dict[str, list[tuple[str, np.ndarray]]]:
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    entities = [(rec["id"], rec.get("itemVectors", [])) for rec in records]
    entities += [(a["id"], a.get("itemVectors", [])) for rec in records for a in rec.get("annotations", [])]
    for eid, vecs in entities:
        for v in vecs:
            if v.get("featureSetId") not in set_map:
                raise InvalidInput(f"a vector of {eid} names feature set {v.get('featureSetId')!r}, which dataset.json lacks")
            out.setdefault(set_map[v["featureSetId"]], []).append((eid, np.asarray(v["value"], dtype=np.float32)))
    return out


def _create_staging(ws: "Workspace", wanted_id: str | None) -> Dataset:
    """The staging dataset (with the export's id when free) and the marker naming this
    process, in one transaction: a kill cannot leave a staging dataset that no open removes."""
    with ws.catalog.transaction() as c:
        free = wanted_id and c.execute("SELECT 1 FROM datasets WHERE id=?", (wanted_id,)).fetchone() is None
        ds_id = wanted_id if free else new_id()
        c.execute("INSERT INTO datasets (id, name, created_at) VALUES (?,?,?)",
                  (ds_id, f"{STAGING_PREFIX}{new_id()}", time.time()))
        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (f"importing:{ds_id}", str(os.getpid())))
    return ws.datasets.get(dataset_id=ds_id)


def _insert_item(ws: "Workspace", ds: Dataset, rec: dict, data: bytes, facts: FileFacts) -> dict[str, str]:
    """Insert one item with its annotations; return old id -> new id for it and them."""
    sha = ws.blobs.put(data)
    metadata = {k: v for k, v in (rec.get("metadata") or {}).items() if k != "system"}
    mapping: dict[str, str] = {}
    with ws.catalog.transaction() as c:
        item_id = rec["id"] if not c.execute("SELECT 1 FROM items WHERE id=?", (rec["id"],)).fetchone() else new_id()
        mapping[rec["id"]] = item_id
        c.execute(
            "INSERT INTO items (id, dataset_id, name, dir, kind, mimetype, size, sha256, width, height, hidden,"
            " metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item_id, ds.id, rec["name"], rec["dir"], facts.kind, facts.mimetype, len(data), sha, facts.width,
             facts.height, int(bool(rec.get("hidden"))), json.dumps(metadata), rec.get("createdAt", time.time())),
        )
        for a in rec.get("annotations", []):
            ann_id = a["id"] if not c.execute("SELECT 1 FROM annotations WHERE id=?", (a["id"],)).fetchone() else new_id()
            mapping[a["id"]] = ann_id
            c.execute(
                "INSERT INTO annotations (id, item_id, label, type, coordinates, metadata, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (ann_id, item_id, a["label"], a.get("type", "box"), json.dumps(a["coordinates"]),
                 json.dumps(a.get("metadata", {})), a.get("createdAt", time.time())),
            )
    return mapping
