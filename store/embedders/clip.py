"""open_clip models: images through the image tower, text through the text tower."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ..errors import InvalidInput, ModelUnavailable
from . import devices
from .base import Embedder
from .fastprep import FastPreprocess
from .images import Box, ImageSource, crop_box, crop_pixels, decode_pixels, open_rgb

if TYPE_CHECKING:
    from .spec import ModelSpec


class OpenClipEmbedder(Embedder):
    modalities = frozenset({"image", "text"})

    def __init__(self, spec: "ModelSpec", device: str, size: int, model, preprocess: Callable,
                 tokenizer_factory: Callable[[], Callable]) -> None:
        super().__init__(spec, device, size)
        self.model = model
        self.preprocess = preprocess  # the model's own inference transform (PIL in, tensor out)
        self.fast = FastPreprocess.from_transform(preprocess)  # the same, cheaper; None when unusual
        self.image_size = _short_side(getattr(model.visual, "image_size", 224))
        self._tokenizer_factory = tokenizer_factory
        self._tokenizer = None

    def prepare_image(self, source: ImageSource, box: Box | None = None) -> "torch.Tensor":
        # Crops need full-resolution pixels; whole images can be decoded at a reduced scale.
        draft = None if box is not None else self.image_size
        if self.fast is None:
            img = open_rgb(source, draft_size=draft)
            return self.preprocess(crop_box(img, box) if box is not None else img)
        pixels = decode_pixels(source, draft_size=draft)
        return self.fast.pixels(crop_pixels(pixels, box) if box is not None else pixels)

    def prepare_boxes(self, source: ImageSource, boxes: Sequence[Box]) -> list:
        if self.fast is None:
            img = open_rgb(source)
            crop, transform = crop_box, self.preprocess
        else:
            img = decode_pixels(source)
            crop, transform = crop_pixels, self.fast.pixels
        out: list = []
        for box in boxes:
            try:
                out.append(transform(crop(img, box)))
            except InvalidInput as exc:
                out.append(exc)
        return out

    def model_input(self, batch: "torch.Tensor") -> "torch.Tensor":
        """The float batch the model sees, on its device, from ``prepare_image`` outputs."""
        batch = batch.to(self.device, non_blocking=True)
        return self.fast.batch(batch) if batch.dtype == torch.uint8 else batch

    def encode_prepared(self, batch: "torch.Tensor") -> np.ndarray:
        with self._lock, devices.inference(self.device, single=len(batch) == 1):
            return self.finish(self.model.encode_image(self.model_input(batch)))

    @property
    def tokenizer(self) -> Callable:
        # Loaded on first use: some tokenizers come from the Hugging Face hub, and an
        # image-only job must not need them.
        if self._tokenizer is None:
            try:
                self._tokenizer = self._tokenizer_factory()
            except Exception as exc:  # a hub tokenizer that is neither cached nor reachable
                raise ModelUnavailable(
                    f"cannot load the tokenizer of {self.spec.label} ({type(exc).__name__}: {exc}); run once with "
                    "internet access so it lands in the Hugging Face cache, or embed images only"
                ) from exc
        return self._tokenizer

    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise InvalidInput("embed_texts takes a list of strings; wrap a single text in a list")
        step = batch_size or self.batch_size("text")
        out = [np.zeros((0, self.size), np.float32)]
        for start in range(0, len(texts), step):
            tokens = self.tokenizer(list(texts[start : start + step])).to(self.device)
            with self._lock, devices.inference(self.device, single=len(tokens) == 1):
                out.append(self.finish(self.model.encode_text(tokens)))
        return np.concatenate(out)


def _short_side(size) -> int:
    return int(min(size)) if isinstance(size, (tuple, list)) else int(size)


def load_open_clip(spec: "ModelSpec", device: str, size: int) -> OpenClipEmbedder:
    """Build the model from its config and load its weights: a local checkpoint file
    (safetensors, or a torch file read with ``weights_only=True``), a ``local-dir:`` folder,
    or a pretrained tag / ``hf-hub:`` repo through the Hugging Face cache."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    if spec.weights:
        model = open_clip.create_model(
            spec.name, pretrained=None, pretrained_text=False, device="cpu",
            force_preprocess_cfg=_tag_preprocess(spec),
        )
        # load_checkpoint reads .safetensors with safetensors and anything else with
        # torch.load(weights_only=True): no code from the file is run.
        open_clip.load_checkpoint(model, spec.weights, strict=True, weights_only=True, device="cpu")
    else:
        model = open_clip.create_model(
            spec.name, pretrained=spec.pretrained, device="cpu", require_pretrained=True, weights_only=True,
        )
    model = model.to(device).eval()
    preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    tokenizer_name = spec.name
    return OpenClipEmbedder(spec, device, size, model, preprocess, lambda: open_clip.get_tokenizer(tokenizer_name))


def _tag_preprocess(spec: "ModelSpec") -> dict | None:
    """A local copy of a pretrained tag's weights keeps the tag's mean, std and resize."""
    if not spec.pretrained:
        return None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained) or {}
    keys = ("mean", "std", "interpolation", "resize_mode", "fill_color")
    return {k: cfg[k] for k in keys if k in cfg} or None
