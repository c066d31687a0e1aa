"""The real dtlpy SDK against a real `python -m store serve`: the guide's calls, checked
against the bytes and vectors the test put in (and NumPy brute force for the searches)."""
from __future__ import annotations

import io
import json
import os
import time

import dtlpy as dl
import numpy as np
import pytest
import requests
from PIL import Image

N_ITEMS = int(os.environ.get("FEATURELAB_SERVER_ITEMS", "2500"))
SIZE = 8


@pytest.fixture(scope="session")
def loaded(project, tmp_path_factory):
    """A dataset of N_ITEMS text files uploaded by the SDK, and one vector per item made by
    one bulk `features.create`."""
    folder = tmp_path_factory.mktemp("files")
    for i in range(N_ITEMS):
        (folder / f"note-{i:04d}.txt").write_text(f"note number {i}\n")
    dataset = project.datasets.create(dataset_name="notes")
    started = time.monotonic()
    list(dataset.items.upload(local_path=str(folder), remote_path="/notes") or [])
    upload_s = time.monotonic() - started
    items = list(dataset.items.list().all())
    feature_set = project.feature_sets.create(name="notes-vectors", size=SIZE, set_type="embeddings",
                                              entity_type=dl.FeatureEntityType.ITEM)
    values = np.random.default_rng(7).normal(size=(len(items), SIZE)).astype(np.float32)
    feature_set.features.create(value=values.tolist(), entity=items)
    by_id = {it.id: values[i] for i, it in enumerate(items)}
    return {"dataset": dataset, "items": items, "feature_set": feature_set, "vectors": by_id, "upload_s": upload_s}


def brute_force(vectors: dict, query: np.ndarray) -> list[tuple[str, float]]:
    ids = sorted(vectors)
    dist = np.sqrt(((np.stack([vectors[i] for i in ids]).astype(np.float64) - query.astype(np.float64)) ** 2).sum(1))
    return sorted(zip(ids, dist.tolist()), key=lambda p: (p[1], p[0]))


def knn_filter(vector: list[float], k: int, feature_set_id: str, euclid_filter: dict | None = None) -> dict:
    """The seed's custom_filter, as written there."""
    euclid = {"input": vector, "$euclidSort": {"eu_dist": "ascending"}}
    if euclid_filter is not None:
        euclid["$euclidFilter"] = euclid_filter
    return {
        "filter": {"$and": [{"hidden": False}, {"type": "file"}]},
        "page": 0,
        "pageSize": k,
        "resource": "items",
        "join": {
            "on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},
            "filter": {"value": {"$euclid": euclid}, "featureSetId": feature_set_id},
        },
    }


def test_project_and_dataset_come_back(server, project, loaded):
    assert project.id == server.project_id
    dataset = dl.datasets.get(dataset_id=loaded["dataset"].id)
    assert dataset.name == "notes" and dataset.items_count == N_ITEMS
    assert "notes" in [d.name for d in project.datasets.list()]
    assert project.datasets.get(dataset_name="notes").id == dataset.id


def test_items_all_returns_each_item_exactly_once(loaded):
    ids = [it.id for it in loaded["dataset"].items.list().all()]
    assert len(ids) == N_ITEMS and len(set(ids)) == N_ITEMS
    pages = loaded["dataset"].items.list(filters=dl.Filters(page_size=37))
    assert pages.items_count == N_ITEMS
    paged = [it.id for it in pages.all()]
    assert sorted(paged) == sorted(ids) and len(paged) == N_ITEMS


def test_item_metadata_system_describes_the_file(loaded):
    item = loaded["items"][0]
    system = item.metadata["system"]
    assert system["size"] == len(item.download(save_locally=False).read())
    assert system["mimetype"].startswith("text/")


def test_feature_sets_get_list_and_features(project, loaded):
    fs = loaded["feature_set"]
    assert project.feature_sets.get(feature_set_name="notes-vectors").id == fs.id
    assert project.feature_sets.get(feature_set_id=fs.id).size == SIZE
    assert fs.id in [s.id for s in project.feature_sets.list().all()]
    item = loaded["items"][3]
    own = list(item.features.list().all())
    assert len(own) == 1 and np.array_equal(np.float32(own[0].value), loaded["vectors"][item.id])
    vector_filter = dl.Filters(resource=dl.FiltersResource.FEATURE, field="entityId", values=item.id)
    found = list(fs.features.list(filters=vector_filter).all())
    assert [f.entity_id for f in found] == [item.id]
    assert fs.features.get(feature_id=found[0].id).entity_id == item.id


