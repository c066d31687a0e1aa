"""Where one warm click of the Search page spends its time, in Chromium: from the input to
the BackMsg sent (the widget's own delay), the server's run (``new_session`` to
``session_status_changed`` off), the bytes and deltas it sent, and the browser's main
thread (CDP ``Performance.getMetrics``: task, script, layout, style). ``--profile`` adds a
CDP CPU profile of 4 slider steps and 4 text searches, summed by script file (plotly,
react-dom, emotion, markdown, syntax highlighter...). ``--bare`` runs bench/app_clicks.py's
bare page instead (the floor). Not a timed benchmark: a split to read beside
bench/app_clicks.py's p50s.

    .venv/bin/python bench/click_split.py WORKSPACE [--runs 5] [--profile] [--bare]
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from bench.app_clicks import BARE_APP, QUERIES, RunWatch, slider_step, type_query  # noqa: E402
from tests.browser.app_server import CHROMIUM_ARGS, chromium_path, running_app  # noqa: E402
from tests.browser.ui import select  # noqa: E402


class Timeline(RunWatch):
    """RunWatch, plus every websocket frame with its time, kind and size."""

    def __init__(self, page) -> None:
        super().__init__(page)
        self.events: list[tuple[float, str, int]] = []
        page.on("websocket", lambda ws: ws.on("framesent", self._sent))

    def _sent(self, payload) -> None:
        self.events.append((time.perf_counter(), "sent", len(payload)))

    def _frame(self, payload) -> None:
        super()._frame(payload)
        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        msg.ParseFromString(payload)
        kind = msg.WhichOneof("type")
        if kind == "session_status_changed":
            kind += ":running" if msg.session_status_changed.script_is_running else ":done"
        self.events.append((time.perf_counter(), kind, len(payload)))


def browser_metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def split(page, watch: Timeline, cdp, label: str, act, ready=lambda: True) -> float:
    watch.events.clear()
    before = browser_metrics(cdp)
    t0 = time.perf_counter()
    total = watch.clock(act, ready)
    after = browser_metrics(cdp)
    events = [(t - t0, kind, n) for t, kind, n in watch.events]
    sent = next((t for t, kind, _ in events if kind == "sent"), float("nan"))
    start = next((t for t, kind, _ in events if kind == "new_session"), float("nan"))
    done = [t for t, kind, _ in events if kind == "session_status_changed:done"]
    deltas = sum(1 for _, kind, _ in events if kind == "delta")
    received = sum(n for _, kind, n in events if kind != "sent")
    cpu = {k: after[k] - before[k] for k in ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")}
    print(f"{label}: {total:.3f} s | sent {sent:.3f} | run {start:.3f} to {done[-1] if done else float('nan'):.3f} "
          f"| {received:,} bytes, {deltas} deltas | browser task {cpu['TaskDuration']:.3f} script "
          f"{cpu['ScriptDuration']:.3f} layout {cpu['LayoutDuration']:.3f} style {cpu['RecalcStyleDuration']:.3f}",
          flush=True)
    return total


def by_file(profile: dict) -> list[tuple[str, float]]:
    """A CDP CPU profile's self time (ms) by script file."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    out: collections.Counter = collections.Counter()
    for sample, dt in zip(profile["samples"], profile["timeDeltas"][1:] + [0]):
        frame = nodes[sample]["callFrame"]
        out[frame["url"].rsplit("/", 1)[-1] or frame["functionName"]] += dt / 1000
    return out.most_common(14)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workspace", type=Path, help="a workspace with the sample data (python -m store sample)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--bare", action="store_true")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        script = None
        if a.bare:
            script = Path(tmp) / "bare.py"
            script.write_text(textwrap.dedent(BARE_APP))
        with sync_playwright() as pw, running_app(a.workspace, Path(tmp) / "streamlit.log", script=script) as app:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            watch = Timeline(page)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            if a.bare:
                watch.clock(lambda: page.goto(app.url))
                text, slider = "bare:text", "bare:k"
            else:
                watch.clock(lambda: page.goto(f"{app.url}/search"))
                select(page, "search:set", "sample-help-minilm · size 384")
                watch.idle()
                watch.clock(type_query(page, "search:text", QUERIES[0]))
                text, slider = "search:text", "search:maxd:"
                page.wait_for_timeout(15_000)  # the warm-up's imports and models done
            for i in range(a.runs):
                split(page, watch, cdp, f"text search {i}", type_query(page, text, QUERIES[(i + 1) % len(QUERIES)]))
            for i in range(a.runs):
                split(page, watch, cdp, f"slider step {i}", *slider_step(page, slider, i))
            if a.profile:
                cdp.send("Profiler.enable")
                cdp.send("Profiler.setSamplingInterval", {"interval": 200})
                for kind in ("slider", "text"):
                    cdp.send("Profiler.start")
                    for i in range(4):
                        if kind == "slider":
                            split(page, watch, cdp, "profiled slider step", *slider_step(page, slider, i))
                        else:
                            # The queries go on from the unprofiled ones: the same text twice runs nothing.
                            split(page, watch, cdp, "profiled text search",
                                  type_query(page, text, QUERIES[(a.runs + 1 + i) % len(QUERIES)]))
                    files = by_file(cdp.send("Profiler.stop")["profile"])
                    print(f"4 {kind} clicks, browser self time by file (ms): "
                          + ", ".join(f"{name} {ms:.0f}" for name, ms in files))
            browser.close()


if __name__ == "__main__":
    main()
