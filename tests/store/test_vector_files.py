"""Each set's vectors in memory-mapped files (``store.vectors``): read without decoding the
catalog's blobs, and equal to the catalog bit for bit after every kind of write."""
import json

import numpy as np
import pytest

from store import Workspace
from store.vectors import VectorFiles


def _catalog(ws, fs):
    """The set as the catalog holds it: (entity ids, feature ids, float32 bytes), in rid order."""
    rows = ws.catalog.all("SELECT entity_id, id, value FROM features WHERE feature_set_id=? ORDER BY rid", (fs.id,))
    return [r[0] for r in rows], [r[1] for r in rows], b"".join(r[2] for r in rows)


def _assert_files_equal_catalog(ws, fs):
    want = _catalog(ws, fs)
    for got in (ws.matrix(fs), VectorFiles(ws.path / "cache" / "vectors", ws.catalog.path).load(fs.id, fs.size)):
        assert got.entity_ids.tolist() == want[0] and got.feature_ids.tolist() == want[1]
        assert got.values.tobytes() == want[2]
        assert got.sq_norms.tobytes() == np.einsum("ij,ij->i", got.values, got.values, dtype=np.float32).tobytes()
    m = ws.matrix(fs)
    assert len(m) == 0 or not m.values.flags.writeable  # mapped from the file, not a copy read from SQLite


def _meta(ws, fs):
    return json.loads((ws.path / "cache" / "vectors" / fs.id / "meta.json").read_text())


def test_files_equal_the_catalog_after_every_kind_of_write(ws_embedded):
    ws = ws_embedded
    ds = ws.datasets.create("d")
    items = [r.item for r in ds.items.upload([(f"{i:03d}.png", _png(i)) for i in range(30)])]
    fs = ws.feature_sets.create(name="s", size=6)
    rng = np.random.default_rng(4)
    _assert_files_equal_catalog(ws, fs)  # empty

    fs.features.create(value=rng.standard_normal(6).tolist(), entity=items[0])  # create one
    _assert_files_equal_catalog(ws, fs)
    fs.features.create_many(rng.standard_normal((20, 6)).astype(np.float32), items[1:21])  # create many
    _assert_files_equal_catalog(ws, fs)
    gen = _meta(ws, fs)["gen"]
    fs.features.create_many(rng.standard_normal((5, 6)).astype(np.float32), items[21:26])
    _assert_files_equal_catalog(ws, fs)
    assert _meta(ws, fs)["gen"] == gen  # appends extend the files in place

    fs.features.create(value=[9.0] * 6, entity=items[3])  # update: a new vector for an entity
    _assert_files_equal_catalog(ws, fs)
    assert _meta(ws, fs)["gen"] > gen  # the old row went: the survivors were copied
    ws.delete_features([ws.matrix(fs).feature_ids[5]])  # delete one vector
    _assert_files_equal_catalog(ws, fs)
    ws.delete_items([items[8].id, items[9].id])  # delete items (their vectors go too)
    _assert_files_equal_catalog(ws, fs)

    boxes = ws.feature_sets.create(name="boxes", size=3, entity_type="annotation")
    anns = [items[i].annotations.create("x", (0, 0, 4, 4)) for i in range(10, 14)]
    boxes.features.create_many(np.arange(12, dtype=np.float32).reshape(4, 3), anns)
    _assert_files_equal_catalog(ws, boxes)
    ws.delete_annotations([anns[1].id])  # an annotation's vector goes with it
    _assert_files_equal_catalog(ws, boxes)

    ws.bulk({"filter": {"name": "012.png"}, "update": {"hidden": True}, "resource": "items"})  # undoable hide
    _assert_files_equal_catalog(ws, fs)

    version = ws.matrix(fs).version
    fs.delete()  # set deletion: its files go, and a set made again with its id starts afresh
    assert not (ws.path / "cache" / "vectors" / fs.id).exists()
    again = ws.feature_sets.create(name="s", size=6, feature_set_id=fs.id)
    again.features.create_many(rng.standard_normal((3, 6)).astype(np.float32), items[:3])
    _assert_files_equal_catalog(ws, again)
    assert ws.matrix(again).version != version or len(ws.matrix(again)) == 3


