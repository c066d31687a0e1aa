"""Map page: empty workspace, projecting a small set with PCA, the cache on a revisit,
colouring, hover names, and the selection reader."""
import json

import numpy as np
import pytest

from components.scatter import map_figure, selected_entity_ids
from tests.pages.helpers import charts, ok, texts, plotly_values

PAGE = "app_pages/map.py"


@pytest.fixture
def small(app_ws):
    """40 text items in two folders with 8-d vectors; the first ten have user.split metadata."""
    ds = app_ws.datasets.create("small")
    results = ds.items.upload([(f"{i}.txt", f"t{i}".encode()) for i in range(20)], dir="/a")
    results += ds.items.upload([(f"{i}.txt", f"t{i}".encode()) for i in range(20, 40)], dir="/b")
    for r in results[:10]:
        r.item.update(metadata={"user": {"split": "train"}})
    fs = app_ws.feature_sets.create(name="small-set", size=8)
    values = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    values[20:] += 5  # the /b folder sits apart
    app_ws.create_features(fs, values, [r.item.id for r in results])
    return {"ds": ds, "fs": fs, "items": [r.item for r in results]}


def _spec(at):
    return json.loads(charts(at)[0].proto.spec)


def _cache_files(ws):
    return sorted((ws.path / "cache" / "projections").rglob("*.npz"))


def test_empty_workspace(open_page):
    at = ok(open_page(PAGE))
    assert at.title[0].value == "Map"
    assert "No feature set yet" in texts(at)
    assert not charts(at)


def test_empty_set_warns(open_page, app_ws):
    app_ws.feature_sets.create(name="nothing", size=4)
    at = ok(open_page(PAGE))
    assert "has no vectors yet" in texts(at)
    assert not charts(at)


def test_project_with_pca_then_cache(open_page, small, app_ws):
    at = open_page(PAGE)
    assert not charts(at) and not _cache_files(app_ws)  # UMAP takes a while: it waits for a click
    assert "No map of **small-set**" in texts(ok(at)) and at.button(key="map:project")
    at.radio(key="map:method").set_value("pca").run()  # PCA is instant: drawn without a click
    ok(at)
    assert "No map of" not in texts(at) and all(b.key != "map:project" for b in at.button)
    spec = _spec(at)
    points = [(name, row) for trace in spec["data"] for name, row in zip(plotly_values(trace["hovertext"]), plotly_values(trace["customdata"]))]
    assert len(points) == 40
    assert {n for n, _ in points} == {f"{i}.txt" for i in range(40)}  # the hover shows each item's name
    assert sorted(r for _, r in points) == list(range(40))  # each point knows its row of the map's table
    assert all(t["type"] == "scattergl" for t in spec["data"])
    assert {t["name"] for t in spec["data"]} == {"small"}  # coloured by dataset by default
    assert "computed in" in texts(at)
    files = _cache_files(app_ws)
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns

    # A revisit (a new session) draws the map at once from the cache: no button to press.
    again = ok(open_page(PAGE))
    again.radio(key="map:method").set_value("pca").run()
    ok(again)
    assert all(b.key != "map:project" for b in again.button)
    assert "loaded from cache" in texts(again)
    assert len(charts(again)) == 1
    assert _cache_files(app_ws) == files and files[0].stat().st_mtime_ns == stamp

    # Colour by folder, then by a metadata field (items without it are "(none)").
    again.selectbox(key="map:color").select("dir").run()
    assert {t["name"] for t in _spec(ok(again))["data"]} == {"/a", "/b"}
    again.selectbox(key="map:color").select("metadata").run()
    again.text_input(key="map:field").input("user.split").run()
    assert {t["name"] for t in _spec(ok(again))["data"]} == {"train", "(none)"}

    # 3D: a scatter3d of the same points.
    again.radio(key="map:dims").set_value(3).run()
    spec = _spec(ok(again))
    assert all(t["type"] == "scatter3d" for t in spec["data"])
    assert all("z" in t for t in spec["data"]) and sum(len(plotly_values(t["hovertext"])) for t in spec["data"]) == 40
    assert len(_cache_files(app_ws)) == 2


