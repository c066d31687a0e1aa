"""store.io.samples: the offline demo data (no streamlit). The text embedding path runs in
tests/pages/test_home.py through the app."""
import threading

import numpy as np

from store.io import samples


def test_sample_files_come_from_installed_packages():
    photos, digits, topics = samples.photo_files(), samples.digit_files(per_class=3), samples.help_files()
    assert sorted(f.name for f in photos if f.folder == "/photos") == ["china.jpg", "flower.jpg"]
    assert len([f for f in photos if f.folder == "/photos/tiles"]) == 12
    assert sorted(f.metadata["user"]["digit"] for f in digits) == sorted(list(range(10)) * 3)
    assert all(f.vector.shape == (64,) and f.vector.dtype == np.float32 and f.vector.max() <= 16 for f in digits)
    assert any(f.name == "lambda.txt" and b"lambda" in f.data for f in topics)


def test_load_sample_fills_a_dataset_with_precomputed_vectors_and_is_idempotent(ws_embedded):
    ws = ws_embedded
    progress = []
    report = samples.load_sample(ws, digits_per_class=5, text=False, clip=None,
                                 progress=lambda *a: progress.append(a[:2]))
    ds = ws.datasets.get(dataset_name="sample")
    assert report.added == ds.items.count() == 14 + 50
    fs = ws.feature_sets.get(feature_set_name=samples.DIGITS_SET)
    assert report.feature_sets == {samples.DIGITS_SET: 50} and fs.count() == 50 and fs.model is None
    assert progress[-1][0] == progress[-1][1]
    # The digits' pixels are their vectors: a 3's nearest neighbours are 3s.
    three = next(ds.items.list({"filter": {"metadata.user.digit": 3}}).all())
    feature = next(fs.features.list(entity_id=three.id).all())
    expected = next(f.vector for f in samples.digit_files(per_class=5) if f.name == three.name)
    assert feature.value.tobytes() == expected.tobytes()
    from store import Filters

    f = Filters()
    f.add_euclid(fs, feature.id, k=3)
    assert all(i.metadata["user"]["digit"] == 3 for i in ws.search(f).items)

    again = samples.load_sample(ws, digits_per_class=5, text=False, clip=None)
    assert again.added == 0 and ds.items.count() == 64 and fs.count() == 50


def test_cancel_stops_before_the_work(ws_embedded):
    stop = threading.Event()
    stop.set()
    report = samples.load_sample(ws_embedded, digits_per_class=2, text=False, clip=None, cancel=stop)
    assert report.cancelled and report.added == 0


def test_clip_weights_are_never_fetched():
    assert samples.clip_weights_at_hand("no-such-arch/none") is False


def test_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ours = samples.digit_files(per_class=2)
    for f in ours:
        index = int(f.name.split("-")[2].split(".")[0])
        assert f.metadata["user"]["digit"] == int(digits.target[index])
        assert f.vector.tobytes() == digits.data[index].astype(np.float32).tobytes()


def test_the_clip_hub_folder_is_open_clips_own():
    import open_clip

    arch, _, tag = samples.CLIP_MODEL.partition("/")
    assert open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].strip("/") == samples.CLIP_HUB


def test_loading_the_sample_files_imports_neither_scikit_learn_nor_open_clip(tmp_path):
    """Each costs seconds on a 2-core machine, and the sample data needs neither to start."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from store import Workspace; from store.io import samples\n"
        f"ws = Workspace.open({str(tmp_path / 'ws')!r})\n"
        "report = samples.load_sample(ws, digits_per_class=2, text=False)\n"
        "assert report.added == 34, report\n"
        "cached = samples._hub_repo_cached(samples.CLIP_HUB)\n"
        "print(sorted(m for m in ('sklearn', 'open_clip', 'torch') if m in sys.modules), cached)\n"
        "ws.close()\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root),
                              "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"  # HOME is empty: no CLIP weights in its cache
    assert out.stdout.strip().startswith("[]"), out.stdout
