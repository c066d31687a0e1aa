"""`python -m store embed`, `import-vectors` and `models`, run as a user runs them."""
from __future__ import annotations

import numpy as np

from store import Workspace
from store.embedders import load_embedder
from tests.store.embed_models import cosine_rows, sample_photos, save_tiny_clip_dir


def test_embed_command_creates_the_set_resumes_and_reports(run_cli, tmp_path):
    tiny = save_tiny_clip_dir(tmp_path / "tiny")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in list(sample_photos().items())[:3]:
        (photos / name).write_bytes(data)
    (photos / "note.txt").write_text("a photo of a temple")
    run_cli("upload", "--dataset", "pics", str(photos))

    first = run_cli("embed", "-d", "pics", "-s", "pics-clip", "--model", f"local-dir:{tiny}",
                    "--device", "cpu", "--batch-size", "2")
    assert "created feature set pics-clip" in first.stderr and "size 32" in first.stderr
    assert "embedded 4, skipped 0, failed 0 (already done 0)" in first.stdout
    assert "on cpu, batch 2" in first.stdout
    again = run_cli("embed", "-d", "pics", "-s", "pics-clip")  # the set remembers its model
    assert "embedded 0, skipped 0, failed 0 (already done 4)" in again.stdout

    with Workspace.open(tmp_path / "cli-ws") as ws:
        fs = ws.feature_sets.get(feature_set_name="pics-clip")
        ds = ws.datasets.get(dataset_name="pics")
        items = {i.name: i for i in ds.items.list().all()}
        stored = {r[0]: np.frombuffer(r[1], np.float32) for r in
                  ws.catalog.all("SELECT entity_id, value FROM features WHERE feature_set_id=?", (fs.id,))}
    emb = load_embedder(f"local-dir:{tiny}", "cpu")
    names = [n for n in items if n.endswith(".jpg")]
    ours = np.stack([stored[items[n].id] for n in names])
    assert cosine_rows(ours, emb.embed_images([(photos / n).read_bytes() for n in names])).min() >= 0.999
    assert cosine_rows(stored[items["note.txt"].id][None], emb.embed_texts(["a photo of a temple"])).min() >= 0.999


def test_embed_command_errors_exit_2_with_a_message(run_cli, tmp_path):
    import torch

    (tmp_path / "a.txt").write_text("hello")
    run_cli("upload", "--dataset", "d", str(tmp_path / "a.txt"))
    wrong = run_cli("embed", "-d", "d", "-s", "s", "--model", "ViT-B-32", ok=False)
    assert wrong.returncode == 2 and "needs weights" in wrong.stderr and "Traceback" not in wrong.stderr
    if not torch.cuda.is_available():
        gpu = run_cli("embed", "-d", "d", "-s", "s", "--device", "cuda", ok=False)
        assert gpu.returncode == 2 and "no CUDA GPU" in gpu.stderr


def test_import_vectors_command_creates_a_set_of_the_file_size(run_cli, tmp_path):
    for name in ("alice.txt", "bob.txt"):
        (tmp_path / name).write_text(f"customer {name}")
    run_cli("upload", "--dataset", "crm", str(tmp_path / "alice.txt"), str(tmp_path / "bob.txt"))
    csv = tmp_path / "profiles.csv"
    csv.write_text("name,age,income,years,purchases,value\nalice.txt,35,75000,5,20,150\nbob.txt,52,41000,12,3,20\n"
                   "nobody.txt,1,1,1,1,1\n")
    out = run_cli("import-vectors", str(csv), "--feature-set", "profiles", "--dataset", "crm", "--set-type", "profile")
    assert "imported 2 vectors into profiles" in out.stdout and "nobody.txt" in out.stderr
    sets = run_cli("sets")
    assert "profiles  size=5  type=profile" in sets.stdout and "vectors=2" in sets.stdout
    listed = run_cli("models", "--contains", "minilm")
    assert listed.stdout.startswith("all-MiniLM-L6-v2  size=384")
