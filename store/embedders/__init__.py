"""Models that turn items into vectors: open_clip (images and text), sentence-transformers
(text), the backend table that names them (``spec``), loading them once per process
(``registry``) and the embedding job (``job``). Pages and scripts import from here.
Importing this package is cheap: torch and the model libraries load on first use."""
from ..devices import resolve_device
from ..errors import ModelUnavailable
from .base import Embedder
from .job import (
    EmbedReport, check_size, create_feature_set, default_model, embed_dataset, model_for_set, query_vector,
    resolve_dataset,
)
from .ray_job import ClusterInfo, ClusterRate, cluster_info
from .registry import (
    check_local_model, check_runs_here, hub_reachable, load_embedder, loaded_embedders, model_size,
    offline_text_models, preload_text_models,
)
from .spec import (
    BACKENDS, DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, DEFAULT_TEXT_SIZE, OPEN_CLIP, SENTENCE, Backend, ModelInfo,
    ModelSpec, backend_named, default_text_model, list_models, local_model_spec, missing_here,
    open_clip_architectures, packaged_minilm_path, parse_spec,
)

__all__ = [
    "BACKENDS", "DEFAULT_IMAGE_MODEL", "DEFAULT_TEXT_MODEL", "DEFAULT_TEXT_SIZE", "OPEN_CLIP", "SENTENCE", "Backend",
    "ClusterInfo", "ClusterRate", "EmbedReport", "Embedder", "ModelInfo", "ModelSpec", "ModelUnavailable",
    "backend_named", "check_local_model", "check_runs_here", "check_size", "cluster_info", "create_feature_set",
    "default_model", "default_text_model", "embed_dataset", "hub_reachable", "list_models", "load_embedder",
    "loaded_embedders", "local_model_spec", "missing_here", "model_for_set", "model_size", "offline_text_models",
    "open_clip_architectures", "packaged_minilm_path", "parse_spec", "preload_text_models", "query_vector",
    "resolve_dataset", "resolve_device",
]
