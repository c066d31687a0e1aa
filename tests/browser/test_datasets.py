"""The item view and the Datasets page in Chromium: "Open" on a search result shows the item
full size with its vectors, "More like this" searches from it, and a dataset is deleted
through the confirmation that says what goes."""
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, fill, goto, select, settle, shot, widget
from tests.pages.helpers import png

pytestmark = pytest.mark.browser

COLOURS = {"red.png": (220, 20, 20), "green.png": (20, 200, 20), "blue.png": (20, 20, 220)}


def make_dataset(home) -> dict[str, str]:
    """Three images with their colour as a 3-d vector, a box on red.png, and a note without one."""
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create("browser-items")
        results = ds.items.upload([(n, png(c, size=(48, 32))) for n, c in COLOURS.items()], dir="/colours")
        ds.items.upload([("note.txt", b"a note with no vector")], dir="/notes")
        items = {r.name: r.item for r in results}
        items["red.png"].annotations.create("warm", (4, 4, 40, 28))
        fs = ws.feature_sets.create(name="browser-items-rgb", size=3)
        fs.features.create_many(np.array([c for c in COLOURS.values()], np.float32) / 255, list(items.values()))
        return {n: i.id for n, i in items.items()}
    finally:
        ws.close()


def test_open_a_search_result_then_delete_its_dataset(page, server):
    make_dataset(server["home"])
    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-items-rgb · size 3")
    choose(page, "search:mode", "Vector or feature id")
    fill(page, "search:vector", "0.86, 0.08, 0.08")
    card = widget(page, "search:results:cell:0")
    expect(card).to_contain_text("/colours/red.png · d=", timeout=60_000)

    click(page, "search:results:open:0")  # the cell that shows red.png
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("/colours/red.png", timeout=30_000)
    expect(dialog).to_contain_text("Dataset browser-items · folder /colours · image (image/png)")
    expect(dialog).to_contain_text("Vectors (1)")
    expect(dialog).to_contain_text("Annotations (1)")
    expect(dialog.locator("img").first).to_be_visible()
    shot(page, "item-view-from-search")

    # Next / previous step through the results in their order, in the same dialog.
    expect(dialog).to_contain_text("1 of 3 in this gallery")
    widget(page, "item_view:next").locator("button").click()
    settle(page)
    expect(page.get_by_role("dialog")).to_contain_text("/colours/green.png", timeout=30_000)  # the second result
    expect(page.get_by_role("dialog")).to_contain_text("2 of 3 in this gallery")
    shot(page, "item-view-next")
    widget(page, "item_view:previous").locator("button").click()
    settle(page)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("/colours/red.png", timeout=30_000)
    expect(dialog).to_contain_text("1 of 3 in this gallery")

    # "More like this" from the view: the Search page searches from red.png (distance 0 first).
    widget(page, "item_view:more:" + dialog_set_id(server["home"])).locator("button").click()
    settle(page)
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(widget(page, "search:results:cell:0")).to_contain_text("/colours/red.png · d=0", timeout=60_000)

    goto(page, server["url"], "datasets", "Datasets")
    select(page, "datasets:dataset", "browser-items")
    expect(page.get_by_text("4 items in 2 folder(s)")).to_be_visible()
    expect(page.locator('[class*="st-key-datasets-grid-cell-"]')).to_have_count(4)
    page.get_by_text("Delete this dataset").click()
    warning = page.get_by_text("Deleting browser-items deletes")
    expect(warning).to_contain_text("4 items, 4 files no longer referenced by any other item, "
                                    "1 annotation and 3 feature vectors")
    expect(widget(page, "datasets:delete").locator("button")).to_be_disabled()
    widget(page, "datasets:sure:" + dataset_id(server["home"], "browser-items")).locator("label").click()
    settle(page)
    click(page, "datasets:delete")
    expect(page.get_by_text("Deleted browser-items: 4 items")).to_be_visible(timeout=30_000)
    shot(page, "dataset-deleted")
    assert dataset_id(server["home"], "browser-items") is None


def dialog_set_id(home) -> str:
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        return ws.feature_sets.get(feature_set_name="browser-items-rgb").id
    finally:
        ws.close()


def dataset_id(home, name: str) -> str | None:
    from store import NotFound, Workspace

    ws = Workspace.open(str(home))
    try:
        return ws.datasets.get(dataset_name=name).id
    except NotFound:
        return None
    finally:
        ws.close()


@pytest.fixture(autouse=True)
def _drop_the_set_afterwards(server):
    """The browser tests share one workspace, and the Feature sets table shows only its first
    rows on screen: leave no extra set behind for the tests after this one."""
    yield
    from store import Workspace

    with Workspace.open(str(server["home"])) as ws:
        for fs in ws.feature_sets.list():
            if fs.name == "browser-items-rgb":
                ws.feature_sets.delete(fs.id)
