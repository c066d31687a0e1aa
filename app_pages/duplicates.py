"""Duplicates and outliers: the near-duplicate groups of a feature set under a distance
threshold (the histogram of nearest-neighbour distances drawn under the slider), keep one per
group and hide the rest, undoably; and the outliers, farthest from their k-th neighbour."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import plotly.graph_objects as go
import streamlit as st

from components.gallery import item_gallery
from components.selection import selection_actions
from components.pickers import feature_set_picker
from components.scope import Scope, dataset_scope
from components.state import flash, user_errors, workspace
from store import FeatureSet, Item, Workspace, analysis

VIEWS = ["Near-duplicates", "Outliers"]
MAX_GROUPS = 40  # groups drawn as galleries (the hide-all button acts on every group)
MAX_MEMBERS = 18  # thumbnails per group


@st.cache_data(max_entries=16, show_spinner="Measuring each vector's distance to its nearest neighbour…")
def neighbour_distances(_ws: Workspace, set_id: str, token: str, dataset_id: str | None) -> analysis.NeighbourDistances:
    return analysis.nearest_neighbor_distances(_ws, set_id, dataset_id=dataset_id)


@st.cache_data(max_entries=64, show_spinner="Finding near-duplicates…")
def duplicate_groups(_ws: Workspace, set_id: str, token: str, dataset_id: str | None,
                     threshold: float) -> analysis.Duplicates:
    return analysis.duplicate_groups(_ws, set_id, threshold, dataset_id=dataset_id)


@st.cache_data(max_entries=16, show_spinner="Ranking outliers…")
def ranked_outliers(_ws: Workspace, set_id: str, token: str, dataset_id: str | None, k: int,
                    top: int) -> list[analysis.Outlier]:
    return analysis.outliers(_ws, set_id, k, top=top, dataset_id=dataset_id)


@st.cache_data(max_entries=16, show_spinner="Timing a small piece of it on this machine…")
def how_long(_ws: Workspace, set_id: str, token: str, dataset_id: str | None, task: str) -> analysis.Estimate:
    return analysis.estimate(_ws, set_id, task, include_hidden=False, dataset_id=dataset_id)


def started(ws: Workspace, fs: FeatureSet, scope: Scope, token: str, count: int, task: str) -> bool:
    """Small sets start at once; a large one says how long first, and one that will not finish
    within ten minutes waits for the user's go."""
    if count < analysis.ESTIMATE_ABOVE:
        return True
    est = how_long(ws, fs.id, token, scope.dataset_id, task)
    st.caption(est.message)
    if est.fits():
        return True
    key = f"dup:go:{task}:{fs.id}:{token}"
    if st.session_state.get(key) or st.button(f"Start anyway (about {analysis.duration(est.seconds)})",
                                              key=f"{key}:button"):
        st.session_state[key] = True
        return True
    return False


def nice_ceiling(x: float) -> float:
    """Round up to two significant digits (a slider end a person can read)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return float(f"{math.ceil(x / scale) * scale:.12g}")  # 1.7, not 1.7000000000000002


def ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def histogram(nn: analysis.NeighbourDistances, threshold: float) -> go.Figure:
    counts, edges = nn.histogram(60)  # binned here: the browser gets 60 bars, not every distance
    fig = go.Figure(go.Bar(x=((edges[:-1] + edges[1:]) / 2).tolist(), y=counts.tolist(),
                           width=(edges[1:] - edges[:-1]).tolist(),
                           marker_color="#4C78A8", hovertemplate="distance %{x:.4g}<br>%{y} vectors<extra></extra>"))
    fig.add_vline(x=threshold, line_color="#E45756", line_dash="dash", annotation_text="threshold",
                  annotation_position="top right")
    fig.update_xaxes(rangemode="tozero")
    fig.update_layout(height=220, margin={"l": 0, "r": 0, "t": 20, "b": 0}, bargap=0.05,
                      xaxis_title="distance to the nearest other vector", yaxis_title="vectors")
    return fig


def members(ws: Workspace, group: analysis.DuplicateGroup) -> list[Item]:
    """The group's items, first uploaded first, each carrying its nearest-neighbour distance."""
    found = ws.items_by_ids(list(dict.fromkeys(i for i in group.item_ids if i)))
    out = [dataclasses.replace(found[i], distance=d) for i, d in zip(group.item_ids, group.distances) if i in found]
    return sorted(out, key=lambda item: (item.created_at, item.id))


