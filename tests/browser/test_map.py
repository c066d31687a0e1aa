"""Map: project a small set with PCA in Chromium, draw a lasso over one of its two clusters
with the mouse, and see the gallery fill with that cluster's items."""
import numpy as np
import pytest
from playwright.sync_api import expect

from store import Workspace

from tests.browser.ui import choose, click, fill, goto, lasso, select, settle, shot, widget

pytestmark = pytest.mark.browser


def make_two_clusters(home) -> None:
    """40 text items (/left and /right) with 8-d vectors in two far-apart clusters."""
    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create("browser-map")
        results = ds.items.upload([(f"m{i}.txt", f"t{i}".encode()) for i in range(20)], dir="/left")
        results += ds.items.upload([(f"m{i}.txt", f"t{i}".encode()) for i in range(20, 40)], dir="/right")
        values = np.random.default_rng(1).normal(scale=0.3, size=(40, 8)).astype(np.float32)
        values[20:] += 6
        fs = ws.feature_sets.create(name="browser-map-set", size=8)
        ws.create_features(fs, values, [r.item.id for r in results])
    finally:
        ws.close()


def test_project_and_lasso_fills_the_gallery(page, server):
    make_two_clusters(server["home"])
    goto(page, server["url"], "map", "Map")
    select(page, "map:set", "browser-map-set · size 8")
    choose(page, "map:method", "PCA")  # instant: drawn without a click
    expect(page.get_by_text("40 points")).to_be_visible(timeout=60_000)
    select(page, "map:color", "Folder")
    lasso(page)
    expect(page.get_by_text("20 selected")).to_be_visible(timeout=30_000)
    cells = page.locator('[class*="st-key-map-selection-cell-"]')
    expect(cells).to_have_count(20)
    captions = " ".join(cells.all_inner_texts())
    side = "/left" if "/left/" in captions else "/right"
    other = "/right" if side == "/left" else "/left"
    assert captions.count(f"{side}/m") == 20 and f"{other}/" not in captions
    widget(page, "map:selection:cell:0").scroll_into_view_if_needed()
    shot(page, "map-lasso-selection")

    # "Search from here": the Search page, queried with the mean of the lassoed cluster,
    # whose nearest neighbours are that same cluster.
    click(page, "map:search-here")
    expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible(timeout=30_000)
    settle(page)
    results = page.locator('[class*="st-key-search-results-cell-"]')
    expect(results).to_have_count(12, timeout=30_000)
    found = " ".join(results.all_inner_texts())
    assert found.count(f"{side}/m") == 12 and f"{other}/" not in found
    expect(widget(page, "search:histogram")).to_be_visible()

    # And back: "Show on map" rings those results on the map, coloured by distance.
    click(page, "search:show-on-map")
    expect(page.get_by_role("heading", name="Map", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Ringed: the 12 results of the last search on this set")).to_be_visible(timeout=30_000)
    settle(page)
    shot(page, "map-search-results-ringed")

    # Lasso again and save the items as a dataset of their own: files, vectors and all.
    lasso(page)
    expect(page.get_by_text("20 selected")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Save or export these 20").click()
    fill(page, "map:selected:save-name", "lassoed")
    click(page, "map:selected:save")
    expect(page.get_by_text("Saved 20 items with 0 annotations and 20 in browser-map-set to lassoed.")).to_be_visible()
    shot(page, "map-selection-saved")
    page.keyboard.press("Escape")
    settle(page)
    saved = Workspace.open(str(server["home"]))
    try:
        copies = saved.datasets.get("lassoed").items.list().all()
        assert sorted(i.filename for i in copies) == sorted(f"{side}/m{i}.txt" for i in (range(20) if side == "/left" else range(20, 40)))
    finally:
        saved.close()
