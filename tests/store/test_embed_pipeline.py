"""The embedding job end to end: real workspace, real Chroma, real (tiny) models."""
from __future__ import annotations

import io
import os
import signal
import textwrap
import threading

import numpy as np
import pytest
from PIL import Image

from store import Filters, InvalidInput, Workspace
from store.embedders import (
    DEFAULT_TEXT_MODEL, create_feature_set, embed_dataset, load_embedder, loaded_embedders, packaged_minilm_path,
    query_vector,
)
from tests.conftest import ROOT
from tests.forkserver import run_python
from tests.store.embed_models import (
    TEXTS, cosine_rows, encode, generated_images, reference_clip, reference_image_vectors, reference_text_vectors,
    sample_photos, save_tiny_clip_dir,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def reference(tiny_dir):
    return reference_clip(tiny_dir)


def _pictures(n: int | None = None) -> dict[str, bytes]:
    pictures = {**sample_photos(), **generated_images()}
    return dict(list(pictures.items())[:n]) if n else pictures


def _upload(ds, files: dict[str, bytes]) -> dict[str, object]:
    results = ds.items.upload(list(files.items()))
    assert all(r.status == "added" for r in results), [(r.name, r.message) for r in results]
    return {r.item.name: r.item for r in results}


def _stored(ws, fs) -> dict[str, np.ndarray]:
    rows = ws.catalog.all("SELECT entity_id, value FROM features WHERE feature_set_id=?", (fs.id,))
    return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}


def test_images_and_texts_are_embedded_like_the_reference(ws_embedded, tiny_dir, reference):
    ws = ws_embedded
    model, preprocess, tokenizer = reference
    pictures = _pictures()
    texts = {f"note-{i}.txt": t.encode() for i, t in enumerate(TEXTS) if t}
    ds = ws.datasets.create("mixed")
    items = _upload(ds, {**pictures, **texts, "blob.bin": bytes(range(256))})
    fs = create_feature_set(ws, "clip", f"local-dir:{tiny_dir}")
    assert fs.size == 32 and fs.model["backend"] == "open_clip" and fs.model["normalize"] is True

    report = embed_dataset(ws, ds, fs, device="cpu", batch_size=3)

    assert (report.embedded, report.skipped, report.failed) == (len(pictures) + len(texts), 1, 0)
    assert report.failures == [(items["blob.bin"].id, "/blob.bin", "unsupported: a other file is neither an image nor text")]
    assert report.device == "cpu" and report.batch_size == 3 and not report.cancelled
    stored = _stored(ws, fs)
    image_vectors = np.stack([stored[items[n].id] for n in pictures])
    assert cosine_rows(image_vectors, reference_image_vectors(model, preprocess, list(pictures.values()))).min() >= 0.999
    text_vectors = np.stack([stored[items[n].id] for n in texts])
    ref_texts = reference_text_vectors(model, tokenizer, [t.decode() for t in texts.values()])
    assert cosine_rows(text_vectors, ref_texts).min() >= 0.999
    assert ws.check_index(fs.id)["ok"] and ws.check_index(fs.id)["index"] == report.embedded

    # Search with a query image by the set's own model finds that image first.
    vec = query_vector(ws, fs, image_bytes=pictures["flower.jpg"])
    hits = ds.items.list(Filters().add_euclid(fs, vec, k=3)).items
    assert hits[0].name == "flower.jpg" and hits[0].distance < 1e-3


def test_rerun_embeds_only_what_is_missing_and_recompute_redoes_all(ws, tiny_dir):
    ds = ws.datasets.create("d")
    items = _upload(ds, _pictures(4))
    fs = create_feature_set(ws, "s", f"local-dir:{tiny_dir}")
    first = embed_dataset(ws, ds, fs, device="cpu")
    assert first.embedded == 4 and first.already_done == 0
    ids_before = {r[0]: r[1] for r in ws.catalog.all("SELECT entity_id, id FROM features WHERE feature_set_id=?", (fs.id,))}
    one = next(iter(items.values()))
    fs.features.delete(ids_before[one.id])

    again = embed_dataset(ws, ds, fs, device="cpu")
    assert (again.embedded, again.already_done) == (1, 3)
    ids_after = {r[0]: r[1] for r in ws.catalog.all("SELECT entity_id, id FROM features WHERE feature_set_id=?", (fs.id,))}
    assert {k: v for k, v in ids_after.items() if k != one.id} == {k: v for k, v in ids_before.items() if k != one.id}

    redo = embed_dataset(ws, ds, fs, device="cpu", recompute=True)
    assert (redo.embedded, redo.already_done) == (4, 0) and fs.count() == 4
    assert ws.check_index(fs.id) == {"ok": True, "catalog": 4, "index": 4}


