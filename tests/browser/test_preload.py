"""plotly.js is loaded by the first page a tab opens, out of sight, so the first map,
histogram or comparison of a tab does not wait for it (bench/map_browser.py)."""
import pytest
from playwright.sync_api import expect

from components.preload import KEY
from tests.browser.ui import goto

pytestmark = pytest.mark.browser


def test_home_loads_plotly_in_a_hidden_chart(page, server):
    goto(page, server["url"], "", "featurelab")
    hidden = page.locator(f".st-key-{KEY} .js-plotly-plot")
    expect(hidden).to_be_attached(timeout=30_000)  # plotly.js ran: it drew the one-point chart
    expect(hidden).to_be_hidden()
    assert page.locator(".js-plotly-plot:visible").count() == 0
