"""Maps: UMAP and PCA projections, their on-disk cache, the point table, the CLI, numba's cache."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from store import InvalidInput, Workspace
from store.analysis import knn
from store.analysis import projection as proj
from tests.conftest import ROOT, png_bytes

# Compiled umap kernels are reused across test runs (the workspace default is tested below
# in fresh processes); numba reads this before it is first imported.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".pytest_cache" / "numba"))


def clusters(per: int, k: int = 3, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` well separated Gaussian blobs, ``per`` points each, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(k, dim))
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + rng.normal(size=(k * per, dim))).astype(np.float32), labels


def make_set(ws, values: np.ndarray, name: str = "vecs", **kwargs):
    ds = ws.datasets.get_or_create("d")
    results = ds.items.upload([(f"{name}-{i}.txt", f"{name} {i}".encode()) for i in range(len(values))])
    fs = ws.feature_sets.create(name=name, size=values.shape[1], **kwargs)
    ids = [r.item.id for r in results]
    ws.create_features(fs, values, ids)
    return fs, ids


def agreement_of_nearest(coords: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose nearest other point on the map has the same label."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(axis=1)] == labels).mean())


def test_umap_keeps_clusters_apart_in_2d_and_3d(ws_embedded):
    values, labels = clusters(50)
    fs, ids = make_set(ws_embedded, values)
    label_of = dict(zip(ids, labels))
    for dims in (2, 3):
        p = proj.project(ws_embedded, fs, dims=dims)
        assert p.coords.shape == (150, dims) and p.coords.dtype == np.float32 and np.isfinite(p.coords).all()
        assert sorted(p.entity_ids) == sorted(ids) and not p.from_cache
        assert p.details["knn"] == f"exact ({knn.knn_device()})"
        # rows line up with entity ids: a shuffled pairing would score about 1/3
        assert agreement_of_nearest(p.coords, np.array([label_of[e] for e in p.entity_ids])) > 0.95
    frame = p.to_frame()
    assert list(frame.columns) == ["entity_id", "x", "y", "z"] and (frame["z"].to_numpy() == p.coords[:, 2]).all()
    drawn = proj.map_frame(ws_embedded, p)  # what a page draws: coordinates beside the point table
    names = {item_id: item.name for item_id, item in ws_embedded.items_by_ids(ids).items()}
    assert list(drawn["name"]) == [names[e] for e in p.entity_ids] and (drawn["y"].to_numpy() == p.coords[:, 1]).all()


def test_cosine_map_groups_by_direction_not_length(ws_embedded):
    directions, labels = clusters(40, k=3, dim=12, seed=3)
    lengths = np.random.default_rng(4).uniform(1, 100, size=(len(directions), 1)).astype(np.float32)
    fs, ids = make_set(ws_embedded, directions * lengths)
    p = proj.project(ws_embedded, fs, metric="cosine")
    label_of = dict(zip(ids, labels))
    assert agreement_of_nearest(p.coords, np.array([label_of[e] for e in p.entity_ids])) > 0.95


def test_projection_is_cached_on_disk_until_asked_differently(ws_embedded):
    fs, _ = make_set(ws_embedded, clusters(40)[0])
    first = proj.project(ws_embedded, fs, min_dist=0.2)
    files = list((ws_embedded.path / "cache" / "projections" / fs.id).glob("*.npz"))
    assert len(files) == 1
    seen = []
    again = proj.project(ws_embedded, fs, min_dist=0.2, progress=lambda s, f: seen.append((s, f)))
    assert again.from_cache and seen == [("cached", 1.0)]
    assert np.array_equal(again.coords, first.coords) and list(again.entity_ids) == list(first.entity_ids)
    assert again.params == first.params and again.details == first.details
    with Workspace.open(ws_embedded.path) as other:  # another process or a restart: read from disk
        found = proj.cached_projection(other, fs.name, min_dist=0.2)
        assert found is not None and found.from_cache and np.array_equal(found.coords, first.coords)
    assert proj.cached_projection(ws_embedded, fs, min_dist=0.3) is None
    assert proj.cached_projection(ws_embedded, fs, min_dist=0.2, dims=3) is None
    assert proj.cached_projection(ws_embedded, fs, method="pca") is None


def test_changed_set_is_projected_anew(ws_embedded):
    values, _ = clusters(40)
    fs, ids = make_set(ws_embedded, values)
    before = proj.project(ws_embedded, fs)
    ds = ws_embedded.datasets.get(dataset_name="d")
    more = ds.items.upload([(f"more-{i}.txt", f"more {i}".encode()) for i in range(10)])
    ws_embedded.create_features(fs, values[:10] + 0.5, [r.item.id for r in more])
    assert proj.cached_projection(ws_embedded, fs) is None
    after = proj.project(ws_embedded, fs)
    assert not after.from_cache and after.version > before.version and len(after.entity_ids) == 130
    assert {r.item.id for r in more} <= set(after.entity_ids)
    folder = ws_embedded.path / "cache" / "projections" / fs.id
    assert [f.name.split("-")[0] for f in folder.glob("*.npz")] == [f"v{after.version}"]  # old version dropped

    pca = proj.project(ws_embedded, fs, method="pca")
    ws_embedded.delete_items(ids[:5])
    fresh = proj.project(ws_embedded, fs, method="pca")
    assert not fresh.from_cache and len(fresh.entity_ids) == len(pca.entity_ids) - 5
    assert not set(ids[:5]) & set(fresh.entity_ids)


def test_same_seed_same_map_other_seed_other_map(ws_embedded):
    fs, _ = make_set(ws_embedded, clusters(40)[0])
    first = proj.project(ws_embedded, fs, seed=7)
    assert proj.clear_projection_cache(ws_embedded, fs) == 1
    second = proj.project(ws_embedded, fs, seed=7)
    assert not second.from_cache and np.array_equal(first.coords, second.coords)
    other = proj.project(ws_embedded, fs, seed=8)
    assert not np.allclose(first.coords, other.coords, atol=1e-3)


def test_pca_is_the_principal_components(ws_embedded):
    rng = np.random.default_rng(1)
    values = (rng.normal(size=(80, 10)) * np.linspace(5, 0.5, 10)).astype(np.float32)
    fs, ids = make_set(ws_embedded, values)
    p = proj.project(ws_embedded, fs, method="pca", dims=3)
    rows = [ids.index(e) for e in p.entity_ids]
    centred = values[rows].astype(np.float64) - values.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    expected = u[:, :3] * s[:3]
    signs = np.sign((expected * p.coords).sum(axis=0))
    assert np.allclose(p.coords * signs, expected, atol=1e-3)
    assert p.params == {"method": "pca", "dims": 3}


def test_progress_goes_through_the_stages_to_one(ws_embedded, monkeypatch):
    monkeypatch.setattr(proj, "LAYOUT_PROGRESS_SECONDS", 0.0)  # a small map lays out in well under 0.2 s
    fs, _ = make_set(ws_embedded, clusters(40)[0])
    seen = []
    proj.project(ws_embedded, fs, progress=lambda stage, fraction: seen.append((stage, fraction)))
    stages = list(dict.fromkeys(s for s, _ in seen))
    assert stages == ["load", "neighbors", "layout", "save", "done"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] >= 0
    assert len({f for s, f in seen if s == "layout"}) > 3  # epochs move the bar


def test_gpu_layout_run_on_the_cpu_repeats_and_keeps_clusters_apart(ws_embedded):
    """``torch_layout`` is what a CUDA machine runs after umap-learn's graph and init; the same
    code on the CPU must give the same map for a seed and a map as good as umap-learn's."""
    proj.import_umap(ws_embedded)
    values, labels = clusters(50, k=4, seed=6)

    def run(seed):
        return proj.umap_coords(values, proj.projection_params(seed=seed), proj.Progress(None), layout_device="cpu")

    first, details = run(5)
    assert details["layout"].startswith("torch (cpu)") and first.shape == (200, 2) and np.isfinite(first).all()
    assert np.array_equal(first, run(5)[0]) and not np.allclose(first, run(6)[0], atol=1e-3)
    assert agreement_of_nearest(first, labels) > 0.95


