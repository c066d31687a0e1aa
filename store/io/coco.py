"""Boxes from a COCO JSON file onto the images of a dataset."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..workspace import Workspace


def _load(coco) -> dict:
    if isinstance(coco, dict):
        return coco
    try:
        return json.loads(Path(coco).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read COCO file {coco}: {exc}") from exc


def import_coco(ws: "Workspace", dataset_id: str, coco: str | os.PathLike | dict) -> dict:
    """Match COCO images to items by ``file_name`` (full path in the dataset, else a unique
    base name) and add each ``bbox`` ([x, y, w, h]) as a box with its category's name.
    Returns counts and the problems met; boxes of unmatched images are skipped."""
    doc = _load(coco)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise InvalidInput("not a COCO file: it needs 'images' and 'annotations' lists")
    categories = {c.get("id"): str(c.get("name")) for c in doc.get("categories", []) if isinstance(c, dict)}
    items = ws.catalog.all("SELECT id, dir, name FROM items WHERE dataset_id=? AND kind='image'", (dataset_id,))
    by_path = {(r["dir"].rstrip("/") + "/" + r["name"]): r["id"] for r in items}
    by_name: dict[str, list[str]] = {}
    for r in items:
        by_name.setdefault(r["name"], []).append(r["id"])
    image_item: dict = {}
    problems: list[str] = []
    for img in doc["images"]:
        if not isinstance(img, dict) or "file_name" not in img:
            problems.append(f"image entry without file_name: {str(img)[:80]}")
            continue
        fname = "/" + str(img["file_name"]).replace("\\", "/").lstrip("/")
        base = fname.rsplit("/", 1)[-1]
        if fname in by_path:
            image_item[img.get("id")] = by_path[fname]
        elif len(by_name.get(base, [])) == 1:
            image_item[img.get("id")] = by_name[base][0]
        else:
            problems.append(f"{img['file_name']}: no single matching image item in the dataset")
    added = skipped = 0
    cache = {}
    for ann in doc["annotations"]:
        item_id = image_item.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if item_id is None:
            skipped += 1
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            problems.append(f"annotation {ann.get('id')}: bbox must be [x, y, width, height]")
            skipped += 1
            continue
        label = categories.get(ann.get("category_id"), str(ann.get("category_id")))
        item = cache.get(item_id) or cache.setdefault(item_id, ws.get_item(item_id))
        x, y, w, h = bbox
        try:
            ws.add_box(item, label, (x, y, x + w, y + h), {"coco_id": ann.get("id")})
            added += 1
        except InvalidInput as exc:
            problems.append(f"annotation {ann.get('id')}: {exc}")
            skipped += 1
    return {"added": added, "skipped": skipped, "problems": problems}
