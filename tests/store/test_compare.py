"""Comparing two feature sets: neighbour lists, overlap, histogram, most disagreeing items and
label agreement, each against brute force NumPy; the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from store import InvalidInput, Workspace
from store.analysis.compare import compare_sets, shared_counts
from tests.conftest import png_bytes


def brute_neighbours(values: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows, in float64, nearest first."""
    v = values.astype(np.float64)
    d = np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def brute_overlap(na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    return np.array([len(set(a) & set(b)) for a, b in zip(na.tolist(), nb.tolist())]) / na.shape[1]


def brute_agreement(labels: list, nbrs: np.ndarray) -> float:
    scores = [np.mean([labels[j] == labels[i] for j in row]) for i, row in enumerate(nbrs.tolist())
              if labels[i] is not None]
    return float(np.mean(scores))


def _items(ws, n: int, name: str = "things"):
    ds = ws.datasets.get_or_create(name)
    results = ds.items.upload([(f"t{i:03d}.txt", f"thing {i}".encode()) for i in range(n)])
    return ds, [r.item for r in results]


def _sets(ws, items, a: np.ndarray, b: np.ndarray, items_b=None):
    fa = ws.feature_sets.create(name="model-a", size=a.shape[1])
    fb = ws.feature_sets.create(name="model-b", size=b.shape[1])
    ws.create_features(fa, a, items)
    ws.create_features(fb, b, items_b if items_b is not None else items)
    return fa, fb


def _check_against_brute_force(cmp, a_by_id: dict, b_by_id: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = cmp.entity_ids.tolist()
    va = np.stack([a_by_id[e] for e in ids])
    vb = np.stack([b_by_id[e] for e in ids])
    na, nb = brute_neighbours(va, k), brute_neighbours(vb, k)
    assert np.array_equal(cmp.neighbours_a, na) and np.array_equal(cmp.neighbours_b, nb)
    overlap = brute_overlap(na, nb)
    assert np.array_equal(cmp.overlap, overlap)
    assert cmp.mean_overlap == pytest.approx(overlap.mean())
    assert cmp.histogram() == [int((np.rint(overlap * k) == j).sum()) for j in range(k + 1)]
    assert sum(cmp.histogram()) == len(ids)
    worst = cmp.most_disagreeing(10)
    assert np.all(np.diff(cmp.overlap[worst]) >= 0) and cmp.overlap[worst[0]] == overlap.min()
    assert cmp.overlap[worst].max() <= np.sort(overlap)[9]
    return na, nb


def test_overlap_and_label_agreement_match_brute_force(ws):
    ds, items = _items(ws, 80)
    rng = np.random.default_rng(0)
    classes = np.arange(80) % 4
    a = rng.normal(size=(80, 12)) + classes[:, None] * 1.5
    b = np.concatenate([a[:, :6] + rng.normal(scale=0.8, size=(80, 6)), rng.normal(size=(80, 3))], axis=1)
    a, b = a.astype(np.float32), b.astype(np.float32)
    for item, c in zip(items[:60], classes):  # the last 20 carry no label
        item.update(metadata={"user": {"class": f"c{c}"}})
    fa, fb = _sets(ws, items, a, b)
    cmp = compare_sets(ws, fa, "model-b", k=7, label_field="user.class")
    assert (cmp.a_name, cmp.b_name, cmp.k, cmp.only_a, cmp.only_b) == ("model-a", "model-b", 7, 0, 0)
    assert 0.05 < cmp.mean_overlap < 0.95  # related, not the same
    ids = cmp.entity_ids.tolist()
    na, nb = _check_against_brute_force(cmp, dict(zip([i.id for i in items], a)),
                                        dict(zip([i.id for i in items], b)), 7)
    label_of = {i.id: (f"c{c}" if n < 60 else None) for n, (i, c) in enumerate(zip(items, classes))}
    labels = [label_of[e] for e in ids]
    agreement = cmp.label_agreement()
    assert agreement["labelled"] == 60
    assert agreement["a"] == pytest.approx(brute_agreement(labels, na))
    assert agreement["b"] == pytest.approx(brute_agreement(labels, nb))
    assert agreement["a"] > agreement["b"]  # set a was built around the classes
    assert np.isnan(cmp.agreement_a[[ids.index(i.id) for i in items[60:]]]).all()
    # Neighbour ids and the JSON summary say the same.
    row = int(cmp.most_disagreeing(1)[0])
    assert cmp.neighbour_ids(row, "a") == [ids[j] for j in na[row]]
    doc = cmp.to_json(top=3)
    assert doc["meanOverlap"] == cmp.mean_overlap and doc["histogram"] == cmp.histogram()
    assert [r["entityId"] for r in doc["mostDisagreeing"]] == [ids[r] for r in cmp.most_disagreeing(3)]
    assert doc["mostDisagreeing"][0]["neighboursB"] == [ids[j] for j in nb[row]]
    # Without a label field, and without annotations, there is no label agreement.
    assert compare_sets(ws, fa, fb, k=7).label_agreement() is None


def test_identical_permuted_and_partly_shared_sets(ws_embedded):
    ws = ws_embedded
    ds, items = _items(ws, 60)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 8)).astype(np.float32)
    fa, fb = _sets(ws, items, a, a.copy())
    same = compare_sets(ws, fa, fb, k=5)
    assert same.mean_overlap == 1.0 and (same.overlap == 1.0).all()
    assert same.histogram() == [0, 0, 0, 0, 0, 60]
    assert compare_sets(ws, fa, fa, k=5).mean_overlap == 1.0

    # The same vectors on shuffled items: neighbour lists unrelated to a's.
    perm = rng.permutation(60)
    fp = ws.feature_sets.create(name="permuted", size=8)
    ws.create_features(fp, a[perm], items)
    shuffled = compare_sets(ws, fa, fp, k=5)
    ids = [i.id for i in items]
    _check_against_brute_force(shuffled, dict(zip(ids, a)), dict(zip(ids, a[perm])), 5)
    assert shuffled.mean_overlap < 0.3

    # Sets over different items: only the common ones count.
    fc = ws.feature_sets.create(name="shifted", size=8)
    others = _items(ws, 10, "more")[1]
    c = rng.normal(size=(55, 8)).astype(np.float32)
    ws.create_features(fc, c, items[15:] + others[:10])
    part = compare_sets(ws, fa, fc, k=4)
    assert (part.only_a, part.only_b, len(part.entity_ids)) == (15, 10, 45)
    assert set(part.entity_ids.tolist()) == set(ids[15:])
    _check_against_brute_force(part, dict(zip(ids, a)), dict(zip([i.id for i in items[15:] + others], c)), 4)


