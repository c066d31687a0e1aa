"""Search page: by item, by pasted vector or feature id, k and max distance, item filters,
gallery + table + CSV, "more like this", and the filter JSON box."""
import json

import numpy as np
import pytest

from tests.pages.helpers import charts, ok, png, texts, plotly_values

VECTORS = {"origin.png": [0, 0, 0], "x1.png": [1, 0, 0], "y2.txt": [0, 2, 0], "z3.txt": [0, 0, 3]}


@pytest.fixture
def space(app_ws):
    """A dataset of four items with known 3-d vectors; z3 is hidden, y2 has metadata."""
    ds = app_ws.datasets.create("space")
    files = [("origin.png", png((10, 10, 10))), ("x1.png", png((200, 0, 0))),
             ("y2.txt", b"the y axis"), ("z3.txt", b"the z axis")]
    items = {r.item.name: r.item for r in ds.items.upload(files, dir="/pts")}
    items["y2.txt"].update(metadata={"user": {"axis": "y", "n": 2}})
    items["z3.txt"].update(hidden=True)
    fs = app_ws.feature_sets.create(name="points", size=3)
    feats = fs.features.create_many(np.array([VECTORS[n] for n in items], np.float32), list(items.values()))
    return {"ds": ds, "items": items, "fs": fs, "features": {n: f for n, f in zip(items, feats)}}


def _table(at):
    frame = at.dataframe[0].value
    return list(zip(frame["name"], frame["distance"].round(6)))


def _by_vector(at, text):
    at.radio(key="search:mode").set_value("Vector or feature id").run()
    at.text_area(key="search:vector").input(text)
    return at.run()


def test_vector_search_shows_gallery_table_and_csv(open_page, space):
    at = ok(_by_vector(open_page("app_pages/search.py"), "0.9, 0.1, 0"))
    # Hidden items are left out by default (the seed's {"hidden": false}).
    assert [n for n, _ in _table(at)] == ["x1.png", "origin.png", "y2.txt"]
    d = _table(at)[0][1]
    assert d == pytest.approx(np.sqrt(0.01 + 0.01), abs=1e-6)  # true Euclidean, not squared
    captions = [c for img in at.image for c in img.captions]
    assert captions[0] == "/pts/x1.png · d=0.1414"
    assert any("the y axis" in t.value for t in at.text)  # a text item shows a snippet
    csv = at.download_button(key="search:results:csv")
    assert csv.label == "Download as CSV"
    assert not at.code  # the query's JSON is drawn only once its expander is opened
    at.session_state["search:json-open"] = True  # what a click on the expander does
    shown = json.loads(at.run().code[0].value)
    assert shown["join"]["on"]["forigen"] == "id"
    assert shown["join"]["filter"]["featureSetId"] == space["fs"].id


def test_k_and_max_distance_and_filters(open_page, space):
    at = _by_vector(open_page("app_pages/search.py"), "[0, 0, 0]")
    at.number_input(key="search:k").set_value(2).run()
    assert [n for n, _ in _table(ok(at))] == ["origin.png", "x1.png"]
    at.number_input(key="search:k").set_value(10).run()
    at.selectbox(key="search:filters:hidden").select("Both").run()
    assert [n for n, _ in _table(at)] == ["origin.png", "x1.png", "y2.txt", "z3.txt"]
    maxd = next(s for s in at.slider if s.key.startswith("search:maxd:"))
    maxd.set_value(2.0).run()
    assert [n for n, _ in _table(ok(at))] == ["origin.png", "x1.png", "y2.txt"]
    at.session_state["search:json-open"] = True
    assert json.loads(at.run().code[0].value)["join"]["filter"]["value"]["$euclid"]["$euclidFilter"] == {"$lte": 2.0}
    at.selectbox(key="search:filters:hidden").select("Hidden only").run()
    assert "Nothing matched" in texts(at)
    at.selectbox(key="search:filters:hidden").select("Both")
    maxd = next(s for s in at.slider if s.key.startswith("search:maxd:"))
    maxd.set_value(maxd.max).run()
    at.text_input(key="search:filters:meta-field").input("user.axis")
    at.text_input(key="search:filters:meta-value").input("y").run()
    assert [n for n, _ in _table(ok(at))] == ["y2.txt"]
    at.selectbox(key="search:filters:meta-op").select("$gte")
    at.text_input(key="search:filters:meta-field").input("user.n")
    at.text_input(key="search:filters:meta-value").input("3").run()
    assert "Nothing matched" in texts(ok(at))
    at.text_input(key="search:filters:meta-field").input("")
    at.text_input(key="search:filters:folder").input("/elsewhere").run()
    assert "Nothing matched" in texts(ok(at))
    at.text_input(key="search:filters:folder").input("/pts").run()
    assert len(_table(ok(at))) == 4