def hide(ws: Workspace, dups: analysis.Duplicates, rule: str, groups: list[int] | None, keepers: Sequence[str] = ()) -> None:
    done = analysis.hide_duplicates(ws, dups, rule, groups=groups, keepers=keepers)
    if done.action_id:
        flash("dup", f"Hid {done.hidden} item(s) and kept one in each of {done.groups} group(s). "
                     "Undo brings them back.")
    else:
        flash("dup", "Nothing new to hide: the others were hidden already.", "info")
    st.rerun()


def undo_button(ws: Workspace, fs: FeatureSet) -> None:
    actions = analysis.hide_actions(ws, fs)
    if not actions:
        return
    last = actions[0]
    if st.button(f"Undo the last hide ({len(last.item_ids)} item(s))", key="dup:undo", icon=":material/undo:"):
        back = analysis.undo(ws, last.id)
        flash("dup", f"Showing {back.unhidden} item(s) again.")
        st.rerun()


def threshold_slider(fs: FeatureSet, nn: analysis.NeighbourDistances, scope: Scope) -> float:
    """The distance threshold, started at the suggestion for each new set, version or scope."""
    # Distinct vectors' reach too: with a copy of every item in view, every nearest distance is 0.
    ceiling = nice_ceiling(max(float(nn.distances.max()), nn.reach) * 1.05)
    if st.session_state.get("dup:for") != (fs.id, fs.version, scope.dataset_id):
        st.session_state["dup:for"] = (fs.id, fs.version, scope.dataset_id)
        st.session_state["dup:threshold"] = float(min(nn.suggested_threshold, ceiling))
    st.session_state["dup:threshold"] = float(min(st.session_state.get("dup:threshold", 0.0), ceiling))
    return st.slider("Distance threshold: vectors this close or closer are duplicates", 0.0, ceiling,
                     step=ceiling / 500, key="dup:threshold", format="%.4f",
                     help=f"Suggested: {nn.suggested_threshold:.4f} (where the histogram's low bump ends, or "
                          "the closest 2% of pairs when there is no clear gap; 0 finds exact copies only).")


def draw_hide_all(ws: Workspace, dups: analysis.Duplicates) -> None:
    left, right = st.columns([2, 1])
    rules = [r for r in analysis.keep_rules(ws, dups) if r != "manual"]  # "largest" only where images are
    rule_all = left.radio("In every group keep", rules, format_func=analysis.KEEP_LABELS.get,
                          horizontal=True, key="dup:rule-all")
    if right.button(f"Hide the rest of every group ({dups.redundant})", key="dup:hide-all", type="primary",
                    icon=":material/visibility_off:"):
        hide(ws, dups, rule_all, None)


def draw_group(ws: Workspace, fs: FeatureSet, dups: analysis.Duplicates, n: int, noun: str, scope: Scope) -> None:
    """Group ``n``: its thumbnails (and their datasets, when several are in view), which one
    to keep, and hiding or saving the rest."""
    group = dups.groups[n]
    with st.container(border=True, key=f"dup:group:{n}"):
        shown = members(ws, group)
        where = f" · from {scope.sources(i.dataset_id for i in shown)}" if scope.many else ""
        st.markdown(f"**Group {n + 1}** · {group.size} {noun} · closest pair at {group.min_distance:.4g}{where}")
        # Each member's folder (its path) and dataset: copies are told apart at a glance.
        item_gallery(shown[:MAX_MEMBERS], columns=6, key=f"dup:group:{n}:gallery", datasets=scope.names)
        if len(shown) > MAX_MEMBERS:
            st.caption(f"… and {len(shown) - MAX_MEMBERS} more")
        rule_col, keeper_col, button_col = st.columns([2, 2, 1])
        rule = rule_col.radio("Keep", list(analysis.keep_rules(ws, dups, [n])), format_func=analysis.KEEP_LABELS.get,
                              horizontal=True, key=f"dup:keep:{n}")
        keepers: list[str] = []
        if rule == "manual":
            names = {i.id: i.filename for i in shown}
            labels = {e: names.get(i, e) + (f" · {e[:8]}" if fs.entity_type == "annotation" else "")
                      for e, i in zip(group.entity_ids, group.item_ids)}
            keepers = [keeper_col.selectbox("Keep this one", group.entity_ids, key=f"dup:keeper:{n}",
                                            format_func=labels.get)]
        if button_col.button("Hide the rest", key=f"dup:hide:{n}", icon=":material/visibility_off:"):
            hide(ws, dups, rule, [n], keepers)
        selection_actions(ws, list(group.entity_ids), key=f"dup:save:{n}", default_name=f"{fs.name}-group-{n + 1}")


