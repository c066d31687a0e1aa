"""Chroma collections in Chromium: open a Chroma folder built with chromadb, search a
collection by a record's id, map it with PCA, lasso a cluster, and import it into a feature
set; the folder is never written."""
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, fill, goto, lasso, shot, table_cells_when, widget
from tests.store.test_chroma_source import folder_state

pytestmark = pytest.mark.browser


def make_chroma(folder) -> list[str]:
    """A collection of 24 records in two far-apart clusters (ids l* and r*)."""
    import chromadb
    from chromadb.config import Settings

    rng = np.random.default_rng(2)
    values = rng.normal(scale=0.2, size=(24, 6)).astype(np.float32)
    values[12:] += 5
    ids = [f"l{i:02d}" for i in range(12)] + [f"r{i:02d}" for i in range(12)]
    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    client.create_collection("notes", embedding_function=None).add(
        ids=ids, embeddings=values, documents=[f"note {i}" for i in ids],
        metadatas=[{"side": i[0]} for i in ids])
    client.close()
    return ids


def test_open_search_map_and_import_a_chroma_folder(page, server, tmp_path):
    folder = tmp_path / "their-chroma"
    make_chroma(folder)
    before = folder_state(folder)
    goto(page, server["url"], "collections", "Chroma collections")
    fill(page, "collections:location", str(folder))
    expect(page.get_by_text("24 records · dimension 6").first).to_be_visible(timeout=30_000)

    fill(page, "collections:query", "r03")
    expect(page.get_by_text("10 results")).to_be_visible()
    cells = table_cells_when(page, lambda c: "r03" in c, index=2)
    found = [c for c in cells if c[:1] in ("l", "r") and c[1:].isdigit()]
    assert found[0] == "r03" and len(found) == 10 and all(c.startswith("r") for c in found)

    choose(page, "collections:method", "PCA")
    click(page, "collections:project")
    lasso(page, chart_key="collections:chart")  # the left half: one cluster
    expect(page.get_by_text("12 selected")).to_be_visible(timeout=30_000)
    chosen = [c for c in table_cells_when(page, lambda c: len(c) > 0, index=3) if c[:1] in ("l", "r") and c[1:].isdigit()]
    assert len(chosen) == 12 and len({c[0] for c in chosen}) == 1  # one whole cluster

    fill(page, "collections:dataset", "from-their-chroma")
    widget(page, "collections:import").scroll_into_view_if_needed()
    click(page, "collections:import")
    expect(page.get_by_text("imported 24 vectors into notes-chroma, 24 new items in from-their-chroma")).to_be_visible(
        timeout=60_000)
    shot(page, "collections-imported")
    assert folder_state(folder) == before
