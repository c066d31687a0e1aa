"""The one pager of the app (a dataset's grid, search results): previous, the page number,
next, and where the page lies ("Showing 101–200 of 1,000"). The arithmetic is the store's
``result_window``; the page number lives under ``<key>:page``."""
from __future__ import annotations

import streamlit as st

from store.search import ResultWindow, result_window


def _step(key: str, delta: int, pages: int) -> None:
    st.session_state[f"{key}:page"] = min(max(1, st.session_state.get(f"{key}:page", 1) + delta), pages)


def pager(total: int, page_size: int, *, key: str, noun: str = "Showing") -> ResultWindow:
    """Draw the pager and return the page's window (kept in range when the results shrink)."""
    pages = result_window(total, 1, page_size).pages
    if st.session_state.get(f"{key}:page", 1) > pages:
        st.session_state[f"{key}:page"] = pages
    prev_col, num_col, next_col, info_col = st.columns([1, 1.2, 1, 4], vertical_alignment="bottom")
    prev_col.button("Previous", key=f"{key}:prev", on_click=_step, args=(key, -1, pages),
                    icon=":material/chevron_left:", disabled=st.session_state.get(f"{key}:page", 1) <= 1)
    page = num_col.number_input(f"Page (of {pages:,})", 1, pages, key=f"{key}:page")
    next_col.button("Next", key=f"{key}:next", on_click=_step, args=(key, 1, pages),
                    icon=":material/chevron_right:", disabled=page >= pages)
    window = result_window(total, page, page_size)
    info_col.caption(f"{noun} {window.label}" if total else "")
    return window
