"""Export a dataset, with or without its vectors, as a zip to download or into a folder;
import one back."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from components.pickers import dataset_picker
from components.state import flash, user_errors, workspace
from store import Dataset, InvalidInput, Workspace, import_dataset

ZIP, FOLDER = "A zip to download", "A folder on this machine"


def safe_stem(name: str, fallback: str) -> str:
    """``name`` as a file name: runs of other characters become one '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or fallback


def draw_vector_choice(ws: Workspace) -> dict:
    """Whether and which feature sets go in: the export's options."""
    with_vectors = st.checkbox("Include feature vectors", value=True, key="export:vectors")
    chosen = []
    if with_vectors:
        sets = ws.feature_sets.list()
        by_id = {fs.id: fs for fs in sets}
        chosen = st.multiselect("Feature sets to include", list(by_id), default=list(by_id),
                                key="export:sets", format_func=lambda i: f"{by_id[i].name} (size {by_id[i].size})")
        if sets and not chosen:
            st.caption("No set chosen: the export will hold no vectors.")
    return {"include_feature_vectors": bool(with_vectors and chosen), "feature_sets": chosen or None}


def draw_zip_export(dataset: Dataset, options: dict, stem: str) -> None:
    """Export into a temporary zip held in the session, then a download button for it."""
    if st.button("Prepare the zip", key="export:zip", icon=":material/folder_zip:", type="primary"):
        tmp = Path(tempfile.mkdtemp(prefix="featurelab-export-"))
        try:
            with st.spinner("Exporting…"):
                path = dataset.export(tmp / f"{stem}.zip", **options)
                st.session_state["export:ready"] = {"name": path.name, "data": path.read_bytes(),
                                                    "dataset": dataset.name}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    ready = st.session_state.get("export:ready")
    if ready and ready["dataset"] == dataset.name:
        st.success(f"{ready['name']} is ready ({len(ready['data']) / 1024:.0f} KiB).")
        st.download_button("Download the zip", ready["data"], file_name=ready["name"],
                           mime="application/zip", key="export:download", icon=":material/download:",
                           on_click="ignore")


def draw_folder_export(dataset: Dataset, options: dict, stem: str) -> None:
    folder = st.text_input("New folder to write (it must not exist, or be empty)", key="export:folder",
                           placeholder=str(Path.cwd() / "exports" / stem))
    if st.button("Export to the folder", key="export:to-folder", icon=":material/drive_folder_upload:",
                 type="primary"):
        if not folder.strip():
            raise InvalidInput("type the folder to export to first")
        path = dataset.export(Path(folder.strip()).expanduser(), **options)
        st.success(f"Exported **{dataset.name}** to `{path}`.")


def draw_export(ws: Workspace) -> None:
    st.subheader("Export a dataset")
    dataset = dataset_picker(ws, "Dataset to export", key="export:dataset")
    if dataset is None:
        return
    options = draw_vector_choice(ws)
    where = st.radio("Export to", [ZIP, FOLDER], horizontal=True, key="export:where")
    stem = safe_stem(dataset.name, "dataset")
    if where == ZIP:
        draw_zip_export(dataset, options, stem)
    else:
        draw_folder_export(dataset, options, stem)


def import_upload(ws: Workspace, upload, name: str | None) -> Dataset:
    """Import a dropped zip: written to a temporary file under a safe name first; messages
    name the user's own file."""
    tmp = Path(tempfile.mkdtemp(prefix="featurelab-import-"))
    try:
        archive = tmp / (re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload.name).name).strip(".") or "upload.zip")
        archive.write_bytes(upload.getvalue())
        return import_dataset(ws, archive, name=name, display_name=Path(upload.name).name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def draw_import(ws: Workspace) -> None:
    st.subheader("Import an export")
    source = st.radio("From", ["A zip file", FOLDER], horizontal=True, key="import:from")
    upload = folder_in = None
    if source == "A zip file":
        upload = st.file_uploader("Drop an export zip", type=["zip"], key="import:zip")
    else:
        folder_in = st.text_input("Export folder (or .zip) on this machine", key="import:folder")
    new_name = st.text_input("Name of the new dataset (empty: the exported name)", key="import:name")
    if st.button("Import", key="import:go", icon=":material/download_for_offline:", type="primary"):
        name = new_name.strip() or None
        with st.spinner("Importing…"):
            if upload is not None:
                ds = import_upload(ws, upload, name)
            elif folder_in and folder_in.strip():
                ds = ws.import_dataset(Path(folder_in.strip()).expanduser(), name=name)
            else:
                raise InvalidInput("drop an export zip or type its folder first")
        flash("export", f"Imported **{ds.name}** ({ds.items.count()} items).")
        st.rerun()


st.title("Export and import")
st.caption("An export holds the item files under their folders and one JSON record per item "
           "(Dataloop's shape), with the feature vectors when you ask for them.")

with user_errors():  # the export and the import each have their own scope: an error keeps the other
    ws = workspace()
    flash("export")
    with user_errors():
        draw_export(ws)
    st.divider()
    with user_errors():
        draw_import(ws)
