"""Map: a feature set projected to 2D or 3D (UMAP or PCA, cached on disk), coloured by
dataset, folder, label, kind, a metadata field or the distance to the last search (whose
results are ringed); a lasso or box selection shows its items, and searches from them. A 2D
map of more than ``large_map_above()`` points is a density image drawn on the server, its
lasso answered there over every point; smaller maps and 3D ones are plotly scatters."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from components.gallery import item_gallery
from components.pickers import feature_set_picker
from components.scope import Scope, dataset_scope
from components.selection import selection_actions
from components.scatter import (COLOR_CHOICES, DISTANCE_CHOICE, PROJECT_REQUEST, color_column, is_large_map,
                                kept_density_figure, kept_map_figure, large_selection, map_table, projection_controls,
                                remember, remembered, request_projection, selected_entity_ids,
                                selected_regions)
from components.state import user_errors, workspace
from store import FeatureSet, Workspace
from store.analysis import STAGE_LABELS, cached_projection, outlier_scores, point_table, project

GALLERY_LIMIT = 60
OUTLIER_K = 5
OUTLIER_COLUMN = f"distance to the {OUTLIER_K}th neighbour"


@st.cache_data(max_entries=8, show_spinner="Measuring how far each point is from its neighbours…")
def outlier_scores_of(_ws: Workspace, set_id: str, version: int, dataset_id: str | None) -> dict[str, float]:
    return outlier_scores(_ws, set_id, OUTLIER_K, dataset_id=dataset_id)


def search_from_here(query: str | list[float], set_id: str) -> None:
    """Open Search with the selection's query: one point's feature id, or several points' mean."""
    st.session_state["search:set"] = set_id
    st.session_state["search:mode"] = "Vector or feature id"
    st.session_state["search:vector"] = query if isinstance(query, str) else json.dumps(query)
    st.session_state.pop("search:custom", None)
    st.switch_page("app_pages/search.py")


def map_projection(ws: Workspace, fs: FeatureSet, params: dict[str, Any], scope: Scope) -> Any:
    """The cached projection (of the scope's points); else one made now when asked (the
    Project button, "Show on map") or when it is instant (PCA); else None, with the button."""
    projection = cached_projection(ws, fs, **params, dataset_id=scope.dataset_id)
    if projection is not None:
        st.session_state.pop(PROJECT_REQUEST, None)
        return projection
    if st.session_state.pop(PROJECT_REQUEST, False) or params["method"] == "pca":
        bar = st.progress(0.0, text="starting…")
        projection = project(ws, fs, **params, dataset_id=scope.dataset_id,
                             progress=lambda stage, fraction: bar.progress(
            min(max(float(fraction), 0.0), 1.0), text=STAGE_LABELS.get(stage, stage)))
        bar.empty()
        return projection
    count = fs.count() if scope.dataset_id is None else scope.counts[scope.dataset_id]
    where = f" in {scope.label}" if scope.dataset_id is not None else ""
    st.info(f"No map of **{fs.name}**{where} with these settings yet ({count} vectors): **Project** computes it "
            "(UMAP takes a while; PCA draws at once).")
    # A callback: the run it starts projects before drawing, so this banner and button are gone.
    st.button("Project", key="map:project", type="primary", icon=":material/scatter_plot:", on_click=request_projection)
    return None


def last_search(fs: FeatureSet) -> dict | None:
    """The last search on this set (Search keeps it in the session), or None."""
    last = st.session_state.get("search:last")
    return last if last and last.get("set_id") == fs.id else None


