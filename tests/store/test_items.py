"""Datasets and items: uploads, kinds, duplicates, names, hidden, metadata, delete."""
import pytest

from store import FeaturelabError, InvalidInput, NotFound, Workspace
from tests.conftest import jpeg_bytes, png_bytes


def test_workspace_layout_and_wal(ws_embedded):
    root = ws_embedded.path
    assert (root / "catalog.db").exists() and (root / "blobs").is_dir()
    assert not (root / "chroma").exists()  # Chroma opens at its first use
    ws_embedded.require_index()
    assert (root / "chroma").is_dir()
    assert ws_embedded.catalog.scalar("PRAGMA journal_mode") == "wal"


def test_default_home_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    with Workspace.open() as w:
        assert w.path == tmp_path / "home"
        w.datasets.create("x")
    with Workspace.open() as w:
        assert [d.name for d in w.datasets.list()] == ["x"]


def test_dataset_crud(ws_embedded):
    a = ws_embedded.datasets.create("a")
    ws_embedded.datasets.create("b")
    assert [d.name for d in ws_embedded.datasets.list()] == ["a", "b"]
    assert ws_embedded.datasets.get(dataset_name="a").id == a.id
    with pytest.raises(InvalidInput, match="already exists"):
        ws_embedded.datasets.create("a")
    a.delete()
    with pytest.raises(NotFound):
        ws_embedded.datasets.get(dataset_id=a.id)


def test_upload_kinds_sizes_and_folders(ws_embedded, tmp_path):
    ds = ws_embedded.datasets.create("d")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "p.png").write_bytes(png_bytes(32, 24))
    (tmp_path / "in" / "sub" / "j.jpg").write_bytes(jpeg_bytes(40, 30))
    (tmp_path / "in" / "note.txt").write_text("héllo wörld", encoding="utf-8")
    (tmp_path / "in" / "blob.bin").write_bytes(bytes(range(256)))
    results = ds.items.upload(tmp_path / "in", dir="/up")
    assert {r.status for r in results} == {"added"}
    by_name = {r.item.name: r.item for r in results}
    assert by_name["p.png"].kind == "image" and (by_name["p.png"].width, by_name["p.png"].height) == (32, 24)
    assert by_name["j.jpg"].dir == "/up/sub" and by_name["j.jpg"].mimetype == "image/jpeg"
    assert by_name["note.txt"].kind == "text" and by_name["note.txt"].text() == "héllo wörld"
    assert by_name["blob.bin"].kind == "other"
    assert by_name["j.jpg"].filename == "/up/sub/j.jpg"
    assert ds.items.get(filepath="/up/sub/j.jpg").id == by_name["j.jpg"].id
    assert by_name["p.png"].download() == png_bytes(32, 24)


def test_same_bytes_twice_gives_existing_item_unless_copy(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    first = ds.items.upload_bytes(b"same text", "a.txt")
    again = ds.items.upload_bytes(b"same text", "other-name.txt")
    assert again.status == "duplicate" and again.item.id == first.item.id and "a.txt" in again.message
    copy = ds.items.upload_bytes(b"same text", "a.txt", copy=True)
    assert copy.status == "added" and copy.item.id != first.item.id
    assert copy.item.name == "a (1).txt"  # the name was taken in that folder
    assert ds.items.count() == 2
    other = ws_embedded.datasets.create("other")
    assert other.items.upload_bytes(b"same text", "a.txt").status == "added"  # per dataset


@pytest.mark.parametrize(
    "name,data,needle",
    [
        ("empty.txt", b"", "empty"),
        ("broken.jpg", jpeg_bytes()[:200], "not a readable image"),
        ("fake.jpg", b"this is text, not a jpeg", "image"),
        ("latin1.txt", "café".encode("latin-1"), "UTF-8"),
        ("..", b"x", "no usable name"),
    ],
)
def test_bad_files_rejected_with_reason_and_others_kept(ws_embedded, name, data, needle):
    ds = ws_embedded.datasets.create("d")
    kept = ds.items.upload_bytes(b"keep me", "keep.txt").item
    results = ds.items.upload([(name, data), ("ok.txt", b"fine")])
    assert results[0].status == "rejected" and needle in results[0].message
    assert results[1].status == "added"
    assert ds.items.count() == 2 and ds.items.get(kept.id).download() == b"keep me"


def test_decompression_bomb_refused(ws_embedded):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (12000, 9000)).save(buf, format="PNG")  # 108 M pixels: between 1x and 2x Pillow's limit
    ds = ws_embedded.datasets.create("d")
    r = ds.items.upload_bytes(buf.getvalue(), "bomb.png")
    assert r.status == "rejected" and "decompression bomb" in r.message
    assert ds.items.count() == 0


