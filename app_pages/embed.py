"""Embed: run a model over a dataset into a feature set, with progress, cancel and a summary;
on a Ray cluster when FEATURELAB_RAY_ADDRESS names one."""
import os

import pandas as pd
import streamlit as st

from components.jobs import current_job, job_panel, start_job
from components.models import cannot_run_here, device_label, model_choice_label, model_choices, model_label, model_size
from components.pickers import dataset_picker, feature_set_picker
from components.state import show_error, user_errors, workspace

st.title("Embed")
st.caption("Run a model over every item of a dataset into a feature set. A rerun embeds only what is missing.")


@st.cache_data(ttl=30, show_spinner=False)
def cluster_summary(address: str) -> str:
    """The Ray cluster's nodes and resources, asked at most every 30 s (each ask connects)."""
    from store.embedders import cluster_info

    return cluster_info(address).summary()


def report_summary(report) -> None:
    """The end of a job: counts, the device, and every item left out with its reason."""
    state = "Cancelled" if report.cancelled else "Done"
    text = (f"{state}: {report.embedded} embedded, {report.already_done} already had a vector, "
            f"{report.skipped} skipped, {report.failed} failed · {report.model} on {report.device}, "
            f"batch {report.batch_size}, {report.seconds:.1f} s ({report.items_per_second:.1f} items/s).")
    (st.warning if report.failures or report.cancelled else st.success)(text)
    if report.failures:
        st.markdown(f"**Not embedded ({len(report.failures)})**")
        st.dataframe(pd.DataFrame([{"item": name, "reason": reason, "id": eid} for eid, name, reason in report.failures]),
                     hide_index=True, width="stretch", key="embed:failures")


with user_errors():
    ws = workspace()
    left, right = st.columns(2)
    with left:
        dataset = dataset_picker(ws, "Dataset", key="embed:dataset")
    with right:
        fs = feature_set_picker(ws, "Into feature set", key="embed:set")
    if dataset is not None and fs is not None:
        model = None
        problem = None
        if fs.model:
            st.markdown(f"Model: **{model_label(fs.model)}** (linked to {fs.name})")
            problem = cannot_run_here(fs.model)  # said now, not after the job has started
            if problem:
                show_error(problem)
        else:
            fitting = [m for m in model_choices() if model_size(m) == fs.size]
            if not fitting:
                st.warning(f"**{fs.name}** has no model, and no known model makes vectors of size {fs.size}. "
                           "Import its vectors on the **Feature sets** page instead, or create a set with a model.")
            else:
                model = st.selectbox(f"Model ({fs.name} has none; these make vectors of size {fs.size})", fitting,
                                     key="embed:model", format_func=model_choice_label)
                problem = cannot_run_here(model)
                if problem:
                    show_error(problem)
        ray_address = os.environ.get("FEATURELAB_RAY_ADDRESS") or None
        on_ray = ray_address is not None and st.checkbox(
            f"Run on a Ray cluster ({ray_address})", key="embed:ray",
            help="Decoding and the model run in Ray actors; the vectors come back into this workspace.")
        if on_ray:
            st.markdown(f"Runs on: **Ray cluster at {ray_address}** · {cluster_summary(ray_address)}")
        else:
            st.markdown(f"Runs on: **{device_label()}**")
        recompute = st.checkbox("Embed again the items that already have a vector", key="embed:recompute")
        ready = bool(fs.model or model) and problem is None
        job = current_job("embed")
        busy = job is not None and job.running
        if st.button("Embed", key="embed:go", type="primary", icon=":material/play_arrow:",
                     disabled=not ready or busy):
            from store.embedders import embed_dataset

            def work(progress, cancel, ds=dataset, target=fs, chosen=model, again=recompute,
                     cluster=ray_address if on_ray else None):
                return embed_dataset(ws, ds, target, model=chosen, recompute=again, progress=progress, cancel=cancel,
                                     ray=cluster)

            start_job("embed", f"Embedding {dataset.name} into {fs.name}", work)
    job_panel("embed", summary=report_summary)
