"""Search results as a table that downloads as CSV, and reading a pasted vector or id."""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

import pandas as pd
import streamlit as st

from store import Annotation, Feature, InvalidInput, Item

_NUMBER_LIST = re.compile(r"^[\s\[\]0-9eE+\-.,;]+$")


def parse_vector_or_id(text: str) -> list[float] | str | None:
    """A pasted vector ('0.1, 0.2 …' or a JSON list) or a feature id (anything else)."""
    text = (text or "").strip()
    if not text:
        return None
    if _NUMBER_LIST.match(text):
        try:
            values = json.loads(text) if text.startswith("[") else [float(x) for x in re.split(r"[\s,;]+", text) if x]
        except ValueError as exc:
            raise InvalidInput(f"the vector is not a list of numbers ({exc}); paste e.g. 0.1, 0.2, 0.3") from exc
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InvalidInput("the vector must be a flat list of numbers, e.g. [0.1, 0.2, 0.3]")
        return [float(v) for v in values]
    if any(ch.isspace() for ch in text):
        raise InvalidInput("paste either numbers (a vector) or one feature id, not both")
    return text


def rows(records: Sequence[Any], dataset_names: dict[str, str] | None = None) -> pd.DataFrame:
    names = dataset_names or {}
    out = []
    for rank, rec in enumerate(records, 1):
        if isinstance(rec, Item):
            row = {"name": rec.name, "filename": rec.filename, "kind": rec.kind,
                   "dataset": names.get(rec.dataset_id, rec.dataset_id), "hidden": rec.hidden, "id": rec.id}
        elif isinstance(rec, Annotation):
            row = {"label": rec.label, "item": rec.item_id, "id": rec.id}
        elif isinstance(rec, Feature):
            row = {"entity": rec.entity_id, "featureSet": rec.feature_set_id, "id": rec.id}
        else:
            row = {"id": getattr(rec, "id", str(rec))}
        out.append({"rank": rank, "distance": rec.distance, **row})
    return pd.DataFrame(out)


def results_table(frame: pd.DataFrame, *, key: str, file_name: str = "search-results.csv") -> None:
    if frame.empty:
        return
    st.dataframe(frame, hide_index=True, width="stretch", key=f"{key}:table",
                 column_config={"distance": st.column_config.NumberColumn("distance", format="%.6f")})
    # Made on the click, not on every rerun of the page that shows the table.
    st.download_button("Download as CSV", lambda: frame.to_csv(index=False).encode(), file_name=file_name,
                       mime="text/csv", key=f"{key}:csv", icon=":material/download:", on_click="ignore")
