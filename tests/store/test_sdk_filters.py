"""The filter language as the real Dataloop SDK speaks it: queries built with `dtlpy.Filters`
(its builder and `custom_filter=`), the JSON its `prepare()` posts (or the object itself),
compared with a plain-Python reference of Dataloop's semantics on randomized data: the
same ids, in the same order where the query orders, and exact distances."""
import re
from datetime import datetime, timezone

import numpy as np
import pytest

dl = pytest.importorskip("dtlpy")

from store import FilterError, InvalidInput  # noqa: E402

from tests.conftest import png_bytes  # noqa: E402

FOLDERS = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/c"]
DAY = 86_400.0
START = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """180 items over nested folders (images and texts), hidden ones, user metadata with a
    list of objects, boxes on some images, distinct creation times, and a feature set."""
    from store import Workspace

    rng = np.random.default_rng(7)
    ws = Workspace.open(tmp_path_factory.mktemp("sdk") / "ws")
    ds = ws.datasets.create("sdk")
    records = []
    for i in range(180):
        folder = FOLDERS[i % len(FOLDERS)]
        image = i % 4 == 0
        name = f"{'img' if image else 'note'}-{i:03d}.{'png' if image else 'txt'}"
        data = png_bytes(8 + i % 5, 8, (i, 3, 7)) if image else f"note {i}".encode()
        meta = {"user": {"num": int(rng.integers(0, 10)), "tag": ["red", "blue", None][i % 3],
                         "tags": [{"id": int(k), "ok": bool(k % 2)} for k in rng.choice(6, i % 3, replace=False)]}}
        if i % 7 == 0:
            del meta["user"]["tag"]
        item = ds.items.upload_bytes(data, name, dir=folder, metadata=meta).item
        if i % 5 == 0:
            item = item.update(hidden=True)
        if image and i % 8 == 0:
            item.annotations.create("thing", (0, 0, 4, 4))
        records.append(item)
    created = rng.permutation(len(records)) * DAY / 3 + START
    with ws.catalog.transaction() as c:  # spread the creation times: the SDK compares them as dates
        c.executemany("UPDATE items SET created_at=? WHERE id=?", [(float(t), r.id) for t, r in zip(created, records)])
    fs = ws.feature_sets.create(name="sdk-vectors", size=6)
    values = rng.standard_normal((len(records), 6)).astype(np.float32)
    fs.features.create_many(values, records)
    items = {i.id: i for i in ws.items_by_ids([r.id for r in records]).values()}
    yield ws, ds, fs, items, dict(zip([r.id for r in records], values))
    ws.close()


# ---- the reference: Dataloop's semantics in plain Python -------------------------------
def field_value(item, name: str):
    if name.startswith("metadata."):
        value = item.metadata
        for key in name.split(".")[1:]:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value
    return {"id": item.id, "name": item.name, "dir": item.dir, "filename": item.filename, "type": "file",
            "hidden": item.hidden, "createdAt": item.created_at, "datasetId": item.dataset_id,
            "annotated": bool(item.annotations.list())}[name]


def glob_matches(pattern: str, value: str) -> bool:
    if pattern.endswith("/**") and (value == pattern[:-3] or value == "" and pattern == "/**"):
        return True
    body = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in re.split(r"(\*\*|\*)", pattern))
    return re.fullmatch(body, value) is not None


def as_epoch(value):
    return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else value


def compare(have, op: str, want, name: str) -> bool:
    if name == "createdAt":
        want = [as_epoch(w) for w in want] if isinstance(want, list) else as_epoch(want)
    if op in ("$eq", "$ne") and isinstance(want, str) and "*" in want and name in ("dir", "filename", "name"):
        hit = glob_matches(want, have)
        return hit if op == "$eq" else not hit
    if op == "$eq":
        return have == want
    if op == "$ne":
        return have != want
    if op == "$in":
        return have in want
    if op == "$nin":
        return have not in want
    if op == "$exists":
        return (have is not None) == want
    if op == "$match":
        return isinstance(have, list) and any(all(el.get(k) == v for k, v in want.items()) for el in have)
    if have is None:
        return False
    return {"$gt": have > want, "$gte": have >= want, "$lt": have < want, "$lte": have <= want}[op]


