"""What can be done with a set of chosen items (a lasso, search results, a duplicate group):
save them as a new dataset or a folder of one, or download them as an export zip."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import streamlit as st

from components.state import user_errors
from store import Workspace
from store.io import export_selection, save_selection


@st.cache_data(max_entries=2, show_spinner="Writing the export…")
def _export_zip(_ws: Workspace, ids: tuple[str, ...], name: str, catalog_stamp: tuple[int, int]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_selection(_ws, list(ids), Path(tmp) / f"{name}.zip", name=name)
        return path.read_bytes()


def selection_actions(ws: Workspace, ids: Sequence[str], *, key: str, default_name: str = "selection") -> None:
    """A "Save or export" panel for the items (or annotations) ``ids``."""
    with st.popover(f"Save or export these {len(ids)}", icon=":material/save:"):
        name = st.text_input("Dataset", key=f"{key}:save-name", placeholder=default_name,
                             help="A new dataset, or an existing one when you give a folder below")
        folder = st.text_input("Folder (optional)", key=f"{key}:save-dir", placeholder="e.g. /picked",
                               help="Empty: a new dataset. A folder: the items go under it in that dataset.")
        if st.button("Save as dataset", key=f"{key}:save", icon=":material/library_add:", type="primary"):
            with user_errors():
                summary = save_selection(ws, list(ids), name.strip() or default_name, dir=folder.strip() or None).summary()
                st.success(summary[:1].upper() + summary[1:] + ".")
        st.divider()
        if st.toggle("Prepare an export zip (files, annotations, vectors)", key=f"{key}:export"):
            export_name = name.strip() or default_name
            with user_errors():
                data = _export_zip(ws, tuple(ids), export_name, ws.catalog.change_stamp())
                st.download_button("Download the zip", data, file_name=f"{export_name}.zip", mime="application/zip",
                                   key=f"{key}:download", icon=":material/download:")
