"""Duplicates and outliers in Chromium: images and resized copies of some of them, with
their downsampled pixels as vectors; the page finds the copies under its suggested
threshold, the slider's left end finds none, "Hide the rest of every group" keeping the
largest image hides the smaller copies in the workspace, and Undo shows them again."""
import io

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, goto, select, settle, shot, widget

pytestmark = pytest.mark.browser


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _vector(img) -> np.ndarray:
    """An 8x8 grey thumbnail's pixels: resized copies land close to their original."""
    from PIL import Image

    return np.asarray(img.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32).ravel() / 255.0


def make_images_with_copies(home) -> dict[str, str]:
    """12 noise images (24 px square) plus copies of image 0 at 48 and 36 px, of image 5 at 60 px."""
    from PIL import Image

    from store import Workspace

    rng = np.random.default_rng(7)
    images = {f"img{i:02d}.png": Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (24, 24), Image.NEAREST) for i in range(12)}
    images["img00-big.png"] = images["img00.png"].resize((48, 48), Image.BILINEAR)
    images["img00-mid.png"] = images["img00.png"].resize((36, 36), Image.BILINEAR)
    images["img05-big.png"] = images["img05.png"].resize((60, 60), Image.BILINEAR)
    ws = Workspace.open(str(home))
    try:
        ds = ws.datasets.create("browser-dups")
        results = ds.items.upload([(name, _png(img)) for name, img in images.items()], dir="/pics")
        fs = ws.feature_sets.create(name="browser-dups-set", size=64)
        ws.create_features(fs, np.stack([_vector(images[r.name]) for r in results]), [r.item.id for r in results])
        return {r.name: r.item.id for r in results}
    finally:
        ws.close()


def hidden_names(home, ids: dict[str, str]) -> set[str]:
    from store import Workspace

    ws = Workspace.open(str(home))
    try:
        return {name for name, item_id in ids.items() if ws.get_item(item_id).hidden}
    finally:
        ws.close()


def test_find_copies_hide_the_smaller_ones_and_undo(page, server):
    ids = make_images_with_copies(server["home"])
    goto(page, server["url"], "duplicates", "Duplicates and outliers")
    select(page, "dup:set", "browser-dups-set · size 64")
    expect(page.get_by_text("2 group(s), 3 items beyond one per group")).to_be_visible(timeout=60_000)
    groups = page.locator('[class*="st-key-dup-group-0-gallery-cell-"]')
    expect(groups).to_have_count(3)
    for n, name in enumerate(["img00.png", "img00-big.png", "img00-mid.png"]):  # first uploaded first
        expect(groups.nth(n)).to_contain_text(f"/pics/{name} · d=")
    expect(page.locator(".js-plotly-plot:visible").first).to_be_visible()
    shot(page, "duplicates-groups")

    # The slider's left end (0): no two images are identical.
    thumb = widget(page, "dup:threshold").locator('input[type="range"]')
    thumb.focus()
    thumb.press("Home")
    settle(page)
    expect(page.get_by_text("No near-duplicates at this threshold")).to_be_visible()

    # Back at the suggestion (a fresh page), keep the largest image of every group.
    goto(page, server["url"], "duplicates", "Duplicates and outliers")
    select(page, "dup:set", "browser-dups-set · size 64")
    expect(page.get_by_text("2 group(s), 3 items beyond one per group")).to_be_visible(timeout=60_000)
    choose(page, "dup:rule-all", "largest image")
    click(page, "dup:hide-all")
    expect(page.get_by_text("Hid 3 item(s) and kept one in each of 2 group(s).")).to_be_visible()
    expect(page.get_by_text("No near-duplicates at this threshold")).to_be_visible()
    assert hidden_names(server["home"], ids) == {"img00.png", "img00-mid.png", "img05.png"}
    shot(page, "duplicates-hidden")

    click(page, "dup:undo")
    expect(page.get_by_text("Showing 3 item(s) again.")).to_be_visible()
    expect(page.get_by_text("2 group(s), 3 items beyond one per group")).to_be_visible()
    assert hidden_names(server["home"], ids) == set()

    # Outliers: a gallery of the farthest images with their scores.
    choose(page, "dup:view", "Outliers")
    expect(page.get_by_text("farthest from their 5th nearest neighbour")).to_be_visible(timeout=30_000)
    cells = page.locator('[class*="st-key-out-gallery-cell-"]')
    expect(cells).to_have_count(15)
    assert " · d=" in cells.first.inner_text()
    shot(page, "duplicates-outliers")
