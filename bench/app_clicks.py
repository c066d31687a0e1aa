"""Every click of the app in Chromium, from the input until the page has settled, against
the same click on a bare Streamlit page with one widget (the framework's floor), same run.

"Settled": the server says no script runs (its ``session_status_changed`` messages, read off
the tab's websocket), nothing starts again for a moment, and the browser has drawn a frame
since. Clicks, p50 over the repetitions: a slider rerun on Search (a step of the distance
limit, checked to move), a text search (a new query each time), a page switch (sidebar
links in turn), Home in a new server (from the server answering its health check), and
"Load sample data" on an empty workspace in a new server. Targets (issue 13): 0.3 s, 0.4 s, 0.5 s, 2 s, 25 s.

    .venv/bin/python bench/app_clicks.py [--runs 7] [--cold-runs 3] [--skip-sample]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.browser.app_server import CHROMIUM_ARGS, chromium_path, running_app  # noqa: E402
from tests.browser.ui import select, widget, widget_prefix  # noqa: E402

QUIET_S = 0.6  # a run that starts within this long after the last one ends belongs to the click
TARGETS = {"slider rerun": 0.3, "text search": 0.4, "page switch": 0.5, "Home, new server": 2.0,
           "Load sample data, new server": 25.0}
UP = "server up (process start to health; no target)"
QUERIES = ["how do I write a lambda", "for loop over a list", "exceptions and try", "import a module",
           "string formatting", "class definitions", "with statement context manager", "yield generators",
           "global and nonlocal names", "comparison operators"]

# The floor: one bare page per widget kind, in two pages (for the switch).
BARE_APP = '''
import streamlit as st

def one():
    st.title("One")
    st.slider("k", 1, 100, 12, key="bare:k")
    st.text_input("Text", key="bare:text")
    st.write(st.session_state.get("bare:text", ""))

def two():
    st.title("Two")
    st.write("the other page")

st.navigation([st.Page(one, title="One", url_path="one", default=True),
               st.Page(two, title="Two", url_path="two")]).run()
'''


class RunWatch:
    """When the server's script runs start and stop, from the tab's websocket."""

    def __init__(self, page) -> None:
        self.page = page
        self.running = False
        self.starts = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        msg.ParseFromString(payload)
        kind = msg.WhichOneof("type")
        if kind == "new_session":  # every run, also one that interrupts a run for a rerun
            self.starts += 1
            self.running = True
        elif kind == "session_status_changed":
            self.running = msg.session_status_changed.script_is_running

    def _drawn(self) -> float:
        self.page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        return time.perf_counter()

    def idle(self, timeout_s: float = 300) -> None:
        """Until no run is going on, nor starts for a moment."""
        deadline = time.perf_counter() + timeout_s
        while True:
            starts = self.starts
            while self.running and time.perf_counter() < deadline:
                self.page.wait_for_timeout(20)
            self.page.wait_for_timeout(QUIET_S * 1000)
            if (self.starts == starts and not self.running) or time.perf_counter() > deadline:
                return

    def clock(self, action: Callable[[], None], ready: Callable[[], bool] = lambda: True,
              timeout_s: float = 300) -> float:
        """Seconds from ``action`` to the page settled (and ``ready()``, if given)."""
        starts = self.starts
        t0 = time.perf_counter()
        action()
        deadline = t0 + timeout_s
        while True:
            while self.starts == starts or self.running or not ready():
                if time.perf_counter() > deadline:
                    raise TimeoutError("the page did not settle")
                self.page.wait_for_timeout(5)
            end = self._drawn()
            starts = self.starts
            self.page.wait_for_timeout(QUIET_S * 1000)
            if self.starts == starts and not self.running:
                return end - t0


@contextmanager
def tab(browser, url: str, path: str = "") -> Iterator[tuple[object, RunWatch, float]]:
    """A fresh tab on ``url/path``; also the seconds it took to settle there."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    watch = RunWatch(page)
    try:
        first = watch.clock(lambda: page.goto(f"{url}/{path}"))
        yield page, watch, first
    finally:
        context.close()


def nav_link(page, title: str):
    return page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first


def slider_handle(page, key_prefix: str):
    return widget_prefix(page, key_prefix).get_by_role("slider").first


def slider_step(page, key_prefix: str, n: int) -> tuple[Callable[[], None], Callable[[], bool]]:
    """One keyboard step of the slider whose key starts with ``key_prefix``, left then right
    in turn (the distance slider starts at its right end, where a right step changes nothing
    and runs nothing); and a check that the value did move (the click was a real rerun)."""
    handle = slider_handle(page, key_prefix)
    before = handle.get_attribute("aria-valuetext")

    def act() -> None:
        handle.focus()
        handle.press("ArrowLeft" if n % 2 == 0 else "ArrowRight")
    return act, lambda: slider_handle(page, key_prefix).get_attribute("aria-valuetext") != before


def type_query(page, key: str, text: str) -> Callable[[], None]:
    box = widget(page, key).locator("input").first

    def act() -> None:
        box.press("Enter")
    box.fill(text)  # typing is not the click; the Enter is
    return act


