"""How each cost grows with n (issue 14): every step at 10k, 100k and 1M vectors of 512
clustered float32 (up to --max), with its time, its peak memory, the slope of time against
n (log-log: 1.0 is linear) and its ratio against the baseline measured in the same run
(ratio = the baseline's time / the step's: above 1, the step is faster).

The steps, in order: loading (sqlite3 floor, create_many, .npy and Parquet imports); the
first exact search after open; exact top-100 scans over the vectors in memory (our float32
pass and int8 first pass against faiss.IndexFlatL2, filters passing 90% and 10% against the
unfiltered pass); approximate top-10, Chroma's HNSW against faiss HNSW with the same M and
ef_construction, recall@10 against exact; Chroma's index catch-up; near-duplicates, exact
against approximate. 5% of the vectors are near copies (noise 0.01, groups of 2 to 12), so
the near-duplicates have something to find. Items are written straight into the catalog
first, as bench/store_search.py does.

    .venv/bin/python bench/scale.py                                    # 10k only: a quick look
    .venv/bin/python bench/scale.py --max 100000
    flock /tmp/featurelab-big.lock nohup .venv/bin/python bench/scale.py --max 1000000 > scale.log 2>&1 &
    .venv/bin/python bench/scale.py --sizes 1000000 --skip import        # one size, some steps left out

Capped below --max, because at 1M they take hours on this machine (2 shared cores): the HNSW
builds (--approx-max, default 100k: 350 s faiss and 604 s Chroma at 100k under load, growing
as n^1.5, so about 3 h and 5 h at 1M); Chroma's index catch-up (--index-max: 1,000 to 3,000
vectors a second); near-duplicates (--duplicates-max: exact is n^2, about 25 h at 1M under
load; approximate needs the index caught up). A capped step prints "skipped". Each size
runs in a process of its own, so its peak memory does not start from what the last one left.

Steps are data: STEPS lists Step(name, run, baseline), where run(ctx) returns seconds (or
None when skipped) and baseline names the step it is compared with. A new row joins by
appending to STEPS (later steps see what earlier ones left in ctx: the workspace, the set,
the vectors, ctx.held).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._table import print_table  # noqa: E402
from bench.store_search import clustered, workspace_with_items  # noqa: E402
from store import Filters, Workspace  # noqa: E402
from store.catalog import SCHEMA  # noqa: E402
from store.ids import new_ids  # noqa: E402
from store.index.chroma import HNSW  # noqa: E402
from store.search import compressed, exact  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
EF_SEARCHES = (100, 200, 400)  # the product's is HNSW["ef_search"], the first
DUPLICATE_THRESHOLD = 0.5  # far above the copies' noise (about 0.3), far below the clusters' spread (about 32)


@dataclass
class Ctx:
    n: int
    args: argparse.Namespace
    root: Path
    values: np.ndarray
    queries: np.ndarray  # near stored points; the search steps use all, the first-search steps the first 21
    ws: Workspace | None = None
    item_ids: list[str] = field(default_factory=list)
    fs: Any = None
    held: dict = field(default_factory=dict)  # what a step leaves for later ones (an index, exact answers)
    note: str = ""  # shown next to this step's time at this n (a recall, a count)
    notes: list[str] = field(default_factory=list)


@dataclass
class Step:
    name: str
    run: Callable[[Ctx], float | None]
    baseline: str | None = None  # the step this one is measured against (ratio = baseline / this)


@dataclass
class Point:
    seconds: float | None
    peak_mb: float  # the process's high-water mark during the step (reset before it)
    added_mb: float  # of which above what the process held when the step began
    note: str = ""


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _p50(fn: Callable[[np.ndarray], Any], queries: np.ndarray, warm: int = 2) -> tuple[float, list]:
    """Median seconds of ``fn(q)`` over ``queries`` (after ``warm`` untimed calls), and the answers."""
    for q in queries[:warm]:
        fn(q)
    times, answers = [], []
    for q in queries:
        t = time.perf_counter()
        answers.append(fn(q))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), answers


def _capped(ctx: Ctx, limit: str, what: str) -> bool:
    """True (and a note) when n is above ``--<limit>``: the step is skipped at this size."""
    cap = getattr(ctx.args, limit)
    if ctx.n > cap:
        ctx.notes.append(f"{what} not timed at {ctx.n:,} (above --{limit.replace('_', '-')} {cap:,})")
        return True
    return False


def _batches(ctx: Ctx):
    for start in range(0, ctx.n, ctx.args.batch):
        yield start, min(ctx.n, start + ctx.args.batch)


def with_copies(n: int, dim: int, share: float = 0.05, seed: int = 3) -> np.ndarray:
    """Clustered rows, ``share`` of them near copies (noise 0.01) in groups of 2 to 12."""
    values = clustered(n, dim, seed)
    rng = np.random.default_rng(seed)
    at, end = 0, int(n * share)
    while at < end:
        size = int(rng.integers(2, 13))
        values[at + 1 : at + size] = values[at] + rng.standard_normal((min(at + size, n) - at - 1, dim),
                                                                      dtype=np.float32) * 0.01
        at += size
    return values[rng.permutation(n)]


def queries_near(values: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, values.shape[1]), dtype=np.float32) * 0.1
    return values[rng.integers(0, len(values), count)] + noise


# ---- loading --------------------------------------------------------------------------
def sqlite_floor(ctx: Ctx) -> float:
    """The same feature rows, written by sqlite3 alone into a catalog of the same schema and
    settings (WAL, synchronous=FULL, 16 KiB pages), in the same batches."""
    path = ctx.root / "floor.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=16384")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("INSERT INTO feature_sets (id, name, size, set_type, entity_type, metric, created_at)"
                " VALUES ('s', 's', ?, 'embeddings', 'item', 'euclidean', 0)", (ctx.args.dim,))
    ids = [f"{i:024x}" for i in range(ctx.n)]

    def write():
        for a, b in _batches(ctx):
            rows = [(fid, "s", ids[a + i], "d", ctx.values[a + i].tobytes(), 0.0)
                    for i, fid in enumerate(new_ids(b - a))]
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO features (id, feature_set_id, entity_id, dataset_id, value, created_at)"
                            " VALUES (?,?,?,?,?,?)", rows)
            con.execute("COMMIT")

    seconds = _timed(write)
    con.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return seconds


def _fresh_set(ctx: Ctx, name: str):
    if ctx.ws is None:
        ctx.ws, ctx.item_ids = workspace_with_items(ctx.root / "ws", ctx.n)
    return ctx.ws.feature_sets.create(name=name, size=ctx.args.dim)


def create_many(ctx: Ctx) -> float:
    """``features.create_many`` in batches: the catalog commit, nothing waits for Chroma."""
    fs = _fresh_set(ctx, "bench")
    seconds = _timed(lambda: [fs.features.create_many(ctx.values[a:b], ctx.item_ids[a:b]) for a, b in _batches(ctx)])
    ctx.fs = fs
    ctx.ws.index_sync.stop()  # Chroma's catch-up waits for its own step, so the steps between are timed alone
    return seconds


def import_npy(ctx: Ctx) -> float:
    """``import_vectors`` from one .npy keyed by item id (the file written before timing)."""
    from store.io import import_vectors

    path = ctx.root / "vectors.npy"
    np.save(path, ctx.values)
    keys = ctx.root / "keys.txt"
    keys.write_text("\n".join(ctx.item_ids))
    fs = _fresh_set(ctx, "npy")
    seconds = _timed(lambda: import_vectors(ctx.ws, fs, path, key="id", keys=keys))
    path.unlink()
    _drop(ctx, fs)
    return seconds


def import_parquet(ctx: Ctx) -> float:
    """``import_vectors`` from one Parquet file: an id column and a list column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from store.io import import_vectors

    path = ctx.root / "vectors.parquet"
    flat = pa.array(ctx.values.reshape(-1))
    vectors = pa.FixedSizeListArray.from_arrays(flat, ctx.args.dim)
    pq.write_table(pa.table({"id": ctx.item_ids, "vector": vectors}), path)
    fs = _fresh_set(ctx, "parquet")
    seconds = _timed(lambda: import_vectors(ctx.ws, fs, path, key="id"))
    path.unlink()
    _drop(ctx, fs)
    return seconds


