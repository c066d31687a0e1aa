"""Compare sets: two feature sets over the same items (say, two models). How far each item's
top-k neighbours agree (mean and histogram), the items they disagree on most with both
neighbour lists, label agreement at k, and side-by-side maps where a lasso in one rings the
same items in both."""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from components.gallery import item_gallery
from components.pickers import feature_set_picker
from components.scope import Scope, dataset_scope
from components.scatter import COLOR_CHOICES, map_figure, map_table, projection_controls, selected_entity_ids
from components.state import user_errors, workspace
from store import FeatureSet, Item, Workspace
from store.analysis import STAGE_LABELS, Comparison, cached_projection, compare_sets, project

PICKED = "compare:picked"  # entity ids of the last lasso or box, on either map
PENDING = "compare:pending"  # (side, selection event) from a map's callback, read on the next run
MAP_COLORS = {k: v for k, v in COLOR_CHOICES.items() if k != "metadata"}
RING = {"symbol": "circle-open", "size": 13, "color": "#d62728", "line": {"width": 2}}
SELECTION_SHOWN = 30
TOP_MAX = 50  # most disagreeing items the page can list


def items_of(ws: Workspace, cmp: Comparison, entity_ids: list[str]) -> list[Item]:
    """The items of some entities, in order, once each (an annotation's: its item)."""
    if cmp.entity_type == "annotation":
        item_ids = list(dict.fromkeys(ws.get_annotation(e).item_id for e in entity_ids))
    else:
        item_ids = list(entity_ids)
    found = ws.items_by_ids(item_ids)
    return [found[i] for i in item_ids if i in found]


def on_selection(side: str) -> None:
    """A map's selection callback: keep the event; the page reads its points with that map's table."""
    st.session_state[PENDING] = (side, st.session_state.get(f"compare:map-{side}"))


def histogram_figure(cmp: Comparison) -> Any:
    import plotly.graph_objects as go

    counts = cmp.histogram()
    fig = go.Figure(go.Bar(x=[f"{j}/{cmp.k}" for j in range(cmp.k + 1)], y=counts,
                           hovertemplate="%{y} items share %{x} neighbours<extra></extra>"))
    fig.update_layout(height=260, margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      xaxis_title=f"neighbours shared (of {cmp.k})", yaxis_title="items")
    return fig


def ring(fig: Any, frame: pd.DataFrame, entity_ids: list[str]) -> None:
    """Ring the picked points on a map, drawn on top; like every point of ``map_figure`` each
    carries its row in ``frame`` as customdata, so a lasso over them reads them too."""
    import plotly.graph_objects as go

    rows = np.flatnonzero(frame["entity_id"].isin(set(entity_ids)).to_numpy()).astype(np.int32)
    if len(rows) and "z" not in frame:
        fig.add_trace(go.Scattergl(x=frame["x"].to_numpy()[rows], y=frame["y"].to_numpy()[rows], mode="markers",
                                   name="selected", marker=RING, customdata=rows,
                                   hovertext=frame["name"].fillna("").to_numpy(dtype=object)[rows],
                                   hovertemplate="%{hovertext} (selected)<extra></extra>"))


def run_comparison(ws: Workspace, a: FeatureSet, b: FeatureSet, k: int, label_field: str | None,
                   scope: Scope, wanted: tuple) -> None:
    """Compare (within the scope) and keep the result in the session, under what it was made from."""
    with st.spinner("Finding the neighbours in both sets…"):
        result = compare_sets(ws, a, b, k=k, label_field=label_field, dataset_id=scope.dataset_id)
        result.most_disagreeing(TOP_MAX)  # measures what the list below needs, so the vectors can go
        result.spaces = None
        st.session_state["compare:result"] = (wanted, result)
    st.session_state.pop(PICKED, None)


def draw_overview(cmp: Comparison, k: int) -> None:
    """The mean overlap, the items counted, label agreement, and the overlap histogram."""
    agreement = cmp.label_agreement()
    cols = st.columns(4)
    cols[0].metric("Mean overlap", f"{cmp.mean_overlap:.3f}",
                   help=f"The share of each item's {k} nearest neighbours that the two sets have in common")
    cols[1].metric("Items in both", len(cmp.entity_ids),
                   help=f"{cmp.only_a} only in {cmp.a_name}, {cmp.only_b} only in {cmp.b_name}")
    if agreement:
        cols[2].metric(f"Label agreement, {cmp.a_name}", f"{agreement['a']:.3f}",
                       help=f"Over {agreement['labelled']} labelled items: the share of their {k} "
                            "neighbours with the same label")
        cols[3].metric(f"Label agreement, {cmp.b_name}", f"{agreement['b']:.3f}")
        better = cmp.a_name if agreement["a"] > agreement["b"] else cmp.b_name
        if agreement["a"] != agreement["b"]:
            st.caption(f"**{better}** puts items next to items of the same label more often.")
    else:
        cols[2].caption("No item carries a label: give a label field, or annotate the items.")
    st.plotly_chart(histogram_figure(cmp), key="compare:histogram")


