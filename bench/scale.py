"""How each cost grows with n (issue 14): every step at 10k, 100k and 1M vectors of 512
clustered float32 (up to ``--max``), with its time, its peak memory, the slope of time
against n (log-log: 1.0 is linear) and its ratio against the baseline measured in the same
run. Items are written straight into the catalog first, as bench/store_search.py does.

    .venv/bin/python bench/scale.py                 # 10k only: a quick look
    .venv/bin/python bench/scale.py --max 100000
    nohup .venv/bin/python bench/scale.py --max 1000000 > scale.log 2>&1 &

Steps are data: ``STEPS`` lists ``Step(name, run, baseline)``, where ``run(ctx)`` returns
seconds (or None when skipped) and ``baseline`` names the step it is compared with. Another
benchmark's rows join by appending to ``STEPS`` (later steps see what earlier ones left in
``ctx``: the workspace, the set, the vectors).
"""
from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.store_search import clustered, workspace_with_items  # noqa: E402
from store import Filters, Workspace  # noqa: E402
from store.catalog import SCHEMA  # noqa: E402
from store.ids import new_ids  # noqa: E402
from store.search import exact  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)


@dataclass
class Ctx:
    n: int
    dim: int
    batch: int
    root: Path
    index_max: int
    values: np.ndarray
    queries: np.ndarray
    ws: Workspace | None = None
    item_ids: list[str] = field(default_factory=list)
    fs: object = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Step:
    name: str
    run: Callable[[Ctx], float | None]
    baseline: str | None = None  # the step this one is measured against (ratio = baseline / this)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _batches(ctx: Ctx):
    for start in range(0, ctx.n, ctx.batch):
        yield start, min(ctx.n, start + ctx.batch)


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
                " VALUES ('s', 's', ?, 'embeddings', 'item', 'euclidean', 0)", (ctx.dim,))
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
    return ctx.ws.feature_sets.create(name=name, size=ctx.dim)


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
    vectors = pa.FixedSizeListArray.from_arrays(flat, ctx.dim)
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
    return _timed(lambda: ctx.ws.vectors.load(ctx.fs.id, ctx.dim))


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
    times = [_timed(lambda q=q: ctx.ws.search(Filters().add_euclid(ctx.fs, q, k=100))) for q in ctx.queries[1:21]]
    return float(np.median(times))


def index_caught_up(ctx: Ctx) -> float | None:
    """Chroma's HNSW brought up to date by the background worker, timed from here (skipped
    above ``--index-max``: Chroma adds about 1,000 to 3,000 vectors a second here)."""
    if ctx.n > ctx.index_max:
        ctx.notes.append(f"index catch-up not timed at {ctx.n:,} (above --index-max)")
        return None
    ctx.ws.index_sync.repair(ctx.fs.id, now=False)  # from nothing: earlier opens may have started it
    ctx.ws.index_sync.start()
    return _timed(lambda: ctx.ws.wait_for_index())


STEPS: list[Step] = [
    Step("floor: sqlite3 alone, same rows", sqlite_floor),
    Step("create_many, batches of --batch", create_many, "floor: sqlite3 alone, same rows"),
    Step("import .npy (keyed by id)", import_npy, "floor: sqlite3 alone, same rows"),
    Step("import Parquet (id + list column)", import_parquet, "floor: sqlite3 alone, same rows"),
    Step("vector files up to date after the load", files_up_to_date),
    Step("first exact top-100, old way (SQLite blobs)", first_exact_from_sqlite),
    Step("first exact top-100 after open", first_exact_after_open, "first exact top-100, old way (SQLite blobs)"),
    Step("later exact top-100 (median of 20)", later_exact),
    Step("first exact top-100 after open, index building meanwhile", first_exact_while_indexing,
         "first exact top-100, old way (SQLite blobs)"),
    Step("index caught up in the background", index_caught_up),
]
LOADS = {"create_many, batches of --batch", "import .npy (keyed by id)", "import Parquet (id + list column)"}


# ---- measuring ------------------------------------------------------------------------------
def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS
    except OSError:
        pass


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_size(n: int, args, out: dict) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        values = clustered(n, args.dim)
        rng = np.random.default_rng(1)
        queries = values[rng.integers(0, n, 21)] + rng.standard_normal((21, args.dim)).astype(np.float32) * 0.1
        ctx = Ctx(n, args.dim, args.batch, Path(tmp), args.index_max, values, queries)
        for step in STEPS:
            _reset_peak()
            seconds = step.run(ctx)
            out.setdefault(step.name, {})[n] = (seconds, _peak_mb())
            shown = "skipped" if seconds is None else f"{seconds:.3f} s"
            rate = f", {n / seconds:,.0f} vectors/s" if seconds and step.name in LOADS | {STEPS[0].name} else ""
            print(f"  n={n:>9,}  {step.name}: {shown}{rate}, peak {out[step.name][n][1]:,.0f} MB "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        for note in ctx.notes:
            print("  note:", note)
        if ctx.ws is not None:
            ctx.ws.close()


def slope(points: dict[int, tuple]) -> float | None:
    ns = [n for n, (s, _) in points.items() if s]
    if len(ns) < 2:
        return None
    x = np.log([float(n) for n in ns])
    y = np.log([points[n][0] for n in ns])
    return float(np.polyfit(x, y, 1)[0])


def report(out: dict, sizes: list[int]) -> None:
    print("\n| step | " + " | ".join(f"n = {n:,}" for n in sizes) + " | slope | ratio vs baseline (largest n) |")
    print("| --- |" + " --- |" * (len(sizes) + 2))
    for step in STEPS:
        points = out.get(step.name, {})
        cells = []
        for n in sizes:
            s, peak = points.get(n, (None, math.nan))
            cells.append("skipped" if s is None else f"{s:.3f} s, {peak:,.0f} MB")
        k = slope(points)
        ratio = ""
        if step.baseline and step.baseline in out:
            big = max(n for n in sizes if points.get(n, (None,))[0])
            base = out[step.baseline][big][0]
            ratio = f"{base / points[big][0]:.2f}× ({base:.2f} vs {points[big][0]:.2f} s)"
        print(f"| {step.name} | " + " | ".join(cells) + f" | {'' if k is None else f'{k:.2f}'} | {ratio} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max", type=int, default=10_000, help="largest n (10k, 100k, 1M up to this)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=100_000, help="vectors per create_many call")
    p.add_argument("--index-max", type=int, default=100_000, help="largest n whose Chroma catch-up is timed")
    p.add_argument("--tmp", default=None, help="folder for the workspaces (default: the system's)")
    p.add_argument("--sizes", help="comma-separated n to run instead (e.g. 1000000 alone)")
    p.add_argument("--skip", action="append", default=[], help="skip the steps whose name holds this (repeatable)")
    args = p.parse_args()
    STEPS[:] = [s for s in STEPS if not any(word in s.name for word in args.skip)]
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [n for n in SIZES if n <= args.max] or [args.max]
    print(f"bench/scale.py: {sizes} x {args.dim}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    out: dict = {}
    for n in sizes:
        run_size(n, args, out)
    report(out, sizes)


if __name__ == "__main__":
    main()
