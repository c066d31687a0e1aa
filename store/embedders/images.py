"""Turning stored image bytes into the RGB picture a model should see.

Each awkward case is decided on purpose (see shared/reference/pitfalls.md):
EXIF orientation is applied, transparency is composited on white, 16-bit images are
scaled to 8 bits instead of clipped, CMYK goes through its ICC profile when it has one,
and decompression bombs are refused. Large JPEGs are decoded at a reduced scale (libjpeg's
DCT scaling, ``Image.draft``) when the model only needs a small picture: that is most of
the decoding cost of a camera photo, and the result stays at least twice the model's input
size so the final resize is the same kind of downscale the model's own preprocess does.

``decode_pixels`` is the pipeline's path: plain RGB or grey JPEGs go through torchvision's
``decode_jpeg`` (the same libjpeg-turbo decode as Pillow, bit for bit, with less overhead
per image); everything else through Pillow as above.
"""
from __future__ import annotations

import functools
import io
import math
import os
import warnings
from pathlib import Path
from typing import Sequence, Union

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from ..errors import InvalidInput
from ..files import MAX_IMAGE_PIXELS

if TYPE_CHECKING:
    import torch

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, Image.Image]
Box = Sequence[float]  # left, top, right, bottom in pixels


def open_rgb(source: ImageSource, *, draft_size: int | None = None) -> Image.Image:
    """Decode ``source`` into a loaded RGB image.

    ``draft_size``: the smallest side the caller needs; JPEGs much larger than twice that
    are decoded at 1/2, 1/4 or 1/8 scale. Raises ``InvalidInput`` for anything unreadable.
    """
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    stream = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InvalidInput(f"{width}x{height} pixels is over the {MAX_IMAGE_PIXELS:,} allowed")
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (2 * draft_size, 2 * draft_size))
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"refused as a possible decompression bomb ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for damaged files
        raise InvalidInput(f"cannot decode the image ({type(exc).__name__}: {exc})") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel, whatever the source mode."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(img)
    if img.mode == "CMYK":
        return _cmyk_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    # convert("RGB") clips values above 255 (a 16-bit photo turns almost white): scale instead.
    values = np.asarray(img, dtype=np.float64)
    top = 1.0 if img.mode == "F" and values.size and values.max() <= 1.0 else 65535.0
    if img.mode == "I" and values.size and values.max() <= 255:
        top = 255.0
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    profile = img.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken profile: fall back to Pillow's plain conversion
            pass
    return img.convert("RGB")


def crop_box(img: Image.Image, box: Box) -> Image.Image:
    """The pixels covered by a box, widened to whole pixels and clipped to the image."""
    left, top, right, bottom = box
    left, top = max(0, math.floor(left)), max(0, math.floor(top))
    right, bottom = min(img.width, math.ceil(right)), min(img.height, math.ceil(bottom))
    if right <= left or bottom <= top:
        raise InvalidInput(f"box {tuple(box)} covers no pixel of a {img.width}x{img.height} image")
    return img.crop((left, top, right, bottom))


def decode_pixels(source: ImageSource, *, draft_size: int | None = None) -> "torch.Tensor":
    """Decode ``source`` into a uint8 RGB tensor (3, height, width); see ``open_rgb``."""
    data = _bytes_of(source)
    decode_jpeg = _jpeg_decoder()
    if data is not None and data[:2] == b"\xff\xd8" and decode_jpeg is not None:
        try:
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                width, height, mode = header.width, header.height, header.mode
        except Exception as exc:
            raise InvalidInput(f"cannot decode the image ({type(exc).__name__}: {exc})") from exc
        if width * height > MAX_IMAGE_PIXELS:
            raise InvalidInput(f"{width}x{height} pixels is over the {MAX_IMAGE_PIXELS:,} allowed")
        large = draft_size is not None and min(width, height) >= 4 * draft_size
        if mode in ("RGB", "L") and not large:
            try:
                return decode_jpeg(data)
            except RuntimeError as exc:
                raise InvalidInput(f"cannot decode the image ({str(exc).splitlines()[-1].strip()})") from exc
    img = open_rgb(source if data is None else data, draft_size=draft_size)
    return pixels_of(img)


def pixels_of(img: Image.Image) -> "torch.Tensor":
    """A loaded RGB image as a uint8 tensor (3, height, width)."""
    import torch

    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def crop_pixels(pixels: "torch.Tensor", box: Box) -> "torch.Tensor":
    """``crop_box`` for a (3, height, width) tensor."""
    height, width = pixels.shape[-2:]
    left, top, right, bottom = box
    left, top = max(0, math.floor(left)), max(0, math.floor(top))
    right, bottom = min(width, math.ceil(right)), min(height, math.ceil(bottom))
    if right <= left or bottom <= top:
        raise InvalidInput(f"box {tuple(box)} covers no pixel of a {width}x{height} image")
    return pixels[:, top:bottom, left:right]


def _bytes_of(source: ImageSource) -> bytes | None:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise InvalidInput(f"cannot read the file ({exc})") from exc
    return None  # a PIL image


@functools.lru_cache(maxsize=1)
def _jpeg_decoder():
    """torchvision's JPEG decoder, or ``None`` (then Pillow decodes everything)."""
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    # torchvision 0.29 marks its image io deprecated (in favour of torchcodec) on every call.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")

    def decode(data: bytes) -> "torch.Tensor":
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)

    return decode