def _drop(ctx: Ctx, fs) -> None:
    """A set loaded only to time the load: deleted before the steps that read ``ctx.fs``."""
    ctx.ws.index_sync.stop()  # its background work would run into the next steps
    fs.delete()
    ctx.ws.index_sync.start()


def files_up_to_date(ctx: Ctx) -> float:
    """The set's memory-mapped vector files brought up to date after the load (the worker's
    first job; timed from here, waiting for the worker where it has started)."""
    return _timed(lambda: ctx.ws.vectors.load(ctx.fs.id, ctx.args.dim))


# ---- the first search after open ----------------------------------------------------------
def _reopen(ctx: Ctx, worker: bool = False) -> None:
    """Close and open the workspace (a new process would also start with cold caches of its
    own; the OS's page cache stays warm either way). ``worker``: leave the index worker
    running, as it does after a load, else stop it so the search is timed alone."""
    path = ctx.ws.path
    ctx.ws.close()
    ctx.ws = Workspace.open(path)
    if not worker:
        ctx.ws.index_sync.stop()
    ctx.fs = ctx.ws.feature_sets.get(feature_set_id=ctx.fs.id)


def first_exact_from_sqlite(ctx: Ctx) -> float:
    """Baseline: the first exact top-100 as before issue 14 (every blob read from SQLite
    into one matrix, then the same scan)."""
    _reopen(ctx)
    ws, fs = ctx.ws, ctx.fs

    def old_first_search():
        rows = ws.catalog.all("SELECT entity_id, id, value FROM features WHERE feature_set_id=? ORDER BY rid", (fs.id,))
        values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), fs.size)
        m = exact.VectorMatrix(entity_ids=np.array([r[0] for r in rows]), feature_ids=np.array([r[1] for r in rows]),
                               values=np.ascontiguousarray(values), version=0)
        m.row_of  # noqa: B018 - the old loader built it too
        exact.search(m, ctx.queries[0], limit=100)

    return _timed(old_first_search)


