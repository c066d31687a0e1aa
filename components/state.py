"""The one Workspace of this server process, the models, and turning store errors into st.error."""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import streamlit as st

from store import FeaturelabError, Workspace, default_home
from store.warmup import Activity, warm_up_app

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


ACTIVITY = Activity()  # app.py notes each run's start, components.jobs a job's refresh


def page_sources() -> list[Path]:
    """The pages' and components' source files: what they import is warmed."""
    root = Path(__file__).resolve().parents[1]
    return sorted([*(root / "app_pages").glob("*.py"), *(root / "components").glob("*.py")])


def warm_up() -> None:
    """Once per server process, after the first page is drawn (app.py calls it after every
    page; later calls cost nothing): the pages' imports, the text models, then umap's
    kernels, in the background (``store.warmup.warm_up_app``)."""
    try:
        ws = workspace()
    except FeaturelabError:
        ACTIVITY.busy()
        return  # the page already said why the workspace did not open
    warm_up_app(ws, page_sources(), ACTIVITY)


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

