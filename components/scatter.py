"""A map of a feature set: the projection settings, the plotly figure (scattergl in 2D,
scatter3d in 3D) and reading which points a lasso or box selected."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import streamlit as st

from store.projection import METRICS

METHOD_LABELS = {"umap": "UMAP", "pca": "PCA"}
COLOR_CHOICES = {"dataset": "Dataset", "dir": "Folder", "label": "Label", "kind": "Kind",
                 "metadata": "A metadata field…", "none": "Nothing"}
DISTANCE_CHOICE = {"distance": "Distance to the last search"}
NONE_TEXT = "(none)"


def remembered(widget_key: str) -> str:
    """``widget_key``, given back its last value when the user comes back to the page:
    Streamlit forgets a widget's state on a page that was not shown, so the value is also
    kept under a key of its own."""
    shadow = f"_kept:{widget_key}"
    if widget_key not in st.session_state and shadow in st.session_state:
        st.session_state[widget_key] = st.session_state[shadow]
    return widget_key


def remember(*widget_keys: str) -> None:
    for widget_key in widget_keys:
        if widget_key in st.session_state:
            st.session_state[f"_kept:{widget_key}"] = st.session_state[widget_key]


def projection_controls(*, key: str) -> dict[str, Any]:
    """The parameters of ``store.projection.project`` (method, dims and UMAP's own), kept
    while the user visits other pages."""
    keys = [f"{key}:{name}" for name in ("method", "dims", "n_neighbors", "min_dist", "metric")]
    for widget_key in keys:
        remembered(widget_key)
    left, mid = st.columns(2)
    method = left.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, horizontal=True,
                        key=f"{key}:method", help="UMAP keeps neighbourhoods; PCA is the quick, linear look.")
    dims = mid.radio("Dimensions", [2, 3], horizontal=True, key=f"{key}:dims",
                     help="Lasso and box selection work in 2D only.")
    params: dict[str, Any] = {"method": method, "dims": dims}
    if method == "umap":
        a, b, c = st.columns(3)
        params["n_neighbors"] = a.slider("n_neighbors", 2, 200, 15, key=f"{key}:n_neighbors",
                                         help="Small: local detail; large: the global shape.")
        params["min_dist"] = b.slider("min_dist", 0.0, 1.0, 0.1, step=0.01, key=f"{key}:min_dist",
                                      help="How tightly points may pack together.")
        params["metric"] = c.selectbox("Metric", list(METRICS), key=f"{key}:metric")
    remember(*keys)
    return params


def color_column(frame: pd.DataFrame, column: str | None) -> tuple[pd.Series | None, bool]:
    """The values to colour by and whether they are continuous (numbers) or categories."""
    if column is None or column not in frame:
        return None, False
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values, True
    numeric = pd.to_numeric(values, errors="coerce")
    if values.notna().any() and numeric.notna().sum() == values.notna().sum():
        return numeric, True
    return values.map(lambda v: NONE_TEXT if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)), False


def map_figure(frame: pd.DataFrame, color: str | None = None, *, height: int = 650,
               ringed: Sequence[str] = (), starred: str | None = None):
    """Points at x, y (z), coloured by ``color`` (a column of ``frame``), the item name on
    hover; each point carries its entity id as ``customdata``. ``ringed`` entities (a
    search's results) get a ring, ``starred`` (its query) a star."""
    import plotly.express as px

    data = frame.copy()
    data["name"] = data["name"].fillna(NONE_TEXT)
    values, continuous = color_column(data, color)
    if values is not None:
        data["_color"] = values
    common = dict(hover_name="name", custom_data=["entity_id"], height=height,
                  color="_color" if values is not None else None,
                  labels={"_color": color or ""},
                  hover_data={axis: False for axis in ("x", "y", "z") if axis in data}
                  | ({"_color": True} if values is not None else {}))
    if continuous:  # every shade stays visible on white
        common["color_continuous_scale"] = "Viridis"
    if values is not None and not continuous:
        common["category_orders"] = {"_color": sorted(data["_color"].unique(), key=lambda v: (v == NONE_TEXT, v))}
    if "z" in data:
        fig = px.scatter_3d(data, x="x", y="y", z="z", **common)
        fig.update_traces(marker={"size": 3})
    else:
        fig = px.scatter(data, x="x", y="y", render_mode="webgl", **common)
        fig.update_traces(marker={"size": 6, "opacity": 0.85})
        fig.update_layout(dragmode="lasso")
    fig.update_layout(margin={"l": 0, "r": 0, "t": 30, "b": 0}, legend_title_text=color or "")
    _mark(fig, data, ringed, "search results", {"symbol": "circle-open", "size": 13, "color": "#d62728",
                                                "line": {"width": 2}})
    _mark(fig, data, [starred] if starred else [], "query", {"symbol": "star", "size": 18, "color": "#ffbf00",
                                                              "line": {"width": 1, "color": "black"}})
    return fig


def _mark(fig, data: pd.DataFrame, entity_ids: Sequence[str], name: str, marker: dict) -> None:
    """Draw some points again on top, marked (a selection still reads their entity ids)."""
    import plotly.graph_objects as go

    rows = data[data["entity_id"].isin(set(entity_ids))]
    if rows.empty:
        return
    common = dict(mode="markers", name=name, marker=marker, customdata=rows[["entity_id"]].to_numpy(),
                  text=rows["name"], hovertemplate=f"%{{text}} ({name})<extra></extra>")
    if "z" in data:
        marker = {**marker, "size": marker["size"] // 2, "symbol": "circle-open" if "open" in marker["symbol"] else "diamond"}
        fig.add_trace(go.Scatter3d(x=rows["x"], y=rows["y"], z=rows["z"], **{**common, "marker": marker}))
    else:
        fig.add_trace(go.Scattergl(x=rows["x"], y=rows["y"], **common))


def selected_entity_ids(event: Mapping[str, Any] | None) -> list[str]:
    """The entity ids of the points a lasso, box or click selected (each point's customdata)."""
    if not event:
        return []
    selection = event.get("selection") or {}
    ids: list[str] = []
    for point in selection.get("points") or []:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if data is not None:
            ids.append(str(data))
    return list(dict.fromkeys(ids))
