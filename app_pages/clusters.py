"""Clusters: k-means or HDBSCAN over a feature set, each cluster named (nearest vocabulary
prompts for a CLIP set, most common labels, most central items) and saved as item metadata
for filters; a table of clusters, the map coloured by cluster, a gallery per cluster."""
from __future__ import annotations

import base64
from typing import Any

import pandas as pd
import streamlit as st

from components.gallery import item_gallery, thumbnail
from components.pickers import feature_set_picker
from components.scope import Scope, dataset_scope
from components.scatter import map_figure, map_table, projection_controls
from components.state import user_errors, workspace
from store import FeaturelabError, FeatureSet, Item, Workspace
from store.analysis import (KEY_PATTERN, STAGE_LABELS, ClusterResult, cached_projection, check_key, cluster_feature_set,
                            default_key, default_vocabulary, load_result, parse_vocabulary, project)
from store.embedders import backend_named

METHOD_LABELS = {"kmeans": "k-means", "hdbscan": "HDBSCAN (density)"}
STAGES = {"load": "reading vectors", "cluster": "clustering", "name": "naming clusters", "save": "saving metadata"}
GALLERY_LIMIT = 60
CENTRAL_SHOWN = 3


def names_by_prompts(fs: FeatureSet) -> bool:
    """Whether the set's model embeds text and images into one space (CLIP), so a vocabulary
    can name its clusters. Read off the stored backend's capabilities (what
    ``ModelSpec.embeds_text`` / ``embeds_images`` report), without ``parse_spec``: that checks
    the model against open_clip's catalogue, importing torch on every draw of the page."""
    try:
        backend = backend_named((fs.model or {}).get("backend", ""))
    except FeaturelabError:  # no model, or one this version does not run
        return False
    return backend.embeds_text and backend.embeds_images


def entity_items(ws: Workspace, result: ClusterResult, entity_ids: list[str]) -> list[Item]:
    """The items of some entities, in order, once each (an annotation's: its item)."""
    if result.entity_type == "annotation":
        anns = {e: ws.get_annotation(e) for e in entity_ids}
        item_ids = list(dict.fromkeys(anns[e].item_id for e in entity_ids))
    else:
        item_ids = list(entity_ids)
    found = ws.items_by_ids(item_ids)
    return [found[i] for i in item_ids if i in found]


def image_url(item: Item) -> str | None:
    data = thumbnail(item.sha256, str(item.path), 96) if item.kind == "image" else None
    return "data:image/png;base64," + base64.b64encode(data).decode() if data else None


def cluster_table(ws: Workspace, result: ClusterResult) -> pd.DataFrame:
    rows = []
    for c in result.clusters:
        items = entity_items(ws, result, c.central[:CENTRAL_SHOWN])
        row = {"id": c.id, "name": c.name, "size": c.size,
               "labels": ", ".join(f"{v} ({n})" for v, n in c.labels[:3]),
               "prompts": ", ".join(f"{w} {s:.2f}" for w, s in c.prompts[:3]),
               "central items": ", ".join(i.filename for i in items)}
        for j in range(CENTRAL_SHOWN):
            row[f"central {j + 1}"] = image_url(items[j]) if j < len(items) else None
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.drop(columns=[c for c in ("labels", "prompts") if not frame[c].any()])


def cluster_label(cluster_id: int, name: str, width: int) -> str:
    """What the map's legend shows: ids padded so that they sort as numbers."""
    return f"{cluster_id:>{width}}: {name}"


def draw_settings(fs: FeatureSet, scope: Scope) -> dict[str, Any]:
    """The method, its parameter, the metadata key and the label field, as arguments of
    ``cluster_feature_set`` (k and min_size both, the unused one at its default; the scope)."""
    n = fs.count() if scope.dataset_id is None else scope.counts[scope.dataset_id]
    if st.session_state.get("clusters:key-for") != fs.id:  # a new set: its own default key
        st.session_state["clusters:key"] = default_key(fs.name)
        st.session_state["clusters:key-for"] = fs.id
    left, mid, right = st.columns(3)
    method = left.radio("Clustering method", list(METHOD_LABELS), format_func=METHOD_LABELS.get, horizontal=True,
                        key="clusters:algorithm",
                        help="k-means: exactly k clusters. HDBSCAN: as many as the density shows, "
                             "with points in no cluster marked as noise (-1).")
    if method == "kmeans":
        k = mid.number_input("Number of clusters (k)", 1, max(1, min(n, 1000)), min(8, n), key="clusters:k")
        min_size = 5
    else:
        min_size = mid.number_input("Smallest cluster", 2, max(2, n), min(5, max(2, n)), key="clusters:min-size")
        k = 8
    key = right.text_input("Save as metadata.clusters.", key="clusters:key",
                           help="Letters, digits, '_' or '-'. Running again with the same key replaces "
                                "the previous clusters.").strip()
    label_field = st.text_input("Name by a metadata field (optional)", key="clusters:label-field",
                                placeholder="e.g. user.class (default: the annotation labels)").strip() or None
    return {"method": method, "k": int(k), "min_size": int(min_size), "key": key, "label_field": label_field,
            "dataset_id": scope.dataset_id}


def draw_vocabulary(fs: FeatureSet) -> list[str] | None:
    """The words to name clusters by, for a set whose model embeds text like its images."""
    if not names_by_prompts(fs):
        st.caption("This set was not made by a CLIP model: clusters are named by their items' labels and "
                   "their most central items.")
        return None
    text = st.text_area("Vocabulary: words to name clusters by, one per line", key="clusters:vocabulary",
                        value="\n".join(default_vocabulary()), height=150,
                        help='Each word becomes "a photo of a <word>", embedded by the set\'s own model.')
    return parse_vocabulary(text)