def test_corrupt_and_missing_files_are_reported_and_skipped(ws_embedded, tiny_dir):
    ws = ws_embedded
    ds = ws.datasets.create("d")
    items = _upload(ds, _pictures(5))
    names = list(items)
    broken, missing = items[names[1]], items[names[3]]
    data = broken.path.read_bytes()
    broken.path.write_bytes(data[: len(data) // 3])  # damaged on disk after upload
    missing.path.unlink()
    fs = create_feature_set(ws, "s", f"local-dir:{tiny_dir}")

    report = embed_dataset(ws, ds, fs, device="cpu", batch_size=2)

    assert (report.embedded, report.failed, report.skipped) == (3, 2, 0)
    reasons = {entity: (name, why) for entity, name, why in report.failures}
    assert reasons[broken.id][0] == broken.filename and "cannot decode" in reasons[broken.id][1]
    assert reasons[missing.id][0] == missing.filename and "missing" in reasons[missing.id][1]
    assert set(_stored(ws, fs)) == {items[n].id for n in names} - {broken.id, missing.id}


def test_annotation_sets_embed_the_box_crops(ws_embedded, tiny_dir, reference):
    ws = ws_embedded
    model, preprocess, _ = reference
    ds = ws.datasets.create("boxes")
    photo = _upload(ds, {"china.jpg": sample_photos()["china.jpg"], "note.txt": b"no boxes here"})["china.jpg"]
    boxes = {"roof": (10.5, 20.0, 300.0, 200.0), "sky": (0, 0, 640, 100), "tiny": (600, 400, 612.2, 410.7)}
    anns = {label: photo.annotations.create(label, box) for label, box in boxes.items()}
    fs = create_feature_set(ws, "crops", f"local-dir:{tiny_dir}", entity_type="annotation")

    report = embed_dataset(ws, ds, fs, device="cpu")

    assert report.embedded == 3 and report.failed == 0
    stored = _stored(ws, fs)
    full = Image.open(io.BytesIO(sample_photos()["china.jpg"]))
    crops = [encode(full.crop((int(b[0]), int(b[1]), int(np.ceil(b[2])), int(np.ceil(b[3])))), "PNG") for b in boxes.values()]
    ours = np.stack([stored[anns[label].id] for label in boxes])
    assert cosine_rows(ours, reference_image_vectors(model, preprocess, crops)).min() >= 0.999
    whole = reference_image_vectors(model, preprocess, [sample_photos()["china.jpg"]])[0]
    assert (ours @ whole).max() < 0.999  # crops, not the whole picture


def test_progress_and_cancel_keep_finished_batches(ws_embedded, tiny_dir):
    ws = ws_embedded
    ds = ws.datasets.create("d")
    _upload(ds, _pictures(7))
    fs = create_feature_set(ws, "s", f"local-dir:{tiny_dir}")
    stop = threading.Event()
    seen = []

    def progress(done, total, rate):
        seen.append((done, total, rate))
        if done:
            stop.set()

    report = embed_dataset(ws, ds, fs, device="cpu", batch_size=2, progress=progress, cancel=stop)
    assert report.cancelled and report.embedded == 2 and fs.count() == 2
    # The total as soon as the model is loaded, then items/s from the first batch on.
    assert seen == [(0, 7, 0.0), (2, 7, seen[1][2])] and seen[1][2] > 0

    seen.clear()
    rest = embed_dataset(ws, ds, fs, device="cpu", batch_size=2, progress=lambda *a: seen.append(a))
    assert (rest.embedded, rest.already_done, rest.cancelled) == (5, 2, False)
    assert [s[:2] for s in seen] == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert fs.count() == 7


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from store import Workspace
    from store.embedders import embed_dataset

    def die_mid_job(done, total, rate):
        if done >= 4:  # batches are queued for the writer: the kill lands during writes
            os.kill(os.getpid(), signal.SIGKILL)

    ws = Workspace.open(sys.argv[1])
    embed_dataset(ws, "d", "s", device="cpu", batch_size=2, progress=die_mid_job)
""")


def test_a_kill_mid_job_leaves_whole_features_and_a_rerun_finishes(tmp_path, tiny_dir, reference, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    model, preprocess, _ = reference
    pictures = _pictures(10)
    with Workspace.open(tmp_path / "ws") as ws:
        ds = ws.datasets.create("d")
        items = _upload(ds, pictures)
        create_feature_set(ws, "s", f"local-dir:{tiny_dir}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = run_python(KILL_SCRIPT, [str(tmp_path / "ws")], env)  # its own process, forked from a preloaded one
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    with Workspace.open(tmp_path / "ws") as ws:
        fs = ws.feature_sets.get(feature_set_name="s")
        stored = _stored(ws, fs)
        assert len(stored) < len(pictures)
        by_id = {item.id: name for name, item in items.items()}
        names = [by_id[e] for e in stored]
        if names:  # whatever was written is whole and right
            ref = reference_image_vectors(model, preprocess, [pictures[n] for n in names])
            assert cosine_rows(np.stack(list(stored.values())), ref).min() >= 0.999
        assert ws.check_index(fs.id)["ok"]

        report = embed_dataset(ws, "d", fs, device="cpu")
        assert report.already_done == len(stored) and report.embedded == len(pictures) - len(stored)
        assert fs.count() == len(pictures) and ws.check_index(fs.id)["ok"]


def test_sizes_and_models_that_do_not_fit_the_set_are_refused(ws_embedded, tiny_dir):
    ws = ws_embedded
    ds = ws.datasets.create("d")
    _upload(ds, _pictures(1))
    wrong_size = ws.feature_sets.create(name="small", size=16)
    with pytest.raises(InvalidInput, match="size 32 but feature set 'small' holds size 16"):
        embed_dataset(ws, ds, wrong_size, model=f"local-dir:{tiny_dir}", device="cpu")
    text_set = create_feature_set(ws, "text", DEFAULT_TEXT_MODEL)
    with pytest.raises(InvalidInput, match="holds vectors of all-MiniLM-L6-v2"):
        embed_dataset(ws, ds, text_set, model=f"local-dir:{tiny_dir}", device="cpu")
    assert wrong_size.count() == 0 and text_set.count() == 0
    with pytest.raises(InvalidInput, match="batch size"):
        embed_dataset(ws, ds, text_set, batch_size=0)

    unlinked = ws.feature_sets.create(name="plain", size=32)  # a set made without a model gets linked
    embed_dataset(ws, ds, unlinked, model=f"local-dir:{tiny_dir}", device="cpu")
    assert ws.feature_sets.get(feature_set_name="plain").model["name"] == f"local-dir:{tiny_dir}"


def test_text_items_through_the_default_sentence_model(ws_embedded):
    from sentence_transformers import SentenceTransformer

    ws = ws_embedded
    ds = ws.datasets.create("notes")
    texts = {f"t{i}.txt": t for i, t in enumerate(TEXTS) if t}
    items = _upload(ds, {**{n: t.encode() for n, t in texts.items()}, "photo.jpg": sample_photos()["china.jpg"]})
    fs = ws.feature_sets.create(name="notes", size=384)  # no model: the default text model is used

    report = embed_dataset(ws, ds, fs, device="cpu")

    assert fs.model["name"] == DEFAULT_TEXT_MODEL and fs.model["backend"] == "sentence_transformers"
    assert report.embedded == len(texts) and report.skipped == 1
    assert report.failures[0][1] == "/photo.jpg" and "does not embed images" in report.failures[0][2]
    reference = SentenceTransformer(str(packaged_minilm_path()), device="cpu").encode(
        list(texts.values()), normalize_embeddings=True)
    stored = _stored(ws, fs)
    assert cosine_rows(np.stack([stored[items[n].id] for n in texts]), reference).min() >= 0.999

    loaded = len(loaded_embedders())
    vec = query_vector(ws, fs, text="a cat asleep on the couch")
    again = query_vector(ws, fs, text="a cat asleep on the couch")
    assert len(loaded_embedders()) == loaded  # the set's model was reused, not reloaded
    assert np.array_equal(vec, again) and vec.shape == (384,)
    hits = ds.items.list(Filters().add_euclid(fs, vec, k=1)).items
    assert hits[0].name == "t0.txt"
    with pytest.raises(InvalidInput, match="text only"):
        query_vector(ws, fs, image_bytes=sample_photos()["china.jpg"])


def test_query_vector_needs_one_input_and_a_linked_model(ws_embedded, tiny_dir):
    ws = ws_embedded
    fs = create_feature_set(ws, "s", f"local-dir:{tiny_dir}")
    emb = load_embedder(f"local-dir:{tiny_dir}")
    assert np.array_equal(query_vector(ws, "s", text="red"), emb.embed_texts(["red"])[0])
    with pytest.raises(InvalidInput, match="one of them"):
        query_vector(ws, fs)
    with pytest.raises(InvalidInput, match="one of them"):
        query_vector(ws, fs, text="a", image_bytes=b"x")
    with pytest.raises(InvalidInput, match="decode"):
        query_vector(ws, fs, image_bytes=b"not an image")
    bare = ws.feature_sets.create(name="profiles", size=5)
    with pytest.raises(InvalidInput, match="linked to no model"):
        query_vector(ws, bare, text="x")
