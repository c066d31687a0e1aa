"""The item view: one item full size (image with its boxes drawn, or its text), its facts and
metadata, its vectors per feature set, "More like this", and deleting it. Every gallery
opens it the same way (components.gallery's "Open" button), as a dialog."""
from __future__ import annotations

import io
import json
import time
from typing import Sequence

import numpy as np
import streamlit as st

from store import Annotation, Feature, FeatureSet, Item, NotFound, Workspace

REQUEST = "item_view:request"  # (gallery key, item id) of the "Open" just clicked
NOTICE = "item_view:notice"  # what the dialog did, shown after it closes
FULL = 640  # the view's image size: small images are scaled up to it without smoothing
TEXT_CHARS = 20_000
FIRST_VALUES = 6
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


def request_item_view(gallery_key: str, item_id: str) -> None:
    """An "Open" button's callback: the gallery that drew it shows the dialog in this run."""
    st.session_state[REQUEST] = (gallery_key, item_id)
    st.session_state.pop("item_view:confirm", None)


def close_item_view() -> None:
    """The dialog's dismissal (its X, Escape, a click outside), and every action that leaves it."""
    st.session_state.pop(REQUEST, None)
    st.session_state.pop("item_view:confirm", None)


def show_requested_item(gallery_key: str, item_ids: Sequence[str]) -> None:
    """Called by each gallery after its grid: the view stays open (on every rerun, not only its
    own) while the request of this gallery stands, that is until it is dismissed. Only one
    dialog may open per run, so a request belongs to the gallery that made it."""
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.toast(notice, icon=":material/delete:")
    request = st.session_state.get(REQUEST)
    if request and request[0] == gallery_key:
        if request[1] in item_ids:
            item_view(request[1], list(item_ids), gallery_key)
        else:  # the item left this gallery (deleted, filtered out): nothing to show
            close_item_view()


