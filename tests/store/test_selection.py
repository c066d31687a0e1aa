"""A selection saved as a dataset or a folder, carrying files, annotations and vectors bit for
bit; all or nothing; and exported directly, importing back."""
import numpy as np
import pytest

from store import InvalidInput, NotFound, Workspace
from store.io import selection
from store.search.filters import Filters
from store.io.selection import export_selection, save_selection, selection_item_ids
from tests.conftest import jpeg_bytes, png_bytes


def _populate(ws):
    ds = ws.datasets.create("pets")
    img = ds.items.upload_bytes(png_bytes(50, 40), "cat.png", dir="/cats", metadata={"user": {"k": 1}}).item
    jpg = ds.items.upload_bytes(jpeg_bytes(), "dog.jpg", dir="/dogs").item
    txt = ds.items.upload_bytes("a note ✓".encode(), "note.txt").item
    jpg.update(hidden=True)
    box = img.annotations.create("cat", (1, 2, 30, 20), metadata={"by": "me"})
    rng = np.random.default_rng(0)
    clip = ws.feature_sets.create(name="clip", size=16)
    other = ws.feature_sets.create(name="other", size=3)
    boxes = ws.feature_sets.create(name="boxes", size=4, entity_type="annotation")
    clip.features.create_many(rng.standard_normal((3, 16)).astype(np.float32) * 1e-3, [img, jpg, txt])
    other.features.create(value=[np.float32(1 / 3), 2.5e-38, -7], entity=img)
    boxes.features.create(value=rng.standard_normal(4), entity=box)
    return {"ds": ds, "img": img, "jpg": jpg, "txt": txt, "box": box}


def _item_state(ws, item):
    """Everything a copy must carry, keyed by nothing that a copy changes (ids, dataset)."""
    def vectors(entity):
        return {ws.feature_sets.get(feature_set_id=f.feature_set_id).name: f.value.tobytes()
                for f in entity.features.list().all()}

    anns = sorted((a.label, a.type, str(a.coordinates), str(a.metadata), a.created_at, str(vectors(a)))
                  for a in item.annotations.list())
    return (item.name, item.download(), item.sha256, item.kind, item.mimetype, item.size, item.width, item.height,
            item.hidden, item.metadata, item.created_at, vectors(item), anns)


def _dataset_state(ws, name):
    ds = ws.datasets.get(dataset_name=name)
    return {i.filename: (i.id, _item_state(ws, i)) for i in ds.items.list().all()}


def _counts(ws):
    c = ws.catalog
    return tuple(c.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("datasets", "items", "annotations", "features")) + (
        tuple(c.scalar("SELECT version FROM feature_sets WHERE name=?", (n,)) for n in ("clip", "other", "boxes")))


def test_new_dataset_carries_files_annotations_and_vectors(ws):
    p = _populate(ws)
    before = _dataset_state(ws, "pets")
    blobs_before = sorted(x.name for x in (ws.path / "blobs").rglob("*") if x.is_file())
    result = save_selection(ws, [p["img"].id, p["jpg"].id, p["img"].id], "picked")
    assert result.created_dataset and result.dir is None and not result.renamed
    assert list(result.item_ids) == [p["img"].id, p["jpg"].id]  # order kept, repeats dropped
    assert list(result.annotation_ids) == [p["box"].id]
    assert result.vectors == {"clip": 2, "other": 1, "boxes": 1}

    copies = {i.filename: i for i in result.dataset.items.list().all()}
    assert set(copies) == {"/cats/cat.png", "/dogs/dog.jpg"}
    for source in (p["img"], p["jpg"]):
        copy = copies[source.filename]
        assert copy.id == result.item_ids[source.id] != source.id and copy.dataset_id == result.dataset.id
        assert _item_state(ws, copy) == _item_state(ws, ws.get_item(source.id))  # vectors bit for bit
        assert copy.path == source.path  # the same content-addressed file
    new_box = ws.get_annotation(result.annotation_ids[p["box"].id])
    assert new_box.item_id == copies["/cats/cat.png"].id
    assert sorted(x.name for x in (ws.path / "blobs").rglob("*") if x.is_file()) == blobs_before
    assert _dataset_state(ws, "pets") == before  # the source is untouched

    # The copies are searchable, exactly and through the Chroma index, within the new dataset.
    clip = ws.feature_sets.get(feature_set_name="clip")
    query = ws.get_item(p["jpg"].id).features.list().items[0].value
    for approximate in (False, True):
        f = Filters()
        f.add_euclid(clip, query.tolist(), k=1, approximate=approximate)
        hits = result.dataset.items.list(filters=f).items
        assert [h.id for h in hits] == [copies["/dogs/dog.jpg"].id] and hits[0].distance == 0.0
    for fs in ws.feature_sets.list():
        assert ws.check_index(fs.id)["ok"]
    boxes = ws.feature_sets.get(feature_set_name="boxes")
    assert ws.wait_for_index(60)  # the index catches up in the background
    assert ws.index.count(boxes.id) == 2


