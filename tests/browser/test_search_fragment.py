"""The Search page's form and results are a fragment (a slider step or a new text reruns
them alone): in Chromium the results still follow the distance slider and the query, the
pickers above keep their state, the filter JSON shows once opened, and the gallery's "Open" (a dialog inside the fragment) and
"More like this" still work."""
import pytest
from playwright.sync_api import expect

from tests.browser.data import vector_notes
from tests.browser.ui import choose, fill, goto, result_card, select, settle, widget, widget_prefix

pytestmark = pytest.mark.browser

NOTES = {"near.txt": [1.0, 0.0, 0.0], "mid.txt": [0.0, 2.0, 0.0], "far.txt": [0.0, 0.0, 3.0]}


def step_slider(page, key: str) -> None:
    handle = widget_prefix(page, "search:maxd:").get_by_role("slider").first
    handle.focus()
    handle.press(key)
    settle(page)


def test_the_slider_and_the_query_rerun_the_results_inside_the_fragment(page, server):
    vector_notes(server["home"], "browser-fragment", "browser-fragment-set", NOTES, dir="/frag")
    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-fragment-set · size 3")
    choose(page, "search:mode", "Vector or feature id")
    fill(page, "search:vector", "1, 0, 0")
    expect(page.get_by_role("heading", name="3 results")).to_be_visible()
    # The query's JSON is drawn once its expander is opened (and then follows the form).
    code = page.locator('[data-testid="stCode"]')
    expect(code).to_have_count(0)
    page.get_by_text("Advanced: the filter JSON").click()
    settle(page)
    expect(code.first).to_contain_text('"forigen"')

    # The distance slider to its left end (0): only the vector at distance 0 is left.
    step_slider(page, "Home")
    expect(page.get_by_role("heading", name="1 result", exact=True)).to_be_visible()
    assert "/frag/near.txt · d=0.0000" in result_card(page, 0)
    expect(widget(page, "search:results:cell:1")).to_have_count(0)
    # The parts outside the fragment are still drawn, with their state.
    expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()
    expect(widget(page, "search:set").get_by_role("combobox")).to_have_value("browser-fragment-set · size 3")
    assert "max=0" in page.url  # the search link follows the fragment's reruns
    expect(code.first).to_contain_text('"$lte": 0')

    # Back to the right end (no limit), and a new query: the results follow both.
    step_slider(page, "End")
    expect(page.get_by_role("heading", name="3 results")).to_be_visible()
    first_open = widget(page, "search:results:cell:0").get_by_role("button", name="Open").element_handle()
    fill(page, "search:vector", "0, 0, 3")
    expect(widget(page, "search:results:cell:0")).to_contain_text("/frag/far.txt · d=0.0000", timeout=30_000)
    # The cells are keyed by position: new results update them in place (the same button node),
    # not remounted; and the button opens what the cell shows now (below).
    assert first_open.evaluate("button => button.isConnected")

    # "Open" shows the item's dialog from inside the fragment; "More like this" searches by that item.
    widget(page, "search:results:cell:0").get_by_role("button", name="Open").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("/frag/far.txt", timeout=30_000)
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    settle(page)
    widget(page, "search:results:cell:0").get_by_role("button", name="More like this").click()
    settle(page)
    expect(widget(page, "search:mode").get_by_role("radio", name="Item")).to_be_checked()
    expect(widget(page, "search:results:cell:0")).to_contain_text("/frag/far.txt · d=0.0000", timeout=30_000)
