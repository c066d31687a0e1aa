"""Four browser sessions at once on one `streamlit run` (issue 7, item 6): three search by
text over and over while the fourth runs embedding jobs. Search latency is timed from
pressing Enter to the expected first result shown. Baseline, same run and same server: one
session searching alone; between the two, three sessions searching without the embedding
job, to tell the two causes apart. Also checked: no error on any page or in the server log,
and every vector the embedding jobs wrote is there at the end (catalog and Chroma).

    .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --searches 10 --embed-items 200
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.browser.app_server import chromium_path, running_app  # noqa: E402
from tests.browser.sessions import (  # noqa: E402
    check_writes, open_and_settle, percentile, prepare, run_sessions,
)


def row(label: str, latencies: list[float]) -> str:
    return (f"| {label} | {len(latencies)} | {percentile(latencies, 50) * 1000:.0f} ms "
            f"| {percentile(latencies, 95) * 1000:.0f} ms | {max(latencies) * 1000:.0f} ms |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--searchers", type=int, default=3)
    parser.add_argument("--searches", type=int, default=20, help="timed searches per session")
    parser.add_argument("--notes", type=int, default=500, help="searchable text items")
    parser.add_argument("--embed-items", type=int, default=300, help="items per embedding job")
    parser.add_argument("--embed-rounds", type=int, default=40, help="most embedding jobs (one new set each)")
    args = parser.parse_args()
    if chromium_path() is None:
        print("Chromium is missing: apt-get install -y chromium")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        t = time.perf_counter()
        queries = prepare(home, args.notes, args.embed_items, args.embed_rounds)
        print(f"prepared {args.notes} notes (embedded) and {args.embed_rounds} empty sets in "
              f"{time.perf_counter() - t:.0f} s; load average {os.getloadavg()[0]:.1f}")
        with running_app(home, Path(tmp) / "streamlit.log") as app:
            waited = open_and_settle(app.url)
            print(f"server idle {waited:.0f} s after its first session (it warms UMAP's kernels then)")
            alone = run_sessions(app.url, queries, 1, args.searches, 0, 0, seed=1)
            searching = run_sessions(app.url, queries, args.searchers, args.searches, 0, 0, seed=3)
            load_start = os.getloadavg()[0]
            t = time.perf_counter()
            busy = run_sessions(app.url, queries, args.searchers, args.searches, args.embed_items, args.embed_rounds,
                                seed=2)
            busy_s = time.perf_counter() - t
            log = app.log.read_text(errors="replace")
        embedder = busy[-1]
        failures = [f"{s.name}: {s.failure!r}" for s in alone + searching + busy if s.failure]
        errors = [f"{s.name}: {e}" for s in alone + searching + busy for e in s.errors]
        writes = check_writes(home, embedder.rounds, args.embed_items)

    base = alone[0].latencies
    loaded = [x for s in busy[:-1] for x in s.latencies]
    print(f"\nsearch latency, Enter to the expected first result shown ({args.notes} notes, all-MiniLM-L6-v2, "
          f"k=12, exact search)\n")
    print("| sessions | searches | p50 | p95 | max |")
    print("| --- | --- | --- | --- | --- |")
    print(row("1 searching alone (baseline)", base))
    print(row(f"{args.searchers} searching", [x for s in searching for x in s.latencies]))
    print(row(f"{args.searchers} searching + 1 embedding", loaded))
    print(f"\nembedding session: {embedder.rounds} jobs of {args.embed_items} items finished during the "
          f"{busy_s:.0f} s of load ({writes['vectors']} vectors written; all present in catalog and Chroma: yes; "
          f"bit-equal across jobs: {writes['bit_equal_across_rounds']}); load average {load_start:.1f} at the start")
    for line in embedder.summaries:
        print("  ", line)
    print(f"errors on pages: {len(errors)}; session failures: {len(failures)}; "
          f"tracebacks in the server log: {log.count('Traceback')}")
    for line in failures + errors:
        print("  ", line)
    print(f"\nratio under load / alone: p50 {percentile(loaded, 50) / percentile(base, 50):.2f}x, "
          f"p95 {percentile(loaded, 95) / percentile(base, 95):.2f}x "
          f"(mean {statistics.mean(loaded) / statistics.mean(base):.2f}x)")
    return 1 if failures or errors or "Traceback" in log else 0


if __name__ == "__main__":
    sys.exit(main())