def passes(item, node: dict) -> bool:
    for key, value in node.items():
        if key == "$and":
            ok = all(passes(item, v) for v in value)
        elif key == "$or":
            ok = any(passes(item, v) for v in value)
        elif isinstance(value, dict):
            ok = all(compare(field_value(item, key), op, v, key) for op, v in value.items())
        else:
            ok = compare(field_value(item, key), "$eq", value, key)
        if not ok:
            return False
    return True


def sql_key(value):
    return (0, 0) if value is None else (1, value) if isinstance(value, (int, float)) else (2, value)


def reference(items: dict, doc: dict) -> list[str]:
    """Ids of every item the prepared filter passes, in its sort order (ties by id)."""
    found = [i for i in items.values() if passes(i, doc.get("filter") or {})]
    found.sort(key=lambda i: i.id)
    for name, direction in reversed(list((doc.get("sort") or {}).items())):
        found.sort(key=lambda i: sql_key(field_value(i, name)), reverse=direction == "descending")
    return [i.id for i in found]


def every_id(ds, flt) -> list[str]:
    return [i.id for i in ds.items.list(filters=flt).all()]


# ---- the SDK's builder against the reference ----------------------------------------------
def sdk_filters() -> list:
    """Queries as Dataloop users write them with the SDK's builder."""
    f = dl.Filters()
    out = [("defaults", f)]
    f = dl.Filters()
    f.add(field="dir", values="/a/**")
    out.append(("recursive folder", f))
    f = dl.Filters()
    f.add(field="dir", values="/a/*")
    out.append(("direct sub-folders", f))
    f = dl.Filters()
    f.add(field="filename", values="/a/**")
    f.sort_by(field="name", value=dl.FiltersOrderByDirection.DESCENDING)
    out.append(("files below a folder, by name descending", f))
    f = dl.Filters(use_defaults=False)
    f.add(field="filename", values="/a/b/*.png")
    out.append(("a glob on file names", f))
    f = dl.Filters()
    f.add(field="createdAt", values=iso(START + 20 * DAY), operator=dl.FiltersOperations.GREATER_THAN)
    f.add(field="createdAt", values=iso(START + 50 * DAY), operator=dl.FiltersOperations.LESS_THAN_OR_EQUAL)
    f.sort_by(field="createdAt", value=dl.FiltersOrderByDirection.DESCENDING)
    out.append(("created between two ISO dates, newest first", f))
    f = dl.Filters(use_defaults=False)
    f.add(field="metadata.user.num", values=6, operator=dl.FiltersOperations.GREATER_THAN_OR_EQUAL)
    f.add(field="metadata.user.tag", values="red", method=dl.FiltersMethod.OR)
    f.add(field="hidden", values=True, method=dl.FiltersMethod.OR)
    f.sort_by(field="metadata.user.num")
    f.sort_by(field="name", value=dl.FiltersOrderByDirection.DESCENDING)
    out.append(("$or of three, two sort keys", f))
    f = dl.Filters()
    f.add(field="metadata.user.tag", values=["red", "blue"], operator=dl.FiltersOperations.NIN)
    out.append(("$nin with missing values", f))
    f = dl.Filters()
    f.add(field="metadata.user.tag", values=False, operator=dl.FiltersOperations.EXISTS)
    out.append(("$exists false", f))
    f = dl.Filters()
    f.add(field="annotated", values=True)
    out.append(("annotated", f))
    f = dl.Filters()
    f.add(field="metadata.user.tags", values={"id": 3, "ok": True}, operator=dl.FiltersOperations.MATCH)
    out.append(("$match on a list of objects", f))
    f = dl.Filters(custom_filter={"$and": [{"dir": "/a/b/**"}, {"hidden": False}]})
    out.append(("custom_filter with a glob", f))
    return out