def test_selection_reader_and_figure():
    import pandas as pd

    frame = pd.DataFrame({"entity_id": ["a", "b", "c"], "x": [0.0, 1, 2], "y": [0.0, 1, 2],
                          "name": ["A", None, "C"], "score": [1.0, 2.0, 3.0]})
    fig = map_figure(frame, "score")
    assert fig.data[0].type == "scattergl" and list(fig.data[0].hovertext) == ["A", "(none)", "C"]
    assert fig.data[0].marker.colorbar.title.text == "score"  # numbers get a continuous scale
    assert list(fig.data[0].marker.color) == [1.0, 2.0, 3.0]
    event = {"selection": {"points": [{"customdata": 2}, {"customdata": [0]}, {"customdata": 2}, {"customdata": 9}],
                           "point_indices": [2, 0], "box": [], "lasso": [{}]}}
    assert selected_entity_ids(event, frame) == ["c", "a"]  # rows of the frame; out of range ignored
    assert selected_entity_ids({"selection": {"points": []}}, frame) == []
    assert selected_entity_ids(None, frame) == []
    # Missing numbers are grey, not dropped; categories get a trace each, "(none)" last.
    frame.loc[1, "score"] = float("nan")
    fig = map_figure(frame, "score")
    assert [list(t.customdata) for t in fig.data] == [[0, 2], [1]] and fig.data[1].marker.color == "#bbbbbb"
    frame["kind"] = ["text", None, "image"]
    assert [t.name for t in map_figure(frame, "kind").data] == ["image", "text", "(none)"]


def test_colour_by_outlier_score(open_page, small, app_ws):
    at = open_page(PAGE)
    at.radio(key="map:method").set_value("pca").run()
    at.selectbox(key="map:color").select("distance to the 5th neighbour").run()
    spec = _spec(ok(at))
    trace = spec["data"][0]
    by_row = dict(zip(plotly_values(trace["customdata"]), plotly_values(trace["marker"]["color"])))
    from store.analysis.projection import cached_projection

    order = cached_projection(app_ws, small["fs"], method="pca", dims=2).entity_ids.tolist()  # the table's rows
    vectors = {f.entity_id: f.value.astype(np.float64) for f in small["fs"].features.list().all()}
    X = np.stack([vectors[e] for e in order])
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    want = np.sort(d, axis=1)[:, 4]  # the 5th nearest other point
    assert len(by_row) == 40
    assert all(score == pytest.approx(want[int(row)], rel=1e-5) for row, score in by_row.items())



def test_the_figure_is_kept_across_reruns_until_something_it_shows_changes(open_page, small, app_ws):
    import pandas as pd

    from components.scatter import kept_map_figure

    frame = pd.DataFrame({"entity_id": ["a", "b"], "x": [0.0, 1], "y": [0.0, 1], "name": ["A", "B"]})
    kept = kept_map_figure(frame, "key-1", None)
    assert kept_map_figure(frame, "key-1", None) is kept  # a rerun (a lasso) builds nothing
    assert kept_map_figure(frame, "key-2", None) is not kept

    # On the page, a change in the catalog reaches the map at the next rerun.
    at = open_page(PAGE)
    at.radio(key="map:method").set_value("pca").run()
    at.selectbox(key="map:color").select("metadata").run()
    at.text_input(key="map:field").input("user.split").run()
    assert {t["name"] for t in _spec(ok(at))["data"]} == {"train", "(none)"}
    small["items"][30].update(metadata={"user": {"split": "test"}})
    assert {t["name"] for t in _spec(ok(at.run()))["data"]} == {"train", "test", "(none)"}


