"""What guarding the embedded Chroma folder costs at open (issue 7, ``store.index.guard``).

For workspaces of 1, 10 and 50 feature sets (each past Chroma's flush threshold, so every
set has HNSW files): the whole ``Workspace.open``, the guard's check when the files are
unchanged (a directory walk and a compare: every open), and the probe in a child process
when they changed (after a kill during a flush, or damage), which also reads every vector
back. Ratio: the unchanged-files check against the whole open, same run.

    .venv/bin/python bench/open_guard.py
    .venv/bin/python bench/open_guard.py --sets 1 10 --n 1100
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import Workspace  # noqa: E402
from store.index import guard as index_guard  # noqa: E402


def build(root: Path, sets: int, n: int, dim: int) -> None:
    with Workspace.open(root) as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([(f"{i}.txt", f"item {i}".encode()) for i in range(n)])]
        rng = np.random.default_rng(0)
        for s in range(sets):
            ws.feature_sets.create(name=f"s{s}", size=dim).features.create_many(
                rng.standard_normal((n, dim)).astype(np.float32), items)
        ws.wait_for_index()  # the HNSW files the guard checks at the next open


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--n", type=int, default=1100, help="vectors per set (past the flush threshold of 1000)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| sets | vectors | HNSW files | open, files unchanged | guard check in it | probe (files changed) | check / open |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for sets in args.sets:
            root = Path(tmp) / f"ws{sets}"
            build(root, sets, args.n, args.dim)
            chroma = root / "chroma"
            with Workspace.open(root) as ws:
                catalog, namespace = ws.catalog, ws.id
                files = index_guard.hnsw_files(chroma)

                def check():
                    assert index_guard.hnsw_files(chroma) == index_guard.known_files(catalog)

                check_s = median_time(check, args.repeat * 20)
            open_s = median_time(lambda: Workspace.open(root).close(), args.repeat)
            probe_s = median_time(lambda: index_guard.probe(chroma, root / "catalog.db", namespace), args.repeat)
            print(f"| {sets} | {sets * args.n:,} | {len(files)} | {open_s * 1000:.0f} ms | {check_s * 1000:.2f} ms "
                  f"| {probe_s:.2f} s | {check_s / open_s:.4f} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