def test_path_like_names_never_choose_storage(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    r = ds.items.upload_bytes(b"x", "../../etc/passwd")
    assert r.status == "added" and r.item.name == "passwd" and r.item.dir == "/"
    assert r.item.path.is_relative_to(ws_embedded.path / "blobs")
    with pytest.raises(FeaturelabError, match=r"\.\."):
        ds.items.upload_bytes(b"y", "a.txt", dir="/../../x")


def test_hidden_metadata_and_filters(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    a = ds.items.upload_bytes(b"a", "a.txt", metadata={"user": {"label": "cat", "score": 3}}).item
    b = ds.items.upload_bytes(b"b", "b.txt", dir="/dogs", metadata={"user": {"label": "dog", "score": 7}}).item
    ds.items.upload_bytes(png_bytes(), "c.png")
    b.update(hidden=True)

    def names(flt):
        return sorted(i.name for i in ds.items.list(flt).all())

    assert names({"hidden": False}) == ["a.txt", "c.png"]
    assert names({"metadata.user.label": "dog"}) == ["b.txt"]
    assert names({"metadata.user.score": {"$gt": 3}}) == ["b.txt"]
    assert names({"metadata.user.label": {"$exists": False}}) == ["c.png"]
    assert names({"$or": [{"dir": "/dogs"}, {"kind": "image"}]}) == ["b.txt", "c.png"]
    assert names({"filename": {"$in": ["/a.txt", "/dogs/b.txt"]}}) == ["a.txt", "b.txt"]
    assert names({"name": {"$nin": ["a.txt"]}, "type": "file"}) == ["b.txt", "c.png"]
    assert names({"metadata.user.label": {"$ne": "cat"}}) == ["b.txt", "c.png"]
    with pytest.raises(InvalidInput):
        a.update(metadata={"x": float("nan")})
    assert ds.items.get(a.id).metadata == {"user": {"label": "cat", "score": 3}}


def test_pages(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    ds.items.upload([(f"{i:02d}.txt", f"t{i}".encode()) for i in range(25)])
    pages = ds.items.list({"filter": {}, "pageSize": 10, "page": 0})
    assert pages.items_count == 25 and len(pages.items) == 10 and pages.has_next
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i.name for i in pages.all()] == [f"{i:02d}.txt" for i in range(25)]


def test_delete_items_removes_files_annotations_and_features(ws):
    ds = ws.datasets.create("d")
    img = ds.items.upload_bytes(png_bytes(), "p.png").item
    keep = ds.items.upload_bytes(b"keep", "k.txt").item
    ann = img.annotations.create("cat", (1, 1, 10, 10))
    fs_items = ws.feature_sets.create(name="items", size=3)
    fs_ann = ws.feature_sets.create(name="boxes", size=2, entity_type="annotation")
    fs_items.features.create(value=[[1, 2, 3], [4, 5, 6]], entity=[img, keep])
    fs_ann.features.create(value=[1, 1], entity=ann)
    blob = img.path
    img.delete()
    assert not blob.exists()
    assert fs_items.count() == 1 and fs_ann.count() == 0
    assert ws.wait_for_index(60)  # the index catches up in the background
    assert ws.index.count(fs_items.id) == 1 and ws.index.count(fs_ann.id) == 0
    with pytest.raises(NotFound):
        ws.get_annotation(ann.id)
    assert ds.items.get(keep.id).download() == b"keep"


@pytest.mark.parametrize(
    "name,expected",
    [("../../x", "x"), ("a/b.txt", "b.txt"), ("C:\\x", "x"), ("/etc/passwd", "passwd"), ("nul\x00byte.txt", "nulbyte.txt"),
     ("снимок 写真.txt", "снимок 写真.txt")],
)
def test_hostile_names_become_plain_names(ws_embedded, name, expected):
    ds = ws_embedded.datasets.create("d")
    r = ds.items.upload_bytes(b"content", name)
    assert r.status == "added" and r.item.name == expected and r.item.dir == "/"


def test_overlong_name_and_oversized_file_rejected(ws_embedded, tmp_path, monkeypatch):
    import store.files as files_module

    ds = ws_embedded.datasets.create("d")
    r = ds.items.upload_bytes(b"x", "a" * 300 + ".txt")
    assert r.status == "rejected" and "longer than 255" in r.message
    monkeypatch.setattr(files_module, "MAX_UPLOAD_BYTES", 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * 2048)
    for result in (ds.items.upload(big)[0], ds.items.upload_bytes(b"\x01" * 2048, "big2.bin")):
        assert result.status == "rejected" and "over the" in result.message and "FEATURELAB_MAX_UPLOAD_MB" in result.message
    assert ds.items.count() == 0


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(ws_embedded):
    import os
    import subprocess

    blobs = ws_embedded.blobs
    (blobs.root / "ab").mkdir(exist_ok=True)
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()
    stale = blobs.root / "ab" / f".tmp-{proc.pid}-x"
    live = blobs.root / "ab" / f".tmp-{os.getpid()}-y"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert blobs.remove_stale_temp_files() == 1
    assert not stale.exists() and live.exists()


def _blob_count(ws) -> int:
    return sum(1 for p in (ws.path / "blobs").rglob("*") if p.is_file())


def test_deletion_summary_counts_what_delete_takes(ws):
    a = ws.datasets.create("a")
    b = ws.datasets.create("b")
    shared = a.items.upload_bytes(png_bytes(), "p.png").item
    b.items.upload_bytes(png_bytes(), "p-copy.png")  # the same file in another dataset: it stays
    alone = a.items.upload_bytes(b"only here", "a.txt").item
    twin = a.items.upload_bytes(b"twice", "t.txt").item
    ws.upload_one(a.id, "t2.txt", b"twice", copy=True)  # one file, two items, both going
    ann = shared.annotations.create("cat", (1, 1, 10, 10))
    fs_items = ws.feature_sets.create(name="items", size=2)
    fs_ann = ws.feature_sets.create(name="boxes", size=2, entity_type="annotation")
    fs_items.features.create(value=[[1, 2], [3, 4], [5, 6]], entity=[shared, alone, twin])
    fs_ann.features.create(value=[1, 1], entity=ann)

    summary = ws.datasets.deletion_summary(a.id)
    assert (summary.items, summary.files, summary.annotations, summary.features) == (4, 2, 1, 4)
    assert summary.describe() == ("4 items, 2 files no longer referenced by any other item, "
                                  "1 annotation and 4 feature vectors")
    # A part of the dataset: t.txt's file is still t2.txt's, so no file goes.
    part = ws.deletion_summary([twin.id, "no-such-id"])
    assert (part.items, part.files, part.annotations, part.features) == (1, 0, 0, 1)
    assert ws.deletion_summary([]).describe().startswith("0 items, 0 files")

    files_before, vectors_before = _blob_count(ws), fs_items.count() + fs_ann.count()
    ws.datasets.delete(a.id)
    assert files_before - _blob_count(ws) == summary.files
    assert vectors_before - (fs_items.count() + fs_ann.count()) == summary.features
    assert b.items.count() == 1 and ws.datasets.deletion_summary(b.id).files == 1


def test_folders_of_a_dataset(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    ds.items.upload([("a.txt", b"a")], dir="/x/y")
    ds.items.upload([("b.txt", b"b"), ("c.txt", b"c")], dir="/w")
    ws_embedded.datasets.create("other").items.upload([("d.txt", b"d")], dir="/elsewhere")
    assert ds.items.folders() == ["/w", "/x/y"]


def test_browse_pages_folders_hidden_filter_and_sort(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    ds.items.upload([(f"{i:02d}.txt", f"top {i}".encode()) for i in range(5)], dir="/a")
    below = ds.items.upload([("x.txt", b"x"), ("y.txt", b"y")], dir="/a/deep")
    ds.items.upload([("z.txt", b"z")], dir="/b")
    below[1].item.update(hidden=True, metadata={"user": {"n": 7}})

    page = ds.items.browse(page_size=3)
    assert page.items_count == 8 and [i.filename for i in page.items] == ["/a/00.txt", "/a/01.txt", "/a/02.txt"]
    assert [i.filename for i in ds.items.browse(page=2, page_size=3).items] == ["/a/deep/y.txt", "/b/z.txt"]
    assert ds.items.browse(folder="/a").items_count == 7  # /a and below it
    assert ds.items.browse(folder="a/", subfolders=False).items_count == 5
    assert ds.items.browse(folder="/", subfolders=True).items_count == 8
    assert [i.name for i in ds.items.browse(hidden=True).items] == ["y.txt"]
    assert ds.items.browse(hidden=False).items_count == 7
    assert [i.name for i in ds.items.browse(filter={"metadata.user.n": {"$gte": 7}}).items] == ["y.txt"]
    assert [i.name for i in ds.items.browse(filter={"filter": {"name": "z.txt"}, "page": 4}).items] == ["z.txt"]
    assert ds.items.browse(sort="filename", descending=True, page_size=1).items[0].filename == "/b/z.txt"
    with pytest.raises(FeaturelabError):
        ds.items.browse(filter={"nosuchfield": 1})
    with pytest.raises(InvalidInput, match="Search page"):
        ds.items.browse(filter={"filter": {}, "join": {}})
