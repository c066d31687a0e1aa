"""The REST API the unmodified Dataloop SDK (``dtlpy``) talks to, over one ``Workspace``.

Every route calls the same facade as the app and the command line; this module only
translates HTTP + Dataloop JSON to facade calls and records back (``shapes``).
Handlers are ``async`` and do their work inline: the event loop runs them one at a time,
so the workspace never sees two requests at once.

Errors: ``NotFound`` -> 404, ``InvalidInput``/``FilterError`` -> 400, ``WorkspaceBusy`` ->
409, each with ``{"message": ...}`` (dtlpy retries a 5xx five times with back-off, so a
user's mistake must never become one). Every request needs ``Authorization: Bearer <token>``."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import FeaturelabError, InvalidInput, NotFound, WorkspaceBusy
from ..ids import new_id
from ..records import Item, Pages
from ..workspace import Workspace, merge_json
from . import shapes
from .auth import EMAIL, token_matches

STATUS = {NotFound: 404, WorkspaceBusy: 409, InvalidInput: 400}


@dataclass
class Context:
    """What the routes share: the workspace, the token, the one local project, and the
    exports made so far (command id -> the export's JSON file, kept under the workspace)."""

    ws: Workspace
    token: str
    exports: dict[str, dict] = field(default_factory=dict)

    @property
    def project_id(self) -> str:
        return self.ws.id

    @property
    def export_dir(self) -> Path:
        return self.ws.path / "cache" / "server-exports"


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text, "error": text, "status": status}, status_code=status)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body:
        return {}
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc


def create_app(ws: Workspace, token: str) -> FastAPI:
    """The FastAPI app serving ``ws`` to whoever presents ``token``."""
    ctx = Context(ws, token)
    app = FastAPI(title="featurelab (Dataloop-compatible API)", docs_url=None, redoc_url=None, openapi_url=None)
    _add_guards(app, ctx)
    for add in (_project_routes, _dataset_routes, _item_routes, _feature_set_routes, _feature_routes,
                _export_routes):
        add(app, ctx)
    return app