@pytest.mark.parametrize("device", sorted({"numpy", knn.knn_device()}))
def test_exact_knn_matches_brute_force_with_itself_first(device):
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(2)
    values = rng.normal(size=(300, 20)).astype(np.float32) + 50  # far from the origin
    values[10] = values[11]  # an exact duplicate must still list itself first
    indices, dists = knn.exact_knn(values, 8, device=device)
    assert indices.shape == dists.shape == (300, 8)
    assert (indices[:, 0] == np.arange(300)).all() and (dists[:, 0] == 0).all()
    assert indices[10, 1] == 11 and dists[10, 1] == 0
    expected, _ = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(values.astype(np.float64)).kneighbors()
    brute = np.concatenate([np.zeros((300, 1)), expected], axis=1)[:, :8]
    assert np.allclose(dists, brute, atol=1e-3)
    assert (np.diff(dists, axis=1) >= 0).all()


@pytest.mark.parametrize("device", sorted({"numpy", knn.knn_device()}))
def test_knn_against_matches_brute_force(device):
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(3)
    base = rng.normal(size=(400, 12)).astype(np.float32) + 30  # far from the origin
    queries = rng.normal(size=(150, 12)).astype(np.float32) + 30
    queries[5] = base[7]  # a query on a base row finds it at distance 0
    indices, dists = knn.knn_against(queries, base, 6, device=device)
    assert indices.shape == dists.shape == (150, 6) and indices[5, 0] == 7 and dists[5, 0] == 0
    brute_d, brute_i = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(base.astype(np.float64)).kneighbors(
        queries.astype(np.float64))
    assert np.allclose(dists, brute_d, atol=1e-3) and (np.diff(dists, axis=1) >= 0).all()
    assert (indices == brute_i).mean() > 0.99  # ties aside, the same rows


