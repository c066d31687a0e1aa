"""Feature sets and features: create, bulk, replace, list, delete, errors that write nothing,
and the Chroma index kept in step with the catalog (embedded and server)."""
import numpy as np
import pytest

from store import FeaturelabError, InvalidInput, NotFound, Workspace
from tests.conftest import png_bytes


def _items(ws, n, name="d"):
    ds = ws.datasets.get_or_create(name)
    res = ds.items.upload([(f"{i:03d}.txt", f"{name}-{i}".encode()) for i in range(n)])
    return ds, [r.item for r in res]


def test_feature_set_crud_like_the_seed(ws):
    fs = ws.feature_sets.create(name="text-embeddings-set", size=1024, set_type="embeddings", entity_type="item")
    linked = ws.feature_sets.create(name="text-embedding-3", set_type="embeddings", entity_type="item",
                                    model_id="my-embedder", size=1536)
    assert ws.feature_sets.get(feature_set_name="text-embeddings-set").id == fs.id
    assert ws.feature_sets.get(feature_set_id=linked.id).model == {"name": "my-embedder"}
    assert [s.name for s in ws.feature_sets.list()] == ["text-embeddings-set", "text-embedding-3"]
    with pytest.raises(InvalidInput, match="already exists"):
        ws.feature_sets.create(name="text-embeddings-set", size=3)
    for bad in (dict(size=0), dict(size="8"), dict(size=8, entity_type="pixel"), dict(size=8, metric="manhattan")):
        with pytest.raises(InvalidInput):
            ws.feature_sets.create(name="bad", **bad)
    fs.delete()
    with pytest.raises(NotFound):
        ws.feature_sets.get(feature_set_name="text-embeddings-set")
    with pytest.raises(InvalidInput):
        ws.feature_sets.get()


def test_create_list_get_delete_features(ws):
    ds, items = _items(ws, 3)
    fs = ws.feature_sets.create(name="s", size=4)
    f0 = fs.features.create(value=[1, 2, 3, 4], entity=items[0])
    bulk = fs.features.create(value=[[0, 0, 0, 1], [5, 5, 5, 5]], entity=items[1:])
    assert f0.value.dtype == np.float32 and f0.value.tolist() == [1, 2, 3, 4]
    assert [f.entity_id for f in bulk] == [items[1].id, items[2].id]
    assert ws.wait_for_index(60)  # the index catches up in the background
    assert fs.count() == 3 and ws.index.count(fs.id) == 3
    listed = fs.features.list(entity_id=items[2].id).items
    assert len(listed) == 1 and listed[0].value.tolist() == [5, 5, 5, 5]
    seed_style = {"entityId": items[1].id}
    assert [f.id for f in fs.features.list(filters=seed_style).all()] == [bulk[0].id]
    assert fs.features.get(f0.id).entity_id == items[0].id
    fs.features.delete(f0.id)
    assert ws.wait_for_index(60)  # the index catches up in the background
    assert fs.count() == 2 and ws.index.count(fs.id) == 2
    with pytest.raises(NotFound):
        fs.features.get(f0.id)


def test_item_features_across_sets_and_replace(ws):
    ds, items = _items(ws, 2)
    a = ws.feature_sets.create(name="a", size=2)
    b = ws.feature_sets.create(name="b", size=3)
    a.features.create(value=[1, 1], entity=items[0])
    b.features.create(value=[1, 2, 3], entity=items[0])
    b.features.create(value=[9, 9, 9], entity=items[1])
    feats = list(items[0].features.list().all())
    assert sorted(f.feature_set_id for f in feats) == sorted([a.id, b.id])
    # Creating again for the same entity replaces: still one vector, the new value, in both stores.
    newer = a.features.create(value=[7, 7], entity=items[0])
    assert a.count() == 1 and a.features.list().items[0].value.tolist() == [7, 7]
    assert ws.wait_for_index(60)  # the index catches up in the background
    assert ws.index.get_vectors(a.id, [items[0].id])[items[0].id].tolist() == [7, 7]
    assert newer.id == a.features.list().items[0].id


def _state(ws, fs):
    rows = ws.catalog.all("SELECT id, entity_id, value FROM features WHERE feature_set_id=? ORDER BY id", (fs.id,))
    assert ws.wait_for_index(60)  # the index catches up in the background
    return [tuple(r) for r in rows], ws.index.count(fs.id)


@pytest.mark.parametrize(
    "values,entities,needle",
    [
        ([[1, 2, 3]], "ok", "size 4, got size 3"),
        ([[1, 2, float("nan"), 4]], "ok", "NaN or infinity"),
        ([[1, 2, float("inf"), 4]], "ok", "NaN or infinity"),
        ([[1, 2, 3, 1e39]], "ok", "too large for float32"),
        ([[1, 2, 3, 4]], "missing", "unknown item id"),
        ([[1, 2, 3, 4], [1, 2, 3, 4]], "twice", "appears twice"),
        ([[1, 2, 3, 4]], "two", "2 entities"),
    ],
)
def test_bad_features_write_nothing(ws, values, entities, needle):
    ds, items = _items(ws, 3)
    fs = ws.feature_sets.create(name="s", size=4)
    fs.features.create(value=[[0, 0, 0, 0], [1, 1, 1, 1]], entity=items[:2])
    before = _state(ws, fs)
    ents = {"ok": [items[2]], "missing": ["nope"], "twice": [items[2], items[2]], "two": items[1:3]}[entities]
    with pytest.raises(FeaturelabError, match=needle):
        fs.features.create(value=values, entity=ents)
    assert _state(ws, fs) == before


