"""Search at scale (issue 14, items 3 and 4): exact top-100 through the int8 first pass
against faiss.IndexFlatL2 and our own float32 pass, with a filter, and approximate top-10
in Chroma's HNSW against faiss HNSW with the same parameters, at 10k, 100k and 1M vectors.

    .venv/bin/python bench/scale_search.py                      # 10k, 100k, 1M x 512, approx to 100k
    .venv/bin/python bench/scale_search.py --max 100000         # a quicker look
    .venv/bin/python bench/scale_search.py --approx-max 1000000 # HNSW at 1M too (builds take long)

Each step prints its time, the peak memory it added (the process's high-water mark, reset
before the step) and, from the second size on, the slope of its cost against n
(log time / log n); ratios are against baselines measured in the same run, because this
machine (2 shared cores) is noisy. Clustered data is made in-process: the pure scan needs
no catalog (the engine's cached filter rows stand in for ``{"hidden": false}``).
Shaped to merge into ``bench/scale.py``: ``STEPS`` maps a step's name to its function.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.search import compressed as int8  # noqa: E402
from store.search import exact  # noqa: E402


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """As bench/store_search.py: ~n/1000 clusters, unit noise around centres of spread 3."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(10, n // 1000), dim)).astype(np.float32) * 3
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # in pieces: no float64 temporaries of the whole set
        m = min(s + 100_000, n) - s
        out[s : s + m] = centers[rng.integers(0, len(centers), m)] + rng.standard_normal((m, dim), dtype=np.float32)
    return out


def queries_near(values: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, values.shape[1])).astype(np.float32) * 0.1
    return values[rng.integers(0, len(values), count)] + noise


