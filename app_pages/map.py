"""Map: a feature set projected to 2D or 3D (UMAP or PCA, cached on disk), coloured by
dataset, folder, label, kind or a metadata field; a lasso or box selection shows its items."""
import streamlit as st

from components.gallery import item_gallery
from components.pickers import feature_set_picker
from components.scatter import COLOR_CHOICES, map_figure, projection_controls, selected_entity_ids
from components.state import user_errors, workspace
from store.projection import STAGE_LABELS, cached_projection, map_frame, project

st.title("Map")
st.caption("Each point is one vector of a feature set; close points have similar vectors. "
           "Draw a lasso or a box around points to see their items below.")

with user_errors():
    ws = workspace()
    fs = feature_set_picker(ws, "Feature set to map", key="map:set")
    if fs is not None and fs.count() == 0:
        st.warning(f"**{fs.name}** has no vectors yet: fill it on the **Embed** page (or import vectors).")
        fs = None
    if fs is not None:
        params = projection_controls(key="map")
        projection = cached_projection(ws, fs, **params)
        if projection is None:
            st.info(f"No map of **{fs.name}** with these settings yet ({fs.count()} vectors).")
            if st.button("Project", key="map:project", type="primary", icon=":material/scatter_plot:"):
                bar = st.progress(0.0, text="starting…")
                projection = project(ws, fs, **params, progress=lambda stage, fraction: bar.progress(
                    min(max(float(fraction), 0.0), 1.0), text=STAGE_LABELS.get(stage, stage)))
                bar.empty()
        if projection is not None:
            how = "loaded from cache" if projection.from_cache else f"computed in {projection.details.get('seconds', 0):.1f} s"
            st.caption(f"{len(projection.entity_ids)} points · {how}")
            left, right = st.columns([1, 2])
            color_by = left.selectbox("Colour by", list(COLOR_CHOICES), format_func=COLOR_CHOICES.get,
                                      key="map:color")
            fields: tuple[str, ...] = ()
            column = None if color_by == "none" else color_by
            if color_by == "metadata":
                field = right.text_input("Metadata field", key="map:field", placeholder="e.g. user.split").strip()
                fields = (field,) if field else ()
                column = field or None
            frame = map_frame(ws, projection, metadata_fields=fields)
            if column is not None and column not in frame:  # a field named like a built-in column
                column = f"metadata.{column}"
            event = st.plotly_chart(map_figure(frame, column), on_select="rerun",
                                    selection_mode=("lasso", "box", "points"), key="map:chart")
            chosen = selected_entity_ids(event)
            if chosen:
                rows = frame[frame["entity_id"].isin(chosen)]
                items = ws.items_by_ids([i for i in dict.fromkeys(rows["item_id"]) if i])
                st.subheader(f"{len(rows)} selected")
                item_gallery(list(items.values()), columns=6, key="map:selection")
            elif params["dims"] == 2:
                st.caption("Drag on the map to draw a lasso (the box is in the chart's toolbar).")
