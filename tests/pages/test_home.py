"""Home page: the workspace at a glance, what to do first, and the sample data."""
import numpy as np

from store import Workspace
from tests.pages.helpers import ok, texts, wait_for_job


def test_home_empty_workspace_says_what_to_do(open_page):
    at = ok(open_page())
    assert any("workspace is empty" in i.value for i in at.info)
    assert [m.value for m in at.metric] == ["0", "0", "0"]


def test_home_lists_datasets_and_feature_sets_with_counts(tmp_path, open_page):
    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([("a.txt", b"a"), ("b.txt", b"b")])]
        fs = ws.feature_sets.create(name="minilm", size=4, model="all-MiniLM-L6-v2")
        fs.features.create_many(np.ones((2, 4), dtype=np.float32), items)
    at = ok(open_page())
    assert [m.value for m in at.metric] == ["1", "2", "1"]
    assert not any("workspace is empty" in i.value for i in at.info)
    datasets, sets = at.dataframe[0].value, at.dataframe[1].value
    assert (datasets.iloc[0]["name"], datasets.iloc[0]["items"]) == ("d", 2)
    row = sets.iloc[0]
    assert (row["name"], row["size"], row["model"], row["vectors"]) == ("minilm", 4, "all-MiniLM-L6-v2", 2)


def test_load_sample_data_gives_every_page_something_meaningful(open_page, app_ws):
    at = ok(open_page())
    at.button(key="home:load-sample").click().run()
    at = ok(wait_for_job(at, "home:sample", timeout=300))
    assert "Sample data ready" in texts(at)
    sets = {s.name: s for s in app_ws.feature_sets.list()}
    assert sets["sample-digits-pixels"].count() == 400
    assert sets["sample-help-minilm"].count() == 78  # 79 topics, two with the same text
    ds = app_ws.datasets.get(dataset_name="sample")
    metrics = [m.value for m in at.metric]
    assert metrics[0] == "1" and metrics[1] == str(ds.items.count()) and int(metrics[2]) >= 2

    # Meaningful neighbours: a help question finds its topic, a digit finds its own kind.
    search = ok(open_page("app_pages/search.py"))
    search.selectbox(key="search:set").select(sets["sample-help-minilm"].id).run()
    search.text_input(key="search:text").input("how do I write an anonymous function").run()
    assert ok(search).dataframe[0].value.iloc[0]["name"] == "lambda.txt"

    search.selectbox(key="search:set").select(sets["sample-digits-pixels"].id).run()
    search.radio(key="search:mode").set_value("Item").run()
    three = next(i for i in ds.items.list({"filter": {"metadata.user.digit": 3}}).all())
    search.selectbox(key="search:item-dataset").select(ds.id).run()
    search.selectbox(key="search:item").select(three.id).run()
    names = list(ok(search).dataframe[0].value["name"])
    assert names[0] == three.name
    assert sum(n.startswith("digit-3-") for n in names) >= 10  # of the 12 nearest


def test_every_page_ends_with_a_hidden_chart_that_preloads_plotly(open_page):
    from components.preload import KEY, RUNS

    for page in ("app_pages/home.py", "app_pages/map.py", "app_pages/upload.py"):
        at = ok(open_page(page))
        preload = [c for c in at.get("plotly_chart") if KEY in c.proto.id]
        assert len(preload) == 1, page
        assert any(f".st-key-{KEY} {{ display: none; }}" in h.proto.body for h in at.get("html")), page
    for _ in range(RUNS - 1):
        at.run()
        assert len([c for c in at.get("plotly_chart") if KEY in c.proto.id]) == 1
    at.run()  # the tab has plotly.js by now: later reruns do not pay for the chart
    assert not [c for c in at.get("plotly_chart") if KEY in c.proto.id]
    assert not any(KEY in h.proto.body for h in at.get("html"))
