"""Datasets: browse one as a grid of pages (folder, hidden, item filter JSON, sort; page and
thumbnail size), open any item (the item view), and delete the whole dataset."""
from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

from components.gallery import item_gallery
from components.pager import pager
from components.pickers import dataset_picker
from components.state import flash, user_errors, workspace
from store import Dataset, InvalidInput, Pages, Workspace

PAGE_SIZES = [24, 48, 96, 200]
# Thumbnail size -> (columns of the grid, thumbnail pixels).
THUMBS = {"Small": (10, 96), "Medium": (6, 160), "Large": (4, 256)}
SORTS = {"Path": "filename", "Name": "name", "Date added": "createdAt", "Kind": "kind"}
HIDDEN = {"Visible only": False, "Hidden only": True, "Both": None}
ALL_FOLDERS = "All folders"


@dataclass
class Browse:
    """What the controls ask for (``ItemsRepo.browse``'s arguments, less the page)."""
    folder: str | None
    subfolders: bool
    hidden: bool | None
    filter: dict | None
    sort: str
    descending: bool
    page_size: int
    columns: int
    thumb: int


def typed_filter(text: str) -> dict | None:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the item filter is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                           'fix it, e.g. {"metadata.user.digit": 3}, or clear the box') from exc


def draw_controls(ds: Dataset) -> tuple[Browse, str]:
    """The controls, and the item filter box's text (read when the grid is drawn)."""
    folder_col, sub_col, hidden_col, sort_col, order_col = st.columns([3, 1.3, 1.5, 1.5, 1.2])
    folder = folder_col.selectbox("Folder", [ALL_FOLDERS, *ds.items.folders()], key=f"datasets:folder:{ds.id}")
    subfolders = sub_col.checkbox("With subfolders", value=True, key="datasets:subfolders")
    hidden = hidden_col.selectbox("Hidden items", list(HIDDEN), key="datasets:hidden")
    sort = sort_col.selectbox("Sort by", list(SORTS), key="datasets:sort")
    descending = order_col.checkbox("Descending", key="datasets:descending")
    size_col, thumb_col = st.columns(2)
    page_size = size_col.select_slider("Items per page", PAGE_SIZES, value=48, key="datasets:page-size")
    thumb = thumb_col.select_slider("Thumbnail size", list(THUMBS), value="Medium", key="datasets:thumb")
    with st.expander("Item filter (JSON)", expanded=bool(st.session_state.get("datasets:filter"))):
        text = st.text_area("A filter object of the filter language (ctrl+enter applies it)", key="datasets:filter",
                            height=90, placeholder='e.g. {"metadata.user.digit": {"$in": [3, 8]}} or '
                                                  '{"name": "*.png"} or {"$or": [{"kind": "text"}, {"annotated": true}]}')
    columns, pixels = THUMBS[thumb]
    return Browse(None if folder == ALL_FOLDERS else folder, subfolders, HIDDEN[hidden], None,
                  SORTS[sort], descending, page_size, columns, pixels), text


def browse_page(ds: Dataset, b: Browse, page: int) -> Pages:
    return ds.items.browse(folder=b.folder, subfolders=b.subfolders, hidden=b.hidden, filter=b.filter, sort=b.sort,
                           descending=b.descending, page=page, page_size=b.page_size)


def draw_grid(ds: Dataset, b: Browse, text: str) -> None:
    """The pager and the grid; a bad filter is said here and the rest of the page stays."""
    with user_errors():
        b.filter = typed_filter(text)
        total = ds.items.browse(folder=b.folder, subfolders=b.subfolders, hidden=b.hidden, filter=b.filter,
                                page_size=1).items_count
        if not total:
            st.info("No item of this dataset passes these filters: pick another folder, or loosen the filter.")
            return
        window = pager(total, b.page_size, key="datasets", noun="Items")
        item_gallery(browse_page(ds, b, window.page - 1).items, columns=b.columns, key="datasets:grid", thumb=b.thumb)


def draw_delete_dataset(ws: Workspace, ds: Dataset) -> None:
    """A confirmation that says what goes (items, files no other dataset shares, annotations, vectors)."""
    with st.expander("Delete this dataset", icon=":material/delete:"):
        summary = ws.datasets.deletion_summary(ds.id)
        st.warning(f"Deleting {ds.name} deletes {summary.describe()}. It cannot be undone.", icon=":material/warning:")
        sure = st.checkbox(f"Yes, delete {ds.name} and all of the above", key=f"datasets:sure:{ds.id}")
        if st.button("Delete the dataset", key="datasets:delete", type="primary", disabled=not sure,
                     icon=":material/delete_forever:"):
            ws.datasets.delete(ds.id)
            st.session_state.pop("datasets:dataset", None)
            flash("datasets", f"Deleted {ds.name}: {summary.describe()}.")
            st.rerun()


st.title("Datasets")
st.caption("Browse a dataset page by page; open an item for its full view, metadata, annotations and vectors.")
flash("datasets")

with user_errors():
    ws = workspace()
    ds = dataset_picker(ws, key="datasets:dataset")
    if isinstance(ds, Dataset):
        st.caption(f"{ds.items.count():,} items in {len(ds.items.folders()):,} folder(s)")
        browse, filter_text = draw_controls(ds)
        draw_grid(ds, browse, filter_text)
        draw_delete_dataset(ws, ds)
