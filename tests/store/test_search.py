"""Search in the seed's filter language: the seed's two examples as written, the builder,
exact search against NumPy brute force on many random cases, and malformed filters."""
import json

import numpy as np
import pytest

from store import FilterError, Filters, InvalidInput


def _fill(ws, n=60, dim=8, seed=0, name="d"):
    rng = np.random.default_rng(seed)
    ds = ws.datasets.get_or_create(name)
    res = ds.items.upload(
        [(f"{i:03d}.txt", f"{name}-{seed}-{i}".encode()) for i in range(n)],
        dir="/a",
    )
    items = [r.item for r in res]
    for i, item in enumerate(items):
        if i % 3 == 0:
            item.update(hidden=True)
        if i % 4 == 0:
            item.update(metadata={"user": {"group": int(i % 5), "tag": "x" if i % 2 else "y"}})
    fs = ws.feature_sets.get_or_none(f"s{dim}") if hasattr(ws.feature_sets, "get_or_none") else None
    fs = fs or ws.feature_sets.create(name=f"{name}-s{dim}-{seed}", size=dim)
    values = rng.standard_normal((n, dim)).astype(np.float32)
    fs.features.create_many(values, [i.id for i in items])
    return ds, fs, ws.datasets.get(dataset_id=ds.id).items.list().items, values


def seed_knn_filter(vector, k, feature_set):
    # Copied from the seed guide, unchanged but for the variables.
    custom_filter = {
        'filter': {'$and': [{'hidden': False}, {'type': 'file'}]},
        'page': 0,
        'pageSize': k,
        'resource': 'items',
        'join': {
            'on': {
                'resource': 'feature_vectors',
                'local': 'entityId',
                'forigen': 'id'
            },
            'filter': {
                'value': {
                    '$euclid': {
                        'input': vector,
                        '$euclidSort': {'eu_dist': 'ascending'}
                    }
                },
                'featureSetId': feature_set.id
            },
        }
    }
    return custom_filter


def seed_threshold_filter(vector_or_id, feature_set, threshold):
    return {
        'filter': {'$and': [{'hidden': False}, {'type': 'file'}]},
        'page': 0,
        'pageSize': 1000,
        'resource': 'items',
        'join': {
            'on': {
                'resource': 'feature_vectors',
                'local': 'entityId',
                'forigen': 'id'
            },
            'filter': {
                'value': {
                    '$euclid': {
                        'input': vector_or_id,
                        '$euclidFilter': {'$lte': threshold},
                        '$euclidSort': {'eu_dist': 'ascending'}
                    }
                },
                'featureSetId': feature_set.id
            },
        }
    }


def _brute(items_by_id, values_by_id, query, keep, ops=None, descending=False):
    """Reference: every vector, true distance in float64, sorted with id as the tie-break."""
    ids = [i for i in values_by_id if keep(items_by_id[i])]
    if not ids:
        return [], np.zeros(0)
    X = np.stack([values_by_id[i] for i in ids]).astype(np.float64)
    d = np.sqrt(((X - np.asarray(query, dtype=np.float32).astype(np.float64)) ** 2).sum(axis=1))
    ok = np.ones(len(ids), dtype=bool)
    for op, b in (ops or {}).items():
        ok &= {"$lt": d < b, "$lte": d <= b, "$gt": d > b, "$gte": d >= b, "$eq": d == b}[op]
    ids = [i for i, k in zip(ids, ok) if k]
    d = d[ok]
    order = np.lexsort((np.array(ids, dtype=str), -d if descending else d))
    return [ids[i] for i in order], d[order]


def test_seed_knn_example_runs_as_written(ws):
    ds, fs, items, values = _fill(ws)
    vector = values[5].tolist()
    results = ds.items.list(filters=Filters(custom_filter=seed_knn_filter(vector, 10, fs), resource="items"))
    by_id = {i.id: i for i in items}
    vals = {i.id: values[int(i.name[:3])] for i in items}
    want, dists = _brute(by_id, vals, vector, lambda it: not it.hidden)
    assert [i.id for i in results.items] == want[:10]
    assert np.allclose([i.distance for i in results.items], dists[:10], rtol=0, atol=1e-12)
    assert all(not i.hidden for i in results.items)
    # The seed then reads each result's vector back with a filter on entityId.
    first = results.items[0]
    vector_filter = Filters(resource="feature_vectors", field="entityId", values=first.id)
    got = list(fs.features.list(filters=vector_filter).all())
    assert len(got) == 1 and got[0].value.tobytes() == vals[first.id].tobytes()


