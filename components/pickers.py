"""Pickers for the things a page works on: datasets, feature sets, items."""
from __future__ import annotations

import streamlit as st

from components.scope import remember_dataset
from store import Dataset, FeatureSet, Workspace

NEW_DATASET = "+ New dataset…"


def kept_choice(key: str, options: list) -> None:
    """Streamlit forgets a widget's value on a run that does not draw it (another page), so
    each picker keeps its choice under a key of its own and restores it on the way back."""
    kept = f"kept:{key}"
    if key not in st.session_state and kept in st.session_state and st.session_state[kept] in options:
        st.session_state[key] = st.session_state[kept]


def keep_choice(key: str, choice) -> None:
    st.session_state[f"kept:{key}"] = choice


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
    kept_choice(key, options)
    choice = st.selectbox(
        label, options, key=key,
        format_func=lambda v: "All datasets" if v is None else names.get(v, v),
    )
    keep_choice(key, choice)
    if choice not in (None, NEW_DATASET):
        remember_dataset(choice)  # the dataset being worked on: the default scope of the other pages
    if choice == NEW_DATASET:
        name = st.text_input("Name of the new dataset", key=f"{key}:new", placeholder="e.g. pets")
        return name.strip() or ""
    return None if choice is None else next(d for d in datasets if d.id == choice)


def feature_set_picker(ws: Workspace, label: str = "Feature set", *, key: str,
                       sets: list[FeatureSet] | None = None) -> FeatureSet | None:
    """A feature set (of ``sets``, or all), or None with a hint when there is none."""
    sets = ws.feature_sets.list() if sets is None else sets
    if not sets:
        st.info("No feature set yet: create one on the **Feature sets** page.")
        return None
    by_id = {fs.id: fs for fs in sets}
    kept_choice(key, list(by_id))
    choice = st.selectbox(label, list(by_id), key=key, format_func=lambda i: describe_set(by_id[i]))
    keep_choice(key, choice)
    return by_id[choice]