def draw_color_choice(last: dict | None) -> tuple[str, str | None, tuple[str, ...]]:
    """What to colour by: (the choice, the frame column to colour by, metadata fields to read)."""
    choices = {**COLOR_CHOICES, OUTLIER_COLUMN: "Outlier score (distance to the 5th neighbour)",
               **(DISTANCE_CHOICE if last else {})}
    if st.session_state.get(remembered("map:color")) not in choices:  # e.g. distance, with no search now
        st.session_state.pop("map:color", None)
    left, right = st.columns([1, 2])
    color_by = left.selectbox("Colour by", list(choices), format_func=choices.get, key="map:color")
    remember("map:color")
    fields: tuple[str, ...] = ()
    column = None if color_by == "none" else color_by
    if color_by == "metadata":
        field = right.text_input("Metadata field", key="map:field", placeholder="e.g. user.split").strip()
        fields = (field,) if field else ()
        column = field or None
    if last:
        right.caption(f"Ringed: the {len(last['results'])} results of the last search on this set"
                      + (" (the star is its query)." if last.get("query_entity") else "."))
    return color_by, column, fields


def map_frame_for(ws: Workspace, fs: FeatureSet, projection: Any, color_by: str, fields: tuple[str, ...],
                  last: dict | None) -> pd.DataFrame:
    """The map's table, with the distance or outlier column when the colour asks for it."""
    distances = None
    if color_by == "distance":
        ids, values = ws.distances_to(fs, last["query"])
        distances = dict(zip(ids.tolist(), values.tolist()))
    frame = map_table(ws, projection, fields)
    if distances is not None:
        frame = frame.assign(distance=frame["entity_id"].map(distances).astype(float))
    if color_by == OUTLIER_COLUMN:
        scores = outlier_scores_of(ws, fs.id, fs.version, projection.details.get("dataset_id"))
        frame = frame.assign(**{OUTLIER_COLUMN: frame["entity_id"].map(scores).astype(float)})
    return frame


def item_ids_of(rows: pd.DataFrame) -> list[str]:
    """The items of these map rows, once each, in order (an annotation set has many rows per item)."""
    return [i for i in dict.fromkeys(rows["item_id"]) if i]


def draw_selection(ws: Workspace, fs: FeatureSet, chosen: list[str], item_ids: list[str], scope: Scope,
                   *, of_first: int | None = None) -> None:
    """The lassoed points (``chosen``, entity ids): save or export them, search from them, and
    their items (``item_ids``; of the first ``of_first`` points only, on a large map)."""
    st.subheader(f"{len(chosen)} selected")
    here, save = st.columns([1, 3])
    with save:
        selection_actions(ws, chosen, key="map:selected", default_name=f"{fs.name}-selection")
    if here.button("Search from here", key="map:search-here", icon=":material/travel_explore:",
                   help="Search this set for the nearest neighbours of the selection "
                        "(one point: its vector; several: their mean)"):
        search_from_here(ws.query_for_entities(fs, chosen), fs.id)
    shown = item_ids[:GALLERY_LIMIT]
    if of_first is not None and of_first < len(chosen):
        st.caption(f"Showing the items of the first {of_first} of the {len(chosen)} selected points.")
    elif len(item_ids) > len(shown):
        st.caption(f"Showing the first {len(shown)} of {len(item_ids)} items.")
    items = ws.items_by_ids(shown)
    item_gallery([items[i] for i in shown if i in items], columns=6, key="map:selection", datasets=scope.captions)


def large_map_colours(ws: Workspace, projection: Any, color_by: str, column: str | None, fields: tuple[str, ...],
                      scope: Scope) -> Any:
    """The categories a density map is coloured by (one per point), or None: uncoloured when
    there is nothing to tell apart (one dataset), numbers (distance, outliers) are not drawn."""
    if column is None or (color_by == "dataset" and not scope.many):
        return None
    if color_by in ("distance", OUTLIER_COLUMN):
        st.caption("Numeric colours are not drawn on a map this large; categories (dataset, folder, label, …) are.")
        return None
    frame = map_table(ws, projection, fields)
    values, continuous = color_column(frame, column if column in frame else f"metadata.{column}")
    if continuous:
        st.caption(f"**{column}** holds numbers: a map this large is coloured by categories only.")
        return None
    return None if values is None else values.to_numpy(dtype=object)


