"""The embedding job: the items of a dataset (or the boxes on its images) into a feature
set, batched, resumable and cancellable; and query vectors for search.

    report = embed_dataset(ws, "pets", "pets-clip", model="ViT-B-32/laion2b_s34b_b79k")
    vector = query_vector(ws, "pets-clip", text="a black cat")

How it is fast: the model sees batches; threads decode and preprocess the next images
while it runs (see ``embedders.images.decode_pixels`` and ``embedders.fastprep``); and a
writer thread stores finished batches (one SQLite transaction and one Chroma upsert each,
merged when several wait) while the model goes on. See bench/README.md. How it
loses nothing: each write is atomic, so a crash or a kill leaves whole features or none,
and a rerun embeds only the entities that have no feature yet.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, Union

import numpy as np

from . import devices
from .registry import check_runs_here, load_embedder, model_size
from .spec import (
    DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, DEFAULT_TEXT_SIZE, ModelSpec, parse_spec,
)
from ..errors import FeaturelabError, InvalidInput
from ..records import Dataset, FeatureSet

if TYPE_CHECKING:
    from .base import Embedder
    from ..workspace import Workspace

ProgressFn = Callable[[int, int, float], None]  # (done, total, items per second)
Cancel = Union[threading.Event, Callable[[], bool], None]
TEXT_BYTES = 256 * 1024  # the start of a text is plenty: every model truncates to a few hundred tokens


@dataclass
class EmbedReport:
    """How a job ended. ``skipped``: entities the model cannot embed (an 'other' file, an
    image for a text model); ``failed``: files that could not be read or decoded. Both are
    listed in ``failures`` as (entity id, name, reason). ``already_done``: entities that had
    a feature before the job and were left alone (pass ``recompute=True`` to redo them)."""

    feature_set: str
    model: str
    device: str
    batch_size: int
    total: int = 0
    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    already_done: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def items_per_second(self) -> float:
        return (self.embedded + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        state = "cancelled: " if self.cancelled else ""
        return (
            f"{state}embedded {self.embedded}, skipped {self.skipped}, failed {self.failed}"
            f" (already done {self.already_done}) into {self.feature_set} with {self.model}"
            f" in {self.seconds:.1f} s, {self.items_per_second:.1f} items/s on {self.device}, batch {self.batch_size}"
        )


@dataclass(frozen=True)
class _Task:
    entity_id: str
    name: str  # what a failure report shows: the item's filename, with the box label
    modality: str  # image | text
    path: Path
    box: tuple[float, float, float, float] | None = None


# ---- feature sets and their models ---------------------------------------------------------
def create_feature_set(
    ws: "Workspace", name: str, model: "str | dict | ModelSpec", *, entity_type: str = "item",
    set_type: str = "embeddings", weights: str | None = None, normalize: bool | None = None,
    size: int | None = None,
) -> FeatureSet:
    """A feature set linked to ``model``, with the size that model makes. A model that
    cannot run here (weights neither on this machine nor reachable) is refused now, before
    any job: ``ModelUnavailable`` says what is missing and the ways out. ``size``, when
    given, must be the model's."""
    spec = check_runs_here(parse_spec(model, weights=weights, normalize=normalize))
    made = model_size(spec)
    if size is not None and size != made:
        raise InvalidInput(f"{spec.label} makes vectors of size {made}, not {size}: leave the size out, or pick a "
                           f"model of size {size}")
    size = made
    return ws.feature_sets.create(
        name=name, size=size, set_type=set_type, entity_type=entity_type, model=spec.to_dict(size)
    )


def model_for_set(fs: FeatureSet, model: "str | dict | ModelSpec | None" = None,
                  default: str | None = None) -> ModelSpec:
    """The model a job on ``fs`` uses: the one asked for, which must be the set's own when
    the set has one; else the set's; else ``default``. The set's stored ``normalize`` wins."""
    stored = parse_spec(fs.model) if fs.model else None
    if model is None:
        if stored is None and default is None:
            raise InvalidInput(f"feature set {fs.name!r} is linked to no model; name one (e.g. --model {DEFAULT_TEXT_MODEL})")
        return stored or parse_spec(default)
    spec = parse_spec(model)
    if stored is None:
        return spec
    if not spec.same_model(stored):
        raise InvalidInput(
            f"feature set {fs.name!r} holds vectors of {stored.label}, not {spec.label}: vectors of two models "
            f"cannot be compared. Embed with {stored.label}, or create a new set for {spec.label}"
        )
    normalize = fs.model.get("normalize", spec.normalize)
    return ModelSpec(spec.backend, spec.name, spec.pretrained, spec.weights or stored.weights, bool(normalize))


