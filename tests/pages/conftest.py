"""Page tests: the real app (app.py, st.navigation) under AppTest, over a real workspace in
tmp_path. ``app_ws`` is the very Workspace the app uses (st.cache_resource), so a test can
set up data and check what a click wrote without a second connection."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELAB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FEATURELAB_WARM_NUMBA", "0")  # a fresh workspace per test: no minute of compiling each
    monkeypatch.setenv("FEATURELAB_WARM_MODELS", "0")  # nor a background model load racing the test's own
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    from components.state import workspace

    workspace.clear()

    def open_(page: str = "app_pages/home.py") -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        if page != "app_pages/home.py":
            at.switch_page(page)
        return at.run()

    yield open_
    workspace.clear()


@pytest.fixture
def app_ws(open_page):
    from components.state import workspace

    return workspace()


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory) -> str:
    """A small random-weight open_clip model in a folder, loaded through the user's path."""
    from tests.pages.helpers import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
