"""Models that cannot run here are said early: which models have their weights on this
machine (the Hugging Face cache, a checkpoint, a folder; no network), refusing a set for a
model that cannot run before any job, and checking a local checkpoint at once."""
from __future__ import annotations

import pytest

from store import InvalidInput
from store.embedders import (
    ModelUnavailable, check_local_model, check_runs_here, create_feature_set, list_models, missing_here,
)
from store.embedders.spec import open_clip_hub_files, parse_spec
from tests.store.embed_models import register_tiny_arch, save_tiny_checkpoint, save_tiny_clip_dir

CLIP = "ViT-B-32/laion2b_s34b_b79k"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own (the hub is offline in tests)."""
    from huggingface_hub import constants

    folder = tmp_path / "hf-cache"
    folder.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return folder


def put_in_cache(cache, repo: str, filename: str, data: bytes = b"weights") -> None:
    """A file laid out as the hub client caches a download (refs/main -> a snapshot)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("0" * 40)
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(data)


def test_the_weights_of_a_pretrained_tag_are_where_open_clip_downloads_them():
    assert open_clip_hub_files(parse_spec(CLIP)) == (
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    assert open_clip_hub_files(parse_spec("hf-hub:org/repo"))[0] == "org/repo"


def test_a_model_not_in_the_cache_is_refused_at_set_creation_and_runs_once_cached(ws_embedded, hub_cache):
    missing = missing_here(CLIP)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in missing and "not in the Hugging Face cache" in missing
    listed = {m.name: m for m in list_models()}
    assert not listed[CLIP].here and "needs internet" in listed[CLIP].note
    assert listed["all-MiniLM-L6-v2"].here  # the packaged text model runs offline
    with pytest.raises(ModelUnavailable) as err:
        create_feature_set(ws_embedded, "photos", CLIP)
    message = str(err.value)
    assert message.startswith(f"cannot run {CLIP}") and "cannot be reached" in message
    assert "--weights FILE" in message and "A checkpoint on this machine" in message  # the ways out, CLI and app
    assert ws_embedded.feature_sets.list() == []  # nothing half made
    with pytest.raises(ModelUnavailable, match="cannot run the sentence-transformers model sentence-transformers/nope"):
        create_feature_set(ws_embedded, "texts", "sentence-transformers/nope")  # said before trying to load it

    put_in_cache(hub_cache, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    assert missing_here(CLIP) is None and {m.name: m for m in list_models()}[CLIP].here
    fs = create_feature_set(ws_embedded, "photos", CLIP)  # the size comes from the config: nothing loads
    assert fs.size == 512 and fs.model["name"] == CLIP


def test_the_cli_refuses_a_model_that_cannot_run_before_any_job(run_cli, tmp_path):
    proc = run_cli("sets", "--create", "photos", "--model", CLIP, ok=False,
                   env_extra={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert proc.returncode == 2 and f"cannot run {CLIP}" in proc.stderr and "--weights FILE" in proc.stderr
    assert "photos" not in run_cli("sets").stdout


def test_a_local_checkpoint_is_checked_at_once(tmp_path, hub_cache):
    arch = register_tiny_arch(tmp_path / "configs")
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    spec, size = check_local_model(str(checkpoint), arch)
    assert (spec.backend, spec.name, spec.weights, size) == ("open_clip", arch, str(checkpoint), 32)
    assert missing_here(spec) is None

    folder = save_tiny_clip_dir(tmp_path / "folder")
    spec, size = check_local_model(str(folder))
    assert spec.name == f"local-dir:{folder}" and size == 32

    # A folder holding only a checkpoint takes the architecture; without one it says so.
    lone = tmp_path / "lone"
    lone.mkdir()
    save_tiny_checkpoint(lone / "weights.safetensors")
    assert check_local_model(str(lone), arch)[0].weights == str(lone / "weights.safetensors")
    with pytest.raises(InvalidInput, match="holds the weights file weights.safetensors but no open_clip_config"):
        check_local_model(str(lone))
    with pytest.raises(InvalidInput, match="choose the open_clip architecture it was saved from"):
        check_local_model(str(checkpoint))


def test_a_wrong_path_names_the_right_backend_and_what_is_wrong(tmp_path, hub_cache):
    for path in ("/no/such/model", str(tmp_path / "gone")):
        with pytest.raises(InvalidInput) as err:
            check_local_model(path)
        assert "no file or folder" in str(err.value) and "sentence-transformers" not in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="is not a model folder: an open_clip folder holds open_clip_config.json"):
        check_local_model(str(empty))
    # A checkpoint of another architecture: open_clip's loader says what does not fit.
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    with pytest.raises(ModelUnavailable) as err:
        check_local_model(str(checkpoint), "RN50")
    message = str(err.value)
    assert message.startswith(f"cannot load the open_clip model from {checkpoint}") and "RN50" in message
    assert "sentence-transformers" not in message and "internet" not in message


def test_checking_a_model_that_is_here_reaches_no_network(hub_cache, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the check went to the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert check_runs_here("all-MiniLM-L6-v2").name == "all-MiniLM-L6-v2"
    assert [m for m in list_models() if m.here]  # the list only looks at files
