"""Named clusters: the torch k-means against scikit-learn, HDBSCAN, names (CLIP prompts,
labels, central items), the metadata the filters reach, reruns, annotation sets, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from store import Filters, InvalidInput, Workspace
from store.analysis.clusters import (
    DEFAULT_VOCABULARY, NOISE_NAME, check_key, clear_assignment, cluster_feature_set, default_key, default_vocabulary, kmeans,
    load_result, parse_vocabulary,
)
from tests.conftest import png_bytes


def blobs(n_per: int, centres: np.ndarray, scale: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centres)), n_per)
    values = centres[truth] + rng.normal(scale=scale, size=(len(truth), centres.shape[1]))
    return values.astype(np.float32), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ---- k-means ------------------------------------------------------------------------------------
def test_kmeans_inertia_is_within_a_few_percent_of_scikit_learn():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(3)
    centres = rng.normal(scale=4.0, size=(12, 16))
    values, _ = blobs(150, centres, 1.5, seed=3)
    for seed in (0, 1):
        ours = kmeans(values, 10, seed=seed, device="cpu")
        theirs = KMeans(10, n_init=1, random_state=seed).fit(values)
        assert ours.converged and ours.device == "cpu"
        assert ours.inertia <= 1.03 * theirs.inertia_, (ours.inertia, theirs.inertia_)
        # The reported inertia is the sum of squared distances to the returned centres.
        brute = ((values.astype(np.float64) - ours.centers[ours.labels]) ** 2).sum()
        assert ours.inertia == pytest.approx(brute, rel=1e-4)
        # Each row sits with its nearest centre (the final assignment step ran).
        d = ((values[:, None, :].astype(np.float64) - ours.centers[None].astype(np.float64)) ** 2).sum(-1)
        assert (d[np.arange(len(values)), ours.labels] <= d.min(axis=1) + 1e-3).all()
    # Seeded: the same seed gives the same clustering.
    again = kmeans(values, 10, seed=1, device="cpu")
    assert np.array_equal(again.labels, kmeans(values, 10, seed=1, device="cpu").labels)


def test_kmeans_recovers_well_separated_blobs_exactly():
    centres = np.eye(6, 32) * 50.0
    values, truth = blobs(40, centres, 1.0, seed=1)
    order = np.random.default_rng(0).permutation(len(values))
    result = kmeans(values[order], 6, seed=4)
    assert same_partition(result.labels, truth[order])
    assert sorted(np.bincount(result.labels).tolist()) == [40] * 6


def test_kmeans_with_fewer_distinct_points_than_k_and_bad_inputs():
    values = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]], dtype=np.float32), 10, axis=0)
    result = kmeans(values, 5, seed=0)
    assert result.inertia == pytest.approx(0.0, abs=1e-6)
    assert not np.isnan(result.centers).any() and result.labels.max() < 5
    assert same_partition(result.labels, np.repeat(np.arange(3), 10))
    with pytest.raises(InvalidInput, match="k must be"):
        kmeans(values, 0)
    with pytest.raises(InvalidInput, match="k must be"):
        kmeans(values, 31)
    with pytest.raises(InvalidInput, match="non-empty"):
        kmeans(np.zeros((0, 3), np.float32), 1)


# ---- keys and vocabularies -------------------------------------------------------------------------
def test_keys_and_vocabularies():
    assert default_key("My CLIP set") == "my_clip_set"
    assert default_key("ViT-B/32 (laion)") == "vit_b_32_laion"
    assert default_key("дом").startswith("set_") and check_key(default_key("дом"))
    assert check_key("a-b_C9") == "a-b_C9"
    for bad in ("", "a.b", "a b", "x" * 65, 3):
        with pytest.raises(InvalidInput, match="clusters key"):
            check_key(bad)
    assert parse_vocabulary("cat\n# a comment\ndog, fire_truck  # trailing\n\ncat\n t-shirt ") == [
        "cat", "dog", "fire truck", "t-shirt"]
    words = default_vocabulary()
    assert len(words) >= 300 and len(set(words)) == len(words)
    assert {"cat", "dog", "car", "beach", "kitchen", "traffic light"} <= set(words)
    assert len(DEFAULT_VOCABULARY) >= len(words)


# ---- clustering a feature set ----------------------------------------------------------------------
def _text_items(ws, n: int, name: str = "notes", dir: str = "/"):
    ds = ws.datasets.get_or_create(name)
    results = ds.items.upload([(f"n{i:03d}.txt", f"note {name} {i}".encode()) for i in range(n)], dir=dir)
    assert all(r.status == "added" for r in results)
    return ds, [r.item for r in results]


def _ids_found(ws, flt: dict, ds=None) -> set[str]:
    pages = ds.items.list(flt) if ds is not None else ws.search(flt)
    return {i.id for i in pages.all()}


def test_clusters_are_saved_as_metadata_that_filters_find_exactly(ws):
    ds, items = _text_items(ws, 45)
    centres = np.eye(3, 8) * 20.0
    values, truth = blobs(15, centres, 0.5, seed=2)
    classes = ["red", "green", "blue"]
    for item, t in zip(items, truth):
        item.update(metadata={"user": {"colour": classes[t]}, "keep": 1})
    fs = ws.feature_sets.create(name="Colour Set", size=8)
    ws.create_features(fs, values, items)

    result = cluster_feature_set(ws, fs, k=3, label_field="user.colour", central=4)
    assert result.key == "colour_set" and result.method == "kmeans" and len(result.clusters) == 3
    assert same_partition(result.labels, truth)
    by_id = {item.id: t for item, t in zip(items, truth)}
    row_of = {e: i for i, e in enumerate(result.entity_ids.tolist())}
    for cluster in result.clusters:
        members = {e for e, c in result.assignment().items() if c == cluster.id}
        colours = {classes[by_id[e]] for e in members}
        assert cluster.size == 15 and colours == {cluster.name} and cluster.labels == [(cluster.name, 15)]
        assert cluster.prompts == []  # not a CLIP set
        # The filter language finds exactly this cluster's items, by id and by name.
        assert _ids_found(ws, {"metadata.clusters.colour_set.id": cluster.id}) == members
        assert _ids_found(ws, {"metadata.clusters.colour_set.name": cluster.name}, ds) == members
        assert {i.id for i in ds.items.list(Filters(field="metadata.clusters.colour_set.id",
                                                    values=cluster.id)).all()} == members
        # Central items: the members closest to the mean of the members, brute force.
        rows = np.array([row_of[e] for e in members])
        centre = values[rows].astype(np.float64).mean(axis=0)
        dist = np.sqrt(((values[rows].astype(np.float64) - centre) ** 2).sum(axis=1))
        expected = [result.entity_ids[rows[j]] for j in np.argsort(dist)[:4]]
        assert cluster.central == expected
        assert result.members(cluster.id)[:4] == expected
    # Other metadata stays; the value is {"id", "name"}.
    item = ws.get_item(items[0].id)
    assert item.metadata["user"] == {"colour": classes[truth[0]]} and item.metadata["keep"] == 1
    assert item.metadata["clusters"]["colour_set"] == {"id": int(result.labels[row_of[items[0].id]]),
                                                       "name": classes[truth[0]]}

    # A rerun with another k replaces the assignment; an item whose vector went loses its key.
    ws.delete_features([next(f.id for f in items[0].features.list().all())])
    again = cluster_feature_set(ws, fs, k=2, seed=1)
    assert len(again.clusters) == 2 and len(again.entity_ids) == 44
    assert _ids_found(ws, {"metadata.clusters.colour_set.id": 2}) == set()
    assert _ids_found(ws, {"metadata.clusters.colour_set": {"$exists": True}}) == {i.id for i in items[1:]}
    assert "clusters" not in ws.get_item(items[0].id).metadata
    assert ws.get_item(items[0].id).metadata["user"] == {"colour": classes[truth[0]]}
    for cluster in again.clusters:
        members = {e for e, c in again.assignment().items() if c == cluster.id}
        assert _ids_found(ws, {"metadata.clusters.colour_set.id": cluster.id}) == members


def test_keys_keep_apart_names_fall_back_and_results_reload(ws_embedded):
    ws = ws_embedded
    ds, items = _text_items(ws, 30)
    values, truth = blobs(10, np.eye(3, 4) * 30.0, 0.3, seed=5)
    fs = ws.feature_sets.create(name="plain", size=4)
    ws.create_features(fs, values, items)
    first = cluster_feature_set(ws, fs, k=3, key="run-a")
    second = cluster_feature_set(ws, fs, k=2, key="run_b")
    metadata = ws.get_item(items[0].id).metadata["clusters"]
    assert set(metadata) == {"run-a", "run_b"}
    assert _ids_found(ws, {"metadata.clusters.run-a.id": {"$in": [0, 1, 2]}}) == {i.id for i in items}
    # Without labels or a model, a cluster is named after its most central item.
    names = {i.id: i.name.rsplit(".", 1)[0] for i in items}
    assert all(c.name == names[c.central[0]] for c in first.clusters)
    assert all(c.labels == [] for c in first.clusters)

    loaded = load_result(ws, fs, "run-a")
    assert loaded is not None and loaded.key == "run-a" and loaded.params == {"k": 3, "seed": 0, "max_iter": 300}
    assert np.array_equal(loaded.labels, first.labels) and np.array_equal(loaded.entity_ids, first.entity_ids)
    assert [(c.id, c.name, c.size, c.central) for c in loaded.clusters] == [
        (c.id, c.name, c.size, c.central) for c in first.clusters]
    assert load_result(ws, fs, "other") is None
    # Not saved: nothing written, no cached result.
    unsaved = cluster_feature_set(ws, fs, k=3, key="dry", save=False)
    assert len(unsaved.clusters) == 3 and load_result(ws, fs, "dry") is None
    assert "dry" not in ws.get_item(items[0].id).metadata["clusters"]
    # A changed set: the cached result no longer applies.
    ws.create_features(fs, values[:1] + 1, items[:1])
    assert load_result(ws, fs, "run-a") is None
    assert second.key == "run_b"
    # Clearing one key removes it everywhere and leaves the other.
    assert clear_assignment(ws, "run-a") == 30
    assert _ids_found(ws, {"metadata.clusters.run-a": {"$exists": True}}) == set()
    assert all(set(i.metadata["clusters"]) == {"run_b"} for i in ws.search({}).all())


def test_clustering_refuses_what_it_cannot_do(ws_embedded):
    ws = ws_embedded
    ds, items = _text_items(ws, 6)
    fs = ws.feature_sets.create(name="six", size=3)
    empty = ws.feature_sets.create(name="empty", size=3)
    ws.create_features(fs, np.arange(18, dtype=np.float32).reshape(6, 3), items)
    with pytest.raises(InvalidInput, match="holds no vectors"):
        cluster_feature_set(ws, empty, k=2)
    with pytest.raises(InvalidInput, match="k = 7 is more than the 6"):
        cluster_feature_set(ws, fs, k=7)
    with pytest.raises(InvalidInput, match="method must be"):
        cluster_feature_set(ws, fs, method="dbscan")
    with pytest.raises(InvalidInput, match="not made by a CLIP"):
        cluster_feature_set(ws, fs, k=2, vocabulary=["cat"])
    with pytest.raises(InvalidInput, match="min_size"):
        cluster_feature_set(ws, fs, method="hdbscan", min_size=1)
    with pytest.raises(InvalidInput, match="clusters key"):
        cluster_feature_set(ws, fs, k=2, key="a.b")
    # metadata.clusters that is not an object is never overwritten.
    items[0].update(metadata={"clusters": "mine"})
    with pytest.raises(InvalidInput, match="not an object"):
        cluster_feature_set(ws, fs, k=2)
    assert ws.get_item(items[0].id).metadata == {"clusters": "mine"}
    assert _ids_found(ws, {"metadata.clusters.six": {"$exists": True}}) == set()


def test_hdbscan_marks_noise_and_matches_scikit_learn(ws_embedded):
    from sklearn.cluster import HDBSCAN

    ws = ws_embedded
    values, truth = blobs(20, np.eye(3, 6) * 15.0, 0.4, seed=7)
    outliers = np.random.default_rng(9).uniform(-40, 40, size=(4, 6)).astype(np.float32)
    values = np.concatenate([values, outliers])
    ds, items = _text_items(ws, len(values))
    fs = ws.feature_sets.create(name="dense", size=6)
    ws.create_features(fs, values, items)
    result = cluster_feature_set(ws, fs, method="hdbscan", min_size=5)
    expected = HDBSCAN(min_cluster_size=5, copy=True).fit_predict(values.astype(np.float64))
    row_of = {e: i for i, e in enumerate(result.entity_ids.tolist())}
    labels = result.labels[[row_of[i.id] for i in items]]  # in the order of the items (and of values)
    assert np.array_equal(labels, expected)
    assert same_partition(labels[:60], truth) and (labels[60:] == -1).all()
    noise = result.cluster(-1)
    assert noise.name == NOISE_NAME and noise.size == (expected == -1).sum() >= 4
    assert [c.id for c in result.clusters] == [0, 1, 2, -1]
    assert result.params == {"min_size": 5}
    assert _ids_found(ws, {"metadata.clusters.dense.id": -1}) == {items[i].id for i in np.flatnonzero(expected == -1)}


def test_annotation_sets_store_clusters_on_each_annotation(ws_embedded):
    ws = ws_embedded
    ds = ws.datasets.create("boxes")
    images = [r.item for r in ds.items.upload([(f"im{i}.png", png_bytes(40 + i, 30)) for i in range(6)])]
    anns = [img.annotations.create("cat" if j == 0 else "dog", (0, 0, 10 + j, 10)) for img in images for j in range(2)]
    fs = ws.feature_sets.create(name="box set", size=4, entity_type="annotation")
    values = np.zeros((12, 4), np.float32)
    values[1::2] = 30.0  # the second box of each image sits apart
    values += np.random.default_rng(0).normal(scale=0.1, size=values.shape).astype(np.float32)
    ws.create_features(fs, values, anns)
    result = cluster_feature_set(ws, fs, k=2)
    assert sorted(c.name for c in result.clusters) == ["cat", "dog"]  # the annotations' own labels
    for cluster in result.clusters:
        expected = {a.id for a in anns if a.label == cluster.name}
        found = {a.id for a in ds.annotations.list({"metadata.clusters.box_set.id": cluster.id}).all()}
        assert found == expected and cluster.size == 6
    # Items stay untouched: an image holds boxes of both clusters.
    assert all("clusters" not in ws.get_item(i.id).metadata for i in images)
    assert ws.get_annotation(anns[0].id).metadata["clusters"]["box_set"]["name"] == "cat"


# ---- CLIP sets: names from the nearest prompts -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.store.embed_models import save_tiny_clip_dir

    return save_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip-clusters"))


def test_clip_clusters_are_named_by_the_nearest_prompts(ws_embedded, tiny_dir):
    from store.embedders import load_embedder
    from store.embedders.job import create_feature_set

    ws = ws_embedded
    words = ["cat", "car", "beach"]
    vocabulary = words + ["spoon", "violin", "glacier", "mug"]
    fs = create_feature_set(ws, "clip", f"local-dir:{tiny_dir}")
    embedder = load_embedder(f"local-dir:{tiny_dir}")
    prompts = embedder.embed_texts([f"a photo of a {w}" for w in vocabulary])
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 8)
    values = prompts[truth] + rng.normal(scale=0.002, size=(24, prompts.shape[1]))
    values = (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(np.float32)
    ds, items = _text_items(ws, 24)
    ws.create_features(fs, values, items)

    result = cluster_feature_set(ws, fs, k=3, vocabulary=vocabulary)
    assert same_partition(result.labels, truth)
    assert sorted(c.name for c in result.clusters) == sorted(words)
    unit = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
    for cluster in result.clusters:
        members = result.labels == cluster.id
        centre = values[members].astype(np.float64).mean(axis=0)
        scores = unit @ (centre / np.linalg.norm(centre))
        best = np.argsort(-scores)[:3]
        assert [w for w, _ in cluster.prompts] == [vocabulary[j] for j in best]
        assert [s for _, s in cluster.prompts] == pytest.approx(scores[best], abs=1e-3)
        assert _ids_found(ws, {"metadata.clusters.clip.name": cluster.name}) == {
            items[i].id for i in np.flatnonzero(members)}

    # The default vocabulary names them too, from its few hundred words.
    default = cluster_feature_set(ws, fs, k=3, key="by_default")
    assert sorted(c.name for c in default.clusters) == sorted(words)
    assert all(len(c.prompts) == 3 and c.prompts[0][0] in default_vocabulary() for c in default.clusters)
    # A template without a slot is refused.
    with pytest.raises(InvalidInput, match="template"):
        cluster_feature_set(ws, fs, k=3, template="a photo")


def test_an_unloadable_clip_model_still_clusters_with_a_warning(ws_embedded, tmp_path):
    ws = ws_embedded
    fs = ws.feature_sets.create(name="gone", size=4, model={"name": "ViT-B-32", "backend": "open_clip",
                                                            "weights": str(tmp_path / "missing.pt")})
    ds, items = _text_items(ws, 12)
    values, truth = blobs(6, np.eye(2, 4) * 10.0, 0.2)
    ws.create_features(fs, values, items)
    result = cluster_feature_set(ws, fs, k=2)
    assert same_partition(result.labels, truth)
    assert any("not named by prompts" in w for w in result.details["warnings"])
    assert all(c.prompts == [] and c.name for c in result.clusters)


# ---- command line ------------------------------------------------------------------------------------
def test_cli_clusters(run_cli, tmp_path):
    ws = Workspace.open(tmp_path / "cli-ws")
    try:
        ds, items = _text_items(ws, 30)
        values, truth = blobs(10, np.eye(3, 5) * 25.0, 0.3, seed=11)
        for item, t in zip(items, truth):
            item.update(metadata={"user": {"kind": f"k{t}"}})
        fs = ws.feature_sets.create(name="cli set", size=5)
        ws.create_features(fs, values, items)
    finally:
        ws.close()
    proc = run_cli("clusters", "--feature-set", "cli set", "--k", "3", "--label-field", "user.kind")
    assert "3 clusters of 30 vectors of cli set (kmeans)" in proc.stderr
    assert "saved as item metadata.clusters.cli_set" in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "size", "name"]
    assert sorted(line.split()[2] for line in lines[1:]) == ["k0", "k1", "k2"]

    doc = json.loads(run_cli("clusters", "-s", "cli set", "--k", "2", "--key", "two", "--json").stdout)
    assert doc["key"] == "two" and doc["entities"] == 30 and len(doc["clusters"]) == 2
    assert sum(c["size"] for c in doc["clusters"]) == 30
    assert all(c["centralNames"][0].startswith("/n") for c in doc["clusters"])

    vocab = tmp_path / "words.txt"
    vocab.write_text("cat\ndog\n")
    bad = run_cli("clusters", "-s", "cli set", "--vocabulary", str(vocab), ok=False)
    assert bad.returncode == 2 and "not made by a CLIP" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("clusters", "-s", "cli set", "--k", "99", ok=False)
    assert bad.returncode == 2 and "k = 99 is more than the 30" in bad.stderr

    ws = Workspace.open(tmp_path / "cli-ws")
    try:
        found = {}
        for item in ws.search({}).all():
            found.setdefault(item.metadata["clusters"]["cli_set"]["name"], set()).add(item.metadata["user"]["kind"])
            assert set(item.metadata["clusters"]) == {"cli_set", "two"}
        assert found == {"k0": {"k0"}, "k1": {"k1"}, "k2": {"k2"}}
    finally:
        ws.close()


def test_clusters_scoped_to_a_dataset_leave_its_copy_out(ws_embedded):
    from tests.store.scoped import clustered, copied_set

    x = clustered(n=24)
    (fs,), src, copy, items = copied_set(ws_embedded, x)
    every = cluster_feature_set(ws_embedded, fs, k=3, save=False)
    assert len(every.entity_ids) == 48 and "dataset_id" not in every.params
    result = cluster_feature_set(ws_embedded, fs, k=3, dataset_id=copy.id, key="scoped")
    assert len(result.entity_ids) == 24 and sum(c.size for c in result.clusters) == 24
    assert result.params["dataset_id"] == copy.id
    in_copy = {i.id for i in copy.items.list().all()}
    assert set(result.entity_ids.tolist()) == in_copy
    found = ws_embedded.search(Filters(custom_filter={"filter": {"metadata.clusters.scoped": {"$exists": True}}}))
    assert found.items_count == 24 and {i.dataset_id for i in found.items} == {copy.id}
