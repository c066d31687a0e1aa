"""Pieces of the search form: the item filter editor, the query embedding, the distance scale."""
from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np
import streamlit as st

from store import Dataset, FeatureSet, Filters, Workspace, normalize_dir
from store.search import typed_value

OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"]
HIDDEN = {"Visible only": False, "Hidden only": True, "Both": None}


def _nice_ceiling(x: float) -> float:
    """Round up to two significant digits (a slider end a person can read)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale) * scale


@st.cache_data(max_entries=64, show_spinner=False)
def _ceiling(_ws: Workspace, set_id: str, version: int, normalized: bool) -> float:
    if normalized:
        return 2.0
    fs = _ws.feature_sets.get(feature_set_id=set_id)
    values = _ws.matrix(fs).values
    if not len(values):
        return 1.0
    # No two stored vectors are further apart than twice the longest one.
    return float(_nice_ceiling(2 * float(np.sqrt((values.astype(np.float64) ** 2).sum(axis=1).max()))))


def distance_ceiling(ws: Workspace, fs: FeatureSet) -> float:
    """The right end of the max-distance slider for this set."""
    normalized = bool((fs.model or {}).get("normalize"))
    return _ceiling(ws, fs.id, fs.version, normalized)


@st.cache_data(max_entries=256, show_spinner="Embedding the query…")
def _embed(_ws: Workspace, set_id: str, model_json: str, text: str | None, image: bytes | None) -> list[float]:
    from store.embedders import query_vector

    fs = _ws.feature_sets.get(feature_set_id=set_id)
    return np.asarray(query_vector(_ws, fs, text=text, image_bytes=image), dtype=np.float32).tolist()


def embed_query(ws: Workspace, fs: FeatureSet, *, text: str | None = None, image_bytes: bytes | None = None) -> list[float]:
    """The set's model turns a text or an image into a query vector (cached per model and input)."""
    from components.state import embedder

    model_json = json.dumps(fs.model, sort_keys=True)
    embedder(model_json)  # loads the model once, with a spinner the first time
    return _embed(ws, fs.id, model_json, text, image_bytes)


def item_filter_conditions(datasets: Sequence[Dataset], *, key: str, items: bool = True) -> list[tuple]:
    """The item filters as ``(field, value, operator)`` for ``Filters.add``."""
    conditions: list[tuple] = []
    names = {d.id: d.name for d in datasets}
    cols = st.columns(3 if items else 1)
    ds_id = cols[0].selectbox("Dataset", [None, *names], key=f"{key}:dataset",
                              format_func=lambda i: "Any dataset" if i is None else names[i])
    if ds_id is not None:
        conditions.append(("datasetId", ds_id, None))
    if items:
        folder = cols[1].text_input("Folder", key=f"{key}:folder", placeholder="e.g. /digits (exact)")
        if folder.strip():
            conditions.append(("dir", normalize_dir(folder.strip()), None))
        hidden = cols[2].selectbox("Hidden items", list(HIDDEN), key=f"{key}:hidden")
        if HIDDEN[hidden] is not None:
            conditions.append(("hidden", HIDDEN[hidden], None))
        field_col, op_col, value_col = st.columns([2, 1, 2])
        field = field_col.text_input("Metadata field", key=f"{key}:meta-field", placeholder="e.g. user.digit")
        op = op_col.selectbox("Operator", OPERATORS, key=f"{key}:meta-op")
        value = value_col.text_input("Value", key=f"{key}:meta-value", placeholder='e.g. 3, "cat", true, [1, 2]')
        if field.strip():
            name = field.strip()
            name = name if name.startswith("metadata.") else f"metadata.{name}"
            conditions.append((name, typed_value(value.strip()), op.lstrip("$")))
    return conditions


@st.cache_data(max_entries=32, show_spinner=False)
def _profile(_ws: Workspace, query_json: str, dataset_id: str | None, stamp: tuple) -> np.ndarray:
    return _ws.distance_profile(json.loads(query_json), dataset_id=dataset_id)


def query_distances(ws: Workspace, filters: Filters, dataset_id: str | None = None) -> np.ndarray:
    """The distance to the query of every vector the search's item filters (and scope) let
    through, its k and distance limit aside (cached until the catalog changes)."""
    doc = filters.prepare()
    euclid = doc["join"]["filter"]["value"]["$euclid"]
    euclid.pop("$euclidFilter", None)  # the profile is the same whatever the limit: one cache entry
    doc["pageSize"] = 1
    return _profile(ws, json.dumps(doc), dataset_id, ws.catalog.change_stamp())


def _vline(x: float, color: str, text: str, side: str, dash: str = "solid") -> tuple[dict, dict]:
    """A vertical line over the whole plot and its label at the top, as add_vline draws them
    (built as plain dicts: add_vline cost ~15 ms of each rerun)."""
    line = {"type": "line", "x0": x, "x1": x, "xref": "x", "y0": 0, "y1": 1, "yref": "y domain",
            "line": {"color": color, "dash": dash}}
    label = {"text": text, "x": x, "xref": "x", "y": 1, "yref": "y domain", "yanchor": "top",
             "xanchor": "right" if side == "left" else "left", "showarrow": False}
    return line, label


def distance_histogram(distances: np.ndarray, *, kth: float | None, max_distance: float | None, bins: int = 60):
    """How the set lies around the query: a histogram of distances (binned here, so 100k
    vectors cost a few bars, not 100k numbers in the browser), with the k-th result and the
    distance limit drawn as lines. Built in one go, with margins that hold the axes' labels
    (plotly's automargin lays the chart out twice in the browser, on every rerun)."""
    import plotly.graph_objects as go

    counts, edges = np.histogram(distances, bins=bins) if len(distances) else (np.zeros(0, int), np.zeros(1))
    marks = []
    if kth is not None:
        marks.append(_vline(kth, "#d62728", "k-th result", "left"))
    if max_distance is not None:
        marks.append(_vline(max_distance, "#2ca02c", "max distance", "right", dash="dash"))
    xaxis: dict = {"title": {"text": "distance to the query"}, "automargin": False}
    if max_distance is not None and len(distances):  # the cut stays in view, even left of every bar
        xaxis["range"] = [min(0.0, float(edges[0])), max(float(edges[-1]), max_distance) * 1.02]
    bar = go.Bar(x=((edges[:-1] + edges[1:]) / 2).tolist(), y=counts.tolist(), width=np.diff(edges).tolist(),
                 marker_color="#7f9cc9", hovertemplate="distance %{x:.3f}: %{y} vectors<extra></extra>")
    layout = go.Layout(height=220, margin={"l": 52, "r": 0, "t": 30, "b": 42}, bargap=0, xaxis=xaxis,
                       yaxis={"title": {"text": "vectors"}, "automargin": False},
                       shapes=[line for line, _ in marks], annotations=[label for _, label in marks])
    return go.Figure(bar, layout)