@pytest.mark.parametrize("label,flt", sdk_filters(), ids=[label for label, _ in sdk_filters()])
def test_sdk_builder_queries_equal_the_reference(world, label, flt):
    ws, ds, _, items, _ = world
    doc = flt.prepare()
    want = reference(items, doc)
    assert want, f"{label}: the reference finds nothing; the data does not exercise the query"
    got = every_id(ds, doc)
    if not doc.get("sort"):  # unsorted, featurelab lists by folder and name: the same set
        got, want = sorted(got), sorted(want)
    assert got == want, label
    again = every_id(ds, flt)
    assert (again if doc.get("sort") else sorted(again)) == want, f"{label}: the Filters object itself"


def test_key_paging_as_the_sdk_does_it_returns_each_item_once(world):
    """`items.all()`: sort by id, then `id > last` added to each next page (the SDK's
    PagedEntities), in pages of 25."""
    ws, ds, _, items, _ = world
    seen, last = [], None
    for _ in range(40):
        f = dl.Filters(page_size=25)
        f.sort_by(field="id")
        if last is not None:
            f.add(field="id", values=last, operator=dl.FiltersOperations.GREATER_THAN)
        page = ds.items.list(filters=f.prepare()).items
        if not page:
            break
        seen += [i.id for i in page]
        last = page[-1].id
    visible = sorted(i.id for i in items.values() if not i.hidden)
    assert seen == visible and len(set(seen)) == len(seen)


def test_descending_key_paging_and_offset_pages_agree(world):
    ws, ds, _, items, _ = world
    f = dl.Filters(page_size=30)
    f.sort_by(field="id", value=dl.FiltersOrderByDirection.DESCENDING)
    pages = ds.items.list(filters=f.prepare())
    by_offset = [i.id for page in pages for i in page]
    assert by_offset == sorted((i.id for i in items.values() if not i.hidden), reverse=True)


def test_the_guides_vector_queries_through_the_sdk_equal_brute_force(world):
    ws, ds, fs, items, vectors = world
    query = vectors[next(iter(items))].astype(np.float64)
    ids = list(vectors)
    dist = np.linalg.norm(np.stack([vectors[i] for i in ids]).astype(np.float64) - query, axis=1)
    visible = {i for i, it in items.items() if not it.hidden}
    ranked = [(d, i) for d, i in sorted(zip(dist, ids)) if i in visible]
    custom_filter = {
        "filter": {"$and": [{"hidden": False}, {"type": "file"}]},
        "page": 0, "pageSize": 7, "resource": "items",
        "join": {"on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},
                 "filter": {"value": {"$euclid": {"input": query.tolist(), "$euclidSort": {"eu_dist": "ascending"}}},
                            "featureSetId": fs.id}},
    }
    got = ds.items.list(filters=dl.Filters(custom_filter=custom_filter, resource=dl.FiltersResource.ITEM)).items
    assert [i.id for i in got] == [i for _, i in ranked[:7]]
    assert np.allclose([i.distance for i in got], [d for d, _ in ranked[:7]], rtol=0, atol=1e-9)
    # The same join as add_join builds it ({"$and": [...]}), and a threshold, sorted by name.
    f = dl.Filters()
    f.add_join(field="featureSetId", values=fs.id)
    f.add_join(field="value", values={"$euclid": {"input": query.tolist(), "$euclidFilter": {"$lte": 3.0}}})
    f.join["on"] = {"resource": "feature_vectors", "local": "entityId", "forigen": "id"}
    f.sort_by(field="name")
    got = list(ds.items.list(filters=f).all())
    within = [i for d, i in ranked if d <= 3.0]
    assert sorted(i.id for i in got) == sorted(within) and within
    assert [i.name for i in got] == sorted(i.name for i in got)
    by_id = dict(zip(ids, dist))
    assert all(abs(i.distance - by_id[i.id]) < 1e-9 for i in got)


