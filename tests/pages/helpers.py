"""Helpers for the page tests."""
from __future__ import annotations

import io
import time

from streamlit.testing.v1 import AppTest


def ok(at: AppTest) -> AppTest:
    """No exception and no error on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> list:
    """The page's plotly charts, without the hidden one that preloads plotly.js (app.py)."""
    from components.preload import KEY

    return [c for c in at.get("plotly_chart") if KEY not in c.proto.id]


def texts(at: AppTest) -> str:
    """Everything the page says, for assertions on messages."""
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    for kind in ("success", "info", "warning", "error"):
        parts += [m.value for m in getattr(at, kind)]
    return "\n".join(parts)


def wait_for_job(at: AppTest, key: str, timeout: float = 240) -> AppTest:
    """Block on the background job under ``key`` (its thread), then rerun the page once:
    no page reruns while it works (each one a whole run of the app, competing with the
    job for the CPU)."""
    from components.jobs import wait_for

    deadline = time.time() + timeout
    slot = f"job:{key}"
    while slot not in at.session_state:  # started by a run still to come
        if time.time() > deadline:
            raise AssertionError(f"job {key} never started in {timeout} s")
        time.sleep(0.1)
        at.run()
    job = at.session_state[slot]
    wait_for(job, max(0.0, deadline - time.time()))
    if job.running:
        raise AssertionError(f"job {key} still running after {timeout} s")
    return at.run()


def png(color=(200, 30, 30), size=(32, 24)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def tiny_clip(folder) -> str:
    """A small open_clip model with random weights, saved the way a user's local model is
    (``open_clip_config.json`` + safetensors in a folder): the name to give featurelab."""
    import json
    from pathlib import Path

    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    folder = Path(folder)
    if not (folder / "open_clip_model.safetensors").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"embed_dim": 32,
               "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
        torch.manual_seed(0)
        save_file(CLIP(**cfg).state_dict(), str(folder / "open_clip_model.safetensors"))
        (folder / "open_clip_config.json").write_text(json.dumps({
            "model_cfg": cfg,
            "preprocess_cfg": {"mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276]},
        }))
    return f"local-dir:{folder.resolve()}"


def plotly_values(values) -> list:
    """A plotly array as a list (plotly sends numeric arrays as base64 typed arrays)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)