# ---- memory -----------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measured(fn: Callable):
    """(seconds, MB the step added to the process's peak resident memory, result)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    before = _status_kb("VmRSS")
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    return seconds, max(0, _status_kb("VmHWM") - before) / 1024, out


def p50_ms(fn: Callable, qs: np.ndarray, warm: int = 2) -> tuple[float, list]:
    for q in qs[:warm]:
        fn(q)
    times, outs = [], []
    for q in qs:
        t = time.perf_counter()
        outs.append(fn(q))
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)), outs


# ---- exact ------------------------------------------------------------------------------------
def matrix_of(values: np.ndarray) -> exact.VectorMatrix:
    ids = np.char.zfill(np.arange(len(values)).astype(str), 24)
    return exact.VectorMatrix(ids, ids, values, 1)


def step_exact(values: np.ndarray, qs: np.ndarray, k: int = 100) -> dict:
    """Exact top-k: int8 pass, float32 pass, faiss.IndexFlatL2, with and without a filter."""
    import faiss

    out: dict = {}
    m = matrix_of(values)
    out["int8_copy_s"], out["int8_copy_mb"], _ = measured(lambda: m.int8_copy.get(wait=True))
    out["int8_ms"], mem, hits = _with_mem(lambda: p50_ms(lambda q: exact.search(m, q, limit=k, compressed=True), qs))
    out["int8_mb"] = mem
    out["f32_ms"], _ = p50_ms(lambda q: exact.search(m, q, limit=k, compressed=False), qs[:10])
    rng = np.random.default_rng(7)
    for share in (0.9, 0.1):  # {"hidden": false} passes most; a narrow filter passes few
        rows = np.sort(rng.choice(len(values), int(len(values) * share), replace=False))
        out[f"filtered_{share}_ms"], _ = p50_ms(lambda q: exact.search(m, q, rows, limit=k, compressed=True), qs)
    index = faiss.IndexFlatL2(values.shape[1])
    out["faiss_add_s"], out["faiss_mb"], _ = measured(lambda: index.add(values))
    out["faiss_ms"], _ = p50_ms(lambda q: index.search(q[None], k), qs)
    del index
    # The answers are brute force's (float64, ties by id), on a few queries.
    for q, h in list(zip(qs, hits))[:3]:
        d = exact.exact_distances(values, q)
        want = np.lexsort((np.arange(len(d)), d))[:k]
        assert np.array_equal(h.rows, want), "int8 pass differs from brute force"
    return out


def _with_mem(fn: Callable):
    _, mb, (ms, outs) = measured(fn)
    return ms, mb, outs


# ---- approximate ------------------------------------------------------------------------------
HNSW_M, EF_CONSTRUCTION, EF_SEARCHES = 32, 200, (100, 200, 400)  # the product's: store/index/chroma.py HNSW


def step_approx(values: np.ndarray, qs: np.ndarray, exact_top: list[np.ndarray], k: int = 10) -> dict:
    """Chroma's HNSW and faiss's with the same M / ef_construction, recall@10 against exact,
    p50 latency per ef_search."""
    import chromadb
    import faiss
    from chromadb.config import Settings

    out: dict = {}
    index = faiss.IndexHNSWFlat(values.shape[1], HNSW_M)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    out["faiss_build_s"], out["faiss_build_mb"], _ = measured(lambda: index.add(values))
    for ef in EF_SEARCHES:
        index.hnsw.efSearch = ef
        ms, found = p50_ms(lambda q: index.search(q[None], k)[1][0], qs)
        out[f"faiss_ef{ef}"] = (ms, _recall(found, exact_top, k))
    del index
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(path=tmp, settings=Settings(anonymized_telemetry=False))
        hnsw = {"space": "l2", "max_neighbors": HNSW_M, "ef_construction": EF_CONSTRUCTION, "ef_search": 100}
        col = client.create_collection("scale", configuration={"hnsw": hnsw}, embedding_function=None)
        ids = [str(i) for i in range(len(values))]
        step = client.get_max_batch_size()

        def add() -> None:
            for s in range(0, len(values), step):
                col.add(ids=ids[s : s + step], embeddings=values[s : s + step])

        out["chroma_build_s"], out["chroma_build_mb"], _ = measured(add)
        for ef in EF_SEARCHES:
            col.modify(configuration={"hnsw": {"ef_search": ef}})
            col = client.get_collection("scale")
            ms, found = p50_ms(lambda q: np.array([int(i) for i in col.query(query_embeddings=[q], n_results=k,
                                                                              include=[])["ids"][0]]), qs)
            out[f"chroma_ef{ef}"] = (ms, _recall(found, exact_top, k))
    return out


def _recall(found: list[np.ndarray], truth: list[np.ndarray], k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


# ---- near-duplicates: exact against approximate (ANN candidates), and the estimates ------------
def with_copies(n: int, dim: int, share: float = 0.05, seed: int = 3) -> np.ndarray:
    """Clustered rows, ``share`` of them near copies (noise 0.01) in groups of 2 to 12."""
    values = clustered(n, dim, seed)
    rng = np.random.default_rng(seed)
    at, end = 0, int(n * share)
    while at < end:
        size = int(rng.integers(2, 13))
        values[at + 1 : at + size] = values[at] + rng.standard_normal((size - 1, dim)).astype(np.float32) * 0.01
        at += size
    return values[rng.permutation(n)]


def step_duplicates(n: int, dim: int, threshold: float = 0.5) -> dict:
    """In a real workspace (catalog + Chroma): exact and approximate near-duplicate groups,
    each after its estimate; recall = redundant entities found / exact's."""
    from store.analysis import duplicates as cu
    from store.analysis.estimate import estimate

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from store_search import workspace_with_items

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws, item_ids = workspace_with_items(Path(tmp), n)
        fs = ws.feature_sets.create(name="dups", size=dim)
        out["load_s"], _, _ = measured(lambda: fs.features.create_many(with_copies(n, dim), item_ids))
        for mode, approximate in (("exact", False), ("approx", True)):
            e = estimate(ws, fs, "duplicates", approximate=approximate, include_hidden=False)
            cu.clear_cache()
            seconds, mb, found = measured(lambda: cu.duplicate_groups(ws, fs, threshold, approximate=approximate))
            out[mode] = {"estimate_s": e.seconds, "s": seconds, "mb": mb, "groups": found}
        exact_groups = {tuple(g.entity_ids) for g in out["exact"]["groups"].groups}
        approx = out["approx"]["groups"]
        out["recall"] = approx.redundant / max(out["exact"]["groups"].redundant, 1)
        out["same_groups"] = sum(tuple(g.entity_ids) in exact_groups for g in approx.groups) / max(len(exact_groups), 1)
        ws.close()
    return out


