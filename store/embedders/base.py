"""What every embedder offers the embedding job (``job``) and the search box."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidInput
from . import devices
from .images import Box, ImageSource

if TYPE_CHECKING:
    import torch

    from .spec import ModelSpec


class Embedder:
    """A loaded model on one device. Thread-safe: model calls are serialised by a lock
    (Hugging Face's fast tokenizers refuse concurrent use, and one model call at a time
    already fills the device); decoding (``prepare_image``) runs outside the lock."""

    modalities: frozenset[str] = frozenset()

    def __init__(self, spec: "ModelSpec", device: str, size: int) -> None:
        self.spec = spec
        self.device = device
        self.size = size
        self.normalize = spec.normalize
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.label!r}, size={self.size}, device={self.device!r})"

    def supports(self, modality: str) -> bool:
        return modality in self.modalities

    def require(self, modality: str) -> None:
        if not self.supports(modality):
            kinds = " and ".join(sorted(self.modalities)) or "nothing"
            raise InvalidInput(
                f"model {self.spec.label} embeds {kinds} only, not {modality}; "
                f"use a CLIP model (e.g. ViT-B-32/laion2b_s34b_b79k) for {modality}s"
            )

    def batch_size(self, modality: str) -> int:
        return devices.default_batch_size(self.device, modality)

    # ---- images ------------------------------------------------------------------
    def prepare_image(self, source: ImageSource, box: Box | None = None) -> "torch.Tensor":
        """Decode and preprocess one image (or the crop ``box``) into the model's input."""
        self.require("image")
        raise NotImplementedError

    def prepare_boxes(self, source: ImageSource, boxes: Sequence[Box]) -> list:
        """Decode once, then one input per box: a tensor, or the ``InvalidInput`` that box raised."""
        self.require("image")
        raise NotImplementedError

    def model_input(self, batch: "torch.Tensor") -> "torch.Tensor":
        """The float batch the model sees, on its device, from ``prepare_image`` outputs."""
        self.require("image")
        raise NotImplementedError

    def encode_prepared(self, batch: "torch.Tensor") -> np.ndarray:
        """Vectors (float32, normalised when ``self.normalize``) for a batch from ``prepare_image``."""
        self.require("image")
        raise NotImplementedError

    def embed_images(self, images: Sequence[ImageSource], batch_size: int | None = None) -> np.ndarray:
        """Vectors for images given as bytes, paths or PIL images."""
        import torch

        self.require("image")
        step = batch_size or self.batch_size("image")
        out = [np.zeros((0, self.size), np.float32)]
        for start in range(0, len(images), step):
            batch = torch.stack([self.prepare_image(img) for img in images[start : start + step]])
            out.append(self.encode_prepared(batch))
        return np.concatenate(out)

    # ---- text --------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        self.require("text")
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------
    def finish(self, vectors: "torch.Tensor") -> np.ndarray:
        """float32 on the CPU, L2-normalised when the model says so."""
        import torch

        vectors = vectors.detach().float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)
