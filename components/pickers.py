"""Pickers for the things a page works on: datasets, feature sets, items."""
from __future__ import annotations

import streamlit as st

from store import Dataset, FeatureSet, Workspace

NEW_DATASET = "+ New dataset…"


def describe_set(fs: FeatureSet) -> str:
    # Only what never changes: a selectbox keeps its choice by this label.
    return f"{fs.name} · size {fs.size}"


def dataset_picker(ws: Workspace, label: str = "Dataset", *, key: str, allow_new: bool = False,
                   allow_all: bool = False) -> Dataset | str | None:
    """A dataset; with ``allow_new`` the name typed for a new one (a str); with
    ``allow_all`` None stands for every dataset."""
    datasets = ws.datasets.list()
    options: list = [d.id for d in datasets]
    names = {d.id: d.name for d in datasets}
    if allow_all:
        options.insert(0, None)
    if allow_new:
        options.append(NEW_DATASET)
    if not options:
        st.info("No dataset yet: upload files on the **Upload** page, or load the sample data on **Home**.")
        return None
    choice = st.selectbox(
        label, options, key=key,
        format_func=lambda v: "All datasets" if v is None else names.get(v, v),
    )
    if choice == NEW_DATASET:
        name = st.text_input("Name of the new dataset", key=f"{key}:new", placeholder="e.g. pets")
        return name.strip() or ""
    return None if choice is None else next(d for d in datasets if d.id == choice)


def feature_set_picker(ws: Workspace, label: str = "Feature set", *, key: str,
                       sets: list[FeatureSet] | None = None) -> FeatureSet | None:
    sets = ws.feature_sets.list() if sets is None else sets
    if not sets:
        st.info("No feature set yet: create one on the **Feature sets** page.")
        return None
    by_id = {fs.id: fs for fs in sets}
    choice = st.selectbox(label, list(by_id), key=key, format_func=lambda i: describe_set(by_id[i]))
    return by_id[choice]