# ---- the run ----------------------------------------------------------------------------------
def slope(prev: tuple[int, float] | None, n: int, seconds: float) -> str:
    if prev is None or prev[1] <= 0 or seconds <= 0:
        return "  -  "
    return f"{math.log(seconds / prev[1]) / math.log(n / prev[0]):5.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max", type=int, default=1_000_000, help="largest n of the exact steps")
    p.add_argument("--approx-max", type=int, default=100_000, help="largest n of the HNSW steps")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--duplicates-n", type=int, default=0, help="also near-duplicates, exact vs approximate, at this n")
    p.add_argument("--skip-search", action="store_true", help="only the near-duplicates step")
    a = p.parse_args()
    int8.warm()
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n <= a.max] or [a.max]
    prev: dict[str, tuple[int, float]] = {}
    print(f"{'n':>9} {'step':<34} {'time':>10} {'slope':>6} {'+peak MB':>9}  note")

    def row(n: int, name: str, seconds: float, mb: float | None, note: str = "") -> None:
        s = slope(prev.get(name), n, seconds)
        prev[name] = (n, seconds)
        shown = f"{seconds * 1000:8.1f}ms" if seconds < 1 else f"{seconds:8.2f} s"
        print(f"{n:>9} {name:<34} {shown:>10} {s:>6} {'' if mb is None else f'{mb:9.0f}'}  {note}", flush=True)

    if a.duplicates_n:
        n = a.duplicates_n
        dup = step_duplicates(n, a.dim)
        row(n, "catalog + Chroma load (create_many)", dup["load_s"], None)
        for mode in ("exact", "approx"):
            r = dup[mode]
            row(n, f"near-duplicates, {mode}", r["s"], r["mb"],
                f"estimated {r['estimate_s']:.0f} s before; {len(r['groups'].groups)} groups, "
                f"{r['groups'].redundant} redundant")
        print(f"approximate near-duplicates at {n}: recall {dup['recall']:.3f} of the redundant entities, "
              f"{dup['same_groups']:.3f} of the exact groups found whole", flush=True)
    for n in [] if a.skip_search else sizes:
        values = clustered(n, a.dim)
        qs = queries_near(values, a.queries, seed=1)
        e = step_exact(values, qs)
        row(n, "int8 copy (once per set version)", e["int8_copy_s"], e["int8_copy_mb"])
        row(n, "exact top-100, int8 pass", e["int8_ms"] / 1000, e["int8_mb"],
            f"target <= 40 ms at 1M; faiss/ours {e['faiss_ms'] / e['int8_ms']:.2f}x (target >= 2)")
        row(n, "exact top-100, float32 pass", e["f32_ms"] / 1000, None, f"f32/int8 {e['f32_ms'] / e['int8_ms']:.2f}x")
        row(n, "exact top-100, faiss IndexFlatL2", e["faiss_ms"] / 1000, e["faiss_mb"])
        for share in (0.9, 0.1):
            ms = e[f"filtered_{share}_ms"]
            row(n, f"exact top-100, filter passes {share:.0%}", ms / 1000, None,
                f"filtered/unfiltered {ms / e['int8_ms']:.2f}x (target <= 1.5)")
        if n <= a.approx_max:
            aq = queries_near(values, a.queries, seed=2)
            m = matrix_of(values)
            m.int8_copy.get()
            truth = [exact.search(m, q, limit=10).rows for q in aq]
            ap = step_approx(values, aq, truth)
            row(n, "HNSW build, faiss", ap["faiss_build_s"], ap["faiss_build_mb"], f"M={HNSW_M} efC={EF_CONSTRUCTION}")
            row(n, "HNSW build, Chroma", ap["chroma_build_s"], ap["chroma_build_mb"],
                f"Chroma/faiss {ap['chroma_build_s'] / ap['faiss_build_s']:.2f}x")
            for ef in EF_SEARCHES:
                for who in ("faiss", "chroma"):
                    ms, rec = ap[f"{who}_ef{ef}"]
                    row(n, f"approx top-10, {who} ef_search={ef}", ms / 1000, None,
                        f"recall@10 {rec:.3f} (target: p50 <= 5 ms, recall >= 0.97)")
        del values


STEPS = {"exact": step_exact, "approx": step_approx, "duplicates": step_duplicates}

if __name__ == "__main__":
    main()