def test_single_feature_create_get_delete(project, loaded):
    fs = project.feature_sets.create(name="single", size=3, set_type="embeddings", entity_type=dl.FeatureEntityType.ITEM)
    item = loaded["items"][5]
    feature = fs.features.create(value=[0.5, 1.5, 2.5], entity=item)
    assert feature.entity_id == item.id and feature.value == [0.5, 1.5, 2.5]
    assert fs.features.delete(feature_id=feature.id)
    with pytest.raises(dl.exceptions.NotFound):
        fs.features.get(feature_id=feature.id)
    assert fs.delete()
    with pytest.raises(dl.exceptions.NotFound):
        project.feature_sets.get(feature_set_id=fs.id)


def test_knn_equals_brute_force(loaded):
    query = np.random.default_rng(1).normal(size=SIZE).astype(np.float32)
    k = 10
    filters = dl.Filters(custom_filter=knn_filter(query.tolist(), k, loaded["feature_set"].id),
                         resource=dl.FiltersResource.ITEM)
    results = loaded["dataset"].items.list(filters=filters)
    expected = [i for i, _ in brute_force(loaded["vectors"], query)[:k]]
    assert [it.id for it in results.items] == expected


def test_threshold_equals_brute_force(loaded):
    query = np.random.default_rng(2).normal(size=SIZE).astype(np.float32)
    ranked = brute_force(loaded["vectors"], query)
    radius = (ranked[40][1] + ranked[41][1]) / 2  # well away from any distance
    custom = knn_filter(query.tolist(), 1000, loaded["feature_set"].id, {"$lte": radius})
    results = loaded["dataset"].items.list(filters=dl.Filters(custom_filter=custom, resource=dl.FiltersResource.ITEM))
    assert [it.id for it in results.items] == [i for i, d in ranked if d <= radius]
    assert results.items_count == 41


def test_upload_and_download_bit_for_bit(loaded, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (21, 34, 3), dtype=np.uint8)).save(buf, "PNG")
    png = tmp_path / "noise.png"
    png.write_bytes(buf.getvalue())
    dataset = loaded["dataset"]
    item = dataset.items.upload(local_path=str(png), remote_path="/images")
    assert item.filename == "/images/noise.png"
    system = item.metadata["system"]
    assert (system["size"], system["width"], system["height"]) == (len(buf.getvalue()), 34, 21)
    assert dl.items.get(item_id=item.id).download(save_locally=False).read() == buf.getvalue()
    saved = item.download(local_path=str(tmp_path / "out"))
    assert open(saved, "rb").read() == buf.getvalue()
    item.delete()
    with pytest.raises(dl.exceptions.NotFound):
        dl.items.get(item_id=item.id)


def test_item_update_changes_metadata_and_hidden(loaded):
    item = dl.items.get(item_id=loaded["items"][7].id)
    item.metadata.setdefault("user", {})["label"] = "seven"
    updated = item.update()
    assert updated.metadata["user"]["label"] == "seven"
    assert dl.items.get(item_id=item.id).metadata["user"]["label"] == "seven"


def test_export_holds_the_vectors(loaded, tmp_path):
    path = loaded["dataset"].export(local_path=str(tmp_path / "export"), include_feature_vectors=True)
    records = json.loads(open(path).read())
    assert len(records) == N_ITEMS
    fs_id = loaded["feature_set"].id
    for rec in records:
        vectors = [v for v in rec["itemVectors"] if v["featureSetId"] == fs_id]
        assert len(vectors) == 1
        assert np.array_equal(np.float32(vectors[0]["value"]), loaded["vectors"][rec["id"]])


