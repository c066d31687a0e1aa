"""Home: the workspace at a glance, and sample data for a first look."""
import pandas as pd
import streamlit as st

from components.jobs import job_panel, start_job
from components.state import flash, user_errors, workspace

st.title("featurelab")
st.caption("Feature sets, datasets and vectors on your own machine.")

with user_errors():
    ws = workspace()
    info = ws.info()
    datasets = ws.datasets.list()
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

    st.subheader("Sample data")
    st.write(
        "A demo dataset from files that come with the installed packages: scikit-learn's sample photos "
        "and handwritten digits, and Python's own help topics as text. The texts are embedded with "
        "all-MiniLM-L6-v2 (packaged, offline), the digits get their own pixels as vectors, and the photos "
        "are embedded with CLIP when its weights are on this machine. No internet needed."
    )

    def _load_samples(progress, cancel):
        from store.io.samples import load_sample

        return load_sample(ws, progress=progress, cancel=cancel)

    def _done(report) -> str:
        return report.summary()

    if st.button("Load sample data", key="home:load-sample", icon=":material/science:", type="primary"):
        start_job("home:sample", "Loading the sample data", _load_samples)
    job_panel("home:sample", summary=_done)

    st.caption(f"Workspace: `{info['path']}` · vectors in Chroma: {info['chroma']}")