def test_by_feature_id_by_item_and_more_like_this(open_page, space):
    at = ok(_by_vector(open_page("app_pages/search.py"), space["features"]["y2.txt"].id))
    assert _table(at)[0] == ("y2.txt", 0.0)

    at.radio(key="search:mode").set_value("Item").run()
    at.selectbox(key="search:item").select(space["items"]["x1.png"].id).run()
    assert _table(ok(at))[0] == ("x1.png", 0.0)
    # "More like this" on the third result searches again from it.
    third = _table(at)[2][0]
    at.button(key="search:results:more:2").click().run()
    ok(at)
    assert at.radio(key="search:mode").value == "Item"
    assert at.selectbox(key="search:item").value == space["items"][third].id
    assert _table(at)[0] == (third, 0.0)


def test_the_seed_filter_json_runs_and_bad_input_is_a_plain_error(open_page, space):
    at = ok(open_page("app_pages/search.py"))
    seed = {
        "filter": {"$and": [{"hidden": False}, {"type": "file"}]},
        "page": 0, "pageSize": 2, "resource": "items",
        "join": {"on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},
                 "filter": {"value": {"$euclid": {"input": [0, 1.9, 0], "$euclidSort": {"eu_dist": "ascending"}}},
                            "featureSetId": space["fs"].id}},
    }
    at.text_area(key="search:json").input(json.dumps(seed))
    at.button(key="search:run-json").click().run()
    ok(at)
    assert "Showing the results of your filter JSON" in texts(at)
    assert _table(at) == [("y2.txt", 0.1), ("origin.png", 1.9)]

    seed["join"]["filter"]["value"]["$euclid"]["$euclidFilter"] = {"$near": 1}
    at.text_area(key="search:json").input(json.dumps(seed))
    at.button(key="search:run-json").click().run()
    assert not at.exception
    assert "$euclidFilter" in at.error[0].value and "$near" in at.error[0].value

    at.text_area(key="search:json").input('{"filter": {"hidden": fals')
    at.button(key="search:run-json").click().run()
    assert not at.exception and "not valid JSON" in at.error[0].value

    at.button(key="search:clear-json").click().run()
    assert "search:custom" not in at.session_state


def test_bad_vector_and_empty_workspace_say_what_to_do(open_page, space):
    at = _by_vector(open_page("app_pages/search.py"), "1, 2")
    assert not at.exception and "size 2" in at.error[0].value and "size 3" in at.error[0].value
    at.text_area(key="search:vector").input("no-such-feature").run()
    assert not at.exception and "no feature vector with id 'no-such-feature'" in at.error[0].value


def test_empty_workspace(open_page):
    at = ok(open_page("app_pages/search.py"))
    assert "No feature set yet" in texts(at)


def test_text_search_with_minilm_finds_the_expected_first(open_page, app_ws):
    from store.embedders.job import create_feature_set, embed_dataset

    ds = app_ws.datasets.create("notes")
    ds.items.upload([("cat.txt", b"a cat sleeps on the sofa"), ("bread.txt", b"how to bake a loaf of bread"),
                     ("market.txt", b"stock prices fell sharply today"), ("goal.txt", b"the striker scored a goal")])
    fs = create_feature_set(app_ws, "notes-minilm", "all-MiniLM-L6-v2")
    assert embed_dataset(app_ws, ds, fs).embedded == 4
    at = ok(open_page("app_pages/search.py"))
    at.text_input(key="search:text").input("baking bread at home").run()
    ok(at)
    assert [n for n, _ in _table(at)][0] == "bread.txt"
    at.text_input(key="search:text").input("football match").run()
    assert [n for n, _ in _table(ok(at))][0] == "goal.txt"


