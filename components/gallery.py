"""A gallery of items: thumbnails for images, a snippet for text, the distance when there is one."""
from __future__ import annotations

import io
from typing import Callable, Mapping, Sequence

import streamlit as st

from store import Item

THUMB = 160


@st.cache_data(max_entries=5000, show_spinner=False)
def thumbnail(sha256: str, path: str, size: int = THUMB) -> bytes | None:
    """A PNG thumbnail of an image file (keyed by its content hash, so never stale).
    Small images are scaled up without smoothing so that 8x8 digits stay readable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, img)
            img = img.convert("RGB")
            if max(img.size) < size // 2:
                scale = max(1, (size // 2) // max(img.size))
                img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return buf.getvalue()
    except Exception:  # a damaged file shows as a placeholder, never an error
        return None


def snippet(item: Item, chars: int = 180) -> str:
    """The start of a text item, on one line (read once per content: a rerun reads no file)."""
    return _snippet(item.sha256, str(item.path), chars)


@st.cache_data(max_entries=5000, show_spinner=False)
def _snippet(sha256: str, path: str, chars: int) -> str:
    with open(path, "rb") as f:
        text = f.read(chars * 4).decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:chars] + ("…" if len(text) > chars else "")


def caption(item: Item, datasets: Mapping[str, str] | None = None) -> str:
    """'/folder/name · d=0.1234', and ' · <dataset>' when ``datasets`` (id -> name) is given:
    where more than one dataset is in view, each thumbnail says which one it comes from."""
    base = item.filename
    if item.distance is not None:
        d = item.distance
        base += f" · d={d:.4f}" if d < 10 else f" · d={d:.4g}"
    if datasets is not None:
        base += f" · {datasets.get(item.dataset_id, item.dataset_id)}"
    return base


def open_button(item: Item, key: str, position: int) -> None:
    """The cell's way into the item view (components.item_view), the same in every gallery.
    Keyed by the cell's position, the item going in the callback's args: new results (a new
    query) update the cells in place instead of remounting each one, and a click opens the
    item the cell showed in the run that drew it."""
    from components.item_view import request_item_view

    st.button("Open", key=f"{key}:open:{position}", on_click=request_item_view, args=(key, item.id),
              icon=":material/open_in_full:", width="stretch", help="Full size, metadata, annotations, vectors")


def draw_cell(item: Item, thumb: int, datasets: Mapping[str, str] | None = None) -> None:
    text = caption(item, datasets)
    if item.kind == "image":
        data = thumbnail(item.sha256, str(item.path), thumb)
        if data:
            st.image(data, caption=text, width="stretch")
        else:
            st.caption(f"{text} (cannot show)")
    elif item.kind == "text":
        st.caption(text)
        st.text(snippet(item))
    else:
        st.caption(f"{text} ({item.mimetype})")


def item_gallery(
    items: Sequence[Item],
    *,
    columns: int = 6,
    key: str,
    on_more: Callable[[Item], None] | None = None,
    thumb: int = THUMB,
    datasets: Mapping[str, str] | None = None,
) -> None:
    """Items in a grid, each with an "Open" button (the item view); ``on_more`` adds a
    "More like this" button under each; ``thumb`` is the thumbnails' size in pixels;
    ``datasets`` (id -> name) names each item's dataset in its caption."""
    from components.item_view import show_requested_item

    if not items:
        return
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for offset, (col, item) in enumerate(zip(cols, items[start : start + columns])):
            position = start + offset
            with col.container(border=True, key=f"{key}:cell:{position}"):
                draw_cell(item, thumb, datasets)
                open_button(item, key, position)
                if on_more is not None:  # keyed by position too (see open_button)
                    st.button("More like this", key=f"{key}:more:{position}", on_click=on_more, args=(item,),
                              icon=":material/travel_explore:", width="stretch")
    show_requested_item(key, [item.id for item in items])
