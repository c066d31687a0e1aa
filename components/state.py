"""The one Workspace of this server process, and turning store errors into st.error."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from store import FeaturelabError, Workspace


@st.cache_resource(show_spinner="Opening the workspace…")
def workspace() -> Workspace:
    """Opened once per server process (``$FEATURELAB_HOME`` or ./workspace)."""
    return Workspace.open()


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a FeaturelabError as a plain message that says what to do, never a traceback."""
    try:
        yield
    except FeaturelabError as exc:
        st.error(str(exc), icon=":material/error:")
