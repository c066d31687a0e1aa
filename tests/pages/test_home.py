"""The app's pages under streamlit's AppTest, against a real workspace in tmp_path."""
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from store import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _app(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("FEATURELAB_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    monkeypatch.chdir(ROOT)
    from components.state import workspace

    workspace.clear()
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def test_home_empty_workspace_says_what_to_do(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch).run()
    assert not at.exception
    assert any("workspace is empty" in i.value for i in at.info)


def test_home_lists_feature_sets_with_counts(tmp_path, monkeypatch):
    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([("a.txt", b"a"), ("b.txt", b"b")])]
        fs = ws.feature_sets.create(name="minilm", size=4, model="all-MiniLM-L6-v2")
        fs.features.create_many(np.ones((2, 4), dtype=np.float32), items)
    at = _app(tmp_path, monkeypatch).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["1", "2", "1"]
    table = at.dataframe[0].value
    assert table.iloc[0]["name"] == "minilm" and table.iloc[0]["vectors"] == 2