def test_writes_from_another_workspace_object_are_seen(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([(f"{i}.txt", str(i).encode()) for i in range(10)])]
        fs = ws.feature_sets.create(name="s", size=4)
        fs.features.create_many(np.ones((5, 4), dtype=np.float32), items[:5])
        _assert_files_equal_catalog(ws, fs)
        other = VectorFiles(ws.path / "cache" / "vectors", ws.catalog.path)
        first = other.load(fs.id, 4)
        fs.features.create_many(np.full((5, 4), 2, dtype=np.float32), items[5:])
        ws.delete_items([items[0].id])
        later = other.load(fs.id, 4)  # the other reader finds the files moved on, or moves them on itself
        assert later.values.tobytes() == _catalog(ws, fs)[2] and len(later.values) == 9
        assert first.values.tobytes() == np.ones((5, 4), dtype=np.float32).tobytes()  # its old mapping still reads
        other.close()


@pytest.mark.parametrize("damage", ["torn values", "stale tail", "meta garbled", "gen file gone"])
def test_damaged_files_are_rebuilt_from_the_catalog(tmp_path, monkeypatch, damage):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    path = tmp_path / "ws"
    with Workspace.open(path) as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([(f"{i}.txt", str(i).encode()) for i in range(50)])]
        fs = ws.feature_sets.create(name="s", size=8)
        fs.features.create_many(np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32), items)
        ws.matrix(fs)
        folder = ws.path / "cache" / "vectors" / fs.id
        gen = _meta(ws, fs)["gen"]
    values = folder / f"{gen}.f32"
    if damage == "torn values":
        values.write_bytes(values.read_bytes()[:100])
    elif damage == "stale tail":  # what a crash in the middle of an append leaves
        with open(values, "ab") as f:
            f.write(b"\x7f" * 1000)
    elif damage == "meta garbled":
        (folder / "meta.json").write_text("{not json")
    else:
        values.unlink()
    with Workspace.open(path) as ws:
        _assert_files_equal_catalog(ws, ws.feature_sets.get(feature_set_name="s"))


def _png(i):
    from tests.conftest import png_bytes

    return png_bytes(16, 12, (i * 7 % 256, 10, 10))


@pytest.mark.parametrize("kind", ["npy", "parquet list", "parquet large list"])
def test_bulk_import_files_arrive_bit_for_bit(ws_embedded, tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from store.io import import_vectors

    ws = ws_embedded
    items = [r.item for r in ws.datasets.create("d").items.upload([(f"{i}.txt", str(i).encode()) for i in range(40)])]
    values = np.random.default_rng(2).standard_normal((40, 16)).astype(np.float32)
    ids = [i.id for i in items]
    if kind == "npy":
        path = tmp_path / "v.npy"
        np.save(path, values)
        (tmp_path / "keys.txt").write_text("\n".join(ids))
        report = import_vectors(ws, ws.feature_sets.create(name="s", size=16), path, key="id", keys=tmp_path / "keys.txt")
    else:
        flat = pa.array(values.reshape(-1))
        column = (pa.FixedSizeListArray.from_arrays(flat, 16) if kind == "parquet list" else
                  pa.LargeListArray.from_arrays(pa.array(np.arange(0, 641, 16), pa.int64()), flat))
        path = tmp_path / "v.parquet"
        pq.write_table(pa.table({"id": ids, "vector": column}), path)
        report = import_vectors(ws, ws.feature_sets.create(name="s", size=16), path, key="id")
    assert report.imported == 40
    fs = ws.feature_sets.get(feature_set_name="s")
    got = {e: v.tobytes() for e, v in zip(ws.matrix(fs).entity_ids.tolist(), ws.matrix(fs).values)}
    assert got == {i: values[n].tobytes() for n, i in enumerate(ids)}
    _assert_files_equal_catalog(ws, fs)