def test_the_map_of_one_dataset_leaves_the_copies_of_a_saved_selection_out(open_page, small, app_ws):
    from store.io import save_selection

    copy = save_selection(app_ws, [i.id for i in small["items"][:10]], "small-copy").dataset
    at = open_page(PAGE)
    at.radio(key="map:method").set_value("pca").run()
    assert at.selectbox(key="map:scope").value == small["ds"].id
    names = {t["name"] for t in _spec(ok(at))["data"]}
    points = sum(len(plotly_values(t["customdata"])) for t in _spec(at)["data"])
    assert names == {"small"} and points == 40 and "40 points of small" in texts(at)
    at.selectbox(key="map:scope").select(copy.id).run()
    assert sum(len(plotly_values(t["customdata"])) for t in _spec(ok(at))["data"]) == 10
    assert {t["name"] for t in _spec(at)["data"]} == {"small-copy"}
    at.selectbox(key="map:scope").select("__all__").run()
    assert {t["name"] for t in _spec(ok(at))["data"]} == {"small", "small-copy"}  # coloured by dataset
    assert "50 points from 2 datasets" in texts(at)
    at.selectbox(key="map:color").select("distance to the 5th neighbour").run()
    assert len(charts(ok(at))) == 1


def test_a_projection_request_is_done_once(open_page, small, app_ws):
    """What "Show on map" and the Project button ask (components.scatter.request_projection);
    UMAP itself is left to the store tests: compiling its kernels takes minutes here."""
    at = open_page(PAGE)
    at.session_state["map:method"] = "pca"  # the method the user chose
    at.session_state["map:project-request"] = True
    at.run()
    assert len(charts(ok(at))) == 1 and "No map of" not in texts(at)
    assert "map:project-request" not in at.session_state  # asked once, done once


def test_a_large_map_is_a_density_image_with_its_lasso_answered_here(open_page, small, app_ws, monkeypatch):
    from components.scatter import large_selection, selected_regions

    monkeypatch.setenv("FEATURELAB_LARGE_MAP_ABOVE", "30")  # 40 points: large
    at = open_page(PAGE)
    at.radio(key="map:method").set_value("pca").run()
    spec = _spec(ok(at))
    assert spec["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    assert len(plotly_values(spec["data"][0]["customdata"])) == 40  # the sample: all of a small map
    assert "Drag on it to draw a lasso" in texts(at)
    at.selectbox(key="map:color").select("dir").run()
    legend = sorted(t["name"] for t in _spec(ok(at))["data"][1:])
    assert legend == ["/a (20)", "/b (20)"]
    at.radio(key="map:dims").set_value(3).run()  # 3D stays a plotly scatter
    assert all(t["type"] == "scatter3d" for t in _spec(ok(at))["data"])

    coords = np.array([[0, 0], [1, 1], [2, 2], [3, 0]], dtype=np.float32)
    polygon = {"x": [-0.5, 2.5, 2.5, -0.5], "y": [-0.5, -0.5, 1.5, 1.5]}
    lasso = {"selection": {"points": [], "box": [], "lasso": [polygon]}}
    assert large_selection(lasso, coords).tolist() == [0, 1]
    box = {"selection": {"points": [{"customdata": 0}], "box": [{"x": [3.5, 1.5], "y": [-1, 2.5]}], "lasso": []}}
    assert large_selection(box, coords).tolist() == [2, 3]  # the box, over every point, not the clicked sample
    assert large_selection({"selection": {"points": [{"customdata": [3]}, {"customdata": 9}]}}, coords).tolist() == [3]
    assert large_selection(None, coords).tolist() == []
    # A lasso around no point: a region drawn (the page says "Nothing selected"), no rows.
    empty = {"selection": {"points": [], "box": [], "lasso": [{"x": [5, 6, 6], "y": [5, 5, 6]}]}}
    assert large_selection(empty, coords).tolist() == [] and len(selected_regions(empty)) == 1
    assert selected_regions(None) == [] and selected_regions({"selection": {"points": [{"customdata": 1}]}}) == []
