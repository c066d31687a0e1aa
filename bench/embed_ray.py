"""The embedding job on Ray against the local pipeline, on the same files, in one run.

Measures:
  (a) the local pipeline (``embed_dataset``);
  (b) the job on Ray with one actor;
  (c) the job on Ray with every actor the machine allows (one per CPU, or one per GPU);
and how many vectors a second the driver's side can store: (d) the catalog alone (a
workspace that does not own the index, as a second process), (e) the catalog plus a
`chroma run` server (``FEATURELAB_CHROMA_URL``), (f) that server alone (``upsert``).
It prints items/s, the overhead ratio (b)/(a) (target >= 0.85) and, with GPUs, the figure
per GPU. Job times exclude model loading (as the local job's do); the start of the actors
is printed apart. A local Ray cluster is started for the run unless --address names one.

    .venv/bin/python bench/embed_ray.py                       # 256 files, the 2-layer test model, CPU
    .venv/bin/python bench/embed_ray.py --items 2000 --model ViT-B-32
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embed_throughput import SMALL_CONFIGS, make_jpegs, stored  # noqa: E402

from store import Workspace  # noqa: E402
from store.embedders import create_feature_set, embed_dataset  # noqa: E402
from tests.conftest import chroma_executable, free_port  # noqa: E402
from tests.ray.cluster import start_local_ray, stop_local_ray  # noqa: E402


def save_model_dir(arch: str, folder: Path) -> str:
    """An open_clip model folder (config + random weights): the workers get both from it."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = SMALL_CONFIGS.get(arch) or open_clip.get_model_config(arch)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return f"local-dir:{folder}"


def timed_job(ws, ds, name: str, model: str, **kwargs) -> tuple[float, float, object]:
    """(items/s of the job, seconds from the call to the end, report)."""
    fs = create_feature_set(ws, name, model)
    start = time.perf_counter()
    report = embed_dataset(ws, ds, fs, **kwargs)
    wall = time.perf_counter() - start
    assert report.embedded == report.total and not report.failures, report.summary()
    return report.embedded / report.seconds, wall, report


def write_rate(ws, fs, vectors: np.ndarray, entities: list, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(entities), batch):
        ws.create_features(fs, vectors[i : i + batch], entities[i : i + batch])
    return len(entities) / (time.perf_counter() - start)


