"""Fetch plotly.js before a page needs it. Streamlit loads its plotly chunk (several MB of
JavaScript, plus a WebGL context for scattergl) the first time a tab draws a chart: on
this machine that cost 1.5 s on top of the first map, histogram or comparison of each
tab. A one-point chart that nobody sees, drawn after the first pages of a session (a tab),
has the chunk loaded and warm while the user is still choosing what to draw. Once the tab
has the chunk it keeps it, so later runs skip the chart (it cost every rerun ~40 ms)."""
from __future__ import annotations

import streamlit as st

KEY = "plotly-preload"
RUNS = 3  # full runs of a session that draw it: the chunk starts loading at the first; a page
# switched away from at once still leaves the next two to finish it


@st.cache_resource
def _figure():
    import plotly.graph_objects as go

    figure = go.Figure(go.Scattergl(x=[0], y=[0], mode="markers"))
    figure.update_layout(height=10, width=10, margin={"l": 0, "r": 0, "t": 0, "b": 0})
    return figure


def preload_plotly() -> None:
    """Draw the hidden chart on the session's first ``RUNS`` runs (call it after the page)."""
    drawn = st.session_state.get(f"{KEY}:runs", 0)
    if drawn >= RUNS:
        return
    st.session_state[f"{KEY}:runs"] = drawn + 1
    st.html(f"<style>.st-key-{KEY} {{ display: none; }}</style>")
    with st.container(key=KEY):
        st.plotly_chart(_figure(), key=f"{KEY}:chart", config={"staticPlot": True})