def test_image_search_by_a_dropped_image(open_page, app_ws, tiny_clip_model):
    from store.embedders.job import create_feature_set, embed_dataset

    ds = app_ws.datasets.create("colours")
    images = {"red.png": png((230, 10, 10)), "green.png": png((10, 200, 20)), "blue.png": png((10, 20, 230))}
    ds.items.upload(list(images.items()))
    fs = create_feature_set(app_ws, "tiny-clip", tiny_clip_model)
    assert embed_dataset(app_ws, ds, fs).embedded == 3
    at = ok(open_page("app_pages/search.py"))
    at.radio(key="search:mode").set_value("Image").run()
    at.file_uploader(key="search:image").set_value(("query.png", images["green.png"], "image/png")).run()
    ok(at)
    first, distance = _table(at)[0]
    assert first == "green.png" and distance == pytest.approx(0, abs=1e-5)

    # A set without a model cannot take an image: a plain message says what to do.
    plain = app_ws.feature_sets.create(name="plain", size=3)
    at.run()
    at.selectbox(key="search:set").select(plain.id).run()
    assert not at.exception and "no model to turn an image into a vector" in at.error[0].value


def test_distance_histogram_and_show_on_map(open_page, space):
    at = ok(_by_vector(open_page("app_pages/search.py"), "[0, 0, 0]"))
    at.number_input(key="search:k").set_value(2).run()
    spec = json.loads(charts(at)[0].proto.spec)
    bars = spec["data"][0]
    assert sum(bars["y"]) == 3  # every vector the item filters let through: the hidden z3 is left out
    xs = sorted(s["x0"] for s in spec["layout"]["shapes"])
    assert xs == [pytest.approx(1.0)]  # the k-th (2nd) result is x1 at distance 1; no distance limit set
    last = at.session_state["search:last"]
    assert last["set_id"] == space["fs"].id and last["results"] == [space["items"][n].id for n in ("origin.png", "x1.png")]

    at.session_state["_kept:map:method"] = "pca"  # chosen on an earlier visit to the map (UMAP compiles for minutes here)
    at.button(key="search:show-on-map").click().run()
    ok(at)
    assert at.title[0].value == "Map"
    assert len(charts(at)) == 1 and "No map of" not in texts(at)  # projected on arrival: no button to press
    at.switch_page("app_pages/map.py")  # AppTest's later runs return to the page it was told, not the switched one
    at.run()
    assert at.selectbox(key="map:color").value == "distance"
    spec = json.loads(charts(ok(at))[0].proto.spec)
    # The legend (rings, query) sits in a row above the plot; the colour bar stands at its right.
    legend = spec["layout"]["legend"]
    assert legend["orientation"] == "h" and legend["y"] >= 1 and legend["yanchor"] == "bottom"
    bar = spec["data"][0]["marker"]["colorbar"]
    assert bar.get("orientation", "v") == "v" and bar.get("x", 1.02) >= 1 and bar.get("y", 0.5) <= 1
    by_name = dict(zip(plotly_values(spec["data"][0]["hovertext"]), plotly_values(spec["data"][0]["marker"]["color"])))
    assert by_name["z3.txt"] == pytest.approx(3.0) and by_name["origin.png"] == pytest.approx(0.0)
    ringed = next(t for t in spec["data"] if t.get("name") == "search results")
    assert sorted(plotly_values(ringed["hovertext"])) == ["origin.png", "x1.png"]


def test_results_saved_as_a_dataset(open_page, space, app_ws):
    at = ok(_by_vector(open_page("app_pages/search.py"), "[0, 0, 0]"))
    at.number_input(key="search:k").set_value(2).run()
    at.text_input(key="search:selected:save-name").input("nearest-two").run()
    at.button(key="search:selected:save").click().run()
    assert "Saved 2 items with 0 annotations and 2 in points to nearest-two." in texts(ok(at))
    copies = {i.name: i for i in app_ws.datasets.get("nearest-two").items.list().all()}
    assert sorted(copies) == ["origin.png", "x1.png"]
    assert copies["x1.png"].download() == space["items"]["x1.png"].download()
    assert copies["x1.png"].features.list().items[0].value.tolist() == [1, 0, 0]
    at.button(key="search:selected:save").click().run()  # the name is taken now: a plain message
    assert any("already exists" in e.value for e in at.error)


