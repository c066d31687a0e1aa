"""Clusters page: running k-means and HDBSCAN from the page, the table, the saved metadata,
the map coloured by cluster, the gallery of a cluster, a revisit, a CLIP set's vocabulary."""
import json

import numpy as np
import pytest

from tests.pages.helpers import charts, ok, png, texts

PAGE = "app_pages/clusters.py"


@pytest.fixture
def blobs(app_ws):
    """30 image items in three far-apart groups of ten (4-d vectors), labelled by metadata."""
    ds = app_ws.datasets.create("shapes")
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    results = ds.items.upload([(f"s{i:02d}.png", png(colours[i // 10], (20 + i, 20))) for i in range(30)])
    items = [r.item.update(metadata={"user": {"shape": ["circle", "square", "star"][i // 10]}})
             for i, r in enumerate(results)]
    values = np.random.default_rng(0).normal(scale=0.2, size=(30, 4)).astype(np.float32)
    values[10:20, 0] += 10
    values[20:, 1] += 10
    fs = app_ws.feature_sets.create(name="Shape Set", size=4)
    app_ws.create_features(fs, values, items)
    return {"fs": fs, "items": items}


def _table(at):
    return at.dataframe[0].value


def test_empty_workspace(open_page):
    at = ok(open_page(PAGE))
    assert at.title[0].value == "Clusters"
    assert "No feature set yet" in texts(at)


def test_run_kmeans_table_metadata_map_and_gallery(open_page, blobs, app_ws):
    at = ok(open_page(PAGE))
    assert at.text_input(key="clusters:key").value == "shape_set"
    assert "not made by a CLIP model" in texts(at)
    assert "Pick a method and press **Run**" in texts(at)
    at.number_input(key="clusters:k").set_value(3).run()
    at.text_input(key="clusters:label-field").input("user.shape").run()
    at.button(key="clusters:run").click().run()
    ok(at)
    assert "3 clusters of 30 vectors (k-means, k = 3)" in texts(at)
    table = _table(at)
    assert sorted(table["name"]) == ["circle", "square", "star"] and list(table["size"]) == [10, 10, 10]
    assert all(str(v).startswith("data:image/png;base64,") for v in table["central 1"])
    assert all(cell.count(".png") == 3 for cell in table["central items"])

    # Saved as metadata: the filter finds each cluster's items exactly.
    shape_of = {i.id: i.metadata["user"]["shape"] for i in blobs["items"]}
    for cid, name in zip(table["id"], table["name"]):
        found = {i.id for i in app_ws.search({"metadata.clusters.shape_set.id": int(cid)}).all()}
        assert found == {i for i, s in shape_of.items() if s == name}

    # The map, coloured by cluster, after a PCA projection.
    at.radio(key="clusters:method").set_value("pca").run()
    at.button(key="clusters:project").click().run()
    spec = json.loads(charts(ok(at))[0].proto.spec)
    traces = {t["name"]: len(t["hovertext"]) for t in spec["data"]}
    assert traces == {f"{cid}: {name}": 10 for cid, name in zip(table["id"], table["name"])}

    # The gallery of a picked cluster: its ten items, closest to the centre first.
    pick = at.selectbox(key="clusters:pick")
    star = int(table["id"][list(table["name"]).index("star")])
    pick.set_value(star).run()
    captions = [c for img in ok(at).image for c in img.captions]
    assert sorted(captions) == [f"/s{i}.png" for i in range(20, 30)]
    assert "the first 10 of 10" in texts(at)


def test_hdbscan_rerun_replaces_and_revisit_loads(open_page, blobs, app_ws):
    at = ok(open_page(PAGE))
    at.radio(key="clusters:algorithm").set_value("hdbscan").run()
    at.number_input(key="clusters:min-size").set_value(4).run()
    at.text_input(key="clusters:key").input("groups").run()
    at.button(key="clusters:run").click().run()
    ok(at)
    assert "HDBSCAN, smallest cluster 4" in texts(at)
    table = _table(at)
    assert sorted(table["size"]) == [10, 10, 10]
    names = {i.name.rsplit(".", 1)[0] for i in blobs["items"]}
    assert set(table["name"]) <= names  # no labels, no CLIP: named after the most central item
    first = {i.id: i.metadata["clusters"]["groups"]["id"] for i in app_ws.search({}).all()}
    assert len(set(first.values())) == 3

    # k-means with k = 2 under the same key replaces it.
    at.radio(key="clusters:algorithm").set_value("kmeans").run()
    at.number_input(key="clusters:k").set_value(2).run()
    at.button(key="clusters:run").click().run()
    assert len(_table(ok(at))) == 2
    assert {i.metadata["clusters"]["groups"]["id"] for i in app_ws.search({}).all()} == {0, 1}

    # A new session shows the saved result for that key, without running again.
    again = ok(open_page(PAGE))
    assert "Pick a method" in texts(again)  # the default key has no result
    again.text_input(key="clusters:key").input("groups").run()
    assert len(_table(ok(again))) == 2 and "2 clusters of 30 vectors" in texts(again)

    # A bad key is refused without a traceback.
    again.text_input(key="clusters:key").input("a.b").run()
    assert not again.exception and "must be 1 to 64 letters" in again.error[0].value


def test_clip_set_shows_the_vocabulary_and_names_by_it(open_page, app_ws, tiny_clip_model):
    from store.embedders import load_embedder
    from store.embedders.job import create_feature_set

    fs = create_feature_set(app_ws, "clip set", tiny_clip_model)
    emb = load_embedder(tiny_clip_model)
    words = ["cat", "boat"]
    prompts = emb.embed_texts([f"a photo of a {w}" for w in words])
    values = np.repeat(prompts, 6, axis=0) + np.random.default_rng(1).normal(scale=0.002, size=(12, prompts.shape[1]))
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    ds = app_ws.datasets.create("pics")
    items = [r.item for r in ds.items.upload([(f"p{i}.png", png((10 * i, 0, 0), (16, 16))) for i in range(12)])]
    app_ws.create_features(fs, values.astype(np.float32), items)

    at = ok(open_page(PAGE))
    vocabulary = at.text_area(key="clusters:vocabulary")
    assert "cat" in vocabulary.value.splitlines() and len(vocabulary.value.splitlines()) >= 300
    vocabulary.input("cat\nboat\nviolin\nglacier").run()
    at.number_input(key="clusters:k").set_value(2).run()
    at.button(key="clusters:run").click().run()
    table = _table(ok(at))
    assert sorted(table["name"]) == ["boat", "cat"]
    assert all(p.split()[0] in ("cat", "boat") for p in table["prompts"])


def test_clusters_of_one_dataset_leave_the_copies_out(open_page, blobs, app_ws):
    from store.io import save_selection

    copy = save_selection(app_ws, [i.id for i in blobs["items"][:20]], "shapes-copy").dataset
    at = ok(open_page(PAGE))
    assert at.selectbox(key="clusters:scope").value == blobs["items"][0].dataset_id
    at.number_input(key="clusters:k").set_value(3).run()
    at.button(key="clusters:run").click().run()
    assert "3 clusters of 30 vectors of shapes (k-means, k = 3)" in texts(ok(at))
    assert sorted(_table(at)["size"]) == [10, 10, 10]
    at.selectbox(key="clusters:scope").select(copy.id).run()
    assert "Pick a method and press **Run**" in texts(ok(at))  # the other scope's result is not shown
    at.number_input(key="clusters:k").set_value(2).run()
    at.button(key="clusters:run").click().run()
    assert "2 clusters of 20 vectors of shapes-copy" in texts(ok(at))
    at.selectbox(key="clusters:scope").select("__all__").run()
    at.number_input(key="clusters:k").set_value(3).run()
    at.button(key="clusters:run").click().run()
    assert "3 clusters of 50 vectors (k-means" in texts(ok(at)) and "From " in texts(at)
    captions = [c for img in at.image for c in img.captions if c.startswith("/s")]  # the cluster's gallery
    assert captions and all(c.endswith((" · shapes", " · shapes-copy")) for c in captions)