def test_feature_vector_queries_as_the_sdk_posts_them(world):
    """The guide's `feature_set.features.list(filters=vector_filter)` with the `context` the
    SDK adds, and `$euclid` inside an `$and` on the feature_vectors resource."""
    ws, ds, fs, items, vectors = world
    some = next(iter(items))
    vf = dl.Filters(resource=dl.FiltersResource.FEATURE, field="entityId", values=some)
    doc = vf.prepare()
    doc["context"] = {"projects": ["local"]}
    found = list(fs.features.list(filters=doc).all())
    assert [f.entity_id for f in found] == [some] and np.array_equal(found[0].value, vectors[some])
    query = vectors[some].tolist()
    doc = {"filter": {"$and": [{"featureSetId": fs.id}, {"value": {"$euclid": {"input": query}}}]},
           "resource": "feature_vectors", "pageSize": 3, "context": {"projects": ["local"]}}
    nearest = ws.search(doc).items
    assert nearest[0].entity_id == some and nearest[0].distance == 0 and len(nearest) == 3


def test_items_joined_to_their_annotations(world):
    ws, ds, _, items, _ = world
    f = dl.Filters()
    f.add_join(field="label", values="thing")
    want = sorted(i.id for i in items.values() if not i.hidden and any(a.label == "thing" for a in i.annotations.list()))
    assert sorted(every_id(ds, f)) == want and want


def test_bulk_update_and_delete_as_the_sdk_sends_them(tmp_path):
    from store import Workspace

    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("bulk")
        for i in range(30):
            ds.items.upload_bytes(f"{i}".encode(), f"{i:02d}.txt", dir="/keep" if i % 3 else "/drop",
                                  metadata={"user": {"n": i, "nested": {"a": 1}}})
        f = dl.Filters()
        f.add(field="dir", values="/keep/**")
        doc = f.prepare(operation="update", update={"label": "kept", "nested": {"b": 2}})
        assert ws.bulk(doc, dataset_id=ds.id) == 20
        kept = list(ds.items.list({"dir": "/keep"}).all())
        assert all(i.metadata["user"]["label"] == "kept" and i.metadata["user"]["nested"] == {"a": 1, "b": 2}
                   and i.metadata["user"]["n"] == int(i.name[:2]) for i in kept)
        f = dl.Filters()
        f.add(field="dir", values="/drop")
        assert ds.items.delete(filters=f) == 10
        assert ds.items.count() == 20 and {i.dir for i in ds.items.list().all()} == {"/keep"}
        assert ds.items.update(filters={"name": "01.txt"}, update_values={"x": 1}) == 1
        with pytest.raises(InvalidInput, match="ws.bulk"):
            ws.search(f.prepare(operation="delete"))
        bad = f.prepare(operation="update", update={"x": 1}, system_update={"size": 1}, system_metadata=True)
        with pytest.raises(FilterError, match="metadata.system"):
            ws.bulk(bad)
        assert ds.items.count() == 20


def test_metadata_system_is_refused_at_upload_and_update(ws_embedded):
    ds = ws_embedded.datasets.create("m")
    r = ds.items.upload_bytes(b"x", "a.txt", metadata={"system": {"size": 3}})
    assert r.status == "rejected" and "metadata.system" in r.message and ds.items.count() == 0
    item = ds.items.upload_bytes(b"x", "a.txt", metadata={"user": {"k": 1}}).item
    with pytest.raises(InvalidInput, match="metadata.user"):
        item.update(metadata={"system": {}})
    assert ws_embedded.get_item(item.id).metadata == {"user": {"k": 1}}


