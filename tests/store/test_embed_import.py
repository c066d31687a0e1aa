"""Precomputed vectors: CSV, Parquet, .npy and .npz, keyed by item name or id."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from store import InvalidInput, NotFound
from store.io.vector_import import import_vectors

PROFILES = {  # the seed's customer profiles: [age, income, years, purchases, value]
    "alice.txt": [35, 75000, 5, 20, 150],
    "bob.txt": [52, 41000, 12, 3, 20.5],
    "carol.txt": [23, 30500, 1, 41, 310],
}


@pytest.fixture
def customers(ws_embedded):
    ds = ws_embedded.datasets.create("crm")
    results = ds.items.upload([(name, f"customer {name}".encode()) for name in PROFILES])
    return ds, {r.item.name: r.item for r in results}


def _stored(ws, fs) -> dict[str, list[float]]:
    rows = ws.catalog.all("SELECT entity_id, value FROM features WHERE feature_set_id=?", (fs.id,))
    return {r[0]: np.frombuffer(r[1], dtype=np.float32).tolist() for r in rows}


def _expected(items) -> dict[str, list[float]]:
    return {items[n].id: np.asarray(v, dtype=np.float32).tolist() for n, v in PROFILES.items()}


def test_csv_keyed_by_name(ws_embedded, customers, tmp_path):
    ds, items = customers
    path = tmp_path / "profiles.csv"
    path.write_text("name,age,income,years,purchases,value\n"
                    + "".join(f"{n}, {','.join(str(x) for x in v)}\n" for n, v in PROFILES.items())
                    + "dave.txt,1,2,3,4,5\n")
    fs = ws_embedded.feature_sets.create(name="profiles", size=5, set_type="profile")
    report = import_vectors(ws_embedded, fs, path, key="name", dataset=ds)
    assert report.imported == 3 and report.unmatched == ["dave.txt"]
    assert _stored(ws_embedded, fs) == _expected(items)
    assert ws_embedded.check_index(fs.id) == {"ok": True, "catalog": 3, "index": 3}


def test_parquet_with_a_list_column_keyed_by_id(ws_embedded, customers, tmp_path):
    _, items = customers
    path = tmp_path / "profiles.parquet"
    pd.DataFrame({"id": [items[n].id for n in PROFILES], "vector": [v for v in PROFILES.values()]}).to_parquet(path)
    fs = ws_embedded.feature_sets.create(name="p", size=5)
    assert import_vectors(ws_embedded, "p", path, key="id").imported == 3
    assert _stored(ws_embedded, fs) == _expected(items)


def test_npy_with_keys_and_npz(ws_embedded, customers, tmp_path):
    _, items = customers
    values = np.array(list(PROFILES.values()), dtype=np.float64)
    np.save(tmp_path / "v.npy", values)
    (tmp_path / "keys.txt").write_text("\n".join(f"/{n}" for n in PROFILES))  # /dir/name form
    fs = ws_embedded.feature_sets.create(name="n", size=5)
    assert import_vectors(ws_embedded, fs, tmp_path / "v.npy", keys=tmp_path / "keys.txt").imported == 3
    assert _stored(ws_embedded, fs) == _expected(items)
    with pytest.raises(InvalidInput, match="without keys"):
        import_vectors(ws_embedded, fs, tmp_path / "v.npy")

    np.savez(tmp_path / "v.npz", keys=np.array([items[n].id for n in PROFILES]), vectors=values[::-1] * 2)
    fs2 = ws_embedded.feature_sets.create(name="z", size=5)
    import_vectors(ws_embedded, fs2, tmp_path / "v.npz", key="id")
    doubled = {items[n].id: (np.asarray(v, np.float32) * 2).tolist() for n, v in zip(PROFILES, list(PROFILES.values())[::-1])}
    assert _stored(ws_embedded, fs2) == doubled


def test_bad_files_write_nothing(ws_embedded, customers, tmp_path):
    ds, items = customers
    fs = ws_embedded.feature_sets.create(name="p", size=5)
    cases = {
        "wide.csv": ("name,a,b,c,d,e,f\nalice.txt,1,2,3,4,5,6\n", "6 values per row but feature set 'p' holds size 5"),
        "gap.csv": ("name,a,b,c,d,e\nalice.txt,1,2,3,4,5\nbob.txt,1,,3,4,5\n", "row 2 holds an empty cell"),
        "text.csv": ("name,a,b,c,d,e\nalice.txt,1,2,x3,4,5\n", "column 'c' holds something that is not a number"),
        "dup.csv": ("name,a,b,c,d,e\nalice.txt,1,2,3,4,5\nalice.txt,1,2,3,4,5\n", "more than once"),
        "none.csv": ("name,a,b,c,d,e\nzed.txt,1,2,3,4,5\n", "nothing was imported"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises((InvalidInput, NotFound), match=message):
            import_vectors(ws_embedded, fs, tmp_path / name, dataset=ds)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match="not a plain numeric"):
        import_vectors(ws_embedded, fs, tmp_path / "obj.npy", keys=["alice.txt"])
    assert fs.count() == 0


def test_equal_names_need_a_path_or_a_dataset(ws_embedded, customers, tmp_path):
    other = ws_embedded.datasets.create("other")
    other.items.upload([("alice.txt", b"another alice")])
    fs = ws_embedded.feature_sets.create(name="p", size=5)
    path = tmp_path / "a.csv"
    path.write_text("name,a,b,c,d,e\nalice.txt,1,2,3,4,5\n")
    with pytest.raises(InvalidInput, match="2 items are named 'alice.txt'"):
        import_vectors(ws_embedded, fs, path)
    ds, items = customers
    assert import_vectors(ws_embedded, fs, path, dataset="crm").imported == 1
    assert list(_stored(ws_embedded, fs)) == [items["alice.txt"].id]


def test_annotation_sets_take_annotation_ids(ws_embedded, tmp_path):
    from tests.conftest import png_bytes

    ds = ws_embedded.datasets.create("boxes")
    item = ds.items.upload([("p.png", png_bytes(32, 24))])[0].item
    ann = item.annotations.create("cat", (1, 1, 10, 10))
    fs = ws_embedded.feature_sets.create(name="b", size=2, entity_type="annotation")
    path = tmp_path / "b.csv"
    path.write_text(f"id,x,y\n{ann.id},0.5,-1\n")
    assert import_vectors(ws_embedded, fs, path, key="id").imported == 1
    assert _stored(ws_embedded, fs) == {ann.id: [0.5, -1.0]}
    with pytest.raises(InvalidInput, match="annotation id"):
        import_vectors(ws_embedded, fs, path, key="name")


def test_messages_name_the_file_as_the_user_knows_it(ws_embedded, customers, tmp_path):
    """An app writes an upload to a temporary file; every message names the user's file."""
    ds, _ = customers
    fs = ws_embedded.feature_sets.create(name="p", size=5)
    cases = {
        "name,a,b\nalice.txt,1,2\n": r"^customers\.csv has 2 values per row but feature set 'p' holds size 5; "
                                     r"import it into a set of size 2",
        "name,a,b,c,d,e\nalice.txt,1,2,3,4,\n": r"^customers\.csv: row 1 holds an empty cell",
        "name,a,b,c,d,e\nalice.txt,1,2,x,4,5\n": r"^customers\.csv: column 'c' holds something that is not a number",
        "name,a,b,c,d,e\nzed.txt,1,2,3,4,5\n": r"^no key in customers\.csv names an entity",
    }
    for text, message in cases.items():
        (tmp_path / "vectors.csv").write_text(text)
        with pytest.raises((InvalidInput, NotFound), match=message) as caught:
            import_vectors(ws_embedded, fs, tmp_path / "vectors.csv", dataset=ds, display_name="customers.csv")
        assert "vectors.csv" not in str(caught.value) and str(tmp_path) not in str(caught.value)
    # Without a display name, the file's own name, as before.
    with pytest.raises(NotFound, match=r"^no key in vectors\.csv"):
        import_vectors(ws_embedded, fs, tmp_path / "vectors.csv", dataset=ds)
    assert fs.count() == 0
