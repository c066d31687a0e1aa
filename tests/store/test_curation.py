"""Near-duplicates and outliers (store.analysis.duplicates): groups and k-th neighbour distances equal
NumPy brute force on many seeded cases (exact duplicates, threshold 0, pairs right at the
threshold, extreme scales, several blocks and the dense merging path); hiding by each keep
rule, undo that restores exactly what it hid, the seed's hidden filter, annotation sets,
outliers, and the command line."""
import json

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import store.analysis.duplicates as cu
from store.analysis import knn
from store import InvalidInput, NotFound
from tests.conftest import png_bytes


# ---- brute force ------------------------------------------------------------------------------------
def brute_distances(x: np.ndarray) -> np.ndarray:
    """All pairs, ``sqrt(sum((a - b) ** 2))`` in float64 (a few rows at a time)."""
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    out = np.empty((len(x64), len(x64)))
    step = max(1, 2**21 // max(x64.size, 1))
    for start in range(0, len(x64), step):
        diff = x64[start : start + step, None, :] - x64[None, :, :]
        out[start : start + step] = np.sqrt((diff * diff).sum(axis=-1))
    return out


def brute_groups(x: np.ndarray, t: float) -> list[list[int]]:
    dist = brute_distances(x)
    linked = dist <= t
    np.fill_diagonal(linked, False)
    _, labels = connected_components(csr_matrix(linked), directed=False)
    groups = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    groups = [g for g in groups if len(g) >= 2]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def brute_knn(x: np.ndarray, k: int) -> np.ndarray:
    dist = brute_distances(x)
    np.fill_diagonal(dist, np.inf)
    return np.sort(dist, axis=1)[:, :k]


def random_case(rng: np.random.Generator, case: int) -> np.ndarray:
    n, d = int(rng.integers(2, 70)), int(rng.integers(1, 24))
    if case % 4 == 0:  # an integer grid: many exact ties, distances exactly representable
        x = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    else:
        x = (rng.normal(size=(n, d)) * rng.choice([1e-30, 1e-3, 1.0, 1e3, 1e30])).astype(np.float32)
    if case % 3 == 0:  # exact duplicate rows
        x[rng.integers(0, n, size=n // 3)] = x[rng.integers(0, n, size=n // 3)]
    if case % 5 == 1:  # far from the origin: float32 products lose the most there
        x = (x + 1000 * np.abs(x).max()).astype(np.float32)
    return x


def random_threshold(rng: np.random.Generator, x: np.ndarray, case: int) -> float:
    dist = brute_distances(x)[np.triu_indices(len(x), 1)]
    if case % 7 == 0:
        return 0.0
    if case % 2 == 0:  # exactly some pair's distance: that pair is right at the threshold
        return float(rng.choice(dist))
    return float(np.quantile(dist, rng.uniform(0, 0.3)))


@pytest.fixture(params=["default", "tiny-blocks"])
def blocks(request, monkeypatch):
    """Default settings, and tiny blocks / chunks / merge batches so that small cases cross
    every block boundary and take the dense path that merges components as it goes."""
    if request.param == "tiny-blocks":
        monkeypatch.setattr(knn, "block_rows", lambda n, device: 7)
        monkeypatch.setattr(cu, "CHUNK_ELEMENTS", 40)
        monkeypatch.setattr(cu, "MERGE_EDGES", 5)
    return request.param


# ---- arrays ---------------------------------------------------------------------------------------------
def test_groups_equal_brute_force(blocks):
    rng = np.random.default_rng(8)
    for case in range(100):
        x = random_case(rng, case)
        t = random_threshold(rng, x, case)
        got = [g.tolist() for g in cu.duplicate_groups_of_values(x, t)]
        assert got == brute_groups(x, t), (case, x.shape, t)


def test_knn_equals_brute_force(blocks):
    rng = np.random.default_rng(9)
    for case in range(100):
        x = random_case(rng, case)
        k = int(rng.integers(1, len(x)))
        dists, idx = cu.knn_distances_of_values(x, k)
        assert np.array_equal(dists, brute_knn(x, k)), (case, x.shape, k)
        full = brute_distances(x)
        assert np.array_equal(full[np.arange(len(x))[:, None], idx], dists)  # the indices are those rows
        assert not (idx == np.arange(len(x))[:, None]).any()  # never itself
        assert np.array_equal(cu.kth_neighbor_distances(x, k), dists[:, k - 1])


def test_right_at_the_threshold_and_exact_duplicates():
    # 3-4-5 triangles: the distances are exact, so the threshold sits right on them.
    x = np.array([[0, 0], [3, 4], [6, 8], [100, 100], [100, 100], [100, 100], [50, 0]], dtype=np.float32)
    groups = lambda t: [g.tolist() for g in cu.duplicate_groups_of_values(x, t)]  # noqa: E731
    assert groups(5.0) == [[0, 1, 2], [3, 4, 5]]
    assert groups(np.nextafter(5.0, 0)) == [[3, 4, 5]]
    assert groups(0.0) == [[3, 4, 5]]
    assert groups(1e9) == [[0, 1, 2, 3, 4, 5, 6]]
    nn = cu.nearest_neighbor_distances_of_values(x)
    assert nn.tolist() == [5.0, 5.0, 5.0, 0.0, 0.0, 0.0, pytest.approx(np.hypot(44, 8))]


def test_identical_rows_and_larger_blocks():
    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=(5, 16)).astype(np.float32), 40, axis=0)  # 5 groups of 40 copies
    x = x[rng.permutation(len(x))]
    got = cu.duplicate_groups_of_values(x, 0.0)
    assert [len(g) for g in got] == [40] * 5
    assert [g.tolist() for g in got] == brute_groups(x, 0.0)
    dists, _ = cu.knn_distances_of_values(x, 39)
    assert (dists == 0).all()
    assert (cu.knn_distances_of_values(x, 40)[0][:, 39] > 0).all()


def test_a_few_thousand_vectors_match_brute_force():
    # Several default-size blocks and many candidate rows, still cheap to brute force.
    rng = np.random.default_rng(4)
    base = rng.normal(size=(1000, 32)).astype(np.float32)
    x = np.concatenate([base, base[:500] + rng.normal(scale=0.02, size=(500, 32)).astype(np.float32)])
    t = 0.15
    assert [g.tolist() for g in cu.duplicate_groups_of_values(x, t)] == brute_groups(x, t)
    assert np.array_equal(cu.knn_distances_of_values(x, 3)[0], brute_knn(x, 3))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "0.1", True, None])
