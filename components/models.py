"""The models the app can offer, from the store's registry (``store.embedders``)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from store import embedders


@st.cache_data(ttl=300, show_spinner=False)
def _catalogue() -> dict[str, int]:
    return {m.name: int(m.size) for m in embedders.list_models()}


def model_choices() -> list[str]:
    """Names a feature set can link to: the packaged text model, then every open_clip pair."""
    return list(_catalogue())


def model_label(model: Any) -> str:
    if isinstance(model, str):
        return model
    return (model or {}).get("name") or str(model)


@st.cache_data(show_spinner="Reading the model's size…")
def _size(name: str, weights: str | None) -> int:
    return int(embedders.model_size(embedders.parse_spec(name, weights=weights)))


def model_size(name: str, weights: str | None = None) -> int:
    """Vector length of a model; known models need no loading."""
    if weights is None and name in _catalogue():
        return _catalogue()[name]
    return _size(name, weights)


def model_record(name: str, weights: str | None = None) -> dict:
    """What a feature set stores as its ``model``: name, backend, weights, normalize, size."""
    spec = embedders.parse_spec(name, weights=weights)
    return spec.to_dict(model_size(name, weights))


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """Where models run: the GPU's name, or CPU."""
    from store.embedders import resolve_device

    device = resolve_device(None)
    if device.startswith("cuda"):
        import torch

        return f"GPU · {torch.cuda.get_device_name(torch.device(device))}"
    return "CPU" if device == "cpu" else device.upper()