def duplicates_view(ws: Workspace, fs: FeatureSet, scope: Scope) -> None:
    token = analysis.state_token(ws, fs, dataset_id=scope.dataset_id)
    count = fs.count() if scope.dataset_id is None else scope.counts[scope.dataset_id]
    if not started(ws, fs, scope, token, count, "duplicates"):
        return
    nn = neighbour_distances(ws, fs.id, token, scope.dataset_id)
    if len(nn.distances) < 2:
        st.info("Near-duplicates need at least two visible vectors in the set.")
        undo_button(ws, fs)
        return
    threshold = threshold_slider(fs, nn, scope)
    st.plotly_chart(histogram(nn, threshold), key="dup:hist")
    dups = duplicate_groups(ws, fs.id, token, scope.dataset_id, float(threshold))
    noun = "annotations" if fs.entity_type == "annotation" else "items"
    across = " Copies in other datasets pair up too (all datasets)." if scope.many else ""
    st.caption(f"{nn.within(threshold)} of {len(nn.distances)} {noun} have another within {threshold:.4f}. "
               f"Hidden items are left out.{across}")
    undo_button(ws, fs)
    if not dups.groups:
        st.info("No near-duplicates at this threshold: move the slider right to look further.")
        return
    st.subheader(f"{len(dups.groups)} group(s), {dups.redundant} {noun} beyond one per group")
    draw_hide_all(ws, dups)
    if len(dups.groups) > MAX_GROUPS:
        st.caption(f"Showing the {MAX_GROUPS} largest groups.")
    for n in range(min(len(dups.groups), MAX_GROUPS)):
        draw_group(ws, fs, dups, n, noun, scope)


def outliers_view(ws: Workspace, fs: FeatureSet, scope: Scope) -> None:
    token = analysis.state_token(ws, fs, dataset_id=scope.dataset_id)
    count = fs.count() if scope.dataset_id is None else scope.counts[scope.dataset_id]
    if count < 2:
        st.info("Outliers need at least two vectors in the set.")
        return
    left, right = st.columns(2)
    k = int(left.number_input("k: rank by the distance to the k-th nearest neighbour", 1, max(1, min(50, count - 1)),
                              min(5, count - 1), key="out:k"))
    top = int(right.slider("How many", 1, max(2, min(120, count)), min(24, count), key="out:top"))
    if not started(ws, fs, scope, token, count, "outliers"):
        return
    found = ranked_outliers(ws, fs.id, token, scope.dataset_id, k, top)
    st.caption(f"The {len(found)} vectors farthest from their {ordinal(k)} nearest neighbour; d = that distance. "
               "Hidden items are left out.")
    items = ws.items_by_ids([o.item_id for o in found if o.item_id])
    if scope.many:
        st.caption(f"From {scope.sources(items[o.item_id].dataset_id for o in found if o.item_id in items)}.")
    shown = []
    for o in found:
        if o.item_id in items:
            shown.append(dataclasses.replace(items[o.item_id], distance=o.score))
    item_gallery(shown, columns=6, key="out:gallery", datasets=scope.captions)


st.title("Duplicates and outliers")
st.caption("Near-duplicates: vectors within a distance of each other (connected groups, exact). Keep one per "
           "group and hide the rest: searches with `hidden: false` skip them, and Undo brings them back. "
           "Outliers: the vectors farthest from their neighbours.")

with user_errors():
    ws = workspace()
    flash("dup")
    fs = feature_set_picker(ws, "Feature set", key="dup:set")
    if fs is not None and fs.count() == 0:
        st.warning(f"**{fs.name}** has no vectors yet: fill it on the **Embed** page (or import vectors).")
        fs = None
    if fs is not None:
        scope = dataset_scope(ws, fs, key="dup:scope", label="Look within")
        view = st.radio("Show", VIEWS, horizontal=True, key="dup:view", label_visibility="collapsed")
        if view == VIEWS[0]:
            duplicates_view(ws, fs, scope)
        else:
            outliers_view(ws, fs, scope)
