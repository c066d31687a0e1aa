"""Warming a long-lived process (the app's server) before the first click needs it.

What a first click would otherwise wait for, measured on a 2-core machine: torch and
sentence-transformers imported and the text model loaded (the first text search, 2 s and
far more under load), umap's numba kernels (the first map, up to a minute). One background
thread does it all, one step after the other: two warmers at once, or a warmer during the
first page, fight the page's own run for the GIL and the two cores (bench/app_clicks.py)."""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger(__name__)
_STARTED: dict[str, threading.Thread] = {}  # workspace path -> its warmer, once per process
_GUARD = threading.Lock()


IDLE_S = 3.0  # umap's kernels start compiling only after this long without a click


def warm_up(ws: "Workspace", *, models: bool = True, numba: bool = True,
            first: Callable[[], object] | None = None,
            idle: Callable[[], float] | None = None) -> threading.Thread | None:
    """Start warming this process for ``ws`` in a daemon thread (once per process and
    workspace; later calls return the same thread, or None when there is nothing to do):
    ``first()`` (the caller's own, e.g. the app's page imports), then the offline text models
    (``store.embedders.preload_text_models``), then umap's numba kernels
    (``store.analysis.warm_numba_cache``). Errors are logged, never raised.

    ``idle()``: seconds since the process last served a user (0 while it does). The
    kernels, the long step (10 s to minutes of holding the GIL), wait for ``IDLE_S`` of it,
    so they are not compiled while someone clicks through the pages."""
    if not (models or numba or first):
        return None
    key = str(ws.path.resolve())
    with _GUARD:
        if key in _STARTED:
            return _STARTED[key]
        if numba:  # numba reads its cache folder at import: set it now, before anything imports it
            from .analysis import configure_numba_cache

            configure_numba_cache(ws)
        thread = threading.Thread(target=_warm, args=(ws, models, numba, first, idle), name="featurelab-warm-up", daemon=True)
        _STARTED[key] = thread
    thread.start()
    return thread


def _warm(ws: "Workspace", models: bool, numba: bool, first: Callable[[], object] | None,
          idle: Callable[[], float] | None) -> None:
    started = time.perf_counter()
    if first is not None:
        try:
            first()
        except Exception:  # noqa: BLE001
            log.exception("warming: %r failed", first)
    if models:
        try:
            from .embedders import preload_text_models

            log.info("text models warm (%s) in %.1f s", ", ".join(preload_text_models(ws)) or "none",
                     time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - best effort: the page that needs a model loads it
            log.exception("warming the text models failed; the first text search will load them")
    if numba:
        from .analysis import warm_numba_cache

        while idle is not None and idle() < IDLE_S:
            time.sleep(0.5)

        try:
            warm_numba_cache(ws, background=False)  # logs its own failure
        except Exception:  # noqa: BLE001
            pass
