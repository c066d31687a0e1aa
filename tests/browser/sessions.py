"""Several Chromium sessions on one `streamlit run` at once: some search by text, one runs
embedding jobs. Shared by tests/browser/test_load.py (pass/fail) and bench/load.py (search
latency). Each session is its own Chromium, driven from its own thread by its own
Playwright (the sync API is one instance per thread)."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store import Workspace
from store.embedders import DEFAULT_TEXT_MODEL
from store.embedders.job import create_feature_set, embed_dataset
from tests.browser.app_server import CHROMIUM_ARGS, chromium_path
from tests.browser.ui import goto, key_class, select, settle, widget

SEARCH_SET = "load-search-minilm"
EMBED_DATASET = "load-embed"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
WORDS = ("river forest market engine violin harbor pepper glacier lantern orbit canyon meadow copper "
         "falcon quartz tunnel orchard compass velvet thunder bakery desert island ladder marble "
         "nectar oyster pillow quiver saddle timber umbrella walnut yeast zebra anchor blossom candle "
         "dolphin ember fossil garden hammock igloo jasmine kettle lemon mirror needle olive").split()


def notes(n: int, seed: int) -> list[tuple[str, str]]:
    """(file name, text) of ``n`` distinct short notes."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        text = " ".join(rng.sample(WORDS, 6))
        if text not in seen:
            seen.add(text)
            out.append((f"note-{seed}-{len(out):04d}.txt", text))
    return out


def embed_set(r: int) -> str:
    return f"load-embed-{r}"


def prepare(home: Path, search_notes: int, embed_notes: int, embed_rounds: int) -> list[tuple[str, str]]:
    """The workspace before the server starts: a dataset of notes embedded into SEARCH_SET
    (what the searchers query), a dataset EMBED_DATASET and one empty set per embedding
    round. Returns the searchable notes."""
    searchable = notes(search_notes, seed=1)
    with Workspace.open(home) as ws:
        ds = ws.datasets.create("load-search")
        ds.items.upload([(name, text.encode()) for name, text in searchable])
        embed_dataset(ws, ds, create_feature_set(ws, SEARCH_SET, DEFAULT_TEXT_MODEL), device="cpu")
        ws.datasets.create(EMBED_DATASET).items.upload([(n, t.encode()) for n, t in notes(embed_notes, seed=2)])
        for r in range(embed_rounds):
            create_feature_set(ws, embed_set(r), DEFAULT_TEXT_MODEL)
    return searchable


@dataclass
class Session:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, Enter to the expected first result
    errors: list[str] = field(default_factory=list)
    rounds: int = 0  # embedding jobs finished
    summaries: list[str] = field(default_factory=list)  # each job's "Done: ..." line
    failure: BaseException | None = None


def _errors_on(page) -> list[str]:
    return [f"{page.url}: {t[:300]}" for t in page.locator(ERRORS).all_inner_texts()]


# Text shown by the current run only: while a run is under way Streamlit keeps the previous
# run's elements on the page, marked stale, until it replaces them.
_WAIT_JS = """([cls, wanted, timeoutMs]) => new Promise((resolve, reject) => {
    const done = () => {
        const el = document.querySelector('.' + cls);
        if (!el || el.closest('[data-stale="true"]')) return false;
        const text = [...el.querySelectorAll('[data-testid="stElementContainer"]')]
            .filter(c => !c.closest('[data-stale="true"]')).map(c => c.innerText).join('\\n');
        return wanted.every(w => text.includes(w));
    };
    if (done()) { resolve(true); return; }
    const observer = new MutationObserver(() => { if (done()) { observer.disconnect(); resolve(true); } });
    observer.observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true,
                                     attributeFilter: ['data-stale']});
    setTimeout(() => { observer.disconnect(); reject(new Error('timed out waiting for ' + wanted)); }, timeoutMs);
})"""


def _wait_text(page, key: str, *wanted: str, timeout_ms: float = 180_000) -> None:
    """Until the keyed element's text holds every one of ``wanted``. Checked on each change
    of the page (a MutationObserver), so the time measured is not rounded up to a polling
    interval, and a session that waits long costs no CPU (polling every frame, four browsers
    on two cores starved the server they were measuring)."""
    page.evaluate(_WAIT_JS, [key_class(key), list(wanted), timeout_ms])


def _browse(session: Session, url: str, body) -> None:
    """Run ``body(page)`` in a fresh Chromium; collect JavaScript and page errors."""
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.set_default_timeout(120_000)
                page = context.new_page()
                page.on("pageerror", lambda exc: session.errors.append(f"JavaScript: {exc}"))
                page.goto(url)
                page.get_by_role("heading", name="featurelab").wait_for()
                body(page)
                session.errors += _errors_on(page)
            finally:
                browser.close()
    except BaseException as exc:  # reported by the caller, with the session's name
        session.failure = exc