def test_nearest_landmarks_are_true_distances_and_exact_when_the_candidates_cover_them(monkeypatch):
    values, labels = clusters(300, k=5, dim=10, seed=4)
    marks, points = values[::3], np.delete(values, np.s_[::3], axis=0)
    point_labels = np.delete(labels, np.s_[::3])
    indices, dists = proj.nearest_landmarks(points, marks, 7)
    measured = np.linalg.norm(points[:, None, :] - marks[indices], axis=2)
    assert np.allclose(dists, measured, atol=1e-3) and (np.diff(dists, axis=1) >= 0).all()
    assert (labels[::3][indices] == point_labels[:, None]).mean() > 0.99  # within the point's own blob
    monkeypatch.setattr(proj, "PLACE_CANDIDATES", len(marks))  # every mark a candidate: exact
    exact_i, exact_d = knn.knn_against(points, marks, 7)
    indices, dists = proj.nearest_landmarks(points, marks, 7)
    assert np.allclose(dists, exact_d, atol=1e-4)


def test_a_large_set_is_mapped_through_landmarks_as_well_as_whole(ws_embedded, monkeypatch):
    """Above LANDMARKS_ABOVE (on a CPU) UMAP lays out LANDMARKS random points and places the
    rest among their nearest: clusters stay apart and the map is as trustworthy as UMAP of all."""
    from sklearn.manifold import trustworthiness

    if knn.knn_device() == "cuda":
        pytest.skip("on a GPU the whole set is laid out")
    proj.import_umap(ws_embedded)
    monkeypatch.setattr(proj, "LAYOUT_PROGRESS_SECONDS", 0.0)
    values, labels = clusters(400, k=4, dim=32, seed=8)
    fs, ids = make_set(ws_embedded, values, name="big")
    monkeypatch.setattr(proj, "LANDMARKS_ABOVE", 1000)
    monkeypatch.setattr(proj, "LANDMARKS", 300)
    seen = []
    p = proj.project(ws_embedded, fs, progress=lambda stage, fraction: seen.append(stage))
    assert p.details["landmarks"] == 300 and "place" in seen and p.coords.shape == (1600, 2)
    row_of = {e: i for i, e in enumerate(ids)}
    rows = np.array([row_of[e] for e in p.entity_ids])
    assert agreement_of_nearest(p.coords, labels[rows]) > 0.95
    whole, _ = proj.umap_coords(values[rows], p.params, proj.Progress(None), landmarks=len(values))
    assert "landmarks" not in _
    trust = trustworthiness(values[rows], p.coords, n_neighbors=15)
    assert trust >= trustworthiness(values[rows], whole, n_neighbors=15) - 0.02
    assert proj.project(ws_embedded, fs).from_cache  # cached as any map


