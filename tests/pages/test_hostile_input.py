"""Hostile and broken input through the app (issue 7, item 5): files dropped on the Upload
page that must be refused one by one with a plain message while the good ones go in, and
filter JSON on the Search page that must give a plain error, never a traceback. The same
inputs through the API and the command line are tested in tests/store/."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pages.helpers import ok, png, texts


def _jpeg(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes that say they are a huge PNG: the header of a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _bomb_between_limits() -> bytes:
    """A real 12000 x 9000 PNG (108 M pixels, a few KB): above Pillow's limit, below twice
    it, where Pillow only warns."""
    buf = io.BytesIO()
    Image.new("1", (12000, 9000)).save(buf, format="PNG")
    return buf.getvalue()


def _results(at) -> dict:
    table = at.dataframe[0].value
    return {row["file"]: (row["status"], row["message"]) for _, row in table.iterrows()}


def test_broken_and_hostile_files_are_refused_one_by_one_and_nothing_bad_is_stored(open_page, app_ws):
    good_jpeg, good_png = _jpeg(), png((10, 200, 30))
    dropped = {
        "empty.jpg": (b"", "the file is empty (0 bytes)"),
        "cut.jpg": (good_jpeg[: len(good_jpeg) // 2], "not a readable image"),
        "bomb.png": (_bomb_between_limits(), "decompression bomb"),
        "huge-header.png": (_png_claiming(100_000, 100_000), "decompression bomb"),
        "../../x.jpg": (good_jpeg, "'..'"),
        "text.jpg": (b"just some words, not a picture", "image"),
    }
    at = ok(open_page("app_pages/upload.py"))
    at.text_input(key="upload:dataset:new").input("hostile")
    at.file_uploader[0].set_value(
        [(name, data, "image/jpeg") for name, (data, _) in dropped.items()]
        + [("fine.png", good_png, "image/png"), ("fine.jpg", good_jpeg, "image/jpeg")]).run()
    at.button(key="upload:go").click().run()
    ok(at)  # no exception, no error element: each refusal is a row of the results table

    results = _results(at)
    for name, (_, needle) in dropped.items():
        shown = name.rsplit("/", 1)[-1] if name not in results else name
        status, message = results[shown]
        assert status == "rejected" and needle in message, (name, message)
        assert "Traceback" not in message and "File \"" not in message
    assert results["fine.png"][0] == "added" and results["fine.jpg"][0] == "added"
    assert "2 added, 0 duplicate, 6 rejected" in texts(at)

    ds = app_ws.datasets.get(dataset_name="hostile")
    assert sorted(i.filename for i in ds.items.list().all()) == ["/fine.jpg", "/fine.png"]
    stored = sorted(p for p in (app_ws.path / "blobs").rglob("*") if p.is_file())
    assert len(stored) == 2 and sorted(p.read_bytes() for p in stored) == sorted([good_png, good_jpeg])
    root = Path(__file__).resolve().parents[2]
    for escaped in (root.parent / "x.jpg", root.parent.parent / "x.jpg", app_ws.path.parent / "x.jpg"):
        assert not escaped.exists()


# Malformed JSON and an unknown operator are in tests/pages/test_search.py already.
MALFORMED = [
    ('[1, 2, 3]', "JSON object"),
    ('{"filter": {"name": {"$in": 5}}, "resource": "items"}', "$in"),
    ('{"filter": {}, "resource": "items", "pageSize": 100000000}', "pageSize"),
    ('{"filter": {}, "resource": "items", "page": -1}', "page"),
    ('{"filter": {}, "resource": "planets"}', "resource"),
    ('{"resource": "items", "join": {"on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},'
     ' "filter": {"value": {"$euclid": {"input": [1, 2]}}, "featureSetId": "no-such-set"}}}', "no-such-set"),
    ('{"filter": ' + '{"$and": [' * 60 + "{}" + "]}" * 60 + ', "resource": "items"}', "nest"),
]


@pytest.mark.parametrize("typed,needle", MALFORMED, ids=[f"json-{i}" for i in range(len(MALFORMED))])
def test_malformed_filter_json_on_the_search_page_is_a_plain_error(open_page, app_ws, typed, needle):
    ds = app_ws.datasets.create("d")
    item = ds.items.upload_bytes(b"alpha", "a.txt").item
    app_ws.feature_sets.create(name="s", size=2).features.create(value=[1.0, 2.0], entity=item)
    at = ok(open_page("app_pages/search.py"))
    at.text_area(key="search:json").input(typed)
    at.button(key="search:run-json").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and needle.lower() in errors[0].lower(), errors
    assert "Traceback" not in errors[0] and "Something went wrong" not in errors[0]


HOSTILE_MESSAGES = [
    "filter error at filter.$and[1]: $euclid needs an input",
    "a *set* named __init__ costs $5 and $6 ~~here~~ `rm -rf` <b>bold</b> [link](http://x) # not a heading",
    "key(s) ['a|b', 'c\\\\d'] appear more than once in my_file_v2.csv; :red[colour] :smile: C:\\temp",
]


@pytest.mark.parametrize("message", HOSTILE_MESSAGES, ids=["latex", "markdown", "colours"])
def test_error_messages_are_shown_as_plain_text(message):
    """What user_errors shows renders (CommonMark, as Streamlit's markdown) to the message itself:
    no emphasis, code, link, strike or HTML, and every $ escaped so Streamlit draws no LaTeX."""
    import html
    import re

    markdown_it = pytest.importorskip("markdown_it")
    from components.state import plain

    shown = plain(message)
    rendered = markdown_it.MarkdownIt("commonmark").enable("strikethrough").render(shown).strip()
    assert rendered.startswith("<p>") and rendered.endswith("</p>") and rendered.count("<") == 2, rendered
    assert html.unescape(rendered[3:-4]) == message
    assert all(shown[m.start() - 1] == "\\" for m in re.finditer(r"\$", shown))
    assert re.search(r"(?<!\\):\w", shown) is None  # no Streamlit :colour[...] or :emoji:
