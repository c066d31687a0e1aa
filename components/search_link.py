"""The Search page's state in its URL (``st.query_params``), so a search can be bookmarked
and shared: ``restore`` puts a link's state into the form's widgets before they are drawn,
``keep`` writes the form's state into the URL after. What a state holds, and how it reads
and writes as query parameters, is the store's ``SearchState``.

st.navigation clears the query parameters on every page switch, so coming back to Search
by the menu finds an empty URL: that keeps the form as the session left it (and writes it
to the URL again). Only a URL that differs from the one this session last wrote is a link
to restore."""
from __future__ import annotations

from typing import Sequence

import streamlit as st

from components.scope import ALL
from store import Dataset, FeatureSet, NotFound, Workspace
from store.search import SearchState

WRITTEN = "search:url"  # the query parameters this session last wrote
PENDING_MAX = "search:link-max"  # a link's distance limit, for the slider (its key depends on the set)
MODE_LABELS = {"text": "Text", "image": "Image", "item": "Item", "vector": "Vector or feature id"}
HIDDEN_LABELS = {"visible": "Visible only", "hidden": "Hidden only", "both": "Both"}


def _by_name_or_id(records: Sequence, wanted: str | None):
    return next((r for r in records if wanted in (r.id, r.name)), None) if wanted else None


def _set_query(ws: Workspace, state: SearchState, problems: list[str]) -> None:
    """The query box of the link's mode: the text, the pasted vector or id, or the item."""
    mode = MODE_LABELS[state.mode]
    st.session_state["search:mode"] = mode
    if state.mode == "text":
        st.session_state["search:text"] = state.query
    elif state.mode == "vector":
        st.session_state["search:vector"] = state.query
    elif state.mode == "item" and state.query:
        try:
            item = ws.get_item(state.query)
        except NotFound:
            problems.append(f"the link's item {state.query} is not in this workspace; pick one")
            return
        st.session_state["search:item-dataset"] = item.dataset_id
        st.session_state["search:item"] = item.id
    elif state.mode == "image":
        problems.append("a dropped image cannot travel in a link: drop it again")


def _set_filters(state: SearchState, datasets: list[Dataset], problems: list[str]) -> None:
    filter_ds = _by_name_or_id(datasets, state.dataset)
    if state.dataset and filter_ds is None:
        problems.append(f"the link's filter dataset {state.dataset!r} is not here; filtering on any dataset")
    st.session_state["search:filters:dataset"] = filter_ds.id if filter_ds else None
    st.session_state["search:filters:folder"] = state.folder
    st.session_state["search:filters:hidden"] = HIDDEN_LABELS[state.hidden]
    st.session_state["search:filters:meta-field"] = state.field
    st.session_state["search:filters:meta-op"] = f"${state.op}"
    st.session_state["search:filters:meta-value"] = state.value


def restore(ws: Workspace) -> list[str]:
    """Put a link's search into the form (before any of its widgets is drawn); returns a
    sentence for each part of the link that could not be used. Does nothing unless the URL
    holds a search this session did not write itself."""
    params = st.query_params.to_dict()
    if not params or params == st.session_state.get(WRITTEN):
        return []
    state, problems = SearchState.from_params(params)
    sets = ws.feature_sets.list()
    fs = _by_name_or_id(sets, state.set)
    if state.set and fs is None:
        problems.append(f"the link's feature set {state.set!r} is not in this workspace; pick one")
    if fs is not None:
        st.session_state["search:set"] = fs.id
    datasets = ws.datasets.list()
    if state.scope == "all":
        st.session_state["search:scope"] = ALL
    elif state.scope:
        scope = _by_name_or_id(datasets, state.scope)
        if scope is None:
            problems.append(f"the link's dataset {state.scope!r} is not in this workspace")
        else:
            st.session_state["search:scope"] = scope.id
    _set_query(ws, state, problems)
    st.session_state["search:k"] = state.k
    st.session_state["search:per"] = state.page_size
    st.session_state["search:results:page"] = state.page
    st.session_state[PENDING_MAX] = state.max_distance
    _set_filters(state, datasets, problems)
    st.session_state.pop("search:custom", None)  # a link is the form's search, not a typed JSON
    st.session_state.pop("search:signature", None)  # the link's page stands (see keep_page)
    return problems


def link_max_distance(key: str, ceiling: float) -> None:
    """The slider ``key`` starts at the distance limit a link asked for (none: no limit)."""
    if PENDING_MAX in st.session_state:
        wanted = st.session_state.pop(PENDING_MAX)
        st.session_state[key] = ceiling if wanted is None else min(float(wanted), ceiling)


def keep_page(signature: str) -> None:
    """Back to page 1 when the search itself changes (not when only the page does)."""
    if st.session_state.get("search:signature") not in (None, signature):
        st.session_state["search:results:page"] = 1
    st.session_state["search:signature"] = signature


def keep(state: SearchState) -> None:
    """Write the form's state into the URL (only when it changed: each write is a message to
    the browser)."""
    params = state.to_params()
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state[WRITTEN] = params


def current_state(fs: FeatureSet | None, scope_id: str | None, has_scope: bool, names: dict[str, str],
                  mode: str | None, k: int, max_distance: float | None, page: int, page_size: int) -> SearchState:
    """The form as drawn, as a ``SearchState`` (names rather than ids where a person reads them)."""
    modes = {label: m for m, label in MODE_LABELS.items()}
    code = modes.get(mode or "Text", "text")
    query = {"text": st.session_state.get("search:text", ""), "vector": st.session_state.get("search:vector", ""),
             "item": st.session_state.get("search:item", "") if code == "item" else ""}.get(code, "")
    filter_ds = st.session_state.get("search:filters:dataset")
    hidden = {label: h for h, label in HIDDEN_LABELS.items()}.get(st.session_state.get("search:filters:hidden"),
                                                                   "visible")
    return SearchState(
        set=fs.name if fs else None,
        scope=("all" if scope_id is None else names.get(scope_id, scope_id)) if has_scope else None,
        mode=code, query=query or "", k=k, max_distance=max_distance,
        dataset=names.get(filter_ds, filter_ds) if filter_ds else None,
        folder=st.session_state.get("search:filters:folder", ""), hidden=hidden,
        field=st.session_state.get("search:filters:meta-field", ""),
        op=str(st.session_state.get("search:filters:meta-op", "$eq")).lstrip("$"),
        value=st.session_state.get("search:filters:meta-value", ""), page=page, page_size=page_size)