def test_annotation_labels_and_duplicates(ws_embedded):
    ws = ws_embedded
    ds = ws.datasets.create("pics")
    images = [r.item for r in ds.items.upload([(f"p{i}.png", png_bytes(20 + i, 20)) for i in range(24)])]
    for n, img in enumerate(images[:18]):  # most common label per item: "A" for n % 3 == 0, else "B"
        img.annotations.create("A" if n % 3 == 0 else "B", (0, 0, 5, 5))
    a = np.zeros((24, 3), np.float32)
    a[:, 0] = np.arange(24) % 3 == 0  # the "A" items coincide: exact duplicates
    a += np.random.default_rng(2).normal(scale=0.01, size=a.shape).astype(np.float32)
    a[3] = a[0]  # two identical vectors: each still excludes only itself
    b = np.random.default_rng(3).normal(size=(24, 5)).astype(np.float32)
    fa, fb = _sets(ws, images, a, b)
    cmp = compare_sets(ws, fa, fb, k=3)
    ids = cmp.entity_ids.tolist()
    row_of = {e: r for r, e in enumerate(ids)}
    assert row_of[images[3].id] in cmp.neighbours_a[row_of[images[0].id]]
    assert all(r not in cmp.neighbours_a[r] for r in range(24))
    label_of = {img.id: ("A" if n % 3 == 0 else "B") if n < 18 else None for n, img in enumerate(images)}
    labels = [label_of[e] for e in ids]
    assert cmp.labels == labels
    agreement = cmp.label_agreement()
    assert agreement["labelled"] == 18
    assert agreement["a"] == pytest.approx(brute_agreement(labels, cmp.neighbours_a))
    assert agreement["b"] == pytest.approx(brute_agreement(labels, cmp.neighbours_b))


def test_refusals_and_shared_counts(ws_embedded):
    ws = ws_embedded
    ds, items = _items(ws, 5)
    a = np.eye(5, 4, dtype=np.float32)
    fa, fb = _sets(ws, items, a, a)
    with pytest.raises(InvalidInput, match="share 5 entities; k = 5 needs at least 6"):
        compare_sets(ws, fa, fb, k=5)
    with pytest.raises(InvalidInput, match="k must be"):
        compare_sets(ws, fa, fb, k=0)
    img = ws.datasets.create("img").items.upload_bytes(png_bytes(), "x.png").item
    boxes = ws.feature_sets.create(name="boxes", size=4, entity_type="annotation")
    ws.create_features(boxes, a[:1], [img.annotations.create("x", (0, 0, 3, 3))])
    with pytest.raises(InvalidInput, match="same entity type"):
        compare_sets(ws, fa, boxes, k=1)
    assert shared_counts(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])).tolist() == [2, 0]


