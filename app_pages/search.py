"""Search: by text, by a dropped image, by an existing item, or by a pasted vector or
feature id; k nearest and a distance limit; item filters; a gallery and a table."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import streamlit as st

from components.gallery import item_gallery
from components.pickers import feature_set_picker
from components import search_link
from components.pager import pager
from components.results import results_table, rows
from components.scope import Scope, dataset_scope, remember_dataset
from components.selection import selection_actions
from components.search import (distance_ceiling, distance_histogram, embed_query, item_filter_conditions,
                               query_distances)
from components.state import ACTIVITY, show_error, user_errors, workspace
from store import Dataset, Feature, FeatureSet, Filters, InvalidInput, Item, Pages, Workspace
from store.search import MAX_K, PAGE_SIZES, SearchState, parse_vector_or_id

MODES = ["Text", "Image", "Item", "Vector or feature id"]
JSON_OPEN = "search:json-open"  # the filter JSON's expander is open
DEFAULT = SearchState()  # the form before anyone touches it (what a link leaves out)
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]


@dataclass
class Limits:
    """What the form says besides the query: k, the distance limit and the item filters."""
    k: int
    ceiling: float
    max_distance: float
    conditions: list[tuple]
    page_size: int

    @property
    def distance_limit(self) -> float | None:
        """The slider's right end means no limit."""
        return None if self.max_distance >= self.ceiling else self.max_distance


def more_like_this(item: Item) -> None:
    """A result's button: search again from that item."""
    st.session_state["search:mode"] = "Item"
    st.session_state["search:item-dataset"] = item.dataset_id
    st.session_state["search:item"] = item.id
    st.session_state.pop("search:custom", None)


def text_query(ws: Workspace, fs: FeatureSet) -> list[float] | None:
    text = st.text_input("Text", key="search:text", placeholder="e.g. how do I write a lambda")
    if not text.strip():
        return None
    if not fs.model:
        raise InvalidInput(f"{fs.name} has no model to turn text into a vector; pick a set made by a "
                           "text model (e.g. all-MiniLM-L6-v2 or CLIP), or search by item or vector")
    return embed_query(ws, fs, text=text.strip())


def image_query(ws: Workspace, fs: FeatureSet) -> list[float] | None:
    dropped = st.file_uploader("Drop an image", type=IMAGE_TYPES, key="search:image")
    if dropped is None:
        return None
    if not fs.model:
        raise InvalidInput(f"{fs.name} has no model to turn an image into a vector; pick a set made by "
                           "an image model (CLIP)")
    st.image(dropped.getvalue(), caption=dropped.name, width=160)
    return embed_query(ws, fs, image_bytes=dropped.getvalue())


def item_query(ws: Workspace, fs: FeatureSet, datasets: list[Dataset]) -> str | None:
    """The feature id of a picked item's vector in ``fs``."""
    if not datasets:
        st.info("No dataset yet: upload files first.")
        return None
    names = {d.id: d.name for d in datasets}
    ids = list(names)
    if st.session_state.get("search:item-dataset") not in ids:
        st.session_state["search:item-dataset"] = ids[0]
    ds_id = st.selectbox("Dataset", ids, key="search:item-dataset", format_func=names.get)
    remember_dataset(ds_id)
    items = {i.id: i for i in ws.datasets.get(dataset_id=ds_id).items.list().all()}
    if not items:
        st.info("This dataset has no items.")
        return None
    if st.session_state.get("search:item") not in items:
        st.session_state["search:item"] = next(iter(items))
    item_id = st.selectbox("Item", list(items), key="search:item", format_func=lambda i: items[i].filename)
    feats = list(fs.features.list(entity_id=item_id).all())
    if not feats:
        raise InvalidInput(f"{items[item_id].filename} has no vector in {fs.name}; embed its "
                           "dataset into that set first, or pick another item")
    item_gallery([items[item_id]], columns=6, key="search:query-item")
    return feats[0].id


def vector_query() -> list[float] | str | None:
    pasted = st.text_area("A vector (numbers separated by commas or spaces, or a JSON list) or a feature id",
                          key="search:vector", height=100)
    return parse_vector_or_id(pasted)


def draw_query(ws: Workspace, fs: FeatureSet, datasets: list[Dataset]) -> tuple[str, Any]:
    """The "Search by" choice and its input: (mode, the query vector or feature id, or None)."""
    mode = st.radio("Search by", MODES, horizontal=True, key="search:mode")
    if mode == "Text":
        return mode, text_query(ws, fs)
    if mode == "Image":
        return mode, image_query(ws, fs)
    if mode == "Item":
        return mode, item_query(ws, fs, datasets)
    return mode, vector_query()


