"""Scope by dataset in Chromium: save the search results as a dataset of their own, and the
next search (scoped to the dataset being worked on) shows each hit once, not twice; "All
datasets" shows both copies and says which dataset each comes from."""
import pytest
from playwright.sync_api import expect

from tests.browser.data import vector_notes
from tests.browser.ui import choose, click, fill, goto, result_card, select, settle, shot, widget

pytestmark = pytest.mark.browser

NOTES = {"lambda.txt": [1.0, 0.0, 0.0], "loop.txt": [0.0, 2.0, 0.0], "class.txt": [0.0, 0.0, 3.0]}


def card(page, n: int) -> str:
    return result_card(page, n)


def search_lambda(page) -> None:
    choose(page, "search:mode", "Vector or feature id")
    fill(page, "search:vector", "1, 0, 0")


def test_a_saved_selection_does_not_double_the_next_search(page, server):
    vector_notes(server["home"], "browser-scope", "browser-scope-set", NOTES)
    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-scope-set · size 3")
    search_lambda(page)
    expect(page.get_by_role("heading", name="3 results")).to_be_visible()
    assert "/lambda.txt · d=0.0000" in card(page, 0)

    # Save the results as a dataset: the same items and vectors, now in two datasets of the set.
    page.get_by_role("button", name="Save or export these 3").click()
    fill(page, "search:selected:save-name", "browser-scope-copy")
    click(page, "search:selected:save")
    expect(page.get_by_text("Saved 3 items with 0 annotations and 3 in browser-scope-set to browser-scope-copy.")
           ).to_be_visible()
    page.keyboard.press("Escape")
    settle(page)

    # The next search is scoped to the dataset being worked on: one hit for lambda.txt, not two.
    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-scope-set · size 3")
    expect(widget(page, "search:scope").locator("input").first).to_be_visible()
    search_lambda(page)
    expect(page.get_by_role("heading", name="3 results")).to_be_visible()
    assert "/lambda.txt · d=0.0000" in card(page, 0) and "lambda.txt" not in card(page, 1)
    shot(page, "scope-one-hit")

    # All datasets, on request: both copies, and which dataset each result comes from.
    select(page, "search:scope", "All datasets")
    expect(page.get_by_role("heading", name="6 results")).to_be_visible()
    assert "/lambda.txt · d=0.0000" in card(page, 0) and "/lambda.txt · d=0.0000" in card(page, 1)
    expect(page.get_by_text("From browser-scope (3), browser-scope-copy (3)")).to_be_visible()
    shot(page, "scope-all-datasets")
