"""Upload: drop many files at once into a dataset (new or existing) and a folder; a result
per file, and thumbnails of what arrived."""
from __future__ import annotations

import posixpath
from typing import Any

import pandas as pd
import streamlit as st

from components.gallery import item_gallery
from components.pickers import dataset_picker
from components.state import user_errors, workspace
from store import Dataset, InvalidInput, Workspace, normalize_dir

GALLERY_LIMIT = 60


def target_dataset(ws: Workspace, target: Dataset | str) -> Dataset:
    """The picked dataset, or the new one named in the picker, created now."""
    if not isinstance(target, str):
        return target
    if not target:
        raise InvalidInput("name the new dataset first (the field above the uploader)")
    return ws.datasets.create(target)


def group_by_folder(files: list, folder: str) -> tuple[dict[str, list], list[dict]]:
    """The files by the dataset folder each goes to (a dropped folder's sub-folders under
    ``folder``), and a result row for each file whose path is refused."""
    base = normalize_dir(folder)
    by_folder: dict[str, list] = {}
    rejected = []
    for f in files:
        parent, _, _ = f.name.replace("\\", "/").rpartition("/")
        try:
            where = normalize_dir(posixpath.join(base, parent)) if parent else base
        except InvalidInput as exc:
            rejected.append({"file": f.name, "status": "rejected", "message": str(exc), "item": None})
            continue
        by_folder.setdefault(where, []).append((f.name, f.getvalue()))
    return by_folder, rejected


def upload(dataset: Dataset, files: list, folder: str) -> list[dict[str, Any]]:
    """Upload with a progress bar; a result row per file (``_item``: the new item, for thumbnails)."""
    by_folder, rows = group_by_folder(files, folder)
    bar = st.progress(0.0, text="Uploading…")
    done, total = 0, len(files)
    for where, batch in by_folder.items():
        for r in dataset.items.upload(batch, dir=where):
            rows.append({"file": r.name, "status": r.status, "message": r.message,
                         "item": r.item.filename if r.item else None, "_item": r.item})
            done += 1
            bar.progress(done / total, text=f"Uploading… {done} / {total}")
    return rows


def upload_into(ws: Workspace, target: Dataset | str, files: list, folder: str) -> dict[str, Any]:
    """Upload into the picked dataset, or a new one that is kept only if a file arrived:
    an upload whose every file is rejected leaves no empty dataset behind."""
    dataset = target_dataset(ws, target)
    rows = upload(dataset, files, folder)
    if isinstance(target, str) and all(r["status"] == "rejected" for r in rows):
        dataset.delete()
        return {"dataset": dataset.name, "rows": rows, "kept": False}
    st.session_state["upload:select-next"] = dataset.id  # after creating a dataset, keep working in it
    return {"dataset": dataset.name, "rows": rows, "kept": True}


def draw_form(ws: Workspace) -> None:
    """Where to, the uploader, and the button; the results are kept for the rerun after it."""
    if "upload:select-next" in st.session_state:  # after creating a dataset, keep working in it
        st.session_state["upload:dataset"] = st.session_state.pop("upload:select-next")
    left, right = st.columns(2)
    with left:
        target = dataset_picker(ws, "Into dataset", key="upload:dataset", allow_new=True)
    folder = right.text_input("Folder inside the dataset", value="/", key="upload:folder",
                              help="For example /cats. Sub-folders of a dropped folder go under it.")
    as_folder = right.toggle("Pick a whole folder (keeps its sub-folders)", key="upload:as-folder")
    limit = st.get_option("server.maxUploadSize")
    generation = st.session_state.setdefault("upload:generation", 0)
    files = st.file_uploader(
        "Drop files here", accept_multiple_files="directory" if as_folder else True,
        key=f"upload:files:{generation}:{as_folder}",
        help=f"Up to {limit} MB per file.",
    )
    st.caption(
        f"Up to {limit} MB per file (`server.maxUploadSize` in `.streamlit/config.toml`); a larger file is "
        "refused with a message. Every image is decoded on arrival and a broken one is rejected; "
        "nothing uploaded is ever run."
    )
    if files and st.button(f"Upload {len(files)} file{'s' if len(files) != 1 else ''}", key="upload:go",
                           type="primary", icon=":material/upload:"):
        st.session_state["upload:results"] = upload_into(ws, target, files, folder)
        st.session_state["upload:generation"] = generation + 1  # a fresh, empty uploader
        st.rerun()


def draw_results(results: dict[str, Any]) -> None:
    """The counts, a row per file, and thumbnails of what was added."""
    rows = results["rows"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("added", "duplicate", "rejected")}
    summary = (f"Into **{results['dataset']}**: {counts['added']} added, {counts['duplicate']} duplicate, "
               f"{counts['rejected']} rejected.")
    if not results.get("kept", True):
        summary = (f"Every file was rejected ({counts['rejected']}), so no dataset **{results['dataset']}** was "
                   "created. The table says why for each file.")
    (st.warning if counts["rejected"] else st.success)(summary)
    st.dataframe(
        pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]),
        hide_index=True, width="stretch", key="upload:table",
        column_config={"message": st.column_config.TextColumn("message", width="large")},
    )
    arrived = [r["_item"] for r in rows if r.get("_item") is not None and r["status"] == "added"]
    if arrived:
        st.subheader("What arrived")
        item_gallery(arrived[:GALLERY_LIMIT], key="upload:gallery", columns=6)
        if len(arrived) > GALLERY_LIMIT:
            st.caption(f"… and {len(arrived) - GALLERY_LIMIT} more.")


st.title("Upload")
st.caption("Images and text (any other file too) go into a dataset. The same bytes twice in one dataset are kept once.")

with user_errors():
    ws = workspace()
    with user_errors():  # a refused upload keeps the results of the last one on screen
        draw_form(ws)
    results = st.session_state.get("upload:results")
    if results:
        draw_results(results)
