"""Chroma collections: open a Chroma you already have (a folder or a server URL), read-only;
list its collections, look at one's ids, documents and metadata, search it by a record's id,
map it, find its near-duplicates, and import it into a feature set."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

from components.jobs import job_panel, start_job
from components.results import results_table
from components.scatter import map_figure, projection_controls, selected_entity_ids
from components.state import user_errors, workspace
from store import InvalidInput, Workspace
from store.analysis import STAGE_LABELS, suggest_threshold
from store.io import ChromaSource, LoadedCollection, import_collection, open_source, source_signature

SHOWN_ROWS = 1000  # the records table shows this many; search and the map cover all
SHOWN_GROUPS = 100


def distance_histogram(distances: np.ndarray, threshold: float) -> Any:
    """Nearest-neighbour distances, with the threshold drawn on them: where duplicates end."""
    import plotly.express as px

    fig = px.histogram(x=distances, nbins=60, height=220, labels={"x": "distance to the nearest other record"})
    fig.add_vline(x=threshold, line_color="#d62728", line_dash="dash")
    fig.update_layout(margin={"l": 0, "r": 0, "t": 10, "b": 0}, yaxis_title="records", bargap=0.05)
    return fig


def _close(source: ChromaSource) -> None:
    source.close()


@st.cache_resource(max_entries=2, show_spinner="Opening the Chroma (a folder is copied first)…", on_release=_close)
def _source(location: str, signature: str) -> ChromaSource:
    """One open Chroma per server process; ``signature`` changes when a folder's files do."""
    return open_source(location)


@st.cache_data(ttl=300, show_spinner=False)
def _collections(location: str, signature: str) -> list[dict]:
    return [c.to_json() for c in _source(location, signature).collections()]


@st.cache_resource(max_entries=4, ttl=3600, show_spinner="Loading the collection…")
def _loaded(location: str, signature: str, name: str) -> LoadedCollection:
    return _source(location, signature).load(name)


def _reload() -> None:
    for cached in (_source, _collections, _loaded):
        cached.clear()


def _describe(info: dict) -> str:
    return f"{info['name']} · {info['count']} records · dimension {info['dimension'] or '-'}"


def draw_source() -> tuple[str, str | None, list[dict]]:
    """The Chroma to open and its collections: (location, signature, collection infos)."""
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    location = left.text_input("Chroma folder or server URL", key="collections:location",
                               placeholder="/path/to/chroma  or  http://127.0.0.1:8000").strip()
    right.button("Reload", key="collections:reload", icon=":material/refresh:", on_click=_reload,
                 help="Read the Chroma again (a server's changes show only after this).")
    if not location:
        st.info("Type the folder a `chromadb.PersistentClient(path=...)` wrote, or a `chroma run` server's URL.")
        return location, None, []
    signature = source_signature(location)
    infos = _collections(location, signature)
    if not infos:
        st.info("This Chroma holds no collections.")
    else:
        st.dataframe([{**i, "metadata": json.dumps(i["metadata"])} for i in infos], hide_index=True,
                     key="collections:list", column_order=["name", "count", "dimension", "metadata"])
    return location, signature, infos


def pick_collection(location: str, signature: str | None, infos: list[dict]) -> tuple[str | None, LoadedCollection | None]:
    """The chosen collection's name, and the collection loaded when it holds records."""
    if not infos:
        return None, None
    by_name = {i["name"]: i for i in infos}
    name = st.selectbox("Collection", list(by_name), key="collections:collection",
                        format_func=lambda n: _describe(by_name[n]))
    if name is None:
        return None, None
    if by_name[name]["count"] == 0:
        st.info(f"**{name}** holds no records.")
        return name, None
    return name, _loaded(location, signature, name)


def draw_records(col: LoadedCollection) -> None:
    st.subheader("Records")
    shown = range(min(len(col), SHOWN_ROWS))
    st.dataframe(col.table(shown), hide_index=True, key="collections:records", width="stretch")
    if len(col) > SHOWN_ROWS:
        st.caption(f"The first {SHOWN_ROWS} of {len(col)} records; search and the map cover them all.")


def draw_search(col: LoadedCollection, name: str) -> None:
    st.subheader("Search by a record's id")
    query = st.text_input("Record id", key="collections:query", placeholder=f"e.g. {col.ids[0]}").strip()
    a, b, c = st.columns(3)
    k = a.slider("k (how many neighbours)", 1, 100, 10, key="collections:k")
    limit = b.checkbox("Only within a distance", key="collections:limit")
    max_distance = c.number_input("Max distance", min_value=0.0, value=1.0, step=0.1, format="%.4f",
                                  key="collections:maxd", disabled=not limit)
    if query:
        hits = col.search(query, k=k, max_distance=float(max_distance) if limit else None)
        st.markdown(f"**{len(hits)} result{'s' if len(hits) != 1 else ''}** (true Euclidean distance, exact)")
        results_table(col.hits_table(hits), key="collections:results", file_name=f"{name}-search.csv")


