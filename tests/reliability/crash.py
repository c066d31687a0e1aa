"""Kill a store job with SIGKILL at random moments, then check the workspace.

A job runs in a child process (``python -c JOB ws_path arg``), prints ``ready`` once it has
opened the workspace and one line per call that returned. The harness kills it after a
random delay, checks the invariants, and in the end reruns the job uninterrupted.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from store import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _spawn(job: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", job, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def run_child(job: str, *args: str, kill_after: float | None = None) -> tuple[list[str], int]:
    """Run ``job``; kill it ``kill_after`` seconds after it says ready. Returns the lines it
    printed after ``ready`` and its exit code (negative: killed)."""
    proc = _spawn(job, *args)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    if kill_after is None:
        assert proc.returncode == 0, err
    return out.split(), proc.returncode


def timed_run(job: str, *args: str) -> float:
    """Seconds from the job's ``ready`` to its end: the window in which a kill lands mid-job."""
    proc = _spawn(job, *args)
    start = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.perf_counter() - start


def snapshot(ws: Workspace) -> dict:
    """The workspace's content without ids or times: what two equal runs must share."""
    items = {}
    name_of = {}
    for ds in ws.datasets.list():
        for item in ds.items.list().all():
            name_of[item.id] = f"{ds.name}:{item.filename}"
            items[name_of[item.id]] = (item.sha256, item.kind, item.hidden, item.metadata,
                                       tuple((a.label, tuple(a.box)) for a in item.annotations.list()))
    vectors = {}
    for fs in ws.feature_sets.list():
        m = ws.matrix(fs)
        for eid, value in zip(m.entity_ids.tolist(), m.values):
            vectors[(fs.name, name_of.get(eid, eid))] = value.tobytes()
    return {"items": items, "vectors": vectors, "sets": sorted((s.name, s.size) for s in ws.feature_sets.list())}


def check_consistent(ws: Workspace) -> None:
    """Nothing half there: a sound SQLite file, every item with its whole file, no temp
    files, catalog and Chroma holding the same vectors, no staging datasets."""
    assert ws.catalog.scalar("PRAGMA integrity_check") == "ok"
    for row in ws.catalog.all("SELECT id, sha256 FROM items"):
        path = ws.blobs.path(row["sha256"])
        assert path.exists(), f"item {row['id']} lost its file"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
    assert list(ws.blobs.root.glob("*/.tmp-*")) == []
    assert ws.catalog.all("SELECT key FROM meta WHERE key LIKE 'importing:%'") == []
    assert ws.catalog.scalar("SELECT COUNT(*) FROM datasets WHERE name LIKE '.importing-%'") == 0
    orphans = ws.catalog.scalar(
        "SELECT COUNT(*) FROM features WHERE entity_id NOT IN (SELECT id FROM items)"
        " AND entity_id NOT IN (SELECT id FROM annotations)")
    assert orphans == 0
    for fs in ws.feature_sets.list():
        in_catalog = {r[0] for r in ws.catalog.all("SELECT entity_id FROM features WHERE feature_set_id=?", (fs.id,))}
        assert ws.index.ids(fs.id) == in_catalog, f"catalog and Chroma disagree on {fs.name}"


def kill_loop(job: str, ws_path: Path, args_for, kills: int, duration: float, after_kill) -> int:
    """Run the job with ``args_for(i)`` and SIGKILL it at a random moment within
    ``duration`` until ``kills`` kills have landed mid-job (a run that finished before its
    kill does not count); ``after_kill(ws, i, lines)`` checks the workspace after each run.
    Returns how many runs it took."""
    rng = random.Random(1234)
    landed = runs = 0
    while landed < kills:
        assert runs < 4 * kills, f"only {landed} of {runs} kills landed mid-job; the job is too short to test"
        lines, code = run_child(job, str(ws_path), *args_for(runs), kill_after=rng.uniform(0, duration))
        landed += code == -signal.SIGKILL
        with Workspace.open(ws_path) as ws:
            check_consistent(ws)
            after_kill(ws, runs, lines)
        runs += 1
    return runs


def dataset_content(ws: Workspace, name: str) -> dict:
    """Items of one dataset by filename, without ids or times."""
    ds = ws.datasets.get(dataset_name=name)
    return {i.filename: (i.sha256, i.kind, i.width, i.height, i.hidden, i.metadata) for i in ds.items.list().all()}


def set_content(ws: Workspace, name: str) -> dict:
    """Vectors of one feature set by their item's filename."""
    fs = ws.feature_sets.get(feature_set_name=name)
    m = ws.matrix(fs)
    items = ws.items_by_ids(m.entity_ids.tolist())
    return {items[e].filename: v.tobytes() for e, v in zip(m.entity_ids.tolist(), m.values)}