def first_exact_after_open(ctx: Ctx) -> float:
    """The first exact top-100 (``ws.search``) in a workspace just opened: the vectors come
    from the memory-mapped files."""
    _reopen(ctx)
    return _timed(lambda: ctx.ws.search(Filters().add_euclid(ctx.fs, ctx.queries[0], k=100)))


def first_exact_while_indexing(ctx: Ctx) -> float:
    """The same, with the index worker building Chroma's HNSW in the background meanwhile
    (what the app meets in the minutes after a large load)."""
    _reopen(ctx, worker=True)
    time.sleep(1.0)  # let the worker get going
    seconds = _timed(lambda: ctx.ws.search(Filters().add_euclid(ctx.fs, ctx.queries[0], k=100)))
    ctx.ws.index_sync.stop()
    return seconds


def later_exact(ctx: Ctx) -> float:
    """The median of the next 20 exact top-100 searches."""
    return _p50(lambda q: ctx.ws.search(Filters().add_euclid(ctx.fs, q, k=100)), ctx.queries[1:21], warm=0)[0]


def settled_exact(hidden_filter: bool) -> Callable[[Ctx], float]:
    def run(ctx: Ctx) -> float:
        ctx.ws.matrix(ctx.fs).int8_copy.get(wait=True)  # the copy the engine builds in the background

        def search(q: np.ndarray) -> Any:
            f = Filters()
            if hidden_filter:
                f.add(field="hidden", values=False)
            return ctx.ws.search(f.add_euclid(ctx.fs, q, k=100))

        return _p50(search, ctx.queries[1:21])[0]

    run.__doc__ = ("Exact top-100 end to end through ws.search (plan, scan, re-measure, records) once the"
                   f" int8 copy is ready, p50 of 20{', with the seed filter hidden = false' if hidden_filter else ''}.")
    return run


# ---- exact top-100 scans over the vectors in memory (no catalog) -----------------------------
def _matrix(ctx: Ctx) -> exact.VectorMatrix:
    """The vectors as the engine holds them; a filter is then a set of allowed rows, which is
    what the engine's cached filter rows hand the scan for ``{"hidden": false}``."""
    if "matrix" not in ctx.held:
        ids = np.char.zfill(np.arange(ctx.n).astype(str), 24)
        ctx.held["matrix"] = exact.VectorMatrix(ids, ids, ctx.values, 1)
    return ctx.held["matrix"]


def faiss_flat(ctx: Ctx) -> float:
    """Baseline: faiss.IndexFlatL2's exact top-100, p50 over --queries (its add is the note)."""
    import faiss

    index = faiss.IndexFlatL2(ctx.args.dim)
    ctx.note = f"add {_timed(lambda: index.add(ctx.values)):.2f} s"
    return _p50(lambda q: index.search(q[None], 100), ctx.queries)[0]


