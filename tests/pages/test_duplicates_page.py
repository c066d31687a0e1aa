"""Duplicates and outliers page: the groups under the suggested threshold, the histogram with
the threshold line, hiding the rest of a group (by hand and for every group), Undo, and the
outliers gallery, all checked against the workspace the app uses."""
import json

import numpy as np
import pytest

from tests.pages.helpers import charts, ok, png, texts

PAGE = "app_pages/duplicates.py"


@pytest.fixture
def planted(app_ws):
    """30 images with 8-d vectors: 0-3 and 10-11 are near copies; 29 lies far from all."""
    ds = app_ws.datasets.create("dups")
    items = [r.item for r in ds.items.upload([(f"{i:02d}.png", png((i * 8, 0, 0), (10 + i, 10))) for i in range(30)])]
    rng = np.random.default_rng(0)
    values = (rng.normal(size=(30, 8)) * 5).astype(np.float32)
    for copy in (1, 2, 3):
        values[copy] = values[0] + rng.normal(scale=0.01, size=8).astype(np.float32)
    values[11] = values[10]
    values[29] += 100
    fs = app_ws.feature_sets.create(name="dups-set", size=8)
    app_ws.create_features(fs, values, [i.id for i in items])
    return {"fs": fs, "items": items}


def _hidden(ws, items) -> set[int]:
    return {n for n, i in enumerate(items) if ws.get_item(i.id).hidden}


def test_empty_workspace(open_page):
    at = ok(open_page(PAGE))
    assert at.title[0].value == "Duplicates and outliers"
    assert "No feature set yet" in texts(at)


def test_groups_hide_by_hand_hide_all_and_undo(open_page, app_ws, planted):
    items = planted["items"]
    at = ok(open_page(PAGE))
    assert 0.05 < at.slider(key="dup:threshold").value < 1.0  # the suggestion: between copies and the rest
    assert "2 group(s), 4 items beyond one per group" in [s.value for s in at.subheader]
    assert "Group 1** · 4 items" in texts(at) and "Group 2** · 2 items" in texts(at)
    captions = [c for img in at.image for c in img.captions]
    assert [c.split(" · ")[0] for c in captions] == ["/00.png", "/01.png", "/02.png", "/03.png", "/10.png", "/11.png"]
    assert captions[-2:] == ["/10.png · d=0.0000 · dups", "/11.png · d=0.0000 · dups"]  # copies at 0; the dataset
    spec = json.loads(charts(at)[0].proto.spec)
    assert sum(spec["data"][0]["y"]) == 30  # every vector's nearest-neighbour distance is in the histogram
    line = [s for s in spec["layout"]["shapes"] if s["type"] == "line"][0]
    assert line["x0"] == pytest.approx(at.slider(key="dup:threshold").value)

    # Threshold 0: only the exact copy pair (10, 11).
    at.slider(key="dup:threshold").set_value(0.0).run()
    assert "1 group(s), 1 items beyond one per group" in [s.value for s in ok(at).subheader]
    at.slider(key="dup:threshold").set_value(0.5).run()

    # Group 1 by hand: keep item 2.
    at.radio(key="dup:keep:0").set_value("manual").run()
    keeper = at.selectbox(key="dup:keeper:0")
    assert sorted(keeper.options) == ["/00.png", "/01.png", "/02.png", "/03.png"]  # members by file name
    keeper.set_value(items[2].id).run()
    at.button(key="dup:hide:0").click().run()
    assert _hidden(app_ws, items) == {0, 1, 3}
    assert "Hid 3 item(s) and kept one in each of 1 group(s)." in texts(ok(at))
    assert "1 group(s), 1 items beyond one per group" in [s.value for s in at.subheader]

    # Every group, keep the largest image: the pair 10/11 keeps 11.
    at.radio(key="dup:rule-all").set_value("largest").run()
    at.button(key="dup:hide-all").click().run()
    assert _hidden(app_ws, items) == {0, 1, 3, 10}
    assert "No near-duplicates at this threshold" in texts(ok(at))

    # Undo the last hide, then the one before.
    at.button(key="dup:undo").click().run()
    assert _hidden(app_ws, items) == {0, 1, 3}
    assert "Showing 1 item(s) again." in texts(ok(at))
    at.button(key="dup:undo").click().run()
    assert _hidden(app_ws, items) == set()
    assert not [b for b in ok(at).button if b.key == "dup:undo"]
    assert "2 group(s), 4 items beyond one per group" in [s.value for s in at.subheader]


