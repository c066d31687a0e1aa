"""Browser tests: Debian's Chromium driven by Playwright against a real `streamlit run
app.py` on 127.0.0.1, over a workspace in a temporary folder. Each test saves a screenshot
of its page under tests/artifacts/browser/ (git ignores tests/artifacts/)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.app_server import CHROMIUM_ARGS, chromium_path, running_app
from tests.browser.ui import shot

# The uploader's limit for this server (MB): small, so the test can cross it cheaply.
UPLOAD_LIMIT_MB = 5
# 2D maps above this many points are density images on this server: a 3,000-point map is
# "large" here, every other test's map (tens of points) stays a plotly scatter.
LARGE_MAP_ABOVE = 2_500


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-models")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`streamlit run app.py` on a free port of 127.0.0.1 with its own workspace."""
    home = tmp_path_factory.mktemp("browser-workspace")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATURELAB_LARGE_MAP_ABOVE", str(LARGE_MAP_ABOVE))  # the server inherits it
        with running_app(home / "ws", home.parent / "streamlit.log", upload_limit_mb=UPLOAD_LIMIT_MB,
                         warm_numba=False) as app:  # the maps here are PCA; keep the 2 cores for the tests
            yield {"url": app.url, "home": app.home, "log": app.log}


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (scripts/test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh browser tab on the app; a screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    # An assertion waits as long as an action may: on 2 shared cores under load, a fragment's
    # rerun can take longer than expect's default 5 s (CI saw a page change land after it).
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(server["url"])
    tab.get_by_role("heading", name="featurelab").wait_for()
    yield tab
    try:
        shot(tab, f"{request.node.name}-end")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