def test_bad_thresholds(bad):
    with pytest.raises(InvalidInput, match="threshold"):
        cu.duplicate_groups_of_values(np.zeros((3, 2), dtype=np.float32), bad)


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="2-D"):
        cu.duplicate_groups_of_values(np.zeros(4), 1.0)
    with pytest.raises(InvalidInput, match="NaN"):
        cu.knn_distances_of_values(np.array([[0.0], [np.nan]]), 1)
    with pytest.raises(InvalidInput, match="at least 4 vectors"):
        cu.knn_distances_of_values(np.zeros((3, 2)), 3)
    with pytest.raises(InvalidInput, match="k must be"):
        cu.knn_distances_of_values(np.zeros((3, 2)), 0)
    assert cu.duplicate_groups_of_values(np.zeros((1, 2)), 1.0) == []
    assert cu.duplicate_groups_of_values(np.zeros((0, 2)), 1.0) == []


def test_suggested_threshold_falls_in_the_gap():
    rng = np.random.default_rng(0)
    nn = np.concatenate([rng.uniform(0.001, 0.01, 50), rng.uniform(0.5, 1.0, 950)])
    t = cu.suggest_threshold(nn)
    assert 0.01 < t < 0.5
    spread = rng.uniform(0.5, 1.0, 1000)
    assert cu.suggest_threshold(spread) == pytest.approx(np.quantile(spread, 0.02))  # no gap: the closest 2%
    assert cu.suggest_threshold(np.array([0.0, 0.0, 0.7, 0.8, 0.9, 1.0])) > 0.0
    # Exact copies (0) are duplicates at any threshold: however many, the gap among the rest decides.
    copies = np.concatenate([np.zeros(900), nn])
    assert cu.suggest_threshold(copies) == pytest.approx(t)
    assert cu.suggest_threshold(np.zeros(10)) == 0.0 and cu.suggest_threshold(np.array([0.0, 0.3])) == 0.3


