"""Boxes on image items, and COCO import."""
import json

import pytest

from store import InvalidInput
from tests.conftest import png_bytes


def test_add_list_delete_boxes(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    img = ds.items.upload_bytes(png_bytes(100, 80), "p.png").item
    a = img.annotations.create("cat", (10, 5, 50, 40), metadata={"score": 0.9})
    b = img.annotations.create("dog", [0, 0, 100, 80])
    assert [x.label for x in img.annotations.list()] == ["cat", "dog"]
    assert a.box == (10, 5, 50, 40) and a.metadata == {"score": 0.9}
    img.annotations.delete(a.id)
    assert [x.id for x in img.annotations.list()] == [b.id]
    assert [x.label for x in ds.annotations.list().items] == ["dog"]


@pytest.mark.parametrize("box", [(0, 0, 101, 10), (20, 5, 10, 40), (0, 0, float("nan"), 5), (1, 2, 3)])
def test_bad_boxes_refused(ws_embedded, box):
    ds = ws_embedded.datasets.create("d")
    img = ds.items.upload_bytes(png_bytes(100, 80), "p.png").item
    with pytest.raises(InvalidInput):
        img.annotations.create("x", box)
    assert img.annotations.list() == []


def test_boxes_only_on_images(ws_embedded):
    ds = ws_embedded.datasets.create("d")
    txt = ds.items.upload_bytes(b"words", "t.txt").item
    with pytest.raises(InvalidInput, match="boxes go on images"):
        txt.annotations.create("x", (0, 0, 1, 1))


def test_import_coco(ws_embedded, tmp_path):
    ds = ws_embedded.datasets.create("d")
    a = ds.items.upload_bytes(png_bytes(64, 48), "a.png", dir="/train").item
    b = ds.items.upload_bytes(png_bytes(64, 48, (0, 0, 0)), "b.png").item
    coco = {
        "images": [{"id": 1, "file_name": "train/a.png"}, {"id": 2, "file_name": "b.png"},
                   {"id": 3, "file_name": "missing.png"}],
        "categories": [{"id": 7, "name": "cat"}, {"id": 8, "name": "dog"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 20]},
            {"id": 12, "image_id": 2, "category_id": 8, "bbox": [0, 0, 64, 48]},
            {"id": 13, "image_id": 3, "category_id": 8, "bbox": [0, 0, 5, 5]},
            {"id": 14, "image_id": 2, "category_id": 8, "bbox": [60, 0, 10, 10]},  # leaves the image
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    report = ds.annotations.import_coco(path)
    assert report["added"] == 2 and report["skipped"] == 2
    assert any("missing.png" in p for p in report["problems"])
    (ann_a,) = a.annotations.list()
    assert ann_a.label == "cat" and ann_a.box == (1, 2, 11, 22)
    assert [x.label for x in b.annotations.list()] == ["dog"]
    with pytest.raises(InvalidInput, match="not a COCO file"):
        ds.annotations.import_coco({"images": 3})
