"""Load the sample data, export a dataset with its vectors as a zip, import it back."""
import json
import zipfile

import pytest
from playwright.sync_api import expect

from store import Workspace
from tests.browser.ui import click, fill, goto, select, settle, shot, table_cells_when, widget, drop_files

pytestmark = pytest.mark.browser


def test_sample_data_then_export_and_import(page, server, tmp_path):
    goto(page, server["url"], "", "featurelab")
    click(page, "home:load-sample")
    expect(page.get_by_text("Sample data ready")).to_be_visible(timeout=180_000)
    settle(page)
    # The sets table is drawn on a canvas that exposes only its visible rows, and earlier
    # tests add sets of their own: read the app's workspace (the catalog) instead.
    with Workspace.open(server["home"]) as ws:
        counts = {s.name: s.count() for s in ws.feature_sets.list()}
    assert counts["sample-digits-pixels"] == 400 and counts["sample-help-minilm"] > 70
    shot(page, "home-sample-loaded")

    goto(page, server["url"], "export", "Export and import")
    select(page, "export:dataset", "sample")
    click(page, "export:zip")
    expect(page.get_by_text("sample.zip is ready")).to_be_visible(timeout=60_000)
    with page.expect_download() as download:
        widget(page, "export:download").locator("button").click()
    path = tmp_path / "sample.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as z:
        header = json.loads(z.read("dataset.json"))
        record = json.loads(z.read("json/help/lambda.txt.json"))
    sets = {s["id"]: s["name"] for s in header["featureSets"]}
    assert {"sample-digits-pixels", "sample-help-minilm"} <= set(sets.values())
    assert [sets[v["featureSetId"]] for v in record["itemVectors"]] == ["sample-help-minilm"]
    assert len(record["itemVectors"][0]["value"]) == 384

    drop_files(page, "import:zip", [("sample.zip", path.read_bytes(), "application/zip")])
    settle(page)
    fill(page, "import:name", "sample-copy")
    click(page, "import:go")
    expect(page.get_by_text(f"Imported sample-copy ({header['itemCount']} items).")).to_be_visible(timeout=120_000)
    shot(page, "export-import")

    goto(page, server["url"], "", "featurelab")
    cells = table_cells_when(page, lambda c: "sample-copy" in c)
    assert "sample-copy" in cells and cells[cells.index("sample-copy") + 1] == str(header["itemCount"])
