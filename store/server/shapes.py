"""featurelab records -> the JSON entities the Dataloop SDK reads (``from_json`` of
dtlpy's Project, Dataset, Item, FeatureSet, Feature, Command), and pages of them.

``base`` is the server's own URL: dtlpy builds links (``stream``, ``url``) from it."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Callable

from ..records import Dataset, Feature, FeatureSet, Item, Pages
from .auth import EMAIL

PROJECT_NAME = "featurelab"


def iso(epoch: float | None) -> str | None:
    """Dataloop's timestamps are ISO-8601 UTC strings with milliseconds."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def project_json(project_id: str, created_at: float | None, base: str) -> dict:
    return {
        "id": project_id, "name": PROJECT_NAME, "createdAt": iso(created_at), "updatedAt": iso(created_at),
        "creator": EMAIL, "org": None, "role": "owner", "account": None, "archived": False, "isBlocked": False,
        "contributors": [{"email": EMAIL, "role": "owner"}], "featureConstraints": {}, "systemProject": False,
        "url": f"{base}/projects/{project_id}",
    }


def dataset_json(ds: Dataset, project_id: str, items_count: int, base: str) -> dict:
    return {
        "id": ds.id, "name": ds.name, "createdAt": iso(ds.created_at), "updatedAt": iso(ds.created_at),
        "creator": EMAIL, "projects": [project_id], "itemsCount": items_count, "annotated": 0,
        "metadata": {}, "readonly": False, "accessLevel": "owner", "readableType": "dataset",
        "url": f"{base}/datasets/{ds.id}", "items": f"{base}/datasets/{ds.id}/items",
    }


def system_metadata(item: Item) -> dict:
    """The facts Dataloop keeps under ``metadata.system``, computed from featurelab's item."""
    system: dict[str, Any] = {
        "originalname": item.name, "size": item.size, "mimetype": item.mimetype, "kind": item.kind,
        "sha256": item.sha256, "encoding": "7bit", "refs": [], "isBinary": item.kind != "text",
    }
    if item.width is not None:
        system["width"] = item.width
    if item.height is not None:
        system["height"] = item.height
    return system


def item_json(item: Item, project_id: str, base: str) -> dict:
    meta = {k: v for k, v in item.metadata.items() if k != "system"}
    out = {
        "id": item.id, "datasetId": item.dataset_id, "dataset": f"{base}/datasets/{item.dataset_id}",
        "projectId": project_id, "name": item.name, "filename": item.filename, "dir": item.dir,
        "type": item.type, "hidden": item.hidden, "createdAt": iso(item.created_at),
        "updatedAt": iso(item.created_at), "creator": EMAIL, "annotated": False,
        "metadata": {**meta, "system": system_metadata(item)},
        "url": f"{base}/items/{item.id}", "stream": f"{base}/items/{item.id}/stream",
        "thumbnail": f"{base}/items/{item.id}/stream",
    }
    if item.distance is not None:
        out["distance"] = item.distance  # featurelab's addition: the true distance to the query
    return out


def feature_set_json(fs: FeatureSet, project_id: str, base: str) -> dict:
    model = fs.model or {}
    return {
        "id": fs.id, "name": fs.name, "size": fs.size, "type": fs.set_type, "entityType": fs.entity_type,
        "project": project_id, "modelId": model.get("id", model.get("name")), "createdAt": iso(fs.created_at),
        "creator": EMAIL, "updatedBy": EMAIL, "org": None, "metric": fs.metric,
        "url": f"{base}/features/sets/{fs.id}",
    }


def feature_json(f: Feature, project_id: str, base: str) -> dict:
    out = {
        "id": f.id, "featureSetId": f.feature_set_id, "entityId": f.entity_id, "datasetId": f.dataset_id,
        "value": f.value.tolist(), "createdAt": iso(f.created_at), "project": project_id, "org": None,
        "version": None, "parentId": None, "creator": EMAIL, "url": f"{base}/features/vectors/{f.id}",
    }
    if f.distance is not None:
        out["distance"] = f.distance
    return out


def command_json(command_id: str, spec: dict, status: str, created_at: float, base: str, error: str | None = None) -> dict:
    return {
        "id": command_id, "type": "ExportDataset", "status": status, "progress": 100, "spec": spec,
        "error": error, "createdAt": iso(created_at), "updatedAt": iso(created_at),
        "url": f"{base}/commands/{command_id}",
    }


def paged_json(items: list[dict], total: int, page: int, page_size: int) -> dict:
    """What dtlpy's PagedEntities reads back from a query."""
    return {
        "items": items, "totalItemsCount": total, "totalPagesCount": math.ceil(total / page_size) if page_size else 0,
        "hasNextPage": (page + 1) * page_size < total, "page_offset": page, "page_size": page_size,
    }


def page_json(pages: Pages, shape: Callable[[Any], dict]) -> dict:
    return paged_json([shape(r) for r in pages.items], pages.items_count, pages.page, pages.page_size)
