"""The embedding job on a Ray cluster: the same entities, model and writer as the local
job (``job``), with decoding and the model in Ray actors.

    report = embed_dataset(ws, "pets", "pets-clip", ray="auto")        # or ray="10.0.0.5:6379"

How it runs: the driver (this process) reads the files of the missing entities in chunks
of one batch and sends each to an actor (at most ``IN_FLIGHT`` chunks per actor at a time,
so memory stays bounded and no worker needs the workspace's disk); each actor decodes and
embeds its chunk with the job's own batch code; the vectors come back as they are ready
and the job's writer stores them in bulk. Each actor loads the model once, through the
registry, from weights sent as a Ray object (or from a path on the workers).

Faults: a killed actor is restarted by Ray and its batch retried (``max_restarts`` /
``max_task_retries``); once an actor is out of restarts its batches go to the others. A
killed driver takes its actors with it (Ray ends the actors a driver owns) and leaves
whole features only, so a rerun embeds exactly what is missing.

Why Ray core actors and not Ray Data: Ray Data's readers run on the workers (they need a
shared store) and ``from_items`` puts every file in the object store before the first
batch; a driver-fed stream with a bounded window is what ``map_batches`` with an actor pool
does underneath, with the window in our hands. Ray is imported only in this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import FeaturelabError, InvalidInput, ModelUnavailable
from ..records import Dataset, FeatureSet
from . import devices
from .job import (
    TEXT_BYTES, Cancel, EmbedReport, ProgressFn, _image_batches, _is_cancelled, _link_model, _plan, _reason, _Task,
    _text_batches, _Writer, check_size,
)
from .spec import OPEN_CLIP, SCHEMAS, ModelSpec

if TYPE_CHECKING:
    from ..workspace import Workspace

IN_FLIGHT = 2  # chunks per actor: one computing, one decoding or on its way
CPUS_PER_ACTOR = 4  # on a CPU cluster: one actor per 4 cores (torch threads scale little further on small batches)
MAX_RESTARTS = 3  # per actor; each restart reloads the model and retries the batch it held
ATTEMPTS = 2  # a batch whose actor ran out of restarts goes to another actor once more, then fails
WAIT_S = 0.25  # how often the driver looks at cancel while it waits for a batch
_CONNECTION: dict[str, Any] = {"address": None, "users": 0}  # the connection connection() made, and who uses it
_CONNECTION_LOCK = threading.Lock()


class ClusterRate(float):
    """Items per second, as every progress callback takes it, carrying the cluster's side:
    ``actors_alive`` of ``actors``. ``note`` is what the app shows beside the bar."""

    actors_alive: int
    actors: int

    def __new__(cls, rate: float, actors_alive: int, actors: int) -> "ClusterRate":
        value = super().__new__(cls, rate)
        value.actors_alive, value.actors = actors_alive, actors
        return value

    @property
    def note(self) -> str:
        return f"{self.actors_alive} of {self.actors} Ray actor{'s' if self.actors != 1 else ''} alive"


@dataclass(frozen=True)
class ClusterInfo:
    """What a Ray cluster offers (``cluster_info``): the app shows it before a job."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    memory_gb: float

    def summary(self) -> str:
        return (f"{self.nodes} node{'s' if self.nodes != 1 else ''}, {self.cpus:g} CPUs, {self.gpus:g} GPUs, "
                f"{self.memory_gb:.1f} GB memory")


@dataclass(frozen=True)
class ActorPlan:
    """How many actors, what each asks of the cluster, and the batch they embed."""

    actors: int
    num_cpus: float
    num_gpus: float
    device: str
    threads: int  # torch threads and decoding threads in each actor

    def batch_size(self, modality: str, override: int | None) -> int:
        return override or devices.default_batch_size(self.device, modality)