def cells(column: pd.Series) -> list:
    """Column values with pandas' missing markers (None or NaN by dtype) as None."""
    return [None if pd.isna(v) else v for v in column]


def test_point_table_names_datasets_labels_metadata_and_distances(ws_embedded):
    ws = ws_embedded
    pets = ws.datasets.create("pets")
    cat = pets.items.upload([("cat.png", png_bytes(color=(1, 2, 3)))], dir="/animals")[0].item
    dog = pets.items.upload([("dog.png", png_bytes(color=(4, 5, 6)))], metadata={"user": {"split": "test"}})[0].item
    notes = ws.datasets.create("notes").items.upload([("n.txt", b"note")], metadata={"user": {"split": "train"}})[0].item
    dog = dog.update(hidden=True)
    boxes = [ws.add_box(cat, label, (0, 0, 5, 5)) for label in ("cat", "dog", "cat")] + [ws.add_box(dog, "dog", (1, 1, 4, 4))]

    items_set = ws.feature_sets.create("items", size=2)
    entity_ids = [notes.id, cat.id, dog.id, "gone"]
    table = proj.point_table(ws, items_set, entity_ids, metadata_fields=["user.split", "name"], distances={cat.id: 0.5})
    assert list(table["entity_id"]) == entity_ids
    assert list(table.columns) == ["entity_id", "item_id", "name", "filename", "dataset", "dir", "kind", "hidden",
                                   "label", "user.split", "metadata.name", "distance"]
    rows = table.set_index("entity_id")
    assert rows.loc[cat.id, "filename"] == "/animals/cat.png" and rows.loc[cat.id, "dir"] == "/animals"
    assert list(rows["dataset"][:3]) == ["notes", "pets", "pets"] and list(rows["kind"][:3]) == ["text", "image", "image"]
    assert cells(rows["label"]) == [None, "cat", "dog", None]  # most common label on the item
    assert cells(rows["hidden"]) == [False, False, True, None]
    assert cells(rows["user.split"]) == ["train", None, "test", None]
    assert rows.loc[cat.id, "distance"] == 0.5 and np.isnan(rows.loc[dog.id, "distance"])
    assert rows.loc["gone"].isna().all()

    boxes_set = ws.feature_sets.create("boxes", size=2, entity_type="annotation")
    by_box = proj.point_table(ws, boxes_set, [b.id for b in boxes])
    assert list(by_box["label"]) == ["cat", "dog", "cat", "dog"]  # an annotation's own label
    assert list(by_box["name"]) == ["cat.png"] * 3 + ["dog.png"] and list(by_box["item_id"]) == [cat.id] * 3 + [dog.id]


def test_bad_requests_say_what_to_change(ws_embedded):
    fs, _ = make_set(ws_embedded, clusters(2, k=2)[0])  # 4 vectors
    for kwargs, message in [({"dims": 4}, "dims"), ({"metric": "hamming"}, "metric"), ({"n_neighbors": 1}, "n_neighbors"),
                            ({"method": "tsne"}, "method"), ({"min_dist": 2.0}, "min_dist"), ({"seed": -1}, "seed")]:
        with pytest.raises(InvalidInput, match=message):
            proj.project(ws_embedded, fs, **kwargs)
    with pytest.raises(InvalidInput, match="method='pca'"):
        proj.project(ws_embedded, fs, dims=3)
    assert proj.project(ws_embedded, fs, method="pca").coords.shape == (4, 2)
    empty = ws_embedded.feature_sets.create("empty", size=3)
    with pytest.raises(InvalidInput, match="no vectors"):
        proj.project(ws_embedded, empty)


