"""Writes never wait for the ANN index: the catalog write is the commit, a worker thread in
the owning process brings Chroma up to date afterwards, and an approximate search before it
has caught up answers exactly and says so."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from store import Filters, Workspace
from store.index.sync import QUIET_S
from tests.conftest import ROOT


def _set_with_vectors(ws, n=300, size=8, seed=0):
    ds = ws.datasets.create("d")
    items = [r.item for r in ds.items.upload([(f"{i:04d}.txt", f"item {i}".encode()) for i in range(n)])]
    fs = ws.feature_sets.create(name="s", size=size)
    values = np.random.default_rng(seed).standard_normal((n, size)).astype(np.float32)
    return fs, items, values


def _ids(pages):
    return [(i.id, i.distance) for i in pages.items]


def test_a_write_returns_before_the_index_has_it_and_the_worker_catches_up(ws_embedded):
    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws)
    ws.index_sync.stop()  # no worker: what the write itself did is all there is
    fs.features.create_many(values, items)
    assert ws.index.count(fs.id) == 0  # the write did not touch Chroma
    state = ws.index_state(fs.id)
    assert (state.vectors, state.pending, state.caught_up) == (300, 300, False)
    assert state.describe() == "building in the background: 0 of 300 vectors indexed"
    assert ws.info()["feature_sets"][0]["index"] == state.describe()

    ws.index_sync.start()
    assert ws.wait_for_index(60)
    assert ws.index_state(fs.id).describe() == "up to date"
    stored = ws.index.get_vectors(fs.id, [i.id for i in items])
    assert np.stack([stored[i.id] for i in items]).tobytes() == values.tobytes()

    ws.index_sync.stop()  # deletions wait as tombstones, applied by the worker
    ws.delete_items([items[0].id, items[1].id])
    assert ws.index.count(fs.id) == 300 and ws.index_state(fs.id).tombstones == 2
    assert "2 deletions to apply" in ws.index_state(fs.id).describe()
    ws.index_sync.start()
    assert ws.wait_for_index(60) and ws.index.count(fs.id) == 298


def test_approximate_search_before_the_index_caught_up_answers_exactly_and_says_so(ws_embedded):
    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws)
    ws.index_sync.stop()
    fs.features.create_many(values, items)
    ws.index_sync.inline_backlog = 10  # 300 missing: too many to catch up inside the search
    exact = ws.search(Filters().add_euclid(fs, values[7], k=5))
    early = ws.search(Filters().add_euclid(fs, values[7], k=5, approximate=True))
    assert _ids(early) == _ids(exact) and exact.note == ""
    assert early.note == ("the approximate index of 's' is not ready (building in the background: 0 of 300 "
                          "vectors indexed): answered by exact search")
    assert ws.index.count(fs.id) == 0  # and the search did not build it either

    ws.index_sync.start()
    assert ws.wait_for_index(60)
    late = ws.search(Filters().add_euclid(fs, values[7], k=5, approximate=True))
    assert late.note == "" and late.items[0].id == items[7].id  # from HNSW now


def test_a_small_backlog_is_caught_up_by_the_search_itself(ws_embedded):
    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws, n=40)
    ws.index_sync.stop()
    fs.features.create_many(values, items)
    hits = ws.search(Filters().add_euclid(fs, values[3], k=3, approximate=True))
    assert hits.note == "" and hits.items[0].id == items[3].id
    assert ws.index.count(fs.id) == 40 and ws.index_state(fs.id).caught_up


def test_farthest_first_approximate_says_it_was_answered_exactly(ws_embedded):
    fs, items, values = _set_with_vectors(ws_embedded, n=20)
    fs.features.create_many(values, items)
    far = ws_embedded.search(Filters().add_euclid(fs, values[0], k=3, sort="descending", approximate=True))
    assert far.note == "approximate search ranks nearest first only: answered by exact search"


def test_a_process_without_the_index_says_who_keeps_it(tmp_path, monkeypatch, run_cli):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    with Workspace.open(tmp_path / "cli-ws") as owner:
        fs, items, values = _set_with_vectors(owner, n=20)
        fs.features.create_many(values, items)
        proc = run_cli("search", "--feature-set", "s", f"--vector={','.join(map(str, values[2].tolist()))}",
                       "-k", "2", "--approximate")
        assert json.loads(proc.stdout.splitlines()[0])["id"] == items[2].id
        assert "note: the approximate index is kept by another process" in proc.stderr
        info = json.loads(run_cli("info").stdout)
        assert info["feature_sets"][0]["index"] == "up to date" or "owns the index" in info["feature_sets"][0]["index"]


def test_info_shows_the_index_progress(tmp_path, monkeypatch, run_cli):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    with Workspace.open(tmp_path / "cli-ws") as ws:
        fs, items, values = _set_with_vectors(ws, n=30)
        ws.index_sync.stop()
        fs.features.create_many(values, items)
        ws.index_sync.stop()
    # Closed with the index behind: the next process (here `info`) resumes the build in the background.
    info = json.loads(run_cli("info").stdout)
    assert info["feature_sets"][0]["vectors"] == 30
    assert info["feature_sets"][0]["index"] in ("building in the background: 0 of 30 vectors indexed", "up to date")
    with Workspace.open(tmp_path / "cli-ws") as ws:
        assert ws.wait_for_index(60) and ws.index.count(fs.id) == 30


@pytest.mark.parametrize("kind", ["create", "delete"])
def test_set_deletion_while_the_worker_builds_leaves_no_collection(ws_embedded, kind):
    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws, n=200)
    fs.features.create_many(values, items)
    if kind == "delete":
        ws.delete_items([i.id for i in items[:50]])
    fs.delete()
    assert ws.wait_for_index(60)
    assert [c.name for c in ws.index.client.list_collections() if fs.id in c.name] == []


def test_the_index_opens_at_its_first_use_and_its_lock_is_held_from_the_open(tmp_path, monkeypatch, run_cli):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    path = tmp_path / "cli-ws"
    with Workspace.open(path) as ws:
        ws.index_sync.stop()  # no worker: only this test's calls may open the index
        fs, items, values = _set_with_vectors(ws, n=30)
        fs.features.create_many(values, items)
        assert ws.index_if_open is None and ws.owns_index  # neither the open nor the writes opened Chroma
        assert not (path / "chroma" / "chroma.sqlite3").exists()
        assert ws.index_state(fs.id).owned and "opens at first use" in ws.info()["chroma"]
        # Another process is refused the index all the same: the lock was taken at the open.
        refused = run_cli("repair", ok=False)
        assert refused.returncode == 2 and f"held by pid {os.getpid()}" in refused.stderr
        hits = ws.search(Filters().add_euclid(fs, values[4], k=2, approximate=True))  # the first use
        assert hits.note == "" and hits.items[0].id == items[4].id
        assert ws.index_if_open is ws.index and ws.index.count(fs.id) == 30


def test_opening_a_workspace_imports_no_chromadb(tmp_path):
    script = ("import sys; from store import Workspace; ws = Workspace.open(sys.argv[1]); "
              "ws.feature_sets.create(name='s', size=2); ws.wait_for_index(30); "
              "print('chromadb' in sys.modules, ws.index_if_open is None); ws.close()")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ws")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_the_worker_starts_no_chroma_step_while_the_app_serves_a_page(ws_embedded):
    """In the app a Chroma step (which holds the GIL) waits until no page has run for a moment;
    the vector files, which searches read, are still brought up to date meanwhile."""
    from store.warmup import Activity

    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws)
    activity = Activity()
    ws.index_sync.idle = activity.idle_seconds
    activity.run_started()  # a page is running
    fs.features.create_many(values, items)
    ids = [i.id for i in items]
    assert ws.search(Filters().add_euclid(fs, values[3], k=1)).items[0].id == ids[3]  # exact: no index needed
    assert not ws.wait_for_index(2.0) and ws.index_state(fs.id).indexed == 0
    activity.busy()  # the run ended
    assert ws.wait_for_index(60) and ws.index.count(fs.id) == 300


def test_a_script_that_exits_without_close_leaves_the_index_folder_alone(tmp_path):
    """A script writes and exits without close() while the worker waits for writes to pause.
    Its main thread gone, no step starts: the first step would import chromadb, which can
    no longer register its exit hooks; that was taken for a damaged index and the Chroma
    folder moved aside (every such run then rebuilt the index). The next open catches up."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    home = str(tmp_path / "ws")
    setup = ("import sys, numpy as np; from store import Workspace; ws = Workspace.open(sys.argv[1]); "
             "ds = ws.datasets.create('d'); items = [r.item for r in ds.items.upload([(f'{i}.txt', b'x%d' % i) "
             "for i in range(40)])]; fs = ws.feature_sets.create(name='s', size=4); "
             "fs.features.create_many(np.ones((20, 4), np.float32), items[:20]); ws.wait_for_index(60); ws.close()")
    subprocess.run([sys.executable, "-c", setup, home], check=True, env=env, timeout=180)
    # Writes, then exits; a non-daemon thread holds the shutdown open past the worker's pause.
    script = ("import sys, threading, time, numpy as np; from store import Workspace; ws = Workspace.open(sys.argv[1]); "
              "fs = ws.feature_sets.get(feature_set_name='s'); items = sorted(ws.datasets.get(dataset_name='d')"
              ".items.list().all(), key=lambda i: int(i.name[:-4])); fs.features.create_many(np.full((20, 4), 2, np.float32), items[20:]); "
              "threading.Thread(target=time.sleep, args=(2,)).start()")
    out = subprocess.run([sys.executable, "-c", script, home], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "index upkeep failed" not in out.stderr and "damaged" not in out.stderr, out.stderr
    assert not (tmp_path / "ws" / "chroma.damaged").exists()
    with Workspace.open(tmp_path / "ws") as ws:
        fs = ws.feature_sets.get(feature_set_name="s")
        assert ws.wait_for_index(60) and ws.index.count(fs.id) == 40


def test_the_worker_starts_no_step_while_a_write_is_under_way(ws_embedded):
    """A bulk load's batches take seconds each: the pause after the last one must not let the
    worker decode blobs or build the index in the middle of the next."""
    ws = ws_embedded
    fs, items, values = _set_with_vectors(ws)
    with ws.index_sync.writing():  # as a long batch holds it
        fs.features.create_many(values, items)
        time.sleep(4 * QUIET_S)  # long enough after the last write ended for a step to start
        assert ws.vectors.stamp(fs.id) in (None, (0, 0)) and ws.index_state(fs.id).indexed == 0
    assert ws.wait_for_index(60) and ws.index.count(fs.id) == 300
    assert ws.vectors.stamp(fs.id)[0] == 300  # the files came first