def test_annotation_ids_stand_for_their_items(ws_embedded):
    p = _populate(ws_embedded)
    assert selection_item_ids(ws_embedded, [p["box"].id, p["txt"].id, p["img"].id]) == [p["img"].id, p["txt"].id]
    result = save_selection(ws_embedded, [p["box"].id], "boxes-only")
    (copy,) = result.dataset.items.list().all()
    assert copy.filename == "/cats/cat.png" and [a.label for a in copy.annotations.list()] == ["cat"]


def test_into_a_folder_keeps_subfolders_and_renames_clashes(ws_embedded):
    ws = ws_embedded
    p = _populate(ws)
    first = save_selection(ws, [p["img"].id, p["txt"].id], p["ds"], dir="/picked")
    assert not first.created_dataset and first.dataset.id == p["ds"].id and first.dir == "/picked"
    names = {i.filename for i in p["ds"].items.list().all()}
    assert {"/picked/cats/cat.png", "/picked/note.txt", "/cats/cat.png", "/note.txt"} <= names
    again = save_selection(ws, [p["img"].id], "pets", dir="picked/")
    assert again.renamed == [("/cats/cat.png", "/picked/cats/cat (1).png")]
    copy = ws.get_item(again.item_ids[p["img"].id])
    assert copy.filename == "/picked/cats/cat (1).png"
    assert _item_state(ws, copy)[1:] == _item_state(ws, ws.get_item(p["img"].id))[1:]

    before = _counts(ws)
    with pytest.raises(InvalidInput, match="already taken"):
        save_selection(ws, [p["txt"].id, p["img"].id], "pets", dir="/picked", on_clash="refuse")
    assert _counts(ws) == before
    # A folder of a dataset that does not exist yet creates it.
    made = save_selection(ws, [p["txt"].id], "fresh", dir="/x")
    assert made.created_dataset and [i.filename for i in made.dataset.items.list().all()] == ["/x/note.txt"]


def test_refusals_write_nothing(ws_embedded, monkeypatch):
    ws = ws_embedded
    p = _populate(ws)
    before = _counts(ws)
    with pytest.raises(NotFound, match="nope"):
        save_selection(ws, [p["img"].id, "nope"], "bad")
    with pytest.raises(InvalidInput, match="already exists"):
        save_selection(ws, [p["img"].id], "pets")  # no folder given: a new dataset only
    with pytest.raises(InvalidInput, match="empty"):
        save_selection(ws, [], "bad")
    with pytest.raises(InvalidInput, match="on_clash"):
        save_selection(ws, [p["img"].id], "bad", on_clash="overwrite")
    assert _counts(ws) == before

    # A failure after the items and annotations went in rolls all of it back.
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(selection, "_copy_features", broken)
    with pytest.raises(OSError):
        save_selection(ws, [p["img"].id, p["txt"].id], "half")
    assert _counts(ws) == before
    assert [d.name for d in ws.datasets.list()] == ["pets"]
    for fs in ws.feature_sets.list():
        assert ws.check_index(fs.id)["ok"]


