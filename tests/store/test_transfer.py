"""Export to a folder or zip and import back losslessly; imports never escape their target."""
import json
import zipfile

import numpy as np
import pytest

from store import InvalidInput, Workspace
from tests.conftest import jpeg_bytes, png_bytes


def _populate(ws):
    ds = ws.datasets.create("pets")
    img = ds.items.upload_bytes(png_bytes(50, 40), "cat.png", dir="/cats", metadata={"user": {"k": 1}}).item
    jpg = ds.items.upload_bytes(jpeg_bytes(), "dog.jpg", dir="/dogs").item
    txt = ds.items.upload_bytes("a note ✓".encode(), "note.txt").item
    jpg.update(hidden=True)
    box = img.annotations.create("cat", (1, 2, 30, 20), metadata={"by": "me"})
    rng = np.random.default_rng(0)
    a = ws.feature_sets.create(name="clip", size=16, model="ViT-B-32")
    b = ws.feature_sets.create(name="other", size=3)
    boxes = ws.feature_sets.create(name="boxes", size=4, entity_type="annotation")
    a.features.create_many(rng.standard_normal((3, 16)).astype(np.float32) * 1e-3, [img, jpg, txt])
    b.features.create(value=[np.float32(1 / 3), 2.5e-38, -7], entity=img)
    boxes.features.create(value=rng.standard_normal(4), entity=box)
    return ds


def _snapshot(ws, ds_name):
    ds = ws.datasets.get(dataset_name=ds_name)
    out = {}
    for item in ds.items.list().all():
        sets = {ws.feature_sets.get(feature_set_id=f.feature_set_id).name: f.value.tobytes()
                for f in item.features.list().all()}
        anns = [(a.label, a.coordinates, a.metadata,
                 {ws.feature_sets.get(feature_set_id=f.feature_set_id).name: f.value.tobytes() for f in a.features.list().all()})
                for a in item.annotations.list()]
        out[item.filename] = (item.download(), item.hidden, item.metadata, item.kind, item.width, sets, anns)
    return out


@pytest.mark.parametrize("as_zip", [False, True])
def test_round_trip_bit_for_bit(ws, tmp_path, as_zip):
    ds = _populate(ws)
    target = tmp_path / ("out.zip" if as_zip else "out")
    written = ds.export(target, include_feature_vectors=True)
    assert written == target and (zipfile.is_zipfile(target) if as_zip else (target / "dataset.json").exists())
    with Workspace.open(tmp_path / "other", chroma_url=ws.index.url) as other:
        new = other.import_dataset(target)
        assert new.name == "pets"
        assert _snapshot(other, "pets") == _snapshot(ws, "pets")
        fs = other.feature_sets.get(feature_set_name="clip")
        assert fs.model == {"name": "ViT-B-32"} and fs.count() == 3
        assert other.check_index(fs.id)["ok"]


def test_export_layout_is_readable(ws_embedded, tmp_path):
    ds = _populate(ws_embedded)
    out = ds.export(tmp_path / "x", include_feature_vectors=True, feature_sets=["other"])
    rec = json.loads((out / "json" / "cats" / "cat.png.json").read_text())
    assert rec["filename"] == "/cats/cat.png" and rec["type"] == "file" and rec["annotations"][0]["label"] == "cat"
    other = ws_embedded.feature_sets.get(feature_set_name="other")
    assert rec["itemVectors"] == [{"featureSetId": other.id, "value": [np.float32(1 / 3).item(), np.float32(2.5e-38).item(), -7.0]}]
    header = json.loads((out / "dataset.json").read_text())
    assert [s["name"] for s in header["featureSets"]] == ["other"]
    assert (out / "items" / "dogs" / "dog.jpg").read_bytes() == jpeg_bytes()
    plain = ds.export(tmp_path / "plain")
    assert json.loads((plain / "json" / "cats" / "cat.png.json").read_text())["itemVectors"] == []