def float32_pass(ctx: Ctx) -> float:
    """exact.search's float32 pass, p50 over the first 10 queries (1.2 s each at 1M under load)."""
    m = _matrix(ctx)
    return _p50(lambda q: exact.search(m, q, limit=100, compressed=False), ctx.queries[:10])[0]


def int8_copy(ctx: Ctx) -> float:
    """The int8 copy of the set (once per set version; the product builds it in the background)."""
    m = _matrix(ctx)
    return _timed(lambda: m.int8_copy.get(wait=True))


def int8_pass(ctx: Ctx) -> float:
    """The int8 first pass, p50 (the product takes it from ``compressed.MIN_CELLS``, 32k x 512,
    on; forced here at every n); its answers checked against float64 brute force on 3 queries."""
    m = _matrix(ctx)
    seconds, hits = _p50(lambda q: exact.search(m, q, limit=100, compressed=True), ctx.queries)
    _brute_checked(ctx.values, ctx.queries, hits)
    return seconds


def _brute_checked(values: np.ndarray, queries: np.ndarray, hits: list) -> None:
    for q, hit in list(zip(queries, hits))[:3]:
        d = exact.exact_distances(values, q)
        assert np.array_equal(hit.rows, np.lexsort((np.arange(len(d)), d))[:100]), "int8 pass differs from brute force"


def int8_ungrouped(ctx: Ctx) -> float:
    """The int8 pass over the whole copy (no grouping: every row's codes read), p50."""
    m = _matrix(ctx)
    flat = exact.VectorMatrix(m.entity_ids, m.feature_ids, m.values, 1, sq_norms=m.sq_norms)
    flat.int8_copy = compressed.CompressedCache(m.values, grouped=False)
    flat.int8_copy.get(wait=True)
    seconds, hits = _p50(lambda q: exact.search(flat, q, limit=100, compressed=True), ctx.queries)
    _brute_checked(ctx.values, ctx.queries, hits)
    return seconds


def unclustered(grouped: bool) -> Callable[[Ctx], float]:
    """The int8 pass on unclustered vectors (standard normal, same n and d), where no group
    can be ruled out: what the grouping costs when it does not help."""
    def run(ctx: Ctx) -> float:
        if "gauss" not in ctx.held:
            values = np.random.default_rng(3).standard_normal((ctx.n, ctx.args.dim), dtype=np.float32)
            ids = np.char.zfill(np.arange(ctx.n).astype(str), 24)
            ctx.held["gauss"] = values, exact.VectorMatrix(ids, ids, values, 1), queries_near(values, ctx.args.queries, seed=4)
        values, m, queries = ctx.held["gauss"]
        if not grouped:
            m = exact.VectorMatrix(m.entity_ids, m.feature_ids, values, 1, sq_norms=m.sq_norms)
            m.int8_copy = compressed.CompressedCache(values, grouped=False)
        m.int8_copy.get(wait=True)
        seconds, hits = _p50(lambda q: exact.search(m, q, limit=100, compressed=True), queries)
        _brute_checked(values, queries, hits)
        if grouped:
            ctx.held.pop("gauss")
        return seconds

    run.__doc__ = f"The int8 pass on unclustered vectors, {'grouped' if grouped else 'whole copy'}, p50."
    return run


def filtered(share: float) -> Callable[[Ctx], float]:
    def run(ctx: Ctx) -> float:
        m = _matrix(ctx)
        rows = np.sort(np.random.default_rng(7).choice(ctx.n, int(ctx.n * share), replace=False))
        return _p50(lambda q: exact.search(m, q, rows, limit=100, compressed=True), ctx.queries)[0]

    run.__doc__ = f"The int8 pass with a filter letting {share:.0%} of the rows through, p50."
    return run


# ---- approximate top-10: Chroma's HNSW against faiss's, same M and ef_construction ----------
def _truth(ctx: Ctx) -> tuple[np.ndarray, list[np.ndarray]]:
    """Queries for the approximate steps and their exact top-10 rows (computed once per n)."""
    if "truth" not in ctx.held:
        queries = queries_near(ctx.values, ctx.args.queries, seed=2)
        m = _matrix(ctx)
        ctx.held["truth"] = queries, [exact.search(m, q, limit=10).rows for q in queries]
    return ctx.held["truth"]