def test_entity_type_must_match(ws):
    ds = ws.datasets.create("d")
    img = ds.items.upload_bytes(png_bytes(), "p.png").item
    ann = img.annotations.create("cat", (0, 0, 5, 5))
    items_set = ws.feature_sets.create(name="i", size=2)
    ann_set = ws.feature_sets.create(name="a", size=2, entity_type="annotation")
    with pytest.raises(InvalidInput, match="holds item vectors"):
        items_set.features.create(value=[1, 2], entity=ann)
    with pytest.raises(NotFound):
        ann_set.features.create(value=[1, 2], entity=img.id)  # an item id is not an annotation id
    assert ann_set.features.create(value=[1, 2], entity=ann).entity_id == ann.id
    assert [f.feature_set_id for f in ann.features.list().all()] == [ann_set.id]


def test_delete_set_removes_its_vectors(ws):
    ds, items = _items(ws, 2)
    fs = ws.feature_sets.create(name="s", size=2)
    fs.features.create(value=[[1, 2], [3, 4]], entity=items)
    name = ws.index.collection_name(fs.id)
    fs.delete()
    assert ws.catalog.scalar("SELECT COUNT(*) FROM features") == 0
    assert name not in [c.name for c in ws.index.client.list_collections()]
    assert list(items[0].features.list().all()) == []


def test_bulk_vectors_bit_for_bit_in_catalog_and_index(ws):
    ds, items = _items(ws, 50)
    fs = ws.feature_sets.create(name="s", size=16)
    values = np.random.default_rng(3).standard_normal((50, 16)).astype(np.float32)
    fs.features.create_many(values, [i.id for i in items])
    m = ws.matrix(fs)
    got = np.stack([m.values[m.row_of[i.id]] for i in items])
    assert got.tobytes() == values.tobytes()
    assert ws.wait_for_index(60)  # the index catches up in the background
    in_index = ws.index.get_vectors(fs.id, [i.id for i in items])
    assert np.stack([in_index[i.id] for i in items]).tobytes() == values.tobytes()


def _set_rows(ws, fs):
    rows = ws.catalog.all("SELECT entity_id, id, value FROM features WHERE feature_set_id=?", (fs.id,))
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_bulk_batch_of_old_and_new_entities_replaces_the_old_and_adds_the_new(ws_embedded):
    """The replaced rows go in one statement: entities with a vector in the set get the new
    one (a new feature id), new entities get theirs, and another set's vectors stay."""
    ws = ws_embedded
    ds, items = _items(ws, 8)
    fs, other = ws.feature_sets.create(name="s", size=4), ws.feature_sets.create(name="o", size=4)
    rng = np.random.default_rng(5)
    first, second = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    other.features.create_many(first, items[:5])
    old = fs.features.create_many(first, items[:5])
    new = fs.features.create_many(second, items[3:])  # items 3 and 4 had a vector in the set, 5 to 7 none
    want = {i.id: (f.id, first[k].tobytes()) for k, (i, f) in enumerate(zip(items[:3], old[:3]))}
    want |= {i.id: (f.id, second[k].tobytes()) for k, (i, f) in enumerate(zip(items[3:], new))}
    assert _set_rows(ws, fs) == want and {f.id for f in old[3:]}.isdisjoint(fid for fid, _ in want.values())
    assert {e: v for e, (_, v) in _set_rows(ws, other).items()} == {i.id: first[k].tobytes() for k, i in enumerate(items[:5])}
    files = ws.vectors.load(fs.id, 4)
    assert dict(zip(files.entity_ids.tolist(), (r.tobytes() for r in files.values))) == {e: v for e, (_, v) in want.items()}
    assert ws.wait_for_index(60)
    stored = ws.index.get_vectors(fs.id, [i.id for i in items])
    assert {e: v.tobytes() for e, v in stored.items()} == {e: v for e, (_, v) in want.items()}


def test_bulk_records_keep_the_values_as_stored_when_the_callers_array_changes(ws_embedded):
    ws = ws_embedded
    ds, items = _items(ws, 3)
    fs = ws.feature_sets.create(name="s", size=4)
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    feats = fs.features.create_many(values, items)
    one = fs.features.create(value=values[0], entity=items[0])  # a 1-D row of the caller's array
    values[:] = -1  # the caller reuses its buffer
    assert [f.value.tolist() for f in feats] == np.arange(12).reshape(3, 4).tolist() and one.value.tolist() == [0, 1, 2, 3]
    from_lists = fs.features.create_many([[0.1, 0.2, 0.3, 0.4]], items[1:2])  # converted: float32 as stored
    assert from_lists[0].value.tobytes() == _set_rows(ws, fs)[items[1].id][1]