def start_chroma(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([chroma_executable(), "run", "--path", str(folder), "--host", "127.0.0.1", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start")


def write_rates(tmp: Path, count: int, size: int, batch: int) -> dict[str, float]:
    """(d), (e), (f): vectors/s stored, in bulk batches like the job's writer."""
    import chromadb

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, size)).astype(np.float32)
    texts = [(f"v{i}.txt", f"v{i}".encode()) for i in range(count)]
    out = {}
    owner = Workspace.open(tmp / "writes")  # owns the embedded index; the second object below writes the catalog only
    items = [r.item for r in owner.datasets.create("w").items.upload(texts)]
    catalog_only = Workspace.open(tmp / "writes")
    assert catalog_only.index is None
    out["(d) catalog alone"] = write_rate(catalog_only, catalog_only.feature_sets.create(name="d", size=size),
                                          vectors, items, batch)
    catalog_only.close()
    owner.close()
    proc, url = start_chroma(tmp / "chroma-server")
    try:
        server_ws = Workspace.open(tmp / "writes", chroma_url=url)
        server_items = list(server_ws.datasets.get(dataset_name="w").items.list().all())
        out["(e) catalog + Chroma server"] = write_rate(
            server_ws, server_ws.feature_sets.create(name="e", size=size), vectors, server_items, batch)
        server_ws.close()
        host, port = url.rsplit(":", 1)
        collection = chromadb.HttpClient(host=host.split("//")[1], port=int(port)).create_collection(
            "bench-raw", metadata={"hnsw:space": "l2"})
        start = time.perf_counter()
        for i in range(0, count, batch):
            collection.upsert(ids=[f"r{j}" for j in range(i, min(i + batch, count))], embeddings=vectors[i : i + batch])
        out["(f) Chroma server alone"] = count / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--model", default="test-tiny", help=f"one of {list(SMALL_CONFIGS)} or an open_clip architecture")
    parser.add_argument("--size", default="640x480", help="JPEG width x height")
    parser.add_argument("--address", help="an existing Ray cluster (default: start one on this machine)")
    parser.add_argument("--vectors", type=int, default=10000, help="vectors for the write rates (d)-(f)")
    parser.add_argument("--vector-size", type=int, default=512)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch

    gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="flbench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        make_jpegs(tmp / "jpegs", args.items, width, height)
        model = save_model_dir(args.model, tmp / "model")
        cluster = None
        if not args.address:
            (tmp / "ray").mkdir()
            start = time.perf_counter()
            cluster, args.address = start_local_ray(tmp / "ray", num_cpus=cores, num_gpus=gpus)
            print(f"local Ray cluster up in {time.perf_counter() - start:.1f} s")
        try:
            with Workspace.open(tmp / "ws", chroma_url=None) as ws:
                ds = ws.datasets.create("bench")
                ds.items.upload(tmp / "jpegs")
                all_actors = gpus or cores
                runs = {"(a) local pipeline": timed_job(ws, ds, "local", model)}
                runs["(b) Ray, 1 actor"] = timed_job(ws, ds, "ray-1", model, ray=args.address, actors=1)
                runs[f"(c) Ray, {all_actors} actors"] = timed_job(ws, ds, "ray-all", model, ray=args.address,
                                                                  actors=all_actors)
                local = stored(ws, ws.feature_sets.get(feature_set_name="local"))
                cosines = []
                for name in ("ray-1", "ray-all"):
                    other = stored(ws, ws.feature_sets.get(feature_set_name=name))
                    cosines += [float(local[k] @ other[k] / np.linalg.norm(local[k]) / np.linalg.norm(other[k]))
                                for k in local]
        finally:
            import ray

            ray.shutdown()  # before the cluster goes: a driver whose cluster vanished is ended by Ray
            if cluster is not None:
                stop_local_ray(cluster)
        writes = write_rates(tmp, args.vectors, args.vector_size, batch=256)

    load = os.getloadavg()
    print(f"featurelab embedding on Ray: {args.items} JPEG files {width}x{height}, model {args.model}, "
          f"{cores} CPU cores, {gpus} GPUs; load average after the run {' '.join(f'{v:.1f}' for v in load)}")
    print(f"{'path':28} {'items/s':>8} {'call to end, s':>15}  device, batch")
    for label, (rate, wall, report) in runs.items():
        print(f"{label:28} {rate:8.1f} {wall:15.1f}  {report.device}, {report.batch_size}")
    print(f"min cosine, local vs Ray, item by item: {min(cosines):.6f}")
    base = runs["(a) local pipeline"][0]
    one, everything = runs["(b) Ray, 1 actor"][0], list(runs.values())[2][0]
    print(f"Ray 1 actor / local: {one / base:.2f}x (target >= 0.85)   Ray all actors / local: {everything / base:.2f}x")
    if gpus:
        print(f"per GPU: {everything / gpus:.1f} items/s")
    print(f"\nwrites of {args.vectors} x {args.vector_size} float32 vectors in batches of 256:")
    for label, rate in writes.items():
        print(f"{label:32} {rate:10.0f} vectors/s")
    limit = min(writes["(d) catalog alone"], writes["(e) catalog + Chroma server"])
    per_actor = everything / max(1, gpus or all_actors)
    print(f"the driver's writes cap a job at about {limit:.0f} vectors/s: {limit / per_actor:.0f} actors at "
          f"{per_actor:.1f} items/s each")


if __name__ == "__main__":
    main()
