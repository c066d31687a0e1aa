"""Chroma collections page: a real Chroma folder built with chromadb, listed, searched by id,
near-duplicates found, mapped with PCA and imported into a feature set; the folder is never
written."""
import json

import numpy as np
import pytest

from tests.pages.helpers import charts, ok, texts, wait_for_job, plotly_values
from tests.store.test_chroma_source import DOCS, brute_force, docs_data, folder_state

PAGE = "app_pages/collections.py"


@pytest.fixture
def their_chroma(tmp_path):
    import chromadb
    from chromadb.config import Settings

    folder = tmp_path / "their-chroma"
    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    ids, values, docs, metas = docs_data()
    client.create_collection("docs", metadata={"owner": "tests"}, embedding_function=None).add(
        ids=ids, embeddings=values, documents=docs, metadatas=metas)
    client.create_collection("empty", embedding_function=None)
    client.close()
    return folder


# The page's tables, in page order (AppTest does not expose a dataframe's key).
TABLES = ("collections:list", "collections:records", "collections:results", "collections:duplicates")


def _frame(at, key):
    return at.dataframe[TABLES.index(key)].value


def test_empty_location_explains(open_page):
    at = ok(open_page(PAGE))
    assert at.title[0].value == "Chroma collections"
    assert "Type the folder" in texts(at)
    at.text_input(key="collections:location").input("/no/such/chroma").run()
    assert "no such folder" in at.error[0].value


def test_list_search_map_and_import(open_page, app_ws, their_chroma):
    before = folder_state(their_chroma)
    at = ok(open_page(PAGE))
    at.text_input(key="collections:location").input(str(their_chroma)).run()
    ok(at)
    listed = _frame(at, "collections:list")
    assert listed["name"].tolist() == ["docs", "empty"] and listed["count"].tolist() == [DOCS, 0]
    assert json.loads(listed["metadata"][0]) == {"owner": "tests"}
    assert at.selectbox(key="collections:collection").value == "docs"
    records = _frame(at, "collections:records")
    ids, values, docs, _ = docs_data()
    assert sorted(records["id"]) == ids and set(records["document"]) == set(docs) and "topic" in records

    at.text_input(key="collections:query").input("doc-07").run()
    hits = _frame(ok(at), "collections:results")
    order, d = brute_force(values, values[7], 10)
    assert hits["id"].tolist() == [ids[i] for i in order] and np.allclose(hits["distance"], [d[i] for i in order])
    at.checkbox(key="collections:limit").check().run()
    at.number_input(key="collections:maxd").set_value(3.0).run()
    hits = _frame(ok(at), "collections:results")
    assert hits["id"].tolist() == [ids[i] for i in brute_force(values, values[7], 10, 3.0)[0]]

    at.slider(key="collections:dup-threshold:docs").set_value(0.01).run()
    groups = _frame(ok(at), "collections:duplicates")
    assert sorted(groups.groupby("group")["id"].apply(sorted).tolist()) == [["doc-04", "doc-05"], ["doc-08", "doc-09"]]
    assert "**2 groups** of near-duplicates, 4 records" in texts(at)
    assert len(charts(at)) == 1  # the histogram of nearest-neighbour distances

    at.radio(key="collections:method").set_value("pca").run()
    at.button(key="collections:project").click().run()
    spec = json.loads(charts(ok(at))[0].proto.spec)  # the map comes before the histogram
    points = [name for trace in spec["data"] for name in plotly_values(trace["hovertext"])]
    assert sorted(points) == ids  # the hover names each record by its id
    at.selectbox(key="collections:color").select("topic").run()
    spec = json.loads(charts(ok(at))[0].proto.spec)
    assert {t["name"] for t in spec["data"]} == {"a", "b"}

    at.text_input(key="collections:dataset").input("imported").run()
    at.button(key="collections:import").click().run()
    at = ok(wait_for_job(at, "collections:import"))
    assert "imported 30 vectors into docs-chroma, 30 new items in imported" in texts(at)
    fs = app_ws.feature_sets.get(feature_set_name="docs-chroma")
    assert fs.size == 8 and fs.count() == DOCS
    assert app_ws.datasets.get(dataset_name="imported").items.count() == DOCS

    at.selectbox(key="collections:collection").select("empty").run()
    assert "holds no records" in texts(ok(at))
    assert folder_state(their_chroma) == before
