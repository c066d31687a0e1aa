"""An error that keeps the page: shown where it happened, in plain text, and every other
section of the page still on screen."""
import pytest
from playwright.sync_api import expect

from tests.browser.ui import click, drop_files, fill, goto, select, shot, table_cells_when, widget

pytestmark = pytest.mark.browser


def _sections_visible(page) -> None:
    for heading in ("Import precomputed vectors", "Delete a feature set"):
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(widget(page, "sets:import-go").locator("button")).to_be_visible()
    expect(widget(page, "sets:delete-pick")).to_be_visible()


def test_a_duplicate_name_keeps_the_page_and_a_dollar_stays_a_dollar(page, server):
    goto(page, server["url"], "feature_sets", "Feature sets")
    fill(page, "sets:name", "errors-taken")
    select(page, "sets:model", "None (vectors come from elsewhere)")
    fill(page, "sets:size", "5")
    click(page, "sets:create")
    expect(page.get_by_text("Created feature set errors-taken (size 5).")).to_be_visible()

    # The same name again: the error under Create, and the table, Import and Delete stay.
    fill(page, "sets:name", "errors-taken")
    click(page, "sets:create")
    alert = page.locator('[data-testid="stAlertContentError"]')
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("a feature set named 'errors-taken' already exists")
    assert "errors-taken" in table_cells_when(page, lambda c: "errors-taken" in c)
    _sections_visible(page)
    shot(page, "errors-duplicate-name")

    # A file whose name holds $: drawn as the characters, not as LaTeX, and named as dropped.
    # (into whichever set is first: none of this session's sets has size 2)
    drop_files(page, "sets:import-file", [("prices in $ and $k.csv", b"name,a,b\nx.txt,1,2\n", "text/csv")])
    expect(widget(page, "sets:import-go").locator("button")).to_be_enabled()
    click(page, "sets:import-go")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("prices in $ and $k.csv has 2 values per row but feature set '")
    expect(alert.locator(".katex, math")).to_have_count(0)
    assert "vectors.csv" not in alert.inner_text()
    _sections_visible(page)
    shot(page, "errors-dollar-literal")


@pytest.fixture(autouse=True)
def _drop_the_set_afterwards(server):
    """The browser tests share one workspace, and the Feature sets table shows only its first
    rows on screen: leave no extra set behind for the tests after this one."""
    yield
    from store import Workspace

    with Workspace.open(server["home"]) as ws:
        for fs in ws.feature_sets.list():
            if fs.name == "errors-taken":
                ws.feature_sets.delete(fs.id)