def draw_limits(ws: Workspace, fs: FeatureSet, datasets: list[Dataset]) -> Limits:
    # Each widget names its default (not a setdefault into session_state): where Streamlit
    # drops a fragment widget's state (CI saw k come back as 1, its minimum), it comes back
    # at the form's default instead.
    k_col, max_col, size_col = st.columns([1, 2, 1])
    k = int(k_col.number_input("k (how many neighbours)", 1, MAX_K, value=DEFAULT.k, step=1, key="search:k",
                               help=f"Up to {MAX_K:,}: the results come a page at a time"))
    ceiling = distance_ceiling(ws, fs)
    # The key carries the ceiling: a new scale starts the slider at its (new) right end.
    max_key = f"search:maxd:{fs.id}:{ceiling}"
    search_link.link_max_distance(max_key, ceiling)
    max_distance = max_col.slider("Max distance (at the right end: no limit)", 0.0, ceiling, value=ceiling,
                                  step=ceiling / 200, key=max_key, format="%.3f")
    page_size = size_col.select_slider("Results per page", list(PAGE_SIZES), value=DEFAULT.page_size,
                                       key="search:per")
    with st.expander("Item filters", expanded=False):
        conditions = item_filter_conditions(datasets, key="search:filters", items=fs.entity_type == "item")
    return Limits(k, ceiling, max_distance, conditions, page_size)


def query_filters(fs: FeatureSet, query: Any, limits: Limits) -> Filters:
    filters = Filters(resource="items" if fs.entity_type == "item" else "annotations")
    for condition in limits.conditions:
        filters.add(*condition)
    filters.add_euclid(fs, query, k=limits.k, max_distance=limits.distance_limit)
    return filters


