"""The models the app can offer, from the store's registry (``store.embedders``)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from store import FeaturelabError, embedders
from store.embedders import ModelUnavailable


@st.cache_data(ttl=300, show_spinner=False)
def _catalogue() -> dict[str, tuple[int, bool]]:
    """Each model's (size, runs offline here): a look at files, never the network."""
    return {m.name: (int(m.size), m.here) for m in embedders.list_models()}


def model_choices() -> list[str]:
    """Names a feature set can link to: those whose weights are on this machine first (the
    packaged text model, cached open_clip pairs), then those that need a download."""
    names = list(_catalogue())
    return [n for n in names if _catalogue()[n][1]] + [n for n in names if not _catalogue()[n][1]]


def runs_offline(name: str) -> bool:
    return name in _catalogue() and _catalogue()[name][1]


def model_label(model: Any) -> str:
    if isinstance(model, str):
        return model
    return (model or {}).get("name") or str(model)


def model_choice_label(name: str) -> str:
    """A model list entry that says whether it runs offline here."""
    return f"{name} · runs offline" if runs_offline(name) else f"{name} · needs a download"


@st.cache_data(show_spinner="Loading the model to check it…", max_entries=16)
def _checked_local(path: str, architecture: str | None, stamp: float) -> dict | str:
    """The record, or what is wrong (kept too: a bad checkpoint is not loaded on every rerun)."""
    try:
        spec, size = embedders.check_local_model(path, architecture)
    except FeaturelabError as exc:
        return str(exc)
    return spec.to_dict(size)


def local_model_record(path: str, architecture: str | None = None) -> dict:
    """The record of a checkpoint file or model folder on this machine, loaded once to
    prove it (again when the file changes); a bad one raises what is wrong."""
    from pathlib import Path

    where = Path(path).expanduser()
    stamp = where.stat().st_mtime if where.exists() else 0.0
    checked = _checked_local(path, architecture, stamp)
    if isinstance(checked, str):
        raise ModelUnavailable(checked)
    return checked


def architectures() -> list[str]:
    """open_clip's architectures, for a checkpoint file."""
    return sorted(embedders.open_clip_architectures())


@st.cache_data(show_spinner="Reading the model's size…")
def _size(name: str, weights: str | None) -> int:
    return int(embedders.model_size(embedders.parse_spec(name, weights=weights)))


def model_size(name: str, weights: str | None = None) -> int:
    """Vector length of a model; known models need no loading."""
    if weights is None and name in _catalogue():
        return _catalogue()[name][0]
    return _size(name, weights)


def model_record(name: str, weights: str | None = None) -> dict:
    """What a feature set stores as its ``model``: name, backend, weights, normalize, size.
    A model that cannot run here (weights neither here nor reachable) raises ModelUnavailable."""
    spec = _runs_here(embedders.parse_spec(name, weights=weights))
    return spec.to_dict(model_size(name, weights))


def cannot_run_here(model: dict | str) -> str | None:
    """Why a set's model cannot run on this machine now, or None: said before a job starts."""
    try:
        _runs_here(embedders.parse_spec(model))
    except FeaturelabError as exc:
        return str(exc)
    return None


@st.cache_data(ttl=60, show_spinner=False)
def _runs_here(spec: "embedders.ModelSpec") -> "embedders.ModelSpec":
    return embedders.check_runs_here(spec)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """Where models run: the GPU's name, or CPU."""
    from store.embedders import resolve_device

    device = resolve_device(None)
    if device.startswith("cuda"):
        import torch

        return f"GPU · {torch.cuda.get_device_name(torch.device(device))}"
    return "CPU" if device == "cpu" else device.upper()
