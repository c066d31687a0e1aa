"""Real, small models and real images for the embedding tests (nothing is downloaded).

A tiny open_clip CLIP (2 layers, width 64) is built with random weights, saved the way a
user's checkpoint is saved, and loaded back through featurelab's registry. The reference
it is compared with is open_clip's own path: PIL, the model's own preprocess,
``encode_image`` / ``encode_text`` in float32.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub

TINY_ARCH = "featurelab-test-tiny"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip_model(seed: int = 0):
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CFG).eval()


def save_tiny_clip_dir(folder: Path, seed: int = 0) -> Path:
    """An open_clip model folder (``open_clip_config.json`` + safetensors weights), the
    layout of a Hugging Face open_clip repo; load it as ``local-dir:<folder>``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}}))
    save_file(tiny_clip_model(seed).state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


def register_tiny_arch(folder: Path) -> str:
    """Make the tiny config a named open_clip architecture (as open_clip's own are)."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_ARCH}.json"
    path.write_text(json.dumps(TINY_CFG))
    if TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(path)
    return TINY_ARCH


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A plain checkpoint file: ``torch.save`` of the state dict, or safetensors by suffix."""
    import torch

    state = tiny_clip_model(seed).state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def reference_clip(folder: Path):
    """open_clip's own model and preprocess for a saved folder, loaded independently."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


def reference_image_vectors(model, preprocess, images: list[bytes]) -> np.ndarray:
    import torch
    from PIL import Image

    with torch.no_grad():
        out = [model.encode_image(preprocess(Image.open(io.BytesIO(b))).unsqueeze(0)).float() for b in images]
    vectors = torch.nn.functional.normalize(torch.cat(out), dim=-1)
    return vectors.numpy()


def reference_text_vectors(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = [model.encode_text(tokenizer([t])).float() for t in texts]
    return torch.nn.functional.normalize(torch.cat(out), dim=-1).numpy()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


# ---- images -------------------------------------------------------------------------------
def encode(img, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def sample_photos() -> dict[str, bytes]:
    """scikit-learn's two photos (640x427) as JPEG, plus a 4x enlargement of each (large
    enough for reduced-scale decoding to kick in)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    out = {}
    for name, array in zip(("china", "flower"), load_sample_images().images):
        img = Image.fromarray(array)
        out[f"{name}.jpg"] = encode(img, quality=92)
        out[f"{name}-large.jpg"] = encode(img.resize((img.width * 4, img.height * 4), Image.BICUBIC), quality=92)
    return out


def generated_images(seed: int = 0) -> dict[str, bytes]:
    """Shapes on gradients, noise, a greyscale and a palette image, as JPEG and PNG."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = {}
    for i, (w, h) in enumerate([(300, 200), (200, 360), (1600, 1200), (97, 131)]):
        x = np.linspace(0, 255, w)[None, :, None]
        y = np.linspace(0, 255, h)[:, None, None]
        base = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                               np.full((h, w, 1), 40.0 * i)], axis=2).astype(np.uint8)
        img = Image.fromarray(base)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
            draw.ellipse((x0, y0, x0 + w // 4, y0 + h // 4), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        out[f"shapes-{i}.jpg"] = encode(img, quality=90)
        out[f"shapes-{i}.png"] = encode(img, "PNG")
    out["noise.png"] = encode(Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)), "PNG")
    out["grey.png"] = encode(Image.fromarray(rng.integers(0, 255, (150, 150), dtype=np.uint8), "L"), "PNG")
    out["palette.png"] = encode(Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    return out


TEXTS = [
    "a photo of a cat sleeping on a sofa",
    "The quarterly report shows revenue growth in every region.",
    "Ein Hund läuft über die Wiese.",
    "red",
    "a very long sentence " * 60,
    "",
]