def test_request_without_token_gets_401(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": server.token}):
        r = requests.get(f"{server.url}/projects/{server.project_id}", headers=headers, timeout=10)
        assert r.status_code == 401 and "token" in r.json()["message"]
    assert requests.get(f"{server.url}/projects/{server.project_id}", headers=server.auth, timeout=10).ok


def test_paths_outside_the_workspace_get_404(server):
    outside = ["/items/..%2F..%2F..%2Fetc%2Fpasswd/stream", "/items/%2Fetc%2Fpasswd/stream",
               "/../../etc/passwd", "/items/../../server-token", "/catalog.db", "/blobs"]
    for path in outside:
        r = requests.get(server.url + path, headers=server.auth, timeout=10)
        assert r.status_code == 404, (path, r.status_code)
        assert "root:" not in r.text and server.token not in r.text
    with pytest.raises(dl.exceptions.NotFound):
        dl.items.get(item_id="../../catalog.db")


def test_bad_filter_gets_a_4xx_with_a_message(server, loaded):
    bad = dl.Filters(custom_filter={"filter": {"nosuchfield": {"$frobnicate": 1}}}, resource=dl.FiltersResource.ITEM)
    pages = loaded["dataset"].items.list(filters=bad)  # PagedEntities logs a 400 and yields nothing
    answer = dl.client_api.last_response
    assert pages.items_count == 0 and answer.status_code == 400
    assert "nosuchfield" in answer.json()["message"]
    r = requests.post(f"{server.url}/datasets/{loaded['dataset'].id}/query", headers=server.auth,
                      data=b"{not json", timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = requests.post(f"{server.url}/features/sets", headers=server.auth, json={"name": "x", "size": "big"}, timeout=10)
    assert r.status_code == 400 and "size" in r.json()["message"]


def test_token_is_kept_owner_only(server):
    assert (os.stat(server.workspace / "server-token").st_mode & 0o777) == 0o600


def test_dataset_create_rename_delete_and_feature_set_update(project):
    dataset = project.datasets.create(dataset_name="scratch")
    assert dl.datasets.get(dataset_id=dataset.id).name == "scratch"
    dataset.name = "scratch-renamed"
    dataset.update()
    assert dl.datasets.get(dataset_id=dataset.id).name == "scratch-renamed"
    assert dataset.delete(sure=True, really=True)
    with pytest.raises(dl.exceptions.NotFound):
        dl.datasets.get(dataset_id=dataset.id)
    fs = project.feature_sets.create(name="patched", size=2, set_type="embeddings", entity_type=dl.FeatureEntityType.ITEM)
    assert fs.update().id == fs.id
    fs.name = "renamed"
    fs.update()
    assert project.feature_sets.get(feature_set_id=fs.id).name == "renamed"
    fs.size = 3
    with pytest.raises(dl.exceptions.BadRequest):
        fs.update()  # the size cannot change: a 400 that says so, never a 5xx
    assert project.feature_sets.get(feature_set_name="renamed").size == 2
    fs.delete()


def test_feature_vectors_euclid_query_equals_brute_force(loaded):
    query = np.random.default_rng(4).normal(size=SIZE).astype(np.float32)
    fs = loaded["feature_set"]
    custom = {"filter": {"value": {"$euclid": {"input": query.tolist(), "$euclidSort": {"eu_dist": "ascending"}}},
                         "featureSetId": fs.id},
              "resource": "feature_vectors", "page": 0, "pageSize": 5}
    found = fs.features.list(filters=dl.Filters(custom_filter=custom, resource=dl.FiltersResource.FEATURE))
    assert [f.entity_id for f in found.items] == [i for i, _ in brute_force(loaded["vectors"], query)[:5]]


def test_bulk_update_and_delete_by_filter(project, tmp_path):
    dataset = project.datasets.create(dataset_name="bulk")
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(f"contents of {name}")
    list(dataset.items.upload(local_path=[str(tmp_path / n) for n in ("a.txt", "b.txt", "c.txt")]))
    assert dataset.items.update(filters=dl.Filters(field="name", values="a.txt"),
                                update_values={"tag": "first"}) is not None
    tagged = dataset.items.get(filepath="/a.txt")
    assert "first" in json.dumps(tagged.metadata)
    assert "first" not in json.dumps(dataset.items.get(filepath="/b.txt").metadata)
    assert dataset.items.delete(filters=dl.Filters(field="name", values=["a.txt", "b.txt"], operator=dl.FiltersOperations.IN))
    assert [it.name for it in dataset.items.list().all()] == ["c.txt"]
    dataset.delete(sure=True, really=True)
