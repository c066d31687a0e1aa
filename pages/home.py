"""Home: the workspace at a glance."""
import pandas as pd
import streamlit as st

from components.state import user_errors, workspace

st.title("featurelab")
st.caption("Feature sets, datasets and vectors on your own machine.")

with user_errors():
    ws = workspace()
    info = ws.info()
    cols = st.columns(3)
    cols[0].metric("Datasets", info["datasets"])
    cols[1].metric("Items", info["items"])
    cols[2].metric("Feature sets", len(info["feature_sets"]))
    if not info["datasets"]:
        st.info(
            "The workspace is empty. Start by uploading files into a dataset, or from the command line: "
            "`python -m store upload --dataset NAME FOLDER`."
        )
    if info["feature_sets"]:
        table = pd.DataFrame(
            [
                {"name": s["name"], "size": s["size"], "type": s["type"], "entity": s["entityType"],
                 "model": (s["model"] or {}).get("name", ""), "vectors": s["vectors"]}
                for s in info["feature_sets"]
            ]
        )
        st.subheader("Feature sets")
        st.dataframe(table, hide_index=True, use_container_width=True)
    st.caption(f"Workspace: `{info['path']}` · vectors in Chroma: {info['chroma']}")