def run_clustering(ws: Workspace, fs: FeatureSet, settings: dict[str, Any], vocabulary: list[str] | None) -> None:
    check_key(settings["key"])
    bar = st.progress(0.0, text="starting…")
    result = cluster_feature_set(
        ws, fs, **settings, vocabulary=vocabulary or None,
        progress=lambda stage, fraction: bar.progress(min(max(float(fraction), 0.0), 1.0),
                                                      text=STAGES.get(stage, stage)))
    bar.empty()
    st.session_state["clusters:result"] = result


def current_result(ws: Workspace, fs: FeatureSet, key: str, scope: Scope) -> ClusterResult | None:
    """This session's last run when it still matches the set, key and scope, else the saved
    one (when it was made in this scope)."""
    if not KEY_PATTERN.fullmatch(key):
        st.error("The key must be 1 to 64 letters, digits, '_' or '-'.")
        return None
    result = st.session_state.get("clusters:result")
    current = ws.feature_sets.get(feature_set_id=fs.id)
    if result is None or (result.feature_set_id, result.key, result.version) != (fs.id, key, current.version):
        result = load_result(ws, fs, key)
    return result if result is not None and result.params.get("dataset_id") == scope.dataset_id else None


def draw_summary(ws: Workspace, result: ClusterResult) -> None:
    """What was found and where it is saved, and the table of clusters."""
    method_text = (f"k-means, k = {result.params['k']}" if result.method == "kmeans"
                   else f"HDBSCAN, smallest cluster {result.params['min_size']}")
    holder = "annotation" if result.entity_type == "annotation" else "item"
    dataset_id = result.params.get("dataset_id")
    where = f" of {ws.datasets.get(dataset_id=dataset_id).name}" if dataset_id else ""
    st.success(f"{len(result.clusters)} clusters of {len(result.entity_ids)} vectors{where} ({method_text}), "
               f"saved as {holder} metadata `clusters.{result.key}`. Filter with "
               f'`{{"metadata.clusters.{result.key}.id": {result.clusters[0].id}}}`.')
    for warning in result.details.get("warnings", []):
        st.warning(warning)
    image_columns = {f"central {j + 1}": st.column_config.ImageColumn(f"central {j + 1}")
                     for j in range(CENTRAL_SHOWN)}
    st.dataframe(cluster_table(ws, result), hide_index=True, width="stretch", key="clusters:table",
                 column_config={"size": st.column_config.NumberColumn("size"), **image_columns})


def draw_cluster_map(ws: Workspace, fs: FeatureSet, result: ClusterResult) -> None:
    """The set's map coloured by cluster (projected on a button press when not cached)."""
    st.subheader("Map")
    params = {**projection_controls(key="clusters"), "dataset_id": result.params.get("dataset_id")}
    projection = cached_projection(ws, fs, **params)  # the map of the clustered scope
    if projection is None:
        st.info(f"No map of **{fs.name}** with these settings yet.")
        if st.button("Project", key="clusters:project", icon=":material/scatter_plot:"):
            bar = st.progress(0.0, text="starting…")
            projection = project(ws, fs, **params, progress=lambda stage, fraction: bar.progress(
                min(max(float(fraction), 0.0), 1.0), text=STAGE_LABELS.get(stage, stage)))
            bar.empty()
    if projection is None:
        return
    frame = map_table(ws, projection)
    names = result.names()
    width = len(str(max(names))) if names else 1
    of = result.assignment()
    frame = frame.assign(cluster=[cluster_label(of[e], names[of[e]], width) if e in of else None
                                  for e in frame["entity_id"]])
    st.plotly_chart(map_figure(frame, "cluster"), key="clusters:map")


def draw_cluster_items(ws: Workspace, result: ClusterResult, scope: Scope) -> None:
    st.subheader("Items of a cluster")
    by_id = {c.id: c for c in result.clusters}
    picked = st.selectbox("Cluster", list(by_id), key="clusters:pick",
                          format_func=lambda i: f"{i}: {by_id[i].name} ({by_id[i].size})")
    members = result.members(picked, GALLERY_LIMIT)
    items = entity_items(ws, result, members)
    st.caption(f"Closest to the centre first; the first {len(members)} of {by_id[picked].size}."
               + (f" From {scope.sources(i.dataset_id for i in items)}." if scope.many else ""))
    item_gallery(items, columns=6, key="clusters:gallery", datasets=scope.captions)


st.title("Clusters")
st.caption("Group a feature set's vectors into clusters and name them: by the nearest words of a vocabulary "
           "(CLIP sets), by the items' most common labels, and by their most central items. The result is "
           "saved on each item as `metadata.clusters.<key>`, so filters can use it.")

with user_errors():
    ws = workspace()
    fs = feature_set_picker(ws, "Feature set to cluster", key="clusters:set")
    if fs is not None and fs.count() == 0:
        st.warning(f"**{fs.name}** has no vectors yet: fill it on the **Embed** page (or import vectors).")
        fs = None
    if fs is not None:
        scope = dataset_scope(ws, fs, key="clusters:scope", label="Cluster the vectors of")
        settings = draw_settings(fs, scope)
        vocabulary = draw_vocabulary(fs)
        if st.button("Run", key="clusters:run", type="primary", icon=":material/bubble_chart:"):
            run_clustering(ws, fs, settings, vocabulary)
        result = current_result(ws, fs, settings["key"], scope)
        if result is not None:
            draw_summary(ws, result)
            draw_cluster_map(ws, fs, result)
            draw_cluster_items(ws, result, scope)
        else:
            st.info("Pick a method and press **Run**.")
