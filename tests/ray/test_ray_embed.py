"""The embedding job on a real local Ray cluster (``ray_cluster``: `ray start --head`, two
CPUs): the same vectors as the local pipeline, a killed actor, a killed driver and its
rerun, cancellation, and a real `chroma run` server behind the workspace."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from store import Workspace
from store.embedders import create_feature_set, embed_dataset
from tests.conftest import ROOT
from tests.store.embed_models import TEXTS, cosine_rows, generated_images, sample_photos, save_tiny_clip_dir

MINILM = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip"))


def _stored(ws, fs) -> dict[str, np.ndarray]:
    rows = ws.catalog.all("SELECT entity_id, value FROM features WHERE feature_set_id=?", (fs.id,))
    return {r[0]: np.frombuffer(r[1], dtype=np.float32) for r in rows}


def _assert_same_vectors(ws, local, on_ray) -> None:
    a, b = _stored(ws, local), _stored(ws, on_ray)
    assert a.keys() == b.keys() and a
    ids = sorted(a)
    assert cosine_rows(np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])).min() >= 0.9999


def _many_images(seeds: range) -> dict[str, bytes]:
    return {f"{seed}-{name}": data for seed in seeds for name, data in generated_images(seed).items()}


def actor_pids() -> list[int]:
    """The processes of this machine's featurelab Ray actors (Ray titles them ray::EmbedActor...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::EmbedActor"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def wait_until(condition, what: str, deadline_s: float = 90) -> None:
    """Poll a condition (no timing is asserted: the deadline only keeps a broken run from hanging)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.2)


def kill_an_actor_once(killed: list[int]):
    """A progress callback that SIGKILLs one actor's worker process after the first batch."""
    def progress(done, total, rate):
        if not killed:
            killed.append(actor_pids()[0])
            os.kill(killed[0], signal.SIGKILL)
    return progress


