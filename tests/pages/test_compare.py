"""Compare sets page: fewer than two sets, comparing two sets (metrics, histogram, the most
disagreeing items with both neighbour lists), label agreement, and the two maps where a
selection on one is ringed on both."""
import json

import numpy as np
import pytest

from store.analysis.compare import compare_sets
from tests.pages.helpers import charts, ok, plotly_values, png, texts

PAGE = "app_pages/compare.py"


@pytest.fixture
def two_sets(app_ws):
    """24 image items; set A groups them by their 'kind' metadata, set B is unrelated noise."""
    ds = app_ws.datasets.create("pics")
    results = ds.items.upload([(f"q{i:02d}.png", png((i * 10, 50, 90), (18 + i, 18))) for i in range(24)])
    items = [r.item.update(metadata={"user": {"kind": f"k{i % 3}"}}) for i, r in enumerate(results)]
    rng = np.random.default_rng(0)
    a = rng.normal(scale=0.3, size=(24, 6)).astype(np.float32)
    a[np.arange(24) % 3 == 1, 0] += 8
    a[np.arange(24) % 3 == 2, 1] += 8
    b = rng.normal(size=(24, 5)).astype(np.float32)
    fa = app_ws.feature_sets.create(name="set-a", size=6)
    fb = app_ws.feature_sets.create(name="set-b", size=5)
    app_ws.create_features(fa, a, items)
    app_ws.create_features(fb, b, items)
    return {"a": fa, "b": fb, "items": items}


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_needs_two_sets(open_page, app_ws):
    at = ok(open_page(PAGE))
    assert at.title[0].value == "Compare sets"
    assert "needs two feature sets with vectors" in texts(at)
    app_ws.feature_sets.create(name="empty", size=3)
    assert "needs two feature sets with vectors" in texts(ok(open_page(PAGE)))


def test_compare_two_sets_with_labels(open_page, two_sets, app_ws):
    at = ok(open_page(PAGE))
    assert at.selectbox(key="compare:a").value == two_sets["a"].id
    assert at.selectbox(key="compare:b").value == two_sets["b"].id
    assert "press **Compare**" in texts(at)
    at.number_input(key="compare:k").set_value(4).run()
    at.text_input(key="compare:label-field").input("user.kind").run()
    at.button(key="compare:run").click().run()
    ok(at)
    expected = compare_sets(app_ws, two_sets["a"], two_sets["b"], k=4, label_field="user.kind")
    metrics = _metrics(at)
    assert metrics["Mean overlap"] == f"{expected.mean_overlap:.3f}" and metrics["Items in both"] == "24"
    agreement = expected.label_agreement()
    assert metrics["Label agreement, set-a"] == f"{agreement['a']:.3f}" == "1.000"
    assert metrics["Label agreement, set-b"] == f"{agreement['b']:.3f}"
    assert "**set-a** puts items next to items of the same label more often" in texts(at)
    histogram = json.loads(charts(at)[0].proto.spec)["data"][0]
    assert histogram["x"] == ["0/4", "1/4", "2/4", "3/4", "4/4"]
    assert plotly_values(histogram["y"]) == expected.histogram()

    # The five most disagreeing items, each with its four neighbours in both sets.
    worst = expected.most_disagreeing(5).tolist()
    names = {i.id: i.filename for i in two_sets["items"]}
    titles = [m.value for m in at.markdown if " neighbours shared" in m.value]
    assert titles == [f"**{names[expected.entity_ids[r]]}** · {round(expected.overlap[r] * 4)} of 4 neighbours shared"
                      for r in worst]
    captions = [c for img in at.image for c in img.captions]
    first = worst[0]
    assert captions[:8] == [names[e] for e in expected.neighbour_ids(first, "a") + expected.neighbour_ids(first, "b")]
    assert len(captions) == 5 * 8

    # Without a label field and without annotations: no label agreement.
    at.text_input(key="compare:label-field").input("").run()
    at.button(key="compare:run").click().run()
    assert "No item carries a label" in texts(ok(at))


def test_maps_ring_a_selection_on_both(open_page, two_sets, app_ws):
    at = ok(open_page(PAGE))
    at.button(key="compare:run").click().run()
    at.radio(key="compare:method").set_value("pca").run()
    assert "No map of set-a and set-b" in texts(ok(at))
    at.button(key="compare:project").click().run()
    drawn = charts(ok(at))
    assert len(drawn) == 3  # the histogram and the two maps
    picked = [i.id for i in two_sets["items"][:5]]
    at.session_state["compare:picked"] = picked  # what a lasso on either map stores
    at.run()
    for chart in charts(ok(at))[1:]:
        spec = json.loads(chart.proto.spec)
        ring = [t for t in spec["data"] if t.get("name") == "selected"]
        assert len(ring) == 1 and sorted(ring[0]["hovertext"]) == sorted(i.name for i in two_sets["items"][:5])
        assert sum(len(t["hovertext"]) for t in spec["data"] if t.get("name") != "selected") == 24
    assert "**5 selected**, ringed on both maps." in texts(at)
    assert [c for img in at.image for c in img.captions][-5:] == [i.filename for i in two_sets["items"][:5]]
    at.button(key="compare:clear").click().run()
    assert "selected**" not in texts(ok(at))
    for chart in charts(at)[1:]:
        assert not [t for t in json.loads(chart.proto.spec)["data"] if t.get("name") == "selected"]


def test_picking_set_b_as_a_moves_b_to_another_set(open_page, two_sets):
    at = ok(open_page(PAGE))
    at.selectbox(key="compare:a").set_value(two_sets["b"].id).run()
    ok(at)
    assert at.selectbox(key="compare:a").value == two_sets["b"].id
    assert at.selectbox(key="compare:b").value == two_sets["a"].id
    at.button(key="compare:run").click().run()
    assert _metrics(ok(at))["Items in both"] == "24"


def test_compare_within_one_dataset_or_all(open_page, two_sets, app_ws):
    from store.io import save_selection

    copy = save_selection(app_ws, [i.id for i in two_sets["items"][:12]], "pics-copy").dataset
    at = ok(open_page(PAGE))
    assert at.selectbox(key="compare:scope").value == two_sets["items"][0].dataset_id
    at.number_input(key="compare:k").set_value(4).run()
    at.button(key="compare:run").click().run()
    assert _metrics(ok(at))["Items in both"] == "24"
    at.selectbox(key="compare:scope").select(copy.id).run()
    assert "press **Compare**" in texts(ok(at))  # a result counts for its own scope only
    at.button(key="compare:run").click().run()
    assert _metrics(ok(at))["Items in both"] == "12"
    at.selectbox(key="compare:scope").select("__all__").run()
    at.button(key="compare:run").click().run()
    assert _metrics(ok(at))["Items in both"] == "36"