# ---- auth and errors -----------------------------------------------------------------
def _add_guards(app: FastAPI, ctx: Context) -> None:
    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if not token_matches(request.headers.get("authorization"), ctx.token):
            return message(401, "missing or wrong token: send 'Authorization: Bearer <token>' with the token "
                                "`python -m store serve` printed (kept in the workspace's server-token)")
        return await call_next(request)

    @app.exception_handler(FeaturelabError)
    async def featurelab_error(request: Request, exc: FeaturelabError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        return message(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return message(400, f"bad request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return message(404, f"no such endpoint or resource: {request.method} {request.url.path}")
        return message(exc.status_code, str(exc.detail))


# ---- projects and the user ------------------------------------------------------------
def _project_routes(app: FastAPI, ctx: Context) -> None:
    def project(request: Request) -> dict:
        return shapes.project_json(ctx.project_id, None, base_url(request))

    @app.get("/users/me")
    async def me(request: Request):
        return {"id": EMAIL, "email": EMAIL, "username": EMAIL, "firstName": "featurelab", "lastName": "local"}

    @app.get("/projects")
    async def projects(request: Request):
        return [project(request)]

    @app.get("/projects/{project_id}")
    async def get_project(project_id: str, request: Request):
        if project_id != ctx.project_id:
            raise NotFound(f"no project {project_id!r}: this featurelab workspace is the one project {ctx.project_id!r}")
        return project(request)

    @app.get("/projects/{name}/name")
    async def project_by_name(name: str, request: Request):
        if name != shapes.PROJECT_NAME:
            raise NotFound(f"no project named {name!r}: the local project is {shapes.PROJECT_NAME!r}")
        return project(request)


# ---- datasets ---------------------------------------------------------------------------
def _dataset_routes(app: FastAPI, ctx: Context) -> None:
    def dataset_out(ds, request: Request) -> dict:
        return shapes.dataset_json(ds, ctx.project_id, ds.items.count(), base_url(request))

    @app.get("/datasets/{dataset_id}")
    async def get_dataset(dataset_id: str, request: Request):
        return dataset_out(ctx.ws.datasets.get(dataset_id=dataset_id), request)

    @app.post("/datasets/query")
    async def query_datasets(request: Request):
        doc = await read_json(request)
        found = ctx.ws.search({**doc, "resource": "datasets"})
        return shapes.page_json(found, lambda ds: dataset_out(ds, request))

    @app.get("/datasets")
    async def list_datasets(request: Request):
        return [dataset_out(ds, request) for ds in ctx.ws.datasets.list()]

    @app.post("/datasets")
    async def create_dataset(request: Request):
        body = await read_json(request)
        return dataset_out(ctx.ws.datasets.create(body.get("name")), request)

    @app.patch("/datasets/{dataset_id}")
    async def patch_dataset(dataset_id: str, request: Request):
        body = await read_json(request)  # dtlpy sends the whole dataset: only the name can change here
        ds = ctx.ws.datasets.get(dataset_id=dataset_id)
        return dataset_out(ctx.ws.datasets.rename(ds.id, body.get("name", ds.name)), request)

    @app.delete("/datasets/{dataset_id}")
    async def delete_dataset(dataset_id: str):
        ctx.ws.datasets.delete(dataset_id)
        return Response(status_code=200)

    @app.post("/datasets/{dataset_id}/query")
    async def query_items(dataset_id: str, request: Request):
        ctx.ws.datasets.get(dataset_id=dataset_id)
        doc = await read_json(request)
        if isinstance(doc, dict) and ("delete" in doc or "update" in doc):  # items.delete/update(filters=...)
            return {"count": ctx.ws.bulk(doc, dataset_id=dataset_id)}
        return _shape_result(ctx.ws.search(doc, dataset_id=dataset_id), ctx, request)


def _shape_result(result: Any, ctx: Context, request: Request) -> Any:
    """A search answer as JSON: a page of items, annotations or features; a bulk
    operation's summary is passed on as it is."""
    if not isinstance(result, Pages):
        return result
    base = base_url(request)

    def shape(rec: Any) -> dict:
        if isinstance(rec, Item):
            return shapes.item_json(rec, ctx.project_id, base)
        if hasattr(rec, "feature_set_id"):
            return shapes.feature_json(rec, ctx.project_id, base)
        return rec.to_json()

    return shapes.page_json(result, shape)


# ---- items ------------------------------------------------------------------------------
def _item_routes(app: FastAPI, ctx: Context) -> None:
    @app.get("/items/{item_id}")
    async def get_item(item_id: str, request: Request):
        if item_id in ctx.exports:
            return ctx.exports[item_id]["item"]
        return shapes.item_json(ctx.ws.get_item(item_id), ctx.project_id, base_url(request))

    @app.get("/items/{item_id}/stream")
    async def stream_item(item_id: str, request: Request):
        if item_id in ctx.exports:
            data, mimetype = Path(ctx.exports[item_id]["path"]).read_bytes(), "application/json"
        else:
            item = ctx.ws.get_item(item_id)
            data, mimetype = item.download(), item.mimetype
        return _ranged(data, mimetype, request.headers.get("range"))

    @app.patch("/items/{item_id}")
    async def patch_item(item_id: str, request: Request):
        diff = await read_json(request)
        item = ctx.ws.get_item(item_id)
        hidden = diff.get("hidden")
        metadata = None
        if isinstance(diff.get("metadata"), dict):
            # dtlpy patches send only what changed, and echo back the system facts it was given
            metadata = merge_json(item.metadata, {k: v for k, v in diff["metadata"].items() if k != "system"})
        item = ctx.ws.update_item(item_id, hidden=hidden, metadata=metadata)
        return shapes.item_json(item, ctx.project_id, base_url(request))

    @app.delete("/items/{item_id}")
    async def delete_item(item_id: str):
        ctx.ws.get_item(item_id)
        ctx.ws.delete_items([item_id])
        return Response(status_code=200)

    @app.post("/datasets/{dataset_id}/items")
    async def upload_item(dataset_id: str, request: Request):
        ds = ctx.ws.datasets.get(dataset_id=dataset_id)
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("an upload is multipart form data with a 'file' part (and 'path')")
        folder, _, name = str(form.get("path") or upload.filename or "").rpartition("/")
        metadata = _form_json(form.get("metadata"))
        result = ds.items.upload_bytes(await upload.read(), name or str(upload.filename), folder or "/",
                                       metadata=metadata)
        if result.status == "rejected":
            raise InvalidInput(result.message)
        op = "created" if result.status == "added" else "skipped"
        return JSONResponse(shapes.item_json(result.item, ctx.project_id, base_url(request)),
                            headers={"x-item-op": op})


def _form_json(text: Any) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the upload's metadata is not valid JSON: {exc}") from exc


def _ranged(data: bytes, mimetype: str, range_header: str | None) -> Response:
    """The bytes, from the start dtlpy asks for when it resumes (``Range: bytes=N-``)."""
    start = 0
    if range_header and range_header.startswith("bytes=") and range_header[6:].split("-")[0].isdigit():
        start = int(range_header[6:].split("-")[0])
    if start <= 0 or start >= len(data):
        return Response(data, media_type=mimetype or "application/octet-stream")
    return Response(data[start:], status_code=206, media_type=mimetype or "application/octet-stream",
                    headers={"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"})


# ---- feature sets -------------------------------------------------------------------------
def _feature_set_routes(app: FastAPI, ctx: Context) -> None:
    def out(fs, request: Request) -> dict:
        return shapes.feature_set_json(fs, ctx.project_id, base_url(request))

    @app.post("/features/sets")
    async def create_feature_set(request: Request):
        body = await read_json(request)
        entity_type = body.get("entityType") or "item"
        fs = ctx.ws.feature_sets.create(name=body.get("name"), size=body.get("size"),
                                        set_type=body.get("type") or "embeddings", entity_type=entity_type,
                                        model_id=body.get("modelId"))
        return [out(fs, request)]  # dtlpy reads the first of a list

    @app.get("/features/sets/{set_id}")
    async def get_feature_set(set_id: str, request: Request):
        return out(ctx.ws.feature_sets.get(feature_set_id=set_id), request)

    @app.post("/features/sets/query")
    async def query_feature_sets(request: Request):
        doc = await read_json(request)
        found = ctx.ws.search({**doc, "resource": "feature_sets"})
        return shapes.page_json(found, lambda fs: out(fs, request))

    @app.delete("/features/sets/{set_id}")
    async def delete_feature_set(set_id: str):
        ctx.ws.feature_sets.delete(set_id)
        return Response(status_code=200)

    @app.patch("/features/sets/{set_id}")
    async def patch_feature_set(set_id: str, request: Request):
        body = await read_json(request)
        current = out(ctx.ws.feature_sets.get(feature_set_id=set_id), request)
        fixed = sorted(k for k in ("size", "entityType") if k in body and body[k] != current[k])
        if fixed:
            raise InvalidInput(f"a feature set's {', '.join(fixed)} cannot change (its vectors depend on it); "
                               "create a new set instead")
        fs = ctx.ws.feature_sets.update(set_id, name=body.get("name"), set_type=body.get("type"))
        return out(fs, request)


# ---- feature vectors ----------------------------------------------------------------------
def _feature_routes(app: FastAPI, ctx: Context) -> None:
    @app.post("/features/vectors")
    async def create_features(request: Request):
        body = await read_json(request)
        entries = body if isinstance(body, list) else [body]
        if not entries or not all(isinstance(e, dict) for e in entries):
            raise InvalidInput("POST /features/vectors takes a list of {featureSetId, entityId, value}")
        base, made = base_url(request), []
        for set_id in dict.fromkeys(e.get("featureSetId") for e in entries):  # one bulk create per set
            group = [e for e in entries if e.get("featureSetId") == set_id]
            if not isinstance(set_id, str):
                raise InvalidInput("each feature needs a featureSetId")
            fs = ctx.ws.feature_sets.get(feature_set_id=set_id)
            made += fs.features.create_many([e.get("value") for e in group], [e.get("entityId") for e in group])
        by_key = {(f.feature_set_id, f.entity_id): f for f in made}
        return [shapes.feature_json(by_key[(e["featureSetId"], e.get("entityId"))], ctx.project_id, base)
                for e in entries]

    @app.get("/features/vectors/{feature_id}")
    async def get_feature(feature_id: str, request: Request):
        return shapes.feature_json(ctx.ws.get_feature(feature_id), ctx.project_id, base_url(request))

    @app.delete("/features/vectors/{feature_id}")
    async def delete_feature(feature_id: str):
        ctx.ws.delete_features([feature_id])
        return Response(status_code=200)

    @app.post("/features/vectors/query")
    async def query_features(request: Request):
        doc = await read_json(request)
        return _shape_result(ctx.ws.search(doc), ctx, request)


# ---- export and its command ---------------------------------------------------------------
def _export_routes(app: FastAPI, ctx: Context) -> None:
    @app.post("/datasets/{dataset_id}/export")
    async def export(dataset_id: str, request: Request):
        body = await read_json(request)
        ds = ctx.ws.datasets.get(dataset_id=dataset_id)
        command_id = new_id()
        records = _export_records(ctx, ds, body, base_url(request))
        ctx.export_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.export_dir / f"{command_id}.json"
        path.write_text(json.dumps(records), encoding="utf-8")
        item_id = f"export-{command_id}"
        now = time.time()
        ctx.exports[item_id] = {"path": str(path), "item": _export_item(item_id, ds.id, path, now, request)}
        cmd = shapes.command_json(command_id, {"outputItemId": item_id}, "success", now, base_url(request))
        ctx.exports[command_id] = {"command": cmd}
        return cmd

    @app.get("/commands/{command_id}")
    async def get_command(command_id: str):
        entry = ctx.exports.get(command_id)
        if entry is None or "command" not in entry:
            raise NotFound(f"no command {command_id!r}")
        return entry["command"]


def _export_records(ctx: Context, ds, body: dict, base: str) -> list[dict]:
    """The SDK's export JSON: the items the query selects, each with ``itemVectors``
    (and ``annotations`` when asked), made by the workspace's own export."""
    query = body.get("itemsQuery") or {}
    doc = {"filter": query.get("filter") or {}, "resource": "items"}
    if query.get("join"):
        doc["join"] = query["join"]
    items = list(ctx.ws.search(doc, dataset_id=ds.id).all())
    with_vectors = bool(body.get("includeItemVectors"))
    vector_filter = (body.get("itemsVectorQuery") or {}).get("filter")
    with_annotations = bool((body.get("annotations") or {}).get("include"))
    tmp = ctx.export_dir / f".tmp-{new_id()}"
    try:
        ctx.ws.export_dataset(ds, tmp, include_feature_vectors=with_vectors, feature_vector_filters=vector_filter,
                              include_annotations=with_annotations, item_ids=[i.id for i in items])
        exported = {r["id"]: r for r in (json.loads(p.read_text()) for p in (tmp / "json").rglob("*.json"))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = []
    for item in items:
        rec = shapes.item_json(item, ctx.project_id, base)
        rec["itemVectors"] = [{**v, "datasetId": item.dataset_id} for v in exported[item.id].get("itemVectors", [])]
        if with_annotations:
            rec["annotations"] = exported[item.id].get("annotations", [])
        out.append(rec)
    return out


def _export_item(item_id: str, dataset_id: str, path: Path, now: float, request: Request) -> dict:
    base = base_url(request)
    name = f"{dataset_id}.json"
    return {
        "id": item_id, "datasetId": dataset_id, "name": name, "filename": f"/{name}", "dir": "/",
        "type": "file", "hidden": True, "createdAt": shapes.iso(now),
        "metadata": {"system": {"size": path.stat().st_size, "mimetype": "application/json", "originalname": name}},
        "url": f"{base}/items/{item_id}", "stream": f"{base}/items/{item_id}/stream",
    }
