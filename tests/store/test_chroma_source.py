"""An existing Chroma (a folder built here with chromadb, and a real `chroma run` server),
opened read-only: listed, loaded bit for bit, searched exactly (= NumPy brute force), mapped,
imported into a feature set; and the folder is never written."""
import hashlib
import json
import os
import uuid
from urllib.parse import urlparse

import numpy as np
import pytest

from store import FeaturelabError, InvalidInput, NotFound
from store.io.chroma_source import LoadedCollection, import_collection, open_source, source_signature
from store.search.filters import Filters

DOCS = 30


def docs_data():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(DOCS, 8)).astype(np.float32)
    values[5] = values[4]  # an exact duplicate
    values[9] = values[8] + np.float32(1e-3)  # a near one
    ids = [f"doc-{i:02d}" for i in range(DOCS)]
    docs = [f"document number {i}" for i in range(DOCS)]
    metas = [{"topic": "ab"[i % 2], "n": i, "score": i / 7} for i in range(DOCS)]
    return ids, values, docs, metas


def _bare_data():
    values = np.random.default_rng(3).normal(size=(12, 5)).astype(np.float32)
    return [f"v{i}" for i in range(12)], values


def _fill(client):
    ids, values, docs, metas = docs_data()
    docs_col = client.create_collection("docs", metadata={"owner": "tests"}, embedding_function=None)
    docs_col.add(ids=ids, embeddings=values, documents=docs, metadatas=metas)
    bare_ids, bare = _bare_data()
    client.create_collection("bare", embedding_function=None).add(ids=bare_ids, embeddings=bare)
    client.create_collection("empty", embedding_function=None)


@pytest.fixture
def chroma_folder(tmp_path):
    """A Chroma folder with three collections, written by chromadb itself and closed."""
    import chromadb
    from chromadb.config import Settings

    folder = tmp_path / "their-chroma"
    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    _fill(client)
    client.close()
    return folder


@pytest.fixture
def their_server(chroma_server):
    """The session's server, with this test's collections in a database of their own."""
    import chromadb
    from chromadb.config import Settings

    parsed = urlparse(chroma_server)
    database = f"t{uuid.uuid4().hex[:10]}"
    admin = chromadb.AdminClient(Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI",
                                          chroma_server_host=parsed.hostname, chroma_server_http_port=parsed.port,
                                          anonymized_telemetry=False))
    admin.create_database(database)
    _fill(chromadb.HttpClient(host=parsed.hostname, port=parsed.port, database=database,
                              settings=Settings(anonymized_telemetry=False)))
    return f"{chroma_server}/?database={database}"