def searcher(session: Session, url: str, queries: list[tuple[str, str]], start: threading.Barrier | None) -> None:
    """Search by text for each note; time Enter → that note shown first in the results."""
    def body(page) -> None:
        goto(page, url, "search", "Search")
        select(page, "search:set", f"{SEARCH_SET} · size 384")
        box = widget(page, "search:text").locator("input").first
        warm_name, warm_text = queries[-1]  # the server's first query loads the model: not timed
        box.fill(warm_text)
        box.press("Enter")
        _wait_text(page, "search:results:cell:0", f"/{warm_name} · d=")
        if start is not None:
            start.wait(timeout=600)
        for name, text in queries[:-1]:
            box.fill(text)
            began = time.perf_counter()
            box.press("Enter")
            _wait_text(page, "search:results:cell:0", f"/{name} · d=")
            session.latencies.append(time.perf_counter() - began)
            session.errors += _errors_on(page)
        settle(page)

    _browse(session, url, body)


def embedder(session: Session, url: str, items: int, rounds: int, start: threading.Barrier | None,
             stop: threading.Event) -> None:
    """Embedding jobs on the Embed page, one set per round, until ``stop`` (the round under
    way is finished) or the rounds run out; each must end 'Done: <items> embedded'."""
    def body(page) -> None:
        goto(page, url, "embed", "Embed")
        select(page, "embed:dataset", EMBED_DATASET)
        if start is not None:
            start.wait(timeout=600)
        for r in range(rounds):
            if r and stop.is_set():
                break
            select(page, "embed:set", f"{embed_set(r)} · size 384")
            widget(page, "embed:go").locator("button").first.click()
            _wait_text(page, "embed:panel", f"into {embed_set(r)}", f"Done: {items} embedded")
            session.rounds = r + 1
            done = [t for t in widget(page, "embed:panel").inner_text().splitlines() if t.startswith("Done:")]
            session.summaries += done[:1]
            session.errors += _errors_on(page)

    _browse(session, url, body)


def run_sessions(url: str, queries: list[tuple[str, str]], searchers: int, per_searcher: int, embed_items: int,
                 embed_rounds: int, seed: int = 0) -> list[Session]:
    """``searchers`` searching sessions and (if ``embed_rounds``) one embedding session at
    once; the timed part starts when all have loaded their page. Each searcher gets its own
    random order of ``per_searcher`` queries (+1 untimed warm-up)."""
    rng = random.Random(seed)
    sessions = [Session(f"searcher-{i}") for i in range(searchers)]
    embedding = Session("embedder") if embed_rounds else None
    parties = searchers + (1 if embedding else 0)
    start = threading.Barrier(parties) if parties > 1 else None
    stop = threading.Event()
    threads = [threading.Thread(target=searcher, args=(s, url, rng.sample(queries, per_searcher + 1), start))
               for s in sessions]
    if embedding:
        threads.append(threading.Thread(target=embedder, args=(embedding, url, embed_items, embed_rounds, start, stop)))
    for t in threads:
        t.start()
    for t in threads[:searchers]:
        t.join()
    stop.set()
    for t in threads[searchers:]:
        t.join()
    return sessions + ([embedding] if embedding else [])


def check_writes(home: Path, rounds: int, items: int) -> dict:
    """After the server stopped: every finished round's set holds all its vectors, in the
    catalog and in Chroma, and they equal round 0's. Returns what was found."""
    with Workspace.open(home) as ws:
        first = None
        bit_equal = True
        for r in range(rounds):
            fs = ws.feature_sets.get(feature_set_name=embed_set(r))
            m = ws.matrix(fs)
            assert len(m.entity_ids) == items, f"{fs.name}: {len(m.entity_ids)} of {items} vectors"
            assert ws.check_index(fs.id) == {"ok": True, "catalog": items, "index": items}
            order = np.argsort(m.entity_ids)
            values = m.values[order]
            if first is None:
                first = values
            else:
                assert np.allclose(values, first, atol=1e-6), f"{fs.name} differs from round 0"
                bit_equal &= values.tobytes() == first.tobytes()
        return {"sets": rounds, "vectors": rounds * items, "bit_equal_across_rounds": bit_equal,
                "integrity": ws.catalog.scalar("PRAGMA integrity_check")}


def server_pid(url: str) -> int:
    """The process listening on the app's port."""
    import re
    import subprocess

    port = url.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return int(re.search(r"pid=(\d+)", out).group(1))


def open_and_settle(url: str) -> float:
    """Open the app once, then wait until its server is idle: its first session opens the
    workspace and warms UMAP's kernels in a thread (a minute of compiling on a new
    workspace), which is no part of what a benchmark measures. Returns the seconds waited."""
    session = Session("warm-up")
    _browse(session, url, lambda page: None)
    if session.failure:
        raise session.failure
    return wait_until_idle(server_pid(url))


def wait_until_idle(pid: int, below: float = 0.1, quiet_s: float = 3.0, timeout_s: float = 300) -> float:
    """Wait until the process has used less than ``below`` of a core for ``quiet_s`` seconds;
    returns the seconds waited."""
    import os

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        used = cpu()
        time.sleep(quiet_s)
        if cpu() - used < below * quiet_s:
            break
    return time.monotonic() - began


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
