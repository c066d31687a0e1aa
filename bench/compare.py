"""Compare benchmark (issue 8): ``compare_sets`` on two 20k x 512 feature sets at k = 10,
end to end (read both sets from the catalog, exact top-k in each, overlap, most disagreeing),
against two baselines measured in the same run:

- scikit-learn ``NearestNeighbors(algorithm="brute")`` over each set, then the overlap;
- the plain approach: one Chroma query per item in each set (HNSW, approximate), timed on a
  sample of items and scaled to all of them.

    .venv/bin/python bench/compare.py                 # 20k x 512 (the target: < 10 s)
    .venv/bin/python bench/compare.py --n 5000
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
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--chroma-sample", type=int, default=300, help="items queried one by one in Chroma, per set")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of featurelab and sklearn (default 3)")
    a = p.parse_args()

    import torch
    from sklearn.neighbors import NearestNeighbors

    from store.analysis.compare import compare_sets, shared_counts

    rng = np.random.default_rng(0)
    values_a = clustered(a.n, a.dim)
    # "Another model": a random rotation of the same vectors plus noise, so the lists partly agree.
    rotation, _ = np.linalg.qr(rng.standard_normal((a.dim, a.dim)))
    values_b = (values_a @ rotation.astype(np.float32) + rng.standard_normal(values_a.shape).astype(np.float32) * 0.6)
    values_b = values_b.astype(np.float32)
    print(f"two sets of {a.n} x {a.dim} float32 vectors over the same items, k = {a.k}; torch "
          f"{torch.__version__} on {'cuda' if torch.cuda.is_available() else 'cpu'} ({torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ws, item_ids = workspace_with_items(Path(tmp) / "ws", a.n)
        fa = ws.feature_sets.create(name="model-a", size=a.dim)
        fb = ws.feature_sets.create(name="model-b", size=a.dim)
        fa.features.create_many(values_a, item_ids)
        fb.features.create_many(values_b, item_ids)
        ws.wait_for_index()  # the per-item Chroma baseline queries the index
        print(f"(workspace built in {time.perf_counter() - t:.1f} s, not timed)")

        def sklearn_brute() -> float:
            lists = []
            for values in (values_a, values_b):
                nn = NearestNeighbors(n_neighbors=a.k, algorithm="brute").fit(values)
                lists.append(nn.kneighbors(return_distance=False))  # each item itself left out
            return float(shared_counts(lists[0], lists[1]).mean() / a.k)

        # Alternating rounds, so that neither side always runs while the machine (or Chroma's
        # background work after the writes) is busier; medians below.
        ours, theirs, cold = [], [], []
        for round_ in range(a.rounds):
            ws.engine.forget()  # the first read of the sets from SQLite, as in a fresh process
            t = time.perf_counter()
            cmp = compare_sets(ws, fa, fb, k=a.k)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            cmp = compare_sets(ws, fa, fb, k=a.k)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            sk_overlap = sklearn_brute()
            theirs.append(time.perf_counter() - t)
            print(f"round {round_ + 1}: featurelab {cold[-1]:.2f} s (sets read from SQLite), {ours[-1]:.2f} s "
                  f"(in memory); sklearn brute {theirs[-1]:.2f} s")
        ours_cold, ours_s, sk_s = statistics.median(cold), statistics.median(ours), statistics.median(theirs)
        rows = [("featurelab compare_sets (sets read from SQLite)", ours_cold, cmp.mean_overlap),
                ("featurelab compare_sets (sets in memory)", ours_s, cmp.mean_overlap),
                ("sklearn NearestNeighbors(brute) x 2 + overlap", sk_s, sk_overlap)]

        sample = rng.choice(a.n, size=min(a.chroma_sample, a.n), replace=False)
        ws.sync_index()
        t = time.perf_counter()
        chroma_lists = {}
        for fs, values in ((fa, values_a), (fb, values_b)):
            chroma_lists[fs.id] = [ws.index.query(fs.id, values[i], a.k + 1)[0][1:] for i in sample]
        per_item = (time.perf_counter() - t) / (2 * len(sample))
        chroma_s = per_item * 2 * a.n
        sampled = np.mean([len(set(x) & set(y)) / a.k for x, y in zip(chroma_lists[fa.id], chroma_lists[fb.id])])
        rows.append((f"one Chroma query per item x 2 (from {len(sample)} per set)", chroma_s, float(sampled)))
        ws.close()

    print(f"{'run (medians of the rounds)':<58} {'seconds':>8} {'mean overlap':>13}")
    for name, seconds, overlap in rows:
        print(f"{name:<58} {seconds:>8.2f} {overlap:>13.4f}")
    print(f"compare two {a.n} x {a.dim} sets at k = {a.k}: featurelab {ours_cold:.2f} s end to end (target < 10 s); "
          f"vs sklearn brute {sk_s / ours_cold:.2f}x, vs one Chroma query per item {chroma_s / ours_cold:.1f}x")


if __name__ == "__main__":
    main()
