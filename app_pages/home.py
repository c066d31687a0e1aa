"""Home: the workspace at a glance, and sample data for a first look."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components.jobs import job_panel, start_job
from components.state import flash, user_errors, workspace
from store import Dataset, Workspace


def draw_overview(info: dict[str, Any], datasets: list[Dataset]) -> None:
    """The counts, a hint when the workspace is empty, and the datasets and feature sets."""
    cols = st.columns(3)
    cols[0].metric("Datasets", info["datasets"])
    cols[1].metric("Items", info["items"])
    cols[2].metric("Feature sets", len(info["feature_sets"]))
    flash("home")
    if not info["datasets"]:
        st.info(
            "The workspace is empty. Start by uploading files into a dataset on the **Upload** page, "
            "or load the sample data below to see every page work. From the command line: "
            "`python -m store upload --dataset NAME FOLDER`.",
            icon=":material/lightbulb:",
        )
    if datasets:
        st.subheader("Datasets")
        st.dataframe(
            pd.DataFrame([{"name": d.name, "items": d.items.count(), "id": d.id} for d in datasets]),
            hide_index=True, width="stretch", key="home:datasets",
        )
    if info["feature_sets"]:
        st.subheader("Feature sets")
        table = pd.DataFrame(
            [
                {"name": s["name"], "size": s["size"], "type": s["type"], "entity": s["entityType"],
                 "model": (s["model"] or {}).get("name", ""), "vectors": s["vectors"]}
                for s in info["feature_sets"]
            ]
        )
        st.dataframe(table, hide_index=True, width="stretch", key="home:sets")


def draw_samples(ws: Workspace) -> None:
    """Load the sample data as a background job."""
    st.subheader("Sample data")
    st.write(
        "A demo dataset from files that come with the installed packages: scikit-learn's sample photos "
        "and handwritten digits, and Python's own help topics as text. The texts are embedded with "
        "all-MiniLM-L6-v2 (packaged, offline), the digits get their own pixels as vectors, and the photos "
        "are embedded with CLIP when its weights are on this machine. No internet needed."
    )

    def load(progress, cancel):
        from store.io import load_sample  # the sample module loads only when asked for

        return load_sample(ws, progress=progress, cancel=cancel)

    if st.button("Load sample data", key="home:load-sample", icon=":material/science:", type="primary"):
        start_job("home:sample", "Loading the sample data", load)
    job_panel("home:sample", summary=lambda report: report.summary())


st.title("featurelab")
st.caption("Feature sets, datasets and vectors on your own machine.")

with user_errors():
    ws = workspace()
    info = ws.info()
    draw_overview(info, ws.datasets.list())
    draw_samples(ws)
    st.caption(f"Workspace: `{info['path']}` · vectors in Chroma: {info['chroma']}")