def test_seed_threshold_example_by_vector_and_by_feature_id(ws):
    ds, fs, items, values = _fill(ws)
    by_id = {i.id: i for i in items}
    vals = {i.id: values[int(i.name[:3])] for i in items}
    probe = next(i for i in items if not i.hidden)
    feature_id = probe.features.list().items[0].id
    want, _ = _brute(by_id, vals, vals[probe.id], lambda it: not it.hidden, {"$lte": 3.5})
    by_vector = ds.items.list(filters=seed_threshold_filter(vals[probe.id].tolist(), fs, 3.5))
    by_feature = ds.items.list(filters=seed_threshold_filter(feature_id, fs, 3.5))
    assert [i.id for i in by_vector.items] == want == [i.id for i in by_feature.items]
    assert by_vector.items[0].id == probe.id and by_vector.items[0].distance == 0.0
    assert by_vector.items_count == len(want)
    assert all(i.distance <= 3.5 for i in by_vector.items)


def test_builder_makes_the_seed_json(ws):
    ds, fs, items, values = _fill(ws, n=5)
    f = Filters()
    f.add(field="hidden", values=False)
    f.add(field="type", values="file")
    f.add_euclid(fs, input=values[0], k=100)
    seed = seed_knn_filter(values[0].tolist(), 100, fs)
    assert f.prepare() == seed
    assert json.loads(json.dumps(f.prepare())) == seed


def test_distances_are_true_euclidean_not_squared(ws):
    ds = ws.datasets.create("d")
    a, b = (r.item for r in ds.items.upload([("a.txt", b"a"), ("b.txt", b"b")]))
    fs = ws.feature_sets.create(name="s", size=2)
    fs.features.create_many([[0, 0], [3, 4]], [a, b])
    for approximate in (False, True):
        f = Filters().add_euclid(fs, [0, 0], k=2, approximate=approximate)
        assert [(i.name, i.distance) for i in ws.search(f).items] == [("a.txt", 0.0), ("b.txt", 5.0)]


@pytest.mark.parametrize("case", range(40))
def test_exact_search_equals_numpy_brute_force(ws_embedded, case):
    rng = np.random.default_rng(1000 + case)
    dim = int(rng.choice([2, 3, 8, 33]))
    n = int(rng.integers(1, 120))
    ds, fs, items, values = _fill(ws_embedded, n=n, dim=dim, seed=case)
    if case % 5 == 0:  # exact duplicates and ties must still order the same way
        fs.features.create_many(np.repeat(values[:1], min(n, 4), axis=0), [i.id for i in items[: min(n, 4)]])
        values = values.copy()
        values[: min(n, 4)] = values[0]
    by_id = {i.id: i for i in items}
    vals = {i.id: values[int(i.name[:3])] for i in items}
    query = rng.standard_normal(dim).astype(np.float32) if case % 2 else values[int(rng.integers(n))]
    filters = [
        ({}, lambda it: True),
        ({"hidden": False}, lambda it: not it.hidden),
        ({"metadata.user.group": {"$in": [0, 2]}}, lambda it: it.metadata.get("user", {}).get("group") in (0, 2)),
        ({"$or": [{"hidden": True}, {"name": {"$lt": "030"}}]}, lambda it: it.hidden or it.name < "030"),
    ]
    item_filter, keep = filters[case % len(filters)]
    all_d = np.sqrt(((np.stack(list(vals.values())).astype(np.float64) - query.astype(np.float64)) ** 2).sum(1))
    threshold = float(np.quantile(all_d, rng.uniform(0.1, 0.9)))
    ops = [None, {"$lte": threshold}, {"$gt": threshold}, {"$gte": threshold / 2, "$lt": threshold},
           {"$eq": float(all_d[0])}][case % 5]
    descending = bool(case % 3 == 1)
    page_size = int(rng.integers(1, 30))
    want, want_d = _brute(by_id, vals, query, keep, ops, descending)
    for page in range(3):
        f = Filters()
        if item_filter:
            f.conditions.append(item_filter)
        f.add_euclid(fs, query, distance=ops, sort="descending" if descending else "ascending")
        f.page, f.page_size = page, page_size
        res = ds.items.list(f)
        lo, hi = page * page_size, (page + 1) * page_size
        assert [i.id for i in res.items] == want[lo:hi]
        assert np.array_equal(np.array([i.distance for i in res.items]), want_d[lo:hi])
        assert res.items_count == len(want)


def test_feature_vectors_resource_without_join(ws):
    ds, fs, items, values = _fill(ws, n=20)
    doc = {"filter": {"value": {"$euclid": {"input": values[3].tolist(), "$euclidSort": {"eu_dist": "ascending"}}},
                      "featureSetId": fs.id}, "resource": "feature_vectors", "pageSize": 3}
    res = ws.search(doc)
    assert res.items[0].entity_id == next(i.id for i in items if i.name == "003.txt")
    assert res.items[0].distance == 0.0 and len(res.items) == 3


