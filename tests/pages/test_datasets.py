"""Datasets page: the grid with paging, folders, the item filter and thumbnail size; the item
view (from this grid and from the search results), its vectors, boxes and "More like this";
deleting an item and a whole dataset with a confirmation that says what goes."""
import numpy as np
import pytest

from tests.pages.helpers import ok, png, texts

PAGE = "app_pages/datasets.py"
RED = 31  # red.png's cell on the grid's first page: sorted by path, after the 30 notes and blue.png


@pytest.fixture
def photos(app_ws):
    """30 text notes in /notes, and below it 2 images in /notes/pics (one with a box), with 2-d vectors."""
    ds = app_ws.datasets.create("photos")
    notes = [r.item for r in ds.items.upload([(f"n{i:02d}.txt", f"note {i}".encode()) for i in range(30)], dir="/notes")]
    pics = [r.item for r in ds.items.upload([("red.png", png((200, 0, 0))), ("blue.png", png((0, 0, 200)))],
                                            dir="/notes/pics")]
    pics[0].annotations.create("cat", (2, 2, 20, 16))
    pics[1].update(metadata={"user": {"colour": "blue"}})
    fs = app_ws.feature_sets.create(name="flat", size=2)
    fs.features.create_many(np.array([[3, 4], [0, 1]], np.float32), pics)
    return {"ds": ds, "notes": notes, "pics": pics, "fs": fs}


def cells(at) -> list[str]:
    """The names the grid shows, in order (image captions and text captions)."""
    return [c.value for c in at.caption if c.value.startswith("/")] + [c for img in at.image for c in img.captions]


def test_grid_pages_through_the_dataset(open_page, photos):
    at = ok(open_page(PAGE))
    assert "32 items in 2 folder(s)" in texts(at)
    opens = [b.key for b in at.button if (b.key or "").startswith("datasets:grid:open:")]
    assert len(opens) == 32 and "Items 1–32 of 32" in texts(at)  # 48 a page by default
    at.select_slider(key="datasets:page-size").set_value(24).run()
    opens = [b.key for b in at.button if (b.key or "").startswith("datasets:grid:open:")]
    assert len(opens) == 24
    assert "Items 1–24 of 32" in texts(at)
    at.button(key="datasets:next").click().run()
    opens = [b.key for b in ok(at).button if (b.key or "").startswith("datasets:grid:open:")]
    assert len(opens) == 8 and at.number_input(key="datasets:page").value == 2
    assert "Items 25–32 of 32" in texts(at)
    # Sorted by path: the last page ends with the pictures folder, and its last cell opens red.png.
    assert [c for img in at.image for c in img.captions] == ["/notes/pics/blue.png", "/notes/pics/red.png"]
    assert [s.value for s in _open(at, opens[-1]).subheader] == ["/notes/pics/red.png"]


def test_folder_filter_and_thumbnail_size(open_page, photos):
    at = open_page(PAGE)
    folder = at.selectbox(key=f"datasets:folder:{photos['ds'].id}")
    assert folder.options == ["All folders", "/notes", "/notes/pics"]
    folder.select("/notes/pics").run()
    assert sorted(c for img in ok(at).image for c in img.captions) == ["/notes/pics/blue.png", "/notes/pics/red.png"]
    at.selectbox(key=f"datasets:folder:{photos['ds'].id}").select("/notes").run()
    at.checkbox(key="datasets:subfolders").uncheck().run()
    assert "Items 1–30 of 30" in texts(at) and not at.image
    at.checkbox(key="datasets:subfolders").check().run()
    at.text_area(key="datasets:filter").input('{"metadata.user.colour": "blue"}').run()
    assert [c for img in ok(at).image for c in img.captions] == ["/notes/pics/blue.png"]
    medium = len(at.columns)
    at.select_slider(key="datasets:thumb").set_value("Large").run()
    assert medium - len(ok(at).columns) == 6 - 4  # one row of the grid: 4 wider columns, not 6


def test_a_bad_filter_is_said_and_the_page_stays(open_page, photos):
    at = open_page(PAGE)
    at.text_area(key="datasets:filter").input('{"metadata.user.colour": ').run()
    assert "not valid JSON" in at.error[0].value
    assert at.expander and any("Delete this dataset" in e.label for e in at.expander)
    at.text_area(key="datasets:filter").input('{"nosuch": 1}').run()
    assert at.error and at.button(key="datasets:delete")


def _open(at, key: str):
    at.button(key=key).click().run()
    return ok(at)


def test_item_view_shows_the_item_its_boxes_metadata_and_vectors(open_page, photos):
    at = open_page(PAGE)
    red = photos["pics"][0]
    at = _open(at, f"datasets:grid:open:{RED}")
    assert [s.value for s in at.subheader] == ["/notes/pics/red.png"]
    assert "Dataset photos · folder /notes/pics · image (image/png)" in texts(at)
    annotations = at.dataframe[0].value
    assert list(annotations["label"]) == ["cat"] and list(annotations["right"]) == [20]
    vectors = at.dataframe[1].value
    assert list(vectors["feature set"]) == ["flat"] and list(vectors["size"]) == [2]
    assert vectors["norm"][0] == pytest.approx(5.0) and vectors["first values"][0] == "3, 4"
    assert [c.value for c in at.code] == ["[3.0, 4.0]"]
    assert at.button(key=f"item_view:more:{photos['fs'].id}")
    # The boxes are drawn on the full-size image: it differs from the plain file scaled up.
    from components.item_view import annotated_image

    assert annotated_image(red.sha256, str(red.path), (("cat", 2, 2, 20, 16),)) != annotated_image(
        red.sha256, str(red.path), ())


