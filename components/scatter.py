"""A map of a feature set: the projection settings, the plotly figure (scattergl in 2D,
scatter3d in 3D; above ``store.analysis.large_map_above()`` points in 2D, a density image
drawn on the server) and reading which points a lasso or box selected."""
from __future__ import annotations

import json

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from store.analysis import METRICS, box_polygon, density_image, large_map_above, map_frame, points_in_polygon

METHOD_LABELS = {"umap": "UMAP", "pca": "PCA"}
COLOR_CHOICES = {"dataset": "Dataset", "dir": "Folder", "label": "Label", "kind": "Kind",
                 "metadata": "A metadata field…", "none": "Nothing"}
DISTANCE_CHOICE = {"distance": "Distance to the last search"}
NONE_TEXT = "(none)"
PROJECT_REQUEST = "map:project-request"
SAMPLE_POINTS = 500  # invisible points on a density map: a click picks one (a lasso is answered over all)


def request_projection() -> None:
    """Have the Map page project its set on its next run when it has no map yet (its
    Project button, and "Show on map" from a search)."""
    st.session_state[PROJECT_REQUEST] = True


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
    """The parameters of ``store.analysis.projection.project`` (method, dims and UMAP's own), kept
    while the user visits other pages."""
    keys = [f"{key}:{name}" for name in ("method", "dims", "n_neighbors", "min_dist", "metric")]
    for widget_key in keys:
        remembered(widget_key)
    # The sliders' defaults go into the session state rather than ``value=``: a widget given
    # both a value and a state set by ``remembered`` makes Streamlit log a warning each run.
    st.session_state.setdefault(f"{key}:n_neighbors", 15)
    st.session_state.setdefault(f"{key}:min_dist", 0.1)
    left, mid = st.columns(2)
    method = left.radio("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, horizontal=True,
                        key=f"{key}:method", help="UMAP keeps neighbourhoods; PCA is the quick, linear look.")
    dims = mid.radio("Dimensions", [2, 3], horizontal=True, key=f"{key}:dims",
                     help="Lasso and box selection work in 2D only.")
    params: dict[str, Any] = {"method": method, "dims": dims}
    if method == "umap":
        a, b, c = st.columns(3)
        params["n_neighbors"] = a.slider("n_neighbors", 2, 200, key=f"{key}:n_neighbors",
                                         help="Small: local detail; large: the global shape.")
        params["min_dist"] = b.slider("min_dist", 0.0, 1.0, step=0.01, key=f"{key}:min_dist",
                                      help="How tightly points may pack together.")
        params["metric"] = c.selectbox("Metric", list(METRICS), key=f"{key}:metric")
    remember(*keys)
    return params


@st.cache_resource(max_entries=6, show_spinner="Reading the items on the map…")
def _map_table(_ws, _projection, set_id: str, version: int, params: str, fields: tuple[str, ...],
               catalog_stamp: tuple[int, int]) -> pd.DataFrame:
    return map_frame(_ws, _projection, metadata_fields=fields)


def map_table(ws, projection, fields: Sequence[str] = ()) -> pd.DataFrame:
    """``store.analysis.projection.map_frame`` of a projection, kept across reruns and sessions until
    the catalog changes: a lasso over 100k points must not re-read 100k items. Shared: never
    mutate it (``assign`` a copy instead)."""
    # The key names the scope too: a dataset's map has other points than the whole set's.
    return _map_table(ws, projection, projection.feature_set_id, projection.version,
                      json.dumps([projection.params, projection.details.get("dataset_id")], sort_keys=True),
                      tuple(fields), ws.catalog.change_stamp())


@st.cache_resource(max_entries=4, show_spinner=False)
def _kept_figure(_frame: pd.DataFrame, frame_key: str, color: str | None, ringed: tuple[str, ...],
                 starred: str | None):
    return map_figure(_frame, color, ringed=ringed, starred=starred)