def test_cli_project_writes_coordinates_with_the_point_table(run_cli, tmp_path):
    values, _ = clusters(20)
    with Workspace.open(tmp_path / "cli-ws") as ws:
        fs, ids = make_set(ws, values)
        ws.update_item(ids[0], metadata={"user": {"split": "val"}})
        ws.update_item(ids[1], metadata={"user": {"split": 3}})  # mixed types: Parquet gets text
    out = tmp_path / "coords.parquet"
    first = run_cli("project", "--feature-set", "vecs", "--dims", "3", "--metadata", "user.split", "-o", str(out))
    frame = pd.read_parquet(out)
    assert len(frame) == 60 and sorted(frame["entity_id"]) == sorted(ids)
    assert {"x", "y", "z", "name", "filename", "dataset", "label", "user.split"} <= set(frame.columns)
    assert np.isfinite(frame[["x", "y", "z"]].to_numpy()).all()
    splits = frame.set_index("entity_id")["user.split"]
    assert splits[ids[0]] == "val" and splits[ids[1]] == "3" and pd.isna(splits[ids[2]])
    assert "60 points" in first.stdout and "from cache" not in first.stdout
    again = run_cli("project", "-s", "vecs", "--dims", "3", "-o", str(tmp_path / "again.csv"))
    assert "from cache" in again.stdout
    assert np.array_equal(pd.read_csv(tmp_path / "again.csv")[["x", "y", "z"]].to_numpy(np.float32),
                          frame[["x", "y", "z"]].to_numpy(np.float32))
    bad = run_cli("project", "-s", "vecs", "-o", str(tmp_path / "x.txt"), ok=False)
    assert bad.returncode == 2 and ".parquet or .csv" in bad.stderr


WARM = """
import json, sys, time
sys.path.insert(0, {root!r})
from store import Workspace
from store.analysis.projection import warm_numba_cache
started = time.perf_counter()
ws = Workspace.open({path!r})
warm_numba_cache(ws, background=False)
import numba, umap.layouts
kernel = umap.layouts._nb_optimize_layout_euclidean_single_epoch
print(json.dumps({{"cache_dir": numba.config.CACHE_DIR, "kernel_cache": kernel.stats.cache_path,
                  "hits": sum(kernel.stats.cache_hits.values()), "misses": sum(kernel.stats.cache_misses.values()),
                  "seconds": time.perf_counter() - started}}))
"""


def test_numba_kernels_are_cached_in_the_workspace_across_processes(tmp_path):
    path = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "FEATURELAB_CHROMA_URL")}
    script = WARM.format(root=str(ROOT), path=str(path))

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    where = str((path / "cache" / "numba").resolve())
    assert first["cache_dir"] == where and first["kernel_cache"].startswith(where)
    assert first["misses"] >= 1 and any((path / "cache" / "numba").rglob("*.nbi"))  # compiled, then stored
    assert second["hits"] >= 1 and second["misses"] == 0  # the next process loads, not compiles
    assert second["seconds"] < first["seconds"]


def test_warm_numba_cache_runs_in_a_background_thread(ws_embedded):
    thread = proj.warm_numba_cache(ws_embedded)
    thread.join(timeout=240)
    assert not thread.is_alive() and thread.daemon
    import umap.layouts

    assert umap.layouts._nb_optimize_layout_euclidean_single_epoch.signatures  # compiled or loaded


def test_a_scoped_map_projects_only_that_datasets_points_and_is_cached_apart(ws_embedded):
    from store.analysis import point_table
    from tests.store.scoped import clustered, copied_set

    x = clustered(n=20)
    (fs,), src, copy, items = copied_set(ws_embedded, x)
    every = proj.project(ws_embedded, fs, method="pca")
    assert len(every.entity_ids) == 40
    scoped = proj.project(ws_embedded, fs, method="pca", dataset_id=copy.id)
    assert len(scoped.entity_ids) == 20 and not scoped.from_cache
    assert set(point_table(ws_embedded, fs, scoped.entity_ids)["dataset"]) == {"notes-copy"}
    assert np.allclose(scoped.coords, proj.pca_coords(x, 2), atol=1e-3) or \
        np.allclose(np.abs(scoped.coords), np.abs(proj.pca_coords(x, 2)), atol=1e-3)  # PCA up to sign
    hit = proj.cached_projection(ws_embedded, fs, method="pca", dataset_id=copy.id)
    assert hit is not None and hit.from_cache and list(hit.entity_ids) == list(scoped.entity_ids)
    assert proj.cached_projection(ws_embedded, fs, method="pca", dataset_id=src.id) is None
    assert len(proj.cached_projection(ws_embedded, fs, method="pca").entity_ids) == 40
