"""Maps of 1M points in Chromium: how long the Map page takes to draw a cached 2D map and
to answer a lasso over it (the selection's heading shows), at 100k and 1M points. Above
``store.analysis.large_map_above()`` (200,000) the map is a density image drawn on the server
and the lasso is answered there; below it, plotly's WebGL scatter. Targets at 1M: draw
<= 3 s, lasso <= 2 s. Baseline, same run: the 100k map as a plotly scatter (this server's
default), and the same 100k map as a density image (a second server, threshold 50,000).

    flock /tmp/featurelab-big.lock .venv/bin/python bench/map_large.py [--n 1000000] [--runs 3]
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
sys.path.insert(0, str(ROOT / "bench"))

from _table import print_table  # noqa: E402
from map_browser import DIM, build, row  # noqa: E402
from tests.browser.app_server import CHROMIUM_ARGS, chromium_path, running_app  # noqa: E402
from tests.browser.ui import goto, lasso, select, settle, widget  # noqa: E402

LASSO = [(0.05, 0.05), (0.3, 0.05), (0.3, 0.95), (0.05, 0.95), (0.05, 0.06)]


def draw_and_lasso(page, url: str, n: int) -> tuple[float, float, int]:
    """Seconds from choosing the cached map to its plot on screen (the density image, or the
    scatter's WebGL canvas), and from releasing a lasso to the selection's heading."""
    goto(page, url, "map", "Map")
    select(page, "map:set", f"map-{n} · size {DIM}")
    t0 = time.perf_counter()
    widget(page, "map:method").get_by_text("PCA", exact=True).click()
    page.get_by_text(f"{n} points").wait_for(timeout=180_000)
    plot = ".st-key-map-chart .js-plotly-plot"
    page.wait_for_function(f"() => document.querySelector('{plot} image') !== null"
                           f" || document.querySelector('{plot} .gl-canvas-context') !== null", timeout=180_000)
    draw_s = time.perf_counter() - t0
    settle(page, timeout=180_000)
    t1 = lasso(page, LASSO, chart_key="map:chart", wait=False)
    heading = page.get_by_role("heading").filter(has_text=" selected")
    heading.wait_for(timeout=180_000)
    lasso_s = time.perf_counter() - t1
    selected = int(heading.inner_text().split()[0])
    settle(page, timeout=180_000)
    return draw_s, lasso_s, selected


def rounds(browser, url: str, sizes: list[int], runs: int) -> dict[int, list[tuple[float, float, int]]]:
    results: dict[int, list] = {n: [] for n in sizes}
    for _ in range(runs):
        for n in sizes:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            results[n].append(draw_and_lasso(context.new_page(), url, n))
            context.close()
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--baseline-n", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--home", type=Path, help="a workspace to keep (built there on the first run, reused after)")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = a.home or Path(tmp) / "ws"
        if not (home / "catalog.db").exists():
            t = time.perf_counter()
            build(home, [a.baseline_n, a.n])
            print(f"workspace with {a.baseline_n} and {a.n} points and their cached PCA maps: "
                  f"{time.perf_counter() - t:.0f} s")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            os.environ.pop("FEATURELAB_LARGE_MAP_ABOVE", None)
            with running_app(home, Path(tmp) / "a.log", warm_numba=False, warm_models=False) as app:
                default = rounds(browser, app.url, [a.baseline_n, a.n], a.runs)
            os.environ["FEATURELAB_LARGE_MAP_ABOVE"] = str(a.baseline_n // 2)
            with running_app(home, Path(tmp) / "b.log", warm_numba=False, warm_models=False) as app:
                dense = rounds(browser, app.url, [a.baseline_n], a.runs)
            browser.close()
    print_table(["map", "draw the cached map: first visit, then each later one (median)", "lasso to heading (median)",
                 "points lassoed"],
                [row(f"{a.baseline_n} points, plotly scattergl", default[a.baseline_n]),
                 row(f"{a.baseline_n} points, density image", dense[a.baseline_n]),
                 row(f"{a.n} points, density image", default[a.n])])
    big, base = default[a.n], default[a.baseline_n]
    print(f"{a.n} density vs {a.baseline_n} scattergl, same run: first draw {big[0][0] / base[0][0]:.2f}x, lasso "
          f"{statistics.median(r[1] for r in big) / statistics.median(r[1] for r in base):.2f}x the time "
          f"(targets at {a.n}: draw <= 3 s, lasso <= 2 s)")


if __name__ == "__main__":
    main()
