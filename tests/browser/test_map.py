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


def test_a_large_map_is_drawn_on_the_server_and_its_lasso_answered_there(page, server):
    """Above the server's FEATURELAB_LARGE_MAP_ABOVE (2,500, see conftest), a 3,000-point map
    is a density image under 500 invisible sample points; a lasso over the left cluster
    selects all 1,500 of its points, which only the server, testing every point, can count;
    a lasso over the empty space between them answers that nothing is selected."""
    ws = Workspace.open(str(server["home"]))
    try:
        ds = ws.datasets.create("large-map")
        # Rows straight into the catalog (3,000 uploads take 10 s here); kind "other": no files read.
        rows = [(f"{i:024x}", ds.id, f"p{i}.bin", "/pts", "other", "application/octet-stream", 1, f"{i:064x}",
                 None, None, 0, "{}", 0.0) for i in range(3000)]
        with ws.catalog.transaction() as c:
            c.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        values = np.random.default_rng(2).normal(scale=0.3, size=(3000, 8)).astype(np.float32)
        values[1500:] += 6
        fs = ws.feature_sets.create(name="large-map-set", size=8)
        ws.create_features(fs, values, [r[0] for r in rows])
    finally:
        ws.close()
    try:
        goto(page, server["url"], "map", "Map")
        select(page, "map:set", "large-map-set · size 8")
        choose(page, "map:method", "PCA")
        expect(page.get_by_text("3000 points")).to_be_visible(timeout=60_000)
        image = widget(page, "map:chart").locator("image")
        expect(image).to_have_count(1, timeout=30_000)
        assert image.get_attribute("href").startswith("data:image/png;base64,")
        # First, between the clusters (1,500 points each, 17 apart, about 2 wide): no point there
        # for plotly to select, which alone would send no event at all.
        lasso(page, [(0.4, 0.2), (0.6, 0.2), (0.6, 0.8), (0.4, 0.8), (0.4, 0.21)], chart_key="map:chart")
        expect(page.get_by_role("heading", name="Nothing selected")).to_be_visible(timeout=30_000)
        # The whole left half, to the plot's edges (the points fill all but a 2% margin).
        lasso(page, [(0.005, 0.005), (0.5, 0.005), (0.5, 0.995), (0.005, 0.995), (0.005, 0.01)],
              chart_key="map:chart")
        expect(page.get_by_role("heading", name="1500 selected")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Showing the items of the first 60 of the 1500 selected points.")).to_be_visible()
        expect(page.locator('[class*="st-key-map-selection-cell-"]')).to_have_count(60)
        shot(page, "map-large-lasso")
    finally:  # the browser tests share one workspace
        ws = Workspace.open(str(server["home"]))
        try:
            ws.feature_sets.delete(fs.id)
            ws.datasets.delete(ds.id)
        finally:
            ws.close()
