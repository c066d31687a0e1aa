"""Models that turn items into vectors: open_clip (images and text), sentence-transformers
(text), and the registry that names and loads them. Importing this package is cheap; torch
and the model libraries load on first use."""
from .registry import (
    DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, ModelInfo, ModelSpec, ModelUnavailable, default_text_model,
    list_models, load_embedder, model_size, packaged_minilm_path, parse_spec,
)
from .base import Embedder

__all__ = [
    "DEFAULT_IMAGE_MODEL", "DEFAULT_TEXT_MODEL", "Embedder", "ModelInfo", "ModelSpec", "ModelUnavailable",
    "default_text_model", "list_models", "load_embedder", "model_size", "packaged_minilm_path", "parse_spec",
]