def kept_map_figure(frame: pd.DataFrame, frame_key: str, color: str | None, *, ringed: Sequence[str] = (),
                    starred: str | None = None):
    """``map_figure``, kept across reruns and sessions while ``frame_key`` (a string naming
    everything ``frame`` was made from) stays the same: at 100k points the figure takes
    0.3 s to build, and every lasso reruns the page. Shared: never mutate it."""
    return _kept_figure(frame, frame_key, color, tuple(ringed), starred)


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
    hover; each point carries its row in ``frame`` as ``customdata`` (an integer: at 100k
    points, entity ids would double what the browser receives). ``ringed`` entities (a
    search's results) get a ring, ``starred`` (its query) a star. Built with plotly's
    graph objects directly: plotly.express took seconds at 100k points."""
    import plotly.graph_objects as go

    names = frame["name"].fillna(NONE_TEXT).to_numpy(dtype=object)
    rows = np.arange(len(frame), dtype=np.int32)
    values, continuous = color_column(frame, color)
    label = color or ""
    if values is None:
        groups = [(None, rows)]
    elif continuous:
        numbers = values.to_numpy(dtype=np.float64)
        groups = [("value", rows[~np.isnan(numbers)]), (NONE_TEXT, rows[np.isnan(numbers)])]
    else:
        keys = values.to_numpy(dtype=object)
        order = sorted(set(keys.tolist()), key=lambda v: (v == NONE_TEXT, v))
        groups = [(k, rows[keys == k]) for k in order]
    fig = go.Figure()
    for group, members in groups:
        if len(members) == 0:
            continue
        trace = _points(frame, names, members, str(group) if group is not None else "points")
        if group == "value":
            trace.marker.update(color=numbers[members], colorscale="Viridis", showscale=True,
                                colorbar={"title": {"text": label}})
            trace.hovertemplate = f"%{{hovertext}}<br>{label}: %{{marker.color:.4g}}<extra></extra>"
            trace.name = label
        elif group == NONE_TEXT and continuous:
            trace.marker.color = "#bbbbbb"
        fig.add_trace(trace)
    three_d = "z" in frame
    # A colour bar stands where plotly puts the legend (right of the plot): the legend of a
    # continuous colour (the search's rings, the query) goes in a row above the plot instead.
    legend = {"title": {"text": label}}
    if continuous:
        legend = {"title": {"text": ""}, "orientation": "h", "x": 0, "xanchor": "left", "y": 1.0,
                  "yanchor": "bottom"}
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 50 if continuous else 30, "b": 0}, legend=legend,
                      showlegend=values is not None and not continuous or bool(ringed), **(
                          {} if three_d else {"dragmode": "lasso", "xaxis_title": "x", "yaxis_title": "y"}))
    _mark(fig, frame, names, ringed, "search results", {"symbol": "circle-open", "size": 13, "color": "#d62728",
                                                         "line": {"width": 2}})
    _mark(fig, frame, names, [starred] if starred else [], "query",
          {"symbol": "star", "size": 18, "color": "#ffbf00", "line": {"width": 1, "color": "black"}})
    return fig


def _points(frame: pd.DataFrame, names: np.ndarray, members: np.ndarray, name: str):
    import plotly.graph_objects as go

    common = dict(mode="markers", name=name, customdata=members, hovertext=names[members],
                  hovertemplate="%{hovertext}<extra>%{fullData.name}</extra>")
    if "z" in frame:
        return go.Scatter3d(x=frame["x"].to_numpy()[members], y=frame["y"].to_numpy()[members],
                            z=frame["z"].to_numpy()[members], marker={"size": 3}, **common)
    return go.Scattergl(x=frame["x"].to_numpy()[members], y=frame["y"].to_numpy()[members],
                        marker={"size": 6, "opacity": 0.85}, **common)


def _mark(fig, frame: pd.DataFrame, names: np.ndarray, entity_ids: Sequence[str], name: str, marker: dict) -> None:
    """Draw some points again on top, marked (a selection still reads their rows)."""
    members = np.flatnonzero(frame["entity_id"].isin(set(entity_ids)).to_numpy()).astype(np.int32)
    if len(members) == 0:
        return
    trace = _points(frame, names, members, name)
    if "z" in frame:
        marker = {**marker, "size": marker["size"] // 2,
                  "symbol": "circle-open" if "open" in marker["symbol"] else "diamond"}
    trace.marker = marker
    fig.add_trace(trace)


def selected_entity_ids(event: Mapping[str, Any] | None, frame: pd.DataFrame) -> list[str]:
    """The entity ids of the points a lasso, box or click selected on ``map_figure(frame)``."""
    if not event:
        return []
    selection = event.get("selection") or {}
    positions: list[int] = []
    for point in selection.get("points") or []:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if isinstance(data, (int, float)) and 0 <= int(data) < len(frame):
            positions.append(int(data))
    entity_ids = frame["entity_id"].to_numpy()
    return list(dict.fromkeys(str(entity_ids[i]) for i in positions))


# ---- large maps: a density image drawn on the server, the lasso answered there ------------------
def is_large_map(n: int, dims: int) -> bool:
    """Whether a map of ``n`` points is drawn as a density image: 2D maps above
    ``large_map_above()`` points (the browser's WebGL scatter does not carry them); 3D ones never."""
    return dims == 2 and n > large_map_above()


@st.cache_resource(max_entries=3, show_spinner="Drawing the map…")
def _density_figure(_coords: np.ndarray, _categories: np.ndarray | None, key: str, label: str, height: int):
    return density_figure(_coords, _categories, label=label, height=height)


def kept_density_figure(coords: np.ndarray, categories: np.ndarray | None, key: str, *, label: str = "",
                        height: int = 650):
    """``density_figure``, drawn once per ``key`` (a string naming the projection and the
    colours) and kept across reruns and sessions: a lasso reruns the page. Shared: never mutate it."""
    return _density_figure(coords, categories, key, label, height)


def density_figure(coords: np.ndarray, categories: np.ndarray | None = None, *, label: str = "",
                   height: int = 650):
    """A plotly figure whose plot is ``store.analysis.density_image`` of ``coords`` (coloured by
    ``categories``, one per point), with ``SAMPLE_POINTS`` invisible points over it (their
    ``customdata`` is their row) so that plotly's lasso and box fire; ``large_selection``
    answers them over every point."""
    import plotly.graph_objects as go

    image = density_image(coords, width=1200, height=height, categories=categories)
    (x0, x1), (y0, y1) = image.x_range, image.y_range
    rows = np.random.default_rng(0).choice(len(coords), size=min(SAMPLE_POINTS, len(coords)), replace=False)
    rows = np.sort(rows).astype(np.int32)
    # SVG, not WebGL: no GL context to create for points nobody sees (0.2 to 1.8 s of a draw
    # in a browser without a GPU, CDP profile). The browser styles each SVG point at every
    # draw, hence few: a later 1M draw took 1.2 s with 2,000 points, 0.6 s with 500.
    invisible = {"mode": "markers", "showlegend": False, "hoverinfo": "none",
                 "marker": {"size": 6, "color": "rgba(0,0,0,0)"},
                 "selected": {"marker": {"opacity": 0}}, "unselected": {"marker": {"opacity": 0}}}
    fig = go.Figure(go.Scatter(x=coords[rows, 0], y=coords[rows, 1], customdata=rows, name="sample", **invisible))
    for name, colour, count in image.legend:  # legend entries only: no points of their own
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{name} ({count})",
                                 marker={"size": 10, "color": colour}, hoverinfo="none"))
    fig.add_layout_image(source=image.data_uri(), xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
                         sizing="stretch", layer="below")
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0}, dragmode="lasso",
                      showlegend=bool(image.legend), legend={"title": {"text": label}},
                      xaxis={"range": [x0, x1], "title": "x", "showgrid": False},
                      yaxis={"range": [y0, y1], "title": "y", "showgrid": False},
                      plot_bgcolor="white")
    return fig