def test_a_saved_selection_does_not_double_the_hits_of_a_scoped_search(open_page, app_ws, space):
    from store.io import save_selection

    copy = save_selection(app_ws, [i.id for i in space["items"].values()], "space-copy").dataset
    at = ok(_by_vector(open_page("app_pages/search.py"), "0.9, 0.1, 0"))
    scope = at.selectbox(key="search:scope")
    assert scope.label == "Search in" and scope.value == space["ds"].id  # the first dataset with vectors
    assert [n for n, _ in _table(at)] == ["x1.png", "origin.png", "y2.txt"]  # once each
    assert set(at.dataframe[0].value["dataset"]) == {"space"}
    hist = json.loads(charts(at)[0].proto.spec)
    assert sum(plotly_values(hist["data"][0]["y"])) == 3  # the scope's visible vectors only

    scope.select("__all__").run()  # "All datasets": every copy, and where each comes from
    assert [n for n, _ in _table(ok(at))] == ["x1.png", "x1.png", "origin.png", "origin.png", "y2.txt", "y2.txt"]
    assert "From space (3), space-copy (3)" in texts(at)
    captions = [c for img in at.image for c in img.captions]  # each thumbnail names its dataset
    assert sorted(captions[:2]) == ["/pts/x1.png · d=0.1414 · space", "/pts/x1.png · d=0.1414 · space-copy"]
    assert sum(plotly_values(json.loads(charts(at)[0].proto.spec)["data"][0]["y"])) == 6
    at.selectbox(key="search:scope").select(copy.id).run()
    assert set(ok(at).dataframe[0].value["dataset"]) == {"space-copy"} and len(at.dataframe[0].value) == 3
    assert [c for img in at.image for c in img.captions][0] == "/pts/x1.png · d=0.1414"  # one dataset: not said
    assert at.session_state["dataset:current"] == copy.id  # the dataset being worked on, for every page


def test_a_refused_vector_is_said_as_a_vector_not_a_missing_feature(open_page, space):
    at = _by_vector(open_page("app_pages/search.py"), "1,2,,3,nan")
    assert not at.exception and len(at.error) == 1
    assert "entry 3 of the vector is empty" in at.error[0].value and "feature" not in at.error[0].value
    at.text_area(key="search:vector").input("1, 2, nan").run()
    assert "entry 3 of the vector is 'nan'" in at.error[0].value
    assert at.number_input(key="search:k").value == 12  # the rest of the form stays


def test_the_histogram_counts_what_the_filters_let_through_and_stays_when_nothing_is_near(open_page, space):
    at = _by_vector(open_page("app_pages/search.py"), "[0, 0, 0]")
    at.text_input(key="search:filters:folder").input("/pts").run()
    at.selectbox(key="search:filters:hidden").select("Both").run()
    assert sum(json.loads(charts(ok(at))[0].proto.spec)["data"][0]["y"]) == 4
    at.text_input(key="search:filters:meta-field").input("user.axis")
    at.text_input(key="search:filters:meta-value").input("y").run()
    spec = json.loads(charts(ok(at))[0].proto.spec)
    assert sum(spec["data"][0]["y"]) == 1  # only y2 passes the metadata filter
    at.text_input(key="search:filters:meta-field").input("").run()
    at.text_area(key="search:vector").input("[5, 5, 5]").run()
    maxd = next(s for s in at.slider if s.key.startswith("search:maxd:"))
    maxd.set_value(1.5).run()  # every vector is at least 5.4 away
    assert "Nothing matched" in texts(ok(at))
    spec = json.loads(charts(at)[0].proto.spec)
    assert sum(spec["data"][0]["y"]) == 4  # the histogram is still drawn, over every vector that passes
    lines = [s for s in spec["layout"]["shapes"] if s["type"] == "line"]
    assert [round(s["x0"], 6) for s in lines] == [1.5]  # the cut, and no k-th result line
    assert spec["layout"]["xaxis"]["range"][0] <= 1.5 <= spec["layout"]["xaxis"]["range"][1]


@pytest.fixture
def many(app_ws):
    """1,200 text items on a line: item i at distance i from the origin."""
    ds = app_ws.datasets.create("line")
    items = [r.item for r in ds.items.upload([(f"p{i:04d}.txt", f"point {i}".encode()) for i in range(1200)])]
    fs = app_ws.feature_sets.create(name="line-set", size=2)
    by_name = {i.name: i for i in items}
    order = [by_name[f"p{i:04d}.txt"] for i in range(1200)]
    fs.features.create_many(np.array([[i, 0] for i in range(1200)], np.float32), order)
    return {"fs": fs, "items": order}