def test_items_of_two_datasets_with_one_name(ws_embedded, tmp_path):
    ws = ws_embedded
    p = _populate(ws)
    other = ws.datasets.create("more")
    twin = other.items.upload_bytes(png_bytes(8, 8, (0, 255, 0)), "cat.png", dir="/cats").item
    result = save_selection(ws, [p["img"].id, twin.id], "both")
    assert {i.filename for i in result.dataset.items.list().all()} == {"/cats/cat.png", "/cats/cat (1).png"}
    assert result.renamed == [("/cats/cat.png", "/cats/cat (1).png")]
    with pytest.raises(InvalidInput, match="different datasets"):
        export_selection(ws, [p["img"].id, twin.id], tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize("as_zip", [False, True])
def test_exported_selection_imports_back(ws_embedded, tmp_path, as_zip):
    ws = ws_embedded
    p = _populate(ws)
    target = tmp_path / ("sel.zip" if as_zip else "sel")
    written = export_selection(ws, [p["box"].id, p["txt"].id], target, name="chosen")
    assert written == target
    with Workspace.open(tmp_path / "other") as other:
        ds = other.import_dataset(target)
        assert ds.name == "chosen" and ds.items.count() == 2
        copies = {i.filename: i for i in ds.items.list().all()}
        for source in (p["img"], p["txt"]):
            assert _item_state(other, copies[source.filename]) == _item_state(ws, ws.get_item(source.id))
        assert {fs.name: fs.count() for fs in other.feature_sets.list()} == {"clip": 2, "other": 1, "boxes": 1}
    with pytest.raises(NotFound):
        export_selection(ws, ["missing"], tmp_path / "none.zip")
    assert not (tmp_path / "none.zip").exists()


def test_cli_save_selection(run_cli, tmp_path):
    with Workspace.open(tmp_path / "cli-ws") as ws:
        p = _populate(ws)
        ids = [p["img"].id, p["txt"].id]
        source = {i: _item_state(ws, ws.get_item(i)) for i in ids}
    out = run_cli("save-selection", "--items", ",".join(ids), "--dataset", "picked").stdout
    assert "saved 2 items with 1 annotations and 2 in clip, 1 in other, 1 in boxes to picked" in out
    (tmp_path / "ids.txt").write_text(f"{p['box'].id}\n\n")
    out = run_cli("save-selection", "--items", f"@{tmp_path / 'ids.txt'}", "--dataset", "pets", "--dir", "/sel",
                  "--export", str(tmp_path / "sel.zip"))
    assert "to pets/sel" in out.stdout and "exported the selection to" in out.stdout
    bad = run_cli("save-selection", "--items", f"{ids[0]},nope", "--dataset", "never", ok=False)
    assert bad.returncode == 2 and "nope" in bad.stderr and "nothing was written" in bad.stderr
    assert run_cli("save-selection", "--items", ids[0], ok=False).returncode == 2
    run_cli("import", str(tmp_path / "sel.zip"), "--name", "back")
    with Workspace.open(tmp_path / "cli-ws") as ws:
        assert [d.name for d in ws.datasets.list()] == ["pets", "picked", "back"]
        picked = {i.filename: _item_state(ws, i) for i in ws.datasets.get(dataset_name="picked").items.list().all()}
        assert picked == {"/cats/cat.png": source[ids[0]], "/note.txt": source[ids[1]]}
        assert "/sel/cats/cat.png" in {i.filename for i in ws.datasets.get(dataset_name="pets").items.list().all()}
        (back,) = ws.datasets.get(dataset_name="back").items.list().all()
        assert back.filename == "/cats/cat.png" and _item_state(ws, back) == source[ids[0]]