# ---- the cluster -------------------------------------------------------------------------
@contextlib.contextmanager
def connection(address: str) -> Iterator[None]:
    """This process connected to the cluster at ``address`` (``auto``: the one ``ray start``
    began on this machine, or ``$RAY_ADDRESS``) for as long as the block runs. Jobs at the
    same time share one connection; the last one out disconnects, because Ray ends a driver
    whose cluster has been gone for a minute (the app must outlive its cluster). A
    connection the caller made with ``ray.init`` is used as it is and left open."""
    try:
        import ray
    except ImportError:
        raise InvalidInput("running on a Ray cluster needs Ray here: pip install 'ray==2.60.0' "
                           "(the cluster's version)") from None
    if not isinstance(address, str) or not address.strip():
        raise InvalidInput("a Ray address is host:port (e.g. 127.0.0.1:6379), ray://host:10001 or auto")
    address = address.strip()
    with _CONNECTION_LOCK:
        ours = _CONNECTION["address"]
        if ray.is_initialized() and ours is not None and address not in (ours, "auto"):
            raise InvalidInput(f"this process runs a job on the Ray cluster at {ours}; "
                               f"wait for it to end before using the one at {address}")
        if not ray.is_initialized():
            _init(ray, address)
            _CONNECTION["address"] = address
        _CONNECTION["users"] += 1
    try:
        yield
    finally:
        with _CONNECTION_LOCK:
            _CONNECTION["users"] -= 1
            if _CONNECTION["users"] == 0 and _CONNECTION["address"] is not None:
                ray.shutdown()
                _CONNECTION["address"] = None