def test_item_view_of_a_text_item_says_it_has_no_vector(open_page, photos):
    at = open_page(PAGE)
    at = _open(at, "datasets:grid:open:3")
    assert "note 3" in [c.value for c in at.code]
    assert "No feature set holds a vector of this item yet" in texts(at)


def test_more_like_this_opens_the_search_from_the_item(open_page, photos):
    at = open_page(PAGE)
    blue = photos["pics"][1]
    at = _open(at, f"datasets:grid:open:{RED - 1}")
    assert [s.value for s in at.subheader] == ["/notes/pics/blue.png"]
    at.button(key=f"item_view:more:{photos['fs'].id}").click().run()
    ok(at)
    assert at.session_state["search:mode"] == "Item" and at.session_state["search:item"] == blue.id
    assert at.title[0].value == "Search"
    frame = at.dataframe[0].value
    assert list(frame["name"])[:2] == ["blue.png", "red.png"] and frame["distance"][0] == 0


def test_open_from_the_search_results_gallery(open_page, photos):
    at = open_page("app_pages/search.py")
    at.radio(key="search:mode").set_value("Vector or feature id").run()
    at.text_area(key="search:vector").input("3, 4").run()
    at = _open(at, "search:results:open:0")  # the first result: red.png, at distance 0
    assert [s.value for s in at.subheader] == ["2 results", "/notes/pics/red.png"]
    assert list(at.dataframe[-1].value["feature set"]) == ["flat"]  # the view's vectors, after the results table
    assert at.title[0].value == "Search"


def test_delete_an_item_with_a_confirmation(open_page, photos, app_ws):
    at = open_page(PAGE)
    red = photos["pics"][0]
    at = _open(at, f"datasets:grid:open:{RED}")
    at.button(key="item_view:delete").click().run()
    warning = [w.value for w in ok(at).warning if w.value.startswith("Delete /notes/pics/red.png?")][0]
    assert ("1 item, 1 file no longer referenced by any other item, 1 annotation and 1 feature vector"
            in warning)
    assert app_ws.datasets.get(dataset_id=photos["ds"].id).items.count() == 32  # nothing gone yet
    at.button(key="item_view:confirm-delete").click().run()
    ok(at)
    assert photos["ds"].items.count() == 31 and photos["fs"].count() == 1
    assert not red.path.exists()
    assert "31 items in 2 folder(s)" in texts(at)


def test_delete_the_dataset_with_a_confirmation(open_page, photos, app_ws):
    other = app_ws.datasets.create("other")
    other.items.upload([("same.png", png((200, 0, 0)))])  # shares red.png's file
    at = open_page(PAGE)
    warning = [w.value for w in at.warning if "Deleting photos" in w.value][0]
    assert "32 items, 31 files no longer referenced by any other item, 1 annotation and 2 feature vectors" in warning
    assert at.button(key="datasets:delete").disabled
    at.checkbox(key=f"datasets:sure:{photos['ds'].id}").check().run()
    at.button(key="datasets:delete").click().run()
    ok(at)
    assert [d.name for d in app_ws.datasets.list()] == ["other"]
    assert photos["fs"].count() == 0
    assert any("Deleted photos" in s.value for s in at.success)
    assert at.selectbox(key="datasets:dataset").value == other.id


def test_the_item_view_steps_through_the_gallery_it_was_opened_from(open_page, photos):
    at = open_page(PAGE)
    at.select_slider(key="datasets:page-size").set_value(24).run()
    at.button(key="datasets:next").click().run()  # the second page: 6 notes, then the two pictures
    at = _open(ok(at), "datasets:grid:open:6")  # blue.png
    assert "7 of 8 in this gallery" in texts(at)
    at.button(key="item_view:next").click().run()
    assert [s.value for s in ok(at).subheader][-1] == "/notes/pics/red.png" and at.button(key="item_view:next").disabled
    at.button(key="item_view:previous").click().run()
    at.button(key="item_view:previous").click().run()
    assert "6 of 8 in this gallery" in texts(ok(at))

    # From the search results: their ranks.
    at = open_page("app_pages/search.py")
    at.radio(key="search:mode").set_value("Vector or feature id").run()
    at.text_area(key="search:vector").input("0, 1").run()
    at = _open(at, "search:results:open:1")  # red.png, the second result
    assert "2 of 2 in this gallery" in texts(at)
    at.button(key="item_view:previous").click().run()
    assert [s.value for s in ok(at).subheader][-1] == "/notes/pics/blue.png"  # the first result
    assert at.button(key="item_view:previous").disabled