def test_cli_compare(run_cli, tmp_path):
    ws = Workspace.open(tmp_path / "cli-ws")
    try:
        ds, items = _items(ws, 40)
        rng = np.random.default_rng(4)
        a = rng.normal(size=(40, 6)).astype(np.float32)
        for n, item in enumerate(items):
            item.update(metadata={"user": {"group": n % 2}})
        fa, fb = _sets(ws, items, a, (a + rng.normal(scale=0.5, size=a.shape)).astype(np.float32))
        expected = compare_sets(ws, fa, fb, k=5, label_field="user.group")
    finally:
        ws.close()
    proc = run_cli("compare", "--a", "model-a", "--b", "model-b", "--k", "5", "--label-field", "user.group", "--top", "2")
    assert "model-a vs model-b: 40 items in both" in proc.stdout
    assert f"mean overlap of the top-5 neighbours: {expected.mean_overlap:.4f}" in proc.stdout
    agreement = expected.label_agreement()
    assert f"model-a {agreement['a']:.4f}, model-b {agreement['b']:.4f}" in proc.stdout
    assert proc.stdout.count("overlap 0.") + proc.stdout.count("overlap 1.") == 2
    doc = json.loads(run_cli("compare", "--a", "model-a", "--b", "model-b", "--k", "5", "--json").stdout)
    assert doc["meanOverlap"] == pytest.approx(expected.mean_overlap) and doc["histogram"] == expected.histogram()
    assert doc["labelAgreement"] is None and len(doc["mostDisagreeing"]) == 10
    assert doc["mostDisagreeing"][0]["name"].startswith("/t")
    bad = run_cli("compare", "--a", "model-a", "--b", "nope", ok=False)
    assert bad.returncode == 2 and "no feature set 'nope'" in bad.stderr


def test_most_disagreeing_breaks_ties_by_stretch(ws_embedded):
    """Among items of equal overlap, those whose neighbours in one set lie farthest (in the
    other set's space, relative to its own neighbours) come first: brute force."""
    ws = ws_embedded
    ds, items = _items(ws, 50)
    rng = np.random.default_rng(7)
    a = rng.normal(size=(50, 5)).astype(np.float32)
    b = rng.normal(size=(50, 5)).astype(np.float32)
    fa, fb = _sets(ws, items, a, b)
    cmp = compare_sets(ws, fa, fb, k=4)
    ids = [i.id for i in items]
    va = np.stack([dict(zip(ids, a))[e] for e in cmp.entity_ids]).astype(np.float64)
    vb = np.stack([dict(zip(ids, b))[e] for e in cmp.entity_ids]).astype(np.float64)

    def mean_dist(v, rows):
        return np.array([np.linalg.norm(v[r] - v[i], axis=1).mean() for i, r in enumerate(rows)])

    stretch = 0.5 * (mean_dist(va, cmp.neighbours_b) / mean_dist(va, cmp.neighbours_a)
                     + mean_dist(vb, cmp.neighbours_a) / mean_dist(vb, cmp.neighbours_b))
    expected = np.lexsort((cmp.entity_ids, -stretch, cmp.overlap))
    assert cmp.stretch(np.arange(50)) == pytest.approx(stretch, rel=1e-4)
    for n in (1, 7, 50):
        assert cmp.most_disagreeing(n).tolist() == expected[:n].tolist()
    assert cmp.most_disagreeing(0).tolist() == [] and len(cmp.most_disagreeing(500)) == 50


def test_compare_scoped_to_a_dataset(ws_embedded):
    from tests.store.scoped import clustered, copied_set

    (fa, fb), src, copy, _ = copied_set(ws_embedded, clustered(n=20), sets=2)
    every = compare_sets(ws_embedded, fa, fb, k=1)
    assert len(every.entity_ids) == 40
    scoped = compare_sets(ws_embedded, fa, fb, k=1, dataset_id=src.id)
    assert len(scoped.entity_ids) == 20 and scoped.only_a == scoped.only_b == 0
    names = {i.id: i.dataset_id for i in ws_embedded.items_by_ids(scoped.entity_ids.tolist()).values()}
    assert set(names.values()) == {src.id}
    assert scoped.mean_overlap == 1.0  # b is a shifted a: the same neighbours, none of them a copy
    assert np.all(scoped.neighbours_a == scoped.neighbours_b)
