"""Embedding throughput, end to end from JPEG files on disk to vectors stored in Chroma.

Measures in one run, on the same files, model and machine:
  (a) the seed's loop: one item at a time, ``.tolist()``, one write per item
      (``feature_set.features.create(value=vec.tolist(), entity=item)``);
  (b) featurelab's pipeline (``store.embedders.job.embed_dataset``);
  (c) the model alone on ready tensors: the ceiling for (b).
and prints items/s and the ratios. The model is a stock open_clip architecture with random
weights, written to a checkpoint and loaded through the registry like a user's own file
(no download); throughput does not depend on the weights' values.

    .venv/bin/python bench/embed_throughput.py                 # 256 files, the 2-layer test model, CPU
    .venv/bin/python bench/embed_throughput.py --items 2000 --model ViT-B-32 --device cuda
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from store import Workspace  # noqa: E402
from store.embedders import load_embedder, parse_spec  # noqa: E402
from store.embedders.job import create_feature_set, embed_dataset  # noqa: E402


def make_jpegs(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """Distinct photo-like JPEGs: random crops, flips and tints of scikit-learn's photos."""
    from PIL import Image, ImageEnhance
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        src = photos[i % len(photos)]
        scale = rng.uniform(0.5, 1.0)
        w, h = int(src.width * scale), int(src.height * scale)
        left, top = int(rng.integers(0, src.width - w + 1)), int(rng.integers(0, src.height - h + 1))
        img = src.crop((left, top, left + w, top + h)).resize((width, height), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))
        img.save(folder / f"img-{i:05d}.jpg", quality=90)


# Small shapes open_clip does not ship, registered for this run: ViT-Ti/32 (DeiT-Tiny's
# width and depth at patch 32) and the two-layer test model of tests/store/embed_models.py.
SMALL_CONFIGS = {
    "ViT-Ti-32": {"embed_dim": 256,
                  "vision_cfg": {"image_size": 224, "layers": 12, "width": 192, "head_width": 64, "patch_size": 32},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 6}},
    "test-tiny": {"embed_dim": 32,
                  "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}},
}


def register_small_config(arch: str, folder: Path) -> None:
    import json

    import open_clip

    if arch in SMALL_CONFIGS and arch not in open_clip.list_models():
        path = folder / f"{arch}.json"
        path.write_text(json.dumps(SMALL_CONFIGS[arch]))
        open_clip.add_model_config(path)


def save_random_checkpoint(arch: str, path: Path) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


class Clock:
    """Wall time, and the CPU time of this process (all its threads): on shared cores the
    second says what a path costs whatever else runs."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def seed_loop(ws, ds, fs, embedder) -> None:
    """The seed's loop, with the same model object and preprocess as the pipeline."""
    import torch
    from PIL import Image

    for item in ds.items.list().all():
        image = Image.open(io.BytesIO(item.download()))
        x = embedder.preprocess(image).unsqueeze(0)
        with torch.no_grad():
            vec = torch.nn.functional.normalize(embedder.model.encode_image(x.to(embedder.device)).float(), dim=-1)[0]
        fs.features.create(value=vec.cpu().numpy().tolist(), entity=item)


def model_alone(embedder, tensors, batch_size: int) -> None:
    for start in range(0, len(tensors), batch_size):
        embedder.encode_prepared(tensors[start : start + batch_size])


def stored(ws, fs) -> dict[str, np.ndarray]:
    rows = ws.catalog.all("SELECT entity_id, value FROM features WHERE feature_set_id=?", (fs.id,))
    return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--model", default="test-tiny",
                        help=f"an open_clip architecture, or one of {list(SMALL_CONFIGS)} (random weights)")
    parser.add_argument("--size", default="640x480", help="JPEG width x height")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (c), (a), (b); best and median are reported")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch

    with tempfile.TemporaryDirectory(prefix="featurelab-bench-") as tmp:
        tmp = Path(tmp)
        make_jpegs(tmp / "jpegs", args.items, width, height)
        register_small_config(args.model, tmp)
        save_random_checkpoint(args.model, tmp / "weights.safetensors")
        spec = parse_spec(args.model, weights=tmp / "weights.safetensors")
        embedder = load_embedder(spec, args.device)
        batch = args.batch_size or embedder.batch_size("image")
        with Workspace.open(tmp / "ws", chroma_url=None) as ws:
            ds = ws.datasets.create("bench")
            ds.items.upload(tmp / "jpegs")
            seed_set = create_feature_set(ws, "seed", spec)
            pipe_set = create_feature_set(ws, "pipeline", spec)
            tensors = torch.stack([embedder.prepare_image(p) for p in sorted((tmp / "jpegs").iterdir())])
            embedder.encode_prepared(tensors[:batch])  # warm-up: first calls allocate
            runs: dict[str, list[Clock]] = {"seed": [], "pipeline": [], "ceiling": []}  # printed in this order
            report = None
            for _ in range(args.repeat):
                with Clock() as clock:
                    model_alone(embedder, tensors, batch)
                runs["ceiling"].append(clock)
                with Clock() as clock:
                    seed_loop(ws, ds, seed_set, embedder)
                runs["seed"].append(clock)
                with Clock() as clock:
                    report = embed_dataset(ws, ds, pipe_set, model=spec, device=args.device,
                                           batch_size=args.batch_size, recompute=True, workers=args.workers)
                runs["pipeline"].append(clock)
                assert report.embedded == args.items and not report.failures, report.summary()
            a, b = stored(ws, seed_set), stored(ws, pipe_set)
            cos = [float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in a]
            indexed = ws.check_index(pipe_set.id)

    load = os.getloadavg()
    wall = {k: [args.items / c.wall for c in v] for k, v in runs.items()}
    cpu = {k: [args.items / c.cpu for c in v] for k, v in runs.items()}
    best = {k: max(v) for k, v in wall.items()}
    print(f"featurelab embedding throughput: {args.items} JPEG files {width}x{height} -> vectors in Chroma")
    print(f"model {args.model} (size {embedder.size}), device {embedder.device}, batch {report.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPU cores, {args.repeat} rounds")
    print(f"load average after the run: {' '.join(f'{v:.1f}' for v in load)} (other processes share these cores)")
    print()
    print(f"{'path':34} {'items/s':>8} {'median':>8} {'per CPU-s':>10}   all runs (items/s)")
    labels = {"seed": "(a) seed loop, one item at a time", "pipeline": "(b) featurelab pipeline",
              "ceiling": "(c) model alone on ready tensors"}
    for key, label in labels.items():
        print(f"{label:34} {best[key]:8.1f} {statistics.median(wall[key]):8.1f} {statistics.median(cpu[key]):10.1f}"
              f"   {' '.join(f'{v:.1f}' for v in wall[key])}")
    print()
    print(f"min cosine, seed loop vs pipeline, item by item: {min(cos):.6f}")
    print(f"Chroma index of the pipeline's set: {indexed['index']} vectors (catalog {indexed['catalog']})")
    print(f"pipeline / ceiling: {best['pipeline'] / best['ceiling']:.2f} best, "
          f"{statistics.median(wall['pipeline']) / statistics.median(wall['ceiling']):.2f} median, "
          f"{statistics.median(cpu['pipeline']) / statistics.median(cpu['ceiling']):.2f} per CPU-second")
    print(f"pipeline / seed loop: {best['pipeline'] / best['seed']:.1f}x best, "
          f"{statistics.median(wall['pipeline']) / statistics.median(wall['seed']):.1f}x median, "
          f"{statistics.median(cpu['pipeline']) / statistics.median(cpu['seed']):.1f}x per CPU-second")


if __name__ == "__main__":
    main()
