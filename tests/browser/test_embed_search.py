"""Embed with a small offline model, then search by text and by a dropped image and see
the expected first result."""
import pytest
from playwright.sync_api import expect

from tests.browser.ui import choose, click, drop_files, fill, goto, select, settle, shot, widget
from tests.pages.helpers import png, tiny_clip

pytestmark = pytest.mark.browser

NOTES = [("cat.txt", b"a cat sleeps on the sofa"), ("bread.txt", b"how to bake a loaf of bread"),
         ("market.txt", b"stock prices fell sharply today"), ("goal.txt", b"the striker scored a goal")]


def upload(page, server, dataset: str, files) -> None:
    goto(page, server["url"], "upload", "Upload")
    select(page, "upload:dataset", "+ New dataset…")
    fill(page, "upload:dataset:new", dataset)
    drop_files(page, "upload:files:", files)
    expect(widget(page, "upload:go").locator("button")).to_contain_text(f"Upload {len(files)} files", timeout=30_000)
    click(page, "upload:go")
    expect(page.get_by_text(f"Into {dataset}: {len(files)} added")).to_be_visible(timeout=30_000)


def create_set(page, server, name: str, model: str, size: int, local: str | None = None) -> None:
    goto(page, server["url"], "feature_sets", "Feature sets")
    fill(page, "sets:name", name)
    select(page, "sets:model", model)
    if local:
        fill(page, "sets:local-model", local)
    expect(widget(page, f"sets:size-fixed:{size}").locator("input")).to_have_value(str(size))
    click(page, "sets:create")
    expect(page.get_by_text(f"Created feature set {name} (size {size}).")).to_be_visible()


def embed(page, server, dataset: str, feature_set: str, count: int) -> None:
    """``feature_set``: as the picker shows it, e.g. "notes · size 384"."""
    goto(page, server["url"], "embed", "Embed")
    select(page, "embed:dataset", dataset)
    select(page, "embed:set", feature_set)
    expect(page.get_by_text("Runs on:")).to_contain_text("CPU")
    click(page, "embed:go")
    expect(page.get_by_text(f"Done: {count} embedded")).to_be_visible(timeout=180_000)
    expect(page.locator('[data-testid="stProgress"]')).to_contain_text(f"{count} / {count}")
    settle(page)


def first_result(page) -> str:
    """The text of the first card of the results gallery: its name and distance first."""
    card = widget(page, "search:results:cell:0")
    expect(card).to_contain_text(" d=", timeout=60_000)  # the caption renders after its image
    text = card.inner_text().replace("\n", " ")
    return text[text.index("/"):]


def test_embed_texts_and_search_by_text(page, server):
    upload(page, server, "browser-notes", [(n, b, "text/plain") for n, b in NOTES])
    create_set(page, server, "browser-notes-minilm", "all-MiniLM-L6-v2 · runs offline", 384)
    embed(page, server, "browser-notes", "browser-notes-minilm · size 384", 4)
    shot(page, "embed-texts-done")

    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-notes-minilm · size 384")
    fill(page, "search:text", "baking bread at home")
    assert first_result(page).startswith("/bread.txt · d=")
    shot(page, "search-by-text")


def test_embed_images_with_a_local_clip_and_search_by_a_dropped_image(page, server, models_dir):
    model = tiny_clip(models_dir / "tiny-clip")
    images = {"red.png": png((230, 10, 10), (64, 64)), "green.png": png((10, 200, 20), (64, 64)),
              "blue.png": png((10, 20, 230), (64, 64))}
    upload(page, server, "browser-colours", [(n, b, "image/png") for n, b in images.items()])
    create_set(page, server, "browser-tiny-clip", "A checkpoint on this machine (file or folder)…", 32,
               local=model.removeprefix("local-dir:"))
    embed(page, server, "browser-colours", "browser-tiny-clip · size 32", 3)

    goto(page, server["url"], "search", "Search")
    select(page, "search:set", "browser-tiny-clip · size 32")
    choose(page, "search:mode", "Image")
    drop_files(page, "search:image", [("query.png", images["green.png"], "image/png")])
    text = first_result(page)
    assert text.startswith("/green.png · d=0.0000"), text  # the same picture: distance 0
    shot(page, "search-by-image")