def test_export_refuses_non_empty_target(ws_embedded, tmp_path):
    ds = _populate(ws_embedded)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="already exists"):
        ds.export(tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def _zip_with(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_import_refuses_escaping_paths(ws_embedded, tmp_path):
    good = _populate(ws_embedded).export(tmp_path / "good.zip")
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    evil = dict(members)
    evil["../../evil.txt"] = b"x"
    _zip_with(tmp_path / "evil1.zip", evil)
    # A record whose dir climbs out, pointing at a file outside the archive's tree.
    name = next(n for n in members if n.startswith("json/") and n.endswith("note.txt.json"))
    rec = json.loads(members[name])
    rec["dir"] = "/../../.."
    evil2 = dict(members)
    evil2[name] = json.dumps(rec).encode()
    _zip_with(tmp_path / "evil2.zip", evil2)
    with Workspace.open(tmp_path / "target") as other:
        for bad in ("evil1.zip", "evil2.zip"):
            with pytest.raises(InvalidInput, match="escape|not a normal folder"):
                other.import_dataset(tmp_path / bad)
        assert other.datasets.list() == [] and other.catalog.scalar("SELECT COUNT(*) FROM items") == 0
    assert not (tmp_path.parent / "evil.txt").exists()


def test_import_refuses_symlink_out_of_folder(ws_embedded, tmp_path):
    out = _populate(ws_embedded).export(tmp_path / "exp")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    victim = out / "items" / "note.txt"
    victim.unlink()
    victim.symlink_to(secret)
    with Workspace.open(tmp_path / "t2") as other:
        with pytest.raises(InvalidInput, match="outside the export folder"):
            other.import_dataset(out)
        assert other.catalog.scalar("SELECT COUNT(*) FROM items") == 0


def test_import_twice_needs_new_name(ws_embedded, tmp_path):
    out = _populate(ws_embedded).export(tmp_path / "e.zip", include_feature_vectors=True)
    with pytest.raises(InvalidInput, match="already exists"):
        ws_embedded.import_dataset(out)
    copy = ws_embedded.import_dataset(out, name="pets-copy")
    assert copy.items.count() == 3
    assert ws_embedded.feature_sets.get(feature_set_name="clip").count() == 6


def test_import_does_not_take_unsafe_feature_set_ids(ws_embedded, tmp_path):
    out = _populate(ws_embedded).export(tmp_path / "e", include_feature_vectors=True)
    header = json.loads((out / "dataset.json").read_text())
    old = header["featureSets"][0]["id"]
    header["featureSets"][0]["id"] = "../../outside"
    (out / "dataset.json").write_text(json.dumps(header))
    for rec_path in (out / "json").rglob("*.json"):
        rec_path.write_text(rec_path.read_text().replace(old, "../../outside"))
    with Workspace.open(tmp_path / "t") as other:
        other.import_dataset(out)
        fs = other.feature_sets.get(feature_set_name=header["featureSets"][0]["name"])
        assert fs.id != "../../outside" and fs.count() == 3
        fs.delete()  # removing its cache folder must stay inside the workspace
    assert (tmp_path / "e" / "dataset.json").exists()


def test_import_messages_name_the_users_file_and_say_what_to_do(ws_embedded, tmp_path):
    """The app imports an upload from a temporary file: messages name the file the user dropped."""
    junk = tmp_path / "tmp-upload.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InvalidInput, match=r"^my export\.zip is neither an export folder nor a zip file") as caught:
        _import_shown_as(ws_embedded, junk, "my export.zip")
    assert "tmp-upload" not in str(caught.value)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(InvalidInput, match=r"^my export\.zip is missing dataset\.json"):
        _import_shown_as(ws_embedded, empty, "my export.zip")
    out = _populate(ws_embedded).export(tmp_path / "e.zip")
    # A taken name: what to do, in words for the app as for the command line.
    with pytest.raises(InvalidInput, match=r"already exists; import it under another name \(the name of the new "
                                           r"dataset; --name on the command line\)"):
        _import_shown_as(ws_embedded, out, "pets.zip")


def _import_shown_as(ws, path, shown):
    from store import import_dataset

    return import_dataset(ws, path, display_name=shown)