def faiss_hnsw_build(ctx: Ctx) -> float | None:
    """Baseline: faiss.IndexHNSWFlat with Chroma's M (max_neighbors) and ef_construction."""
    if _capped(ctx, "approx_max", "HNSW builds"):
        return None
    import faiss

    index = faiss.IndexHNSWFlat(ctx.args.dim, HNSW["max_neighbors"])
    index.hnsw.efConstruction = HNSW["ef_construction"]
    ctx.held["faiss"] = index
    return _timed(lambda: index.add(ctx.values))


def chroma_hnsw_build(ctx: Ctx) -> float | None:
    """A raw Chroma collection with featurelab's HNSW settings, filled in its largest batches."""
    if _capped(ctx, "approx_max", "HNSW builds"):
        return None
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(ctx.root / "chroma-raw"), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("scale", configuration={"hnsw": dict(HNSW)}, embedding_function=None)
    ids = [str(i) for i in range(ctx.n)]
    step = client.get_max_batch_size()

    def add() -> None:
        for s in range(0, ctx.n, step):
            col.add(ids=ids[s : s + step], embeddings=ctx.values[s : s + step])

    ctx.held["chroma"] = client
    return _timed(add)


def approx_top10(who: str, ef: int) -> Callable[[Ctx], float | None]:
    def run(ctx: Ctx) -> float | None:
        if who not in ctx.held:
            return None  # its build was skipped
        queries, truth = _truth(ctx)
        if who == "faiss":
            index = ctx.held["faiss"]
            index.hnsw.efSearch = ef
            search = lambda q: index.search(q[None], 10)[1][0]  # noqa: E731
        else:
            client = ctx.held["chroma"]
            client.get_collection("scale").modify(configuration={"hnsw": {"ef_search": ef}})
            col = client.get_collection("scale")
            search = lambda q: np.array([int(i) for i in col.query(query_embeddings=[q], n_results=10,  # noqa: E731
                                                                     include=[])["ids"][0]])
        seconds, found = _p50(search, queries)
        recall = np.mean([len(set(f[:10].tolist()) & set(t[:10].tolist())) / 10 for f, t in zip(found, truth)])
        ctx.note = f"recall@10 {recall:.3f}"
        if ef == EF_SEARCHES[-1]:
            del ctx.held[who]  # its last row: the index's memory goes back before the next steps
        return seconds

    run.__doc__ = f"Approximate top-10 in {who}'s HNSW at ef_search {ef}, p50; recall@10 against exact."
    return run


# ---- Chroma's index in the workspace, and what needs it ---------------------------------------
def index_caught_up(ctx: Ctx) -> float | None:
    """Chroma's HNSW brought up to date by the background worker, timed from here."""
    if _capped(ctx, "index_max", "index catch-up"):
        return None
    ctx.ws.index_sync.repair(ctx.fs.id, now=False)  # from nothing: earlier opens may have started it
    ctx.ws.index_sync.start()
    seconds = _timed(lambda: ctx.ws.wait_for_index())
    ctx.held["indexed"] = True
    return seconds


def near_duplicates(approximate: bool) -> Callable[[Ctx], float | None]:
    def run(ctx: Ctx) -> float | None:
        from store.analysis import duplicate_groups, estimate
        from store.analysis.duplicates import clear_cache

        if _capped(ctx, "duplicates_max", "near-duplicates"):
            return None
        if approximate and not ctx.held.get("indexed"):
            ctx.notes.append(f"approximate near-duplicates not timed at {ctx.n:,} (the index was not caught up)")
            return None
        before = estimate(ctx.ws, ctx.fs, "duplicates", approximate=approximate, include_hidden=False).seconds
        clear_cache()
        found = []
        seconds = _timed(lambda: found.append(duplicate_groups(ctx.ws, ctx.fs, DUPLICATE_THRESHOLD,
                                                               approximate=approximate)))
        groups = found[0]
        ctx.note = f"estimated {before:.0f} s; {len(groups.groups)} groups, {groups.redundant} redundant"
        if not approximate:
            ctx.held["exact groups"] = groups
        elif "exact groups" in ctx.held:
            want = ctx.held.pop("exact groups")
            whole = {tuple(g.entity_ids) for g in want.groups}
            ctx.note += (f"; recall {groups.redundant / max(want.redundant, 1):.3f} of the redundant, "
                         f"{sum(tuple(g.entity_ids) in whole for g in groups.groups) / max(len(whole), 1):.3f}"
                         " of the groups whole")
        return seconds

    run.__doc__ = (f"Near-duplicate groups at distance {DUPLICATE_THRESHOLD}, "
                   f"{'approximate (HNSW candidates, exact distances)' if approximate else 'exact (n^2)'},"
                   " after its estimate (the note).")
    return run