def draw_map(ws: Workspace, col: LoadedCollection) -> None:
    """The collection projected (on a button press when not cached); a lasso lists its records."""
    st.subheader("Map")
    params = projection_controls(key="collections")
    coords = col.cached_projection(**params)
    if coords is None and st.button("Project", key="collections:project", type="primary",
                                    icon=":material/scatter_plot:"):
        bar = st.progress(0.0, text="starting…")
        coords = col.project(**params, ws=ws, progress=lambda stage, fraction: bar.progress(
            min(max(float(fraction), 0.0), 1.0), text=STAGE_LABELS.get(stage, stage)))
        bar.empty()
    if coords is None:
        return
    frame = col.map_frame(coords)
    fields = [f for f in frame.columns if f not in ("entity_id", "x", "y", "z", "name", "document")]
    color = st.selectbox("Colour by", [None, *fields], key="collections:color",
                         format_func=lambda f: "Nothing" if f is None else f)
    event = st.plotly_chart(map_figure(frame, color), on_select="rerun",
                            selection_mode=("lasso", "box", "points"), key="collections:chart")
    chosen = selected_entity_ids(event, frame)
    if chosen:
        st.markdown(f"**{len(chosen)} selected**")
        st.dataframe(col.table([col.row(i) for i in chosen]), hide_index=True, key="collections:selected")
    elif params["dims"] == 2:
        st.caption("Drag on the map to draw a lasso around records.")


def draw_duplicates(col: LoadedCollection, name: str) -> None:
    st.subheader("Near-duplicates")
    nn = col.nearest_neighbor_distances()
    ceiling = float(nn.max()) or 1.0
    # Keyed by the collection: each starts at its own suggested threshold.
    threshold = st.slider("Max distance between near-duplicates", 0.0, ceiling,
                          min(suggest_threshold(nn), ceiling), step=ceiling / 200, format="%.4f",
                          key=f"collections:dup-threshold:{name}",
                          help="Records this close to another are linked; linked records form a group.")
    st.plotly_chart(distance_histogram(nn, threshold), key="collections:nn-histogram")
    groups = col.near_duplicates(threshold)
    st.markdown(f"**{len(groups)} group{'s' if len(groups) != 1 else ''}** of near-duplicates, "
                f"{sum(len(g) for g in groups)} records")
    if groups:
        rows = [{"group": n, "size": len(g), "id": rid, "document": col.documents[col.row(rid)]}
                for n, g in enumerate(groups[:SHOWN_GROUPS], 1) for rid in g]
        st.dataframe(rows, hide_index=True, key="collections:duplicates", width="stretch")


def draw_import(ws: Workspace, col: LoadedCollection, name: str) -> None:
    """Import the collection into a dataset and a feature set, as a background job."""
    st.subheader("Import into a feature set")
    st.caption("One item per record (its document as a .txt, else its id and metadata as a .json), its "
               "embedding as the item's vector. Running it again adds only what is missing.")
    a, b = st.columns(2)
    dataset_name = a.text_input("Dataset (created when missing)", key="collections:dataset",
                                placeholder=name).strip() or name
    set_name = b.text_input("Feature set (created when missing)", key="collections:set",
                            placeholder=f"{name}-chroma").strip() or f"{name}-chroma"
    if st.button("Import", key="collections:import", icon=":material/download:", type="primary"):
        if not dataset_name or not set_name:
            raise InvalidInput("name the dataset and the feature set")
        start_job("collections:import", f"Importing {name} into {set_name}",
                  lambda progress, cancel, c=col, d=dataset_name, s=set_name:
                  import_collection(ws, c, d, s, progress=progress, cancel=cancel))
    job_panel("collections:import", summary=lambda result: result.summary())


st.title("Chroma collections")
st.caption("Look inside a Chroma you already have, read-only: a folder (opened from a copy, so it is never "
           "written) or a server. Search it, map it, find near-duplicates, or import it into a feature set.")

with user_errors():
    ws = workspace()
    location, signature, infos = draw_source()
    name, col = pick_collection(location, signature, infos)
    if col is not None:
        st.caption(f"{len(col)} records · dimension {col.dimension}")
        draw_records(col)
        draw_search(col, name)
        draw_map(ws, col)
        draw_duplicates(col, name)
        draw_import(ws, col, name)
