"""open_clip's usual inference preprocess, computed with less work.

The model's own transform is ``Resize(shortest side, bicubic) -> CenterCrop -> ToTensor ->
Normalize``. Here it is split in two:

- per image (in the decoding threads): resize the uint8 pixels with torch's antialiased
  kernel, which reproduces Pillow's bicubic/bilinear filter to within one grey level on a
  few pixels at three times the speed (Pillow itself when enlarging), then crop the
  centre; the result stays uint8 (a quarter of the bytes to move, to a GPU too);
- per batch (on the model's device): to float, /255, minus mean, over std: the elementwise
  operations of ToTensor and Normalize, in the same order.

Any other transform (squash or longest-side resize, a custom pipeline) is run as is.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image


class FastPreprocess:
    def __init__(self, size: int, resample: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.size = size
        self.resample = resample
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_transform(cls, transform: Callable) -> "FastPreprocess | None":
        """The fast form of ``transform`` when it is the usual pipeline, else ``None``."""
        from torchvision import transforms as T

        steps = list(getattr(transform, "transforms", []))
        names = [type(s).__name__ for s in steps]
        if names != ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "Normalize"] and \
                names != ["Resize", "CenterCrop", "MaybeConvertMode", "ToTensor", "Normalize"]:
            return None
        resize, crop, normalize = steps[0], steps[1], steps[4]
        size = resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else resize.size
        modes = {T.InterpolationMode.BICUBIC: Image.Resampling.BICUBIC, T.InterpolationMode.BILINEAR: Image.Resampling.BILINEAR}
        if not isinstance(size, int) or resize.max_size is not None or resize.interpolation not in modes:
            return None
        if tuple(crop.size) != (size, size):
            return None
        return cls(size, modes[resize.interpolation], tuple(normalize.mean), tuple(normalize.std))

    def pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (3, size, size) from uint8 (3, height, width): resize the short side, crop the centre."""
        height, width = pixels.shape[-2:]
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.size * long / short)  # torchvision's rounding of the long side
        new_w, new_h = (self.size, new_long) if width <= height else (new_long, self.size)
        if (new_w, new_h) != (width, height):  # torchvision skips the resize when the size is right
            pixels = self._resize(pixels, new_w, new_h)
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        return pixels[:, top : top + self.size, left : left + self.size].contiguous()

    def _resize(self, pixels: torch.Tensor, new_w: int, new_h: int) -> torch.Tensor:
        if new_w > pixels.shape[-1] or new_h > pixels.shape[-2]:
            # Enlarging a small picture: Pillow itself (cheap here, and torch's kernel is up to
            # two grey levels off when it enlarges).
            img = Image.fromarray(pixels.permute(1, 2, 0).numpy())
            return torch.from_numpy(np.array(img.resize((new_w, new_h), self.resample))).permute(2, 0, 1)
        mode = "bicubic" if self.resample == Image.Resampling.BICUBIC else "bilinear"
        # torch's antialiased uint8 kernel reproduces Pillow's filter to within one grey level.
        return torch.nn.functional.interpolate(pixels[None], size=(new_h, new_w), mode=mode, antialias=True)[0]

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """float32 model input from a uint8 batch, already on its device."""
        x = images.to(torch.float32).div(255)
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