FLOOR, OLD_FIRST = "floor: sqlite3 alone, same rows", "first exact top-100, old way (SQLite blobs)"
FAISS_FLAT, INT8 = "exact top-100, faiss IndexFlatL2 (p50)", "exact top-100, int8 pass (p50)"
INT8_FLAT = "exact top-100, int8 pass, whole copy (no grouping; p50)"
GAUSS_FLAT = "exact top-100, int8 pass, unclustered vectors, whole copy (p50)"
STEPS: list[Step] = [
    Step(FLOOR, sqlite_floor),
    Step("create_many, batches of --batch", create_many, FLOOR),
    Step("import .npy (keyed by id)", import_npy, FLOOR),
    Step("import Parquet (id + list column)", import_parquet, FLOOR),
    Step("vector files up to date after the load", files_up_to_date),
    Step(OLD_FIRST, first_exact_from_sqlite),
    Step("first exact top-100 after open", first_exact_after_open, OLD_FIRST),
    Step("later exact top-100 (median of 20)", later_exact),
    Step("exact top-100 through ws.search, int8 copy ready (p50)", settled_exact(False)),
    Step("the same with {\"hidden\": false}", settled_exact(True)),
    Step("first exact top-100 after open, index building meanwhile", first_exact_while_indexing, OLD_FIRST),
    Step(FAISS_FLAT, faiss_flat),
    Step("exact top-100, float32 pass (p50)", float32_pass, FAISS_FLAT),
    Step("int8 copy (once per set version)", int8_copy),
    Step(INT8, int8_pass, FAISS_FLAT),
    Step(INT8_FLAT, int8_ungrouped, FAISS_FLAT),
    Step(GAUSS_FLAT, unclustered(grouped=False), FAISS_FLAT),
    Step("exact top-100, int8 pass, unclustered vectors (p50)", unclustered(grouped=True), GAUSS_FLAT),
    Step("exact top-100, int8 pass, filter passes 90%", filtered(0.9), INT8),
    Step("exact top-100, int8 pass, filter passes 10%", filtered(0.1), INT8),
    Step("HNSW build, faiss", faiss_hnsw_build),
    Step("HNSW build, Chroma", chroma_hnsw_build, "HNSW build, faiss"),
    *(Step(f"approx top-10, {who} ef_search={ef} (p50)", approx_top10(who, ef),
           None if who == "faiss" else f"approx top-10, faiss ef_search={ef} (p50)")
      for ef in EF_SEARCHES for who in ("faiss", "chroma")),
    Step("index caught up in the background", index_caught_up),
    Step("near-duplicates, exact", near_duplicates(approximate=False)),
    Step("near-duplicates, approximate", near_duplicates(approximate=True), "near-duplicates, exact"),
]
RATES = {FLOOR, "create_many, batches of --batch", "import .npy (keyed by id)", "import Parquet (id + list column)"}


# ---- measuring ------------------------------------------------------------------------------
def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def with_peak(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``'s result, the process's peak resident MB while it ran (VmHWM, reset before it;
    mapped file pages count) and how far that peak rose above the resident MB at its start."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS
    except OSError:
        pass
    before = _status_mb("VmRSS")
    out = fn()
    peak = _status_mb("VmHWM")
    return out, peak, max(0.0, peak - before)


def shown(seconds: float | None) -> str:
    if seconds is None:
        return "skipped"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:,.0f} s"


