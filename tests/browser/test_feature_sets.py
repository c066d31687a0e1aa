"""Create a feature set (a model fixes its size), then delete one after a confirmation."""
import pytest
from playwright.sync_api import expect

from tests.browser.ui import click, fill, goto, select, shot, table_cells_when, widget

pytestmark = pytest.mark.browser


def test_create_a_set_with_a_model_and_delete_one(page, server):
    goto(page, server["url"], "feature_sets", "Feature sets")
    fill(page, "sets:name", "browser-minilm")
    select(page, "sets:model", "all-MiniLM-L6-v2 · runs offline")
    size = widget(page, "sets:size-fixed:384").locator("input")
    expect(size).to_have_value("384")
    expect(size).to_be_disabled()
    click(page, "sets:create")
    expect(page.get_by_text("Created feature set browser-minilm (size 384).")).to_be_visible()

    fill(page, "sets:name", "browser-scratch")
    select(page, "sets:model", "None (vectors come from elsewhere)")
    fill(page, "sets:size", "8")
    click(page, "sets:create")
    expect(page.get_by_text("Created feature set browser-scratch (size 8).")).to_be_visible()
    cells = table_cells_when(page, lambda c: "browser-minilm" in c and "browser-scratch" in c)
    assert "browser-minilm" in cells and "browser-scratch" in cells
    row = cells.index("browser-minilm")
    assert cells[row : row + 6] == ["browser-minilm", "384", "embeddings", "item", "all-MiniLM-L6-v2", "0"]

    select(page, "sets:delete-pick", "browser-scratch")
    click(page, "sets:delete")
    expect(page.get_by_text("Delete browser-scratch and its 0 vectors?")).to_be_visible()
    shot(page, "sets-confirm-delete")
    click(page, "sets:delete-yes")
    expect(page.get_by_text("Deleted feature set browser-scratch.")).to_be_visible()
    assert "browser-scratch" not in table_cells_when(page, lambda c: "browser-scratch" not in c)
    shot(page, "sets-after-delete")
