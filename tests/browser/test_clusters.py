"""Clusters in Chromium: run k-means on three groups of images, read the named clusters in the
table, colour the map by cluster, and open one cluster's gallery."""
import io

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, fill, goto, select, settle, shot, table_cells_when, widget

pytestmark = pytest.mark.browser
SHAPES = ["circle", "square", "star"]


def _png(colour, size) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def make_three_groups(home) -> None:
    """30 images in three far-apart groups of ten (6-d vectors), with user.shape metadata."""
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create("browser-clusters")
        colours = [(220, 40, 40), (40, 180, 40), (40, 40, 220)]
        results = ds.items.upload([(f"c{i:02d}.png", _png(colours[i // 10], (30 + i, 30))) for i in range(30)])
        items = [r.item.update(metadata={"user": {"shape": SHAPES[i // 10]}}) for i, r in enumerate(results)]
        values = np.random.default_rng(2).normal(scale=0.3, size=(30, 6)).astype(np.float32)
        values[10:20, 0] += 9
        values[20:, 1] += 9
        fs = ws.feature_sets.create(name="browser-cluster-set", size=6)
        ws.create_features(fs, values, items)
    finally:
        ws.close()


def test_cluster_name_map_and_gallery(page, server):
    make_three_groups(server["home"])
    goto(page, server["url"], "clusters", "Clusters")
    select(page, "clusters:set", "browser-cluster-set · size 6")
    expect(widget(page, "clusters:key").locator("input")).to_have_value("browser_cluster_set")
    fill(page, "clusters:k", "3")
    fill(page, "clusters:label-field", "user.shape")
    click(page, "clusters:run")
    expect(page.get_by_text("3 clusters of 30 vectors (k-means, k = 3)")).to_be_visible(timeout=60_000)
    cells = table_cells_when(page, lambda c: all(s in c for s in SHAPES))
    assert all(s in cells for s in SHAPES) and cells.count("10") >= 3
    shot(page, "clusters-table")

    choose(page, "clusters:method", "PCA")
    click(page, "clusters:project")
    chart = widget(page, "clusters:map").locator(".js-plotly-plot")
    expect(chart).to_be_visible(timeout=60_000)
    settle(page)
    traces = chart.evaluate("el => el.data.map(t => [t.name, Array.from(t.hovertext || []).length])")
    assert sorted(n.split(": ", 1)[1] for n, _ in traces) == SHAPES and all(count == 10 for _, count in traces)
    legend = chart.locator(".legendtext").evaluate_all("els => els.map(e => e.textContent)")
    assert sorted(t.split(": ", 1)[1] for t in legend) == SHAPES

    star = next(n for n, _ in traces if n.endswith("star"))
    select(page, "clusters:pick", f"{star.split(':')[0].strip()}: star (10)")
    cells = page.locator('[class*="st-key-clusters-gallery-cell-"]')
    expect(cells).to_have_count(10)
    captions = " ".join(cells.all_inner_texts())
    assert all(f"/c{i}.png" in captions for i in range(20, 30)) and "/c0" not in captions
    widget(page, "clusters:gallery:cell:0").scroll_into_view_if_needed()
    shot(page, "clusters-map-and-gallery")