def test_the_suggestion_under_copies_comes_from_the_distinct_vectors(ws_embedded):
    from store.io import save_selection

    x = _clustered(seed=4)
    fs, items = _fill(ws_embedded, x)
    alone = cu.nearest_neighbor_distances(ws_embedded, fs)
    save_selection(ws_embedded, [i.id for i in items], "dups-copy")  # every item again, in another dataset
    both = cu.nearest_neighbor_distances(ws_embedded, fs)
    assert len(both.distances) == 80 and (both.distances == 0).all()  # each item's nearest is its copy
    # The same distinct vectors (item 13 copies item 10 already): the same suggestion as one dataset alone.
    assert both.suggested_threshold > 0 and both.suggested_threshold == pytest.approx(alone.suggested_threshold)
    assert both.reach == pytest.approx(alone.reach) and both.reach > both.suggested_threshold
    want = cu.nearest_neighbor_distances_of_values(np.unique(x, axis=0))
    got = cu.distinct_nearest_distances(ws_embedded.matrix(fs).values, both.distances)
    assert np.allclose(np.sort(got), np.sort(want))
    spread = np.array([0.1, 0.2, 0.3])
    assert cu.distinct_nearest_distances(x[:3], spread) is spread  # no copies: nothing to measure again


def test_largest_is_a_rule_for_images_only(ws_embedded):
    x = _clustered(seed=5, n=16)
    fs, items = _fill(ws_embedded, x)  # text items
    dups = cu.duplicate_groups(ws_embedded, fs, 0.1)
    assert cu.keep_rules(ws_embedded, dups) == ("first", "manual")
    with pytest.raises(InvalidInput, match="'largest' keeps the largest image, and these groups hold no images"):
        cu.hide_duplicates(ws_embedded, dups, "largest")
    assert not any(ws_embedded.get_item(i.id).hidden for i in items)  # nothing hidden by the refusal
    images, _ = _fill(ws_embedded, x, images=True, name="pics")
    assert cu.keep_rules(ws_embedded, cu.duplicate_groups(ws_embedded, images, 0.1)) == cu.KEEP_RULES


# ---- a workspace ------------------------------------------------------------------------------------------
def _fill(ws, values, *, images=False, name="dups"):
    """One item per row (text, or PNGs of growing size), with the rows as its vector."""
    ds = ws.datasets.create(name)
    if images:
        files = [(f"{i:02d}.png", png_bytes(8 + i, 8 + i, (i, 10, 10))) for i in range(len(values))]
    else:
        files = [(f"{i:02d}.txt", f"item {i}".encode()) for i in range(len(values))]
    items = [r.item for r in ds.items.upload(files)]
    fs = ws.feature_sets.create(name=f"{name}-set", size=values.shape[1])
    fs.features.create_many(values, [i.id for i in items])
    return fs, items