def draw_disagreements(ws: Workspace, cmp: Comparison, k: int) -> None:
    """The items whose neighbours differ most, each with its neighbours in both sets."""
    st.subheader("Where they disagree most")
    top = int(st.number_input("Items to show", 1, TOP_MAX, 5, key="compare:top"))
    for n, row in enumerate(cmp.most_disagreeing(top).tolist()):
        entity = str(cmp.entity_ids[row])
        with st.container(border=True, key=f"compare:dis:{n}"):
            item = items_of(ws, cmp, [entity])
            title = item[0].filename if item else entity
            st.markdown(f"**{title}** · {round(cmp.overlap[row] * k)} of {k} neighbours shared")
            for which, name in (("a", cmp.a_name), ("b", cmp.b_name)):
                st.caption(f"Neighbours in {name}")
                item_gallery(items_of(ws, cmp, cmp.neighbour_ids(row, which)), columns=min(k, 10),
                             key=f"compare:dis:{n}:{which}")


def both_projections(ws: Workspace, a: FeatureSet, b: FeatureSet,
                     params: dict[str, Any]) -> dict[str, Any]:
    """Each set's projection by id: the cached ones, the missing ones made on a button press (else None)."""
    projections = {fs.id: cached_projection(ws, fs, **params) for fs in (a, b)}
    if all(p is not None for p in projections.values()):
        return projections
    missing = [fs.name for fs in (a, b) if projections[fs.id] is None]
    st.info(f"No map of {' and '.join(missing)} with these settings yet.")
    if st.button("Project", key="compare:project", icon=":material/scatter_plot:"):
        bar = st.progress(0.0, text="starting…")
        for fs in (a, b):
            if projections[fs.id] is None:
                projections[fs.id] = project(ws, fs, **params, progress=lambda stage, f: bar.progress(
                    min(max(float(f), 0.0), 1.0), text=f"{fs.name}: {STAGE_LABELS.get(stage, stage)}"))
        bar.empty()
    return projections


def draw_maps(ws: Workspace, cmp: Comparison, a: FeatureSet, b: FeatureSet, scope: Scope) -> None:
    """Both maps (of the scope's points) side by side; a lasso or box on either rings the
    same items on both."""
    st.subheader("Maps")
    st.caption("Draw a lasso or a box on either map: the same items are ringed on both.")
    params = {**projection_controls(key="compare"), "dataset_id": scope.dataset_id}
    projections = both_projections(ws, a, b, params)
    if any(p is None for p in projections.values()):
        return
    color = st.selectbox("Colour by", list(MAP_COLORS), format_func=MAP_COLORS.get,
                         index=list(MAP_COLORS).index("label"), key="compare:color")
    frames = {side: map_table(ws, projections[fs.id]) for side, fs in (("a", a), ("b", b))}
    pending = st.session_state.pop(PENDING, None)
    if pending is not None:
        st.session_state[PICKED] = selected_entity_ids(pending[1], frames[pending[0]])
    picked = st.session_state.get(PICKED) or []
    columns = st.columns(2)
    for column, fs, side in zip(columns, (a, b), ("a", "b")):
        fig = map_figure(frames[side], None if color == "none" else color, height=480)
        ring(fig, frames[side], picked)
        column.markdown(f"**{fs.name}**")
        column.plotly_chart(fig, on_select=partial(on_selection, side),
                            selection_mode=("lasso", "box", "points"), key=f"compare:map-{side}")
    if picked:
        st.markdown(f"**{len(picked)} selected**, ringed on both maps.")
        if st.button("Clear the selection", key="compare:clear"):
            st.session_state.pop(PICKED, None)
            st.rerun()
        shown = items_of(ws, cmp, picked[:SELECTION_SHOWN])
        if scope.many:
            st.caption(f"From {scope.sources(i.dataset_id for i in shown)}.")
        item_gallery(shown, columns=6, key="compare:selection", datasets=scope.captions)


st.title("Compare sets")
st.caption("Two feature sets over the same items, say from two models: do they see the same neighbours? "
           "Only items with a vector in both sets count; neighbours are exact (Euclidean).")

with user_errors():
    ws = workspace()
    sets = [fs for fs in ws.feature_sets.list() if fs.count() > 0]
    if len(sets) < 2:
        st.info("Comparing needs two feature sets with vectors: embed a dataset with two models on the "
                "**Embed** page (or import vectors).")
    else:
        a = feature_set_picker(ws, "Set A", key="compare:a", sets=sets)
        b = feature_set_picker(ws, "Set B", key="compare:b", sets=[fs for fs in sets if fs.id != a.id])
        scope = dataset_scope(ws, a, key="compare:scope", label="Compare the items of")
        left, right = st.columns(2)
        k = int(left.number_input("Neighbours per item (k)", 1, 100, 10, key="compare:k"))
        label_field = right.text_input("Label field (optional)", key="compare:label-field",
                                       placeholder="e.g. user.class (default: the annotation labels)").strip() or None
        # a stored result counts only for these
        wanted = (a.id, a.version, b.id, b.version, k, label_field, scope.dataset_id)
        if st.button("Compare", key="compare:run", type="primary", icon=":material/compare_arrows:"):
            run_comparison(ws, a, b, k, label_field, scope, wanted)
        stored = st.session_state.get("compare:result")
        cmp = stored[1] if stored and stored[0] == wanted else None
        if cmp is None:
            st.info("Pick two sets and press **Compare**.")
        else:
            draw_overview(cmp, k)
            draw_disagreements(ws, cmp, k)
            draw_maps(ws, cmp, a, b, scope)