def draw_large_map(ws: Workspace, fs: FeatureSet, projection: Any, scope: Scope, last: dict | None) -> None:
    """A density image of every point; a lasso or box is answered here over all of them."""
    color_by, column, fields = draw_color_choice(last)
    categories = large_map_colours(ws, projection, color_by, column, fields, scope)
    key = json.dumps([projection.feature_set_id, projection.version, projection.params,
                      projection.details.get("dataset_id"), categories is not None and (color_by, fields),
                      categories is not None and ws.catalog.change_stamp()], sort_keys=True, default=str)
    figure = kept_density_figure(projection.coords, categories, key, label=column or "")
    event = st.plotly_chart(figure, on_select="rerun", selection_mode=("lasso", "box", "points"), key="map:chart")
    rows = large_selection(event, projection.coords)
    if len(rows) == 0 and selected_regions(event):  # a lasso around an empty region
        st.subheader("Nothing selected")
        st.caption("No point lies inside the lasso or box: draw around the shaded parts of the map.")
        return
    if len(rows) == 0:
        st.caption("A density image of every point (darker: more points). Drag on it to draw a lasso; "
                   "the points inside are found on the server.")
        return
    chosen = projection.entity_ids[rows].tolist()
    first = chosen[:GALLERY_LIMIT]
    draw_selection(ws, fs, chosen, item_ids_of(point_table(ws, fs, first)), scope, of_first=len(first))


def draw_map(ws: Workspace, fs: FeatureSet, projection: Any, params: dict[str, Any], scope: Scope) -> None:
    how = "loaded from cache" if projection.from_cache else f"computed in {projection.details.get('seconds', 0):.1f} s"
    where = f" of {scope.label}" if scope.dataset_id is not None else ""
    many = f" from {len(scope.counts)} datasets (colour by dataset to tell them apart)" if scope.many else ""
    st.caption(f"{len(projection.entity_ids)} points{where}{many} · {how}")
    last = last_search(fs)
    if is_large_map(len(projection.entity_ids), params["dims"]):
        draw_large_map(ws, fs, projection, scope, last)
        return
    color_by, column, fields = draw_color_choice(last)
    frame = map_frame_for(ws, fs, projection, color_by, fields, last)
    if column is not None and column not in frame:  # a field named like a built-in column
        column = f"metadata.{column}"
    # Names everything the frame was made from: the kept figure is rebuilt only when it changes.
    frame_key = json.dumps([projection.feature_set_id, projection.version, projection.params,
                            projection.details.get("dataset_id"), fields,
                            ws.catalog.change_stamp(), color_by, last if color_by == "distance" else None],
                           sort_keys=True, default=str)
    figure = kept_map_figure(frame, frame_key, column, ringed=last["results"] if last else (),
                             starred=last.get("query_entity") if last else None)
    event = st.plotly_chart(figure, on_select="rerun", selection_mode=("lasso", "box", "points"), key="map:chart")
    chosen = selected_entity_ids(event, frame)
    if chosen:
        draw_selection(ws, fs, chosen, item_ids_of(frame[frame["entity_id"].isin(chosen)]), scope)
    elif params["dims"] == 2:
        st.caption("Drag on the map to draw a lasso (the box is in the chart's toolbar).")


st.title("Map")
st.caption("Each point is one vector of a feature set; close points have similar vectors. "
           "Draw a lasso or a box around points to see their items below.")

with user_errors():
    ws = workspace()
    fs = feature_set_picker(ws, "Feature set to map", key=remembered("map:set"))
    remember("map:set")
    # The scope's counts (kept per set version) say whether the set is empty: a COUNT(*) of a
    # 1M-vector set each rerun took 0.1-0.2 s while its background indexing writes.
    scope = dataset_scope(ws, fs, key="map:scope", label="Points of") if fs is not None else None
    if fs is not None and not scope.counts:
        st.warning(f"**{fs.name}** has no vectors yet: fill it on the **Embed** page (or import vectors).")
        fs = None
    if fs is not None:
        params = projection_controls(key="map")
        projection = map_projection(ws, fs, params, scope)
        if projection is not None:
            draw_map(ws, fs, projection, params, scope)
