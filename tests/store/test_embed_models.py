"""The model registry and the embedders: the fast path computes open_clip's and
sentence-transformers' own function, checkpoints load without running code, the awkward
image cases are decided on purpose, models load once per process."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from store import InvalidInput
from store.embedders import (
    DEFAULT_TEXT_MODEL, ModelUnavailable, list_models, load_embedder, model_size, packaged_minilm_path, parse_spec,
)
from store.embedders import devices, images, registry
from tests.conftest import ROOT
from tests.store.embed_models import (
    TEXTS, cosine_rows, encode, generated_images, reference_clip, reference_image_vectors, reference_text_vectors,
    register_tiny_arch, sample_photos, save_tiny_checkpoint, save_tiny_clip_dir, tiny_clip_model,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_embedder(f"local-dir:{tiny_dir}", "cpu")


@pytest.fixture(scope="module")
def reference(tiny_dir):
    return reference_clip(tiny_dir)


def test_image_vectors_match_open_clip_reference_on_photos_and_generated_images(tiny, reference):
    model, preprocess, _ = reference
    pictures = {**sample_photos(), **generated_images()}
    ours = tiny.embed_images(list(pictures.values()), batch_size=5)
    ref = reference_image_vectors(model, preprocess, list(pictures.values()))
    cos = cosine_rows(ours, ref)
    assert cos.min() >= 0.999, dict(zip(pictures, cos.round(5)))
    # The model tells the pictures apart, so agreeing with the reference means something.
    pairwise = ref @ ref.T
    assert pairwise[~np.eye(len(ref), dtype=bool)].min() < 0.95


def test_model_input_is_the_reference_preprocess(tiny, reference):
    """Input-level check, independent of how forgiving random weights are: the tensor the
    model sees is the model's own preprocess of the PIL image, to within one grey level on
    under 1% of the values (torch's resize kernel against Pillow's), and within 2% of the
    pixel spread where a large JPEG is decoded at a reduced scale."""
    _, preprocess, _ = reference
    one_level = 1.001 / 255 / min(preprocess.transforms[-1].std)
    pictures = {**sample_photos(), **generated_images()}
    for name, data in pictures.items():
        picture = Image.open(io.BytesIO(data))
        # On purpose: palette images become RGB before resizing (resizing palette indices
        # would fall back to nearest-neighbour).
        expected = preprocess(picture.convert("RGB") if picture.mode == "P" else picture)
        got = tiny.model_input(tiny.prepare_image(data)[None])[0]
        diff = (got - expected).abs()
        if "large" in name or name == "shapes-2.jpg":
            assert diff.mean().item() < 0.02 * expected.std().item(), name
        else:
            assert diff.max().item() <= one_level and (diff > 0).float().mean().item() < 0.01, name
    # A wrong pipeline (squashing instead of resize + centre crop) is far off.
    photo = Image.open(io.BytesIO(pictures["china.jpg"]))
    squashed = preprocess(photo.resize((224, 224), Image.BICUBIC))
    assert (squashed - preprocess(photo)).abs().mean().item() > 0.1


def test_clip_text_vectors_match_reference(tiny, reference):
    model, _, tokenizer = reference
    ours = tiny.embed_texts(TEXTS, batch_size=4)
    ref = reference_text_vectors(model, tokenizer, TEXTS)
    assert cosine_rows(ours, ref).min() >= 0.999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_checkpoint_file_loads_through_the_registry(tmp_path, suffix):
    arch = register_tiny_arch(tmp_path / "configs")
    file = save_tiny_checkpoint(tmp_path / f"weights{suffix}", seed=7)
    spec = parse_spec(arch, weights=file)
    assert spec.to_dict()["weights"] == str(file.resolve())
    emb = load_embedder(spec, "cpu")
    photos = list(sample_photos().values())[:2]
    import open_clip

    preprocess = open_clip.transform.image_transform_v2(open_clip.transform.PreprocessCfg(size=224), is_train=False)
    same_weights = reference_image_vectors(tiny_clip_model(seed=7), preprocess, photos)
    other_weights = reference_image_vectors(tiny_clip_model(seed=8), preprocess, photos)
    ours = emb.embed_images(photos)
    assert cosine_rows(ours, same_weights).min() >= 0.999
    assert cosine_rows(ours, other_weights).max() < 0.99  # the file's weights were really loaded


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    import torch

    arch = register_tiny_arch(tmp_path / "configs")
    marker = tmp_path / "code-ran"
    file = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_clip_model().state_dict(), "hook": _RunsCodeWhenUnpickled(marker)}, file)
    with pytest.raises(ModelUnavailable, match="weights_only=True"):
        load_embedder(parse_spec(arch, weights=file), "cpu")
    assert not marker.exists()


def test_sentence_model_matches_sentence_transformers_encode():
    from sentence_transformers import SentenceTransformer

    emb = load_embedder(DEFAULT_TEXT_MODEL, "cpu")
    assert emb.size == 384 and emb.normalize and not emb.supports("image")
    ref = SentenceTransformer(str(packaged_minilm_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    ours = emb.embed_texts(TEXTS, batch_size=3)
    assert cosine_rows(ours, ref).min() >= 0.999
    # A model folder given by path is the same model.
    by_folder = load_embedder(str(packaged_minilm_path()), "cpu")
    assert cosine_rows(by_folder.embed_texts(TEXTS[:2]), ref[:2]).min() >= 0.999
    with pytest.raises(InvalidInput, match="text only"):
        emb.embed_images([sample_photos()["china.jpg"]])


def test_models_load_once_per_process(tiny_dir):
    first = load_embedder(f"local-dir:{tiny_dir}", "cpu")
    assert load_embedder({"name": f"local-dir:{tiny_dir}", "backend": "open_clip"}, None if devices.resolve_device() == "cpu" else "cpu") is first
    raw = load_embedder(parse_spec(f"local-dir:{tiny_dir}", normalize=False), "cpu")
    assert raw is not first and raw.model is first.model and not raw.normalize
    photo = [sample_photos()["flower.jpg"]]
    assert abs(np.linalg.norm(raw.embed_images(photo)) - 1.0) > 1e-3
    assert abs(np.linalg.norm(first.embed_images(photo)) - 1.0) < 1e-5
    assert sum(e.model is first.model for e in registry.loaded_embedders()) == 2


def test_registry_lists_models_with_their_sizes(tiny_dir):
    models = {m.name: m for m in list_models()}
    assert list_models()[0].name == DEFAULT_TEXT_MODEL and models[DEFAULT_TEXT_MODEL].size == 384
    import open_clip

    assert len(models) == len(open_clip.list_pretrained()) + 1
    assert models["ViT-B-32/laion2b_s34b_b79k"].size == 512 and models["RN50/openai"].size == 1024
    assert model_size("ViT-B-32/laion2b_s34b_b79k") == 512  # from the config, no weights needed
    assert model_size(f"local-dir:{tiny_dir}") == 32
    assert model_size("sentence-transformers/all-MiniLM-L6-v2") == 384


def test_model_names_are_checked():
    with pytest.raises(InvalidInput, match="needs weights.*--weights FILE"):
        parse_spec("ViT-B-32")
    with pytest.raises(InvalidInput, match="no pretrained tag 'nope'"):
        parse_spec("ViT-B-32/nope")
    spec = parse_spec("ViT-B-32/laion2b_s34b_b79k")
    assert (spec.backend, spec.name, spec.pretrained) == ("open_clip", "ViT-B-32", "laion2b_s34b_b79k")
    assert parse_spec(spec.to_dict(512)) == spec
    assert parse_spec("sentence-transformers/all-MiniLM-L6-v2").name == DEFAULT_TEXT_MODEL


def test_missing_weights_name_both_ways_out(tmp_path):
    with pytest.raises(ModelUnavailable) as err:
        load_embedder("ViT-B-32/laion2b_s34b_b79k", "cpu")
    assert "Hugging Face cache" in str(err.value) and "--weights FILE" in str(err.value)
    with pytest.raises(ModelUnavailable) as err:
        load_embedder("sentence-transformers/not-a-real-model-xyz", "cpu")
    assert "Hugging Face cache" in str(err.value) and "--weights FOLDER" in str(err.value)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_embedder(parse_spec("ViT-B-32/laion2b_s34b_b79k", weights=tmp_path / "gone.pt"), "cpu")


def test_device_defaults_and_overrides():
    import torch

    assert devices.resolve_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.resolve_device("CPU") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="no CUDA GPU"):
            devices.resolve_device("cuda")
    assert devices.autocast_dtype("cpu") is None
    with pytest.raises(InvalidInput, match="unknown device"):
        devices.resolve_device("tpu")



def test_one_query_runs_on_one_cpu_thread_and_a_batch_on_all():
    """A single text is embedded on one CPU thread (more only wait on each other, and far
    worse on a busy machine); a batch keeps every thread, and the count comes back after."""
    import threading

    import torch

    from store.devices import one_cpu_thread

    emb = load_embedder(DEFAULT_TEXT_MODEL, "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: list[int] = []
    hook = emb.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        emb.embed_texts(["one query"])
        emb.embed_texts(TEXTS[:3])
        assert seen == [1, 2] and torch.get_num_threads() == 2
        # The count is the thread's own: a block in another thread leaves this one's alone.
        inside, leave = threading.Event(), threading.Event()

        def other() -> None:
            with one_cpu_thread(torch, "cpu"):
                inside.set()
                leave.wait(10)
        worker = threading.Thread(target=other)
        with one_cpu_thread(torch, "cpu"):
            worker.start()
            inside.wait(10)
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2  # the other block still runs
        leave.set()
        worker.join(10)
        assert torch.get_num_threads() == 2
        with one_cpu_thread(torch, "cuda"):  # not the CPU: nothing changes
            assert torch.get_num_threads() == 2
    finally:
        hook.remove()
        torch.set_num_threads(before)

# ---- the awkward image cases ---------------------------------------------------------------
def _photo(size=(120, 80)) -> Image.Image:
    from sklearn.datasets import load_sample_images

    return Image.fromarray(load_sample_images().images[0]).resize(size, Image.BICUBIC)


def test_exif_orientation_is_applied():
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    data = encode(photo, "PNG", exif=exif.tobytes())
    shown = images.open_rgb(data)
    assert shown.size == (80, 120)
    assert np.array_equal(np.asarray(shown), np.asarray(photo.transpose(Image.Transpose.ROTATE_270)))


def test_the_pipeline_decoder_gives_pillows_pixels():
    """The fast JPEG decode (torchvision's) gives the same RGB pixels as the Pillow path,
    EXIF orientation and grey JPEGs included; CMYK goes through Pillow's ICC handling."""
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 8
    cases = {
        "rotated": encode(photo, "JPEG", quality=92, exif=exif.tobytes()),
        "grey": encode(photo.convert("L"), "JPEG"),
        "cmyk": encode(photo.convert("CMYK"), "JPEG"),
        "progressive": encode(photo, "JPEG", progressive=True),
    }
    for name, data in cases.items():
        expected = np.asarray(images.open_rgb(data))
        got = images.decode_pixels(data).permute(1, 2, 0).numpy()
        assert got.shape == expected.shape and np.array_equal(got, expected), name
    assert images.decode_pixels(cases["rotated"]).shape[1:] == (120, 80)
    with pytest.raises(InvalidInput, match="cannot decode"):
        images.decode_pixels(cases["rotated"][:-200])


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 10, 20, 20))
    out = np.asarray(images.open_rgb(encode(rgba, "PNG")))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[15, 15]) == (0, 0, 255)