def test_vectors_equal_the_local_pipeline_and_a_killed_actor_costs_its_batch_only(ray_cluster, chroma_server,
                                                                                   tiny_dir, tmp_path):
    """Images (CLIP, two actors, one of them SIGKILLed mid-job) and text (MiniLM, one actor),
    with a damaged and a missing file, into a workspace whose index is a `chroma run` server."""
    ws = Workspace.open(tmp_path / "ws", chroma_url=chroma_server)
    ds = ws.datasets.create("mixed")
    files = {**sample_photos(), **generated_images(), **{f"note-{i}.txt": t.encode() for i, t in enumerate(TEXTS) if t}}
    items = {r.item.name: r.item for r in ds.items.upload(list(files.items()))}
    broken, missing = items["shapes-1.jpg"], items["noise.png"]
    broken.path.write_bytes(broken.path.read_bytes()[:500])  # damaged on disk: fails alone, as locally
    missing.path.unlink()
    reports = {}
    for name, model, actors in (("clip", f"local-dir:{tiny_dir}", 2), ("minilm", MINILM, 1)):
        local, on_ray = create_feature_set(ws, f"{name}-local", model), create_feature_set(ws, f"{name}-ray", model)
        expected = embed_dataset(ws, ds, local, device="cpu", batch_size=3)
        calls, killed = [], []
        kill = kill_an_actor_once(killed) if name == "clip" else lambda *args: None
        report = embed_dataset(ws, ds, on_ray, ray=ray_cluster, actors=actors, batch_size=3,
                               progress=lambda *args: (calls.append(args), kill(*args)))

        assert (report.embedded, report.failed, report.skipped) == (expected.embedded, expected.failed, expected.skipped)
        assert sorted(report.failures) == sorted(expected.failures)
        assert report.device == f"ray: {actors} cpu actor{'s' if actors > 1 else ''}" and report.batch_size == 3
        _assert_same_vectors(ws, local, on_ray)  # with a killed actor too: Ray restarted it and retried its batch
        assert not killed or not os.path.exists(f"/proc/{killed[0]}/cmdline")
        assert [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[-1][:2] == (report.total, report.total)
        assert calls[-1][2] > 0 and calls[-1][2].note == f"{actors} of {actors} Ray actor{'s' if actors > 1 else ''} alive"
        assert ws.check_index(on_ray.id) == {"ok": True, "catalog": report.embedded, "index": report.embedded}
        reports[name] = report
    reasons = {eid: why for eid, _, why in reports["clip"].failures}
    assert reports["clip"].failed == 2 and "cannot decode" in reasons[broken.id] and "missing" in reasons[missing.id]
    assert reports["minilm"].embedded == 5 and reports["minilm"].skipped == len(files) - 5
    ws.close()


def test_cancel_stops_the_job_and_ends_its_actors(ray_cluster, ws_embedded):
    from pydoc_data.topics import topics

    ws = ws_embedded
    ds = ws.datasets.create("help")
    ds.items.upload([(f"{k}.txt", v.encode()) for k, v in sorted(topics.items())][:40])
    fs = create_feature_set(ws, "help", MINILM)
    stop = threading.Event()

    report = embed_dataset(ws, ds, fs, ray=ray_cluster, actors=1, batch_size=4,
                           progress=lambda done, total, rate: stop.set(), cancel=stop)

    assert report.cancelled and 4 <= report.embedded == fs.count() < 40
    wait_until(lambda: not actor_pids(), "the cancelled job's actors to end")


DRIVER = textwrap.dedent("""
    import os, signal, sys
    from store import Workspace
    from store.embedders import embed_dataset

    ws = Workspace.open(sys.argv[1])
    def die(done, total, rate):  # a driver killed mid-job, once something is stored
        if done >= 6 and ws.catalog.all("SELECT COUNT(*) FROM features")[0][0] > 0:
            os.kill(os.getpid(), signal.SIGKILL)
    embed_dataset(ws, "d", "s", ray=sys.argv[2], actors=1, batch_size=2, progress=die)
    print("the job ended before the driver was killed")
""")


def test_a_killed_driver_leaves_whole_features_and_a_rerun_does_exactly_the_rest(ray_cluster, tiny_dir, tmp_path,
                                                                                  run_cli):
    home = tmp_path / "cli-ws"  # the workspace run_cli uses
    ws = Workspace.open(home)
    ds = ws.datasets.create("d")
    ds.items.upload(list(_many_images(range(3)).items()))
    total = ds.items.count()
    create_feature_set(ws, "s", f"local-dir:{tiny_dir}")
    ws.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("FEATURELAB_CHROMA_URL", None)
    driver = subprocess.run([sys.executable, "-c", DRIVER, str(home), ray_cluster], env=env, capture_output=True,
                            text=True, timeout=300)
    assert driver.returncode == -signal.SIGKILL, driver.stdout + driver.stderr
    wait_until(lambda: not actor_pids(), "Ray to end the dead driver's actors")
    ws = Workspace.open(home)
    fs = ws.feature_sets.get(feature_set_name="s")
    kept = _stored(ws, fs)
    assert 0 < len(kept) < total and all(v.shape == (32,) for v in kept.values())
    assert ws.check_index(fs.id)["ok"]
    ws.close()

    rerun = run_cli("embed", "--dataset", "d", "--feature-set", "s", "--ray", "auto", "--batch-size", "4",
                    env_extra={"RAY_ADDRESS": ray_cluster, "HF_HUB_OFFLINE": "1"})

    assert f"embedded {total - len(kept)}, skipped 0, failed 0 (already done {len(kept)})" in rerun.stdout
    assert "on ray: 1 cpu actor" in rerun.stdout
    ws = Workspace.open(home)
    fs = ws.feature_sets.get(feature_set_name="s")
    after = _stored(ws, fs)
    assert len(after) == total and all(np.array_equal(after[k], v) for k, v in kept.items())  # the kept ones untouched
    local = create_feature_set(ws, "local", f"local-dir:{tiny_dir}")
    embed_dataset(ws, "d", local, device="cpu")
    _assert_same_vectors(ws, local, fs)
    ws.close()


def test_actors_and_batches_follow_the_cluster_resources():
    from store import InvalidInput
    from store.embedders.ray_job import plan_actors

    cpu = plan_actors(cpus=2, gpus=0)
    assert (cpu.actors, cpu.num_cpus, cpu.num_gpus, cpu.device, cpu.batch_size("image", None)) == (1, 2, 0, "cpu", 32)
    assert plan_actors(cpus=16, gpus=0).actors == 4 and plan_actors(cpus=2, gpus=0, actors=2).num_cpus == 1
    gpu = plan_actors(cpus=16, gpus=4)
    assert (gpu.actors, gpu.num_gpus, gpu.num_cpus, gpu.device, gpu.batch_size("image", 64)) == (4, 1, 3, "cuda", 64)
    assert gpu.batch_size("image", None) == 256
    with pytest.raises(InvalidInput, match="at least 1"):
        plan_actors(cpus=2, gpus=0, actors=0)