def test_the_finite_check_refuses_nan_and_infinity_and_keeps_large_finite_values(ws_embedded):
    """One row sum finds the suspects: a NaN or an infinity makes it non-finite, and rows whose
    sum only overflows float32 (every value near its maximum) are still accepted."""
    ws = ws_embedded
    ds, items = _items(ws, 3)
    fs = ws.feature_sets.create(name="s", size=4)
    for row, bad in ((2, [1, float("nan"), 1, 1]), (1, [float("inf"), float("-inf"), 0, 0]), (0, [0, 0, 0, float("-inf")])):
        values = np.ones((3, 4), dtype=np.float32)
        values[row] = bad
        with pytest.raises(InvalidInput, match=f"vector {row} holds NaN or infinity"):
            fs.features.create_many(values, items)
        assert fs.count() == 0
    large = np.full((3, 4), np.finfo(np.float32).max, dtype=np.float32) * np.float32([[1], [-1], [1]])
    fs.features.create_many(large, items)
    assert b"".join(_set_rows(ws, fs)[i.id][1] for i in items) == large.tobytes()


def test_index_caught_up_after_reopen_and_repaired_when_lost(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    path = tmp_path / "ws"
    with Workspace.open(path) as w:
        ds, items = _items(w, 5)
        fs = w.feature_sets.create(name="s", size=3)
        fs.features.create_many(np.arange(15, dtype=np.float32).reshape(5, 3), items)
        assert w.wait_for_index(60)  # the index catches up in the background
        # Simulate a crash between the catalog commit and the Chroma write (no worker left to catch up).
        w.index_sync.stop()
        with w.catalog.transaction() as c:
            c.execute("UPDATE feature_sets SET indexed_rid=0 WHERE id=?", (fs.id,))
        w.index.delete(fs.id, [items[0].id, items[1].id])
        assert w.index.count(fs.id) == 3
        assert not w.index_state(fs.id).caught_up
    with Workspace.open(path) as w:  # catching up resumes at open, in the background
        assert w.wait_for_index(60)
        assert w.index.count(fs.id) == 5
        assert w.check_index(fs.id) == {"ok": True, "catalog": 5, "index": 5}
        w.index.drop(fs.id)  # the index is lost entirely
        assert w.check_index(fs.id)["index"] == 0
        w.repair_index(fs.id)
        assert w.check_index(fs.id)["ok"]
        assert w.wait_for_index(60)  # the index catches up in the background
        vecs = w.index.get_vectors(fs.id, [i.id for i in items])
        assert vecs[items[4].id].tolist() == [12, 13, 14]


def test_deleted_chroma_folder_is_rebuilt_at_open_and_search_answers_as_before(tmp_path, monkeypatch):
    import shutil

    from store import Filters

    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    path = tmp_path / "ws"
    values = np.random.default_rng(5).standard_normal((30, 6)).astype(np.float32)
    with Workspace.open(path) as w:
        ds, items = _items(w, 30)
        fs = w.feature_sets.create(name="s", size=6)
        fs.features.create_many(values, items)
        before = [(i.id, i.distance) for i in w.search(Filters().add_euclid(fs, values[2], k=5, approximate=True)).items]
    shutil.rmtree(path / "chroma")
    with Workspace.open(path) as w:
        assert w.require_index() is not None and w.rebuilt_at_open == ["s"]  # found at the index's first open
        after = [(i.id, i.distance) for i in w.search(Filters().add_euclid(fs, values[2], k=5, approximate=True)).items]
        assert [i for i, _ in after] == [i for i, _ in before]
        assert np.allclose([d for _, d in after], [d for _, d in before], atol=1e-5)


def test_rename_dataset_and_feature_set_keeps_their_contents(ws_embedded):
    ds = ws_embedded.datasets.create("old")
    ws_embedded.datasets.create("taken")
    item = ds.items.upload_bytes(b"x", "x.txt").item
    fs = ws_embedded.feature_sets.create(name="set", size=2)
    fs.features.create([1.0, 2.0], item)
    assert ws_embedded.datasets.rename(ds.id, "new").name == "new" and ds.items.count() == 1
    with pytest.raises(InvalidInput, match="already exists"):
        ws_embedded.datasets.rename(ds.id, "taken")
    renamed = ws_embedded.feature_sets.update(fs.id, name="set2", set_type="clip")
    assert (renamed.name, renamed.set_type, renamed.count()) == ("set2", "clip", 1)
    hits = ws_embedded.search({"filter": {"value": {"$euclid": {"input": [1.0, 2.0]}}, "featureSetId": fs.id},
                               "resource": "feature_vectors"}).items
    assert [h.entity_id for h in hits] == [item.id]
    with pytest.raises(InvalidInput, match="non-empty"):
        ws_embedded.feature_sets.update(fs.id, name=" ")