def run_size(n: int, args: argparse.Namespace, out: dict[str, dict[int, Point]]) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        values = with_copies(n, args.dim)
        ctx = Ctx(n, args, Path(tmp), values, queries_near(values, max(21, args.queries), seed=1))
        try:
            for step in STEPS:
                ctx.note = ""
                seconds, peak, added = with_peak(lambda: step.run(ctx))
                point = out.setdefault(step.name, {})[n] = Point(seconds, peak, added, ctx.note)
                rate = f", {n / seconds:,.0f} vectors/s" if seconds and step.name in RATES else ""
                note = f"; {point.note}" if point.note else ""
                print(f"  n={n:>9,}  {step.name}: {shown(seconds)}{rate}, peak {peak:,.0f} MB (+{added:,.0f}){note} "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            for note in ctx.notes:
                print("  note:", note)
            if ctx.ws is not None:
                ctx.ws.close()


def slope(points: dict[int, Point]) -> float | None:
    """The log-log slope of time against n over the sizes measured (1.0: linear)."""
    ns = [n for n, p in points.items() if p.seconds]
    if len(ns) < 2:
        return None
    return float(np.polyfit(np.log(ns), np.log([points[n].seconds for n in ns]), 1)[0])


def ratio(out: dict[str, dict[int, Point]], step: Step) -> str:
    """baseline / step at the largest n where both ran."""
    points, base = out.get(step.name, {}), out.get(step.baseline or "", {})
    both = [n for n in points if points[n].seconds and base.get(n) and base[n].seconds]
    if not both:
        return ""
    n = max(both)
    return f"{base[n].seconds / points[n].seconds:.2f}× ({shown(base[n].seconds)} / {shown(points[n].seconds)})"


def report(out: dict[str, dict[int, Point]], sizes: list[int]) -> None:
    def cell(p: Point | None) -> str:
        if p is None or p.seconds is None:
            return "skipped"
        return f"{shown(p.seconds)}, {p.peak_mb:,.0f} MB (+{p.added_mb:,.0f})" + (f"; {p.note}" if p.note else "")

    rows = []
    for step in STEPS:
        points = out.get(step.name, {})
        k = slope(points)
        rows.append([step.name, *(cell(points.get(n)) for n in sizes), "" if k is None else f"{k:.2f}",
                     ratio(out, step)])
    print()
    print_table(["step", *(f"n = {n:,}" for n in sizes), "slope", "ratio vs baseline (largest n)"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max", type=int, default=10_000, help="largest n (10k, 100k, 1M up to this)")
    p.add_argument("--sizes", help="comma-separated n to run instead (e.g. 1000000 alone)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=100_000, help="vectors per create_many call")
    p.add_argument("--queries", type=int, default=50, help="queries per p50 (the first-search steps use 21)")
    p.add_argument("--approx-max", type=int, default=100_000,
                   help="largest n of the HNSW builds and approximate top-10 (hours at 1M here)")
    p.add_argument("--index-max", type=int, default=100_000, help="largest n whose Chroma catch-up is timed")
    p.add_argument("--duplicates-max", "--duplicates-n", type=int, default=100_000,
                   help="largest n of the near-duplicate steps (exact is n^2: about 25 h at 1M here)")
    p.add_argument("--tmp", default=None, help="folder for the workspaces (default: the system's)")
    p.add_argument("--skip", action="append", default=[], help="skip the steps whose name holds this (repeatable)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # run the one size of --sizes here, write its points there
    args = p.parse_args()
    STEPS[:] = [s for s in STEPS if not any(word in s.name for word in args.skip)]
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [n for n in SIZES if n <= args.max] or [args.max]
    if args.child:
        compressed.warm()  # the int8 kernels compile once per process, not inside the first int8 step
        out: dict[str, dict[int, Point]] = {}
        run_size(sizes[0], args, out)
        Path(args.child).write_text(json.dumps({name: {n: asdict(p) for n, p in points.items()}
                                                for name, points in out.items()}))
        return
    print(f"bench/scale.py: {sizes} x {args.dim}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    report(each_size_alone(sizes), sizes)


def each_size_alone(sizes: list[int]) -> dict[str, dict[int, Point]]:
    """Each size in a new process: its peak memory starts from nothing the size before left
    (Chroma's clients, the allocator's free pages), and a size that fails leaves the others."""
    out: dict[str, dict[int, Point]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            points = Path(tmp) / "points.json"
            code = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--sizes", str(n), "--child", str(points)]
                                  ).returncode
            if code or not points.exists():
                print(f"  n={n:>9,}: its process failed (exit code {code}); the table leaves it out", flush=True)
                continue
            for name, by_n in json.loads(points.read_text()).items():
                out.setdefault(name, {}).update({int(k): Point(**v) for k, v in by_n.items()})
    return out


if __name__ == "__main__":
    main()
