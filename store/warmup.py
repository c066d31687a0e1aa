"""Warming a long-lived process (the app's server) before the first click needs it.

What a first click would otherwise wait for, measured on a 2-core machine: torch and
sentence-transformers imported and the text model loaded (the first text search, 2 s and
far more under load), umap's numba kernels (the first map, up to a minute). One background
thread does it all, one step after the other: two warmers at once, or a warmer during the
first page, fight the page's own run for the GIL and the two cores (bench/app_clicks.py)."""
from __future__ import annotations

import ast
import contextlib
import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger(__name__)
_STARTED: dict[str, threading.Thread] = {}  # workspace path -> its warmer, once per process
_GUARD = threading.Lock()


IDLE_S = 3.0  # umap's kernels start compiling only after this long without a click
STUCK_S = 120.0  # a run "in progress" for longer was stopped without reaching its end (a rerun)


@dataclass
class Activity:
    """When this process last served a user (monotonic times): the app notes each run's
    start and, after the page, its end; the warm-up's long step waits for ``IDLE_S`` idle."""

    start: float = 0.0
    end: float = 0.0

    def run_started(self) -> None:
        """A user is being served (a run starts: ``serving``)."""
        self.start = time.monotonic()

    def busy(self) -> None:
        """Something the user waits on is going on (a run ended, a job's panel refreshed)."""
        self.end = max(self.end, time.monotonic())

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """A run (the app's, or a fragment's rerun, which skips app.py) from its start to its
        end, also when it stops early (st.stop, st.rerun, st.switch_page)."""
        self.run_started()
        try:
            yield
        finally:
            self.busy()

    def idle_seconds(self) -> float:
        """Seconds since the last run ended; 0 while one runs."""
        now = time.monotonic()
        if self.start > self.end and now - self.start < STUCK_S:
            return 0.0
        return now - max(self.start, self.end)


def until_idle(idle: Callable[[], float] | None, seconds: float, halt: threading.Event | None = None) -> bool:
    """Wait until ``idle()`` (seconds since the last run ended) reaches ``seconds``, or
    ``halt`` is set (then False)."""
    pause = 0.05 if seconds < 1 else 0.5
    while idle is not None and idle() < seconds and not (halt is not None and halt.is_set()):
        if halt is None:
            time.sleep(pause)
        else:
            halt.wait(pause)
    return not (halt is not None and halt.is_set())


def import_modules_of(sources: Iterable[Path]) -> list[str]:
    """Import what ``sources`` import, at their top or inside a function, and touch the
    names they take (a wing's top loads its parts on first access), so that the first visit
    of a page runs the page, not a second of imports. Read from their own import
    statements: a page that imports something new is covered without a list."""
    wanted: dict[str, set[str]] = {}  # module -> names taken from it
    for source in sorted(sources):
        for node in ast.walk(ast.parse(Path(source).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                wanted.setdefault(node.module, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    wanted.setdefault(alias.name, set())
    for name, attributes in sorted(wanted.items()):
        try:
            module = importlib.import_module(name)
            for attribute in attributes:
                getattr(module, attribute, None)
        except Exception:  # noqa: BLE001 - the page itself will say what is missing
            log.warning("warming: could not import %s", name, exc_info=True)
    return sorted(wanted)


def warm_up_app(ws: "Workspace", sources: Iterable[Path], activity: Activity) -> threading.Thread | None:
    """The app server's warm-up (``warm_up``) after its first page: what ``sources`` (the
    pages and components) import, then the text models, then umap's kernels once the user
    paused. ``FEATURELAB_WARM_MODELS=0`` skips the models and imports,
    ``FEATURELAB_WARM_NUMBA=0`` the kernels (page tests skip both: a background import of
    torch racing the test's own import of it can leave torch half-initialised). The index
    worker starts no Chroma step while a page runs (``IndexSync.idle``)."""
    activity.busy()
    ws.index_sync.idle = activity.idle_seconds
    models = os.environ.get("FEATURELAB_WARM_MODELS", "1") != "0"
    paths = list(sources)

    def imports() -> list[str]:  # all at once, right after the first page (see ``_warm``)
        return import_modules_of(paths)
    return warm_up(ws, models=models, numba=os.environ.get("FEATURELAB_WARM_NUMBA", "1") != "0",
                   imports=imports if models else None, idle=activity.idle_seconds)


def warm_up(ws: "Workspace", *, models: bool = True, numba: bool = True,
            imports: Callable[[], object] | None = None,
            idle: Callable[[], float] | None = None) -> threading.Thread | None:
    """Start warming this process for ``ws`` in a daemon thread (once per process and
    workspace; later calls return the same thread, or None when there is nothing to do):
    ``imports()`` (the caller's, e.g. the app's page imports), then the offline text models
    (``store.embedders.preload_text_models``), then umap's numba kernels (``store.analysis.warm_numba_cache``). Errors are
    logged, never raised.

    ``idle()``: seconds since the process last served a user (0 while it does). The
    kernels, the long step (10 s to minutes of holding the GIL), wait for ``IDLE_S`` of it,
    so they are not compiled while someone clicks through the pages."""
    if not (models or numba or imports):
        return None
    key = str(ws.path.resolve())
    with _GUARD:
        if key in _STARTED:
            return _STARTED[key]
        if numba:  # numba reads its cache folder at import: set it now, before anything imports it
            from .analysis import configure_numba_cache

            configure_numba_cache(ws)
        thread = threading.Thread(target=_warm, args=(ws, models, numba, imports, idle), name="featurelab-warm-up",
                                  daemon=True)
        _STARTED[key] = thread
    thread.start()
    return thread


def _warm(ws: "Workspace", models: bool, numba: bool, imports: Callable[[], object] | None,
          idle: Callable[[], float] | None) -> None:
    started = time.perf_counter()
    # The page imports before the models, all at once, though a first text search then waits
    # for both (bench/app_clicks.py): with the models first, or each import paced into the
    # pauses between runs, the imports fell into the first warm clicks (2 to 4 times slower).
    if imports is not None:
        try:
            imports()
        except Exception:  # noqa: BLE001
            log.exception("warming: %r failed", imports)
    if models:
        try:
            from .embedders import preload_text_models

            log.info("text models warm (%s) in %.1f s", ", ".join(preload_text_models(ws)) or "none",
                     time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - best effort: the page that needs a model loads it
            log.exception("warming the text models failed; the first text search will load them")
    if numba:
        from .analysis import warm_numba_cache

        until_idle(idle, IDLE_S)
        try:
            warm_numba_cache(ws, background=False)  # logs its own failure
        except Exception:  # noqa: BLE001
            pass
