"""sentence-transformers models: text only."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidInput
from . import devices
from .base import Embedder

if TYPE_CHECKING:
    from .spec import ModelSpec


class SentenceEmbedder(Embedder):
    modalities = frozenset({"text"})

    def __init__(self, spec: "ModelSpec", device: str, model) -> None:
        super().__init__(spec, device, int(model.get_embedding_dimension()))
        self.model = model

    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        if isinstance(texts, str):
            raise InvalidInput("embed_texts takes a list of strings; wrap a single text in a list")
        if not len(texts):
            return np.zeros((0, self.size), np.float32)
        with self._lock, devices.inference(self.device, single=len(texts) == 1):
            # encode sorts by length and pads per batch; its result is the reference.
            out = self.model.encode(
                list(texts), batch_size=batch_size or self.batch_size("text"), convert_to_tensor=True,
                normalize_embeddings=False, show_progress_bar=False,
            )
        return self.finish(torch.as_tensor(out))


def load_sentence_model(spec: "ModelSpec", source: str, device: str) -> SentenceEmbedder:
    """``source``: a local folder, or a hub name resolved through the Hugging Face cache."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise in our own progress
    try:
        model = SentenceTransformer(source, device=device, trust_remote_code=False)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    model.eval()
    return SentenceEmbedder(spec, device, model)
