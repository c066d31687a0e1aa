"""Store benchmark (issue 2): bulk create vs raw Chroma, exact and approximate search, and
reading a whole set into memory. Every ratio is against a baseline measured in this run.

    .venv/bin/python bench/store_search.py            # 100k x 512 (and 200k for HNSW)
    .venv/bin/python bench/store_search.py --n 20000  # a quicker look
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import Filters, Workspace  # noqa: E402
from store.index.chroma import HNSW  # noqa: E402


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """~n/1000 clusters (at least 10): unit noise around centres of spread 3. The one
    generator of the benchmarks' vectors."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(10, n // 1000), dim)).astype(np.float32) * 3
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # in pieces: no float64 temporaries of the whole set (4 GB at 1M x 512)
        m = min(s + 100_000, n) - s
        out[s : s + m] = centers[rng.integers(0, len(centers), m)] + rng.standard_normal((m, dim), dtype=np.float32)
    return out


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def workspace_with_items(root: Path, n: int) -> tuple[Workspace, list[str]]:
    ws = Workspace.open(root)
    ds = ws.datasets.create("bench")
    now = time.time()
    rows = [(f"{i:024x}", ds.id, f"{i}.txt", "/", "text", "text/plain", 1, f"{i:064x}", None, None, 0, "{}", now)
            for i in range(n)]
    with ws.catalog.transaction() as c:  # items straight into the catalog: the files are not what is measured
        c.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return ws, [r[0] for r in rows]


def bench_bulk_create(n: int, dim: int, root: Path) -> dict:
    import chromadb
    from chromadb.config import Settings

    values = clustered(n, dim)
    client = chromadb.PersistentClient(path=str(root / "raw"), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("raw", configuration={"hnsw": dict(HNSW)}, embedding_function=None)
    ids = [f"{i:024x}" for i in range(n)]
    step = client.get_max_batch_size()

    def raw_add():
        for s in range(0, n, step):
            col.add(ids=ids[s : s + step], embeddings=values[s : s + step])

    raw_s, _ = timed(raw_add)
    ws, item_ids = workspace_with_items(root / "ws", n)
    fs = ws.feature_sets.create(name="bench", size=dim)
    ours_s, _ = timed(lambda: fs.features.create_many(values, item_ids))
    indexed_s, _ = timed(ws.wait_for_index)  # Chroma catches up in the background (issue 14)
    return {"n": n, "raw_chroma_per_s": n / raw_s, "featurelab_per_s": n / ours_s, "ratio": raw_s / ours_s,
            "indexed_per_s": n / (ours_s + indexed_s), "indexed_ratio": raw_s / (ours_s + indexed_s),
            "ws": ws, "fs": fs, "values": values}


def bench_search(ws: Workspace, fs, values: np.ndarray, queries: int = 50) -> dict:
    rng = np.random.default_rng(1)
    qs = values[rng.integers(0, len(values), queries)] + rng.standard_normal((queries, values.shape[1])).astype(np.float32) * 0.1
    first_s, _ = timed(lambda: ws.matrix(fs))
    ws.engine.forget()
    ws.matrix(fs)
    again_s, _ = timed(lambda: ws.matrix(fs))
    ours = []
    for q in qs:
        f = Filters().add_euclid(fs, q, k=100)
        t, _ = timed(lambda: ws.search(f))
        ours.append(t)
    X = values
    brute = []
    for q in qs:
        t, _ = timed(lambda: np.argsort(((X - q) ** 2).sum(1))[:100])
        brute.append(t)
    chroma_read_s, _ = timed(lambda: ws.index.get_vectors(fs.id, list(ws.matrix(fs).entity_ids[:20000])))
    return {"load_first_s": first_s, "load_cached_s": again_s, "exact_top100_ms": 1000 * np.median(ours),
            "numpy_naive_top100_ms": 1000 * np.median(brute), "chroma_read_20k_s": chroma_read_s}


def bench_approx(ws: Workspace, fs, values: np.ndarray, queries: int = 100) -> dict:
    rng = np.random.default_rng(2)
    qs = values[rng.integers(0, len(values), queries)] + rng.standard_normal((queries, values.shape[1])).astype(np.float32) * 0.1
    exact_t, approx_t, recall = [], [], []
    for q in qs:
        t1, ex = timed(lambda: ws.search(Filters().add_euclid(fs, q, k=10)))
        t2, ap = timed(lambda: ws.search(Filters().add_euclid(fs, q, k=10, approximate=True)))
        exact_t.append(t1)
        approx_t.append(t2)
        recall.append(len({i.id for i in ex.items} & {i.id for i in ap.items}) / 10)
    return {"n": len(values), "recall_at_10": float(np.mean(recall)), "exact_ms": 1000 * np.median(exact_t),
            "approx_ms": 1000 * np.median(approx_t), "speedup": np.median(exact_t) / np.median(approx_t)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--approx-n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=512)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bulk = bench_bulk_create(a.n, a.dim, root / "bulk")
        print(f"bulk create {a.n} x {a.dim}: raw Chroma {bulk['raw_chroma_per_s']:.0f}/s, "
              f"featurelab {bulk['featurelab_per_s']:.0f}/s committed, ratio {bulk['ratio']:.2f} (target >= 0.80); "
              f"until indexed {bulk['indexed_per_s']:.0f}/s, ratio {bulk['indexed_ratio']:.2f}")
        s = bench_search(bulk["ws"], bulk["fs"], bulk["values"])
        print(f"all {a.n} vectors in memory: first read {s['load_first_s']:.2f} s, cached {s['load_cached_s'] * 1000:.2f} ms "
              f"(target < 1 s); Chroma reads 20k by id in {s['chroma_read_20k_s']:.2f} s")
        print(f"exact top-100 over {a.n} x {a.dim}: {s['exact_top100_ms']:.1f} ms/query (target < 10 ms); "
              f"naive NumPy sort {s['numpy_naive_top100_ms']:.1f} ms, ratio {s['numpy_naive_top100_ms'] / s['exact_top100_ms']:.1f}x")
        bulk["ws"].close()
        ws, item_ids = workspace_with_items(root / "approx", a.approx_n)
        fs = ws.feature_sets.create(name="approx", size=a.dim)
        values = clustered(a.approx_n, a.dim, seed=5)
        fs.features.create_many(values, item_ids)
        ws.wait_for_index()  # else approximate searches are answered exactly (and say so)
        ap = bench_approx(ws, fs, values)
        print(f"approximate top-10 at {ap['n']}: recall@10 {ap['recall_at_10']:.3f} (target >= 0.95), "
              f"{ap['approx_ms']:.1f} ms vs exact {ap['exact_ms']:.1f} ms, speedup {ap['speedup']:.1f}x (target >= 3)")


if __name__ == "__main__":
    main()