def test_export_honours_the_sdks_filters(world, tmp_path):
    import json

    ws, ds, fs, items, _ = world
    other = ws.feature_sets.create(name="sdk-other", size=2)
    try:
        other.features.create_many(np.ones((2, 2), np.float32), list(items)[:2])
        out = ds.export(tmp_path / "e", include_feature_vectors=True, filters=dl.Filters(),
                        feature_vector_filters={"$and": [{"featureSetId": fs.id}]})
        records = [json.loads(p.read_text()) for p in (out / "json").rglob("*.json")]
        assert len(records) == sum(not i.hidden for i in items.values())
        assert all(not r["hidden"] for r in records)
        assert {v["featureSetId"] for r in records for v in r["itemVectors"]} == {fs.id}
        header = json.loads((out / "dataset.json").read_text())
        assert [s["id"] for s in header["featureSets"]] == [fs.id]
    finally:
        other.delete()


@pytest.mark.parametrize("doc,part", [
    ({"filter": {"createdAt": {"$gt": "yesterday"}}}, "not a date"),
    ({"filter": {}, "sort": {"name": "sideways"}}, "sort.name"),
    ({"filter": {}, "sort": {"nope": "ascending"}}, "unknown field 'nope'"),
    ({"filter": {}, "context": "projects"}, "context"),
    ({"filter": {"name": {"$match": {"a": 1}}}}, "$match works on metadata"),
    ({"filter": {}, "join": {"on": {"resource": "datasets"}, "filter": {}}}, "can be joined with"),
    ({"filter": {}, "delete": "yes"}, "must be true"),
])
def test_bad_sdk_shapes_say_what_is_wrong(world, doc, part):
    ws = world[0]
    with pytest.raises(FilterError, match=re.escape(part)):
        ws.search(doc)


def test_datasets_and_feature_sets_are_resources_of_the_language(world):
    """What the SDK's `datasets.get(dataset_name=...)` and `feature_sets.list()` post."""
    ws, ds, fs, items, _ = world
    other = ws.datasets.create("sdk-empty")
    small = ws.feature_sets.create(name="sdk-small", size=2)
    try:
        by_name = ws.search(dl.Filters(resource=dl.FiltersResource.DATASET, field="name", values="sdk").prepare())
        assert [d.id for d in by_name.items] == [ds.id]
        f = dl.Filters(resource=dl.FiltersResource.FEATURE_SET, use_defaults=False)
        f.sort_by(field="size", value=dl.FiltersOrderByDirection.DESCENDING)
        sets = ws.search(f.prepare()).items
        assert [s.size for s in sets] == sorted((s.size for s in ws.feature_sets.list()), reverse=True)
        in_dataset = ws.search({"filter": {}, "resource": "feature_sets"}, dataset_id=ds.id).items
        assert fs.id in [s.id for s in in_dataset] and small.id not in [s.id for s in in_dataset]
        assert other.id in [d.id for d in ws.search({"resource": "datasets"}).items]
    finally:
        small.delete()
        other.delete()


def test_hiding_by_a_bulk_update_is_undoable(tmp_path):
    from store import Workspace
    from store.analysis import hide_actions, undo

    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("hide")
        items = [ds.items.upload_bytes(f"{i}".encode(), f"{i}.txt", dir="/x" if i % 2 else "/y").item for i in range(10)]
        items[1].update(hidden=True)  # hidden before: an undo must leave it hidden
        assert ds.items.update(filters={"dir": "/x"}, hidden=True) == 5
        assert {i.name for i in ds.items.list({"hidden": True}).all()} == {"1.txt", "3.txt", "5.txt", "7.txt", "9.txt"}
        (action,) = hide_actions(ws)
        assert sorted(action.item_ids) == sorted(i.id for i in items[3::2]) and action.detail["kind"] == "bulk update"
        assert undo(ws, action.id).unhidden == 4
        assert [i.name for i in ds.items.list({"hidden": True}).all()] == ["1.txt"]
