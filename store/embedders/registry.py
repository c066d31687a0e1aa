"""Loading models once per process: the backend table (``spec.BACKENDS``) says how each
backend loads; this module shares one loaded model per (model, device), keeps the hub
client from waiting on a network that is not there, and turns load failures into
``ModelUnavailable`` with the ways out. Naming lives in ``spec`` (no torch there)."""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..devices import IMPORT_LOCK, resolve_device
from ..errors import FeaturelabError, ModelUnavailable
from .base import Embedder
from .spec import (
    BACKENDS, DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, DEFAULT_TEXT_SIZE, OPEN_CLIP, SENTENCE, Backend, ModelInfo,
    ModelSpec, config_size, default_text_model, list_models, local_model_spec, missing_here, open_clip_architectures,
    packaged_minilm_path, parse_spec, pretrained_tags, unavailable_message,
)

__all__ = [  # the naming names stay importable from here, where they were
    "BACKENDS", "DEFAULT_IMAGE_MODEL", "DEFAULT_TEXT_MODEL", "DEFAULT_TEXT_SIZE", "OPEN_CLIP", "SENTENCE",
    "Backend", "ModelInfo", "ModelSpec", "ModelUnavailable", "check_local_model", "check_runs_here",
    "default_text_model", "hub_reachable", "list_models", "load_embedder", "loaded_embedders", "model_size",
    "offline_text_models", "open_clip_architectures", "packaged_minilm_path", "parse_spec", "preload_text_models",
    "pretrained_tags",
]

_CACHE: dict[tuple[ModelSpec, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[ModelSpec, str], threading.Lock] = {}
# Models load (importing torch and their libraries) under the process's one import lock.
_IMPORTING = IMPORT_LOCK
_PROBE_SECONDS = 300  # how long one look at the hub holds
_probe: tuple[float, bool] | None = None  # (when, reachable)


def model_size(spec: "str | dict | ModelSpec") -> int:
    """The length of the vectors the model makes. open_clip sizes come from the config
    (no weights needed); a sentence model is loaded (once per process) and asked."""
    spec = parse_spec(spec)
    size = config_size(spec)
    return load_embedder(spec).size if size is None else size


def load_embedder(spec: "str | dict | ModelSpec", device: str | None = None) -> Embedder:
    """The model ready on ``device`` (default: CUDA when present, else CPU). Loaded once
    per process and shared: later calls with the same model and device return it."""
    spec = parse_spec(spec)
    with _IMPORTING:
        device = resolve_device(device)
    key = (spec, device)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        base_key = (replace(spec, normalize=True), device)
        key_lock = _KEY_LOCKS.setdefault(base_key, threading.Lock())
    with key_lock:  # two threads asking for one model load it once
        base = _CACHE.get(base_key)
        if base is None:
            with _IMPORTING:
                base = _load(base_key[0], device)
            with _CACHE_LOCK:
                _CACHE[base_key] = base
    embedder = base
    if spec.normalize != base.normalize:  # same weights, other normalisation: share the model
        embedder = copy.copy(base)
        embedder.spec, embedder.normalize = spec, spec.normalize
    with _CACHE_LOCK:
        return _CACHE.setdefault(key, embedder)


def loaded_embedders() -> list[Embedder]:
    """What this process holds in memory (for the app's status line and for tests)."""
    with _CACHE_LOCK:
        return list(_CACHE.values())


def _load(spec: ModelSpec, device: str) -> Embedder:
    if spec.weights and not Path(spec.weights).exists():
        raise ModelUnavailable(unavailable_message(spec, FileNotFoundError(f"{spec.weights} does not exist")))
    backend = spec.backend_info
    if backend.needs_hub(spec):
        _use_cache_only_when_hub_unreachable()
    try:
        return backend.load(spec, device)
    except FeaturelabError:
        raise
    except Exception as exc:  # hub, file and format errors all end here
        raise ModelUnavailable(unavailable_message(spec, exc)) from exc


def check_runs_here(spec: "str | dict | ModelSpec") -> ModelSpec:
    """The spec, when the model can run on this machine: its weights are here (the Hugging
    Face cache, a local file or folder), or the hub they download from can be reached.
    Else ``ModelUnavailable`` saying what is missing and the ways out: said when a feature
    set is created, not in the middle of a job."""
    spec = parse_spec(spec)
    missing = missing_here(spec)
    if missing is None:
        return spec
    if spec.backend_info.needs_hub(spec) and hub_reachable():
        return spec  # the weights download on first use
    offline = " and the Hugging Face hub cannot be reached from here" if spec.backend_info.needs_hub(spec) else ""
    ways_out = spec.backend_info.ways_out(spec, f"{missing}{offline}")
    raise ModelUnavailable(ways_out.replace("cannot load", "cannot run", 1))  # nothing was loaded yet


def check_local_model(path: str, architecture: str | None = None) -> tuple[ModelSpec, int]:
    """A checkpoint file (with its open_clip ``architecture``) or a model folder on this
    machine, proved by loading it once (kept loaded for the job that follows): its spec and
    vector size. A file of the wrong architecture or format is refused with what is wrong."""
    spec = check_runs_here(local_model_spec(path, architecture))
    return spec, load_embedder(spec).size


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers (False at once in its offline mode). One quick
    probe, kept for a few minutes: without a network the hub client would retry for a minute."""
    global _probe
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True  # a proxy decides; the client's own errors will tell
    if _probe is not None and time.monotonic() - _probe[0] < _PROBE_SECONDS:
        return _probe[1]
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        reachable = True
    except OSError:
        reachable = False
    _probe = (time.monotonic(), reachable)
    return reachable


def _use_cache_only_when_hub_unreachable() -> None:
    """Without a network the hub client retries for about a minute before it looks in its
    cache; when the probe fails it goes to the cache at once (its HF_HUB_OFFLINE mode)."""
    import os

    from huggingface_hub import constants

    if not hub_reachable():
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"


def offline_text_models(ws, limit: int = 2) -> list[ModelSpec]:
    """The text models worth loading before anyone asks: the packaged default, and those of
    the workspace's feature sets that load without the hub (a folder, a checkpoint), up to
    ``limit``. Hub models are left out: warming must never wait on a network."""
    found: list[ModelSpec] = []
    candidates = [default_text_model()] if packaged_minilm_path() is not None else []
    for fs in ws.feature_sets.list():
        if fs.model:
            try:
                candidates.append(parse_spec(fs.model))
            except FeaturelabError:
                continue  # a set whose model no longer parses says so when it is used
    for spec in candidates:
        base = replace(spec, normalize=True)  # one load serves both normalisations
        if spec.embeds_text and not spec.backend_info.needs_hub(spec) and base not in found:
            found.append(base)
    return found[:limit]


def preload_text_models(ws) -> list[str]:
    """Load ``offline_text_models(ws)`` and run each once on a short text (its first call
    is slower), so a text search or an embedding job finds them warm. Returns their labels;
    a model that fails to load is skipped (the page that needs it says why)."""
    loaded = []
    for spec in offline_text_models(ws):
        try:
            load_embedder(spec).embed_texts(["warm up"])
        except Exception:  # noqa: BLE001 - warming is best effort; the real use reports the error
            continue
        loaded.append(spec.label)
    return loaded
