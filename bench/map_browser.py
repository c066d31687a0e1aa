"""A cached 100k-point map in Chromium: how long the Map page takes to draw it, and how long
a lasso over it takes to answer (the gallery of the selection shows). Target: each within
2 s. Baseline, same run: the same page over a 2,000-point map.

    .venv/bin/python bench/map_browser.py [--n 100000] [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _table import print_table  # noqa: E402
from store import Workspace  # noqa: E402
from store.analysis.projection import project  # noqa: E402
from store_search import clustered  # noqa: E402
from tests.browser.app_server import CHROMIUM_ARGS, chromium_path, running_app  # noqa: E402
from tests.browser.ui import goto, lasso, select, settle, widget  # noqa: E402

DIM = 32  # what the map draws does not depend on the vectors' size; a small one fills faster


def build(home: Path, sizes: list[int]) -> None:
    """One dataset and one feature set per size, each with its PCA map in the disk cache."""
    ws = Workspace.open(str(home))
    try:
        for n in sizes:
            ws_items = workspace_with_items_in(ws, n)
            fs = ws.feature_sets.create(name=f"map-{n}", size=DIM)
            fs.features.create_many(clustered(n, DIM, seed=n), ws_items)
            project(ws, fs, method="pca", dims=2)
    finally:
        ws.close()


def workspace_with_items_in(ws: Workspace, n: int) -> list[str]:
    """Items straight into the catalog (files play no part in drawing a map); kind "other",
    so the selection's gallery shows names without reading any file."""
    ds = ws.datasets.create(f"items-{n}")
    now = time.time()
    rows = [(f"{n:08x}{i:016x}", ds.id, f"{i:06d}.bin", f"/part{i % 7}", "other", "application/octet-stream", 1,
             f"{i:064x}", None, None, 0, "{}", now) for i in range(n)]
    with ws.catalog.transaction() as c:
        c.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    return [r[0] for r in rows]


def draw_and_lasso(page, url: str, n: int) -> tuple[float, float, int]:
    """Seconds from choosing the cached map to its plot on screen, and from releasing a
    lasso to the selection's heading; no fixed waits inside either."""
    goto(page, url, "map", "Map")
    select(page, "map:set", f"map-{n} · size {DIM}")
    t0 = time.perf_counter()
    widget(page, "map:method").get_by_text("PCA", exact=True).click()
    page.get_by_text(f"{n} points").wait_for(timeout=120_000)
    plot = ".st-key-map-chart .js-plotly-plot"  # the map's own chart, not the hidden preload one
    page.wait_for_function(f"() => document.querySelector('{plot} .gl-canvas-context') !== null"
                           f" || document.querySelector('{plot} canvas') !== null", timeout=120_000)
    draw_s = time.perf_counter() - t0
    settle(page, timeout=120_000)
    t1 = lasso(page, [(0.05, 0.05), (0.3, 0.05), (0.3, 0.95), (0.05, 0.95), (0.05, 0.06)], wait=False)
    heading = page.get_by_role("heading").filter(has_text=" selected")
    heading.wait_for(timeout=120_000)
    lasso_s = time.perf_counter() - t1
    selected = int(heading.inner_text().split()[0])
    settle(page, timeout=120_000)
    return draw_s, lasso_s, selected


def row(label: object, runs: list[tuple[float, float, int]]) -> list[str]:
    """One table row: the first draw, then the later ones' median; the lasso's median; points lassoed."""
    later = statistics.median(r[0] for r in runs[1:]) if len(runs) > 1 else float("nan")
    return [str(label), f"{runs[0][0]:.2f} s, then {later:.2f} s", f"{statistics.median(r[1] for r in runs):.2f} s",
            str(runs[-1][2])]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--baseline-n", type=int, default=2_000)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        t = time.perf_counter()
        build(home, [a.baseline_n, a.n])
        print(f"workspace with {a.baseline_n} and {a.n} points and their cached PCA maps: {time.perf_counter() - t:.0f} s")
        with running_app(home, Path(tmp) / "streamlit.log") as app, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            results: dict[int, list[tuple[float, float, int]]] = {a.baseline_n: [], a.n: []}
            for _ in range(a.runs):
                for n in (a.baseline_n, a.n):
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    results[n].append(draw_and_lasso(page, app.url, n))
                    context.close()
            browser.close()
    print_table(["points", "draw the cached map: first visit, then each later one", "lasso to gallery (median)",
                 "points lassoed"], [row(n, runs) for n, runs in results.items()])
    big, small = results[a.n], results[a.baseline_n]
    print(f"{a.n} vs {a.baseline_n} points, same run: first draw {big[0][0] / small[0][0]:.1f}x, "
          f"lasso {statistics.median(r[1] for r in big) / statistics.median(r[1] for r in small):.1f}x the time "
          f"(target: each under 2 s at {a.n})")

if __name__ == "__main__":
    main()