def warm_clicks(browser, url: str, runs: int, *, slider: str, text: str, path: str, pages: list[str],
                prepare: Callable[[object, RunWatch], None] = lambda page, watch: None) -> dict[str, list[float]]:
    """Text searches and slider steps on the page at ``path``, then switches to ``pages`` in turn."""
    out: dict[str, list[float]] = {"slider rerun": [], "text search": [], "page switch": []}
    with tab(browser, url, path) as (page, watch, _):
        prepare(page, watch)
        for i in range(runs):
            out["text search"].append(watch.clock(type_query(page, text, QUERIES[(i + 1) % len(QUERIES)])))
        for i in range(runs):
            act, moved = slider_step(page, slider, i)
            out["slider rerun"].append(watch.clock(act, ready=moved))
        for i in range(runs):
            title = pages[i % len(pages)]
            out["page switch"].append(watch.clock(lambda: nav_link(page, title).click()))
    for name, values in out.items():
        print(f"  {name}: {', '.join(f'{v:.2f}' for v in values)} s", flush=True)
    return out


def prepare_search(page, watch: RunWatch) -> None:
    """The text set, and a first search (it loads the model: timed, not in the p50)."""
    select(page, "search:set", "sample-help-minilm · size 384")
    watch.idle()
    print(f"first text search in a new server: {watch.clock(type_query(page, 'search:text', QUERIES[0])):.2f} s")


def cold_home(browser, home: Path, log: Path, runs: int, script: Path | None = None) -> tuple[list[float], list[float]]:
    """Home's first paint in each of ``runs`` new servers, from the server up (its health
    check answered); and how long each server took to come up (app_launcher.py's imports
    are in it)."""
    out, up = [], []
    for _ in range(runs):
        with running_app(home, log, script=script) as app, tab(browser, app.url) as (_, _, first):
            out.append(first)
            up.append(app.up_s)
    name = "bare " if script else ""
    print(f"  {name}first paint in a new server: {', '.join(f'{v:.2f}' for v in out)} s", flush=True)
    print(f"  {name}server up (process start to health): {', '.join(f'{v:.2f}' for v in up)} s", flush=True)
    return out, up


def cold_sample(browser, home: Path, log: Path) -> float:
    with running_app(home, log) as app, tab(browser, app.url) as (page, watch, _):
        done = page.get_by_text("Sample data ready")
        seconds = watch.clock(lambda: widget(page, "home:load-sample").locator("button").click(),
                              ready=lambda: done.count() > 0, timeout_s=600)
    print(f"  Load sample data in a new server: {seconds:.1f} s", flush=True)
    return seconds


def cli_sample(home: Path) -> float:
    """The same load without the app: ``python -m store sample`` in a new process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "store", "--workspace", str(home), "sample"], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--cold-runs", type=int, default=3)
    p.add_argument("--skip-sample", action="store_true", help="load the sample data without timing it in the app")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    app: dict[str, list[float]] = {}
    bare: dict[str, list[float]] = {}
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        tmp_path = Path(tmp)
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        bare_script = tmp_path / "bare" / "bare.py"
        bare_script.parent.mkdir()
        bare_script.write_text(textwrap.dedent(BARE_APP))
        home, log = tmp_path / "ws", tmp_path / "streamlit.log"
        if a.skip_sample:
            from store import Workspace
            from store.io import load_sample

            ws = Workspace.open(str(home))
            try:
                load_sample(ws)
            finally:
                ws.close()
        else:
            app["Load sample data, new server"] = [cold_sample(browser, home, log)]
            bare["Load sample data, new server"] = [cli_sample(tmp_path / "cli-ws")]
        app["Home, new server"], app[UP] = cold_home(browser, home, log, a.cold_runs)
        bare["Home, new server"], bare[UP] = cold_home(browser, tmp_path / "bare-ws", log, a.cold_runs, bare_script)
        with running_app(home, log) as server:
            app.update(warm_clicks(browser, server.url, a.runs, slider="search:maxd:", text="search:text",
                                   path="search", pages=["Home", "Datasets", "Map", "Search"], prepare=prepare_search))
        with running_app(tmp_path / "bare-ws", log, script=bare_script) as server:
            bare.update(warm_clicks(browser, server.url, a.runs, slider="bare:k", text="bare:text",
                                    path="", pages=["Two", "One"]))
        browser.close()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print("| click | target | featurelab p50 (min to max) | floor p50 (bare Streamlit; sample: the CLI) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, target in [*TARGETS.items(), (UP, None)]:
        if name not in app:
            continue
        ours, floor = app[name], bare.get(name, [])
        print(f"| {name} | {'' if target is None else f'≤ {target:g} s'} | {p50(ours):.2f} s "
              f"({min(ours):.2f} to {max(ours):.2f}) | {p50(floor):.2f} s | {p50(ours) / p50(floor):.1f}× |")


if __name__ == "__main__":
    main()
