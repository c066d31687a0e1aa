"""Clusters benchmark (issue 8): featurelab's k-means (PyTorch) against scikit-learn's
``KMeans(n_init=1)`` on the same vectors in the same process, then the whole
``cluster_feature_set`` (read the set, cluster, name, write metadata) on a workspace.

    .venv/bin/python bench/clusters.py                    # 100k x 512, k = 50 (the target: < 10 s)
    .venv/bin/python bench/clusters.py --n 20000 --skip-workspace
    .venv/bin/python bench/clusters.py --centres 20 --spread 1 --skip-workspace   # overlapping: many iterations
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.store_search import clustered, workspace_with_items  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--repeat", type=int, default=2, help="seeds to run each side with (default 2)")
    p.add_argument("--centres", type=int, default=None,
                   help="true centres (default n / 1000, spread 3: well separated); fewer and closer runs longer")
    p.add_argument("--spread", type=float, default=3.0, help="scale of the true centres against unit noise")
    p.add_argument("--skip-workspace", action="store_true", help="time only the k-means itself")
    a = p.parse_args()

    import torch
    from sklearn.cluster import KMeans

    from store.analysis.clusters import cluster_feature_set, kmeans

    if a.centres is None:
        values = clustered(a.n, a.dim)
        centres = max(10, a.n // 1000)
    else:
        rng = np.random.default_rng(0)
        centres = a.centres
        means = rng.standard_normal((centres, a.dim)).astype(np.float32) * a.spread
        values = means[rng.integers(0, centres, a.n)] + rng.standard_normal((a.n, a.dim)).astype(np.float32)
    kmeans(values[:2000], 5)  # warm up the libraries (thread pools), not timed
    KMeans(5, n_init=1, random_state=0).fit(values[:2000])
    print(f"{a.n} x {a.dim} clustered float32 vectors ({centres} true centres, spread {a.spread}), k = {a.k}, "
          f"torch {torch.__version__} on {'cuda' if torch.cuda.is_available() else 'cpu'} "
          f"({torch.get_num_threads()} threads)")
    print(f"{'run':<28} {'seconds':>8} {'inertia':>14} {'iterations':>10}")
    ours_t, theirs_t = [], []
    for seed in range(a.repeat):
        t = time.perf_counter()
        ours = kmeans(values, a.k, seed=seed)
        ours_t.append(time.perf_counter() - t)
        print(f"{f'featurelab kmeans, seed {seed}':<28} {ours_t[-1]:>8.2f} {ours.inertia:>14.6g} {ours.n_iter:>10}")
        t = time.perf_counter()
        theirs = KMeans(a.k, n_init=1, random_state=seed).fit(values)
        theirs_t.append(time.perf_counter() - t)
        print(f"{f'sklearn KMeans(n_init=1), {seed}':<28} {theirs_t[-1]:>8.2f} {theirs.inertia_:>14.6g} "
              f"{theirs.n_iter_:>10}")
        print(f"{'  inertia ours / sklearn':<28} {ours.inertia / theirs.inertia_:>23.4f}")

    if not a.skip_workspace:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            ws, item_ids = workspace_with_items(Path(tmp) / "ws", a.n)
            fs = ws.feature_sets.create(name="bench clusters", size=a.dim)
            fs.features.create_many(values, item_ids)
            print(f"(workspace with {a.n} items and vectors built in {time.perf_counter() - t:.1f} s, not timed)")
            stages: dict[str, float] = {}
            last = [time.perf_counter(), "start"]

            def progress(stage: str, fraction: float) -> None:
                now = time.perf_counter()
                if stage != last[1]:
                    stages[last[1]] = stages.get(last[1], 0.0) + now - last[0]
                    last[:] = [now, stage]

            t = time.perf_counter()
            result = cluster_feature_set(ws, fs, k=a.k, progress=progress)
            total = time.perf_counter() - t
            stages[last[1]] = stages.get(last[1], 0.0) + time.perf_counter() - last[0]
            found = ws.search({"filter": {"metadata.clusters.bench_clusters.id": 0}, "pageSize": 1}).items_count
            assert found == result.clusters[0].size
            split = ", ".join(f"{s} {v:.2f} s" for s, v in stages.items() if s != "start")
            print(f"cluster_feature_set end to end (read, cluster, name, write {a.n} items' metadata): "
                  f"{total:.2f} s ({split})")
            t = time.perf_counter()
            cluster_feature_set(ws, fs, k=a.k, seed=1)
            print(f"  again with another seed (set in memory, replacing the assignment): {time.perf_counter() - t:.2f} s")
            ws.close()

    ours_m, theirs_m = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"k-means {a.n} x {a.dim}, k = {a.k}: featurelab {ours_m:.2f} s (target < 10 s) vs sklearn "
          f"KMeans(n_init=1) {theirs_m:.2f} s (medians), ratio {theirs_m / ours_m:.2f}x")


if __name__ == "__main__":
    main()
