"""Search that goes further, in Chromium: 1,050 results paged past the old k = 100 (Next,
and a typed page number), and the search kept in the address bar: the same URL opened in a
new tab (a bookmark, a shared link) restores the set, the query, k, the filters and the page."""
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, fill, goto, result_card, select, settle, shot, widget

pytestmark = pytest.mark.browser

N = 1050
SET = "browser-line-set"


@pytest.fixture(scope="module")
def line(server):
    """N text items on a line (item i at distance i from the origin); deleted afterwards, so
    the shared workspace's Feature sets table stays as other tests expect it."""
    from store import Workspace

    ws = Workspace.open(str(server["home"]))
    try:
        ds = ws.datasets.create("browser-line")
        items = [r.item for r in ds.items.upload([(f"p{i:04d}.txt", f"point {i}".encode()) for i in range(N)])]
        by_name = {i.name: i for i in items}
        fs = ws.feature_sets.create(name=SET, size=2)
        ws.create_features(fs, np.array([[i, 0] for i in range(N)], np.float32),
                           [by_name[f"p{i:04d}.txt"].id for i in range(N)])
        ids = (ds.id, fs.id)
    finally:
        ws.close()
    yield
    ws = Workspace.open(str(server["home"]))
    try:
        ws.feature_sets.delete(ids[1])
        ws.datasets.delete(ids[0])
    finally:
        ws.close()


def search_origin(page, server, k: str) -> None:
    goto(page, server["url"], "search", "Search")
    select(page, "search:set", f"{SET} · size 2")
    choose(page, "search:mode", "Vector or feature id")
    fill(page, "search:vector", "0, 0")
    fill(page, "search:k", k)


def test_paging_past_100(page, server, line):
    search_origin(page, server, "1000")
    expect(page.get_by_role("heading", name=f"1,000 results of {N:,}")).to_be_visible()
    expect(page.get_by_text("Showing 1–48 of 1,000")).to_be_visible()
    click(page, "search:results:next")
    click(page, "search:results:next")
    expect(page.get_by_text("Showing 97–144 of 1,000")).to_be_visible()
    assert "/p0096.txt · d=96" in result_card(page, 0)
    assert "/p0100.txt · d=100" in result_card(page, 4)  # past the old k = 100
    shot(page, "search-page-3")
    fill(page, "search:results:page", "21")  # the last page: 40 results
    expect(page.get_by_text("Showing 961–1,000 of 1,000")).to_be_visible()
    assert "/p0999.txt · d=999" in result_card(page, 39)
    expect(widget(page, "search:results:next").locator("button")).to_be_disabled()
    click(page, "search:results:prev")
    expect(page.get_by_text("Showing 913–960 of 1,000")).to_be_visible()


def test_a_url_restores_a_search(page, server, line, browser):
    search_origin(page, server, "300")
    fill(page, "search:vector", "500, 0")
    click(page, "search:results:next")
    expect(page.get_by_text("Showing 49–96 of 300")).to_be_visible()
    first = result_card(page, 0)
    assert re.search(r"/p0(476|524)\.txt · d=24", first)
    expect(page).to_have_url(re.compile(r"/search\?.*page=2"))
    url = page.url
    assert "set=browser-line-set" in url and "k=300" in url and "by=vector" in url

    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # another person, opening the link
    try:
        tab = other.new_page()
        tab.goto(url)
        expect(tab.get_by_role("heading", name="Search", exact=True)).to_be_visible()
        settle(tab)
        expect(tab.get_by_text("Showing 49–96 of 300")).to_be_visible(timeout=30_000)
        assert result_card(tab, 0) == first  # the same set, query and page
        expect(widget(tab, "search:k").locator("input")).to_have_value("300")
        expect(widget(tab, "search:vector").locator("textarea")).to_have_value("500, 0")
        shot(tab, "search-restored-from-url")
        # Away and back by the menu: the search stays, and the URL says it again.
        tab.get_by_role("link", name="Map").click()
        settle(tab)
        tab.get_by_role("link", name="Search").click()
        settle(tab)
        expect(tab.get_by_text("Showing 49–96 of 300")).to_be_visible(timeout=30_000)
        expect(tab).to_have_url(re.compile(r"/search\?.*k=300"))
    finally:
        other.close()