def test_outliers_view(open_page, app_ws, planted):
    at = ok(open_page(PAGE))
    at.radio(key="dup:view").set_value("Outliers").run()
    at.number_input(key="out:k").set_value(2).run()
    at.slider(key="out:top").set_value(3).run()
    ok(at)
    assert "The 3 vectors farthest from their 2nd nearest neighbour" in texts(at)
    captions = [c for img in at.image for c in img.captions]
    assert len(captions) == 3 and captions[0].startswith("/29.png · d=")  # the far one first, with its score
    values = app_ws.matrix(planted["fs"]).values.astype(np.float64)
    second = np.sort(np.linalg.norm(values - values[29], axis=1))[2]
    assert captions[0] == f"/29.png · d={second:.4g}"


def test_a_group_saved_as_a_dataset(open_page, app_ws, planted):
    at = ok(open_page(PAGE))
    at.text_input(key="dup:save:1:save-name").input("copies").run()
    at.button(key="dup:save:1:save").click().run()
    assert "Saved 2 items with 0 annotations and 2 in dups-set to copies." in texts(ok(at))
    saved = sorted(i.name for i in app_ws.datasets.get("copies").items.list().all())
    assert saved == ["10.png", "11.png"]


def test_copies_in_another_dataset_pair_up_only_when_all_datasets_are_asked(open_page, app_ws, planted):
    from store.io import save_selection

    copy = save_selection(app_ws, [i.id for i in planted["items"]], "dups-copy").dataset
    at = ok(open_page(PAGE))
    assert at.selectbox(key="dup:scope").value == planted["items"][0].dataset_id  # the dataset being worked on
    assert "2 group(s), 4 items beyond one per group" in [s.value for s in at.subheader]  # as without the copy
    assert "from dups" not in texts(at)
    suggested = at.slider(key="dup:threshold").value
    at.selectbox(key="dup:scope").select("__all__").run()  # across datasets: each item pairs with its copy
    # Every item has a copy at 0 now; the suggestion still comes from the distinct vectors, not 0.
    assert at.slider(key="dup:threshold").value == pytest.approx(suggested, rel=1e-3)
    assert "26 group(s), 34 items beyond one per group" in [s.value for s in ok(at).subheader]
    at.slider(key="dup:threshold").set_value(0.0).run()
    assert "29 group(s), 31 items beyond one per group" in [s.value for s in ok(at).subheader]  # copies at 0
    at.slider(key="dup:threshold").set_value(0.5).run()
    assert "26 group(s), 34 items beyond one per group" in [s.value for s in ok(at).subheader]
    first = [c for img in at.image for c in img.captions][:8]  # group 1: each member's folder and dataset
    assert sorted(c.split(" · ")[-1] for c in first) == ["dups"] * 4 + ["dups-copy"] * 4
    assert "Group 1** · 8 items · closest pair at 0 · from dups (4), dups-copy (4)" in texts(at)
    at.selectbox(key="dup:scope").select(copy.id).run()
    assert "2 group(s), 4 items beyond one per group" in [s.value for s in ok(at).subheader]
    at.radio(key="dup:view").set_value("Outliers").run()
    gallery = [c for img in ok(at).image for c in img.captions]
    assert gallery[0].startswith("/29.png") and " · d=0.0000" not in " ".join(gallery)  # no copy at 0 in scope
    at.selectbox(key="dup:scope").select("__all__").run()
    assert "From dups" in texts(ok(at))


def test_a_text_set_is_not_offered_the_largest_image_rule(open_page, app_ws):
    ds = app_ws.datasets.create("notes")
    items = [r.item for r in ds.items.upload([(f"{i}.txt", f"note {i}".encode()) for i in range(6)], dir="/n")]
    fs = app_ws.feature_sets.create(name="notes-set", size=2)
    app_ws.create_features(fs, np.array([[0, 0], [0, 0.01], [5, 5], [9, 0], [0, 9], [9, 9]], np.float32),
                           [i.id for i in items])
    at = ok(open_page(PAGE))
    assert "1 group(s), 1 items beyond one per group" in [s.value for s in at.subheader]
    assert at.slider(key="dup:threshold").value > 0  # no clear gap among 6: the closest pairs, never 0
    assert at.radio(key="dup:rule-all").options == ["first uploaded"]
    assert at.radio(key="dup:keep:0").options == ["first uploaded", "by hand"]
    assert "/n/0.txt · d=0.0100 · notes" in texts(at)  # each member's folder and dataset