def test_paging_through_a_thousand_results(open_page, many):
    at = _by_vector(open_page("app_pages/search.py"), "0, 0")
    at.number_input(key="search:k").set_value(1000).run()
    at.select_slider(key="search:per").set_value(100).run()
    assert "1,000 results of 1,200" in [s.value for s in ok(at).subheader]
    assert "Showing 1–100 of 1,000" in texts(at)
    frame = at.dataframe[0].value
    assert len(frame) == 100 and list(frame["rank"])[:2] == [1, 2] and list(frame["name"])[0] == "p0000.txt"
    at.button(key="search:results:next").click().run()
    assert "Showing 101–200 of 1,000" in texts(ok(at))
    frame = at.dataframe[0].value
    assert list(frame["rank"]) == list(range(101, 201)) and list(frame["name"])[0] == "p0100.txt"
    assert [c.value.split(" · ")[0] for c in at.caption if c.value.startswith("/p")][:1] == ["/p0100.txt"]
    at.number_input(key="search:results:page").set_value(10).run()
    frame = ok(at).dataframe[0].value
    assert "Showing 901–1,000 of 1,000" in texts(at) and list(frame["name"])[-1] == "p0999.txt"
    assert at.button(key="search:results:next").proto.disabled  # the last page
    assert at.query_params["page"] == "10" and at.query_params["k"] == "1000" and at.query_params["per"] == "100"
    # A new search starts again at page 1.
    at.text_area(key="search:vector").input("1199, 0").run()
    assert "Showing 1–100 of 1,000" in texts(ok(at)) and list(at.dataframe[0].value["name"])[0] == "p1199.txt"


def _max_slider(at):
    return next(s for s in at.slider if s.key.startswith("search:maxd:"))


def _a_limited_search(open_page):
    """A search by vector with k, a distance limit and a filter set: (the app, its table)."""
    at = _by_vector(open_page("app_pages/search.py"), "0.9, 0.1, 0")
    at.number_input(key="search:k").set_value(2).run()
    at.selectbox(key="search:filters:hidden").select("Both").run()
    _max_slider(at).set_value(1.5).run()
    return at, _table(ok(at))


def test_the_url_keeps_the_search_and_a_new_session_restores_it(open_page, space, app_ws):
    from streamlit.testing.v1 import AppTest

    from tests.pages.conftest import ROOT

    at, want = _a_limited_search(open_page)
    params = dict(at.query_params)
    assert params == {"set": "points", "by": "vector", "q": "0.9, 0.1, 0", "k": "2", "max": "1.5", "hidden": "both"}

    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # another session: a bookmark opened
    fresh.switch_page("app_pages/search.py")
    fresh.query_params.update(params)
    ok(fresh.run())
    assert _table(fresh) == want
    assert fresh.radio(key="search:mode").value == "Vector or feature id"
    assert fresh.text_area(key="search:vector").value == "0.9, 0.1, 0"
    assert fresh.number_input(key="search:k").value == 2
    assert _max_slider(fresh).value == pytest.approx(1.5)
    assert fresh.selectbox(key="search:filters:hidden").value == "Both"
    assert dict(fresh.query_params) == params  # and the URL stays as it came

    # By item, with a link that names things this workspace does not have: said, the rest restored.
    item = space["items"]["y2.txt"]
    odd = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    odd.switch_page("app_pages/search.py")
    odd.query_params.update({"set": "points", "by": "item", "q": item.id, "k": "abc", "ds": "nowhere"})
    odd.run()
    assert not odd.exception
    errors = " ".join(e.value for e in odd.error)
    assert "k='abc' is not a whole number" in errors and "'nowhere' is not here" in errors
    assert odd.selectbox(key="search:item").value == item.id and _table(odd)[0] == ("y2.txt", 0.0)


def test_the_form_comes_back_after_another_page(open_page, space):
    at, want = _a_limited_search(open_page)
    at.switch_page("app_pages/home.py")
    at.query_params.clear()  # st.navigation clears them on a page switch
    at.run()
    at.switch_page("app_pages/search.py")
    at.query_params.clear()
    ok(at.run())
    assert _table(at) == want and at.number_input(key="search:k").value == 2
    assert _max_slider(at).value == pytest.approx(1.5)
    assert at.query_params["k"] == "2"  # and the URL says the search again
