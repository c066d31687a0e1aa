"""The dataset scope of an analysis page: one dataset of the feature set (the one being worked
on) or all of them. A feature set spans datasets, and a saved selection or an import copies
items into it again, so unscoped searches and maps would show every copy."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import streamlit as st

from store import FeatureSet, Workspace, analysis

CURRENT = "dataset:current"  # the dataset being worked on: the last one picked on any page
ALL = "__all__"  # the "All datasets" choice (None cannot be told from "not set yet")


@dataclass
class Scope:
    """What a page looks at: ``dataset_id`` for the store (None: every dataset)."""

    dataset_id: str | None
    names: dict[str, str]  # dataset id -> name, of every dataset
    counts: dict[str, int]  # dataset id -> vectors of the set in it

    @property
    def many(self) -> bool:
        """More than one dataset in view: results must say which dataset they come from."""
        return self.dataset_id is None and len(self.counts) > 1

    @property
    def captions(self) -> dict[str, str] | None:
        """Dataset names for gallery captions (``item_gallery(datasets=...)``) when more than
        one dataset is in view; None when one is (the caption need not say)."""
        return self.names if self.many else None

    @property
    def label(self) -> str:
        return "all datasets" if self.dataset_id is None else self.names.get(self.dataset_id, self.dataset_id)

    def name(self, dataset_id: str | None) -> str:
        return self.names.get(dataset_id or "", dataset_id or "?")

    def sources(self, dataset_ids: Iterable[str | None]) -> str:
        """'notes (3), notes-copy (2)': where some results come from, most first."""
        counted = Counter(self.name(d) for d in dataset_ids)
        return ", ".join(f"{n} ({c})" for n, c in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))


def remember_dataset(dataset_id: str | None) -> None:
    """Make a dataset the one being worked on (the default scope of every page)."""
    if dataset_id and dataset_id != ALL:
        st.session_state[CURRENT] = dataset_id


def dataset_scope(ws: Workspace, fs: FeatureSet, *, key: str, label: str = "Datasets") -> Scope:
    """The scope picker, shown when the set's vectors lie in more than one dataset: the
    datasets holding them and "All datasets"; it starts at the dataset being worked on
    (else the first with vectors). With one dataset (or none) there is nothing to pick."""
    counts = analysis.vector_counts(ws, fs)
    names = {d.id: d.name for d in ws.datasets.list()}
    if len(counts) <= 1:
        return Scope(None, names, counts)
    options = [*counts, ALL]
    if st.session_state.get(key) not in options:
        current = st.session_state.get(CURRENT)
        st.session_state[key] = current if current in counts else next(iter(counts))
    choice = st.selectbox(label, options, key=key,
                          format_func=lambda v: "All datasets" if v == ALL else names.get(v, v),
                          help=f"{fs.name} holds vectors of {len(counts)} datasets (a saved selection or an "
                               "import copies items into the same sets). All datasets shows every copy.")
    remember_dataset(choice)  # the page's pick is the dataset being worked on, on every page
    return Scope(None if choice == ALL else choice, names, counts)
