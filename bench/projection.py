"""Projection benchmark (issue 5): featurelab's map of a feature set against umap-learn's
defaults on the same vectors, in the same run. Figures go to bench/README.md ("Projections").

    .venv/bin/python bench/projection.py               # 20k x 512, plus fresh-process costs
    .venv/bin/python bench/projection.py --n 100000    # the large case (minutes on a CPU)
    .venv/bin/python bench/projection.py --n 1000000   # a map through landmarks (umap-learn: most of an hour)

Prints: the fixed cost of a first map in a new process (numba compile, then the workspace's
numba cache); in one warm process (A) each library's first large map, then (B) alternating
rounds with both fully warm; the quality of each map, including the GPU path's torch layout
run on the CPU; the exact kNN builders (PyTorch against NumPy); a revisit from the cache.
Above ``projection.LANDMARKS_ABOVE`` (where featurelab maps through landmarks on a CPU) it
runs ``large()`` instead: one map each, both libraries warm, quality on a 5,000-point sample.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store import Workspace  # noqa: E402
from store.analysis import knn as knn_scan, projection  # noqa: E402

SMALL = 2000  # the set a fresh process maps, to show the fixed cost


def clustered(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)).astype(np.float32) * 3
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + rng.standard_normal((n, dim)).astype(np.float32), labels


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def build_workspace(path: Path, values: np.ndarray) -> list[str]:
    """Items and two sets ("small": the first SMALL vectors, "main": all); the item ids in order.
    Items go straight into the catalog (as in store_search.py): their files are not measured."""
    with Workspace.open(path) as ws:
        ds = ws.datasets.create("bench")
        now = time.time()
        rows = [(f"{i:024x}", ds.id, f"{i}.txt", "/", "text", "text/plain", 1, f"{i:064x}", 0, "{}", now)
                for i in range(len(values))]
        with ws.catalog.transaction() as c:
            c.executemany("INSERT INTO items (id, dataset_id, name, dir, kind, mimetype, size, sha256, hidden,"
                          " metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        ids = [r[0] for r in rows]
        for name, count in (("small", SMALL), ("main", len(values))):
            fs = ws.feature_sets.create(name=name, size=values.shape[1])
            ws.create_features(fs, values[:count], ids[:count])
    return ids


FRESH_OURS = """
import sys, time; started = time.perf_counter()
sys.path.insert(0, {root!r})
from store import Workspace
from store.analysis.projection import clear_projection_cache, project
with Workspace.open({path!r}) as ws:
    clear_projection_cache(ws, "small")
    project(ws, "small")
print(time.perf_counter() - started)
"""

FRESH_UMAP = """
import sys, time; started = time.perf_counter()
sys.path.insert(0, {root!r})
import warnings; warnings.filterwarnings("ignore")
from store import Workspace
with Workspace.open({path!r}) as ws:
    values = ws.matrix(ws.feature_sets.resolve("small")).values
