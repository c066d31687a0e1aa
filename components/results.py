"""Search results as a table that downloads as CSV."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from store import Annotation, Feature, Item


def rows(records: Sequence[Any], dataset_names: dict[str, str] | None = None, *, first_rank: int = 1) -> pd.DataFrame:
    """One row per result, ranked from ``first_rank`` (a later page goes on counting)."""
    names = dataset_names or {}
    out = []
    for rank, rec in enumerate(records, first_rank):
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


def results_table(frame: pd.DataFrame, *, key: str, file_name: str = "search-results.csv",
                  everything: Callable[[], pd.DataFrame] | None = None) -> None:
    """The table; its CSV holds ``everything()`` when given (every page of the results, built
    only when the button is clicked), else the table."""
    if frame.empty:
        return
    st.dataframe(frame, hide_index=True, width="stretch", key=f"{key}:table",
                 column_config={"distance": st.column_config.NumberColumn("distance", format="%.6f")})

    def data() -> bytes:  # made on the click, not on every rerun of the page that shows the table
        return (everything() if everything else frame).to_csv(index=False).encode()

    st.download_button("Download as CSV" + (" (every page)" if everything else ""), data, file_name=file_name,
                       mime="text/csv", key=f"{key}:csv", icon=":material/download:", on_click="ignore")