def draw_filter_json(filters: Filters | None) -> None:
    """The form's query as JSON, and a box to run a typed filter JSON instead. The JSON is
    drawn only while the expander is open: highlighting its query vector (384 numbers and
    more) cost every rerun of the page 25 to 55 ms in the browser, closed or not."""
    box = st.expander("Advanced: the filter JSON", expanded="search:custom" in st.session_state,
                      key=JSON_OPEN, on_change="rerun")
    with box:
        if filters is not None and box.open:
            st.caption("The current query, as JSON (`python -m store search --filter @query.json` runs it too):")
            st.code(json.dumps(filters.prepare(), indent=1), language="json")
        typed = st.text_area("Run a filter JSON (the seed's custom_filter, `forigen` and all)", key="search:json",
                             height=200, placeholder='{"filter": {"hidden": false}, "resource": "items", ...}')
        run_json, clear_json = st.columns(2)
        if run_json.button("Run this JSON", key="search:run-json", icon=":material/play_arrow:"):
            try:
                st.session_state["search:custom"] = json.loads(typed)
            except json.JSONDecodeError as exc:
                st.error(f"That is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         "fix it and run again.", icon=":material/error:")
        if "search:custom" in st.session_state and clear_json.button("Back to the form", key="search:clear-json"):
            st.session_state.pop("search:custom", None)
            st.rerun()


def run_search(ws: Workspace, fs: FeatureSet | None, filters: Filters | None, custom: dict | None,
               scope: Scope | None) -> Pages | None:
    """A typed filter JSON wins over the form; None when there is nothing to run. Either runs
    within the page's dataset scope."""
    dataset_id = scope.dataset_id if scope is not None else None
    if custom is not None:
        where = f" in {scope.label}" if dataset_id is not None else ""
        st.info(f"Showing the results of your filter JSON{where}.", icon=":material/data_object:")
        return ws.search(custom, dataset_id=dataset_id)
    if filters is not None:
        return ws.search(filters, dataset_id=dataset_id)
    if fs is not None:
        st.info("Give a query above: type text, drop an image, pick an item, or paste a vector or feature id.")
    return None


def draw_query_profile(ws: Workspace, fs: FeatureSet, mode: str, query: Any, filters: Filters, limits: Limits,
                       found: list, scope: Scope) -> None:
    """The distance histogram of the form's query over what its item filters let through
    (drawn even when nothing is within the limit: the cut shows how far off it is), and the
    way to the map (which rings the results)."""
    query_entity = st.session_state.get("search:item") if mode == "Item" else None
    st.session_state["search:last"] = {"set_id": fs.id, "query": query, "query_entity": query_entity,
                                       "results": [r.id for r in found]}
    distances = query_distances(ws, filters, scope.dataset_id)
    st.plotly_chart(distance_histogram(distances, kth=found[-1].distance if found else None,
                                       max_distance=limits.distance_limit), key="search:histogram")
    if not len(distances):
        st.caption("No vector passes the item filters.")
    if found and st.button("Show on map", key="search:show-on-map", icon=":material/scatter_plot:",
                           help="The Map page, coloured by distance to this query, its results ringed; "
                                "it projects the set first when the set has no map yet"):
        from components.scatter import request_projection  # here: the page loads without the map's imports

        request_projection()
        st.session_state["map:set"] = fs.id
        st.session_state["map:color"] = "distance"
        if "search:scope" in st.session_state:  # the map looks at what the search looked at
            st.session_state["map:scope"] = st.session_state["search:scope"]
        st.switch_page("app_pages/map.py")


def draw_results(ws: Workspace, pages: Pages, page_size: int, dataset_names: dict[str, str],
                 scope: Scope | None) -> int:
    """One page of the results (gallery and table; the CSV and "Save or export" take them
    all); returns the page shown (1-based)."""
    found = pages.items
    if not found:
        return 1
    window = pager(len(found), page_size, key="search:results")
    page = found[window.start : window.stop]
    shown = [r for r in page if isinstance(r, Item)]
    many = scope is not None and len({r.dataset_id for r in found if isinstance(r, Item)}) > 1
    if many:  # say which copy is which
        st.caption(f"From {scope.sources(r.dataset_id for r in found if isinstance(r, Item))}: each caption "
                   "and the table's dataset column say which result comes from which.")
    item_gallery(shown, key="search:results", columns=6, on_more=more_like_this,
                 datasets=dataset_names if many else None)
    results_table(rows(page, dataset_names, first_rank=window.start + 1), key="search:results",
                  everything=(lambda: rows(found, dataset_names)) if window.pages > 1 else None)
    if not isinstance(found[0], Feature):
        selection_actions(ws, [r.id for r in found], key="search:selected", default_name="search-results")
    return window.page


def draw_result_heading(pages: Pages) -> None:
    found = pages.items
    st.subheader(f"{len(found):,} result{'s' if len(found) != 1 else ''}"
                 + (f" of {pages.items_count:,}" if pages.items_count > len(found) else ""))
    if not found:
        st.info("Nothing matched: raise the max distance, loosen the filters, or check the feature set.")


@st.fragment
def search_form(ws: Workspace, set_id: str | None, scope: Scope | None) -> None:
    """The query, the limits and the results: a fragment, so that a slider step or a new
    text reruns this part alone, not the pickers above it nor app.py's navigation (nor
    their redraw in the browser). The set is read again on each rerun of the fragment."""
    with ACTIVITY.serving(), user_errors():  # a fragment's rerun skips app.py and the page's own
        _form_and_results(ws, set_id, scope)


def _form_and_results(ws: Workspace, set_id: str | None, scope: Scope | None) -> None:
    datasets = ws.datasets.list()
    names = {d.id: d.name for d in datasets}
    fs = ws.feature_sets.get(feature_set_id=set_id) if set_id is not None else None
    mode, query, filters, limits = None, None, None, None
    if fs is not None:
        with user_errors():  # a bad query is said under the form; the URL still keeps the form
            mode = st.session_state.get("search:mode", MODES[0])
            mode, query = draw_query(ws, fs, datasets)
        limits = draw_limits(ws, fs, datasets)
        if query is not None:
            filters = query_filters(fs, query, limits)
            search_link.keep_page(json.dumps([filters.prepare(), scope.dataset_id]))
    draw_filter_json(filters)
    custom = st.session_state.get("search:custom")
    shown_page = 1
    with user_errors():
        pages = run_search(ws, fs, filters, custom, scope)
        if pages is not None:
            draw_result_heading(pages)
            if custom is None:
                draw_query_profile(ws, fs, mode, query, filters, limits, pages.items, scope)
            shown_page = draw_results(ws, pages, limits.page_size if limits else 48, names, scope)
    if limits is not None:
        search_link.keep(search_link.current_state(
            fs, scope.dataset_id, "search:scope" in st.session_state and len(scope.counts) > 1, names, mode,
            limits.k, limits.distance_limit, shown_page, limits.page_size))


st.title("Search")
st.caption("Nearest neighbours by true Euclidean distance, over every vector (exact search). The address bar "
           "keeps the search: bookmark or share it.")

with user_errors():
    ws = workspace()
    for problem in search_link.restore(ws):
        show_error(problem[:1].upper() + problem[1:] + ".")
    fs = feature_set_picker(ws, "Feature set to search", key="search:set")
    if fs is not None and fs.count() == 0:
        st.warning(f"**{fs.name}** has no vectors yet: fill it on the **Embed** page (or import vectors).")
    scope = dataset_scope(ws, fs, key="search:scope", label="Search in") if fs is not None else None
    search_form(ws, fs.id if fs is not None else None, scope)