def folder_state(folder):
    """Every file under the folder: its bytes' hash, size and modification time."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = (hashlib.sha256(fh.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def brute_force(values, query, k=None, max_distance=None):
    d = np.sqrt(((values.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1))
    order = sorted(range(len(d)), key=lambda i: (d[i], i))
    if max_distance is not None:
        order = [i for i in order if d[i] <= max_distance]
    return order[:k] if k else order, d


def test_folder_is_never_written(chroma_folder):
    before = folder_state(chroma_folder)
    signature = source_signature(chroma_folder)
    with open_source(chroma_folder) as source:
        snapshot = source.snapshot
        assert snapshot.is_dir() and chroma_folder not in snapshot.parents
        for info in source.collections():
            col = source.load(info.name)
            if len(col):
                col.search(col.ids[0], k=3)
                col.project(method="pca")
    assert not snapshot.exists()  # the private copy went with close()
    assert folder_state(chroma_folder) == before
    assert source_signature(chroma_folder) == signature


def test_lists_and_loads_a_folder_bit_for_bit(chroma_folder):
    progress = []
    with open_source(str(chroma_folder)) as source:
        assert source.kind == "folder"
        infos = {i.name: i for i in source.collections()}
        docs = source.load("docs", page_size=7, progress=lambda d, t: progress.append((d, t)))
        bare = source.load("bare")
        empty = source.load("empty")
        with pytest.raises(NotFound, match="no collection 'nope'"):
            source.load("nope")
    with pytest.raises(InvalidInput, match="closed"):
        source.collections()
    assert [(i.name, i.count, i.dimension) for i in infos.values()] == [("bare", 12, 5), ("docs", DOCS, 8),
                                                                        ("empty", 0, None)]
    assert infos["docs"].metadata == {"owner": "tests"}
    assert progress[-1] == (DOCS, DOCS) and len(progress) == 5  # pages of 7

    ids, values, texts, metas = docs_data()
    row = {rid: i for i, rid in enumerate(ids)}
    assert sorted(docs.ids) == ids and docs.values.dtype == np.float32
    for i, rid in enumerate(docs.ids):
        assert docs.values[i].tobytes() == values[row[rid]].tobytes()
        assert docs.documents[i] == texts[row[rid]] and docs.metadatas[i] == metas[row[rid]]
    bare_ids, bare_values = _bare_data()
    assert bare.documents == [None] * 12 and bare.metadatas == [None] * 12
    assert np.array_equal(bare.values[np.argsort(bare.ids)], bare_values[np.argsort(bare_ids)])
    assert len(empty) == 0 and empty.search([0.0], k=3) == []

    table = docs.table()
    assert list(table.columns[:2]) == ["id", "document"] and set(table.columns[2:]) == {"topic", "n", "score"}
    assert len(table) == DOCS and table["n"].tolist() == [m["n"] for m in docs.metadatas]


def test_exact_search_equals_brute_force(chroma_folder):
    with open_source(chroma_folder) as source:
        col = source.load("docs")
    rng = np.random.default_rng(1)
    for query in [col.ids[0], col.ids[17], "doc-04", *rng.normal(size=(3, 8))]:
        # A given vector is searched as float32, as the workspace's own search does.
        vec = col.values[col.row(query)] if isinstance(query, str) else query.astype(np.float32)
        for k, max_distance in [(5, None), (None, 3.0), (4, 2.5), (DOCS, None)]:
            hits = col.search(query if isinstance(query, str) else query.tolist(), k=k, max_distance=max_distance)
            order, d = brute_force(col.values, vec, k, max_distance)
            assert [h.id for h in hits] == [col.ids[i] for i in order]
            assert [h.distance for h in hits] == [d[i] for i in order]
    first = col.search("doc-04", k=2)
    assert {h.id for h in first} == {"doc-04", "doc-05"} and [h.distance for h in first] == [0.0, 0.0]
    assert first[0].document.startswith("document number") and first[0].metadata["topic"] == "a"
    frame = col.hits_table(first)
    assert list(frame.columns[:4]) == ["rank", "distance", "id", "document"]
    for bad, message in [({"k": 0}, "k must"), ({"max_distance": -1.0}, "max_distance"),
                         ({"max_distance": float("nan")}, "max_distance")]:
        with pytest.raises(InvalidInput, match=message):
            col.search("doc-01", **bad)
    with pytest.raises(InvalidInput, match="size 3"):
        col.search([1.0, 2.0, 3.0])
    with pytest.raises(NotFound, match="no record"):
        col.search("doc-99")


def test_map_reuses_the_projection_pipeline(chroma_folder):
    from store.analysis.projection import pca_coords

    with open_source(chroma_folder) as source:
        col = source.load("docs")
    stages = []
    coords = col.project(method="pca", dims=3, progress=lambda s, f: stages.append(s))
    assert coords.shape == (DOCS, 3) and np.array_equal(coords, pca_coords(col.values, 3))
    assert stages[-1] == "done" and col.project(method="pca", dims=3) is coords  # kept per parameters
    frame = col.map_frame(col.project(method="pca"))
    assert list(frame.columns[:5]) == ["entity_id", "x", "y", "name", "document"]
    assert frame["entity_id"].tolist() == col.ids and "topic" in frame
    with pytest.raises(InvalidInput, match="method"):
        col.project(method="tsne")


def _brute_groups(values, t):
    """Connected components of 'distance <= t' by float64 brute force, as lists of rows."""
    from scipy.sparse.csgraph import connected_components

    x = values.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    _, labels = connected_components(d <= t, directed=False)
    groups = [np.flatnonzero(labels == lab).tolist() for lab in np.unique(labels)]
    return sorted([g for g in groups if len(g) > 1], key=lambda g: (-len(g), g[0]))


def test_near_duplicates_equal_brute_force(chroma_folder):
    with open_source(chroma_folder) as source:
        col = source.load("docs")
    assert sorted(map(sorted, col.near_duplicates(0.01))) == [["doc-04", "doc-05"], ["doc-08", "doc-09"]]
    assert col.near_duplicates(0.0) == [sorted(["doc-04", "doc-05"], key=col.ids.index)]
    for t in (0.5, 1.5, 2.5, 4.0):
        assert col.near_duplicates(t) == [[col.ids[r] for r in g] for g in _brute_groups(col.values, t)]
    nn = col.nearest_neighbor_distances()
    x = col.values.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    assert np.array_equal(nn, d.min(axis=1)) and nn[col.row("doc-04")] == 0.0


def test_import_into_a_feature_set(ws, chroma_folder):
    with open_source(chroma_folder) as source:
        docs, bare = source.load("docs"), source.load("bare")
    progress = []
    result = import_collection(ws, docs, "from-chroma", "docs-vectors", dir="/docs",
                               progress=lambda d, t: progress.append((d, t)))
    assert (result.added, result.reused, result.vectors) == (DOCS, 0, DOCS) and progress[-1] == (DOCS, DOCS)
    fs = result.feature_set
    assert (fs.name, fs.size, fs.entity_type, fs.count()) == ("docs-vectors", 8, "item", DOCS)
    items = {i.name: i for i in result.dataset.items.list().all()}
    assert set(items) == {f"{rid}.txt" for rid in docs.ids}
    for i, rid in enumerate(docs.ids):
        item = items[f"{rid}.txt"]
        assert item.dir == "/docs" and item.kind == "text" and item.text() == docs.documents[i]
        assert item.metadata["user"] == docs.metadatas[i]
        assert item.metadata["chroma"] == {"collection": "docs", "id": rid, "source": docs.location}
        assert item.features.list().items[0].value.tobytes() == docs.values[i].tobytes()

    # Searching the feature set gives what searching the collection gave.
    query = docs.values[docs.row("doc-11")]
    f = Filters()
    f.add_euclid(fs, query.tolist(), k=6)
    found = [(h.metadata["chroma"]["id"], h.distance) for h in ws.search(f).items]
    assert found == [(h.id, h.distance) for h in docs.search("doc-11", k=6)]
    f = Filters()
    f.add("metadata.user.topic", "b")
    assert ws.datasets.get(dataset_name="from-chroma").items.list(filters=f).items_count == DOCS // 2

    again = import_collection(ws, docs, "from-chroma", "docs-vectors", dir="/docs")
    assert (again.added, again.reused) == (0, DOCS) and result.dataset.items.count() == DOCS and fs.count() == DOCS

    # Records without documents: items named by the id, holding id and metadata as JSON.
    plain = import_collection(ws, bare, "from-chroma", "bare-vectors")
    item = next(i for i in plain.dataset.items.list().all() if i.name == "v3.json")
    assert json.loads(item.text()) == {"id": "v3", "metadata": {}} and item.metadata["user"] == {}
    assert item.features.list().items[0].value.tobytes() == bare.values[bare.row("v3")].tobytes()
    assert ws.check_index(plain.feature_set.id)["ok"]


def test_import_refusals_write_nothing(ws_embedded, chroma_folder):
    ws = ws_embedded
    with open_source(chroma_folder) as source:
        docs = source.load("docs")
    ws.feature_sets.create(name="small", size=3)
    with pytest.raises(InvalidInput, match="size 3"):
        import_collection(ws, docs, "d", "small")
    broken = LoadedCollection("broken", "x", ["a", "b"], np.array([[1, 2], [np.nan, 1]], dtype=np.float32),
                              ["x", "y"], [None, None])
    with pytest.raises(InvalidInput, match="NaN"):
        import_collection(ws, broken, "d", "new-set")
    empty = LoadedCollection("e", "x", [], np.zeros((0, 4), dtype=np.float32), [], [])
    with pytest.raises(InvalidInput, match="no records"):
        import_collection(ws, empty, "d", "new-set")
    assert ws.datasets.list() == [] and [s.name for s in ws.feature_sets.list()] == ["small"]


def test_a_server_read_only(their_server):
    with open_source(their_server) as source:
        assert source.kind == "server" and source.snapshot is None
        infos = source.collections()
        assert [(i.name, i.count, i.dimension) for i in infos] == [("bare", 12, 5), ("docs", DOCS, 8), ("empty", 0, None)]
        col = source.load("docs", page_size=8)
        assert [i.count for i in source.collections()] == [12, DOCS, 0]
    ids, values, _, _ = docs_data()
    assert sorted(col.ids) == ids
    order, d = brute_force(col.values, values[3], 5)
    assert [h.id for h in col.search("doc-03", k=5)] == [col.ids[i] for i in order]


def test_opening_refusals(tmp_path):
    with pytest.raises(NotFound, match="no such folder"):
        open_source(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidInput, match="not a Chroma folder"):
        open_source(tmp_path / "plain")
    assert list((tmp_path / "plain").iterdir()) == []  # nothing created there
    with pytest.raises(InvalidInput, match="give a Chroma folder"):
        open_source("  ")
    with pytest.raises(FeaturelabError, match="cannot reach"):
        open_source("http://127.0.0.1:9")


def test_cli_lists_searches_and_imports(run_cli, chroma_folder, tmp_path):
    before = folder_state(chroma_folder)
    listed = run_cli("collections", "--path", str(chroma_folder)).stdout.splitlines()
    assert [ln.split()[0] for ln in listed] == ["bare", "docs", "empty"]
    assert "count=30  dimension=8" in listed[1] and '"owner": "tests"' in listed[1]
    as_json = [json.loads(ln) for ln in run_cli("collections", "--path", str(chroma_folder), "--json").stdout.splitlines()]
    assert as_json[1]["count"] == DOCS and as_json[1]["dimension"] == 8

    hits = [json.loads(ln) for ln in run_cli("collection-search", "--path", str(chroma_folder), "--collection", "docs",
                                             "--id", "doc-04", "--k", "3").stdout.splitlines()]
    ids, values, _, _ = docs_data()
    order, d = brute_force(values, values[4], 3)
    assert [h["id"] for h in hits] == [ids[i] for i in order] and [h["distance"] for h in hits] == [d[i] for i in order]
    assert hits[0]["metadata"]["n"] in (4, 5) and hits[0]["document"].startswith("document number")
    vector = json.dumps(values[0].tolist())
    within = run_cli("collection-search", "--path", str(chroma_folder), "-c", "docs", "--vector", vector,
                     "--k", "30", "--max-distance", "3.5").stdout.splitlines()
    assert len(within) == len(brute_force(values, values[0], None, 3.5)[0])

    out = run_cli("collection-import", "--path", str(chroma_folder), "--collection", "docs", "--dataset", "c",
                  "--feature-set", "c-vec").stdout
    assert "imported 30 vectors into c-vec, 30 new items in c" in out
    assert folder_state(chroma_folder) == before

    groups = [json.loads(ln) for ln in run_cli("collection-duplicates", "--path", str(chroma_folder), "-c", "docs",
                                               "--max-distance", "0.01").stdout.splitlines()]
    assert sorted(sorted(g["ids"]) for g in groups) == [["doc-04", "doc-05"], ["doc-08", "doc-09"]]

    bad = run_cli("collection-search", "--path", str(chroma_folder), "-c", "docs", "--id", "nope", ok=False)
    assert bad.returncode == 2 and "no record 'nope'" in bad.stderr