@st.cache_data(max_entries=64, show_spinner=False)
def annotated_image(sha256: str, path: str, boxes: tuple[tuple[str, float, float, float, float], ...]) -> bytes | None:
    """The image as PNG, scaled up if small (without smoothing), its boxes drawn with their labels."""
    from PIL import Image, ImageDraw, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except Exception:  # a damaged file shows as a message, never an error
        return None
    scale = max(1, FULL // max(img.size))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    labels = sorted({b[0] for b in boxes})
    for label, left, top, right, bottom in boxes:
        colour = COLOURS[labels.index(label) % len(COLOURS)]
        rect = [left * scale, top * scale, right * scale, bottom * scale]
        width = max(2, min(img.size) // 200)
        # A white halo keeps the box visible on any image, even one of the box's own colour.
        draw.rectangle([rect[0] - width, rect[1] - width, rect[2] + width, rect[3] + width], outline="white", width=width)
        draw.rectangle(rect, outline=colour, width=width)
        draw.text((rect[0] + 3, rect[1] + 2), label, fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def draw_content(item: Item, annotations: list[Annotation]) -> None:
    if item.kind == "image":
        boxes = tuple((a.label, *a.box) for a in annotations if a.type == "box")
        data = annotated_image(item.sha256, str(item.path), boxes)
        if data is None:
            st.warning(f"{item.filename} cannot be shown as an image (a damaged or unsupported file).")
        else:
            st.image(data, width="content" if max(item.width or 0, item.height or 0) < FULL else "stretch")
    elif item.kind == "text":
        text = item.text()
        st.code(text[:TEXT_CHARS], language=None, wrap_lines=True, height=320)
        if len(text) > TEXT_CHARS:
            st.caption(f"The first {TEXT_CHARS:,} of {len(text):,} characters.")
    else:
        st.info(f"A {item.mimetype} file: nothing to preview.")


def draw_facts(ws: Workspace, item: Item) -> None:
    try:
        dataset = ws.datasets.get(dataset_id=item.dataset_id).name
    except NotFound:
        dataset = item.dataset_id
    size = f" · {item.width}×{item.height} px" if item.width else ""
    st.caption(f"Dataset {dataset} · folder {item.dir} · {item.kind} ({item.mimetype}) · {item.size:,} bytes{size}"
               f" · {'hidden' if item.hidden else 'visible'} · added {time.strftime('%Y-%m-%d %H:%M', time.localtime(item.created_at))}"
               f" · id {item.id}")
    st.markdown("**Metadata**")
    st.json(item.metadata or {}, expanded=2)


def draw_annotations(annotations: list[Annotation]) -> None:
    if not annotations:
        return
    st.markdown(f"**Annotations** ({len(annotations)})")
    st.dataframe([{"label": a.label, "type": a.type, "left": a.box[0], "top": a.box[1], "right": a.box[2],
                   "bottom": a.box[3], "id": a.id} for a in annotations], hide_index=True, width="stretch")


def vector_row(fs: FeatureSet | None, feature: Feature) -> dict:
    value = np.asarray(feature.value, dtype=np.float64)
    first = ", ".join(f"{v:.4g}" for v in value[:FIRST_VALUES]) + (", …" if len(value) > FIRST_VALUES else "")
    return {"feature set": fs.name if fs else feature.feature_set_id, "size": len(value),
            "norm": float(np.sqrt((value ** 2).sum())), "first values": first, "feature id": feature.id}


def draw_vectors(sets: dict[str, FeatureSet], features: list[Feature]) -> None:
    st.markdown(f"**Vectors** ({len(features)})")
    if not features:
        st.caption("No feature set holds a vector of this item yet: embed its dataset on the **Embed** page.")
        return
    st.dataframe([vector_row(sets.get(f.feature_set_id), f) for f in features], hide_index=True, width="stretch",
                 column_config={"norm": st.column_config.NumberColumn("norm", format="%.4f")})
    for f in features:
        name = sets[f.feature_set_id].name if f.feature_set_id in sets else f.feature_set_id
        with st.expander(f"{name}: the vector as JSON (copy with the button at its top right)"):
            st.code(json.dumps(np.asarray(f.value).tolist()), language="json", wrap_lines=True)


def more_like_this(item: Item, fs: FeatureSet) -> None:
    """Open the Search page searching from this item in ``fs`` (the state its "More like this" sets)."""
    st.session_state["search:set"] = fs.id
    st.session_state["search:mode"] = "Item"
    st.session_state["search:item-dataset"] = item.dataset_id
    st.session_state["search:item"] = item.id
    st.session_state.pop("search:custom", None)
    close_item_view()
    st.switch_page("app_pages/search.py")


def draw_more_like_this(item: Item, sets: dict[str, FeatureSet], features: list[Feature]) -> None:
    searchable = [sets[f.feature_set_id] for f in features
                  if f.feature_set_id in sets and sets[f.feature_set_id].entity_type == "item"]
    for fs in searchable:
        if st.button(f"More like this in {fs.name}", key=f"item_view:more:{fs.id}", icon=":material/travel_explore:"):
            more_like_this(item, fs)


def confirm_delete(item_id: str | None) -> None:
    if item_id is None:
        st.session_state.pop("item_view:confirm", None)
    else:
        st.session_state["item_view:confirm"] = item_id


def draw_delete(ws: Workspace, item: Item) -> None:
    """Delete with a confirmation that says what goes (the file only if no other item shares it)."""
    if st.session_state.get("item_view:confirm") != item.id:
        st.button("Delete this item…", key="item_view:delete", icon=":material/delete:",
                  on_click=confirm_delete, args=(item.id,))
        return
    st.warning(f"Delete {item.filename}? This deletes {ws.deletion_summary([item.id]).describe()}. "
               "It cannot be undone.", icon=":material/warning:")
    yes, no = st.columns(2)
    if yes.button("Yes, delete it", key="item_view:confirm-delete", type="primary", icon=":material/delete_forever:"):
        ws.delete_items([item.id])
        close_item_view()
        st.session_state[NOTICE] = f"Deleted {item.filename}."
        st.rerun()
    no.button("Cancel", key="item_view:cancel", on_click=confirm_delete, args=(None,))


def draw_steps(item_id: str, item_ids: Sequence[str], gallery_key: str) -> None:
    """Previous / next through the gallery the view was opened from, in its order (the
    search's ranks, the dataset page's sort)."""
    if len(item_ids) < 2:
        return
    at = list(item_ids).index(item_id)
    back, where, forward = st.columns([1, 2, 1])
    back.button("Previous", key="item_view:previous", icon=":material/chevron_left:", width="stretch",
                disabled=at == 0, on_click=request_item_view, args=(gallery_key, item_ids[at - 1]))
    where.caption(f"{at + 1} of {len(item_ids)} in this gallery")
    forward.button("Next", key="item_view:next", icon=":material/chevron_right:", width="stretch",
                   disabled=at == len(item_ids) - 1, on_click=request_item_view,
                   args=(gallery_key, item_ids[min(at + 1, len(item_ids) - 1)]))


@st.dialog("Item", width="large", on_dismiss=close_item_view)
def item_view(item_id: str, item_ids: Sequence[str] = (), gallery_key: str = "") -> None:
    from components.state import user_errors, workspace

    # Previous / next change the request: a click inside the dialog reruns it alone (it is a
    # fragment), with the arguments it was opened with, so the request says which item now.
    request = st.session_state.get(REQUEST)
    if request and request[0] == gallery_key and request[1] in item_ids:
        item_id = request[1]
    with user_errors():
        ws = workspace()
        try:
            item = ws.get_item(item_id)
        except NotFound:
            st.info("This item is no longer in the workspace (deleted meanwhile).")
            return
        draw_steps(item_id, item_ids, gallery_key)
        st.subheader(item.filename)
        annotations = item.annotations.list()
        features = list(item.features.list().all())
        sets = {fs.id: fs for fs in ws.feature_sets.list()}
        draw_content(item, annotations)
        draw_more_like_this(item, sets, features)
        draw_facts(ws, item)
        draw_annotations(annotations)
        draw_vectors(sets, features)
        draw_delete(ws, item)