def _clustered(seed=0, n=40, dim=6):
    """Rows 0-2, 3-4 and 10-13 are near copies of one another; the rest are far apart."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32) * 10
    for a, members in ((0, (1, 2)), (3, (4,)), (10, (11, 12, 13))):
        for m in members:
            x[m] = x[a] + rng.normal(scale=0.01, size=dim).astype(np.float32)
    x[13] = x[10]  # an exact copy too
    return x


def test_groups_of_a_feature_set(ws_embedded):
    x = _clustered()
    fs, items = _fill(ws_embedded, x)
    dups = cu.duplicate_groups(ws_embedded, fs.name, 0.1)
    want = brute_groups(x, 0.1)
    assert sorted(sorted(items[r].id for r in g) for g in want) == sorted(g.entity_ids for g in dups.groups)
    assert [g.size for g in dups.groups] == [4, 3, 2]
    assert dups.redundant == 6 and dups.entities == 40
    assert dups.version == ws_embedded.feature_sets.get(feature_set_id=fs.id).version
    nn = brute_knn(x, 1)[:, 0]
    row = {it.id: i for i, it in enumerate(items)}
    for g in dups.groups:
        assert g.entity_ids == sorted(g.entity_ids) and g.item_ids == g.entity_ids
        assert g.distances == [nn[row[e]] for e in g.entity_ids]  # exact nearest-neighbour distances
    assert dups.groups[0].min_distance == 0.0  # the exact copy
    # With the nearest-neighbour distances in memory, only entities with a neighbour in reach are compared:
    # the same answer.
    hist = cu.nearest_neighbor_distances(ws_embedded, fs)
    assert np.array_equal(hist.distances, nn) and list(hist.entity_ids) == [i.id for i in items]
    assert hist.within(0.1) == 9 and hist.histogram(10)[0].sum() == 40
    assert 0.0 < hist.suggested_threshold < float(np.sort(nn)[9])
    again = cu.duplicate_groups(ws_embedded, fs.id, 0.1)
    assert [g.to_json() for g in again.groups] == [g.to_json() for g in dups.groups]
    assert json.loads(json.dumps(dups.to_json()))["groups"][0]["size"] == 4
    assert cu.duplicate_groups(ws_embedded, fs, 0.0).groups[0].entity_ids == sorted([items[10].id, items[13].id])


def test_ties_in_size_go_tightest_first(ws_embedded):
    x = np.array([[0, 0], [0, 3], [100, 0], [100, 1], [0, 100], [2, 100]], dtype=np.float32)
    fs, items = _fill(ws_embedded, x)
    dups = cu.duplicate_groups(ws_embedded, fs, 3.0)
    assert [g.min_distance for g in dups.groups] == [1.0, 2.0, 3.0]
    assert dups.groups[0].entity_ids == sorted([items[2].id, items[3].id])


def test_hide_first_undo_and_the_seed_filter(ws):
    x = _clustered(seed=1)
    fs, items = _fill(ws, x)
    items[11].update(hidden=True)  # hidden before: left out of the groups, and never un-hidden by undo
    dups = cu.duplicate_groups(ws, fs, 0.1)
    assert items[11].id not in {e for g in dups.groups for e in g.entity_ids}
    assert [g.size for g in dups.groups] == [3, 3, 2]
    assert items[11].id in cu.duplicate_groups(ws, fs, 0.1, include_hidden=True).groups[0].entity_ids

    done = cu.hide_duplicates(ws, dups, "first")
    assert done.action_id and done.groups == 3 and done.hidden == 5 and done.already_hidden == 0
    assert set(done.kept) == {items[0].id, items[3].id, items[10].id}  # first uploaded in each group
    hidden_now = {i.id for i in items if ws.get_item(i.id).hidden}
    assert hidden_now == {items[r].id for r in (1, 2, 4, 11, 12, 13)}
    assert cu.duplicate_groups(ws, fs, 0.1).groups == []  # nothing left to curate

    # The seed's filter shape skips the hidden items in a k-nearest search.
    query = {"filter": {"$and": [{"hidden": False}, {"type": "file"}]}, "page": 0, "pageSize": 5,
             "resource": "items",
             "join": {"on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},
                      "filter": {"value": {"$euclid": {"input": x[0].tolist(), "$euclidSort": {"eu_dist": "ascending"}}},
                                 "featureSetId": fs.id}}}
    found = [i.id for i in ws.search(query).items]
    assert found[0] == items[0].id and not set(found) & hidden_now
    everything = dict(query, filter={"type": "file"})
    assert {items[1].id, items[2].id} <= {i.id for i in ws.search(everything).items}

    assert [a.id for a in cu.hide_actions(ws, fs)] == [done.action_id]
    back = cu.undo(ws, done.action_id)
    assert back.unhidden == 5 and back.skipped == 0
    assert {i.id for i in items if ws.get_item(i.id).hidden} == {items[11].id}
    assert cu.hide_actions(ws, fs) == [] and len(cu.hide_actions(ws, fs, include_undone=True)) == 1
    with pytest.raises(InvalidInput, match="undone already"):
        cu.undo(ws, done.action_id)
    with pytest.raises(NotFound, match="no hide action"):
        cu.undo(ws, "nope")


def test_hide_largest_and_by_hand(ws_embedded):
    x = _clustered(seed=2, n=16)
    fs, items = _fill(ws_embedded, x, images=True)  # image i is (8 + i) pixels square: later is larger
    dups = cu.duplicate_groups(ws_embedded, fs, 0.1)
    largest = cu.hide_duplicates(ws_embedded, dups, "largest", groups=[0])
    assert largest.kept == [items[13].id] and largest.groups == 1  # the 4-group 10..13: 13 is largest
    assert {i.id for i in items if ws_embedded.get_item(i.id).hidden} == {items[r].id for r in (10, 11, 12)}
    with pytest.raises(InvalidInput, match="needs a keeper"):
        cu.hide_duplicates(ws_embedded, dups, "manual", groups=[1])
    with pytest.raises(InvalidInput, match="out of range"):
        cu.hide_duplicates(ws_embedded, dups, "first", groups=[7])
    with pytest.raises(InvalidInput, match="rule must be"):
        cu.hide_duplicates(ws_embedded, dups, "random")
    manual = cu.hide_duplicates(ws_embedded, dups, "manual", keepers=[items[1].id, items[4].id], groups=[1, 2])
    assert manual.kept == [items[1].id, items[4].id] and manual.hidden == 3
    assert {i.id for i in items if ws_embedded.get_item(i.id).hidden} == {items[r].id for r in (0, 2, 3, 10, 11, 12)}
    # Acting on all groups again: the hidden ones stay hidden and are not recorded a second time.
    again = cu.hide_duplicates(ws_embedded, dups, "first", keepers=[items[13].id, items[1].id, items[4].id])
    assert again.action_id is None and again.hidden == 0 and again.already_hidden == 6

    # Undo of the first action after an item of it was shown and hidden again by a later action:
    # that item now belongs to the later action and stays hidden.
    ws_embedded.update_item(items[12].id, hidden=False)
    later = cu.hide_duplicates(ws_embedded, cu.duplicate_groups(ws_embedded, fs, 0.1), "manual", keepers=[items[13].id])
    assert later.hidden_item_ids == [items[12].id]
    back = cu.undo(ws_embedded, largest.action_id)
    assert back.unhidden == 2 and back.skipped == 1
    assert ws_embedded.get_item(items[12].id).hidden and not ws_embedded.get_item(items[10].id).hidden
    assert [a.id for a in cu.hide_actions(ws_embedded)] == [later.action_id, manual.action_id]


def test_annotation_sets_hide_items_but_never_a_kept_annotations_item(ws_embedded):
    ds = ws_embedded.datasets.create("boxes")
    items = [r.item for r in ds.items.upload([(f"{i}.png", png_bytes(40 + i, 40, (i, 0, 0))) for i in range(4)])]
    anns = [items[0].annotations.create("a", (0, 0, 10, 10)), items[0].annotations.create("b", (10, 10, 20, 20)),
            items[1].annotations.create("c", (0, 0, 5, 5)), items[2].annotations.create("d", (0, 0, 5, 5)),
            items[3].annotations.create("e", (0, 0, 5, 5))]
    fs = ws_embedded.feature_sets.create(name="ann", size=2, entity_type="annotation")
    values = np.array([[0, 0], [0, 0.01], [0, 0.02], [9, 9], [20, 20]], dtype=np.float32)
    fs.features.create_many(values, anns)
    dups = cu.duplicate_groups(ws_embedded, fs, 0.05)
    assert len(dups.groups) == 1 and dups.entity_type == "annotation"
    group = dups.groups[0]
    assert group.entity_ids == sorted(a.id for a in anns[:3])
    assert group.item_ids == [{a.id: a.item_id for a in anns}[e] for e in group.entity_ids]
    done = cu.hide_duplicates(ws_embedded, dups, "first")  # keeps an annotation on item 0
    assert done.kept[0] in {anns[0].id, anns[1].id}
    assert done.hidden_item_ids == [items[1].id]  # item 0 holds the keeper: it stays visible
    left = cu.duplicate_groups(ws_embedded, fs, 0.05).groups
    assert [g.entity_ids for g in left] == [sorted([anns[0].id, anns[1].id])]  # the two boxes of item 0 remain
    largest = cu.hide_duplicates(ws_embedded, cu.duplicate_groups(ws_embedded, fs, 1.0, include_hidden=True),
                                 "largest", keepers=())
    assert largest.kept == [anns[2].id] and largest.hidden_item_ids == [items[0].id]  # item 1 is wider
    scores = cu.outlier_scores(ws_embedded, fs, 1)
    assert set(scores) == {a.id for a in anns}


def test_outliers_rank_by_kth_neighbour(ws_embedded):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    x[7] += 40  # far from everything
    x[19] += 25
    fs, items = _fill(ws_embedded, x)
    k = 3
    want = brute_knn(x, k)[:, k - 1]
    top = cu.outliers(ws_embedded, fs, k, top=5)
    assert [o.entity_id for o in top[:2]] == [items[7].id, items[19].id]
    assert [o.rank for o in top] == [1, 2, 3, 4, 5]
    assert [o.score for o in top] == sorted(want, reverse=True)[:5]
    assert top[0].item_id == items[7].id and top[0].to_json()["score"] == want[7]
    scores = cu.outlier_scores(ws_embedded, fs.name, k)
    assert scores == {it.id: want[i] for i, it in enumerate(items)}
    items[7].update(hidden=True)
    assert cu.outliers(ws_embedded, fs, k, top=1)[0].entity_id == items[19].id  # hidden ones left out
    assert items[7].id in cu.outlier_scores(ws_embedded, fs, k)  # the map's scores keep every point
    assert cu.state_token(ws_embedded, fs) != cu.state_token(ws_embedded, fs, include_hidden=True)
    with pytest.raises(InvalidInput, match="pick a smaller k"):
        cu.outliers(ws_embedded, fs, 30)
    with pytest.raises(InvalidInput, match="top must be"):
        cu.outliers(ws_embedded, fs, 2, top=0)


# ---- the command line ---------------------------------------------------------------------------------------
def test_cli_duplicates_hide_undo_and_outliers(run_cli, tmp_path):
    from store import Workspace

    x = _clustered(seed=3, n=20)
    with Workspace.open(tmp_path / "cli-ws") as ws:
        fs, items = _fill(ws, x, images=True)
    out = run_cli("duplicates", "-s", fs.name, "--threshold", "0.1").stdout
    assert out.startswith("3 group(s) of near-duplicates in dups-set at distance <= 0.1 (20 vectors compared")
    assert "group 1: 4 items, closest pair at 0" in out and "/10.png" in out and "/13.png" in out

    doc = json.loads(run_cli("duplicates", "-s", fs.id, "-t", "0.1", "--json", "--hide", "--keep", "largest").stdout)
    assert [g["size"] for g in doc["groups"]] == [4, 3, 2]
    assert sorted(doc["groups"][0]["names"]) == ["/10.png", "/11.png", "/12.png", "/13.png"]
    hide = doc["hide"]
    assert hide["hidden"] == 6 and set(hide["kept"]) == {items[2].id, items[4].id, items[13].id}
    actions = run_cli("duplicates", "--actions").stdout
    assert hide["actionId"] in actions and "hid 6 item(s)" in actions
    assert "un-hid 6 item(s)" in run_cli("duplicates", "--undo", hide["actionId"]).stdout
    with Workspace.open(tmp_path / "cli-ws") as ws:
        assert not any(ws.get_item(i.id).hidden for i in items)
    text = run_cli("duplicates", "-s", fs.name, "-t", "0.1", "--hide").stdout
    assert "hid 6 item(s), kept one per group (first). Undo: python -m store duplicates --undo " in text

    top = json.loads(run_cli("outliers", "-s", fs.name, "-k", "2", "--top", "3", "--json", "--include-hidden").stdout)
    want = brute_knn(x, 2)[:, 1]
    assert [o["score"] for o in top] == sorted(want, reverse=True)[:3]
    assert top[0]["name"] == f"/{int(np.argmax(want)):02d}.png"

    bad = run_cli("duplicates", "-s", fs.name, "-t", "-1", ok=False)
    assert bad.returncode == 2 and "threshold must be a finite number >= 0" in bad.stderr
    bad = run_cli("outliers", "-s", fs.name, "-k", "50", ok=False)
    assert bad.returncode == 2 and "pick a smaller k" in bad.stderr


# ---- dataset scope ------------------------------------------------------------------------------------------
def test_scoped_duplicates_do_not_pair_the_copies_of_a_saved_selection(ws_embedded):
    from store.analysis import scope_rows, vector_counts
    from tests.store.scoped import clustered, copied_set

    x = clustered()
    (fs,), src, copy, items = copied_set(ws_embedded, x)
    assert vector_counts(ws_embedded, fs) == {src.id: 30, copy.id: 30}
    every = cu.duplicate_groups(ws_embedded, fs, 0.1)  # all datasets: each item pairs with its copy
    assert every.entities == 60 and every.dataset_id is None
    assert [g.size for g in every.groups] == [4] + [2] * 28
    assert cu.nearest_neighbor_distances(ws_embedded, fs).within(0.0) == 60
    for ds in (src, copy):
        scoped = cu.duplicate_groups(ws_embedded, fs, 0.1, dataset_id=ds.id)
        assert scoped.entities == 30 and scoped.dataset_id == ds.id
        assert len(scoped.groups) == 1 and scoped.groups[0].size == 2  # only the real near-copies
        assert {i.dataset_id for i in ws_embedded.items_by_ids(scoped.groups[0].item_ids).values()} == {ds.id}
        assert scoped.to_json()["datasetId"] == ds.id
        nn = cu.nearest_neighbor_distances(ws_embedded, fs, dataset_id=ds.id)
        assert len(nn.entity_ids) == 30 and nn.within(0.0) == 0 and nn.suggested_threshold > 0
    assert [g.entity_ids for g in cu.duplicate_groups(ws_embedded, fs, 0.1, dataset_id=src.id).groups] == \
        [sorted([items[0].id, items[1].id])]
    # Outliers: within one dataset no item has a copy at distance 0.
    scores = cu.outlier_scores(ws_embedded, fs, 1, dataset_id=src.id)
    assert set(scores) == {i.id for i in items} and min(scores.values()) > 0.001
    assert min(cu.outlier_scores(ws_embedded, fs, 1).values()) == 0.0
    ranked = cu.outliers(ws_embedded, fs, 2, dataset_id=copy.id)
    assert len(ranked) == 30 and ranked[0].score > 1.0
    # A scope with hidden items left out: one mechanism for both.
    ws_embedded.get_item(items[5].id).update(hidden=True)
    assert len(scope_rows(ws_embedded, fs, ws_embedded.matrix(fs).entity_ids, dataset_id=src.id,
                          include_hidden=False)) == 29
    assert cu.state_token(ws_embedded, fs, dataset_id=src.id) != cu.state_token(ws_embedded, fs, dataset_id=copy.id)
    with pytest.raises(NotFound, match="no dataset"):
        cu.duplicate_groups(ws_embedded, fs, 0.1, dataset_id="nope")


def test_cli_duplicates_and_outliers_take_a_dataset(run_cli, tmp_path):
    from store import Workspace
    from tests.store.scoped import clustered, copied_set

    with Workspace.open(tmp_path / "cli-ws") as ws:
        (fs,), *_ = copied_set(ws, clustered())
    assert run_cli("duplicates", "-s", fs.name, "-t", "0.1").stdout.startswith("29 group(s)")
    out = run_cli("duplicates", "-s", fs.name, "-t", "0.1", "--dataset", "notes-copy").stdout
    assert out.startswith("1 group(s) of near-duplicates in notes-set0 at distance <= 0.1 (30 vectors compared")
    top = json.loads(run_cli("outliers", "-s", fs.name, "-k", "1", "--json", "--dataset", "notes").stdout)
    assert len(top) == 20 and top[-1]["score"] > 0.001
    bad = run_cli("outliers", "-s", fs.name, "--dataset", "nope", ok=False)
    assert bad.returncode == 2
