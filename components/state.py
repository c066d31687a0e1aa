"""The one Workspace of this server process, the models, and turning store errors into st.error."""
from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator

import streamlit as st

from store import FeaturelabError, Workspace, default_home

log = logging.getLogger("featurelab.app")


def _close(ws: Workspace) -> None:
    ws.close()


@st.cache_resource(show_spinner="Opening the workspace…", on_release=_close)
def _open_workspace(path: str, chroma_url: str | None) -> Workspace:
    return Workspace.open(path, chroma_url=chroma_url)


def workspace() -> Workspace:
    """Opened once per server process (``$FEATURELAB_HOME`` or ./workspace)."""
    path = str(default_home().resolve())
    return _open_workspace(path, os.environ.get("FEATURELAB_CHROMA_URL") or None)


_ACTIVITY = {"start": 0.0, "end": 0.0}  # monotonic times of this process's last run start and end
STUCK_S = 120.0  # a run "in progress" for longer was stopped without reaching its end (a rerun)


def note_run_start() -> None:
    """app.py's first line: a user is being served (the warm-up holds its long step)."""
    _ACTIVITY["start"] = time.monotonic()


def note_activity() -> None:
    """Something the user waits on is going on (a job's progress panel refreshing)."""
    _ACTIVITY["end"] = max(_ACTIVITY["end"], time.monotonic())


def idle_seconds() -> float:
    """Seconds since the last run ended; 0 while one runs."""
    now = time.monotonic()
    if _ACTIVITY["start"] > _ACTIVITY["end"] and now - _ACTIVITY["start"] < STUCK_S:
        return 0.0
    return now - max(_ACTIVITY["start"], _ACTIVITY["end"])


def warm_up() -> None:
    """Once per server process, after the first page is drawn (app.py calls it after every
    page; later calls cost nothing): load the offline text models, then umap's kernels, in
    the background, so the first text search and the first map do not wait for them.
    ``FEATURELAB_WARM_MODELS=0`` skips the imports and models, ``FEATURELAB_WARM_NUMBA=0``
    the kernels (page tests skip both: a background import of torch racing the test's own
    import of it can leave torch half-initialised)."""
    from store.warmup import warm_up as start

    _ACTIVITY["end"] = time.monotonic()
    try:
        ws = workspace()
    except FeaturelabError:
        return  # the page already said why the workspace did not open
    models = os.environ.get("FEATURELAB_WARM_MODELS", "1") != "0"
    start(ws, models=models, numba=os.environ.get("FEATURELAB_WARM_NUMBA", "1") != "0",
          first=import_page_modules if models else None, idle=idle_seconds)


def import_page_modules() -> list[str]:
    """Import what the pages and components import, at the top or inside a function
    (components, store wings and their lazily loaded parts, pandas, plotly, PIL...), so
    the first visit of a page runs the page, not a second of imports. Read from their own
    import statements: a page that imports something new is covered without a list here."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    wanted: dict[str, set[str]] = {}  # module -> names taken from it
    for source in sorted([*(root / "app_pages").glob("*.py"), *(root / "components").glob("*.py")]):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                wanted.setdefault(node.module, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    wanted.setdefault(alias.name, set())
    for name, attributes in sorted(wanted.items()):
        try:
            module = importlib.import_module(name)
            for attribute in attributes:  # a wing's top loads its parts on first access
                getattr(module, attribute, None)
        except Exception:  # noqa: BLE001 - the page itself will say what is missing
            log.warning("warming: could not import %s", name, exc_info=True)
    return sorted(wanted)


# Tests call ``workspace.clear()`` to drop the cached workspace between runs.
workspace.clear = _open_workspace.clear  # type: ignore[attr-defined]


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def embedder(model_json: str, device: str | None = None) -> Any:
    """A model (a feature set's ``model`` as JSON), loaded once per server process for each
    (model, device); the store's own jobs and queries get the same loaded model."""
    import json

    from store.embedders import load_embedder

    return load_embedder(json.loads(model_json), device=device)


# Characters that start markdown (or Streamlit's LaTeX, colours and icons) in st.error's body.
# An underscore inside a word and a colon before a space format nothing: kept bare, so the
# message reads (and searches) as written.
_MARKDOWN = re.compile(r"[\\`*$\[\]<>~|#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|:(?=\S)")


def plain(message: str) -> str:
    """``message`` as st.error/st.warning show it literally: without this a ``$`` starts
    LaTeX ("filter.$and[1]" drew as math) and ``*``, ``_``, ``[`` format text."""
    return _MARKDOWN.sub(lambda m: "\\" + m.group(), message)


def show_error(message: str, where: Any = None) -> None:
    """A plain-text error, in ``where`` (a column, a container) or where the page is now."""
    (st if where is None else where).error(plain(message), icon=":material/error:")


@contextmanager
def user_errors(where: Any = None) -> Iterator[None]:
    """Show a FeaturelabError as a plain message that says what to do, never a traceback.
    Anything else is a bug: a plain message too, and the traceback goes to the server log.
    Each section of a page has its own, so one error leaves the rest of the page on screen."""
    try:
        yield
    except FeaturelabError as exc:
        show_error(str(exc), where)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a section
        log.exception("unexpected error on a page")
        show_error(f"Something went wrong ({type(exc).__name__}: {exc}). The server log has the details; "
                   "try again, and report it if it happens again.", where)


def flash(key: str, message: str | None = None, kind: str = "success") -> None:
    """Keep a message across one rerun (set it with ``message``, show it without)."""
    slot = f"flash:{key}"
    if message is not None:
        st.session_state[slot] = (kind, message)
        return
    stored = st.session_state.pop(slot, None)
    if stored:
        getattr(st, stored[0])(stored[1])