def _init(ray, address: str) -> None:
    try:
        ray.init(address=address, namespace="featurelab", runtime_env=_runtime_env(), log_to_driver=False,
                 logging_level="ERROR", configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidInput(
            f"cannot reach a Ray cluster at {address!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "start one with `ray start --head` (then use --ray auto) or give the head's host:port"
        ) from exc


def _connected_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def cluster_info(address: str) -> ClusterInfo:
    """The cluster's nodes and resources."""
    import ray

    with connection(address):
        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return ClusterInfo(_connected_address(), len(nodes), float(resources.get("CPU", 0)),
                           float(resources.get("GPU", 0)), float(resources.get("memory", 0)) / 1e9)


def plan_actors(cpus: float, gpus: float, actors: int | None = None) -> ActorPlan:
    """One actor per GPU (``num_gpus=1``) on a GPU cluster, else one per ``CPUS_PER_ACTOR``
    cores; ``actors`` overrides the count and the resources are shared among them."""
    if actors is not None and (not isinstance(actors, int) or actors < 1):
        raise InvalidInput(f"the number of Ray actors must be a whole number of at least 1, got {actors!r}")
    if cpus <= 0:
        raise InvalidInput("the Ray cluster offers no CPUs; add a node with `ray start --address HEAD:PORT`")
    if gpus >= 1:
        count = actors or int(gpus)
        num_gpus = 1.0 if count <= gpus else gpus / count
        num_cpus = _share(cpus - 1 if cpus > count else cpus, count)
        return ActorPlan(count, num_cpus, num_gpus, "cuda", max(2, min(8, int(num_cpus))))
    count = actors or max(1, int(cpus // CPUS_PER_ACTOR))
    num_cpus = _share(cpus, count)
    return ActorPlan(count, num_cpus, 0.0, "cpu", max(1, int(num_cpus)))


def _share(cpus: float, count: int) -> float:
    """Whole cores per actor where there are enough, else a fair fraction (Ray allows it)."""
    return float(max(1, int(cpus // count))) if cpus >= count else cpus / count


# ---- weights -----------------------------------------------------------------------------
def weight_files(spec: ModelSpec) -> tuple[str, dict[str, bytes]] | None:
    """The files the model loads from this machine, to send to the cluster: ('file', {name:
    bytes}) for a checkpoint, ('dir', {relative path: bytes}) for a model folder; ``None``
    when the workers find the model themselves (a packaged model, the Hugging Face cache)."""
    if spec.backend == OPEN_CLIP and spec.name.startswith("local-dir:"):
        return "dir", _folder_files(Path(spec.name.partition(":")[2]))
    if spec.weights:
        path = Path(spec.weights)
        if path.is_dir():
            return "dir", _folder_files(path)
        if not path.is_file():
            raise ModelUnavailable(f"the weights {path} do not exist on this machine; give the checkpoint's path")
        return "file", {path.name: path.read_bytes()}
    return None


def _folder_files(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise ModelUnavailable(f"the model folder {folder} does not exist on this machine")
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def local_spec(spec: ModelSpec, shipped: tuple[str, dict[str, bytes]] | None) -> ModelSpec:
    """``spec`` pointing at the shipped files, written once per content on this node."""
    if shipped is None:
        return spec
    kind, files = shipped
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    folder = Path(tempfile.gettempdir()) / "featurelab-weights" / digest.hexdigest()[:24]
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        try:
            staging.rename(folder)  # atomic: two actors on one node never see half a folder
        except OSError:  # another actor won the race
            pass
    if kind == "file":
        return replace(spec, weights=str(folder / next(iter(files))))
    if spec.backend == OPEN_CLIP and spec.name.startswith(SCHEMAS[0]):
        return replace(spec, name=f"local-dir:{folder}")
    return replace(spec, weights=str(folder))


# ---- the actor ---------------------------------------------------------------------------
class EmbedActor:
    """One model on one worker. A failure to load is kept and told by ``info`` (so the
    driver shows the registry's own message rather than Ray's traceback)."""

    def __init__(self, spec: dict, shipped: list | None, device: str, threads: int) -> None:
        import ray
        import torch

        from .registry import load_embedder
        from .spec import parse_spec

        torch.set_num_threads(threads)
        self.threads = threads
        self.error: str | None = None
        self.embedder = None
        try:
            files = ray.get(shipped[0]) if shipped else None
            self.embedder = load_embedder(local_spec(parse_spec(spec), files), device)
        except Exception as exc:  # noqa: BLE001 - reported by info(), where the driver reads it
            self.error = str(exc) if isinstance(exc, FeaturelabError) else f"{type(exc).__name__}: {exc}"

    def info(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return {"size": self.embedder.size, "device": self.embedder.device, "pid": os.getpid()}

    def embed(self, modality: str, rows: list[tuple], blobs: list[bytes]) -> tuple[list[str], np.ndarray, list]:
        """(entity ids, vectors, failures) for one chunk, by the local job's batch code."""
        tasks = [_Task(eid, name, kind, blobs[i], box) for eid, name, kind, i, box in rows]
        if modality == "image":
            batches = _image_batches(self.embedder, tasks, len(tasks), self.threads)
        else:
            batches = _text_batches(self.embedder, tasks, len(tasks))
        ids, vectors, failures = [], [np.zeros((0, self.embedder.size), np.float32)], []
        try:
            for batch_ids, batch_vectors, batch_failures in batches:
                ids += batch_ids
                vectors.append(batch_vectors)
                failures += batch_failures
        finally:
            batches.close()
        return ids, np.concatenate(vectors), failures


class _Capabilities:
    """What ``job._plan`` asks of a model, answered from its spec (the model is on the cluster)."""

    def __init__(self, spec: ModelSpec, device: str) -> None:
        self.spec, self.device = spec, device

    def supports(self, modality: str) -> bool:
        return modality == "text" and self.spec.embeds_text or modality == "image" and self.spec.embeds_images


# ---- the job -----------------------------------------------------------------------------
def embed_on_ray(
    ws: "Workspace", ds: Dataset, fs: FeatureSet, spec: ModelSpec, *, address: str, actors: int | None = None,
    batch_size: int | None = None, recompute: bool = False, progress: ProgressFn | None = None,
    cancel: Cancel = None, workers: int | None = None, ship_weights: bool | None = None,
) -> EmbedReport:
    """``embed_dataset(..., ray=address)``: see the module's docstring. ``ship_weights=False``
    (or FEATURELAB_RAY_SHIP_WEIGHTS=0) loads the weights from the path the model names, on
    every worker (a shared disk), instead of sending them."""
    if ship_weights is None:
        ship_weights = os.environ.get("FEATURELAB_RAY_SHIP_WEIGHTS", "1") != "0"
    with connection(address):
        return _embed_connected(ws, ds, fs, spec, actors, batch_size, recompute, progress, cancel, workers,
                                ship_weights)


def _embed_connected(ws, ds, fs, spec, actors, batch_size, recompute, progress, cancel, workers, ship_weights
                     ) -> EmbedReport:
    """Plan the entities and the actors, start them, stream, and always stop them."""
    import ray

    resources = ray.cluster_resources()
    plan = plan_actors(float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), actors)
    if workers:
        plan = replace(plan, threads=workers)
    caps = _Capabilities(spec, f"ray: {plan.actors} {plan.device} actor{'s' if plan.actors != 1 else ''}")
    tasks, report = _plan(ws, ds, fs, caps, recompute)
    main_modality = "image" if any(t.modality == "image" for t in tasks) else "text"
    report.batch_size = plan.batch_size(main_modality, batch_size)
    if not tasks or _is_cancelled(cancel):
        report.cancelled = _is_cancelled(cancel)
        return report
    shipped = weight_files(spec) if ship_weights else None
    pool = _start_actors(spec, plan, [ray.put(shipped)] if shipped else None, cancel)
    try:
        if pool is None:  # cancelled while the actors were starting
            report.cancelled = True
            return report
        check_size(fs, spec, pool.size)
        _link_model(ws, fs, spec, pool.size)
        started = time.perf_counter()
        try:
            _stream(ws, fs, pool, tasks, report, plan, batch_size, progress, cancel, started)
        finally:
            report.seconds = time.perf_counter() - started
    finally:
        if pool is not None:
            pool.stop()
    return report


class _Pool:
    """The job's actors, which of them are alive, and what each holds."""

    def __init__(self, handles: list, size: int) -> None:
        self.handles, self.size = handles, size
        self.alive = set(range(len(handles)))
        self.shipped: list | None = None
        self.load = [0] * len(handles)

    def least_busy(self) -> int:
        return min(self.alive, key=lambda i: self.load[i])

    def stop(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle, no_restart=True)


def _start_actors(spec: ModelSpec, plan: ActorPlan, shipped: list | None, cancel: Cancel) -> _Pool | None:
    """Start the actors and wait until each has loaded the model. ``shipped``: the weights'
    Ray object in a list (held by the pool as long as the actors live: a restart reads it again)."""
    import ray

    actor_class = ray.remote(EmbedActor).options(
        name=None, num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS, max_concurrency=IN_FLIGHT,
    )
    handles = [actor_class.remote(spec.to_dict(), shipped, plan.device, plan.threads) for _ in range(plan.actors)]
    pool = _Pool(handles, 0)
    pool.shipped = shipped
    refs = [h.info.remote() for h in handles]
    while True:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=WAIT_S)
        if len(ready) == len(refs):
            break
        if _is_cancelled(cancel):
            pool.stop()
            return None
    try:
        infos = ray.get(refs)
    except ray.exceptions.RayError as exc:
        pool.stop()
        raise ModelUnavailable(f"the Ray actors could not start {spec.label}: {str(exc).splitlines()[0][:300]}") from exc
    for info in infos:
        if "error" in info:
            pool.stop()
            raise ModelUnavailable(f"on the Ray cluster: {info['error']}")
    pool.size = infos[0]["size"]
    return pool


def _runtime_env() -> dict:
    """The job's runtime_env: this very ``store`` package shipped to the workers, so they run
    the driver's code (the shipped copy comes first on their path, before any featurelab
    installed there). FEATURELAB_RAY_SHIP_CODE=0 uses the workers' own install instead."""
    if os.environ.get("FEATURELAB_RAY_SHIP_CODE", "1") == "0":
        return {}
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"]}


def _chunks(tasks: Sequence[_Task], plan: ActorPlan, batch_size: int | None) -> Iterator[tuple[str, list[_Task]]]:
    """Batches of one modality, images first as locally; the boxes of one file stay together."""
    for modality in ("image", "text"):
        group = [t for t in tasks if t.modality == modality]
        size = plan.batch_size(modality, batch_size)
        chunk: list[_Task] = []
        for task in group:
            if len(chunk) >= size and task.path != chunk[-1].path:
                yield modality, chunk
                chunk = []
            chunk.append(task)
        if chunk:
            yield modality, chunk


def _read_chunk(chunk: list[_Task]) -> tuple[list[tuple], list[bytes], list[tuple[str, str, str]]]:
    """What the actor needs (rows and each file's bytes once), and the files this machine cannot read."""
    rows, blobs, failures, index = [], [], [], {}
    for task in chunk:
        if task.path not in index:
            try:
                with open(task.path, "rb") as f:
                    blobs.append(f.read(TEXT_BYTES) if task.modality == "text" else f.read())
                index[task.path] = len(blobs) - 1
            except OSError as exc:
                index[task.path] = exc
        where = index[task.path]
        if isinstance(where, Exception):
            failures.append((task.entity_id, task.name, _reason(where)))
        else:
            rows.append((task.entity_id, task.name, task.modality, where, task.box))
    return rows, blobs, failures


@dataclass
class _Sent:
    actor: int
    modality: str
    chunk: list[_Task]
    rows: list[tuple]
    blobs_ref: Any
    attempts: int = 1


def _stream(ws, fs, pool: _Pool, tasks, report: EmbedReport, plan: ActorPlan, batch_size, progress, cancel,
            started: float) -> None:
    """Keep every live actor fed with up to IN_FLIGHT chunks; store results as they come."""
    import ray

    writer = _Writer(ws, fs)
    chunks = _chunks(tasks, plan, batch_size)
    pending: dict[Any, _Sent] = {}
    done = 0
    exhausted = False
    try:
        while True:
            if _is_cancelled(cancel):
                report.cancelled = True
                return
            while not exhausted and pool.alive and len(pending) < IN_FLIGHT * len(pool.alive):
                item = next(chunks, None)
                if item is None:
                    exhausted = True
                    break
                modality, chunk = item
                rows, blobs, failures = _read_chunk(chunk)
                done += _count_failures(report, failures)
                if rows:
                    _send(pool, pending, _Sent(-1, modality, chunk, rows, ray.put(blobs)))
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                sent = pending.pop(ref)
                pool.load[sent.actor] -= 1
                try:
                    ids, vectors, failures = ray.get(ref)
                except ray.exceptions.ActorError:
                    pool.alive.discard(sent.actor)
                    done += _retry_or_fail(pool, pending, sent, report)
                    continue
                except ray.exceptions.RayTaskError as exc:  # not a file's fault: the batch fails, the job goes on
                    failures = [(eid, name, f"the batch failed on the cluster: {str(exc).splitlines()[0][:200]}")
                                for eid, name, *_ in sent.rows]
                    ids, vectors = [], None
                if ids:
                    writer.put(vectors, ids)
                done += len(ids) + _count_failures(report, failures)
                if progress:
                    rate = done / max(time.perf_counter() - started, 1e-9)
                    progress(done, report.total, ClusterRate(rate, len(pool.alive), len(pool.handles)))
    finally:
        try:
            writer.close()  # what came back is stored, whatever stopped the job
        finally:
            report.embedded = writer.written


def _send(pool: _Pool, pending: dict, sent: _Sent) -> None:
    sent.actor = pool.least_busy()
    pool.load[sent.actor] += 1
    pending[pool.handles[sent.actor].embed.remote(sent.modality, sent.rows, sent.blobs_ref)] = sent


def _retry_or_fail(pool: _Pool, pending: dict, sent: _Sent, report: EmbedReport) -> int:
    """A batch whose actor is gone for good: to another actor once, else its items fail.
    Returns how many items it settled now."""
    if not pool.alive:
        raise FeaturelabError(
            f"every Ray actor of the job died (each was restarted {MAX_RESTARTS} times); what was embedded is "
            "stored, and a rerun embeds the rest. The workers' logs (ray logs) say why"
        )
    if sent.attempts < ATTEMPTS:
        sent.attempts += 1
        _send(pool, pending, sent)
        return 0
    reason = "the Ray actor embedding this batch died and its retries ran out"
    return _count_failures(report, [(eid, name, reason) for eid, name, *_ in sent.rows])


def _count_failures(report: EmbedReport, failures: list) -> int:
    report.failed += len(failures)
    report.failures.extend(failures)
    return len(failures)