def check_size(fs: FeatureSet, spec: ModelSpec, size: int) -> None:
    if size != fs.size:
        raise InvalidInput(
            f"model {spec.label} makes vectors of size {size} but feature set {fs.name!r} holds size {fs.size}; "
            f"create a set of size {size} for it (python -m store embed creates one when the set does not exist)"
        )


def _link_model(ws: "Workspace", fs: FeatureSet, spec: ModelSpec, size: int) -> None:
    """Store the full model description on the set, so search can load the same model."""
    stored = spec.to_dict(size)
    if fs.model == stored:
        return
    with ws.catalog.transaction() as c:
        c.execute("UPDATE feature_sets SET model=? WHERE id=?", (json.dumps(stored, sort_keys=True), fs.id))
    fs.model = stored


# ---- the job ---------------------------------------------------------------------------------
def embed_dataset(
    ws: "Workspace",
    dataset: Dataset | str,
    feature_set: FeatureSet | str,
    *,
    model: "str | dict | ModelSpec | None" = None,
    device: str | None = None,
    batch_size: int | None = None,
    recompute: bool = False,
    progress: ProgressFn | None = None,
    cancel: Cancel = None,
    workers: int | None = None,
    ray: str | None = None,
    actors: int | None = None,
) -> EmbedReport:
    """Embed the items of ``dataset`` (image items through the image tower, text items
    through the text tower or a sentence model; the boxes on its images for an annotation
    set) into ``feature_set``. Only entities without a feature in the set are embedded,
    unless ``recompute``. ``progress(done, total, items_per_second)`` is called from this
    thread once the model is loaded (0 done) and after each batch is stored or queued; ``cancel``
    (an Event or a callable) stops the job after the current batch, keeping what is done.
    ``ray``: a Ray cluster's address (or ``"auto"``) to run decoding and the model on, in
    ``actors`` actors (default: from the cluster's resources); see ``embedders.ray_job``."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInput(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    ds = resolve_dataset(ws, dataset)
    fs = _current_set(ws, feature_set)
    spec = model_for_set(fs, model, default=default_model(ws, ds, fs.entity_type, fs.size))
    if spec.size_from_config:  # known without weights: refuse before loading any
        check_size(fs, spec, model_size(spec))
    if ray is not None:  # the model loads on the cluster, not here
        from .ray_job import embed_on_ray

        report = embed_on_ray(ws, ds, fs, spec, address=ray, actors=actors, batch_size=batch_size,
                              recompute=recompute, progress=progress, cancel=cancel, workers=workers)
        if isinstance(feature_set, FeatureSet):
            feature_set.model = fs.model
        return report
    embedder = load_embedder(spec, device)
    check_size(fs, spec, embedder.size)
    _link_model(ws, fs, spec, embedder.size)
    if isinstance(feature_set, FeatureSet):
        feature_set.model = fs.model  # the caller's copy sees the link too
    tasks, report = _plan(ws, ds, fs, embedder, recompute)
    main_modality = "image" if any(t.modality == "image" for t in tasks) else "text"
    report.batch_size = batch_size or embedder.batch_size(main_modality)
    started = time.perf_counter()
    if progress:  # the model is loaded and the work counted: the total shows before the first batch ends
        progress(0, report.total, 0.0)
    try:
        _run(ws, fs, embedder, tasks, report, batch_size, workers, progress, cancel, started)
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _current_set(ws: "Workspace", feature_set: FeatureSet | str) -> FeatureSet:
    """The set as stored now (a caller's object may predate a model link or a deletion)."""
    set_id = feature_set.id if isinstance(feature_set, FeatureSet) else ws.feature_sets.resolve(feature_set).id
    return ws.feature_sets.get(feature_set_id=set_id)


def resolve_dataset(ws: "Workspace", dataset: Dataset | str) -> Dataset:
    """A dataset given as itself, its id or its name."""
    if isinstance(dataset, Dataset):
        return dataset
    try:
        return ws.datasets.get(dataset_id=dataset)
    except FeaturelabError:
        return ws.datasets.get(dataset_name=dataset)


def default_model(ws: "Workspace", dataset: Dataset, entity_type: str = "item", size: int | None = None) -> str:
    """The model for a job that names none: the packaged text model for text (a text-only
    dataset, or a set of that model's size), else a CLIP model."""
    if entity_type == "annotation":
        return DEFAULT_IMAGE_MODEL
    kinds = {r[0] for r in ws.catalog.all("SELECT DISTINCT kind FROM items WHERE dataset_id=?", (dataset.id,))}
    if "text" in kinds and ("image" not in kinds or size == DEFAULT_TEXT_SIZE):
        return DEFAULT_TEXT_MODEL
    return DEFAULT_IMAGE_MODEL


def _plan(ws: "Workspace", ds: Dataset, fs: FeatureSet, embedder: "Embedder", recompute: bool
          ) -> tuple[list[_Task], EmbedReport]:
    report = EmbedReport(fs.name, embedder.spec.label, embedder.device, 0)
    done: set[str] = set()
    if not recompute:
        done = {r[0] for r in ws.catalog.all("SELECT entity_id FROM features WHERE feature_set_id=?", (fs.id,))}
    tasks: list[_Task] = []
    candidates = _item_candidates(ws, ds) if fs.entity_type == "item" else _box_candidates(ws, ds)
    for entity_id, name, kind, path, box in candidates:
        if entity_id in done:
            report.already_done += 1
        elif kind not in ("image", "text"):
            report.skipped += 1
            what = kind if " " in kind else f"a {kind} file"
            report.failures.append((entity_id, name, f"unsupported: {what} is neither an image nor text"))
        elif not embedder.supports(kind):
            report.skipped += 1
            report.failures.append((entity_id, name, f"unsupported: {embedder.spec.label} does not embed {kind}s"))
        else:
            tasks.append(_Task(entity_id, name, kind, path, box))
    report.total = len(tasks)
    return tasks, report


def _item_candidates(ws: "Workspace", ds: Dataset) -> Iterator[tuple]:
    ids = [r[0] for r in ws.catalog.all("SELECT id FROM items WHERE dataset_id=? ORDER BY dir, name, id", (ds.id,))]
    items = ws.items_by_ids(ids)
    for item_id in ids:
        item = items[item_id]
        yield item.id, item.filename, item.kind, item.path, None


def _box_candidates(ws: "Workspace", ds: Dataset) -> Iterator[tuple]:
    rows = ws.catalog.all(
        "SELECT annotations.id, annotations.item_id, annotations.label, annotations.type, annotations.coordinates"
        " FROM annotations JOIN items ON items.id = annotations.item_id WHERE items.dataset_id=?"
        " ORDER BY items.dir, items.name, annotations.created_at, annotations.id",
        (ds.id,),
    )
    items = ws.items_by_ids(list(dict.fromkeys(r[1] for r in rows)))
    for ann_id, item_id, label, ann_type, coords in rows:
        item = items[item_id]
        name = f"{item.filename} [{label}]"
        if ann_type != "box" or item.kind != "image":  # a kind no model embeds: reported as unsupported
            yield ann_id, name, f"a {ann_type} annotation on a {item.kind} item", item.path, None
            continue
        c = json.loads(coords)
        yield ann_id, name, "image", item.path, (c["left"], c["top"], c["right"], c["bottom"])


def _run(ws, fs, embedder, tasks, report, batch_size, workers, progress, cancel, started) -> None:
    writer = _Writer(ws, fs)
    done = 0
    report.cancelled = _is_cancelled(cancel)
    try:
        for modality in ("image", "text"):
            group = [t for t in tasks if t.modality == modality]
            if not group or report.cancelled:
                continue
            size = batch_size or embedder.batch_size(modality)
            batches = _image_batches(embedder, group, size, workers) if modality == "image" else _text_batches(embedder, group, size)
            try:
                for entity_ids, vectors, failures in batches:
                    report.failed += len(failures)
                    report.failures.extend(failures)
                    if entity_ids:
                        writer.put(vectors, entity_ids)
                    done += len(entity_ids) + len(failures)
                    if progress:
                        progress(done, report.total, done / max(time.perf_counter() - started, 1e-9))
                    if _is_cancelled(cancel):
                        report.cancelled = True
                        break
            finally:
                batches.close()  # stops the decoding threads at once, on cancel or error
    finally:
        try:
            writer.close()  # what was computed is stored, even when the job stops on an error
        finally:
            report.embedded = writer.written


def _is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


def _image_batches(embedder: "Embedder", tasks: Sequence[_Task], batch_size: int, workers: int | None
                   ) -> Iterator[tuple[list[str], np.ndarray, list]]:
    """(entity ids, vectors, failures) per batch. A thread pool decodes the next batches
    while the model runs on this one, one image file per unit of work (all the boxes of one
    image share its decode)."""
    import torch

    pin = embedder.device.startswith("cuda")
    units = iter(_group_by_file(tasks))
    pool = ThreadPoolExecutor(workers or devices.default_workers(embedder.device), thread_name_prefix="featurelab-decode")
    pending: deque[tuple[list[_Task], Future]] = deque()
    queued = 0  # tasks submitted and not yet taken

    def submit_until(count: int) -> None:
        nonlocal queued
        while queued < count:
            unit = next(units, None)
            if unit is None:
                return
            pending.append((unit, pool.submit(_prepare_unit, embedder, unit)))
            queued += len(unit)

    try:
        ready: list[tuple[_Task, Any]] = []
        while True:
            submit_until(2 * batch_size)
            while pending and len(ready) < batch_size:
                unit, future = pending.popleft()
                queued -= len(unit)
                ready.extend(zip(unit, future.result()))
                submit_until(2 * batch_size)
            if not ready:
                return
            batch, ready = ready[:batch_size], ready[batch_size:]
            ids, tensors, failures = [], [], []
            for task, result in batch:
                if isinstance(result, Exception):
                    failures.append((task.entity_id, task.name, _reason(result)))
                else:
                    ids.append(task.entity_id)
                    tensors.append(result)
            vectors = np.zeros((0, embedder.size), np.float32)
            if tensors:
                stacked = torch.stack(tensors)
                vectors = embedder.encode_prepared(stacked.pin_memory() if pin else stacked)
            yield ids, vectors, failures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _group_by_file(tasks: Sequence[_Task]) -> list[list[_Task]]:
    units: dict[tuple[Path, bool], list[_Task]] = {}
    for task in tasks:
        units.setdefault((task.path, task.box is None), []).append(task)
    return list(units.values())


def _prepare_unit(embedder: "Embedder", unit: list[_Task]) -> list:
    """One result per task: a tensor, or the exception that task met."""
    try:
        if unit[0].box is None:
            return [embedder.prepare_image(unit[0].path)]
        return embedder.prepare_boxes(unit[0].path, [t.box for t in unit])
    except Exception as exc:  # noqa: BLE001 - any decode error is this file's failure, not the job's
        return [exc] * len(unit)


def _text_batches(embedder: "Embedder", tasks: Sequence[_Task], batch_size: int
                  ) -> Iterator[tuple[list[str], np.ndarray, list]]:
    for start in range(0, len(tasks), batch_size):
        ids, texts, failures = [], [], []
        for task in tasks[start : start + batch_size]:
            try:
                texts.append(_read_text(task.path))
                ids.append(task.entity_id)
            except OSError as exc:
                failures.append((task.entity_id, task.name, _reason(exc)))
        vectors = embedder.embed_texts(texts, batch_size=batch_size) if texts else np.zeros((0, embedder.size), np.float32)
        yield ids, vectors, failures


def _read_text(source: "Path | bytes") -> str:
    """The start of a text file, or of its bytes as sent to a Ray actor."""
    if isinstance(source, bytes):
        return source[:TEXT_BYTES].decode("utf-8", errors="replace")
    with open(source, "rb") as f:
        return f.read(TEXT_BYTES).decode("utf-8", errors="replace")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the stored file is missing; upload the item again"
    if isinstance(exc, OSError):
        return f"cannot read the stored file ({exc})"
    if isinstance(exc, FeaturelabError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Writer:
    """Stores finished batches on its own thread so the model never waits for SQLite or
    Chroma. Batches that queue up while a write runs are merged into the next one: fewer,
    larger transactions. Each write is atomic (``Workspace.create_features``)."""

    def __init__(self, ws: "Workspace", fs: FeatureSet, max_pending: int = 8) -> None:
        self.ws, self.fs = ws, fs
        self.written = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._loop, name="featurelab-writer", daemon=True)
        self._thread.start()

    def put(self, vectors: np.ndarray, entity_ids: list[str]) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((vectors, entity_ids))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            chunk, finished = [self._queue.get()], False
            while True:
                try:
                    chunk.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in chunk:
                chunk, finished = chunk[: chunk.index(None)], True
            if chunk and self.error is None:  # after an error, drain without writing
                try:
                    ids = [eid for _, batch_ids in chunk for eid in batch_ids]
                    self.ws.create_features(self.fs, np.concatenate([v for v, _ in chunk]), ids)
                    self.written += len(ids)
                except BaseException as exc:  # handed to the job's thread by put/close
                    self.error = exc
            if finished:
                return


# ---- query vectors ---------------------------------------------------------------------------
def query_vector(
    ws: "Workspace", feature_set: FeatureSet | str, text: str | None = None, image_bytes: bytes | None = None,
    *, device: str | None = None,
) -> np.ndarray:
    """The vector of a text or an image (bytes) by the set's own model, to search the set
    with. The model is loaded once per process and reused."""
    fs = feature_set if isinstance(feature_set, FeatureSet) else ws.feature_sets.resolve(feature_set)
    if (text is None) == (image_bytes is None):
        raise InvalidInput("give a text or an image to turn into a query vector (one of them)")
    if not fs.model:
        raise InvalidInput(
            f"feature set {fs.name!r} is linked to no model (its vectors came from elsewhere); "
            "search it with a vector or a feature id instead"
        )
    spec = parse_spec(fs.model)
    embedder = load_embedder(spec, device)
    check_size(fs, spec, embedder.size)
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("the query text is empty; type what you are looking for")
        return embedder.embed_texts([text])[0]
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)) or not len(image_bytes):
        raise InvalidInput("the query image must be the bytes of an image file")
    embedder.require("image")
    return embedder.embed_images([bytes(image_bytes)])[0]
