"""A selection (a lasso on the map, search results, a near-duplicate group) saved as a
dataset, or as a folder inside one, or exported directly.

    ids = [...]                                   # item ids, or annotation ids (-> their items)
    result = save_selection(ws, ids, "picked")    # a new dataset "picked"
    result = save_selection(ws, ids, "pets", dir="/picked")   # a folder of dataset "pets"
    path = export_selection(ws, ids, "./exports/picked.zip")  # the export of store.io.transfer

What a copy carries: the item's file (the same content-addressed blob: no bytes are
copied), its name, kind, size, hidden flag, metadata and creation time, all its
annotations, and every feature set's vector of the item and of its annotations, bit for bit,
as new features of the new entities (new ids throughout). The source is never changed.

Folders: in a new dataset each item keeps its folder. With ``dir``, the items go under that
folder, keeping their own folder below it (``/cats/a.jpg`` saved with ``dir="/picked"``
becomes ``/picked/cats/a.jpg``), so items of different folders never collide.

Name clashes (the target path is taken, by an item already there or by another item of the
selection, e.g. two datasets' ``/a.jpg``): ``on_clash="suffix"`` (the default, as uploads
do) names the copy ``a (1).jpg`` and lists it in ``SelectionResult.renamed``;
``on_clash="refuse"`` refuses the whole selection, naming the clashes, and writes nothing.

Atomic: every row (dataset, items, annotations, features) is written in one catalog
transaction, so an error leaves nothing behind. The Chroma index is brought up to date from
the catalog right after the commit (its high-water mark), as for any other write; a crash
between the two is caught up at the next open.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..catalog import free_item_name
from ..errors import InvalidInput, NotFound
from ..files import join_filename, normalize_dir
from ..ids import new_id
from ..records import Dataset, Item

if TYPE_CHECKING:
    from ..workspace import Workspace

ProgressFn = Callable[[int, int], None]
CLASH_RULES = ("suffix", "refuse")
_CHUNK = 900  # SQLite's limit on ? placeholders, with room to spare


@dataclass
class SelectionResult:
    """What ``save_selection`` wrote."""

    dataset: Dataset
    dir: str | None  # the folder the items went under, None for a new dataset
    item_ids: dict[str, str]  # source item id -> new item id, in selection order
    annotation_ids: dict[str, str]  # source annotation id -> new annotation id
    vectors: dict[str, int]  # feature set name -> vectors copied
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source filename, new filename)
    created_dataset: bool = False

    def summary(self) -> str:
        where = f"{self.dataset.name}{self.dir or ''}"
        sets = ", ".join(f"{n} in {name}" for name, n in self.vectors.items()) or "no vectors"
        tail = f"; {len(self.renamed)} renamed where the name was taken" if self.renamed else ""
        return (f"saved {len(self.item_ids)} items with {len(self.annotation_ids)} annotations "
                f"and {sets} to {where}{tail}")


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


def selection_item_ids(ws: "Workspace", ids: Iterable[str]) -> list[str]:
    """The item ids a selection stands for: item ids as they are, annotation ids as their
    items (an annotation set's map selects annotations). Order kept, repeats dropped. Any id
    that is neither an item nor an annotation is refused, naming it."""
    wanted = [str(i) for i in dict.fromkeys(ids)]
    if not wanted:
        raise InvalidInput("the selection is empty; select some items (or annotations) first")
    items = {r[0] for r in ws.rows_by_ids("SELECT id FROM items WHERE id IN ({})", wanted)}
    rest = [i for i in wanted if i not in items]
    owner = {r[0]: r[1] for r in ws.rows_by_ids("SELECT id, item_id FROM annotations WHERE id IN ({})", rest)}
    unknown = [i for i in rest if i not in owner]
    if unknown:
        raise NotFound(
            f"{len(unknown)} id(s) of the selection are neither items nor annotations: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; nothing was written. Check the ids (they may have been deleted)"
        )
    return list(dict.fromkeys(i if i in items else owner[i] for i in wanted))


def _target_dataset(c, dataset: Dataset | str, dir: str | None) -> tuple[str, str, bool]:
    """(id, name, created) of the target, creating it inside the transaction when needed."""
    if isinstance(dataset, Dataset):
        dataset = dataset.name
    if not isinstance(dataset, str) or not dataset.strip():
        raise InvalidInput("name the dataset to save the selection to")
    name = dataset.strip()
    row = c.execute("SELECT id, name FROM datasets WHERE name=?", (name,)).fetchone()
    if row is not None:
        if dir is None:
            raise InvalidInput(
                f"a dataset named {name!r} already exists; pick a new name, or give a folder (dir) to save "
                "the selection into that dataset"
            )
        return row[0], row[1], False
    if name.startswith(".importing-"):
        raise InvalidInput(f"{name!r} is reserved for imports in progress; pick another name")
    ds_id = new_id()
    c.execute("INSERT INTO datasets (id, name, created_at) VALUES (?,?,?)", (ds_id, name, time.time()))
    return ds_id, name, True


def save_selection(
    ws: "Workspace",
    ids: Iterable[str],
    dataset: Dataset | str,
    *,
    dir: str | None = None,
    on_clash: str = "suffix",
    progress: ProgressFn | None = None,
) -> SelectionResult:
    """Copy the selected items (``ids``: item ids, or annotation ids standing for their
    items) with their files, metadata, annotations and every vector of them and of their
    annotations into ``dataset``: a NEW dataset of that name when ``dir`` is None, else the
    folder ``dir`` of that dataset (created when there is no dataset of that name).

    See the module's docstring for folders and name clashes (``on_clash``). All or nothing:
    on any error nothing is written. ``progress(done, total)`` counts items copied."""
    if on_clash not in CLASH_RULES:
        raise InvalidInput(f"on_clash must be one of {list(CLASH_RULES)}, got {on_clash!r}")
    base = normalize_dir(dir) if dir is not None else None
    item_ids = selection_item_ids(ws, ids)
    items = ws.items_by_ids(item_ids)
    item_map: dict[str, str] = {}
    ann_map: dict[str, str] = {}
    renamed: list[tuple[str, str]] = []
    touched: dict[str, int] = {}
    with ws.catalog.transaction() as c:
        ds_id, ds_name, created = _target_dataset(c, dataset, base)
        for done, source_id in enumerate(item_ids, 1):
            item = items.get(source_id)
            if item is None:
                raise NotFound(f"item {source_id!r} was deleted while saving the selection; nothing was written")
            folder = item.dir if base is None else normalize_dir(f"{base}/{item.dir}")
            name = _free_name(c, ds_id, folder, item, on_clash)
            if name != item.name:
                renamed.append((item.filename, join_filename(folder, name)))
            item_map[source_id] = _copy_item(c, source_id, ds_id, folder, name)
            if progress:
                progress(done, len(item_ids))
        for chunk in _chunks(list(item_map)):
            marks = ",".join("?" * len(chunk))
            for a in c.execute(f"SELECT id, item_id FROM annotations WHERE item_id IN ({marks}) ORDER BY rowid", chunk).fetchall():
                ann_map[a[0]] = new_id()
                c.execute(
                    "INSERT INTO annotations (id, item_id, label, type, coordinates, metadata, created_at)"
                    " SELECT ?, ?, label, type, coordinates, metadata, created_at FROM annotations WHERE id=?",
                    (ann_map[a[0]], item_map[a[1]], a[0]),
                )
        touched = _copy_features(c, {**item_map, **ann_map}, ds_id)
        for set_id in touched:
            c.execute("UPDATE feature_sets SET version = version + 1 WHERE id=?", (set_id,))
    ws.after_feature_write(touched)  # Chroma catches up from the catalog, as after create_features
    names = {fs.id: fs.name for fs in ws.feature_sets.list()}
    return SelectionResult(
        dataset=ws.datasets.get(dataset_id=ds_id), dir=base, item_ids=item_map, annotation_ids=ann_map,
        vectors={names.get(s, s): n for s, n in touched.items()}, renamed=renamed, created_dataset=created,
    )


def _free_name(c, ds_id: str, folder: str, item: Item, on_clash: str) -> str:
    taken = c.execute("SELECT 1 FROM items WHERE dataset_id=? AND dir=? AND name=?", (ds_id, folder, item.name)).fetchone()
    if not taken:
        return item.name
    if on_clash == "refuse":
        raise InvalidInput(
            f"{join_filename(folder, item.name)} is already taken in the target (copying {item.filename}); "
            "nothing was written. Save into another folder, or let clashing copies be renamed (on_clash='suffix')"
        )
    return free_item_name(c, ds_id, folder, item.name)  # the same renaming rule as uploads: "a (1).jpg"


def _copy_item(c, source_id: str, ds_id: str, folder: str, name: str) -> str:
    """A new item row with the source's file (same blob), facts, flags and metadata."""
    new = new_id()
    c.execute(
        "INSERT INTO items (id, dataset_id, name, dir, kind, mimetype, size, sha256, width, height, hidden,"
        " metadata, created_at) SELECT ?, ?, ?, ?, kind, mimetype, size, sha256, width, height, hidden,"
        " metadata, created_at FROM items WHERE id=?",
        (new, ds_id, name, folder, source_id),
    )
    return new


def _copy_features(c, entity_map: dict[str, str], ds_id: str) -> dict[str, int]:
    """Every set's vector of each source entity, as a new feature of its copy (the stored
    float32 bytes as they are: bit for bit). Returns set id -> vectors copied."""
    counts: dict[str, int] = {}
    now = time.time()
    for chunk in _chunks(list(entity_map)):
        marks = ",".join("?" * len(chunk))
        rows = c.execute(
            f"SELECT feature_set_id, entity_id, value FROM features WHERE entity_id IN ({marks}) ORDER BY rid", chunk
        ).fetchall()
        c.executemany(
            "INSERT INTO features (id, feature_set_id, entity_id, dataset_id, value, created_at) VALUES (?,?,?,?,?,?)",
            [(new_id(), r[0], entity_map[r[1]], ds_id, r[2], now) for r in rows],
        )
        for r in rows:
            counts[r[0]] = counts.get(r[0], 0) + 1
    return counts


def export_selection(
    ws: "Workspace",
    ids: Iterable[str],
    local_path: str | os.PathLike,
    *,
    name: str = "selection",
    include_feature_vectors: bool = True,
    feature_sets: Iterable[Any] | None = None,
    include_annotations: bool = True,
    export_type: str | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Export the selected items (``ids`` as in ``save_selection``) exactly as
    ``store.io.transfer.export_dataset`` exports a dataset (a folder, or a zip when the path
    ends in .zip), with the vectors of every set (or of ``feature_sets``) by default. The
    export names a dataset ``name`` (with a fresh id), which is what an import creates.
    Items from several datasets with the same folder and name would overwrite each other
    in the export, so that is refused: save the selection as a dataset first (it renames)."""
    from .transfer import export_dataset

    item_ids = selection_item_ids(ws, ids)
    items = ws.items_by_ids(item_ids)
    seen: dict[str, str] = {}
    for item_id in item_ids:
        other = seen.setdefault(items[item_id].filename, item_id)
        if other != item_id:
            raise InvalidInput(
                f"two selected items are both {items[item_id].filename} (in different datasets), which one export "
                "cannot hold; save the selection as a dataset first (clashing names get renamed), then export that"
            )
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name the exported selection (the dataset an import will create)")
    header = Dataset(new_id(), name.strip(), time.time(), ws)
    return export_dataset(
        ws, header, local_path, include_feature_vectors=include_feature_vectors, feature_sets=feature_sets,
        include_annotations=include_annotations, export_type=export_type, progress=progress, item_ids=item_ids,
    )