def test_search_scoped_to_dataset(ws):
    ds1, fs, items1, values = _fill(ws, n=10, name="one")
    ds2 = ws.datasets.create("two")
    other = ds2.items.upload_bytes(b"other", "o.txt").item
    fs.features.create(value=values[0], entity=other)
    f = Filters().add_euclid(fs, values[0], k=5)
    assert other.id not in [i.id for i in ds1.items.list(f).items]
    assert [i.id for i in ds2.items.list(f).items] == [other.id]
    assert other.id in [i.id for i in ws.search(f).items]


def test_approximate_search_recall_on_clustered_data(ws):
    rng = np.random.default_rng(7)
    n, dim = 1500, 32
    centers = rng.standard_normal((20, dim)) * 4
    values = (centers[rng.integers(0, 20, n)] + rng.standard_normal((n, dim))).astype(np.float32)
    ds = ws.datasets.create("d")
    items = [r.item for r in ds.items.upload([(f"{i}.txt", str(i).encode()) for i in range(n)])]
    fs = ws.feature_sets.create(name="s", size=dim)
    fs.features.create_many(values, items)
    recalls = []
    for qi in rng.integers(0, n, 20):
        exact = {i.id for i in ws.search(Filters().add_euclid(fs, values[qi], k=10)).items}
        approx = {i.id for i in ws.search(Filters().add_euclid(fs, values[qi], k=10, approximate=True)).items}
        recalls.append(len(exact & approx) / 10)
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize(
    "doc,needle",
    [
        ("{not json", "not valid JSON"),
        ({"filter": {"hidden": {"$like": 1}}}, "filter.hidden.$like"),
        ({"filter": {"nosuchfield": 1}}, "unknown field 'nosuchfield'"),
        ({"filter": {"$and": {}}}, "filter.$and"),
        ({"filter": {"name": {"$in": "a"}}}, "$in needs a list"),
        ({"filter": {}, "pageSize": 0}, "pageSize"),
        ({"filter": {}, "resource": "planets"}, "unknown resource"),
        ({"filter": {}, "join": {"on": {"resource": "items"}, "filter": {}}}, "join.on.resource"),
        ({"filter": {}, "join": {"filter": {"value": {"$euclid": {"input": [1, 2]}}}}}, "featureSetId"),
        ({"filter": {}, "join": {"filter": {"value": {"$euclid": {"input": [1, "x"]}}, "featureSetId": "f"}}}, "input[1]"),
        ({"filter": {}, "join": {"filter": {"value": {"$euclid": {"input": [1], "$euclidFilter": {"$near": 1}}}, "featureSetId": "f"}}}, "$near"),
        ({"filter": {}, "join": {"filter": {"value": {"$euclid": {"input": [1], "$euclidSort": {"eu_dist": "up"}}}, "featureSetId": "f"}}}, "$euclidSort"),
        ({"filter": {"metadata.a'b": 1}}, "bad metadata field"),
    ],
)
def test_malformed_filters_name_the_bad_part(ws_embedded, doc, needle):
    ws_embedded.datasets.create("d")
    with pytest.raises(FilterError) as err:
        ws_embedded.search(doc)
    assert needle in str(err.value)


def test_query_errors(ws_embedded):
    ds, fs, items, values = _fill(ws_embedded, n=5)
    with pytest.raises(InvalidInput, match="size 3 but"):
        ws_embedded.search(Filters().add_euclid(fs, [1, 2, 3]))
    with pytest.raises(Exception, match="no feature vector with id 'nope'"):
        ws_embedded.search(Filters().add_euclid(fs, "nope"))
    with pytest.raises(Exception, match="no feature set"):
        ws_embedded.search(Filters().add_euclid("missing-set", [1.0] * 8))


