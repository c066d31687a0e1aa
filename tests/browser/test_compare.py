"""Compare sets in Chromium: compare two sets over the same items, see the overlap and the
most disagreeing items, then lasso one group on set A's map and find the same items ringed
on set B's map."""
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, fill, goto, lasso, select, settle, shot, widget

pytestmark = pytest.mark.browser


def make_two_models(home) -> None:
    """40 text items in two groups (/left, /right); set A splits them apart along x, set B
    along another axis with the groups swapped around, plus noise."""
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create("browser-compare")
        results = ds.items.upload([(f"r{i}.txt", f"row {i}".encode()) for i in range(20)], dir="/left")
        results += ds.items.upload([(f"r{i}.txt", f"row {i}".encode()) for i in range(20, 40)], dir="/right")
        rng = np.random.default_rng(3)
        a = rng.normal(scale=0.3, size=(40, 6)).astype(np.float32)
        a[20:, 0] += 8
        b = rng.normal(scale=0.3, size=(40, 4)).astype(np.float32)
        b[:20, 1] += 8
        fa = ws.feature_sets.create(name="browser-model-a", size=6)
        fb = ws.feature_sets.create(name="browser-model-b", size=4)
        ws.create_features(fa, a, [r.item for r in results])
        ws.create_features(fb, b, [r.item for r in results])
    finally:
        ws.close()


def ringed(page, chart_key: str) -> list[str]:
    """Names of the points ringed ("selected" trace) on one map."""
    chart = widget(page, chart_key).locator(".js-plotly-plot")
    return chart.evaluate("el => Array.from((el.data.find(t => t.name === 'selected') || {hovertext: []}).hovertext)")


def test_compare_and_lasso_across_maps(page, server):
    make_two_models(server["home"])
    goto(page, server["url"], "compare", "Compare sets")
    select(page, "compare:a", "browser-model-a · size 6")
    select(page, "compare:b", "browser-model-b · size 4")
    fill(page, "compare:k", "5")
    click(page, "compare:run")
    expect(page.get_by_text("Mean overlap")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Where they disagree most")).to_be_visible()
    expect(page.locator('[class*="st-key-compare-dis-"][class*="-a-cell-"]')).to_have_count(5 * 5)
    histogram = widget(page, "compare:histogram").locator(".js-plotly-plot")
    assert sum(histogram.evaluate("el => Array.from(el.data[0].y)")) == 40
    shot(page, "compare-summary")

    choose(page, "compare:method", "PCA")
    click(page, "compare:project")
    expect(widget(page, "compare:map-b").locator(".js-plotly-plot")).to_be_visible(timeout=60_000)
    select(page, "compare:color", "Folder")
    lasso(page, chart_key="compare:map-a")
    expect(page.get_by_text("20 selected")).to_be_visible(timeout=30_000)
    on_b, on_a = ringed(page, "compare:map-b"), ringed(page, "compare:map-a")
    assert len(on_b) == 20 and sorted(on_b) == sorted(on_a)
    cells = page.locator('[class*="st-key-compare-selection-cell-"]')
    expect(cells).to_have_count(20)
    captions = " ".join(cells.all_inner_texts())
    side = "/left" if "/left/" in captions else "/right"
    assert captions.count(f"{side}/r") == 20  # one whole group, as set A's map shows it
    widget(page, "compare:map-b").scroll_into_view_if_needed()
    shot(page, "compare-lasso-rings-both-maps")

    # A lasso on B's map now picks the other group there: the rings follow on A's map.
    lasso(page, chart_key="compare:map-b")
    page.wait_for_timeout(500)
    settle(page)
    on_a = ringed(page, "compare:map-a")
    assert len(on_a) == 20 and sorted(on_a) == sorted(ringed(page, "compare:map-b"))
