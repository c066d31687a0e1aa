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


class _Form:
    """Writes into the form's session keys: every key for a link, only the missing ones when
    coming back to the page (Streamlit drops a widget's value on a run that does not draw
    it; what another page put there on purpose, such as the map's "Search from here", stays)."""

    def __init__(self, only_missing: bool) -> None:
        self.only_missing = only_missing

    def __setitem__(self, key: str, value) -> None:
        if not (self.only_missing and key in st.session_state):
            st.session_state[key] = value


def _set_query(ws: Workspace, form: _Form, state: SearchState, problems: list[str]) -> None:
    """The query box of the link's mode: the text, the pasted vector or id, or the item."""
    form["search:mode"] = MODE_LABELS[state.mode]
    if state.mode == "text":
        form["search:text"] = state.query
    elif state.mode == "vector":
        form["search:vector"] = state.query
    elif state.mode == "item" and state.query:
        try:
            item = ws.get_item(state.query)
        except NotFound:
            problems.append(f"the link's item {state.query} is not in this workspace; pick one")
            return
        form["search:item-dataset"] = item.dataset_id
        form["search:item"] = item.id
    elif state.mode == "image":
        problems.append("a dropped image cannot travel in a link: drop it again")


def _set_filters(form: _Form, state: SearchState, datasets: list[Dataset], problems: list[str]) -> None:
    filter_ds = _by_name_or_id(datasets, state.dataset)
    if state.dataset and filter_ds is None:
        problems.append(f"the link's filter dataset {state.dataset!r} is not here; filtering on any dataset")
    form["search:filters:dataset"] = filter_ds.id if filter_ds else None
    form["search:filters:folder"] = state.folder
    form["search:filters:hidden"] = HIDDEN_LABELS[state.hidden]
    form["search:filters:meta-field"] = state.field
    form["search:filters:meta-op"] = f"${state.op}"
    form["search:filters:meta-value"] = state.value


def restore(ws: Workspace) -> list[str]:
    """Put a link's search into the form (before any of its widgets is drawn); returns a
    sentence for each part of the link that could not be used. A URL this session wrote
    itself is left alone; an empty one (back by the menu) brings back what the form held."""
    params = st.query_params.to_dict()
    written = st.session_state.get(WRITTEN)
    if params and params == written or not params and not written:
        return []
    form = _Form(only_missing=not params)
    state, problems = SearchState.from_params(params or written)
    fs = _by_name_or_id(ws.feature_sets.list(), state.set)
    if state.set and fs is None:
        problems.append(f"the link's feature set {state.set!r} is not in this workspace; pick one")
    if fs is not None:
        form["search:set"] = fs.id
    datasets = ws.datasets.list()
    scope = _by_name_or_id(datasets, state.scope)
    if state.scope == "all":
        form["search:scope"] = ALL
    elif state.scope and scope is None:
        problems.append(f"the link's dataset {state.scope!r} is not in this workspace")
    elif scope is not None:
        form["search:scope"] = scope.id
    _set_query(ws, form, state, problems)
    form["search:k"] = state.k
    form["search:per"] = state.page_size
    form["search:results:page"] = state.page
    st.session_state[PENDING_MAX] = (state.max_distance, bool(params))
    if params:  # a link: the typed JSON goes, and its page is kept (see keep_page)
        st.session_state.pop("search:custom", None)
        st.session_state.pop("search:signature", None)
    _set_filters(form, state, datasets, problems)
    return problems if params else []


def link_max_distance(key: str, ceiling: float) -> None:
    """The slider ``key`` starts at the distance limit a link asked for (none: no limit)."""
    if PENDING_MAX in st.session_state:
        wanted, from_link = st.session_state.pop(PENDING_MAX)
        if from_link or key not in st.session_state:
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
