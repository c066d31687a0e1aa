"""Small helpers to drive the Streamlit app in Chromium. Widgets are found by their key:
Streamlit puts ``st-key-<key>`` on each keyed widget's container (characters other than
letters, digits, '-' and '_' become '-')."""
from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


def key_class(key: str) -> str:
    return "st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def widget(page: Page, key: str) -> Locator:
    return page.locator(f".{key_class(key)}")


def widget_prefix(page: Page, prefix: str) -> Locator:
    return page.locator(f'[class*="{key_class(prefix)}"]')


def goto(page: Page, base_url: str, path: str, heading: str) -> None:
    page.goto(f"{base_url}/{path}")
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    settle(page)


def settle(page: Page, timeout: float = 60_000) -> None:
    """Wait until the app has finished its current run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout,
    )


def fill(page: Page, key: str, text: str) -> None:
    box = widget(page, key).locator("input, textarea").first
    box.fill(text)
    box.press("Control+Enter" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")
    settle(page)


def select(page: Page, key: str, option: str) -> None:
    widget(page, key).locator("input").first.click()
    widget(page, key).locator("input").first.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def click(page: Page, key: str) -> None:
    widget(page, key).locator("button").first.click()
    settle(page)


def choose(page: Page, key: str, label: str) -> None:
    """A radio option by its label."""
    widget(page, key).get_by_text(label, exact=True).click()
    settle(page)


def drop_files(page: Page, key_prefix: str, files: list[tuple[str, bytes, str]]) -> None:
    """What a drag and drop hands the uploader: the files, at once."""
    widget_prefix(page, key_prefix).locator('input[type="file"]').set_input_files(
        [{"name": n, "mimeType": m, "buffer": b} for n, b, m in files]
    )


def result_card(page: Page, n: int, key: str = "search:results", last: str = "More like this") -> str:
    """The text of the ``n``-th card of a results gallery, once its caption (with the
    distance), its Open and its ``last`` button are drawn: they render after the image, in any order."""
    cell = widget(page, f"{key}:cell:{n}")
    for part in (" d=", "Open", last):  # each may come last
        expect(cell).to_contain_text(part, timeout=30_000)
    return cell.inner_text().replace("\n", " ")


def shot(page: Page, name: str) -> Path:
    """The whole page: the app scrolls inside its main block, so grow the window to fit."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size or {"width": 1400, "height": 1000}
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 0 }"
    )
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height), 6000))})
    page.wait_for_timeout(300)
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


def table_cells(page: Page, index: int = 0) -> list[str]:
    """The cells of a st.dataframe (drawn on a canvas; its accessible copy appears on hover)."""
    frame = page.locator('[data-testid="stDataFrame"]').nth(index)
    frame.hover()
    frame.locator("td").first.wait_for(state="attached")
    return [t.strip() for t in frame.locator("td").all_inner_texts()]


def table_cells_when(page: Page, ready, index: int = 0, timeout_s: float = 30) -> list[str]:
    """The cells once ``ready(cells)`` holds: the table's accessible copy is redrawn a moment
    after the rerun that changed it, so a read right after a success message may be stale."""
    cells: list[str] = []
    for _ in range(int(timeout_s * 2)):
        cells = table_cells(page, index)
        if ready(cells):
            return cells
        page.wait_for_timeout(500)
    return cells


LEFT_HALF = [(0.02, 0.02), (0.48, 0.02), (0.48, 0.98), (0.02, 0.98), (0.02, 0.03)]


def lasso(page: Page, path: list[tuple[float, float]] = LEFT_HALF, *, chart_key: str | None = None,
          wait: bool = True) -> float:
    """Draw a lasso with the mouse on a plotly map (the first on the page, or the chart with
    ``chart_key``), through points given as fractions of the plot area; then let the app's
    rerun finish unless ``wait`` is False. Returns ``time.perf_counter()`` at the release."""
    scope = widget(page, chart_key) if chart_key else page.locator(".js-plotly-plot:visible")
    drag = scope.locator(".nsewdrag").first
    expect(drag).to_be_visible(timeout=30_000)
    drag.scroll_into_view_if_needed()  # the mouse acts inside the viewport only
    page.wait_for_timeout(500)
    box = drag.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + path[0][0] * w, y0 + path[0][1] * h)
    page.mouse.down()
    for fx, fy in path[1:]:
        page.mouse.move(x0 + fx * w, y0 + fy * h, steps=12)
    released = time.perf_counter()
    page.mouse.up()
    if wait:
        settle(page)
    return released