def test_hostile_filters_refused_cleanly(ws_embedded):
    ds, fs, items, values = _fill(ws_embedded, n=5)
    deep = {"hidden": False}
    for _ in range(40):
        deep = {"$and": [deep]}
    with pytest.raises(FilterError, match="nested more than"):
        ws_embedded.search({"filter": deep})
    with pytest.raises(FilterError, match="nested too deeply"):
        ws_embedded.search("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FilterError, match="pageSize"):
        ws_embedded.search({"filter": {}, "pageSize": 10**9})
    with pytest.raises(FilterError, match="page"):
        ws_embedded.search({"filter": {}, "page": -1})
    with pytest.raises(FilterError, match="must be a string, number"):
        ws_embedded.search({"filter": {"name": {"$eq": {"a": 1}}}})
    assert ds.items.count() == 5


def test_feature_vectors_resource_with_builder_join(ws_embedded):
    ds, fs, items, values = _fill(ws_embedded, n=12)
    res = ws_embedded.search(Filters(resource="feature_vectors").add_euclid(fs, values[4], k=3))
    assert len(res.items) == 3 and res.items[0].distance == 0.0
    assert res.items[0].entity_id == next(i.id for i in items if i.name == "004.txt")
    assert res.items[1].distance <= res.items[2].distance


@pytest.mark.parametrize("case", range(8))
def test_unfiltered_top_k_over_the_whole_workspace_equals_brute_force(ws_embedded, case):
    """No item filter and no distance filter takes exact search's float32-only path: the
    answer, ties by id included, must still be brute force's."""
    rng = np.random.default_rng(2000 + case)
    dim, n = int(rng.choice([3, 16, 64])), int(rng.integers(120, 260))
    ds, fs, items, values = _fill(ws_embedded, n=n, dim=dim, seed=case)
    if case % 2:  # a block of identical vectors straddling the k-th place
        values = values.copy()
        values[:40] = values[0]
        fs.features.create_many(values[:40], [i.id for i in items[:40]])
    by_id = {i.id: i for i in items}
    vals = {i.id: values[int(i.name[:3])] for i in items}
    query = values[int(rng.integers(n))] + (rng.standard_normal(dim).astype(np.float32) * 0.01 if case % 3 else 0)
    descending = case % 4 == 3
    k = int(rng.integers(1, 60))
    want, want_d = _brute(by_id, vals, query, lambda it: True, None, descending)
    res = ws_embedded.search(Filters().add_euclid(fs, query, k=k, sort="descending" if descending else "ascending"))
    assert [i.id for i in res.items] == want[:k]
    assert np.array_equal(np.array([i.distance for i in res.items]), want_d[:k])
    assert res.items_count == n


def test_distances_to_every_vector_and_a_query_for_a_selection(ws_embedded):
    ds, fs, items, values = _fill(ws_embedded, n=30, dim=8, seed=3)
    entity_ids, distances = ws_embedded.distances_to(fs, values[4])
    row = {e: i for i, e in enumerate(entity_ids.tolist())}
    want = np.sqrt(((values.astype(np.float64) - values[4].astype(np.float64)) ** 2).sum(1))
    got = np.array([distances[row[it.id]] for it in items])
    assert np.allclose(got, want[[int(it.name[:3]) for it in items]], atol=3e-3)  # float32: a picture, not a ranking
    assert distances[row[items[4].id]] == pytest.approx(0, abs=3e-3)

    one = ws_embedded.query_for_entities(fs, [items[2].id])
    assert one == fs.features.list(entity_id=items[2].id).items[0].id  # a single point: its own feature
    several = ws_embedded.query_for_entities(fs, [items[1].id, items[2].id, items[2].id])
    assert np.allclose(several, (values[1].astype(np.float64) + values[2]) / 2, atol=1e-6)
    with pytest.raises(InvalidInput, match="select again"):
        ws_embedded.query_for_entities(fs, ["no-such-entity"])
    with pytest.raises(InvalidInput, match="size 3"):
        ws_embedded.distances_to(fs, [1.0, 2.0, 3.0])


def test_a_repeated_filter_sees_every_change_to_the_catalog(ws_embedded):
    """The rows a filter lets through are kept between searches; any write (here, or by
    another connection to the same catalog) must make the next search read them again."""
    from store import Workspace

    ds, fs, items, values = _fill(ws_embedded, n=12, dim=4, seed=9)
    target = next(i for i in items if not i.hidden)
    seed_filter = Filters()
    seed_filter.add("hidden", False)
    seed_filter.add_euclid(fs, values[int(target.name[:3])], k=1)
    assert [i.id for i in ws_embedded.search(seed_filter).items] == [target.id]
    target.update(hidden=True)  # this connection
    assert target.id not in [i.id for i in ws_embedded.search(seed_filter).items]
    other = Workspace.open(ws_embedded.path)  # another connection (catalog-only: ws_embedded owns Chroma)
    try:
        other.update_item(target.id, hidden=False)
    finally:
        other.close()
    assert [i.id for i in ws_embedded.search(seed_filter).items] == [target.id]


def test_a_saved_selection_doubles_hits_unless_the_search_is_scoped(ws):
    from tests.store.scoped import clustered, copied_set

    x = clustered()
    (fs,), src, copy, items = copied_set(ws, x)
    f = Filters().add_euclid(fs, x[7].tolist(), k=2)
    every = ws.search(f).items  # the same item twice, at the same distance, from two datasets
    assert [i.name for i in every] == ["07.txt", "07.txt"] and every[0].distance == every[1].distance == 0.0
    assert {i.dataset_id for i in every} == {src.id, copy.id}
    for ds in (src, copy):
        hits = ws.search(Filters().add_euclid(fs, x[7].tolist(), max_distance=0.0), dataset_id=ds.id).items
        assert [(i.name, i.dataset_id) for i in hits] == [("07.txt", ds.id)]
