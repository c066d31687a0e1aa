"""Drop many files on the uploader: a result per file, thumbnails, and the size limit."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import UPLOAD_LIMIT_MB
from tests.browser.ui import click, drop_files, fill, goto, select, settle, shot, table_cells_when, widget
from tests.pages.helpers import png

pytestmark = pytest.mark.browser


def test_drop_files_into_a_new_dataset_and_folder(page, server):
    goto(page, server["url"], "upload", "Upload")
    expect(page.get_by_text(f"Up to {UPLOAD_LIMIT_MB} MB per file", exact=False).first).to_be_visible()
    select(page, "upload:dataset", "+ New dataset…")
    fill(page, "upload:dataset:new", "browser-pets")
    fill(page, "upload:folder", "/animals")
    red = png((220, 30, 30), (64, 48))
    drop_files(page, "upload:files:", [
        ("red.png", red, "image/png"),
        ("blue.png", png((30, 30, 220), (64, 48)), "image/png"),
        ("note.txt", b"a cat on a mat", "text/plain"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg at all", "image/jpeg"),
        ("copy-of-red.png", red, "image/png"),
        ("huge.bin", b"\0" * ((UPLOAD_LIMIT_MB + 1) * 2**20), "application/octet-stream"),
    ])
    # The file above the limit is refused by the uploader itself, with a plain message.
    refused = page.locator('[data-testid="stFileChip"][aria-invalid="true"]')
    expect(refused).to_have_count(1)
    expect(refused).to_have_attribute("aria-label", re.compile(r"^huge\.bin"))
    expect(refused).to_contain_text(f"File must be {UPLOAD_LIMIT_MB}.0MB or smaller.")
    refused.hover()
    shot(page, "upload-dropped")
    button = widget(page, "upload:go").locator("button")
    expect(button).to_contain_text("Upload 5 files", timeout=30_000)
    click(page, "upload:go")
    expect(page.get_by_text("Into browser-pets: 3 added, 1 duplicate, 1 rejected.")).to_be_visible(timeout=30_000)
    # Thumbnails of what arrived, with their place in the dataset.
    gallery = page.locator('[data-testid="stImage"]')
    expect(gallery).to_have_count(2)
    expect(gallery.filter(has_text="/animals/red.png")).to_have_count(1)
    expect(gallery.filter(has_text="/animals/blue.png")).to_have_count(1)
    expect(page.locator('[data-testid="stText"]').filter(has_text="a cat on a mat")).to_have_count(1)
    # A result per file, in the table: the broken image is rejected, and says why.
    cells = table_cells_when(page, lambda c: "broken.jpg" in c)
    rows = {cells[i]: cells[i + 1 : i + 4] for i in range(0, len(cells), 4)}
    assert rows["broken.jpg"][0] == "rejected" and rows["broken.jpg"][1].startswith("broken.jpg: not a readable image")
    assert rows["copy-of-red.png"] == ["duplicate", "same content as /animals/red.png; kept that item", "/animals/red.png"]
    assert [rows[n][0] for n in ("red.png", "blue.png", "note.txt")] == ["added"] * 3
    for img in gallery.locator("img").all():
        assert img.evaluate("e => e.complete && e.naturalWidth") > 0
    settle(page)
    shot(page, "upload-results")