def selected_regions(event: Mapping[str, Any] | None) -> list[list[tuple[float, float]]]:
    """The lassos and boxes of a plotly selection event, each as a polygon in data units."""
    selection = (event or {}).get("selection") or {}
    polygons = [list(zip(shape.get("x") or [], shape.get("y") or [])) for shape in selection.get("lasso") or []]
    return polygons + [box_polygon(shape["x"], shape["y"]) for shape in selection.get("box") or []
                       if len(shape.get("x") or []) >= 2 and len(shape.get("y") or []) >= 2]


def large_selection(event: Mapping[str, Any] | None, coords: np.ndarray) -> np.ndarray:
    """The rows of ``coords`` a lasso or box on ``density_figure(coords)`` selected, found here
    over every point (the browser knows only the sample); a click picks its sample point."""
    selection = (event or {}).get("selection") or {}
    polygons = selected_regions(event)
    if polygons:
        mask = np.zeros(len(coords), dtype=bool)
        for polygon in polygons:
            mask |= points_in_polygon(coords, polygon)
        return np.flatnonzero(mask)
    clicked = [point.get("customdata") for point in selection.get("points") or []]
    clicked = [c[0] if isinstance(c, (list, tuple)) and c else c for c in clicked]
    return np.unique(np.array([int(c) for c in clicked if isinstance(c, (int, float)) and 0 <= c < len(coords)],
                              dtype=np.int64))