import umap
umap.UMAP().fit_transform(values)
print(time.perf_counter() - started)
"""


def fresh_process(script: str, path: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}  # the workspace's default
    done = subprocess.run([sys.executable, "-c", script.format(root=str(ROOT), path=str(path))],
                          env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def quality(values: np.ndarray, labels: np.ndarray, coords: np.ndarray, sample: int = 3000) -> tuple[float, float]:
    """Trustworthiness (15 neighbours) and the share of points whose nearest map neighbour is
    in the same cluster, on a fixed random sample."""
    from sklearn.manifold import trustworthiness

    rows = np.random.default_rng(1).choice(len(values), min(sample, len(values)), replace=False)
    x, y, lab = values[rows], coords[rows], labels[rows]
    d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return trustworthiness(x, y, n_neighbors=15), float((lab[d.argmin(1)] == lab).mean())


def large(values: np.ndarray, labels: np.ndarray, path: Path, ids: list[str]) -> None:
    """One map each of a large set, both warm (umap-learn's NNDescent compiled on 5,000 points
    first, so its timed call is its work alone), and their quality on a 5,000-point sample."""
    import umap

    with Workspace.open(path) as ws:
        ws.index_sync.stop()  # Chroma's catch-up would share the cores with both timed maps
        ws.matrix(ws.feature_sets.resolve("main"))  # the vector files up to date, as after any load
        projection.warm_numba_cache(ws, background=False)
        umap.UMAP().fit_transform(values[:5000])  # above 4096 points: NNDescent, compiled now
        print(f"warm: both libraries compiled; load {os.getloadavg()[0]:.1f}", flush=True)
        fs = ws.feature_sets.resolve("main")
        stages: dict[str, float] = {}
        clock = time.perf_counter()

        def note(stage: str, _fraction: float) -> None:
            stages.setdefault(stage, time.perf_counter() - clock)

        ours_s, ours = timed(lambda: projection.project(ws, fs, progress=note))
        print(f"featurelab project(), seed 42: {ours_s:.1f} s, stages start at "
              + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()) + f"\n  {ours.details}", flush=True)
        index_of = {e: i for i, e in enumerate(ids)}
        aligned = np.array([index_of[e] for e in ours.entity_ids])
        trust, same = quality(values[aligned], labels[aligned], ours.coords, sample=5000)
        print(f"  trustworthiness {trust:.3f}, nearest on map in same cluster {same:.3f}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        base_s, base = timed(lambda: umap.UMAP().fit_transform(values))
        base_trust, base_same = quality(values, labels, base, sample=5000)
        print(f"umap-learn UMAP().fit_transform: {base_s:.1f} s\n  trustworthiness {base_trust:.3f}, "
              f"nearest on map in same cluster {base_same:.3f}; load {os.getloadavg()[0]:.1f}")
    print(f"\nratio umap-learn / featurelab: {base_s / ours_s:.2f}x (target >= 2); "
          f"trustworthiness difference {trust - base_trust:+.3f} (target within 0.02)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of featurelab vs umap-learn")
    parser.add_argument("--skip-fresh", action="store_true", help="skip the fresh-process measurements")
    args = parser.parse_args()

    import torch

    print(f"{args.n} x {args.dim} clustered float32; {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), kNN device: {knn_scan.knn_device()}, load {os.getloadavg()[0]:.1f}")
    values, labels = clustered(args.n, args.dim)
    folder = Path(tempfile.mkdtemp(prefix="bench-projection-"))
    path = folder / "ws"
    setup, ids = timed(lambda: build_workspace(path, values))
    index_of = {e: i for i, e in enumerate(ids)}
    print(f"workspace with {args.n} items and vectors built in {setup:.0f} s\n", flush=True)
    if args.n > projection.LANDMARKS_ABOVE:
        large(values, labels, path, ids)
        shutil.rmtree(folder, ignore_errors=True)
        return

    if not args.skip_fresh:
        shutil.rmtree(path / "cache" / "numba", ignore_errors=True)
        cold = fresh_process(FRESH_OURS, path)
        cached = fresh_process(FRESH_OURS, path)
        plain = fresh_process(FRESH_UMAP, path)
        print(f"new process, map of {SMALL} x {args.dim} (imports included):")
        print(f"  umap-learn defaults                          {plain:7.1f} s")
        print(f"  featurelab, empty numba cache (first ever)   {cold:7.1f} s")
        print(f"  featurelab, the workspace's numba cache      {cached:7.1f} s   "
              f"{plain / cached:.1f}x faster than umap-learn's first call\n")

    import umap

    with Workspace.open(path) as ws:
        warm, _ = timed(lambda: projection.warm_numba_cache(ws, background=False))
        umap.UMAP().fit_transform(values[:SMALL])  # umap-learn's kernels compiled (below 4096: no NNDescent)
        print(f"warm-up: warm_numba_cache {warm:.1f} s; umap-learn fitted once on {SMALL} points")
        fs = ws.feature_sets.resolve("main")

        # A: each library's first large map in the process. umap-learn compiles pynndescent's
        # NNDescent here (pynndescent marks those kernels uncacheable); featurelab never runs it
        # up to EXACT_CPU_MAX vectors on a CPU.
        first_ours, ours = timed(lambda: projection.project(ws, fs))
        first_base, base = timed(lambda: umap.UMAP().fit_transform(values))
        rows = [("A featurelab project(), seed 42", first_ours), ("A umap-learn UMAP().fit_transform", first_base)]
        # B: both fully warm, alternating so that other load on the machine hits both alike.
        ratios = []
        for round_ in range(1, args.rounds + 1):
            projection.clear_projection_cache(ws, fs)
            ours_s, ours = timed(lambda: projection.project(ws, fs))
            base_s, base = timed(lambda: umap.UMAP().fit_transform(values))
            rows += [(f"B{round_} featurelab project(), seed 42", ours_s), (f"B{round_} umap-learn UMAP().fit_transform", base_s)]
            ratios.append(base_s / ours_s)
        free_s, free = timed(lambda: projection.project(ws, fs, seed=None))
        rows.append(("featurelab project(), seed=None", free_s))
        again_s, again = timed(lambda: projection.project(ws, fs))
        rows.append(("featurelab project() again (from cache)", again_s))
        assert again.from_cache
        table_s, table = timed(lambda: projection.point_table(ws, fs, again.entity_ids))
        rows.append(("featurelab point_table() of every point", table_s))
        assert len(table) == args.n

        aligned = np.array([index_of[e] for e in ours.entity_ids])  # projection row -> values row
        print(f"\nmaps of {args.n} x {args.dim} ({ours.details}):")
        for name, seconds in rows:
            print(f"  {name:44s} {seconds:8.2f} s")

        print("\nquality (3000-point sample):")
        gpu_layout_s, (gpu_layout, _) = timed(lambda: projection.umap_coords(
            values[aligned], projection.projection_params(), projection.Progress(None), layout_device="cpu"))
        maps = (("featurelab seed 42", ours.coords, aligned), ("featurelab seed=None", free.coords, aligned),
                ("umap-learn defaults", base, np.arange(args.n)),
                (f"torch layout (GPU path) on the CPU, {gpu_layout_s:.0f} s", gpu_layout, aligned))
        for name, coords, rows_of_values in maps:
            trust, same = quality(values[rows_of_values], labels[rows_of_values], coords)
            print(f"  {name:40s} trustworthiness {trust:.3f}, nearest on map in same cluster {same:.3f}")

        data = np.ascontiguousarray(values[: min(args.n, 20_000)])
        knn = {}
        for device in dict.fromkeys([knn_scan.knn_device(), "cpu", "numpy"]):
            knn[device], _ = timed(lambda: knn_scan.exact_knn(data, 15, device=device))
        print(f"\nexact kNN graph of {len(data)} x {args.dim}, k=15: "
              + ", ".join(f"{device} {seconds:.2f} s" for device, seconds in knn.items()))

    print(f"\nrevisit from cache: {again_s * 1000:.0f} ms; point table of {args.n}: {table_s:.2f} s")
    print(f"ratio numpy / torch-cpu kNN builder: {knn['numpy'] / knn['cpu']:.2f}x")
    print(f"ratio A, first large map in a warm process, umap-learn / featurelab: {first_base / first_ours:.2f}x")
    print(f"ratio B, both fully warm, umap-learn / featurelab seed 42: "
          f"{', '.join(f'{r:.2f}x' for r in ratios)} (mean {np.mean(ratios):.2f}x); seed=None {base_s / free_s:.2f}x")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