def test_sixteen_bit_images_are_scaled_not_clipped():
    grey8 = np.asarray(_photo().convert("L"), dtype=np.uint16)
    sixteen = Image.fromarray((grey8 * 257).astype(np.uint16))  # the same picture in 16 bits
    assert sixteen.mode.startswith("I;16")
    out = np.asarray(images.open_rgb(encode(sixteen, "PNG")))[:, :, 0].astype(int)
    assert np.abs(out - grey8).max() <= 1
    assert np.asarray(sixteen.convert("RGB")).mean() > 250  # what a plain convert would have fed the model


def test_cmyk_becomes_rgb_of_the_same_picture():
    photo = _photo()
    out = np.asarray(images.open_rgb(encode(photo.convert("CMYK"), "JPEG", quality=95)), dtype=float)
    assert np.abs(out - np.asarray(photo, dtype=float)).mean() < 8


def test_damaged_and_oversized_images_are_refused(monkeypatch):
    data = encode(_photo(), "JPEG")
    with pytest.raises(InvalidInput, match="cannot decode"):
        images.open_rgb(data[: len(data) // 2])
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 50 * 50)
    with pytest.raises(InvalidInput, match="over the"):
        images.open_rgb(data)


def test_backends_are_data_and_a_spec_says_what_it_embeds():
    from store import errors
    from store.embedders import BACKENDS, DEFAULT_IMAGE_MODEL

    text, clip = parse_spec(DEFAULT_TEXT_MODEL), parse_spec(DEFAULT_IMAGE_MODEL)
    assert (text.embeds_text, text.embeds_images, text.size_from_config) == (True, False, False)
    assert (clip.embeds_text, clip.embeds_images, clip.size_from_config) == (True, True, True)
    assert sorted(BACKENDS) == ["open_clip", "sentence_transformers"]
    assert {b.name: b.embeds_images for b in BACKENDS.values()} == {"open_clip": True, "sentence_transformers": False}
    with pytest.raises(InvalidInput, match=r"featurelab runs \['open_clip', 'sentence_transformers'\]"):
        parse_spec({"name": "x", "backend": "onnx"})
    assert ModelUnavailable is errors.ModelUnavailable is registry.ModelUnavailable


def test_importing_the_embedders_wing_loads_no_model_library():
    code = ("import sys, store.embedders, store.embedders.spec; "
            "print(sorted(m for m in ('torch', 'open_clip', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "[]"
